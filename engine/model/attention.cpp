#include "engine/model/attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <tinyllm/ch2_3_fast_qmatmul/kernel_path.hpp>
#include <tinyllm/ch2_5_parallel_flash_attention/parallel_flash_attention.hpp>

#include "tinyllm/errors.hpp"

namespace tinyllm::engine {
namespace {

constexpr int64_t kKeyTile = 32;    // keys per online-softmax step, tiles start at position 0
constexpr int64_t kQueryTile = 32;  // queries per prefill work item
constexpr int64_t kMaxHeadDim = 512;

// Rows [row0, row0 + rows) and columns [col0, col0 + cols) of a 2-D tensor, as B x L x heads x D.
Tensor block(const Tensor& t, int64_t row0, int64_t col0, const StepGroup& g, int64_t head_dim,
             int64_t cols) {
  Tensor out({g.batch * g.length, cols});
  out.rows() = t.rows().block(row0, col0, g.batch * g.length, cols);
  return out.reshape({g.batch, g.length, cols / head_dim, head_dim});
}

// 16 floats as one value: AVX-512 registers in attend_row_avx512, pairs of SSE registers in the
// portable build, the same lane-wise arithmetic either way.
typedef float Floats16 __attribute__((vector_size(64)));

// a . b over n floats; the same operations in the same order for every call with the same n.
template <bool kBy16>
[[gnu::always_inline]] inline float dot(const float* a, const float* b, int64_t n) {
  if constexpr (kBy16) {  // 16 lanes, then a fixed halving tree
    Floats16 acc = {};
    for (int64_t j = 0; j < n; j += 16) {
      Floats16 x, y;
      std::memcpy(&x, a + j, sizeof(x));
      std::memcpy(&y, b + j, sizeof(y));
      acc += x * y;
    }
    float lanes[16];
    std::memcpy(lanes, &acc, sizeof(lanes));
    for (int width = 8; width >= 1; width /= 2) {
      for (int i = 0; i < width; ++i) lanes[i] += lanes[i + width];
    }
    return lanes[0];
  } else {
    float total = 0.0f;
    for (int64_t j = 0; j < n; ++j) total += a[j] * b[j];
    return total;
  }
}

// y += p x over n floats.
template <bool kBy16>
[[gnu::always_inline]] inline void axpy(float p, const float* x, float* y, int64_t n) {
  if constexpr (kBy16) {
    for (int64_t j = 0; j < n; j += 16) {
      Floats16 xs, ys;
      std::memcpy(&xs, x + j, sizeof(xs));
      std::memcpy(&ys, y + j, sizeof(ys));
      ys += p * xs;
      std::memcpy(y + j, &ys, sizeof(ys));
    }
  } else {
    for (int64_t j = 0; j < n; ++j) y[j] += p * x[j];
  }
}

// Where a row's cached keys (or values) lie: pages of page_size positions, S x D rows each, in
// logical order (position p at pages[p / page_size] + (p % page_size) * D). A dense cache is one
// page as long as the context.
struct RowSource {
  const float* const* key_pages;
  const float* const* value_pages;
  int64_t page_size;
};

// One query row against keys and values [0, visible), written to out (D): online softmax over key
// tiles [0, 32), [32, 64), ... The operations, and their order, depend only on the row's own query,
// the cached keys and values and `visible` (its position + 1), never on the rest of the step nor on
// where the keys lie (one dense buffer or pages of any size): a token's attention is bitwise the
// same whether it was decoded alone or in a batch, whatever chunks its prompt was prefilled in, and
// on dense or paged caches (chapter 2.5's kernel, tiles of queries through Eigen's GEMM, rounds
// differently with the tile's shape).
template <bool kBy16>
[[gnu::always_inline]] inline void attend_row_body(const float* q, const RowSource& src,
                                                   int64_t dim, int64_t visible, float scale,
                                                   float* out) {
  float acc[kMaxHeadDim] = {};
  float s[kKeyTile];
  const float* k[kKeyTile];
  const float* v[kKeyTile];
  float m = -std::numeric_limits<float>::infinity(), l = 0.0f;
  for (int64_t c0 = 0; c0 < visible; c0 += kKeyTile) {
    const int64_t cols = std::min(kKeyTile, visible - c0);
    int64_t page = c0 / src.page_size, slot = c0 % src.page_size;
    for (int64_t c = 0; c < cols; ++c) {  // the tile's rows, walking across page ends
      k[c] = src.key_pages[page] + slot * dim;
      v[c] = src.value_pages[page] + slot * dim;
      if (++slot == src.page_size) {
        ++page;
        slot = 0;
      }
    }
    float tile_max = -std::numeric_limits<float>::infinity();
    for (int64_t c = 0; c < cols; ++c) {
      s[c] = dot<kBy16>(q, k[c], dim) * scale;
      tile_max = std::max(tile_max, s[c]);
    }
    const float m_new = std::max(m, tile_max);
    const float correction = std::exp(m - m_new);  // 0 on the first tile (m = -inf)
    for (int64_t c = 0; c < cols; ++c) s[c] -= m_new;
    exp_inplace(s, cols);
    float sum = 0.0f;
    for (int64_t c = 0; c < cols; ++c) sum += s[c];
    l = correction * l + sum;
    m = m_new;
    for (int64_t j = 0; j < dim; ++j) acc[j] *= correction;
    for (int64_t c = 0; c < cols; ++c) axpy<kBy16>(s[c], v[c], acc, dim);
  }
  const float inv = 1.0f / l;  // l >= 1: the row sees its own key, the largest term is exp(0)
  for (int64_t j = 0; j < dim; ++j) out[j] = acc[j] * inv;
}

void attend_row_portable(const float* q, const RowSource& src, int64_t dim, int64_t visible,
                         float scale, float* out) {
  attend_row_body<false>(q, src, dim, visible, scale, out);
}

[[gnu::target("avx512f,avx512vl,avx512dq,fma")]] void attend_row_avx512(
    const float* q, const RowSource& src, int64_t dim, int64_t visible, float scale, float* out) {
  attend_row_body<true>(q, src, dim, visible, scale, out);
}

using AttendRowFn = void (*)(const float*, const RowSource&, int64_t, int64_t, float, float*);

// AVX-512 where the CPU has it (chapter 2.5's choice, so its ISA switch reaches this too) and D is
// a multiple of 16.
AttendRowFn attend_row_for(int64_t dim) {
  const bool avx512 = dim % 16 == 0 && active_flash_isa() == FlashIsa::Avx512;
  return avx512 ? attend_row_avx512 : attend_row_portable;
}

// The page lists of one (sequence row, KV head): base pointers of its keys and values in every
// page (a dense cache: one pointer each).
struct PageList {
  std::vector<const float*> keys, values;
  int64_t page_size;
};

// One unit of attention work: queries [first, first + count) of one sequence row and one query
// head, the first at cache position `position`.
struct WorkItem {
  size_t list;       // the PageList of its row and KV head
  int64_t head;      // query head
  int64_t row;       // activation row of the first query
  int64_t position;  // its position in the sequence (it sees keys [0, position])
  int64_t count;
};

// Writes rows of new keys or values (L x H x D, rotated keys or values of one paged sequence) into
// its pages at positions offset .. offset + L - 1 of layer `layer`.
void write_pages(PagePool& pool, const PagedSequence& seq, size_t layer, const Tensor& rows,
                 bool values) {
  const int64_t length = rows.dim(0), h = rows.dim(1), d = rows.dim(2);
  const int64_t page_size = pool.page_size();
  const std::vector<int32_t>& pages = seq.pages[layer];
  for (int64_t l = 0; l < length; ++l) {
    const int64_t position = seq.offset + l;
    const int32_t page = pages[static_cast<size_t>(position / page_size)];
    float* base = values ? pool.values(page) : pool.keys(page);
    for (int64_t head = 0; head < h; ++head) {
      std::copy_n(rows.data() + (l * h + head) * d, d,
                  base + (head * page_size + position % page_size) * d);
    }
  }
}

}  // namespace

Tensor step_attention(const Qwen2Config& config, const RoPE& rope, const Tensor& qkv,
                      const Step& step, size_t layer, int threads) {
  const int64_t hq = config.num_attention_heads, h = config.num_key_value_heads;
  const int64_t d = config.head_dim, group = hq / h, width = hq * d;
  if (d > kMaxHeadDim) {
    throw ConfigError("the engine's attention supports head_dim <= " + std::to_string(kMaxHeadDim) +
                      ", got " + std::to_string(d));
  }
  Tensor q({step.rows, width});  // rotated queries, activation-row order
  std::vector<PageList> lists;
  std::vector<WorkItem> items;
  for (const StepGroup& g : step.groups) {
    const int64_t rows = g.batch * g.length;
    const Tensor gq = rope.forward(block(qkv, g.first_row, 0, g, d, width), g.offset);
    const Tensor gk = rope.forward(block(qkv, g.first_row, width, g, d, h * d), g.offset);
    const Tensor gv = block(qkv, g.first_row, width + h * d, g, d, h * d);
    q.rows().middleRows(g.first_row, rows) = gq.reshape({rows, width}).rows();
    const size_t first_list = lists.size();
    if (g.paged != nullptr) {  // batch 1: its keys go into its pages, read where they lie
      write_pages(*g.pool, *g.paged, layer, gk.reshape({g.length, h, d}), false);
      write_pages(*g.pool, *g.paged, layer, gv.reshape({g.length, h, d}), true);
      const int64_t page_size = g.pool->page_size();
      for (int64_t kv = 0; kv < h; ++kv) {
        PageList list{{}, {}, page_size};
        for (const int32_t page : g.paged->pages[layer]) {
          list.keys.push_back(g.pool->keys(page) + kv * page_size * d);
          list.values.push_back(g.pool->values(page) + kv * page_size * d);
        }
        lists.push_back(std::move(list));
      }
    } else {
      KvCache& cache = (*g.caches)[layer];
      cache.append(gk.transpose(1, 2), gv.transpose(1, 2));        // B x H x L x D each
      const int64_t whole = std::max<int64_t>(cache.offset(), 1);  // one page: the whole cache
      for (int64_t b = 0; b < g.batch; ++b) {
        for (int64_t kv = 0; kv < h; ++kv) {
          lists.push_back(
              PageList{{cache.keys_of(b, kv).data()}, {cache.values_of(b, kv).data()}, whole});
        }
      }
    }
    for (int64_t b = 0; b < g.batch; ++b) {
      for (int64_t i = 0; i < hq; ++i) {
        for (int64_t t = 0; t < g.length; t += kQueryTile) {
          const int64_t row = g.first_row + b * g.length + t;
          items.push_back({first_list + static_cast<size_t>(b * h + i / group), i, row,
                           g.offset + t, std::min(kQueryTile, g.length - t)});
        }
      }
    }
  }

  Tensor out({step.rows, width});
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const AttendRowFn attend_row = attend_row_for(d);
  const auto count = static_cast<int64_t>(items.size());
#pragma omp parallel for schedule(dynamic) num_threads(resolve_threads(threads))
  for (int64_t n = 0; n < count; ++n) {
    const WorkItem& w = items[static_cast<size_t>(n)];
    const PageList& list = lists[w.list];
    const RowSource src{list.keys.data(), list.values.data(), list.page_size};
    for (int64_t t = 0; t < w.count; ++t) {
      const int64_t at = (w.row + t) * width + w.head * d;
      attend_row(q.data() + at, src, d, w.position + t + 1, scale, out.data() + at);
    }
  }
  return out;
}

}  // namespace tinyllm::engine
