// Safetensors reader: values against an independent parse, every corrupt-header case, shards,
// and the writer.
#include "model/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "test_util.h"

namespace pd {
namespace {

using testing::json;
using testing::RawTensor;

void ExpectMessage(const Status& s, StatusCode code, const std::vector<std::string>& needles) {
  EXPECT_EQ(s.code(), code) << s.ToString();
  for (const auto& n : needles) {
    EXPECT_NE(s.message().find(n), std::string::npos) << "'" << n << "' not in: " << s.message();
  }
}

TEST(SafetensorsTest, GoldenFilesMatchIndependentParse) {
  for (const std::string& name : testing::GoldenNames()) {
    SCOPED_TRACE(name);
    const std::string path = testing::GoldenDir(name) + "/model.safetensors";
    auto f = SafetensorsFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    auto raw = testing::ReadRaw(path).Tensors();
    ASSERT_EQ((*f)->tensors().size(), raw.size());
    for (const auto& [tname, r] : raw) {
      const SafetensorsTensor* t = (*f)->Find(tname);
      ASSERT_NE(t, nullptr) << tname;
      EXPECT_EQ(SafetensorsDTypeName(t->dtype), r.dtype);
      EXPECT_EQ(t->shape, r.shape);
      ASSERT_EQ(t->nbytes, r.bytes.size());
      EXPECT_EQ(std::memcmp(t->data, r.bytes.data(), r.bytes.size()), 0) << tname;
    }
    EXPECT_EQ((*f)->Find("no.such.tensor"), nullptr);
  }
}

class CorruptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    raw_ = testing::ReadRaw(testing::GoldenDir("llama_gqa_tied") + "/model.safetensors");
    path_ = dir_ / "model.safetensors";
  }
  // Writes the golden tensors with `edit` applied to the header.
  void WriteEdited(const std::function<void(json&)>& edit) {
    testing::WriteRaw(path_, raw_.Tensors(), edit);
  }
  Status OpenStatus() {
    auto f = SafetensorsFile::Open(path_);
    return f.ok() ? OkStatus() : f.status();
  }

  testing::TempDir dir_;
  testing::RawFile raw_;
  std::string path_;
};

const char* kT = "model.layers.0.self_attn.q_proj.weight";

TEST_F(CorruptTest, UneditedCopyOpens) {
  WriteEdited(nullptr);
  EXPECT_TRUE(OpenStatus().ok()) << OpenStatus().ToString();
}

TEST_F(CorruptTest, ShorterThanLengthField) {
  testing::WriteBytes(path_, std::string("\x10\x00\x00", 3));
  ExpectMessage(OpenStatus(), StatusCode::kDataLoss, {path_, "truncated"});
  testing::WriteBytes(path_, "");
  ExpectMessage(OpenStatus(), StatusCode::kDataLoss, {path_});
}

TEST_F(CorruptTest, HeaderLongerThanFile) {
  testing::WriteRawText(path_, 5000, "{}", "");
  ExpectMessage(OpenStatus(), StatusCode::kDataLoss, {path_, "header length 5000", "exceeds"});
}

TEST_F(CorruptTest, AbsurdHeaderLength) {
  testing::WriteRawText(path_, 1ull << 40, "{}", "");
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, "absurd"});
  testing::WriteRawText(path_, std::numeric_limits<uint64_t>::max(), "{}", "");
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, "absurd"});
}

TEST_F(CorruptTest, InvalidJson) {
  testing::WriteRawText(path_, 9, "{\"a\": [1,", "");
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, "not valid JSON"});
  testing::WriteRawText(path_, 4, "[1] ", "");
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, "not a JSON object"});
}

TEST_F(CorruptTest, EndBeforeBegin) {
  WriteEdited([](json& h) {
    auto& o = h[kT]["data_offsets"];
    o = {o[1], o[0]};
  });
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, kT, "end < begin"});
}

TEST_F(CorruptTest, EndBeyondFile) {
  WriteEdited([](json& h) {
    auto& o = h[kT]["data_offsets"];
    o = {o[0].get<uint64_t>() + 10000000, o[1].get<uint64_t>() + 10000000};
  });
  ExpectMessage(OpenStatus(), StatusCode::kDataLoss, {path_, kT, "past the end"});
}

TEST_F(CorruptTest, OffsetsOverflow) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  WriteEdited([&](json& h) { h[kT]["data_offsets"] = {max - 7, max}; });
  ExpectMessage(OpenStatus(), StatusCode::kDataLoss, {path_, kT});
  WriteEdited([&](json& h) { h[kT]["data_offsets"] = {-8, 0}; });
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, kT, "data_offsets"});
  WriteEdited([&](json& h) { h[kT]["data_offsets"] = {0}; });
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, kT, "data_offsets"});
}

TEST_F(CorruptTest, SizeDisagreesWithShape) {
  WriteEdited([](json& h) { h[kT]["shape"] = {64, 63}; });
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, kT, "needs"});
  // A shape whose element count overflows 64 bits must not wrap around to a matching size.
  WriteEdited([](json& h) { h[kT]["shape"] = {1ull << 32, 1ull << 32, 4}; });
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, kT});
  WriteEdited([](json& h) { h[kT]["shape"] = {-64, -64}; });
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, kT, "shape"});
}

TEST_F(CorruptTest, BadDtypes) {
  WriteEdited([](json& h) { h[kT]["dtype"] = "I16"; });
  ExpectMessage(OpenStatus(), StatusCode::kUnimplemented, {path_, kT, "I16"});
  WriteEdited([](json& h) { h[kT]["dtype"] = "Q4_K"; });
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, kT, "unknown dtype", "Q4_K"});
  WriteEdited([](json& h) { h[kT]["dtype"] = 7; });
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, kT, "dtype"});
  WriteEdited([](json& h) { h[kT] = "oops"; });
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, kT});
}

TEST_F(CorruptTest, TruncatedFileNamesATensor) {
  std::string bytes =
      testing::ReadBytes(testing::GoldenDir("llama_gqa_tied") + "/model.safetensors");
  testing::WriteBytes(path_, bytes.substr(0, bytes.size() - 100));
  Status s = OpenStatus();
  ExpectMessage(s, StatusCode::kDataLoss, {path_, "tensor '", "truncated"});
  // Cut inside the header.
  testing::WriteBytes(path_, bytes.substr(0, 100));
  ExpectMessage(OpenStatus(), StatusCode::kDataLoss, {path_, "exceeds the file size"});
}

TEST_F(CorruptTest, MisalignedData) {
  std::map<std::string, RawTensor> two;
  two["a"] = {"BF16", {3}, std::string(6, '\0')};
  two["b"] = {"BF16", {2}, std::string(4, '\0')};
  testing::WriteRaw(path_, two, [](json& h) {
    h["b"]["dtype"] = "F32";
    h["b"]["shape"] = {1};
  });  // "b" is now an F32 at data offset 6
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {path_, "'b'", "aligned"});
}

TEST(SafetensorsWriterTest, MixedDtypesRoundTripAligned) {
  testing::TempDir dir;
  SafetensorsWriter w;
  w.Add("odd_bf16", DType::kBF16, {3});
  w.Add("f32", DType::kF32, {2, 2});
  w.Add("empty", DType::kF16, {0, 5});
  w.Finish();
  EXPECT_EQ(w.data_bytes(), 6u + 16u);
  ASSERT_TRUE(w.Write(dir / "x.safetensors", [](size_t t, uint64_t off, void* buf, size_t n) {
                 auto* p = static_cast<unsigned char*>(buf);
                 for (size_t i = 0; i < n; ++i)
                   p[i] = static_cast<unsigned char>(t * 100 + off + i);
               }).ok());
  auto raw = testing::ReadRaw(dir / "x.safetensors");
  EXPECT_EQ((8 + raw.header_len) % 8, 0u);
  auto f = SafetensorsFile::Open(dir / "x.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const SafetensorsTensor* a = (*f)->Find("odd_bf16");
  const SafetensorsTensor* b = (*f)->Find("f32");
  ASSERT_TRUE(a && b && (*f)->Find("empty"));
  EXPECT_EQ(b->offset % 4, 0u);
  EXPECT_EQ(static_cast<const unsigned char*>(a->data)[5], 5);
  EXPECT_EQ(static_cast<const unsigned char*>(b->data)[15], 115);
  EXPECT_EQ(b->shape, (std::vector<int64_t>{2, 2}));
}

// Splits a golden model into two shards plus an index.
class ShardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto all =
        testing::ReadRaw(testing::GoldenDir("llama_gqa_tied") + "/model.safetensors").Tensors();
    testing::CopyDir(testing::GoldenDir("llama_gqa_tied"), dir_.path());
    std::remove((dir_ / "model.safetensors").c_str());
    int i = 0;
    for (auto& [name, t] : all) {
      const char* shard =
          (i++ % 2) ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
      shards_[shard][name] = t;
      index_["weight_map"][name] = shard;
    }
    index_["metadata"] = {{"total_size", 0}};
  }
  void WriteAll() {
    for (auto& [file, tensors] : shards_) testing::WriteRaw(dir_ / file, tensors);
    testing::WriteBytes(dir_ / "model.safetensors.index.json", index_.dump());
  }
  Status OpenStatus() {
    auto ck = OpenSafetensorsCheckpoint(dir_.path());
    return ck.ok() ? OkStatus() : ck.status();
  }
  testing::TempDir dir_;
  std::map<std::string, std::map<std::string, RawTensor>> shards_;
  json index_;
};

TEST_F(ShardTest, OpensAllShards) {
  WriteAll();
  auto ck = OpenSafetensorsCheckpoint(dir_.path());
  ASSERT_TRUE(ck.ok()) << ck.status().ToString();
  EXPECT_EQ(ck->files.size(), 2u);
  EXPECT_EQ(ck->tensors.size(), index_["weight_map"].size());
  for (auto& [file, tensors] : shards_) {
    for (auto& [name, t] : tensors) {
      const auto& e = ck->tensors.at(name);
      EXPECT_EQ(e.file->path(), dir_ / file);
      EXPECT_EQ(std::memcmp(e.tensor->data, t.bytes.data(), t.bytes.size()), 0);
    }
  }
}

TEST_F(ShardTest, MissingShardFile) {
  WriteAll();
  std::remove((dir_ / "model-00002-of-00002.safetensors").c_str());
  ExpectMessage(OpenStatus(), StatusCode::kNotFound, {"model-00002-of-00002.safetensors"});
}

TEST_F(ShardTest, IndexPointsToWrongShard) {
  const std::string name = shards_["model-00002-of-00002.safetensors"].begin()->first;
  index_["weight_map"][name] = "model-00001-of-00002.safetensors";
  WriteAll();
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument,
                {name, "model-00001-of-00002.safetensors", "does not contain"});
}

TEST_F(ShardTest, TensorNotInIndex) {
  const std::string name = shards_["model-00002-of-00002.safetensors"].begin()->first;
  index_["weight_map"].erase(name);
  WriteAll();
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {name, "not mapped"});
}

TEST_F(ShardTest, BadIndex) {
  WriteAll();
  testing::WriteBytes(dir_ / "model.safetensors.index.json", "{\"weight_map\": 3}");
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {"weight_map"});
  testing::WriteBytes(dir_ / "model.safetensors.index.json", "{not json");
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {"index.json", "not valid JSON"});
  index_["weight_map"]["model.norm.weight"] = "../../etc/passwd";
  WriteAll();
  ExpectMessage(OpenStatus(), StatusCode::kInvalidArgument, {"../../etc/passwd"});
}

TEST(SafetensorsCheckpointTest, NothingThere) {
  testing::TempDir dir;
  auto ck = OpenSafetensorsCheckpoint(dir.path());
  ASSERT_FALSE(ck.ok());
  ExpectMessage(ck.status(), StatusCode::kNotFound, {dir.path(), "model.safetensors"});
}

}  // namespace
}  // namespace pd
