// Which Add nodes the CUDA MatMul kernel absorbs into cuBLASLt's bias
// epilogue. The MatMul and the Add are built separately, so both ask the
// same question of the graph:
//
//   y = MatMul(x, W)      W: constant float [K, N]
//   z = Add(y, b)         b: constant float [N]; y has no other user and is
//                         not a graph output
//
// The MatMul kernel then computes x W + b, and the Add kernel only moves y
// to z. The planner usually runs that Add in place, where it costs nothing.
#pragma once

#include "ir/Graph.h"

namespace roformer::runtime::cuda {

// The Add whose bias `matMul` adds in its epilogue, or null.
const ir::Node* fusedBiasAdd(const ir::Node& matMul);

// True when `add` is the fused bias Add of the MatMul producing its input 0.
bool isBiasAddFusedIntoMatMul(const ir::Node& add);

}  // namespace roformer::runtime::cuda
