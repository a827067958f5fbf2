// The matrix product the CUDA MatMul falls back to when cuBLASLt declines a
// shape: one thread per output element, float32 accumulation.
#include "runtime/cuda/DeviceMath.cuh"

namespace roformer::runtime::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void simpleGemmKernel(SimpleGemmArgs args) {
  const int64_t total = args.batch * args.m * args.n;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t column = index % args.n;
    const int64_t row = (index / args.n) % args.m;
    const int64_t product = index / (args.n * args.m);
    const int64_t aBase = product * args.strideA + row * args.k;
    const int64_t bBase = product * args.strideB + column;
    float sum = 0.0f;
    for (int64_t i = 0; i < args.k; ++i) {
      sum += loadFloat(args.a, args.aType, aBase + i) * loadFloat(args.b, args.bType, bBase + i * args.n);
    }
    if (args.bias != nullptr) sum += loadFloat(args.bias, args.biasType, column);
    if (args.erfGelu) sum = 0.5f * sum * (1.0f + erff(sum * 0.70710678118654752f));
    storeFloat(args.c, args.cType, product * args.strideC + row * args.n + column, sum);
  }
}

}  // namespace

cudaError_t launchSimpleGemm(const SimpleGemmArgs& args, cudaStream_t stream) {
  const int64_t total = args.batch * args.m * args.n;
  if (total == 0) return cudaSuccess;
  simpleGemmKernel<<<gridFor(total, kThreads), kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace roformer::runtime::cuda
