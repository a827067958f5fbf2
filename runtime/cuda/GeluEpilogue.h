// The GELU that cuBLASLt's CUBLASLT_EPILOGUE_GELU_BIAS computes. Its header
// calls it GELU without saying whether it is the erf form this model uses,
// 0.5 x (1 + erf(x / sqrt(2))), or the tanh approximation. So the backend
// runs the epilogue once on known inputs when it starts and fuses a
// MatMul's BiasGelu into the epilogue only when the result is the erf form.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "runtime/cuda/CublasLt.h"

namespace roformer::runtime::cuda {

enum class GeluForm { kUnknown, kErf, kTanh };

// "erf", "tanh" or "unknown".
const char* geluFormName(GeluForm form);

// The form whose values `values` (GELU of `inputs`, computed in float32)
// match: within 2e-5 of one form and ten times closer to it than to the
// other. kUnknown otherwise.
GeluForm classifyGelu(const float* inputs, const float* values, int count);

// Runs a float32 product of 64 inputs from -5 to 5 with the GELU and bias
// epilogue on `stream` and classifies the result. kUnknown when cuBLASLt
// declines the epilogue or a CUDA call fails, with the reason in `detail`.
GeluForm probeGeluEpilogue(const CublasLtApi& lt, cublasLtHandle_t handle, cudaStream_t stream,
                           std::string& detail);

}  // namespace roformer::runtime::cuda
