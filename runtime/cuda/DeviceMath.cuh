// Device helpers shared by the .cu files: typed loads and stores with
// conversion, warp and block reductions, and launch sizing.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/cuda/DeviceKernels.h"

namespace roformer::runtime::cuda {

// Reads element i of a tensor of element type `type` as float32. The switch
// is uniform across a warp (one type per tensor), so it costs a few
// instructions, not divergence.
__device__ __forceinline__ float loadFloat(const void* data, int type, int64_t i) {
  switch (type) {
    case kF32:
      return static_cast<const float*>(data)[i];
    case kF16:
      return __half2float(static_cast<const __half*>(data)[i]);
    case kBf16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(data)[i]);
    case kF64:
      return static_cast<float>(static_cast<const double*>(data)[i]);
    case kI32:
      return static_cast<float>(static_cast<const int32_t*>(data)[i]);
    case kI64:
      return static_cast<float>(static_cast<const int64_t*>(data)[i]);
    case kBool:
    case kU8:
      return static_cast<float>(static_cast<const uint8_t*>(data)[i]);
    case kI8:
      return static_cast<float>(static_cast<const int8_t*>(data)[i]);
    case kI16:
      return static_cast<float>(static_cast<const int16_t*>(data)[i]);
    case kU16:
      return static_cast<float>(static_cast<const uint16_t*>(data)[i]);
    case kU32:
      return static_cast<float>(static_cast<const uint32_t*>(data)[i]);
    case kU64:
      return static_cast<float>(static_cast<const uint64_t*>(data)[i]);
    default:
      return 0.0f;
  }
}

__device__ __forceinline__ long long loadInteger(const void* data, int type, int64_t i) {
  switch (type) {
    case kI32:
      return static_cast<const int32_t*>(data)[i];
    case kI64:
      return static_cast<const int64_t*>(data)[i];
    case kBool:
    case kU8:
      return static_cast<const uint8_t*>(data)[i];
    case kI8:
      return static_cast<const int8_t*>(data)[i];
    case kI16:
      return static_cast<const int16_t*>(data)[i];
    case kU16:
      return static_cast<const uint16_t*>(data)[i];
    case kU32:
      return static_cast<const uint32_t*>(data)[i];
    case kU64:
      return static_cast<long long>(static_cast<const uint64_t*>(data)[i]);
    default:
      return static_cast<long long>(loadFloat(data, type, i));
  }
}

// Writes a float32 value converted to `type`: round to nearest for fp16 and
// bf16, truncation toward zero for integers, value != 0 for bool (ONNX Cast).
__device__ __forceinline__ void storeFloat(void* data, int type, int64_t i, float value) {
  switch (type) {
    case kF32:
      static_cast<float*>(data)[i] = value;
      break;
    case kF16:
      static_cast<__half*>(data)[i] = __float2half_rn(value);
      break;
    case kBf16:
      static_cast<__nv_bfloat16*>(data)[i] = __float2bfloat16_rn(value);
      break;
    case kF64:
      static_cast<double*>(data)[i] = value;
      break;
    case kI32:
      static_cast<int32_t*>(data)[i] = static_cast<int32_t>(value);
      break;
    case kI64:
      static_cast<int64_t*>(data)[i] = static_cast<int64_t>(value);
      break;
    case kBool:
      static_cast<uint8_t*>(data)[i] = value != 0.0f ? 1 : 0;
      break;
    case kU8:
      static_cast<uint8_t*>(data)[i] = static_cast<uint8_t>(value);
      break;
    case kI8:
      static_cast<int8_t*>(data)[i] = static_cast<int8_t>(value);
      break;
    case kI16:
      static_cast<int16_t*>(data)[i] = static_cast<int16_t>(value);
      break;
    case kU16:
      static_cast<uint16_t*>(data)[i] = static_cast<uint16_t>(value);
      break;
    case kU32:
      static_cast<uint32_t*>(data)[i] = static_cast<uint32_t>(value);
      break;
    case kU64:
      static_cast<uint64_t*>(data)[i] = static_cast<uint64_t>(value);
      break;
    default:
      break;
  }
}

__device__ __forceinline__ void storeInteger(void* data, int type, int64_t i, long long value) {
  switch (type) {
    case kI32:
      static_cast<int32_t*>(data)[i] = static_cast<int32_t>(value);
      break;
    case kI64:
      static_cast<int64_t*>(data)[i] = value;
      break;
    case kBool:
      static_cast<uint8_t*>(data)[i] = value != 0 ? 1 : 0;
      break;
    case kU8:
      static_cast<uint8_t*>(data)[i] = static_cast<uint8_t>(value);
      break;
    case kI8:
      static_cast<int8_t*>(data)[i] = static_cast<int8_t>(value);
      break;
    case kI16:
      static_cast<int16_t*>(data)[i] = static_cast<int16_t>(value);
      break;
    case kU16:
      static_cast<uint16_t*>(data)[i] = static_cast<uint16_t>(value);
      break;
    case kU32:
      static_cast<uint32_t*>(data)[i] = static_cast<uint32_t>(value);
      break;
    case kU64:
      static_cast<uint64_t*>(data)[i] = static_cast<uint64_t>(value);
      break;
    default:
      storeFloat(data, type, i, static_cast<float>(value));
      break;
  }
}

__device__ __forceinline__ bool isIntegerType(int type) {
  return type != kF32 && type != kF16 && type != kBf16 && type != kF64;
}

// Typed conversions for kernels templated on their element type.
template <typename T>
__device__ __forceinline__ float toFloat(T value);
template <>
__device__ __forceinline__ float toFloat<float>(float value) {
  return value;
}
template <>
__device__ __forceinline__ float toFloat<__half>(__half value) {
  return __half2float(value);
}
template <>
__device__ __forceinline__ float toFloat<__nv_bfloat16>(__nv_bfloat16 value) {
  return __bfloat162float(value);
}

template <typename T>
__device__ __forceinline__ T fromFloat(float value);
template <>
__device__ __forceinline__ float fromFloat<float>(float value) {
  return value;
}
template <>
__device__ __forceinline__ __half fromFloat<__half>(float value) {
  return __float2half_rn(value);
}
template <>
__device__ __forceinline__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float value) {
  return __float2bfloat16_rn(value);
}

__device__ __forceinline__ float warpSum(float value) {
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

__device__ __forceinline__ float warpMax(float value) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  return value;
}

// Sum over the block; every thread gets the result. `scratch` holds one
// float per warp (32 suffice). Must be called by all threads of the block.
__device__ __forceinline__ float blockSum(float value, float* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  value = warpSum(value);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < warps ? scratch[lane] : 0.0f;
  return warpSum(value);
}

__device__ __forceinline__ float blockMax(float value, float* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  value = warpMax(value);
  __syncthreads();
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < warps ? scratch[lane] : -INFINITY;
  return warpMax(value);
}

// Reports a device-side failure once per run: the first code wins.
__device__ __forceinline__ void reportError(const ErrorSink& sink) {
  if (sink.flag != nullptr) atomicCAS(sink.flag, 0, sink.code);
}

// Blocks for a grid-stride loop over `count` items, at most `maxBlocks`.
inline unsigned gridFor(int64_t count, int threads, int64_t maxBlocks = 65535 * 8) {
  int64_t blocks = (count + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > maxBlocks) blocks = maxBlocks;
  return static_cast<unsigned>(blocks);
}

}  // namespace roformer::runtime::cuda
