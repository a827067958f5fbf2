// LayerNormalization and com.microsoft SkipLayerNormalization: one block per
// row, the row read once into registers, float32 statistics.
//
// Each thread keeps up to kValuesPerThread elements of its row (columns
// threadIdx.x, threadIdx.x + blockDim.x, ...), so the mean and then the
// variance are two passes over registers, not over memory. The variance is
// the mean squared deviation from the mean, not E[x^2] - E[x]^2, which
// cancels catastrophically when |mean| is large against the deviation.
#include "runtime/cuda/DeviceMath.cuh"

namespace roformer::runtime::cuda {
namespace {

constexpr int kValuesPerThread = 16;

template <typename T>
__global__ void layerNormKernel(LayerNormArgs args) {
  __shared__ float scratch[32];
  const T* input = static_cast<const T*>(args.input);
  const int64_t width = args.width;
  for (int64_t row = blockIdx.x; row < args.rows; row += gridDim.x) {
    const int64_t base = row * width;
    const int64_t skipBase = args.skip != nullptr ? (row % args.skipRows) * width : 0;
    float values[kValuesPerThread];
    float localSum = 0.0f;
#pragma unroll
    for (int j = 0; j < kValuesPerThread; ++j) {
      const int64_t column = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
      float x = 0.0f;
      if (column < width) {
        x = toFloat(input[base + column]);
        if (args.skip != nullptr) x += loadFloat(args.skip, args.skipType, skipBase + column);
        if (args.bias != nullptr) x += loadFloat(args.bias, args.biasType, column);
        if (args.sum != nullptr) storeFloat(args.sum, args.sumType, base + column, x);
      }
      values[j] = x;
      localSum += x;
    }
    const float mean = blockSum(localSum, scratch) / static_cast<float>(width);

    float localSquares = 0.0f;
#pragma unroll
    for (int j = 0; j < kValuesPerThread; ++j) {
      const int64_t column = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
      if (column < width) {
        const float deviation = values[j] - mean;
        localSquares += deviation * deviation;
      }
    }
    const float variance = blockSum(localSquares, scratch) / static_cast<float>(width);
    const float invStdDev = rsqrtf(variance + args.epsilon);

#pragma unroll
    for (int j = 0; j < kValuesPerThread; ++j) {
      const int64_t column = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
      if (column < width) {
        float y = (values[j] - mean) * invStdDev * loadFloat(args.gamma, args.gammaType, column);
        if (args.beta != nullptr) y += loadFloat(args.beta, args.betaType, column);
        storeFloat(args.output, args.outputType, base + column, y);
      }
    }
    if (threadIdx.x == 0) {
      if (args.mean != nullptr) args.mean[row] = mean;
      if (args.invStdDev != nullptr) args.invStdDev[row] = invStdDev;
    }
  }
}

template <typename T>
cudaError_t launchTyped(const LayerNormArgs& args, cudaStream_t stream) {
  // Enough threads that each keeps at most kValuesPerThread values, in whole
  // warps, between one warp and 1024 threads.
  int64_t threads = (args.width + kValuesPerThread - 1) / kValuesPerThread;
  threads = (threads + 31) / 32 * 32;
  if (threads < 32) threads = 32;
  if (threads > 1024) threads = 1024;
  const int64_t blocks = args.rows < 65535 * 16 ? args.rows : 65535 * 16;
  layerNormKernel<T><<<static_cast<unsigned>(blocks), static_cast<unsigned>(threads), 0, stream>>>(
      args);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launchLayerNorm(const LayerNormArgs& args, cudaStream_t stream) {
  if (args.rows == 0) return cudaSuccess;
  if (args.width <= 0 || args.width > kMaxLayerNormWidth) return cudaErrorInvalidValue;
  switch (args.inputType) {
    case kF32:
      return launchTyped<float>(args, stream);
    case kF16:
      return launchTyped<__half>(args, stream);
    case kBf16:
      return launchTyped<__nv_bfloat16>(args, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace roformer::runtime::cuda
