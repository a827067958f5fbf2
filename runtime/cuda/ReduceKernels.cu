// Reductions over one block of contiguous axes, and Softmax over the last
// axis. Accumulation is in float32 (int64 for integer reductions).
#include "runtime/cuda/DeviceMath.cuh"

namespace roformer::runtime::cuda {
namespace {

constexpr int kThreads = 256;

struct FloatAccumulator {
  ReduceOp op;
  float value;
  float maxSoFar;  // kLogSumExp: running maximum

  __device__ explicit FloatAccumulator(ReduceOp reduceOp) : op(reduceOp), maxSoFar(-INFINITY) {
    switch (op) {
      case ReduceOp::kMax:
        value = -INFINITY;
        break;
      case ReduceOp::kMin:
        value = INFINITY;
        break;
      case ReduceOp::kProd:
        value = 1.0f;
        break;
      default:
        value = 0.0f;
        break;
    }
  }

  __device__ void add(float x) {
    switch (op) {
      case ReduceOp::kSum:
      case ReduceOp::kMean:
        value += x;
        break;
      case ReduceOp::kMax:
        value = (x != x || value != value) ? x + value : fmaxf(value, x);
        break;
      case ReduceOp::kMin:
        value = (x != x || value != value) ? x + value : fminf(value, x);
        break;
      case ReduceOp::kProd:
        value *= x;
        break;
      case ReduceOp::kSumSquare:
      case ReduceOp::kL2:
        value += x * x;
        break;
      case ReduceOp::kL1:
        value += fabsf(x);
        break;
      case ReduceOp::kLogSumExp:
        // Running sum of exp(x - max), rescaled when the maximum grows.
        if (x > maxSoFar) {
          value = value * expf(maxSoFar - x) + 1.0f;
          maxSoFar = x;
        } else {
          value += expf(x - maxSoFar);
        }
        break;
    }
  }

  // Merges another partial result of the same op.
  __device__ void merge(float otherValue, float otherMax) {
    switch (op) {
      case ReduceOp::kMax:
      case ReduceOp::kMin:
        add(otherValue);
        break;
      case ReduceOp::kProd:
        value *= otherValue;
        break;
      case ReduceOp::kLogSumExp: {
        const float newMax = fmaxf(maxSoFar, otherMax);
        if (newMax == -INFINITY) break;
        value = value * expf(maxSoFar - newMax) + otherValue * expf(otherMax - newMax);
        maxSoFar = newMax;
        break;
      }
      default:
        value += otherValue;
        break;
    }
  }

  __device__ float result(int64_t count) const {
    switch (op) {
      case ReduceOp::kMean:
        return value / static_cast<float>(count);
      case ReduceOp::kL2:
        return sqrtf(value);
      case ReduceOp::kLogSumExp:
        return maxSoFar + logf(value);
      default:
        return value;
    }
  }
};

__device__ __forceinline__ long long reduceInteger(ReduceOp op, long long a, long long b) {
  switch (op) {
    case ReduceOp::kMax:
      return a > b ? a : b;
    case ReduceOp::kMin:
      return a < b ? a : b;
    case ReduceOp::kProd:
      return a * b;
    case ReduceOp::kSumSquare:
      return a + b * b;
    case ReduceOp::kL1:
      return a + (b < 0 ? -b : b);
    default:
      return a + b;
  }
}

__device__ __forceinline__ long long integerIdentity(ReduceOp op) {
  switch (op) {
    case ReduceOp::kMax:
      return LLONG_MIN;
    case ReduceOp::kMin:
      return LLONG_MAX;
    case ReduceOp::kProd:
      return 1;
    default:
      return 0;
  }
}

// inner > 1: one thread per output element walks the reduced dim; adjacent
// threads read adjacent elements.
__global__ void reduceColumnsKernel(ReduceArgs args) {
  const ReduceOp op = static_cast<ReduceOp>(args.op);
  const int64_t total = args.outer * args.inner;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = index / args.inner;
    const int64_t k = index % args.inner;
    const int64_t base = o * args.reduce * args.inner + k;
    if (args.integerMath) {
      long long value = integerIdentity(op);
      for (int64_t r = 0; r < args.reduce; ++r) {
        const long long x = loadInteger(args.input, args.inputType, base + r * args.inner);
        value = reduceInteger(op, value, x);
      }
      if (op == ReduceOp::kMean && args.reduce > 0) value /= args.reduce;
      storeInteger(args.output, args.outputType, index, value);
      continue;
    }
    FloatAccumulator accumulator(op);
    for (int64_t r = 0; r < args.reduce; ++r) {
      accumulator.add(loadFloat(args.input, args.inputType, base + r * args.inner));
    }
    storeFloat(args.output, args.outputType, index, accumulator.result(args.reduce));
  }
}

// inner == 1: one block per row, a tree over shared memory at the end.
__global__ void reduceRowsKernel(ReduceArgs args) {
  __shared__ float values[kThreads];
  __shared__ float maxima[kThreads];
  __shared__ long long integers[kThreads];
  const ReduceOp op = static_cast<ReduceOp>(args.op);
  for (int64_t row = blockIdx.x; row < args.outer; row += gridDim.x) {
    const int64_t base = row * args.reduce;
    if (args.integerMath) {
      long long value = integerIdentity(op);
      for (int64_t r = threadIdx.x; r < args.reduce; r += blockDim.x) {
        value = reduceInteger(op, value, loadInteger(args.input, args.inputType, base + r));
      }
      integers[threadIdx.x] = value;
      __syncthreads();
      for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) {
          // Squares and absolute values were taken on the first pass.
          const ReduceOp mergeOp =
              (op == ReduceOp::kSumSquare || op == ReduceOp::kL1) ? ReduceOp::kSum : op;
          integers[threadIdx.x] =
              reduceInteger(mergeOp, integers[threadIdx.x], integers[threadIdx.x + stride]);
        }
        __syncthreads();
      }
      if (threadIdx.x == 0) {
        long long result = integers[0];
        if (op == ReduceOp::kMean && args.reduce > 0) result /= args.reduce;
        storeInteger(args.output, args.outputType, row, result);
      }
      __syncthreads();
      continue;
    }
    FloatAccumulator accumulator(op);
    for (int64_t r = threadIdx.x; r < args.reduce; r += blockDim.x) {
      accumulator.add(loadFloat(args.input, args.inputType, base + r));
    }
    values[threadIdx.x] = accumulator.value;
    maxima[threadIdx.x] = accumulator.maxSoFar;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
      if (threadIdx.x < stride) {
        FloatAccumulator merged(op);
        merged.value = values[threadIdx.x];
        merged.maxSoFar = maxima[threadIdx.x];
        merged.merge(values[threadIdx.x + stride], maxima[threadIdx.x + stride]);
        values[threadIdx.x] = merged.value;
        maxima[threadIdx.x] = merged.maxSoFar;
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      FloatAccumulator total(op);
      total.value = values[0];
      total.maxSoFar = maxima[0];
      storeFloat(args.output, args.outputType, row, total.result(args.reduce));
    }
    __syncthreads();
  }
}

__global__ void softmaxKernel(SoftmaxArgs args) {
  __shared__ float scratch[32];
  for (int64_t row = blockIdx.x; row < args.rows; row += gridDim.x) {
    const int64_t base = row * args.width;
    float localMax = -INFINITY;
    for (int64_t i = threadIdx.x; i < args.width; i += blockDim.x) {
      localMax = fmaxf(localMax, loadFloat(args.input, args.inputType, base + i));
    }
    const float rowMax = blockMax(localMax, scratch);
    float localSum = 0.0f;
    for (int64_t i = threadIdx.x; i < args.width; i += blockDim.x) {
      localSum += expf(loadFloat(args.input, args.inputType, base + i) - rowMax);
    }
    const float rowSum = blockSum(localSum, scratch);
    const float logSum = logf(rowSum);
    const float inverse = 1.0f / rowSum;
    for (int64_t i = threadIdx.x; i < args.width; i += blockDim.x) {
      const float shifted = loadFloat(args.input, args.inputType, base + i) - rowMax;
      storeFloat(args.output, args.outputType, base + i,
                 args.logarithm ? shifted - logSum : expf(shifted) * inverse);
    }
    __syncthreads();
  }
}

}  // namespace

cudaError_t launchReduce(const ReduceArgs& args, cudaStream_t stream) {
  if (args.outer * args.inner == 0) return cudaSuccess;
  if (args.inner == 1) {
    const unsigned blocks = static_cast<unsigned>(args.outer < 65535 * 8 ? args.outer : 65535 * 8);
    reduceRowsKernel<<<blocks, kThreads, 0, stream>>>(args);
  } else {
    reduceColumnsKernel<<<gridFor(args.outer * args.inner, kThreads), kThreads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

cudaError_t launchSoftmax(const SoftmaxArgs& args, cudaStream_t stream) {
  if (args.rows == 0 || args.width == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(args.rows < 65535 * 8 ? args.rows : 65535 * 8);
  const int threads = args.width >= 1024 ? 256 : 128;
  softmaxKernel<<<blocks, threads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace roformer::runtime::cuda
