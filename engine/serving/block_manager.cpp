#include "engine/serving/block_manager.hpp"

#include <algorithm>
#include <string>

#include "tinyllm/errors.hpp"

namespace tinyllm::engine {
namespace {

constexpr uint64_t kRootHash = 0x6a09e667f3bcc908ULL;  // the "parent" of a sequence's first block

// splitmix64's finalizer: every input bit reaches every output bit.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

BlockManager::BlockManager(PagePool& pool, int64_t layers, bool prefix_cache)
    : pool_(pool), layers_(layers), prefix_cache_(prefix_cache) {
  if (layers < 1 || pool.max_pages() < layers) {
    throw InvalidArgument(
        "BlockManager: the pool must be bounded and hold at least one page per "
        "layer (" +
        std::to_string(layers) + "), it has max_pages = " + std::to_string(pool.max_pages()));
  }
}

BlockManager::~BlockManager() {
  clear_cache();
}

uint64_t BlockManager::hash_block(uint64_t parent, const TokenIds& tokens, int64_t block) const {
  uint64_t h = mix(parent);
  const int64_t size = pool_.page_size();
  for (int64_t p = block * size; p < (block + 1) * size; ++p) {
    h = mix(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(tokens[static_cast<size_t>(p)])) +
                 0x9e3779b97f4a7c15ULL));
  }
  return h;
}

int64_t BlockManager::unused_pool_blocks() const {
  return (pool_.free_pages() + pool_.max_pages() - pool_.num_pages()) / layers_;
}

int64_t BlockManager::available_blocks() const {
  return unused_pool_blocks() + static_cast<int64_t>(lru_.size());
}

int64_t BlockManager::match_prefix(BlockTable& table, const TokenIds& tokens, int64_t limit) {
  if (!table.blocks.empty() || table.positions != 0) {
    throw InvalidArgument("BlockManager::match_prefix: the table must be empty");
  }
  table.last_hash = kRootHash;
  if (!prefix_cache_) return 0;
  const int64_t size = pool_.page_size();
  const int64_t full = std::min<int64_t>(limit, static_cast<int64_t>(tokens.size())) / size;
  for (int64_t b = 0; b < full; ++b) {
    const uint64_t h = hash_block(table.last_hash, tokens, b);
    const auto it = cached_.find(h);
    if (it == cached_.end()) break;
    Block& block = blocks_[static_cast<size_t>(it->second)];
    if (!std::equal(block.tokens.begin(), block.tokens.end(), tokens.begin() + b * size)) break;
    if (block.refs++ == 0) lru_.erase(block.lru);
    table.blocks.push_back(it->second);
    table.last_hash = h;
  }
  table.hashed = static_cast<int64_t>(table.blocks.size());
  table.positions = table.hashed * size;
  note_peak();
  return table.positions;
}

void BlockManager::note_peak() {
  stats_.peak_pages_in_use = std::max(stats_.peak_pages_in_use, pool_.pages_in_use());
  stats_.peak_pages_held = std::max(stats_.peak_pages_held, pool_.pages_in_use() - cached_pages());
}

void BlockManager::count_lookup(int64_t query_tokens, int64_t hit_tokens) {
  stats_.query_tokens += query_tokens;
  stats_.hit_tokens += hit_tokens;
}

int64_t BlockManager::room_for(const BlockTable& table, int64_t wanted, int64_t keep) const {
  const auto held = static_cast<int64_t>(table.blocks.size());
  const int64_t extra = std::max<int64_t>(available_blocks() - keep, 0);
  return std::min(wanted, (held + extra) * pool_.page_size());
}

bool BlockManager::grow(BlockTable& table, int64_t positions, int64_t keep) {
  const int64_t needed = blocks_for(positions) - static_cast<int64_t>(table.blocks.size());
  if (needed <= 0) return true;
  if (available_blocks() - keep < needed) return false;
  for (int64_t i = 0; i < needed; ++i) table.blocks.push_back(take_block());
  note_peak();
  return true;
}

int32_t BlockManager::take_block() {
  int32_t id;
  if (unused_pool_blocks() > 0) {
    if (unused_ids_.empty()) {
      unused_ids_.push_back(static_cast<int32_t>(blocks_.size()));
      blocks_.emplace_back();
    }
    id = unused_ids_.back();
    unused_ids_.pop_back();
    for (int64_t l = 0; l < layers_; ++l)
      blocks_[static_cast<size_t>(id)].pages.push_back(pool_.allocate());
  } else {  // grow() checked that a cached free block exists
    id = lru_.front();
    forget(id);
    ++stats_.evictions;
  }
  blocks_[static_cast<size_t>(id)].refs = 1;
  return id;
}

void BlockManager::forget(int32_t id) {
  Block& block = blocks_[static_cast<size_t>(id)];
  lru_.erase(block.lru);
  cached_.erase(*block.hash);
  block.hash.reset();
  block.tokens.clear();
}

void BlockManager::drop_block(int32_t id) {
  Block& block = blocks_[static_cast<size_t>(id)];
  for (const int32_t page : block.pages) pool_.free(page);
  block.pages.clear();
  unused_ids_.push_back(id);
}

void BlockManager::written(BlockTable& table, const TokenIds& tokens, int64_t positions) {
  table.positions = positions;
  if (!prefix_cache_) return;
  const int64_t size = pool_.page_size();
  for (; (table.hashed + 1) * size <= positions; ++table.hashed) {
    const uint64_t h = hash_block(table.last_hash, tokens, table.hashed);
    table.last_hash = h;
    if (cached_.count(h) != 0)
      continue;  // another sequence's block holds these ids: ours stays private
    const int32_t id = table.blocks[static_cast<size_t>(table.hashed)];
    Block& block = blocks_[static_cast<size_t>(id)];
    block.hash = h;
    block.tokens.assign(tokens.begin() + table.hashed * size,
                        tokens.begin() + (table.hashed + 1) * size);
    cached_[h] = id;
  }
}

void BlockManager::release(BlockTable& table) {
  for (auto it = table.blocks.rbegin(); it != table.blocks.rend(); ++it) {
    Block& block = blocks_[static_cast<size_t>(*it)];
    if (--block.refs > 0) continue;
    if (block.hash) {
      block.lru = lru_.insert(lru_.end(), *it);
    } else {
      drop_block(*it);
    }
  }
  table = BlockTable{};
}

void BlockManager::clear_cache() {
  while (!lru_.empty()) {
    const int32_t id = lru_.front();
    forget(id);
    drop_block(id);
  }
}

std::vector<std::vector<int32_t>> BlockManager::page_table(const BlockTable& table) const {
  std::vector<std::vector<int32_t>> pages(static_cast<size_t>(layers_));
  for (size_t l = 0; l < pages.size(); ++l) {
    pages[l].reserve(table.blocks.size());
    for (const int32_t id : table.blocks)
      pages[l].push_back(blocks_[static_cast<size_t>(id)].pages[l]);
  }
  return pages;
}

}  // namespace tinyllm::engine
