// com.microsoft MultiHeadAttention without the [batch, heads, seq, kv_seq]
// score tensor. Flash-attention-style kernels walk the keys in tiles and keep
// a running softmax per query row in float32: the row maximum and sum so
// far, with the partial output rescaled when the maximum grows.
//
// Two kernels compute the same thing:
//   - simtAttention: float32 arithmetic on CUDA cores, any float type and
//     head size up to kMaxAttentionHeadSize. The fp32 path and the fallback.
//   - tensorCoreAttention: fp16 or bf16 operands on tensor cores through
//     mma.sync.m16n8k16 with float32 accumulators (sm_80 and later), head
//     sizes 16, 32, 64 and 128.
//
// With rotary caches in the arguments, both kernels rotate the Q and K
// elements as they load them (RotaryFusion.h defines when).
//
// Masking follows ONNX Runtime: a masked key gets maskFilterValue added to
// its scaled score. Keys past the last unmasked key of a batch entry are
// skipped instead: their weight exp(score + maskFilterValue - max) underflows
// to 0 in float32 whenever some unmasked key scores within about 9900 of
// them (with the default -10000). A batch entry with no unmasked key
// processes every key, so its output is the uniform average ONNX Runtime
// gives.
#include "runtime/cuda/DeviceMath.cuh"

namespace roformer::runtime::cuda {
namespace {

// ---- Shared helpers ----

// One past the last key of batch entry `b` that the mask keeps, or the full
// key count when it keeps none (or there is no mask). All threads of the
// block must call it; every thread gets the result.
__device__ int visibleKeyEnd(const AttentionArgs& args, int b, int* shared) {
  if (args.maskKind == 0) return args.keySequence;
  if (args.maskKind == 1) {
    const long long length = loadInteger(args.mask, args.maskType, b);
    if (length <= 0) return args.keySequence;
    return length < args.keySequence ? static_cast<int>(length) : args.keySequence;
  }
  if (threadIdx.x == 0) *shared = 0;
  __syncthreads();
  int last = 0;
  for (int j = threadIdx.x; j < args.keySequence; j += blockDim.x) {
    if (loadInteger(args.mask, args.maskType, static_cast<int64_t>(b) * args.keySequence + j) != 0) {
      last = j + 1;
    }
  }
  atomicMax(shared, last);
  __syncthreads();
  const int end = *shared;
  return end == 0 ? args.keySequence : end;
}

// The additive mask of key j of batch entry b: 0 when kept, maskFilterValue
// when masked, -inf past the keys.
__device__ __forceinline__ float maskAddition(const AttentionArgs& args, int b, int j) {
  if (j >= args.keySequence) return -INFINITY;
  if (args.maskKind == 1) {
    return j < loadInteger(args.mask, args.maskType, b) ? 0.0f : args.maskFilterValue;
  }
  if (args.maskKind == 2) {
    const int64_t index = static_cast<int64_t>(b) * args.keySequence + j;
    return loadInteger(args.mask, args.maskType, index) != 0 ? 0.0f : args.maskFilterValue;
  }
  return 0.0f;
}

__device__ __forceinline__ int64_t elementOffset(const int64_t (&strides)[3], int b, int t, int h) {
  return b * strides[0] + t * strides[1] + h * strides[2];
}

// Element c of a Q or K row at `position` after the rotary rotation, given
// the element and its partner c ^ 1 in the interleaved pair.
__device__ __forceinline__ float rotateElement(const AttentionArgs& args, float element,
                                               float partner, int64_t position, int c) {
  const int64_t index = position * (args.headSize / 2) + c / 2;
  const float cosine = args.rotaryCos[index];
  const float sine = args.rotarySin[index];
  // (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin)
  return (c % 2 == 0) ? element * cosine - partner * sine : element * cosine + partner * sine;
}

// Element c of row `t` of a Q or K matrix as float: rotated when the
// arguments ask for it, then biased.
__device__ __forceinline__ float loadRotated(const AttentionArgs& args, const void* base,
                                             int64_t rowOffset, int t, int c, const void* bias,
                                             int64_t biasOffset) {
  float value = loadFloat(base, args.type, rowOffset + c);
  if (args.rotaryCos != nullptr) {
    const float partner = loadFloat(base, args.type, rowOffset + (c ^ 1));
    value = rotateElement(args, value, partner, args.rotaryOffset + t, c);
  }
  if (bias != nullptr) value += loadFloat(bias, args.biasType, biasOffset + c);
  return value;
}

// ---- SIMT kernel ----

constexpr int kSimtRows = 32;
constexpr int kSimtKeys = 32;
constexpr int kSimtThreads = 128;

// Shared memory of simtAttention, in floats, for head sizes d and dv.
inline size_t simtSharedFloats(int d, int dv) {
  return static_cast<size_t>(kSimtRows) * d          // Q
         + static_cast<size_t>(kSimtKeys) * (d + 1)  // K, padded against bank conflicts
         + static_cast<size_t>(kSimtKeys) * dv       // V
         + static_cast<size_t>(kSimtRows) * (kSimtKeys + 1)  // scores, then weights
         + 3 * kSimtRows                             // row maximum, sum, rescale factor
         + kSimtKeys;                                // mask additions
}

// Grid (query blocks, heads, batch); kSimtThreads threads. Thread t owns
// output row t / 4 and value dims t % 4, t % 4 + 4, ...; kOutputPerThread is
// at least valueHeadSize / 4.
template <int kOutputPerThread>
__global__ void simtAttention(AttentionArgs args) {
  extern __shared__ float shared[];
  __shared__ int keyEnd;
  const int d = args.headSize;
  const int dv = args.valueHeadSize;
  float* q = shared;
  float* k = q + kSimtRows * d;
  float* v = k + kSimtKeys * (d + 1);
  float* scores = v + kSimtKeys * dv;
  float* rowMax = scores + kSimtRows * (kSimtKeys + 1);
  float* rowSum = rowMax + kSimtRows;
  float* rescale = rowSum + kSimtRows;
  float* maskAdd = rescale + kSimtRows;

  const int b = blockIdx.z;
  const int h = blockIdx.y;
  const int row0 = blockIdx.x * kSimtRows;
  const int tid = threadIdx.x;
  const int64_t qBias = static_cast<int64_t>(h) * d;
  const int64_t kBias = static_cast<int64_t>(args.heads) * d + h * d;
  const int64_t vBias = 2 * static_cast<int64_t>(args.heads) * d + static_cast<int64_t>(h) * dv;

  const int end = visibleKeyEnd(args, b, &keyEnd);

  // Q rows, biased and scaled; rows past the sequence are zeros.
  for (int i = tid; i < kSimtRows * d; i += blockDim.x) {
    const int r = i / d;
    const int c = i % d;
    float value = 0.0f;
    if (row0 + r < args.sequence) {
      value = loadRotated(args, args.query, elementOffset(args.queryStrides, b, row0 + r, h),
                          row0 + r, c, args.bias, qBias);
    }
    q[i] = value * args.scale;
  }
  if (tid < kSimtRows) {
    rowMax[tid] = -INFINITY;
    rowSum[tid] = 0.0f;
  }

  float output[kOutputPerThread];
#pragma unroll
  for (int i = 0; i < kOutputPerThread; ++i) output[i] = 0.0f;
  const int myRow = tid / 4;
  const int myLane = tid % 4;

  for (int key0 = 0; key0 < end; key0 += kSimtKeys) {
    __syncthreads();  // the previous tile is consumed
    for (int i = tid; i < kSimtKeys * d; i += blockDim.x) {
      const int j = i / d;
      const int c = i % d;
      float value = 0.0f;
      if (key0 + j < args.keySequence) {
        value = loadRotated(args, args.key, elementOffset(args.keyStrides, b, key0 + j, h),
                            key0 + j, c, args.bias, kBias);
      }
      k[j * (d + 1) + c] = value;
    }
    for (int i = tid; i < kSimtKeys * dv; i += blockDim.x) {
      const int j = i / dv;
      const int c = i % dv;
      float value = 0.0f;
      if (key0 + j < args.keySequence) {
        value = loadFloat(args.value, args.type, elementOffset(args.valueStrides, b, key0 + j, h) + c);
        if (args.bias != nullptr) value += loadFloat(args.bias, args.biasType, vBias + c);
      }
      v[i] = value;
    }
    if (tid < kSimtKeys) maskAdd[tid] = maskAddition(args, b, key0 + tid);
    __syncthreads();

    // Scores: lanes of a warp take consecutive keys of one row.
    for (int e = tid; e < kSimtRows * kSimtKeys; e += blockDim.x) {
      const int r = e / kSimtKeys;
      const int j = e % kSimtKeys;
      float dot = 0.0f;
      for (int c = 0; c < d; ++c) dot += q[r * d + c] * k[j * (d + 1) + c];
      scores[r * (kSimtKeys + 1) + j] = dot + maskAdd[j];
    }
    __syncthreads();

    // Running softmax: warp w updates rows w, w + 4, ...; lane j is key j.
    const int warp = tid / 32;
    const int lane = tid % 32;
    for (int r = warp; r < kSimtRows; r += blockDim.x / 32) {
      const float score = scores[r * (kSimtKeys + 1) + lane];
      const float oldMax = rowMax[r];
      const float newMax = fmaxf(oldMax, warpMax(score));
      // With every key so far at -inf, exponentiate against 0 so that no
      // -inf - -inf appears; the weights and the old sum are then all 0.
      const float base = newMax == -INFINITY ? 0.0f : newMax;
      const float weight = expf(score - base);
      scores[r * (kSimtKeys + 1) + lane] = weight;
      const float tileSum = warpSum(weight);
      if (lane == 0) {
        const float factor = expf(oldMax - base);
        rescale[r] = factor;
        rowSum[r] = rowSum[r] * factor + tileSum;
        rowMax[r] = newMax;
      }
    }
    __syncthreads();

    const float factor = rescale[myRow];
#pragma unroll
    for (int i = 0; i < kOutputPerThread; ++i) {
      const int c = myLane + 4 * i;
      if (c < dv) {
        float accumulated = output[i] * factor;
        for (int j = 0; j < kSimtKeys; ++j) {
          accumulated += scores[myRow * (kSimtKeys + 1) + j] * v[j * dv + c];
        }
        output[i] = accumulated;
      }
    }
  }
  __syncthreads();

  const int t = row0 + myRow;
  if (t >= args.sequence) return;
  const float sum = rowSum[myRow];
  const float inverse = sum > 0.0f ? 1.0f / sum : 0.0f;
  const int64_t outputBase =
      (static_cast<int64_t>(b) * args.sequence + t) * args.heads * dv + static_cast<int64_t>(h) * dv;
#pragma unroll
  for (int i = 0; i < kOutputPerThread; ++i) {
    const int c = myLane + 4 * i;
    if (c < dv) storeFloat(args.output, args.outputType, outputBase + c, output[i] * inverse);
  }
}

// ---- Tensor-core kernel ----

constexpr int kTcRows = 64;  // query rows per block, 16 per warp
constexpr int kTcKeys = 64;  // keys per tile
constexpr int kTcThreads = 128;
constexpr int kTcPad = 8;  // elements of padding per shared row against bank conflicts

template <typename T>
struct MmaTraits;

template <>
struct MmaTraits<__half> {
  static __device__ __forceinline__ uint32_t pack(float low, float high) {
    __half2 value = __floats2half2_rn(low, high);
    return *reinterpret_cast<uint32_t*>(&value);
  }
  // d += a * b for a 16x16 (row) by 16x8 (column) product.
  static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <>
struct MmaTraits<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack(float low, float high) {
    __nv_bfloat162 value = __floats2bfloat162_rn(low, high);
    return *reinterpret_cast<uint32_t*>(&value);
  }
  static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// Shared memory of tensorCoreAttention in bytes for head size D.
inline size_t tensorCoreSharedBytes(int d, int elementBytes) {
  const size_t qk = 2 * static_cast<size_t>(kTcRows) * (d + kTcPad);  // Q and K tiles
  const size_t vt = static_cast<size_t>(d) * (kTcKeys + kTcPad);       // V tile, transposed
  return (qk + vt) * elementBytes + kTcKeys * sizeof(float);
}

// Loads two adjacent elements (c, c + 1) of a Q, K or V row as float, with
// the bias added. The host checks that every stride is even and every base
// 4-byte aligned, so the pair is one aligned 32-bit load.
template <typename T>
__device__ __forceinline__ float2 loadPair(const void* base, int64_t offset, const void* bias,
                                           int biasType, int64_t biasOffset) {
  const T* pair = static_cast<const T*>(base) + offset;
  float2 value;
  if constexpr (sizeof(T) == 2) {
    const uint32_t bits = *reinterpret_cast<const uint32_t*>(pair);
    T low, high;
    uint16_t lowBits = static_cast<uint16_t>(bits & 0xffffu);
    uint16_t highBits = static_cast<uint16_t>(bits >> 16);
    memcpy(&low, &lowBits, 2);
    memcpy(&high, &highBits, 2);
    value.x = toFloat(low);
    value.y = toFloat(high);
  }
  if (bias != nullptr) {
    value.x += loadFloat(bias, biasType, biasOffset);
    value.y += loadFloat(bias, biasType, biasOffset + 1);
  }
  return value;
}

// The pair (c, c + 1), c even, of row `t` of a Q or K matrix: rotated when
// the arguments ask for it, then biased.
template <typename T>
__device__ __forceinline__ float2 loadRotatedPair(const AttentionArgs& args, const void* base,
                                                  int64_t rowOffset, int t, int c,
                                                  int64_t biasOffset) {
  if (args.rotaryCos == nullptr) {
    return loadPair<T>(base, rowOffset + c, args.bias, args.biasType, biasOffset + c);
  }
  float2 value = loadPair<T>(base, rowOffset + c, nullptr, 0, 0);
  const int64_t index = (args.rotaryOffset + t) * (args.headSize / 2) + c / 2;
  const float cosine = args.rotaryCos[index];
  const float sine = args.rotarySin[index];
  value = make_float2(value.x * cosine - value.y * sine, value.y * cosine + value.x * sine);
  if (args.bias != nullptr) {
    value.x += loadFloat(args.bias, args.biasType, biasOffset + c);
    value.y += loadFloat(args.bias, args.biasType, biasOffset + c + 1);
  }
  return value;
}

// Grid (query blocks of 64, heads, batch); 4 warps. Fragment layouts of
// mma.m16n8k16 (g = lane / 4, t = lane % 4):
//   A (16x16, row-major): reg0 = (g, 2t..2t+1), reg1 = (g+8, 2t..), reg2 = (g, 2t+8..), reg3 = (g+8, 2t+8..)
//   B (16x8, k x n):      reg0 = (k 2t..2t+1, n g), reg1 = (k 2t+8..2t+9, n g)
//   C (16x8, float):      c0, c1 = (g, 2t..2t+1), c2, c3 = (g+8, 2t..2t+1)
// Two adjacent 16x8 score tiles in C layout are the 16x16 A operand of the
// P V product, so the weights never leave registers.
template <typename T, int D>
__global__ void __launch_bounds__(kTcThreads) tensorCoreAttention(AttentionArgs args) {
  extern __shared__ __align__(16) unsigned char sharedBytes[];
  __shared__ int keyEnd;
  constexpr int kStride = D + kTcPad;           // Q and K rows
  constexpr int kValueStride = kTcKeys + kTcPad;  // transposed V rows
  T* qTile = reinterpret_cast<T*>(sharedBytes);
  T* kTile = qTile + kTcRows * kStride;
  T* vTile = kTile + kTcRows * kStride;  // [D][kValueStride]
  float* maskAdd = reinterpret_cast<float*>(vTile + D * kValueStride);

  const int b = blockIdx.z;
  const int h = blockIdx.y;
  const int row0 = blockIdx.x * kTcRows;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int g = lane / 4;
  const int t = lane % 4;
  const int64_t qBias = static_cast<int64_t>(h) * D;
  const int64_t kBias = static_cast<int64_t>(args.heads) * D + static_cast<int64_t>(h) * D;
  const int64_t vBias = 2 * static_cast<int64_t>(args.heads) * D + static_cast<int64_t>(h) * D;

  const int end = visibleKeyEnd(args, b, &keyEnd);

  // Q tile, then each warp's 16 rows into A fragments.
  for (int i = tid; i < kTcRows * (D / 2); i += kTcThreads) {
    const int r = i / (D / 2);
    const int c = 2 * (i % (D / 2));
    float2 value = make_float2(0.0f, 0.0f);
    if (row0 + r < args.sequence) {
      value = loadRotatedPair<T>(args, args.query, elementOffset(args.queryStrides, b, row0 + r, h),
                                 row0 + r, c, qBias);
    }
    *reinterpret_cast<uint32_t*>(qTile + r * kStride + c) = MmaTraits<T>::pack(value.x, value.y);
  }
  __syncthreads();
  uint32_t qFragments[D / 16][4];
  const T* myRows = qTile + (warp * 16) * kStride;
#pragma unroll
  for (int kc = 0; kc < D / 16; ++kc) {
    qFragments[kc][0] = *reinterpret_cast<const uint32_t*>(myRows + g * kStride + kc * 16 + 2 * t);
    qFragments[kc][1] =
        *reinterpret_cast<const uint32_t*>(myRows + (g + 8) * kStride + kc * 16 + 2 * t);
    qFragments[kc][2] =
        *reinterpret_cast<const uint32_t*>(myRows + g * kStride + kc * 16 + 8 + 2 * t);
    qFragments[kc][3] =
        *reinterpret_cast<const uint32_t*>(myRows + (g + 8) * kStride + kc * 16 + 8 + 2 * t);
  }

  float output[D / 8][4];
#pragma unroll
  for (int nd = 0; nd < D / 8; ++nd) {
    output[nd][0] = output[nd][1] = output[nd][2] = output[nd][3] = 0.0f;
  }
  // Rows g and g + 8 of this warp's 16: running maximum and this thread's
  // share of the running sum (the 4 threads of a row are summed at the end).
  float rowMax[2] = {-INFINITY, -INFINITY};
  float rowSum[2] = {0.0f, 0.0f};

  for (int key0 = 0; key0 < end; key0 += kTcKeys) {
    __syncthreads();  // the previous tile is consumed
    for (int i = tid; i < kTcKeys * (D / 2); i += kTcThreads) {
      const int j = i / (D / 2);
      const int c = 2 * (i % (D / 2));
      float2 keyPair = make_float2(0.0f, 0.0f);
      float2 valuePair = make_float2(0.0f, 0.0f);
      if (key0 + j < args.keySequence) {
        keyPair = loadRotatedPair<T>(args, args.key, elementOffset(args.keyStrides, b, key0 + j, h),
                                     key0 + j, c, kBias);
        valuePair = loadPair<T>(args.value, elementOffset(args.valueStrides, b, key0 + j, h) + c,
                                args.bias, args.biasType, vBias + c);
      }
      *reinterpret_cast<uint32_t*>(kTile + j * kStride + c) = MmaTraits<T>::pack(keyPair.x, keyPair.y);
      vTile[c * kValueStride + j] = fromFloat<T>(valuePair.x);
      vTile[(c + 1) * kValueStride + j] = fromFloat<T>(valuePair.y);
    }
    if (tid < kTcKeys) maskAdd[tid] = maskAddition(args, b, key0 + tid);
    __syncthreads();

    // Scores S = Q K^T for this warp's 16 rows and the tile's 64 keys.
    float scores[kTcKeys / 8][4];
#pragma unroll
    for (int nt = 0; nt < kTcKeys / 8; ++nt) {
      scores[nt][0] = scores[nt][1] = scores[nt][2] = scores[nt][3] = 0.0f;
      const T* keyRow = kTile + (nt * 8 + g) * kStride;
#pragma unroll
      for (int kc = 0; kc < D / 16; ++kc) {
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(keyRow + kc * 16 + 2 * t);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(keyRow + kc * 16 + 8 + 2 * t);
        MmaTraits<T>::mma(scores[nt], qFragments[kc], b0, b1);
      }
    }

    // Scale, mask, and the running softmax of rows g (c0, c1) and g + 8 (c2, c3).
    float tileMax[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kTcKeys / 8; ++nt) {
      const float add0 = maskAdd[nt * 8 + 2 * t];
      const float add1 = maskAdd[nt * 8 + 2 * t + 1];
      scores[nt][0] = scores[nt][0] * args.scale + add0;
      scores[nt][1] = scores[nt][1] * args.scale + add1;
      scores[nt][2] = scores[nt][2] * args.scale + add0;
      scores[nt][3] = scores[nt][3] * args.scale + add1;
      tileMax[0] = fmaxf(tileMax[0], fmaxf(scores[nt][0], scores[nt][1]));
      tileMax[1] = fmaxf(tileMax[1], fmaxf(scores[nt][2], scores[nt][3]));
    }
    float factor[2];
    float base[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      tileMax[half] = fmaxf(tileMax[half], __shfl_xor_sync(0xffffffffu, tileMax[half], 1));
      tileMax[half] = fmaxf(tileMax[half], __shfl_xor_sync(0xffffffffu, tileMax[half], 2));
      const float newMax = fmaxf(rowMax[half], tileMax[half]);
      base[half] = newMax == -INFINITY ? 0.0f : newMax;
      factor[half] = __expf(rowMax[half] - base[half]);
      rowMax[half] = newMax;
      rowSum[half] *= factor[half];
    }
#pragma unroll
    for (int nt = 0; nt < kTcKeys / 8; ++nt) {
      scores[nt][0] = __expf(scores[nt][0] - base[0]);
      scores[nt][1] = __expf(scores[nt][1] - base[0]);
      scores[nt][2] = __expf(scores[nt][2] - base[1]);
      scores[nt][3] = __expf(scores[nt][3] - base[1]);
      rowSum[0] += scores[nt][0] + scores[nt][1];
      rowSum[1] += scores[nt][2] + scores[nt][3];
    }
#pragma unroll
    for (int nd = 0; nd < D / 8; ++nd) {
      output[nd][0] *= factor[0];
      output[nd][1] *= factor[0];
      output[nd][2] *= factor[1];
      output[nd][3] *= factor[1];
    }

    // output += P V, with P from the score registers in A layout.
#pragma unroll
    for (int kc = 0; kc < kTcKeys / 16; ++kc) {
      uint32_t weights[4];
      weights[0] = MmaTraits<T>::pack(scores[2 * kc][0], scores[2 * kc][1]);
      weights[1] = MmaTraits<T>::pack(scores[2 * kc][2], scores[2 * kc][3]);
      weights[2] = MmaTraits<T>::pack(scores[2 * kc + 1][0], scores[2 * kc + 1][1]);
      weights[3] = MmaTraits<T>::pack(scores[2 * kc + 1][2], scores[2 * kc + 1][3]);
#pragma unroll
      for (int nd = 0; nd < D / 8; ++nd) {
        const T* valueRow = vTile + (nd * 8 + g) * kValueStride;
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(valueRow + kc * 16 + 2 * t);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(valueRow + kc * 16 + 8 + 2 * t);
        MmaTraits<T>::mma(output[nd], weights, b0, b1);
      }
    }
  }

#pragma unroll
  for (int half = 0; half < 2; ++half) {
    rowSum[half] += __shfl_xor_sync(0xffffffffu, rowSum[half], 1);
    rowSum[half] += __shfl_xor_sync(0xffffffffu, rowSum[half], 2);
  }
  const int heads = args.heads;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + warp * 16 + g + 8 * half;
    if (row >= args.sequence) continue;
    const float inverse = rowSum[half] > 0.0f ? 1.0f / rowSum[half] : 0.0f;
    const int64_t outputBase =
        (static_cast<int64_t>(b) * args.sequence + row) * heads * D + static_cast<int64_t>(h) * D;
#pragma unroll
    for (int nd = 0; nd < D / 8; ++nd) {
      const int c = nd * 8 + 2 * t;
      storeFloat(args.output, args.outputType, outputBase + c, output[nd][2 * half] * inverse);
      storeFloat(args.output, args.outputType, outputBase + c + 1,
                 output[nd][2 * half + 1] * inverse);
    }
  }
}

template <typename Kernel>
cudaError_t launchWithSharedMemory(Kernel kernel, dim3 grid, int threads, size_t bytes,
                                   const AttentionArgs& args, cudaStream_t stream) {
  if (bytes > 48 * 1024) {
    // Above 48 KiB a kernel must opt in to dynamic shared memory.
    cudaError_t status =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
    if (status != cudaSuccess) return status;
  }
  kernel<<<grid, threads, bytes, stream>>>(args);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launchTensorCore(const AttentionArgs& args, dim3 grid, cudaStream_t stream) {
  const size_t bytes = tensorCoreSharedBytes(args.headSize, sizeof(T));
  switch (args.headSize) {
    case 16:
      return launchWithSharedMemory(tensorCoreAttention<T, 16>, grid, kTcThreads, bytes, args, stream);
    case 32:
      return launchWithSharedMemory(tensorCoreAttention<T, 32>, grid, kTcThreads, bytes, args, stream);
    case 64:
      return launchWithSharedMemory(tensorCoreAttention<T, 64>, grid, kTcThreads, bytes, args, stream);
    case 128:
      return launchWithSharedMemory(tensorCoreAttention<T, 128>, grid, kTcThreads, bytes, args, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

bool aligned(const void* pointer, const int64_t (&strides)[3]) {
  return reinterpret_cast<uintptr_t>(pointer) % 4 == 0 && strides[0] % 2 == 0 &&
         strides[1] % 2 == 0 && strides[2] % 2 == 0;
}

}  // namespace

bool tensorCoreAttentionSupports(const AttentionArgs& args) {
  if (args.type != kF16 && args.type != kBf16) return false;
  if (args.headSize != args.valueHeadSize) return false;
  if (args.headSize != 16 && args.headSize != 32 && args.headSize != 64 && args.headSize != 128) {
    return false;
  }
  return aligned(args.query, args.queryStrides) && aligned(args.key, args.keyStrides) &&
         aligned(args.value, args.valueStrides);
}

cudaError_t launchAttention(const AttentionArgs& args, bool useTensorCores, cudaStream_t stream) {
  if (args.batch == 0 || args.sequence == 0 || args.heads == 0) return cudaSuccess;
  if (args.headSize <= 0 || args.headSize > kMaxAttentionHeadSize || args.valueHeadSize <= 0 ||
      args.valueHeadSize > kMaxAttentionHeadSize || args.keySequence <= 0) {
    return cudaErrorInvalidValue;
  }
  if (useTensorCores && tensorCoreAttentionSupports(args)) {
    const dim3 grid((args.sequence + kTcRows - 1) / kTcRows, args.heads, args.batch);
    if (args.type == kF16) return launchTensorCore<__half>(args, grid, stream);
    return launchTensorCore<__nv_bfloat16>(args, grid, stream);
  }
  const dim3 grid((args.sequence + kSimtRows - 1) / kSimtRows, args.heads, args.batch);
  const size_t bytes = simtSharedFloats(args.headSize, args.valueHeadSize) * sizeof(float);
  if (args.valueHeadSize <= 64) {
    return launchWithSharedMemory(simtAttention<16>, grid, kSimtThreads, bytes, args, stream);
  }
  if (args.valueHeadSize <= 128) {
    return launchWithSharedMemory(simtAttention<32>, grid, kSimtThreads, bytes, args, stream);
  }
  return launchWithSharedMemory(simtAttention<64>, grid, kSimtThreads, bytes, args, stream);
}

}  // namespace roformer::runtime::cuda
