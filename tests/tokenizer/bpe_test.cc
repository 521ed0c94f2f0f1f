#include "tokenizer/bpe.h"

#include <gtest/gtest.h>

#include <random>

namespace pd::tok {
namespace {

// A synthetic model over bytes 'a'..'d' with random merges; the quadratic and the heap merge
// loops must give identical results (they implement the same leftmost-lowest-rank rule).
TEST(Bpe, HeapAndQuadraticMergeAgree) {
  std::mt19937 rng(7);
  std::array<int32_t, 256> byte_ids;
  byte_ids.fill(-1);
  std::vector<std::string> tokens;
  BytesToId vocab;
  for (char c = 'a'; c <= 'd'; ++c) {
    byte_ids[static_cast<unsigned char>(c)] = static_cast<int32_t>(tokens.size());
    vocab[std::string(1, c)] = static_cast<int32_t>(tokens.size());
    tokens.emplace_back(1, c);
  }
  MergeTable merges;
  merges.Reserve(64);
  for (int rank = 0; rank < 300; ++rank) {
    std::uniform_int_distribution<size_t> pick(0, tokens.size() - 1);
    const std::string a = tokens[pick(rng)], b = tokens[pick(rng)];
    if (a.size() + b.size() > 8 || vocab.count(a + b)) continue;
    const auto id = static_cast<int32_t>(tokens.size());
    tokens.push_back(a + b);
    vocab[a + b] = id;
    merges.Insert(vocab[a], vocab[b], rank, id);
  }
  BpeModel model({}, byte_ids, vocab, std::move(merges));
  for (int i = 0; i < 3000; ++i) {
    std::uniform_int_distribution<int> len(1, 120), ch(0, 3);
    std::string w;
    for (int n = len(rng); n > 0; --n) w.push_back(static_cast<char>('a' + ch(rng)));
    std::vector<int32_t> small, heap, cached;
    model.MergeWord(w, small, /*force_heap=*/false);
    model.MergeWord(w, heap, /*force_heap=*/true);
    model.EncodeWord(w, cached);
    ASSERT_EQ(small, heap) << w;
    ASSERT_EQ(small, cached) << w;
    std::string joined;
    for (int32_t id : small) joined += tokens[id];
    ASSERT_EQ(joined, w);
  }
}

TEST(Bpe, LeftmostMergeWinsOnTies) {
  std::array<int32_t, 256> byte_ids;
  byte_ids.fill(-1);
  byte_ids['a'] = 0;
  BytesToId vocab{{"a", 0}, {"aa", 1}};
  MergeTable merges;
  merges.Reserve(4);
  merges.Insert(0, 0, 0, 1);
  BpeModel model({}, byte_ids, vocab, std::move(merges));
  std::vector<int32_t> out;
  model.MergeWord("aaa", out, false);
  EXPECT_EQ(out, (std::vector<int32_t>{1, 0}));
  out.clear();
  model.MergeWord("aaa", out, true);
  EXPECT_EQ(out, (std::vector<int32_t>{1, 0}));
}

}  // namespace
}  // namespace pd::tok
