// Red gate, chapter 3.4: every public learner function of the speculative-decoding chapter throws
// its TODO on the pristine stubs. A test double stands in for the models (the course's models need
// chapters 1.2-2.1, whose pristine stubs throw their own TODOs first). RejectionSampler needs a
// chapter 1.7 Sampler, which the pristine stubs cannot construct; its stub is reached in the
// learner build with TINYLLM_USE_REFERENCE set to every other chapter, where every ch3.4 test
// fails with a TODO(ch3.4 ...) message (book/week3/ch3_4_speculative_decoding.md).
#include <cstdint>
#include <vector>

#include <tinyllm/ch1_7_sampling/sampler.hpp>
#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch2_1_kv_cache/language_model.hpp>
#include <tinyllm/ch3_4_speculative_decoding/prompt_lookup.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_decoding.hpp>
#include <tinyllm/ch3_4_speculative_decoding/speculative_sampling.hpp>

#include "stub_check.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

// A model that is never run: the stubs throw before they call it.
class IdleModel : public LanguageModel {
 public:
  IdleModel() {
    config_.vocab_size = 4;
    config_.num_hidden_layers = 1;
    config_.max_position_embeddings = 64;
  }
  const Qwen2Config& config() const override { return config_; }
  std::vector<KvCache> create_kv_caches(int64_t batch = 1) const override {
    return {KvCache(batch, 1, 1, 64)};
  }
  Tensor forward(const std::vector<TokenIds>&, int64_t, std::vector<KvCache>&) const override {
    return Tensor({1, 1, 4});
  }

 private:
  Qwen2Config config_;
};

TEST(Week3Stubs, Ch3_4_SpeculativeDecoding) {
  const IdleModel model;
  ModelDrafter drafter(model);
  EXPECT_STUB_THROWS_TODO("ch3.4", drafter.propose({1, 2, 3}, 2));
  EXPECT_STUB_THROWS_TODO("ch3.4", drafter.accept(3));
  EXPECT_STUB_THROWS_TODO("ch3.4", verify_greedy(Tensor({1, 2, 4}), Proposal{{1}, {}}));
  EXPECT_STUB_THROWS_TODO(
      "ch3.4", run_speculative(model, drafter, verify_greedy, greedy_pick, {1, 2},
                               GenerationOptions{.max_new_tokens = 4, .stop_ids = {}}, 2));
  EXPECT_STUB_THROWS_TODO(
      "ch3.4", speculative_generate(model, model, {1, 2},
                                    GenerationOptions{.max_new_tokens = 4, .stop_ids = {}}, 2));
}

TEST(Week3Stubs, Ch3_4_SpeculativeSampling) {
  const std::vector<float> p = {0.5f, 0.5f}, q = {0.25f, 0.75f};
  Rng rng(0);
  EXPECT_STUB_THROWS_TODO("ch3.4", residual_distribution(p, q));
  EXPECT_STUB_THROWS_TODO("ch3.4", accept_or_resample(p, q, 1, rng));
}

TEST(Week3Stubs, Ch3_4_PromptLookup) {
  const IdleModel model;
  EXPECT_STUB_THROWS_TODO("ch3.4", prompt_lookup_proposal({1, 2, 1}, 1, 2));
  EXPECT_STUB_THROWS_TODO(
      "ch3.4", prompt_lookup_generate(
                   model, {1, 2}, GenerationOptions{.max_new_tokens = 4, .stop_ids = {}}, 1, 2));
}

}  // namespace
}  // namespace tinyllm
