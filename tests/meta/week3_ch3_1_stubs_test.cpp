// Red gate, chapter 3.1: every public learner function of the paged-cache chapter throws its TODO
// on the pristine stubs. The model on paged caches (Task 3) needs a model built by chapters
// 1.2-1.5, which the pristine stubs cannot build; it is reached in a learner build with
// TINYLLM_USE_REFERENCE set to every other chapter. Here the pool and the cache are checked.
#include <tinyllm/ch3_1_paged_kv_cache/page_pool.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/paged_kv_cache.hpp>

#include "stub_check.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

TEST(Week3Stubs, Ch3_1_PagePool) {
  PagePool pool(1, 4, 2);
  EXPECT_STUB_THROWS_TODO("ch3.1", pool.try_allocate());
  EXPECT_STUB_THROWS_TODO("ch3.1", pool.allocate());
  EXPECT_STUB_THROWS_TODO("ch3.1", pool.free(0));
}

TEST(Week3Stubs, Ch3_1_PagedKvCache) {
  const Tensor kv = Tensor::full({1, 1, 3, 4}, 1.0f);
  PagePool pool(1, 4, 2);
  PagedKvCache cache(pool);
  EXPECT_STUB_THROWS_TODO("ch3.1", cache.append(kv, kv));
  EXPECT_STUB_THROWS_TODO("ch3.1", cache.gather_dense());
  EXPECT_STUB_THROWS_TODO("ch3.1", cache.rewind(0));
  EXPECT_STUB_THROWS_TODO("ch3.1", cache.release());
  EXPECT_STUB_THROWS_TODO("ch3.1", build_paged_metadata({&cache}));
}

}  // namespace
}  // namespace tinyllm
