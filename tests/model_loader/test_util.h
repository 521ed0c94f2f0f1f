// Test helpers for the model loader: temp dirs and an independent safetensors reader/writer
// (plain byte handling + nlohmann, sharing no code with src/model/safetensors.cc).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace pd::testing {

using json = nlohmann::json;

inline std::string GoldenDir(const std::string& name) {
  return std::string(PD_TEST_DATA_DIR) + "/golden/" + name;
}
inline const std::vector<std::string>& GoldenNames() {
  static const std::vector<std::string> kNames = {"llama3_scaled_mqa_v4cfg", "llama_bias_linear",
                                                  "llama_gqa_tied",          "mistral_window",
                                                  "qwen2_bias_tied",         "qwen3_qknorm"};
  return kNames;
}

// A fresh directory under /tmp, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadBytes(const std::string& path);
void WriteBytes(const std::string& path, const std::string& bytes);
// Copies every regular file of `from` into `to`.
void CopyDir(const std::string& from, const std::string& to);

// A raw view of a safetensors file, parsed independently.
struct RawTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
struct RawFile {
  uint64_t header_len = 0;
  json header;
  std::string data;  // the data section
  // Tensors in file order of their offsets.
  std::map<std::string, RawTensor> Tensors() const;
};
RawFile ReadRaw(const std::string& path);

// Writes tensors (sorted by name, contiguous) with an optional header edit applied just before
// serialisation, so tests can make the header lie.
void WriteRaw(const std::string& path, const std::map<std::string, RawTensor>& tensors,
              const std::function<void(json&)>& edit_header = nullptr);
// Writes a file with exactly this header JSON text and data, and a given header length field.
void WriteRawText(const std::string& path, uint64_t header_len_field, const std::string& header,
                  const std::string& data);

// Reads DIR/config.json, applies `edit`, writes it back.
void EditConfig(const std::string& dir, const std::function<void(json&)>& edit);

// Decodes element i of a raw tensor to float, by hand.
float RawElement(const RawTensor& t, size_t i);

}  // namespace pd::testing
