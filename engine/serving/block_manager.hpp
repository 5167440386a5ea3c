// The serving core's block manager for paged caches (nano-vllm's BlockManager, vLLM's
// KVCacheManager), over chapter 3.1's PagePool.
//
// A block is one page on every layer: block b of a sequence holds positions [b P, (b + 1) P) of
// all its layers (P = page_size), so a pool of N pages holds N / layers blocks. A sequence's
// BlockTable lists its blocks in logical order; it grows a block at a time as positions are
// written, and gives every block back when it finishes, is cancelled or is preempted.
//
// The prefix cache. Once a block is full its hash is known: hash(parent block's hash, its P token
// ids), chained so that it names the whole prefix up to its end. Full blocks are registered under
// their hash; a new sequence whose first pages of tokens hash the same takes those blocks instead
// of computing them (reference counts: one per sequence holding the block). Only full blocks are
// shared and a sequence writes only positions after the ones it found, so a shared page is never
// written. A block whose count drops to 0 keeps its pages and its hash (cached, free): it is
// evicted, least recently freed first, only when an allocation finds the pool out of pages.
//
//   request 0: [sys0][sys1][q0..]        blocks 3, 7, 2    after it ends: 3, 7 cached (free)
//   request 1: [sys0][sys1][q1..]        hits 3, 7 (refs 1), computes from position 2P on
//
// A hash is 64 bits; a hit also compares the block's own token ids, so two prefixes are confused
// only if their parents' chained hashes collide (as in nano-vllm).
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>
#include <vector>

#include <tinyllm/ch3_1_paged_kv_cache/page_pool.hpp>

#include "tinyllm/token.hpp"

namespace tinyllm::engine {

/// One sequence's blocks. Kept by the scheduler, changed only through the BlockManager.
struct BlockTable {
  std::vector<int32_t> blocks;  // block ids, logical order
  int64_t positions = 0;        // positions written (the sequence's cache offset)
  int64_t hashed = 0;           // leading blocks whose hash is known (found or registered)
  uint64_t last_hash = 0;       // the chained hash of block hashed - 1
};

/// Totals of the prefix cache and the pool, for metrics.
struct BlockStats {
  int64_t hit_tokens = 0;         // prompt positions found in the cache, over every admission
  int64_t query_tokens = 0;       // prompt positions of every admission (looked up or not)
  int64_t evictions = 0;          // cached blocks taken back for new pages
  int64_t peak_pages_in_use = 0;  // held by sequences or cached
  int64_t peak_pages_held = 0;    // held by sequences
};

class BlockManager {
 public:
  /// Blocks of `layers` pages of `pool` (which must be bounded, max_pages >= layers, and outlive
  /// the manager); prefix_cache off: no hashing, a freed block goes straight back to the pool.
  /// InvalidArgument otherwise.
  BlockManager(PagePool& pool, int64_t layers, bool prefix_cache);
  ~BlockManager();
  BlockManager(const BlockManager&) = delete;
  BlockManager& operator=(const BlockManager&) = delete;

  /// Prefix cache: an empty table takes the cached blocks that hold the first positions of
  /// `tokens`, full blocks only and at most `limit` positions; table.positions is then how many
  /// positions it need not compute. Returns them (0 with the cache off).
  int64_t match_prefix(BlockTable& table, const TokenIds& tokens, int64_t limit);
  /// Adds an admission's lookup to stats(): query_tokens positions asked, hit_tokens found.
  void count_lookup(int64_t query_tokens, int64_t hit_tokens);
  /// Makes the table hold blocks for `positions` positions, taking pages from the pool and then
  /// evicting cached free blocks, but leaving `keep` blocks available for others. False (nothing
  /// changes) if that is not possible.
  bool grow(BlockTable& table, int64_t positions, int64_t keep = 0);
  /// Positions (>= table.positions) the table could hold after grow(table, ., keep): at most
  /// `wanted`, at least what its blocks hold already.
  int64_t room_for(const BlockTable& table, int64_t wanted, int64_t keep = 0) const;
  /// The step wrote positions up to `positions` (tokens[p] the id fed at position p): full
  /// blocks get their hash and, unless a block of that hash is cached already, are registered.
  void written(BlockTable& table, const TokenIds& tokens, int64_t positions);
  /// Gives every block of the table back (last block first, so a prefix outlives its tail in the
  /// cache) and empties it.
  void release(BlockTable& table);
  /// Evicts every cached free block (its pages go back to the pool).
  void clear_cache();

  /// The table's page ids per layer, what the model's forward_pages reads.
  std::vector<std::vector<int32_t>> page_table(const BlockTable& table) const;
  /// Blocks an allocation could get now: unused pool pages / layers + cached free blocks.
  int64_t available_blocks() const;
  /// Blocks the whole pool holds.
  int64_t capacity_blocks() const { return pool_.max_pages() / layers_; }
  /// Blocks needed for `positions` positions.
  int64_t blocks_for(int64_t positions) const {
    return (positions + pool_.page_size() - 1) / pool_.page_size();
  }
  /// Pool pages held by sequences or cached.
  int64_t pages_in_use() const { return pool_.pages_in_use(); }
  /// Pool pages of cached free blocks (evictable).
  int64_t cached_pages() const { return static_cast<int64_t>(lru_.size()) * layers_; }
  bool prefix_cache() const { return prefix_cache_; }
  const BlockStats& stats() const { return stats_; }
  const PagePool& pool() const { return pool_; }

 private:
  struct Block {
    std::vector<int32_t> pages;        // one per layer; empty while the block id is unused
    int32_t refs = 0;                  // sequences holding it
    std::optional<uint64_t> hash;      // registered in cached_ under it
    TokenIds tokens;                   // its ids, when registered
    std::list<int32_t>::iterator lru;  // its place in lru_ while cached and free
  };
  /// A block for one sequence (refs 1): new pages, else the least recently freed cached block.
  int32_t take_block();
  /// Gives the pages of an unregistered or evicted block back to the pool.
  void drop_block(int32_t id);
  /// Evicts cached free block `id` (it leaves the cache; its pages stay with it).
  void forget(int32_t id);
  uint64_t hash_block(uint64_t parent, const TokenIds& tokens, int64_t block) const;
  int64_t unused_pool_blocks() const;
  /// Updates the peaks of stats() after blocks were taken.
  void note_peak();

  PagePool& pool_;
  int64_t layers_;
  bool prefix_cache_;
  std::vector<Block> blocks_;                     // block id -> block
  std::vector<int32_t> unused_ids_;               // block ids without pages
  std::unordered_map<uint64_t, int32_t> cached_;  // hash -> registered block
  std::list<int32_t> lru_;                        // cached free blocks, least recently freed first
  BlockStats stats_;
};

}  // namespace tinyllm::engine
