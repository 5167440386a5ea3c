// Red gate, chapter 2.6: every public learner function of the batching chapter throws its TODO on
// the pristine stubs. The batched model and the scheduler need a model built by chapters 1.2-1.5,
// which the pristine stubs cannot build (they throw their own TODOs first); those stubs are
// reached in a learner build with TINYLLM_USE_REFERENCE set to every other chapter (a configuration
// CI's red gate does not build). Here the batching cache itself is checked.
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_6_continuous_batching/batching_kv_cache.hpp>

#include "stub_check.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

TEST(Week2Stubs, Ch2_6_BatchingKvCache) {
  const Tensor kv = Tensor::full({2, 1, 1, 4}, 1.0f);
  BatchingKvCache cache(2, 1, 4, 16);
  EXPECT_STUB_THROWS_TODO("ch2.6", cache.add_request(KvCache(1, 1, 4, 16), 0));
  EXPECT_STUB_THROWS_TODO("ch2.6", cache.remove_request(0));
  EXPECT_STUB_THROWS_TODO("ch2.6", cache.update_and_fetch(kv, kv));
}

}  // namespace
}  // namespace tinyllm
