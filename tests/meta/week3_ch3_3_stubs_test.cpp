// Red gate, chapter 3.3: every public learner function of the MoE chapter throws its TODO on the
// pristine stubs. The model (Qwen2MoeModel) loads its dense parts with chapter 1.5's loader, whose
// pristine stub throws first; the experts' loader is checked here on its own.
#include <tinyllm/ch3_3_moe/moe_block.hpp>
#include <tinyllm/ch3_3_moe/qwen2_moe_model.hpp>
#include <tinyllm/ch3_3_moe/router.hpp>

#include "stub_check.hpp"
#include "tinyllm/config.hpp"
#include "tinyllm/safetensors.hpp"
#include "tinyllm_test.hpp"

namespace tinyllm {
namespace {

TEST(Week3Stubs, Ch3_3_RouterAndExperts) {
  const Tensor x = Tensor::full({3, 4}, 0.5f), w_router = Tensor::full({2, 4}, 0.1f);
  EXPECT_STUB_THROWS_TODO("ch3.3", top_k_routing(Tensor::full({3, 2}, 1.0f), 1, true));
  EXPECT_STUB_THROWS_TODO("ch3.3", route_tokens(x, w_router, 1, true));
  Routing routing{3, 1, {0, 1, 0}, Tensor::full({3, 1}, 1.0f)};
  const ExpertFunction identity = [](int64_t, const Tensor& rows) { return rows; };
  EXPECT_STUB_THROWS_TODO("ch3.3", combine_experts_per_token(x, routing, identity));
  EXPECT_STUB_THROWS_TODO("ch3.3", group_by_expert(routing, 2));
  EXPECT_STUB_THROWS_TODO("ch3.3", combine_experts_grouped(x, routing, 2, identity));
  Tensor out({3, 4});
  EXPECT_STUB_THROWS_TODO("ch3.3", add_gated_shared_expert(out, x, Tensor({3, 1})));
}

TEST(Week3Stubs, Ch3_3_BlockAndLoader) {
  MoeConfig moe;
  moe.num_experts = 2;
  moe.num_experts_per_tok = 1;
  moe.moe_intermediate_size = 3;
  Qwen2MoeWeights w;
  w.router = Tensor::full({2, 4}, 0.1f);
  for (int e = 0; e < 2; ++e) {
    w.experts.push_back(
        {Tensor::full({3, 4}, 0.1f), Tensor::full({3, 4}, 0.1f), Tensor::full({4, 3}, 0.1f)});
  }
  const Qwen2MoeBlock block(4, moe, std::move(w));
  const Tensor x = Tensor::full({2, 4}, 0.5f);
  EXPECT_STUB_THROWS_TODO("ch3.3", block.forward_per_token(x));
  EXPECT_STUB_THROWS_TODO("ch3.3", block.forward(x));
  const auto dir = testing::data_dir() / "models" / "tiny-qwen2-moe";
  const Checkpoint checkpoint = Checkpoint::open(dir);
  const Qwen2Config config = load_qwen2_config(dir / "config.json");
  EXPECT_STUB_THROWS_TODO("ch3.3", load_qwen2_moe_weights(checkpoint, config, 0));
  EXPECT_STUB_THROWS_TODO("ch3.3", load_moe_layers(checkpoint, config));
}

}  // namespace
}  // namespace tinyllm
