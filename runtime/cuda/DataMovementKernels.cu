// Data movement device kernels: strided copies (Transpose, Slice, Expand,
// Concat and Split are all such copies), type conversion, and Gather.
#include "runtime/cuda/DeviceMath.cuh"

namespace roformer::runtime::cuda {
namespace {

constexpr int kThreads = 256;

int elementSize(int type) {
  switch (type) {
    case kF64:
    case kI64:
    case kU64:
      return 8;
    case kF32:
    case kI32:
    case kU32:
      return 4;
    case kF16:
    case kBf16:
    case kI16:
    case kU16:
      return 2;
    default:
      return 1;
  }
}

// Same-type copy: moves Word-sized elements without conversion.
template <typename Word>
__global__ void stridedCopyKernel(StridedCopyArgs args) {
  const Word* source = static_cast<const Word*>(args.source);
  Word* destination = static_cast<Word*>(args.destination);
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < args.count; index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t remaining = index;
    int64_t from = args.sourceOffset;
    int64_t to = args.destinationOffset;
    for (int d = args.rank - 1; d >= 0; --d) {
      const int64_t coordinate = remaining % args.dims[d];
      remaining /= args.dims[d];
      from += coordinate * args.sourceStrides[d];
      to += coordinate * args.destinationStrides[d];
    }
    destination[to] = source[from];
  }
}

// Copy with conversion between element types, through float32 or int64.
__global__ void stridedConvertKernel(StridedCopyArgs args) {
  const bool integer = isIntegerType(args.sourceType) && isIntegerType(args.destinationType);
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       index < args.count; index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t remaining = index;
    int64_t from = args.sourceOffset;
    int64_t to = args.destinationOffset;
    for (int d = args.rank - 1; d >= 0; --d) {
      const int64_t coordinate = remaining % args.dims[d];
      remaining /= args.dims[d];
      from += coordinate * args.sourceStrides[d];
      to += coordinate * args.destinationStrides[d];
    }
    if (integer) {
      storeInteger(args.destination, args.destinationType, to,
                   loadInteger(args.source, args.sourceType, from));
    } else {
      storeFloat(args.destination, args.destinationType, to,
                 loadFloat(args.source, args.sourceType, from));
    }
  }
}

template <typename Word>
__global__ void gatherKernel(GatherArgs args) {
  const Word* data = static_cast<const Word*>(args.data);
  Word* output = static_cast<Word*>(args.output);
  const int64_t total = args.outer * args.indexCount * args.inner;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = index % args.inner;
    const int64_t i = (index / args.inner) % args.indexCount;
    const int64_t o = index / (args.inner * args.indexCount);
    int64_t position = loadInteger(args.indices, args.indexType, i);
    if (position < 0) position += args.axisDim;
    if (position < 0 || position >= args.axisDim) {
      reportError(args.error);
      output[index] = Word(0);
      continue;
    }
    output[index] = data[(o * args.axisDim + position) * args.inner + k];
  }
}

__global__ void gatherConvertKernel(GatherArgs args) {
  const int64_t total = args.outer * args.indexCount * args.inner;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = index % args.inner;
    const int64_t i = (index / args.inner) % args.indexCount;
    const int64_t o = index / (args.inner * args.indexCount);
    int64_t position = loadInteger(args.indices, args.indexType, i);
    if (position < 0) position += args.axisDim;
    if (position < 0 || position >= args.axisDim) {
      reportError(args.error);
      storeFloat(args.output, args.outputType, index, 0.0f);
      continue;
    }
    storeFloat(args.output, args.outputType, index,
               loadFloat(args.data, args.dataType, (o * args.axisDim + position) * args.inner + k));
  }
}

}  // namespace

cudaError_t launchStridedCopy(const StridedCopyArgs& args, cudaStream_t stream) {
  if (args.count == 0) return cudaSuccess;
  const unsigned blocks = gridFor(args.count, kThreads);
  if (args.sourceType != args.destinationType) {
    stridedConvertKernel<<<blocks, kThreads, 0, stream>>>(args);
    return cudaGetLastError();
  }
  switch (elementSize(args.sourceType)) {
    case 8:
      stridedCopyKernel<uint64_t><<<blocks, kThreads, 0, stream>>>(args);
      break;
    case 4:
      stridedCopyKernel<uint32_t><<<blocks, kThreads, 0, stream>>>(args);
      break;
    case 2:
      stridedCopyKernel<uint16_t><<<blocks, kThreads, 0, stream>>>(args);
      break;
    default:
      stridedCopyKernel<uint8_t><<<blocks, kThreads, 0, stream>>>(args);
      break;
  }
  return cudaGetLastError();
}

cudaError_t launchConvert(const void* source, int sourceType, void* destination,
                          int destinationType, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  if (sourceType == destinationType) {
    if (source == destination) return cudaSuccess;
    return cudaMemcpyAsync(destination, source, static_cast<size_t>(count) * elementSize(sourceType),
                           cudaMemcpyDeviceToDevice, stream);
  }
  StridedCopyArgs args;
  args.rank = 1;
  args.dims[0] = count;
  args.source = source;
  args.sourceType = sourceType;
  args.sourceStrides[0] = 1;
  args.destination = destination;
  args.destinationType = destinationType;
  args.destinationStrides[0] = 1;
  args.count = count;
  return launchStridedCopy(args, stream);
}

cudaError_t launchGather(const GatherArgs& args, cudaStream_t stream) {
  const int64_t total = args.outer * args.indexCount * args.inner;
  if (total == 0) return cudaSuccess;
  const unsigned blocks = gridFor(total, kThreads);
  if (args.dataType != args.outputType) {
    gatherConvertKernel<<<blocks, kThreads, 0, stream>>>(args);
    return cudaGetLastError();
  }
  switch (elementSize(args.dataType)) {
    case 8:
      gatherKernel<uint64_t><<<blocks, kThreads, 0, stream>>>(args);
      break;
    case 4:
      gatherKernel<uint32_t><<<blocks, kThreads, 0, stream>>>(args);
      break;
    case 2:
      gatherKernel<uint16_t><<<blocks, kThreads, 0, stream>>>(args);
      break;
    default:
      gatherKernel<uint8_t><<<blocks, kThreads, 0, stream>>>(args);
      break;
  }
  return cudaGetLastError();
}

}  // namespace roformer::runtime::cuda
