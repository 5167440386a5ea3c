// Continuous batching on paged caches (chapter 3.2) against dense ones (chapter 2.6), on the
// embedded tiny-qwen2 (8 layers, H 2, D 64, context 512) with chapter 2.1's f32 Week 2 weights:
// 16 greedy requests of mixed prompt lengths (16 to 300 tokens) and 8 to 64 new tokens each,
// through 8 slots. Reported per run:
//   tok/s            generated tokens per second of the whole run (prefill included)
//   kv_peak_MB       paged: the most pages in use at once, in MB (K and V, every layer)
//   kv_dense_MB      what dense per-slot preallocation of the whole context takes: 8 slots x 512
//                    positions x 8 layers x 2 x H x D floats
//   kv_ratio         kv_peak_MB / kv_dense_MB
// Run (Release, -DTINYLLM_NATIVE=ON):
//   build/<dir>/bench/paged_batching_bench --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <tinyllm/ch2_1_kv_cache/qwen2_week2.hpp>
#include <tinyllm/ch2_6_continuous_batching/batched_model.hpp>
#include <tinyllm/ch2_6_continuous_batching/continuous_batching.hpp>
#include <tinyllm/ch3_2_paged_attention/paged_batching.hpp>
#include <tinyllm/ch3_2_paged_attention/paged_model.hpp>
#include <vector>

namespace {

using namespace tinyllm;

constexpr int64_t kSlots = 8, kPageSize = 16;

const Qwen2ModelWeek2& model() {
  static const Qwen2ModelWeek2 m = load_qwen2_week2(
      std::filesystem::path(__FILE__).parent_path().parent_path() / "data/models/tiny-qwen2");
  return m;
}

std::vector<BatchRequest> requests() {
  std::mt19937 rng(16);
  std::uniform_int_distribution<int64_t> prompt(16, 300), fresh(8, 64);
  std::uniform_int_distribution<TokenId> id(0, 4000);
  std::vector<BatchRequest> out;
  for (int i = 0; i < 16; ++i) {
    BatchRequest r;
    r.prompt.resize(static_cast<size_t>(prompt(rng)));
    for (TokenId& t : r.prompt) t = id(rng);
    r.max_new_tokens = fresh(rng);
    out.push_back(std::move(r));
  }
  return out;
}

// Arg: paged (0/1).
void BM_Batch(benchmark::State& state) {
  const bool paged = state.range(0) != 0;
  const std::vector<BatchRequest> work = requests();
  const Qwen2Config& c = model().config();
  const double page_mb = 2.0 * static_cast<double>(c.num_key_value_heads * kPageSize * c.head_dim) *
                         sizeof(float) / 1e6;
  int64_t tokens = 0, peak_pages = 0;
  for (auto _ : state) {
    std::vector<RequestOutput> out;
    if (paged) {
      const Qwen2PagedAttentionModel m(model(), kPageSize);
      PagedContinuousBatcher batcher(m, kSlots);
      for (const BatchRequest& r : work) batcher.submit(r);
      out = batcher.run([&](const BatchProgress&) {
        peak_pages = std::max(peak_pages, m.page_pool().pages_in_use());
      });
    } else {
      const BatchedWeek2Model m(model());
      ContinuousBatcher batcher(m, kSlots);
      for (const BatchRequest& r : work) batcher.submit(r);
      out = batcher.run();
    }
    for (const RequestOutput& o : out) tokens += static_cast<int64_t>(o.tokens.size());
  }
  state.counters["tok/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  if (paged) {
    const double dense =
        static_cast<double>(kSlots * c.max_position_embeddings / kPageSize * c.num_hidden_layers) *
        page_mb;
    state.counters["kv_peak_MB"] = static_cast<double>(peak_pages) * page_mb;
    state.counters["kv_dense_MB"] = dense;
    state.counters["kv_ratio"] = static_cast<double>(peak_pages) * page_mb / dense;
  }
  state.SetLabel(paged ? "ch3.2 paged (pages of 16)" : "ch2.6 dense (BatchedWeek2Model)");
}

BENCHMARK(BM_Batch)->Arg(0)->Arg(1)->ArgName("paged")->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
