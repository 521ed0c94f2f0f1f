// Safetensors files: a read-only memory-mapped reader, a checkpoint view over one file or the
// shards of model.safetensors.index.json, and a streaming writer.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
//   {"__metadata__": {...}, "<name>": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]},
//   ...}
// then the data section; [b, e) are byte offsets relative to the start of the data section.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"

namespace pd {

// Largest header we accept (the format's own reference implementation uses the same bound).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100ull << 20;

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // absolute byte offset of the data in the file
  uint64_t nbytes = 0;
  const void* data = nullptr;  // points into the mapping
};

// One mapped .safetensors file. The mapping lives as long as the object.
class SafetensorsFile {
 public:
  // Maps `path` read-only and validates the header: length, JSON, dtypes (F32/F16/BF16 only),
  // shapes, and that every tensor's byte range lies inside the file and matches
  // numel * element size. Errors name the file and, where it applies, the tensor.
  static StatusOr<std::shared_ptr<SafetensorsFile>> Open(const std::string& path);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return size_; }
  // Tensors by name (sorted).
  const std::map<std::string, SafetensorsTensor>& tensors() const { return tensors_; }
  // Returns the tensor or nullptr.
  const SafetensorsTensor* Find(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  Status ParseHeader();

  std::string path_;
  void* map_ = nullptr;
  uint64_t size_ = 0;
  std::map<std::string, SafetensorsTensor> tensors_;
};

// All tensors of a model directory, each with the file that holds it.
struct SafetensorsCheckpoint {
  struct Entry {
    const SafetensorsTensor* tensor = nullptr;
    const SafetensorsFile* file = nullptr;
  };
  std::vector<std::shared_ptr<SafetensorsFile>> files;
  std::map<std::string, Entry> tensors;
  // Human-readable description of where the tensors come from (file or index path).
  std::string source;
};

// Opens DIR/model.safetensors if it exists, else the shards named by
// DIR/model.safetensors.index.json ("weight_map": {tensor: shard file}). Every tensor listed in
// the index must be in its shard, and every tensor of a shard must be listed.
StatusOr<SafetensorsCheckpoint> OpenSafetensorsCheckpoint(const std::string& model_dir);

// Streams a safetensors file: declare tensors, then Write() produces the header and asks `fill`
// for each tensor's bytes in order, in chunks.
class SafetensorsWriter {
 public:
  // Called with (tensor index, byte offset within the tensor, buffer, bytes to fill).
  using FillFn = std::function<void(size_t, uint64_t, void*, size_t)>;

  // Adds a tensor; returns its index.
  size_t Add(const std::string& name, DType dtype, const std::vector<int64_t>& shape);
  // Assigns data offsets (call after the last Add, before HeaderJson/Write). Tensors are stored
  // by decreasing element size so each is aligned to its element size.
  void Finish() { order_ = Layout(); }
  // Total bytes of tensor data declared so far.
  uint64_t data_bytes() const { return data_bytes_; }
  // The header JSON (space-padded so the data section starts 8-aligned).
  std::string HeaderJson() const;
  // Writes the whole file to `path` (created/truncated). `progress(done, total)` may be null.
  Status Write(const std::string& path, const FillFn& fill,
               const std::function<void(uint64_t, uint64_t)>& progress = nullptr) const;

 private:
  struct Decl {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  std::vector<size_t> Layout();
  std::vector<Decl> decls_;
  std::vector<size_t> order_;  // write order
  uint64_t data_bytes_ = 0;
};

// "BF16" etc. as written in safetensors headers.
const char* SafetensorsDTypeName(DType t);

}  // namespace pd
