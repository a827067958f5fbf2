// Launchers of the CUDA backend's device kernels.
//
// The argument structs use plain C++ types only, so that nvcc compiles the
// .cu files without Abseil or ONNX headers and g++ compiles the host side
// against the same declarations. Element types are ONNX TensorProto codes
// (the values of ir::DataType). Offsets, strides and counts are in elements.
// Every launcher enqueues its work on `stream` and returns the launch error;
// errors inside a kernel (an index out of range) set `errorFlag` instead.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace roformer::runtime::cuda {

enum ElementType : int {
  kF32 = 1,
  kU8 = 2,
  kI8 = 3,
  kU16 = 4,
  kI16 = 5,
  kI32 = 6,
  kI64 = 7,
  kBool = 9,
  kF16 = 10,
  kF64 = 11,
  kU32 = 12,
  kU64 = 13,
  kBf16 = 16,
};

// Most dims of an elementwise or copy loop nest after merging.
constexpr int kMaxDims = 8;

// The error flag of a run and the code of one kernel. The first failing
// kernel writes its code into *flag (atomicCAS from 0), and the host reads
// the flag back at the end of the run.
struct ErrorSink {
  int* flag = nullptr;
  int code = 0;
};

// ---- Elementwise ----

enum class UnaryOp : int {
  kCast,  // converts to the output type; Identity too
  kNot,
  kNeg,
  kAbs,
  kSqrt,
  kReciprocal,
  kExp,
  kLog,
  kErf,
  kSigmoid,
  kTanh,
  kRelu,
  kCos,
  kSin,
  kFloor,
  kCeil,
  kGeluErf,
  kGeluTanh,
};

enum class BinaryOp : int {
  kAdd,
  kSub,
  kMul,
  kDiv,
  kPow,
  kEqual,
  kLess,
  kLessOrEqual,
  kGreater,
  kGreaterOrEqual,
  kAnd,
  kOr,
  kXor,
  kMax,
  kMin,
  kWhere,  // inputs: condition, x, y
};

// A broadcast loop nest: output element (i0, ..., ik) of `dims` reads input
// j at sum(i_d * strides[j][d]); a stride of 0 broadcasts.
struct ElementwiseArgs {
  int op = 0;
  int arity = 1;
  int rank = 1;
  int64_t dims[kMaxDims] = {};
  const void* inputs[3] = {};
  int inputTypes[3] = {};
  int64_t strides[3][kMaxDims] = {};
  void* output = nullptr;
  int outputType = kF32;
  int64_t count = 0;
  // Computes in int64 instead of float32 (integer and bool operands).
  bool integerMath = false;
};

cudaError_t launchUnary(const ElementwiseArgs& args, cudaStream_t stream);
cudaError_t launchBinary(const ElementwiseArgs& args, cudaStream_t stream);

// gelu(x + bias[i % width]) (erf form) on `count` elements; bias may be null.
struct BiasGeluArgs {
  const void* input = nullptr;
  int inputType = kF32;
  const void* bias = nullptr;
  int biasType = kF32;
  int64_t width = 1;
  void* output = nullptr;
  int outputType = kF32;
  int64_t count = 0;
  bool tanhForm = false;
};
cudaError_t launchBiasGelu(const BiasGeluArgs& args, cudaStream_t stream);

// ---- Data movement ----

// destination[dstOffset + sum(i_d * dstStrides[d])] =
//     convert(source[srcOffset + sum(i_d * srcStrides[d])]) over `dims`.
struct StridedCopyArgs {
  int rank = 1;
  int64_t dims[kMaxDims] = {};
  const void* source = nullptr;
  int sourceType = kF32;
  int64_t sourceOffset = 0;
  int64_t sourceStrides[kMaxDims] = {};
  void* destination = nullptr;
  int destinationType = kF32;
  int64_t destinationOffset = 0;
  int64_t destinationStrides[kMaxDims] = {};
  int64_t count = 0;
};
cudaError_t launchStridedCopy(const StridedCopyArgs& args, cudaStream_t stream);

// Converts `count` contiguous elements between types (a plain copy when the
// types are equal).
cudaError_t launchConvert(const void* source, int sourceType, void* destination,
                          int destinationType, int64_t count, cudaStream_t stream);

// output[o, i, k] = data[o, index(i), k] for data [outer, axisDim, inner].
// Negative indices count from the end; an index outside [-axisDim, axisDim)
// writes zeros and reports through `error`.
struct GatherArgs {
  const void* data = nullptr;
  int dataType = kF32;
  const void* indices = nullptr;
  int indexType = kI64;
  void* output = nullptr;
  int outputType = kF32;
  int64_t outer = 1;
  int64_t axisDim = 1;
  int64_t inner = 1;
  int64_t indexCount = 0;
  ErrorSink error;
};
cudaError_t launchGather(const GatherArgs& args, cudaStream_t stream);

// ---- Matrix product without cuBLASLt ----

// C[b, m, n] = sum_k A[b, m, k] B[b, k, n] (+ bias[n]) in row-major order,
// float32 accumulation, any float types. It serves the shapes for which
// cuBLASLt's heuristics find no algorithm. With one thread per output
// element it is far slower than cuBLASLt.
struct SimpleGemmArgs {
  const void* a = nullptr;
  int aType = kF32;
  const void* b = nullptr;
  int bType = kF32;
  const void* bias = nullptr;
  int biasType = kF32;
  void* c = nullptr;
  int cType = kF32;
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  int64_t batch = 1;
  int64_t strideA = 0;
  int64_t strideB = 0;
  int64_t strideC = 0;
  // Applies the erf GELU after the bias.
  bool erfGelu = false;
};
cudaError_t launchSimpleGemm(const SimpleGemmArgs& args, cudaStream_t stream);

// ---- Reductions ----

enum class ReduceOp : int { kSum, kMean, kMax, kMin, kProd, kSumSquare, kL1, kL2, kLogSumExp };

// Reduces the middle dim of input [outer, reduce, inner] into [outer, inner],
// accumulating in float32 (int64 for integer types with integerMath).
struct ReduceArgs {
  int op = 0;
  const void* input = nullptr;
  int inputType = kF32;
  void* output = nullptr;
  int outputType = kF32;
  int64_t outer = 1;
  int64_t reduce = 1;
  int64_t inner = 1;
  bool integerMath = false;
};
cudaError_t launchReduce(const ReduceArgs& args, cudaStream_t stream);

// Softmax (or log-softmax) over the last dim of [rows, width], in float32.
struct SoftmaxArgs {
  const void* input = nullptr;
  int inputType = kF32;
  void* output = nullptr;
  int outputType = kF32;
  int64_t rows = 0;
  int64_t width = 0;
  bool logarithm = false;
};
cudaError_t launchSoftmax(const SoftmaxArgs& args, cudaStream_t stream);

// ---- Normalization ----

// LayerNormalization over the last dim of [rows, width], or
// SkipLayerNormalization when skip is set: x = input + skip[row % skipRows]
// (+ bias), normalized. Statistics are float32. mean and invStdDev
// ([rows], float32) and sum (x before normalizing) are written when set.
struct LayerNormArgs {
  const void* input = nullptr;
  int inputType = kF32;
  const void* skip = nullptr;
  int skipType = kF32;
  int64_t skipRows = 1;
  const void* bias = nullptr;
  int biasType = kF32;
  const void* gamma = nullptr;
  int gammaType = kF32;
  const void* beta = nullptr;
  int betaType = kF32;
  void* output = nullptr;
  int outputType = kF32;
  float* mean = nullptr;
  float* invStdDev = nullptr;
  void* sum = nullptr;
  int sumType = kF32;
  int64_t rows = 0;
  int64_t width = 0;
  float epsilon = 1e-5f;
};
// Largest width the row-in-registers kernel takes.
constexpr int64_t kMaxLayerNormWidth = 16384;
cudaError_t launchLayerNorm(const LayerNormArgs& args, cudaStream_t stream);

// ---- Rotary embedding (com.microsoft RotaryEmbedding) ----

// Element (b, s, head, i) of input and output is at b * batchStride +
// s * sequenceStride + head * headStride + i. Position ids are [batch, seq]
// on the device, or null with `positionOffset` + s as the position.
struct RotaryArgs {
  const void* input = nullptr;
  int inputType = kF32;
  void* output = nullptr;
  int outputType = kF32;
  int64_t batch = 0;
  int64_t sequence = 0;
  int64_t heads = 0;
  int64_t headSize = 0;
  int64_t rotaryDim = 0;
  int64_t batchStride = 0;
  int64_t sequenceStride = 0;
  int64_t headStride = 0;
  const void* positions = nullptr;
  int positionType = kI64;
  int64_t positionOffset = 0;
  const void* cosCache = nullptr;
  const void* sinCache = nullptr;
  int cacheType = kF32;
  int64_t maxPositions = 0;
  bool interleaved = true;
  ErrorSink error;
};
cudaError_t launchRotary(const RotaryArgs& args, cudaStream_t stream);

// ---- Attention (com.microsoft MultiHeadAttention) ----

// Query/key/value element (b, t, head, i) is at base + b * batchStride +
// t * sequenceStride + head * headStride + i. The output is [batch, seq,
// heads * valueHeadSize]. Masked keys get maskFilterValue added to their
// scaled score, as ONNX Runtime does.
struct AttentionArgs {
  const void* query = nullptr;
  const void* key = nullptr;
  const void* value = nullptr;
  int type = kF32;  // of query, key and value
  int64_t queryStrides[3] = {};  // batch, sequence, head
  int64_t keyStrides[3] = {};
  int64_t valueStrides[3] = {};
  // Q, K and V biases concatenated ([heads * (2 * headSize + valueHeadSize)]), or null.
  const void* bias = nullptr;
  int biasType = kF32;
  // key_padding_mask: kind 0 none, 1 [batch] valid key counts, 2 [batch, kvSeq].
  const void* mask = nullptr;
  int maskType = kI32;
  int maskKind = 0;
  void* output = nullptr;
  int outputType = kF32;
  int batch = 0;
  int heads = 0;
  int sequence = 0;
  int keySequence = 0;
  int headSize = 0;
  int valueHeadSize = 0;
  float scale = 1.0f;
  float maskFilterValue = -10000.0f;
  // Rotary embedding of Q and K, applied as they are loaded (before the
  // bias). Interleaved pairs (2i, 2i + 1) of each head are rotated by the
  // angle of position rotaryOffset + token index, from float32 caches of
  // [positions, headSize / 2]. Null caches: no rotation. The host checks
  // that every position is a row of the caches.
  const float* rotaryCos = nullptr;
  const float* rotarySin = nullptr;
  int64_t rotaryOffset = 0;
};
// Largest head size the kernels take.
constexpr int kMaxAttentionHeadSize = 256;
// True when the tensor-core kernel (fp16/bf16, head sizes 16, 32, 64 and 128,
// equal for keys and values) can run these arguments.
bool tensorCoreAttentionSupports(const AttentionArgs& args);
cudaError_t launchAttention(const AttentionArgs& args, bool useTensorCores, cudaStream_t stream);

}  // namespace roformer::runtime::cuda
