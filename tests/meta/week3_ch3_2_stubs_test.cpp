// Red gate, chapter 3.2: the paged attention kernels throw their TODO on the pristine stubs. The
// pool they read is chapter 3.1's, whose pristine stubs cannot allocate a page, so the calls here
// use a pool with no page and a batch of idle rows (valid arguments that need no page). The model
// (Task 3) and the scheduler (Task 4) need a model built by chapters 1.2-1.5; they are reached in a
// learner build with TINYLLM_USE_REFERENCE set to every other chapter.
#include <tinyllm/ch3_1_paged_kv_cache/page_pool.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/paged_kv_cache.hpp>
#include <tinyllm/ch3_2_paged_attention/paged_attention.hpp>

#include "stub_check.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

TEST(Week3Stubs, Ch3_2_PagedAttention) {
  const PagePool pool(1, 4, 2);
  PagedKvMetadata idle;
  idle.batch = 1;
  idle.max_pages = 1;
  idle.page_size = 2;
  idle.block_table = {-1};
  idle.context_lens = {0};
  const Tensor q = Tensor::full({1, 2, 1, 4}, 1.0f);
  EXPECT_STUB_THROWS_TODO("ch3.2", paged_attention(q, pool, idle));
  EXPECT_STUB_THROWS_TODO("ch3.2", paged_attention_parallel(q, pool, idle));
}

}  // namespace
}  // namespace tinyllm
