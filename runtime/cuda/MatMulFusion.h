// Which Add nodes the CUDA MatMul kernel absorbs into cuBLASLt's bias
// epilogue. The MatMul and the Add are built separately, so both ask the
// same question of the graph:
//
//   y = MatMul(x, W)      W: constant float [K, N]
//   z = Add(y, b)         b: constant float [N]; y has no other user and is
//                         not a graph output
//
// The MatMul kernel then computes x W + b, and the Add kernel only moves y
// to z. A com.microsoft BiasGelu(y, b) in place of the Add is absorbed the
// same way, with the GELU in the epilogue too. The planner usually runs that Add in place, where it costs nothing.
#pragma once

#include "ir/Graph.h"

namespace roformer::runtime::cuda {

// The Add whose bias `matMul` adds in its epilogue, or null.
const ir::Node* fusedBiasAdd(const ir::Node& matMul);

// True when `add` is the fused bias Add of the MatMul producing its input 0.
bool isBiasAddFusedIntoMatMul(const ir::Node& add);

// The same for a com.microsoft BiasGelu in place of the Add, whose bias and
// GELU go into cuBLASLt's GELU and bias epilogue. Only when
// `epilogueIsErf`: the epilogue must compute the erf form of GELU that
// BiasGelu defines (GeluEpilogue.h).
const ir::Node* fusedBiasGelu(const ir::Node& matMul, bool epilogueIsErf);
bool isBiasGeluFusedIntoMatMul(const ir::Node& biasGelu, bool epilogueIsErf);

}  // namespace roformer::runtime::cuda
