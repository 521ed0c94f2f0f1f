// KvLayout: the one definition of how the paged KV cache is laid out in an arena. Every backend
// and the transfer engine use these offsets; KV moves between CPU and GPU arenas unchanged.
//
// The arena is one contiguous buffer:
//
//   arena[layer][block][kv][kv_head][slot][head_dim]     kv: 0 = K, 1 = V
//
// * layer-major: one request's KV for one layer is its block list in that layer's region; blocks
//   with consecutive ids are adjacent, so a run of consecutive blocks is ONE contiguous range
//   (the block allocator hands out runs), and K and V of a block are adjacent too.
// * head-major inside a block (FlashInfer's "HND"): a kv head's `block_size x head_dim` tile is
//   contiguous, which is what attention kernels read, and a tensor-parallel rank's share of the
//   heads is one contiguous sub-range of each K and V plane.
//
// Sizes: plane = num_kv_heads * block_size * head_dim * elem;  block_layer_bytes = 2 * plane.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace pd {

struct KvLayout {
  int num_layers = 0;
  int num_blocks = 0;
  int block_size = 16;  // tokens per block
  int num_kv_heads = 0;
  int head_dim = 0;
  DType dtype = DType::kBF16;

  size_t elem_bytes() const { return DTypeSize(dtype); }
  // One kv head's tile in one block: block_size x head_dim elements.
  size_t head_tile_bytes() const { return static_cast<size_t>(block_size) * head_dim * elem_bytes(); }
  // K (or V) of all kv heads for one block and one layer.
  size_t plane_bytes() const { return head_tile_bytes() * num_kv_heads; }
  // K and V of one block for one layer.
  size_t block_layer_bytes() const { return 2 * plane_bytes(); }
  size_t layer_bytes() const { return block_layer_bytes() * num_blocks; }
  size_t total_bytes() const { return layer_bytes() * num_layers; }

  // Byte offset of (layer, block): start of that block's K plane; its V plane follows.
  size_t block_offset(int layer, int block) const {
    return static_cast<size_t>(layer) * layer_bytes() + static_cast<size_t>(block) * block_layer_bytes();
  }
  // Element offset of K[layer][block][head][slot][0] (kv = 0) or V (kv = 1).
  size_t elem_offset(int layer, int block, int kv, int head, int slot) const {
    size_t e = block_offset(layer, block) / elem_bytes();
    e += static_cast<size_t>(kv) * num_kv_heads * block_size * head_dim;
    e += (static_cast<size_t>(head) * block_size + slot) * head_dim;
    return e;
  }

  // Stable 64-bit hash of every field: peers with different layouts refuse each other's KV.
  uint64_t CompatHash() const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) {
      for (int i = 0; i < 8; ++i) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= 1099511628211ull;
      }
    };
    mix(static_cast<uint64_t>(num_layers));
    mix(static_cast<uint64_t>(block_size));
    mix(static_cast<uint64_t>(num_kv_heads));
    mix(static_cast<uint64_t>(head_dim));
    mix(static_cast<uint64_t>(dtype));
    return h;  // num_blocks deliberately excluded: pools of different sizes interoperate
  }
};

}  // namespace pd
