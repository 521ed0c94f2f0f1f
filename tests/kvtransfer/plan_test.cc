#include <gtest/gtest.h>

#include "kvtransfer/transport.h"

namespace pd::kvtransfer {
namespace {

TEST(PlanTest, CoalescesAdjacentDescs) {
  const std::vector<Desc> in = {{0, 0, 10}, {0, 10, 5}, {0, 20, 5}, {1, 25, 5}, {1, 30, 0},
                                {1, 30, 2}};
  const auto out = CoalesceDescs(in);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].length, 15u);
  EXPECT_EQ(out[1].offset, 20u);
  EXPECT_EQ(out[2].arena, 1u);
  EXPECT_EQ(out[2].length, 7u);
}

TEST(PlanTest, PairsStreamsByteForByte) {
  const std::vector<Desc> l = {{0, 0, 10}, {0, 100, 6}};
  const std::vector<Desc> r = {{0, 50, 4}, {0, 70, 12}};
  auto s = PairDescs(l, r);
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->size(), 3u);
  EXPECT_EQ((*s)[0].length, 4u);
  EXPECT_EQ((*s)[1].local_offset, 4u);
  EXPECT_EQ((*s)[1].remote_offset, 70u);
  EXPECT_EQ((*s)[1].length, 6u);
  EXPECT_EQ((*s)[2].local_offset, 100u);
  EXPECT_EQ((*s)[2].remote_offset, 76u);
  EXPECT_FALSE(PairDescs(l, {{0, 0, 15}}).ok());
}

TEST(PlanTest, ChecksDescsAgainstArenas) {
  const std::vector<ArenaInfo> arenas = {{100, MemoryKind::kHost}};
  const std::vector<Desc> ok = {{0, 0, 100}}, past = {{0, 50, 51}}, arena = {{1, 0, 1}},
                          wrap = {{0, ~0ull, 2}};
  EXPECT_TRUE(CheckDescs(ok, arenas, "local").ok());
  EXPECT_EQ(CheckDescs(past, arenas, "local").code(), StatusCode::kOutOfRange);
  EXPECT_EQ(CheckDescs(arena, arenas, "remote").code(), StatusCode::kOutOfRange);
  EXPECT_EQ(CheckDescs(wrap, arenas, "remote").code(), StatusCode::kOutOfRange);
}

TEST(MetadataTest, RoundTripAndRejects) {
  AgentMetadata md{"decode-0", 123456, 99, "tcp", {"10.0.0.1:5000", "10.0.1.1:5000"},
                   {{1 << 20, MemoryKind::kHost}}};
  auto d = DecodeMetadata(EncodeMetadata(md));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->name, "decode-0");
  EXPECT_EQ(d->incarnation, 123456u);
  EXPECT_EQ(d->compat_hash, 99u);
  EXPECT_EQ(d->addrs.size(), 2u);
  EXPECT_EQ(d->arenas[0].bytes, 1u << 20);
  EXPECT_FALSE(DecodeMetadata("garbage").ok());
  std::string v2 = EncodeMetadata(md);
  v2[6] = '2';  // the version digit (replace() trips a GCC -O3 -Wrestrict false positive)
  EXPECT_EQ(DecodeMetadata(v2).status().code(), StatusCode::kFailedPrecondition);
  const std::string full = EncodeMetadata(md);
  EXPECT_FALSE(DecodeMetadata(full.substr(0, full.size() - 4)).ok());
}

}  // namespace
}  // namespace pd::kvtransfer
