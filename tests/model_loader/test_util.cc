#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

namespace pd::testing {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "pd_loader_XXXXXX").string();
  char* p = ::mkdtemp(tmpl.data());
  EXPECT_NE(p, nullptr);
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  EXPECT_TRUE(out.good()) << path;
}

void CopyDir(const std::string& from, const std::string& to) {
  for (const auto& e : std::filesystem::directory_iterator(from)) {
    if (e.is_regular_file()) {
      std::filesystem::copy_file(e.path(), std::filesystem::path(to) / e.path().filename(),
                                 std::filesystem::copy_options::overwrite_existing);
    }
  }
}

RawFile ReadRaw(const std::string& path) {
  RawFile f;
  std::string bytes = ReadBytes(path);
  EXPECT_GE(bytes.size(), 8u);
  for (int i = 7; i >= 0; --i) f.header_len = (f.header_len << 8) | static_cast<uint8_t>(bytes[i]);
  f.header = json::parse(bytes.substr(8, f.header_len));
  f.data = bytes.substr(8 + f.header_len);
  return f;
}

std::map<std::string, RawTensor> RawFile::Tensors() const {
  std::map<std::string, RawTensor> out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    RawTensor t;
    t.dtype = it.value()["dtype"].get<std::string>();
    t.shape = it.value()["shape"].get<std::vector<int64_t>>();
    uint64_t b = it.value()["data_offsets"][0].get<uint64_t>();
    uint64_t e = it.value()["data_offsets"][1].get<uint64_t>();
    t.bytes = data.substr(b, e - b);
    out[it.key()] = std::move(t);
  }
  return out;
}

void WriteRawText(const std::string& path, uint64_t header_len_field, const std::string& header,
                  const std::string& data) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header_len_field >> (8 * i)) & 0xff);
  WriteBytes(path, bytes + header + data);
}

void WriteRaw(const std::string& path, const std::map<std::string, RawTensor>& tensors,
              const std::function<void(json&)>& edit_header) {
  json h = json::object();
  h["__metadata__"] = {{"format", "pt"}};
  std::string data;
  // 4-byte types first so that every tensor stays aligned to its element size.
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& [name, t] : tensors) {
      if ((t.dtype == "F32") != (pass == 0)) continue;
      h[name] = {{"dtype", t.dtype},
                 {"shape", t.shape},
                 {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
      data += t.bytes;
    }
  }
  if (edit_header) edit_header(h);
  std::string text = h.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  WriteRawText(path, text.size(), text, data);
}

void EditConfig(const std::string& dir, const std::function<void(json&)>& edit) {
  json j = json::parse(ReadBytes(dir + "/config.json"));
  edit(j);
  WriteBytes(dir + "/config.json", j.dump(2));
}

float RawElement(const RawTensor& t, size_t i) {
  if (t.dtype == "F32") {
    float f;
    std::memcpy(&f, t.bytes.data() + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, t.bytes.data() + 2 * i, 2);
  if (t.dtype == "BF16") {
    uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  // F16, by the textbook formula.
  int sign = (h >> 15) ? -1 : 1;
  int exp = (h >> 10) & 0x1f;
  int mant = h & 0x3ff;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -24);
  if (exp == 31) return mant ? NAN : sign * INFINITY;
  return sign * std::ldexp(1.0f + mant / 1024.0f, exp - 15);
}

}  // namespace pd::testing
