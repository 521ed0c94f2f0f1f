// Replay driver for the fuzz targets when they are built without libFuzzer (gcc, plain CI):
// feeds every file of the target's corpus, then deterministic pseudo-random mutations of them,
// through LLVMFuzzerTestOneInput. A crash, sanitizer report or abort() fails the test.
//   fuzz_<name>_replay [corpus_dir_or_file ...]   (default: the committed corpus)
//   PD_FUZZ_REPLAY_RUNS=N   number of mutated inputs (default 3000)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using Bytes = std::vector<uint8_t>;

struct Rng {  // xorshift64*: same sequence on every machine
  uint64_t s = 0x9E3779B97F4A7C15ull;
  uint64_t Next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(Next() % n); }
};

Bytes ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void Collect(const std::filesystem::path& p, std::vector<std::filesystem::path>* out) {
  if (std::filesystem::is_directory(p)) {
    for (const auto& e : std::filesystem::directory_iterator(p)) {
      if (e.is_regular_file()) out->push_back(e.path());
    }
  } else if (std::filesystem::is_regular_file(p)) {
    out->push_back(p);
  }
}

// One random edit of the kinds libFuzzer's mutator makes.
void MutateOnce(Rng& r, Bytes& b, const std::vector<Bytes>& pool) {
  static const uint8_t kBytes[] = {0, 1, 0x7F, 0x80, 0xFF, '"', '{', '}', '[', ']', ':', ',',
                                   '-', '9', '\n', ' ', '\\', 0xC3, 0xF0, 'e', '.', '&', '*'};
  static const uint64_t kWords[] = {0, 1, 7, 8, 0xFFFFFFFFull, 0x80000000ull, ~0ull,
                                    1ull << 62, 100ull << 20, 0x7FFFFFFFFFFFFFFFull};
  const size_t op = r.Below(8);
  if (b.empty() && op != 3) {
    b.push_back(kBytes[r.Below(sizeof(kBytes))]);
    return;
  }
  const size_t at = r.Below(b.size());
  switch (op) {
    case 0:  // flip a bit
      b[at] ^= static_cast<uint8_t>(1u << r.Below(8));
      break;
    case 1:  // interesting byte
      b[at] = kBytes[r.Below(sizeof(kBytes))];
      break;
    case 2:  // delete a range
      b.erase(b.begin() + at, b.begin() + std::min(b.size(), at + 1 + r.Below(16)));
      break;
    case 3: {  // insert a byte run
      const size_t n = 1 + r.Below(8);
      b.insert(b.begin() + (b.empty() ? 0 : at), n, kBytes[r.Below(sizeof(kBytes))]);
      break;
    }
    case 4: {  // duplicate a range (nesting, repetition)
      const size_t n = std::min(b.size() - at, 1 + r.Below(64));
      const Bytes piece(b.begin() + at, b.begin() + at + n);
      b.insert(b.begin() + r.Below(b.size()), piece.begin(), piece.end());
      break;
    }
    case 5:  // truncate
      b.resize(at);
      break;
    case 6: {  // interesting little-endian word (lengths, offsets, counts)
      const uint64_t w = kWords[r.Below(sizeof(kWords) / sizeof(kWords[0]))];
      const size_t n = std::min<size_t>(b.size() - at, 1 + r.Below(8));
      for (size_t i = 0; i < n; ++i) b[at + i] = static_cast<uint8_t>(w >> (8 * i));
      break;
    }
    default: {  // splice with another corpus input
      const Bytes& o = pool[r.Below(pool.size())];
      if (o.empty()) break;
      const size_t from = r.Below(o.size());
      const size_t n = std::min(o.size() - from, 1 + r.Below(256));
      b.insert(b.begin() + at, o.begin() + from, o.begin() + from + n);
      break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::filesystem::path> files;
  if (argc > 1) {
    for (int i = 1; i < argc; ++i) Collect(argv[i], &files);
  } else {
    Collect(PD_FUZZ_CORPUS_DIR, &files);
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "no corpus files\n");
    return 1;
  }
  std::vector<Bytes> pool;
  for (const auto& f : files) {
    pool.push_back(ReadAll(f));
    LLVMFuzzerTestOneInput(pool.back().data(), pool.back().size());
  }
  const char* env = std::getenv("PD_FUZZ_REPLAY_RUNS");
  const long runs = env ? std::atol(env) : 3000;
  Rng r;
  for (long i = 0; i < runs; ++i) {
    Bytes b = pool[static_cast<size_t>(i) % pool.size()];
    const size_t edits = 1 + r.Below(4);
    for (size_t k = 0; k < edits; ++k) MutateOnce(r, b, pool);
    LLVMFuzzerTestOneInput(b.data(), b.size());
  }
  std::printf("%zu corpus inputs + %ld mutations: no crash\n", files.size(), runs);
  return 0;
}
