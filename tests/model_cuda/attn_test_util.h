// Shared by the CUDA kernel tests (cuda_kernels_test.cc, cuda_prefill_test.cc): a batch of
// sequences with random block tables uploaded as BatchMeta, the attention CPU twin (double
// precision) and one attention launch checked against it.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "model/cuda/cuda_kernels.h"
#include "cuda_test_util.h"

namespace pd::cuda::attntest {

using cudatest::DevBuf;
using cudatest::RandBf;
using cudatest::RelErr;

inline std::vector<float> ToF(const std::vector<uint16_t>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = Bf16ToF32(v[i]);
  return f;
}

// A batch of sequences with random block tables, uploaded as BatchMeta.
struct TestBatch {
  int block_size = 16, num_blocks = 0;
  std::vector<int> cached, nnew;
  std::vector<int32_t> tokens, row_pos, row_seq, seq_ctx, seq_qstart, seq_nnew, indptr, ids, tiles;
  std::unique_ptr<DevBuf<int32_t>> d_row_pos, d_row_seq, d_ctx, d_qst, d_nn, d_ip, d_ids, d_nv,
      d_tiles;
  BatchMeta meta;
  int rows() const { return int(row_pos.size()); }

  void Build(std::vector<int> c, std::vector<int> n, int bs, std::mt19937& rng) {
    cached = std::move(c);
    nnew = std::move(n);
    block_size = bs;
    int total_blocks = 0;
    for (size_t s = 0; s < cached.size(); ++s) total_blocks += (cached[s] + nnew[s] + bs - 1) / bs;
    num_blocks = total_blocks + 5;
    std::vector<int32_t> perm(num_blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    indptr = {0};
    int used = 0;
    for (size_t s = 0; s < cached.size(); ++s) {
      const int ctx = cached[s] + nnew[s], nb = (ctx + bs - 1) / bs;
      for (int b = 0; b < nb; ++b) ids.push_back(perm[used++]);
      indptr.push_back(int32_t(ids.size()));
      seq_ctx.push_back(ctx);
      seq_qstart.push_back(int32_t(row_pos.size()));
      seq_nnew.push_back(nnew[s]);
      for (int i = 0; i < nnew[s]; ++i) {
        row_pos.push_back(cached[s] + i);
        row_seq.push_back(int32_t(s));
      }
      for (int off = 0; off < nnew[s]; off += pd::cuda::kPrefillTileRows) {
        tiles.push_back(int32_t(s));
        tiles.push_back(off);
      }
    }
    d_row_pos = std::make_unique<DevBuf<int32_t>>(row_pos);
    d_row_seq = std::make_unique<DevBuf<int32_t>>(row_seq);
    d_ctx = std::make_unique<DevBuf<int32_t>>(seq_ctx);
    d_qst = std::make_unique<DevBuf<int32_t>>(seq_qstart);
    d_nn = std::make_unique<DevBuf<int32_t>>(seq_nnew);
    d_ip = std::make_unique<DevBuf<int32_t>>(indptr);
    d_ids = std::make_unique<DevBuf<int32_t>>(ids);
    d_nv = std::make_unique<DevBuf<int32_t>>(std::vector<int32_t>{rows()});
    d_tiles = std::make_unique<DevBuf<int32_t>>(tiles);
    meta.row_pos = d_row_pos->p;
    meta.row_seq = d_row_seq->p;
    meta.seq_ctx = d_ctx->p;
    meta.seq_qstart = d_qst->p;
    meta.seq_nnew = d_nn->p;
    meta.block_indptr = d_ip->p;
    meta.block_ids = d_ids->p;
    meta.num_valid_rows = d_nv->p;
  }
  // Element offset of K/V[layer][block of pos][which][head][slot].
  size_t Off(int layer, int s, int pos, int which, int head, int nkv, int D) const {
    const int block = ids[indptr[s] + pos / block_size];
    const size_t layer_elems = size_t(num_blocks) * 2 * nkv * block_size * D;
    return layer * layer_elems + ((size_t(block) * 2 + which) * nkv + head) * block_size * D +
           size_t(pos % block_size) * D;
  }
};

// CPU twin of both attention kernels: row r attends to keys [max(0, pos-w+1), pos].
inline std::vector<float> AttnRef(const TestBatch& b, const std::vector<uint16_t>& q,
                           const std::vector<uint16_t>& kv, int nh, int nkv, int D, int layer,
                           int window) {
  const int rows = b.rows(), group = nh / nkv;
  std::vector<float> out(size_t(rows) * nh * D);
  const double scale = 1.0 / std::sqrt(double(D));
  for (int r = 0; r < rows; ++r) {
    const int pos = b.row_pos[r], s = b.row_seq[r];
    const int lo = window > 0 ? std::max(0, pos - window + 1) : 0;
    for (int h = 0; h < nh; ++h) {
      const int kvh = h / group;
      std::vector<double> sc(pos + 1 - lo);
      double mx = -1e300;
      for (int j = lo; j <= pos; ++j) {
        const size_t ko = b.Off(layer, s, j, 0, kvh, nkv, D);
        double d = 0;
        for (int i = 0; i < D; ++i) d += double(Bf16ToF32(q[(size_t(r) * nh + h) * D + i])) * Bf16ToF32(kv[ko + i]);
        sc[j - lo] = d * scale;
        mx = std::max(mx, sc[j - lo]);
      }
      double sum = 0;
      for (double& v : sc) sum += (v = std::exp(v - mx));
      for (int i = 0; i < D; ++i) {
        double acc = 0;
        for (int j = lo; j <= pos; ++j) acc += sc[j - lo] * Bf16ToF32(kv[b.Off(layer, s, j, 1, kvh, nkv, D) + i]);
        out[(size_t(r) * nh + h) * D + i] = float(acc / sum);
      }
    }
  }
  return out;
}

inline void AttnCase(int D, int nh, int nkv, std::vector<int> cached, std::vector<int> nnew, int window,
              bool tc, int splits) {
  std::mt19937 rng(D * 7 + nh + window + splits + (tc ? 1000 : 0));
  TestBatch b;
  b.Build(std::move(cached), std::move(nnew), 16, rng);
  const int layer = 1, layers = 2, rows = b.rows();
  const size_t arena = size_t(layers) * b.num_blocks * 2 * nkv * 16 * D;
  auto kv = RandBf(arena, rng), q = RandBf(size_t(rows) * nh * D, rng);
  DevBuf<uint16_t> d_kv(kv), d_q(q), d_out(size_t(rows) * nh * D);
  AttnArgs a{d_q.p, d_out.p, nh, nkv, D, rows, int(b.seq_ctx.size()), layer, window,
             float(1.0 / std::sqrt(double(D))), KvGeom{d_kv.p, b.num_blocks, 16, nkv, D}};
  if (tc) {
    LaunchPrefillAttention(a, b.meta, b.d_tiles->p, int(b.tiles.size() / 2), nullptr);
  } else {
    DevBuf<float> ws(AttnWorkspaceFloats(rows, nh, D, splits));
    LaunchDecodeAttention(a, b.meta, splits, ws.p, nullptr);
    CK(cudaDeviceSynchronize());
  }
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  auto ref = AttnRef(b, q, kv, nh, nkv, D, layer, window);
  EXPECT_LT(RelErr(ToF(d_out.Get()), ref), 8e-3)
      << "D=" << D << " nh=" << nh << " nkv=" << nkv << " window=" << window << " tc=" << tc
      << " splits=" << splits;
}

}  // namespace pd::cuda::attntest
