// Red gate, chapter 2.7: chunked prefill needs a Week 2 model, which the pristine stubs cannot
// build (chapter 1.2's RoPE throws its TODO first), so on the pristine tree a TODO of an earlier
// chapter fires (checked below: a TODO(ch1. ...)). With TINYLLM_USE_REFERENCE set to every other
// chapter, the ch2.7 TODOs are the ones reached; CI's red gate does not build that configuration.
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch2_7_chunked_prefill/chunked_prefill.hpp>

#include "stub_check.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

TEST(Week2Stubs, Ch2_7_ChunkedPrefill) {
  const auto model_dir = testing::data_dir() / "fixtures" / "ch1.5" / "qwen2-bf16-tied";
  const auto chunked = [&] {
    const Qwen2ModelWeek2 model = load_qwen2_week2(model_dir);
    std::vector<KvCache> caches = model.create_kv_caches();
    prefill_chunked(model, {1, 2, 3}, caches, 2);
  };
  const auto batched = [&] {
    const Qwen2ModelWeek2 model = load_qwen2_week2(model_dir);
    ChunkedPrefillBatcher batcher(model, 2, 4);
    batcher.submit({{1, 2, 3}, 2, {}});
    batcher.run();
  };
  EXPECT_STUB_THROWS_WEEK_TODO("ch1.", chunked());
  EXPECT_STUB_THROWS_WEEK_TODO("ch1.", batched());
}

}  // namespace
}  // namespace tinyllm
