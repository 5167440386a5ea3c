// One model step of the engine: which rows of the activations belong to which sequence, where
// their positions start, and which caches they read and append to.
//
// A step runs M = sum of B_g x L_g activation rows through every weight matrix at once (the point
// of batching: the weights are read once for all of them). The rows come in groups; a group is one
// set of per-layer caches holding B_g rows, each feeding L_g new tokens at positions offset_g ..:
//
//   forward(tokens B x L', offset, caches)       one group:  B rows of L' tokens
//   forward_sequences(tokens, caches) of R seqs  R groups:   1 row of L_r tokens each
//   forward_paged / forward_pages of R seqs      R paged groups: 1 row of L_r tokens each, its
//                                                caches pages of a pool (chapter 3.1)
//
//   activation rows:  [ g0 b0 l0 .. g0 b0 l_{L-1} | g0 b1 .. | g1 b0 .. | .. ]
#pragma once

#include <cstdint>
#include <vector>

#include <tinyllm/ch2_1_kv_cache/kv_cache.hpp>
#include <tinyllm/ch3_1_paged_kv_cache/page_pool.hpp>

#include "tinyllm/token.hpp"

namespace tinyllm::engine {

/// One sequence on pages of a pool: page ids per layer, in logical order (position p of layer i
/// lives in page pages[i][p / page_size], slot p % page_size), already covering every position the
/// step writes. A step writes the new keys and values into those slots; it never allocates.
struct PagedSequence {
  int64_t offset = 0;                       // positions cached before the step
  std::vector<std::vector<int32_t>> pages;  // [layer] -> page ids
};

struct StepGroup {
  std::vector<KvCache>* caches = nullptr;  // dense: one per layer, each with `batch` rows
  int64_t batch = 1;                       // B_g
  int64_t length = 1;                      // L_g new tokens per row
  int64_t offset = 0;                      // positions cached per row before the step
  int64_t first_row = 0;                   // its first activation row
  PagePool* pool = nullptr;                // paged (caches null, batch 1): the pool of its pages
  const PagedSequence* paged = nullptr;
};

struct Step {
  std::vector<StepGroup> groups;
  TokenIds ids;      // M ids, in activation-row order
  int64_t rows = 0;  // M

  /// The last activation row of every (group, row b): what forward_last keeps.
  std::vector<int64_t> last_rows() const {
    std::vector<int64_t> out;
    for (const StepGroup& g : groups) {
      for (int64_t b = 0; b < g.batch; ++b) out.push_back(g.first_row + (b + 1) * g.length - 1);
    }
    return out;
  }
};

}  // namespace tinyllm::engine
