// The rule for RotaryEmbedding nodes the CUDA attention kernel absorbs. The
// fused graph rotates the query and the key in separate nodes just before
// attention:
//
//   q' = RotaryEmbedding(q, offset, cos, sin)   interleaved, whole heads,
//                                               the attention's num_heads
//   k' = RotaryEmbedding(k, offset, cos, sin)   the same constants
//   o  = MultiHeadAttention(q', k', v, ...)     the only reader of q' and k'
//
// The attention kernel then rotates the Q and K tiles as it loads them, and
// the two RotaryEmbedding kernels only move their input to their output,
// which costs nothing when the planner runs them in place. The kernels are
// built separately, so both ask the same question of the graph.
// ROFORMER_CUDA_FUSE_ROTARY=0 turns the fusion off.
#pragma once

#include <memory>
#include <optional>

#include "ir/Graph.h"

namespace roformer::runtime::cuda {

// The rotation a MultiHeadAttention applies to its query and key.
struct FusedRotary {
  // Float32 [positions, head_size / 2].
  std::shared_ptr<ir::Tensor> cosCache;
  std::shared_ptr<ir::Tensor> sinCache;
  // The position of token t is offset + t.
  int64_t offset = 0;
};

// Whether ROFORMER_CUDA_FUSE_ROTARY leaves the fusion on (it is unless set
// to 0).
bool rotaryFusionEnabled();

// The rotation `attention` applies as it loads its query and key, or
// nullopt when they do not both come from RotaryEmbedding nodes it may
// absorb.
std::optional<FusedRotary> fusedRotaryOf(const ir::Node& attention);

// True when `rotary` is absorbed by the MultiHeadAttention reading its
// output, so that its kernel only moves the input to the output.
bool isRotaryFusedIntoAttention(const ir::Node& rotary);

}  // namespace roformer::runtime::cuda
