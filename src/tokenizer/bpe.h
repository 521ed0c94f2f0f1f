// Byte-level BPE model: merge-rank table over token ids, with a word cache.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pd::tok {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using BytesToId = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Open-addressing map (id_a, id_b) -> (rank, merged id).
class MergeTable {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    int32_t rank = 0;
    int32_t id = 0;
  };
  static constexpr uint64_t kEmpty = ~0ULL;

  void Reserve(size_t n);
  // Later inserts of the same pair replace earlier ones (as HF's HashMap collect does).
  void Insert(int32_t a, int32_t b, int32_t rank, int32_t id);
  const Entry* Find(int32_t a, int32_t b) const {
    const uint64_t key = Key(a, b);
    for (size_t i = Slot(key);; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t Slot(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ULL >> 20) & mask_; }
  std::vector<Entry> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

class BpeModel {
 public:
  struct Config {
    bool ignore_merges = false;
    std::optional<int32_t> unk_id;
    bool fuse_unk = false;
  };
  // byte_ids[b]: id of the single-byte token for byte b (-1 if absent);
  // vocab: raw token bytes -> id (for ignore_merges); merges: pair -> (rank, merged id).
  BpeModel(Config config, std::array<int32_t, 256> byte_ids, BytesToId vocab, MergeTable merges);

  // Appends the ids of one pre-tokenized piece (raw bytes). Thread-safe.
  void EncodeWord(std::string_view word, std::vector<int32_t>& out) const;
  // Uncached merge, exposed for tests; force_heap selects the O(n log n) path for any length.
  void MergeWord(std::string_view word, std::vector<int32_t>& out, bool force_heap) const;

  const BytesToId& vocab() const { return vocab_; }

 private:
  void InitialSymbols(std::string_view word, std::vector<int32_t>& syms) const;
  void MergeSmall(std::vector<int32_t>& syms) const;
  void MergeHeap(std::vector<int32_t>& syms) const;

  static constexpr size_t kShards = 64;
  static constexpr size_t kShardCapacity = 2048;
  static constexpr size_t kMaxCachedWord = 256;
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
  };

  Config config_;
  std::array<int32_t, 256> byte_ids_;
  BytesToId vocab_;
  MergeTable merges_;
  std::unique_ptr<Shard[]> cache_;
};

}  // namespace pd::tok
