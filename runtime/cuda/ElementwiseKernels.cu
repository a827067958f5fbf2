// Elementwise device kernels: unary ops and casts, binary ops and Where
// with numpy broadcasting, and GELU with a bias. One kernel serves every op
// and element type: the op and the types are runtime switches that are
// uniform across the grid, which keeps the number of instantiations (and
// nvcc's compile time) small. These ops are memory-bound, so the switches
// cost little next to the loads.
#include "runtime/cuda/DeviceMath.cuh"

namespace roformer::runtime::cuda {
namespace {

constexpr int kThreads = 256;

// Offsets of output element `index` in each input of the loop nest.
template <int Arity>
__device__ __forceinline__ void inputOffsets(const ElementwiseArgs& args, int64_t index,
                                             int64_t (&offsets)[3]) {
  for (int j = 0; j < Arity; ++j) offsets[j] = 0;
  if (args.rank == 1) {
    for (int j = 0; j < Arity; ++j) offsets[j] = index * args.strides[j][0];
    return;
  }
  int64_t remaining = index;
  for (int d = args.rank - 1; d >= 0; --d) {
    const int64_t dim = args.dims[d];
    const int64_t coordinate = remaining % dim;
    remaining /= dim;
    for (int j = 0; j < Arity; ++j) offsets[j] += coordinate * args.strides[j][d];
  }
}

__device__ __forceinline__ float geluErf(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

__device__ __forceinline__ float geluTanh(float x) {
  const float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + tanhf(inner));
}

__device__ __forceinline__ float unaryFloat(UnaryOp op, float x) {
  switch (op) {
    case UnaryOp::kCast:
      return x;
    case UnaryOp::kNot:
      return x == 0.0f ? 1.0f : 0.0f;
    case UnaryOp::kNeg:
      return -x;
    case UnaryOp::kAbs:
      return fabsf(x);
    case UnaryOp::kSqrt:
      return sqrtf(x);
    case UnaryOp::kReciprocal:
      return 1.0f / x;
    case UnaryOp::kExp:
      return expf(x);
    case UnaryOp::kLog:
      return logf(x);
    case UnaryOp::kErf:
      return erff(x);
    case UnaryOp::kSigmoid:
      // Split by sign so that expf never overflows.
      return x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
    case UnaryOp::kTanh:
      return tanhf(x);
    case UnaryOp::kRelu:
      return fmaxf(x, 0.0f);
    case UnaryOp::kCos:
      return cosf(x);
    case UnaryOp::kSin:
      return sinf(x);
    case UnaryOp::kFloor:
      return floorf(x);
    case UnaryOp::kCeil:
      return ceilf(x);
    case UnaryOp::kGeluErf:
      return geluErf(x);
    case UnaryOp::kGeluTanh:
      return geluTanh(x);
  }
  return x;
}

__device__ __forceinline__ long long unaryInteger(UnaryOp op, long long x) {
  switch (op) {
    case UnaryOp::kNot:
      return x == 0 ? 1 : 0;
    case UnaryOp::kNeg:
      return -x;
    case UnaryOp::kAbs:
      return x < 0 ? -x : x;
    case UnaryOp::kRelu:
      return x < 0 ? 0 : x;
    default:
      return x;
  }
}

__global__ void unaryKernel(ElementwiseArgs args) {
  const UnaryOp op = static_cast<UnaryOp>(args.op);
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < args.count; index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t offsets[3];
    inputOffsets<1>(args, index, offsets);
    if (args.integerMath) {
      storeInteger(args.output, args.outputType, index,
                   unaryInteger(op, loadInteger(args.inputs[0], args.inputTypes[0], offsets[0])));
    } else {
      storeFloat(args.output, args.outputType, index,
                 unaryFloat(op, loadFloat(args.inputs[0], args.inputTypes[0], offsets[0])));
    }
  }
}

__device__ __forceinline__ float binaryFloat(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::kAdd:
      return a + b;
    case BinaryOp::kSub:
      return a - b;
    case BinaryOp::kMul:
      return a * b;
    case BinaryOp::kDiv:
      return a / b;
    case BinaryOp::kPow:
      return powf(a, b);
    case BinaryOp::kEqual:
      return a == b ? 1.0f : 0.0f;
    case BinaryOp::kLess:
      return a < b ? 1.0f : 0.0f;
    case BinaryOp::kLessOrEqual:
      return a <= b ? 1.0f : 0.0f;
    case BinaryOp::kGreater:
      return a > b ? 1.0f : 0.0f;
    case BinaryOp::kGreaterOrEqual:
      return a >= b ? 1.0f : 0.0f;
    case BinaryOp::kAnd:
      return (a != 0.0f && b != 0.0f) ? 1.0f : 0.0f;
    case BinaryOp::kOr:
      return (a != 0.0f || b != 0.0f) ? 1.0f : 0.0f;
    case BinaryOp::kXor:
      return ((a != 0.0f) != (b != 0.0f)) ? 1.0f : 0.0f;
    case BinaryOp::kMax:
      // NaN propagates, as in the CPU kernels.
      return (a != a || b != b) ? a + b : fmaxf(a, b);
    case BinaryOp::kMin:
      return (a != a || b != b) ? a + b : fminf(a, b);
    case BinaryOp::kWhere:
      break;
  }
  return 0.0f;
}

__device__ __forceinline__ long long binaryInteger(BinaryOp op, long long a, long long b) {
  switch (op) {
    case BinaryOp::kAdd:
      return a + b;
    case BinaryOp::kSub:
      return a - b;
    case BinaryOp::kMul:
      return a * b;
    case BinaryOp::kDiv:
      // ONNX integer Div truncates toward zero like C++; division by zero
      // yields 0 here instead of trapping.
      return b == 0 ? 0 : a / b;
    case BinaryOp::kPow: {
      long long result = 1;
      for (long long e = 0; e < b; ++e) result *= a;
      return result;
    }
    case BinaryOp::kEqual:
      return a == b;
    case BinaryOp::kLess:
      return a < b;
    case BinaryOp::kLessOrEqual:
      return a <= b;
    case BinaryOp::kGreater:
      return a > b;
    case BinaryOp::kGreaterOrEqual:
      return a >= b;
    case BinaryOp::kAnd:
      return a != 0 && b != 0;
    case BinaryOp::kOr:
      return a != 0 || b != 0;
    case BinaryOp::kXor:
      return (a != 0) != (b != 0);
    case BinaryOp::kMax:
      return a > b ? a : b;
    case BinaryOp::kMin:
      return a < b ? a : b;
    case BinaryOp::kWhere:
      break;
  }
  return 0;
}

__global__ void binaryKernel(ElementwiseArgs args) {
  const BinaryOp op = static_cast<BinaryOp>(args.op);
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < args.count; index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t offsets[3];
    inputOffsets<2>(args, index, offsets);
    if (args.integerMath) {
      const long long a = loadInteger(args.inputs[0], args.inputTypes[0], offsets[0]);
      const long long b = loadInteger(args.inputs[1], args.inputTypes[1], offsets[1]);
      storeInteger(args.output, args.outputType, index, binaryInteger(op, a, b));
    } else {
      const float a = loadFloat(args.inputs[0], args.inputTypes[0], offsets[0]);
      const float b = loadFloat(args.inputs[1], args.inputTypes[1], offsets[1]);
      storeFloat(args.output, args.outputType, index, binaryFloat(op, a, b));
    }
  }
}

__global__ void whereKernel(ElementwiseArgs args) {
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < args.count; index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t offsets[3];
    inputOffsets<3>(args, index, offsets);
    const bool condition = loadInteger(args.inputs[0], args.inputTypes[0], offsets[0]) != 0;
    const int pick = condition ? 1 : 2;
    if (args.integerMath) {
      storeInteger(args.output, args.outputType, index,
                   loadInteger(args.inputs[pick], args.inputTypes[pick], offsets[pick]));
    } else {
      storeFloat(args.output, args.outputType, index,
                 loadFloat(args.inputs[pick], args.inputTypes[pick], offsets[pick]));
    }
  }
}

__global__ void biasGeluKernel(BiasGeluArgs args) {
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < args.count; index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float x = loadFloat(args.input, args.inputType, index);
    if (args.bias != nullptr) x += loadFloat(args.bias, args.biasType, index % args.width);
    storeFloat(args.output, args.outputType, index, args.tanhForm ? geluTanh(x) : geluErf(x));
  }
}

}  // namespace

cudaError_t launchUnary(const ElementwiseArgs& args, cudaStream_t stream) {
  if (args.count == 0) return cudaSuccess;
  unaryKernel<<<gridFor(args.count, kThreads), kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t launchBinary(const ElementwiseArgs& args, cudaStream_t stream) {
  if (args.count == 0) return cudaSuccess;
  if (static_cast<BinaryOp>(args.op) == BinaryOp::kWhere) {
    whereKernel<<<gridFor(args.count, kThreads), kThreads, 0, stream>>>(args);
  } else {
    binaryKernel<<<gridFor(args.count, kThreads), kThreads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

cudaError_t launchBiasGelu(const BiasGeluArgs& args, cudaStream_t stream) {
  if (args.count == 0) return cudaSuccess;
  biasGeluKernel<<<gridFor(args.count, kThreads), kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace roformer::runtime::cuda
