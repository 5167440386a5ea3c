// Red gate, chapter 2.1: every public learner function of the KV-cache chapter throws its TODO on
// the pristine stubs. The Week 2 model needs a model built by chapters 1.2-1.5, which the pristine
// stubs cannot build (they throw their own TODOs first), so the model and generation stubs are
// reached in the learner build with TINYLLM_USE_REFERENCE="ch1.1;...;ch1.7", where every ch2.1 test
// fails with a TODO(ch2.1 ...) message (see book/week2/ch2_1_kv_cache.md); here the cache itself
// is checked.
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>

#include "stub_check.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

TEST(Week2Stubs, Ch2_1_KvCache) {
  const Tensor kv = Tensor::full({1, 2, 3, 4}, 1.0f);
  KvCache cache(1, 2, 4, 16);
  EXPECT_STUB_THROWS_TODO("ch2.1", cache.append(kv, kv));
  EXPECT_STUB_THROWS_TODO("ch2.1", cache.fetch());
  EXPECT_STUB_THROWS_TODO("ch2.1", cache.update_and_fetch(kv, kv));
  EXPECT_STUB_THROWS_TODO("ch2.1", cache.rewind(0));
}

}  // namespace
}  // namespace tinyllm
