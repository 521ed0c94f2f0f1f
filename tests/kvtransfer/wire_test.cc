// The frame parser is the gate between network bytes and registered memory.
#include <gtest/gtest.h>

#include <random>

#include "kvtransfer/wire.h"

namespace pd::kvtransfer::wire {
namespace {

TEST(WireTest, HeaderBounds) {
  FrameHeader h = MakeHeader(FrameType::kData, 1, 2, 3, 2, 100);
  auto n = ParseHeader(h);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2u);
  h.magic ^= 1;
  EXPECT_FALSE(ParseHeader(h).ok());
  EXPECT_FALSE(ParseHeader(MakeHeader(FrameType::kData, 1, 2, 3, 0, 100)).ok());
  EXPECT_FALSE(ParseHeader(MakeHeader(FrameType::kData, 1, 2, 3, 1, 0)).ok());
  EXPECT_FALSE(ParseHeader(MakeHeader(FrameType::kData, 1, 2, 3, 1, kMaxDataPayload + 1)).ok());
  EXPECT_FALSE(ParseHeader(MakeHeader(FrameType::kData, 1, 2, 3, kMaxSegsPerFrame + 1, 10)).ok());
  EXPECT_FALSE(ParseHeader(MakeHeader(FrameType::kNotify, 1, 0, 0, 1, 10)).ok());
  EXPECT_FALSE(ParseHeader(MakeHeader(FrameType::kNotify, 1, 0, 0, 0, kMaxControlPayload + 1)).ok());
  EXPECT_FALSE(ParseHeader(MakeHeader(FrameType::kReadReq, 1, 0, 0, 2, 5)).ok());
  EXPECT_EQ(*ParseHeader(MakeHeader(FrameType::kReadReq, 1, 0, 0, 3, 0)), 6u);
  FrameHeader bad = MakeHeader(FrameType::kAck, 1, 0, 0, 0, 0);
  bad.type = 200;
  EXPECT_FALSE(ParseHeader(bad).ok());
}

TEST(WireTest, SegmentsMustLieInsideRegisteredArenas) {
  std::vector<uint8_t> a(1000), b(50);
  const std::vector<Region> regions = {{a.data(), a.size()}, {b.data(), b.size()}};
  WireSeg ok[2] = {{0, 1000, 0}, {10, 40, 1}};
  EXPECT_TRUE(ValidateSegs(ok, 2, regions, 1040).ok());
  EXPECT_FALSE(ValidateSegs(ok, 2, regions, 1039).ok());  // payload length mismatch
  WireSeg past_end = {990, 11, 0};
  EXPECT_FALSE(ValidateSegs(&past_end, 1, regions, -1).ok());
  WireSeg overflow = {~0ull - 5, 10, 0};
  EXPECT_FALSE(ValidateSegs(&overflow, 1, regions, -1).ok());
  WireSeg far = {5000, 1, 0};
  EXPECT_FALSE(ValidateSegs(&far, 1, regions, -1).ok());
  WireSeg arena = {0, 1, 2};
  EXPECT_FALSE(ValidateSegs(&arena, 1, regions, -1).ok());
  WireSeg empty = {0, 0, 0};
  EXPECT_FALSE(ValidateSegs(&empty, 1, regions, -1).ok());
}

// Random garbage: whatever passes validation lies inside the arenas.
TEST(WireTest, RandomSegmentsNeverEscape) {
  std::vector<uint8_t> a(4096), b(100);
  const std::vector<Region> regions = {{a.data(), a.size()}, {b.data(), b.size()}};
  std::mt19937_64 rng(5);
  for (int i = 0; i < 100000; ++i) {
    WireSeg s{rng() % 6000, static_cast<uint32_t>(rng() % 6000), static_cast<uint32_t>(rng() % 3)};
    if (rng() % 8 == 0) s.offset = rng();
    if (ValidateSegs(&s, 1, regions, -1).ok()) {
      ASSERT_LT(s.arena, 2u);
      ASSERT_LE(s.offset + s.length, regions[s.arena].bytes);
    }
  }
}

TEST(WireTest, HelloRoundTripAndTruncation) {
  HelloInfo h{"prefill-0", 11, 22, 33, 3, {}};
  auto d = DecodeHello(EncodeHello(h));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->name, "prefill-0");
  EXPECT_EQ(d->incarnation, 11u);
  EXPECT_EQ(d->expected_incarnation, 22u);
  EXPECT_EQ(d->compat_hash, 33u);
  EXPECT_EQ(d->path_index, 3u);
  EXPECT_FALSE(DecodeHello(EncodeHello(h).substr(0, 20)).ok());
}

}  // namespace
}  // namespace pd::kvtransfer::wire
