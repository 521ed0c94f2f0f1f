#include "model/safetensors.h"
#include "common/json_excerpt.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace pd {
namespace {

using json = nlohmann::json;

std::string Quote(const std::string& s) { return "'" + s + "'"; }

std::string ShapeStr(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Maps safetensors dtype names. Returns OK with *out set, or an error naming the dtype.
Status ParseTensorDType(const std::string& name, DType* out) {
  if (name == "F32") {
    *out = DType::kF32;
  } else if (name == "F16") {
    *out = DType::kF16;
  } else if (name == "BF16") {
    *out = DType::kBF16;
  } else {
    static const std::set<std::string> kKnown = {
        "F64",  "I64",     "I32",     "I16",     "I8",      "U64",     "U32", "U16", "U8",
        "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",  "C64"};
    if (kKnown.count(name)) {
      return Unimplemented("dtype " + Quote(name) +
                           " is not supported (expected F32, F16 or BF16)");
    }
    return InvalidArgument("unknown dtype " + Quote(name) + " (expected F32, F16 or BF16)");
  }
  return OkStatus();
}

// Reads a non-negative integer that fits in uint64 from a JSON value.
bool AsU64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

// Parses and checks one tensor entry. `data_start` is the absolute offset of the data section.
Status ParseEntry(const std::string& name, const json& e, uint64_t data_start, uint64_t file_size,
                  SafetensorsTensor* t) {
  if (!e.is_object()) return InvalidArgument("entry is not a JSON object");
  auto dt = e.find("dtype");
  auto sh = e.find("shape");
  auto off = e.find("data_offsets");
  if (dt == e.end() || !dt->is_string()) return InvalidArgument("missing or non-string 'dtype'");
  if (sh == e.end() || !sh->is_array()) return InvalidArgument("missing or non-array 'shape'");
  if (off == e.end() || !off->is_array() || off->size() != 2) {
    return InvalidArgument("'data_offsets' must be an array of two integers");
  }
  PD_RETURN_IF_ERROR(ParseTensorDType(dt->get<std::string>(), &t->dtype));
  t->name = name;
  // numel with overflow checks: the product must stay below 2^62 / element size.
  uint64_t numel = 1;
  const uint64_t kLimit = (1ull << 62);
  for (const json& d : *sh) {
    uint64_t v;
    if (!AsU64(d, &v) || v > kLimit) {
      return InvalidArgument("shape " + JsonExcerpt(*sh) + " has a negative or non-integer dimension");
    }
    if (v != 0 && numel > kLimit / v) return InvalidArgument("shape " + JsonExcerpt(*sh) + " overflows");
    numel *= v;
    t->shape.push_back(static_cast<int64_t>(v));
  }
  uint64_t begin, end;
  if (!AsU64((*off)[0], &begin) || !AsU64((*off)[1], &end)) {
    return InvalidArgument("data_offsets " + JsonExcerpt(*off) + " are not non-negative integers");
  }
  if (end < begin) return InvalidArgument("data_offsets " + JsonExcerpt(*off) + ": end < begin");
  const uint64_t data_size = file_size - data_start;
  if (end > data_size) {
    return DataLoss("data_offsets " + JsonExcerpt(*off) + " extend past the end of the data section (" +
                    std::to_string(data_size) + " bytes; file truncated or offsets wrong)");
  }
  const uint64_t want = numel * DTypeSize(t->dtype);
  if (end - begin != want) {
    return InvalidArgument("data_offsets " + JsonExcerpt(*off) + " span " + std::to_string(end - begin) +
                           " bytes but shape " + ShapeStr(t->shape) + " of " +
                           SafetensorsDTypeName(t->dtype) + " needs " + std::to_string(want));
  }
  t->offset = data_start + begin;
  t->nbytes = want;
  if (t->offset % DTypeSize(t->dtype) != 0) {
    return InvalidArgument("data at file offset " + std::to_string(t->offset) +
                           " is not aligned to its element size");
  }
  return OkStatus();
}

Status ReadTextFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot open " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return DataLoss("error reading " + path);
  *out = ss.str();
  return OkStatus();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

const char* SafetensorsDTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
  }
  return "?";
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, size_);
}

const SafetensorsTensor* SafetensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

StatusOr<std::shared_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status(errno == ENOENT ? StatusCode::kNotFound : StatusCode::kPermissionDenied,
                  "cannot open " + path + ": " + std::strerror(errno));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgument(path + ": not a regular file");
  }
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ < 8) {
    ::close(fd);
    return DataLoss(path + ": truncated: " + std::to_string(f->size_) +
                    " bytes, shorter than the 8-byte header length");
  }
  void* m = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);
  if (m == MAP_FAILED) return Internal(path + ": mmap failed: " + std::strerror(err));
  f->map_ = m;
  Status s = f->ParseHeader();
  if (!s.ok()) return s;
  return f;
}

Status SafetensorsFile::ParseHeader() {
  const auto* base = static_cast<const unsigned char*>(map_);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | base[i];
  if (n > kSafetensorsMaxHeaderBytes) {
    return InvalidArgument(path_ + ": header length " + std::to_string(n) + " is absurd (limit " +
                           std::to_string(kSafetensorsMaxHeaderBytes) +
                           "); not a safetensors file?");
  }
  if (n > size_ - 8) {
    return DataLoss(path_ + ": header length " + std::to_string(n) + " exceeds the file size " +
                    std::to_string(size_) + " (file truncated?)");
  }
  json h;
  try {
    h = json::parse(reinterpret_cast<const char*>(base + 8),
                    reinterpret_cast<const char*>(base + 8 + n));
  } catch (const json::exception& e) {
    return InvalidArgument(path_ + ": header is not valid JSON: " + e.what());
  }
  if (!h.is_object()) return InvalidArgument(path_ + ": header is not a JSON object");
  const uint64_t data_start = 8 + n;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    SafetensorsTensor t;
    Status s = ParseEntry(it.key(), it.value(), data_start, size_, &t);
    if (!s.ok()) return s.WithContext(path_ + ": tensor " + Quote(it.key()));
    t.data = base + t.offset;
    tensors_.emplace(it.key(), std::move(t));
  }
  return OkStatus();
}

namespace {

// Loads the weight_map of an index file: tensor name -> shard file name.
Status ReadIndex(const std::string& index_path, std::map<std::string, std::string>* weight_map) {
  std::string text;
  PD_RETURN_IF_ERROR(ReadTextFile(index_path, &text));
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return InvalidArgument(index_path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
    return InvalidArgument(index_path + ": missing object 'weight_map'");
  }
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string()) {
      return InvalidArgument(index_path + ": weight_map[" + Quote(it.key()) + "] is not a string");
    }
    std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
      return InvalidArgument(index_path + ": weight_map[" + Quote(it.key()) +
                             "] = " + Quote(shard) + " is not a file name in the model directory");
    }
    (*weight_map)[it.key()] = shard;
  }
  if (weight_map->empty()) return InvalidArgument(index_path + ": 'weight_map' is empty");
  return OkStatus();
}

}  // namespace

StatusOr<SafetensorsCheckpoint> OpenSafetensorsCheckpoint(const std::string& model_dir) {
  SafetensorsCheckpoint ck;
  const std::string single = model_dir + "/model.safetensors";
  const std::string index = model_dir + "/model.safetensors.index.json";
  if (FileExists(single)) {
    PD_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(single));
    for (const auto& [name, t] : f->tensors()) ck.tensors[name] = {&t, f.get()};
    ck.files.push_back(std::move(f));
    ck.source = single;
    return ck;
  }
  if (!FileExists(index)) {
    return NotFound("no model.safetensors or model.safetensors.index.json in " + model_dir);
  }
  std::map<std::string, std::string> weight_map;
  PD_RETURN_IF_ERROR(ReadIndex(index, &weight_map));
  std::map<std::string, const SafetensorsFile*> shards;
  for (const auto& [name, shard] : weight_map) {
    if (shards.count(shard)) continue;
    PD_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(model_dir + "/" + shard));
    shards[shard] = f.get();
    ck.files.push_back(std::move(f));
  }
  for (const auto& [name, shard] : weight_map) {
    const SafetensorsFile* f = shards[shard];
    const SafetensorsTensor* t = f->Find(name);
    if (t == nullptr) {
      return InvalidArgument(index + ": tensor " + Quote(name) + " is mapped to " + f->path() +
                             ", which does not contain it");
    }
    ck.tensors[name] = {t, f};
  }
  for (const auto& f : ck.files) {
    for (const auto& [name, t] : f->tensors()) {
      auto it = weight_map.find(name);
      if (it == weight_map.end() || shards[it->second] != f.get()) {
        return InvalidArgument(f->path() + ": tensor " + Quote(name) +
                               " is not mapped to this shard by " + index);
      }
    }
  }
  ck.source = index;
  return ck;
}

size_t SafetensorsWriter::Add(const std::string& name, DType dtype,
                              const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (auto d : shape) n *= static_cast<uint64_t>(d);
  decls_.push_back({name, dtype, shape, 0, n * DTypeSize(dtype)});
  data_bytes_ += n * DTypeSize(dtype);
  return decls_.size() - 1;
}

std::vector<size_t> SafetensorsWriter::Layout() {
  // Like the reference implementation: larger element sizes first, so every tensor is aligned to
  // its element size without holes (the format allows none).
  std::vector<size_t> order(decls_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return DTypeSize(decls_[a].dtype) > DTypeSize(decls_[b].dtype);
  });
  uint64_t off = 0;
  for (size_t i : order) {
    uint64_t bytes = decls_[i].end - decls_[i].begin;
    decls_[i].begin = off;
    decls_[i].end = off + bytes;
    off += bytes;
  }
  return order;
}

std::string SafetensorsWriter::HeaderJson() const {
  json h = json::object();
  h["__metadata__"] = {{"format", "pt"}};
  for (const Decl& d : decls_) {
    h[d.name] = {{"dtype", SafetensorsDTypeName(d.dtype)},
                 {"shape", d.shape},
                 {"data_offsets", {d.begin, d.end}}};
  }
  std::string s = h.dump();
  while ((8 + s.size()) % 8 != 0) s.push_back(' ');
  return s;
}

Status SafetensorsWriter::Write(const std::string& path, const FillFn& fill,
                                const std::function<void(uint64_t, uint64_t)>& progress) const {
  if (order_.size() != decls_.size())
    return FailedPrecondition("SafetensorsWriter: Finish() not called");
  std::FILE* out = std::fopen(path.c_str(), "wb");
  if (out == nullptr) return Internal("cannot create " + path + ": " + std::strerror(errno));
  const std::string header = HeaderJson();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = static_cast<unsigned char>((header.size() >> (8 * i)) & 0xff);
  bool ok = std::fwrite(len, 1, 8, out) == 8 &&
            std::fwrite(header.data(), 1, header.size(), out) == header.size();
  std::vector<unsigned char> buf(8u << 20);
  uint64_t done = 0;
  for (size_t i : order_) {
    if (!ok) break;
    const uint64_t total = decls_[i].end - decls_[i].begin;
    for (uint64_t off = 0; ok && off < total; off += buf.size()) {
      size_t chunk = static_cast<size_t>(std::min<uint64_t>(buf.size(), total - off));
      fill(i, off, buf.data(), chunk);
      ok = std::fwrite(buf.data(), 1, chunk, out) == chunk;
      done += chunk;
      if (progress) progress(done, data_bytes_);
    }
  }
  int err = ok ? 0 : errno;
  if (std::fclose(out) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) return Internal("error writing " + path + ": " + std::strerror(err));
  return OkStatus();
}

}  // namespace pd
