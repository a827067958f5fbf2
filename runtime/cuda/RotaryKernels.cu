// com.microsoft RotaryEmbedding: one thread per rotated pair, or per copied
// element past rotary_embedding_dim. Pairs are (2i, 2i + 1) when
// interleaved, (i, i + rotaryDim / 2) otherwise:
//   out[a] = x[a] cos[p, i] - x[b] sin[p, i],  out[b] = x[b] cos[p, i] + x[a] sin[p, i]
// Each thread reads both elements of its pair before writing either, so the
// kernel also runs in place.
#include "runtime/cuda/DeviceMath.cuh"

namespace roformer::runtime::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rotaryKernel(RotaryArgs args) {
  const int64_t half = args.rotaryDim / 2;
  // Per (b, s, head): `half` pairs, then headSize - rotaryDim copied elements.
  const int64_t perHead = half + (args.headSize - args.rotaryDim);
  const int64_t total = args.batch * args.sequence * args.heads * perHead;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t item = index % perHead;
    const int64_t head = (index / perHead) % args.heads;
    const int64_t s = (index / (perHead * args.heads)) % args.sequence;
    const int64_t b = index / (perHead * args.heads * args.sequence);
    const int64_t base = b * args.batchStride + s * args.sequenceStride + head * args.headStride;
    if (item >= half) {
      const int64_t column = args.rotaryDim + (item - half);
      storeFloat(args.output, args.outputType, base + column,
                 loadFloat(args.input, args.inputType, base + column));
      continue;
    }
    int64_t position = args.positionOffset + s;
    if (args.positions != nullptr) {
      position = loadInteger(args.positions, args.positionType, b * args.sequence + s);
    }
    if (position < 0 || position >= args.maxPositions) {
      reportError(args.error);
      continue;
    }
    const int64_t first = args.interleaved ? 2 * item : item;
    const int64_t second = args.interleaved ? 2 * item + 1 : item + half;
    const float cosine = loadFloat(args.cosCache, args.cacheType, position * half + item);
    const float sine = loadFloat(args.sinCache, args.cacheType, position * half + item);
    const float x0 = loadFloat(args.input, args.inputType, base + first);
    const float x1 = loadFloat(args.input, args.inputType, base + second);
    storeFloat(args.output, args.outputType, base + first, x0 * cosine - x1 * sine);
    storeFloat(args.output, args.outputType, base + second, x1 * cosine + x0 * sine);
  }
}

}  // namespace

cudaError_t launchRotary(const RotaryArgs& args, cudaStream_t stream) {
  const int64_t perHead = args.rotaryDim / 2 + (args.headSize - args.rotaryDim);
  const int64_t total = args.batch * args.sequence * args.heads * perHead;
  if (total == 0) return cudaSuccess;
  rotaryKernel<<<gridFor(total, kThreads), kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace roformer::runtime::cuda
