#include "engine/model/attention.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include <tinyllm/ch2_3_fast_qmatmul/kernel_path.hpp>
#include <tinyllm/ch2_5_parallel_flash_attention/parallel_flash_attention.hpp>

namespace tinyllm::engine {
namespace {

constexpr int kTile = 32;  // queries per prefill work item

// Rows [row0, row0 + rows) and columns [col0, col0 + cols) of a 2-D tensor, as B x L x heads x D.
Tensor block(const Tensor& t, int64_t row0, int64_t col0, const StepGroup& g, int64_t head_dim,
             int64_t cols) {
  Tensor out({g.batch * g.length, cols});
  out.rows() = t.rows().block(row0, col0, g.batch * g.length, cols);
  return out.reshape({g.batch, g.length, cols / head_dim, head_dim});
}

// One unit of attention work: a decode (row, KV head) or a prefill (row, query head, tile).
struct WorkItem {
  const KvCache* cache;
  int64_t b;       // row within the cache
  int64_t head;    // KV head (decode) or query head (prefill)
  int64_t row0;    // first activation row of the item's queries
  int64_t tile0;   // first query of the tile within its row (prefill)
  int64_t length;  // L_g
};

}  // namespace

Tensor step_attention(const Qwen2Config& config, const RoPE& rope, const Tensor& qkv,
                      const Step& step, size_t layer, int threads) {
  const int64_t hq = config.num_attention_heads, h = config.num_key_value_heads;
  const int64_t d = config.head_dim, group = hq / h, width = hq * d;
  Tensor q({step.rows, width});  // rotated queries, activation-row order
  std::vector<WorkItem> items;
  for (const StepGroup& g : step.groups) {
    const int64_t rows = g.batch * g.length;
    const Tensor gq = rope.forward(block(qkv, g.first_row, 0, g, d, width), g.offset);
    const Tensor gk = rope.forward(block(qkv, g.first_row, width, g, d, h * d), g.offset);
    const Tensor gv = block(qkv, g.first_row, width + h * d, g, d, h * d);
    q.rows().middleRows(g.first_row, rows) = gq.reshape({rows, width}).rows();
    KvCache& cache = (*g.caches)[layer];
    cache.append(gk.transpose(1, 2), gv.transpose(1, 2));  // B x H x L x D each
    for (int64_t b = 0; b < g.batch; ++b) {
      const int64_t row0 = g.first_row + b * g.length;
      if (g.length == 1) {
        for (int64_t j = 0; j < h; ++j) items.push_back({&cache, b, j, row0, 0, 1});
        continue;
      }
      for (int64_t i = 0; i < hq; ++i) {
        for (int64_t t = 0; t < g.length; t += kTile) {
          items.push_back({&cache, b, i, row0, t, g.length});
        }
      }
    }
  }

  Tensor out({step.rows, width});
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const auto count = static_cast<int64_t>(items.size());
#pragma omp parallel for schedule(dynamic) num_threads(resolve_threads(threads))
  for (int64_t n = 0; n < count; ++n) {
    const WorkItem& w = items[static_cast<size_t>(n)];
    const int64_t S = w.cache->offset();
    if (w.length == 1) {  // decode: the g query heads of KV head j as g rows of D floats
      const int64_t first = w.row0 * width + w.head * group * d;
      FlashState state(group, d);
      attend_kv_range(q.data() + first, d, w.cache->keys_of(w.b, w.head).data(),
                      w.cache->values_of(w.b, w.head).data(), d, 0, S, scale, HeadMask{}, 0, kTile,
                      state);
      state.finalize(out.data() + first, d);
      continue;
    }
    // prefill: a tile of queries of one head, bottom-right causal mask; q and out have row stride
    // `width`
    const int64_t rows = std::min<int64_t>(kTile, w.length - w.tile0);
    const int64_t first = (w.row0 + w.tile0) * width + w.head * d;
    const HeadMask causal{AttentionMask::Kind::Causal, S - w.length, nullptr, 0, 0};
    FlashState state(rows, d);
    attend_kv_range(q.data() + first, width, w.cache->keys_of(w.b, w.head / group).data(),
                    w.cache->values_of(w.b, w.head / group).data(), d, 0, S, scale, causal, w.tile0,
                    kTile, state);
    state.finalize(out.data() + first, width);
  }
  return out;
}

}  // namespace tinyllm::engine
