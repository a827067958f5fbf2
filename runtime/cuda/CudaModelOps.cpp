// Device implementations of the ops that carry the model's arithmetic:
// MatMul (cuBLASLt, with the bias Add fused into its epilogue),
// LayerNormalization, SkipLayerNormalization, the GELU family,
// RotaryEmbedding and MultiHeadAttention.
#include <cmath>
#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include "runtime/cuda/CudaKernel.h"
#include "runtime/cuda/CudaOps.h"
#include "runtime/cuda/MatMulFusion.h"
#include "runtime/cuda/RotaryFusion.h"

namespace roformer::runtime::cuda {
namespace {

cudaDataType_t cudaTypeOf(DataType type) {
  switch (type) {
    case DataType::kFloat16:
      return CUDA_R_16F;
    case DataType::kBfloat16:
      return CUDA_R_16BF;
    default:
      return CUDA_R_32F;
  }
}

// The largest power of two up to 256 that divides the address; cuBLASLt
// picks kernels by the operands' alignment.
uint32_t alignmentOf(const void* pointer) {
  const auto address = reinterpret_cast<uintptr_t>(pointer);
  uint32_t alignment = 256;
  while (alignment > 1 && address % alignment != 0) alignment /= 2;
  return alignment;
}

// Converts `view` to `type` in a temporary device buffer unless it already
// has that type. The buffer is freed in stream order after its last use.
absl::StatusOr<const void*> asType(CudaContext& context, const TensorView& view, DataType type,
                                   cudaStream_t stream, std::vector<DeviceBuffer>& temporaries) {
  if (view.type == type) return view.data;
  absl::StatusOr<DeviceBuffer> buffer =
      context.allocate(static_cast<size_t>(view.elementCount()) * ir::dataTypeSize(type));
  if (!buffer.ok()) return buffer.status();
  if (absl::Status status =
          cudaStatus(launchConvert(view.data, elementTypeOf(view.type), buffer->data,
                                   elementTypeOf(type), view.elementCount(), stream),
                     "converting a MatMul operand");
      !status.ok()) {
    return status;
  }
  temporaries.push_back(*buffer);
  return buffer->data;
}

// Moves `input` to `output` for a kernel whose work another kernel absorbed:
// nothing when the planner runs it in place, otherwise a copy that converts
// the element type when the two differ.
cudaError_t moveInput(const TensorView& input, const TensorView& output, cudaStream_t stream) {
  if (output.data == input.data || input.elementCount() == 0) return cudaSuccess;
  return launchConvert(input.data, elementTypeOf(input.type), output.data,
                       elementTypeOf(output.type), input.elementCount(), stream);
}

// ---- MatMul ----

// C[m, n] = A[m, k] B[k, n] (+ bias[n]) in row-major order, `batch` times
// with the given element strides between products.
struct GemmGeometry {
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  int64_t batch = 1;
  int64_t strideA = 0;
  int64_t strideB = 0;
  int64_t strideC = 0;
};

class MatMulKernel : public OpKernel {
 public:
  // With `fusedBias`, the product adds it in cuBLASLt's epilogue, and with
  // `geluEpilogue` also applies the erf GELU there.
  MatMulKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
               std::unique_ptr<Kernel> cpu, std::shared_ptr<ir::Tensor> fusedBias,
               bool geluEpilogue)
      : OpKernel(node, std::move(context), std::move(cpu),
                 // The host path would drop a fused bias.
                 Options{.hostEvaluable = fusedBias == nullptr, .forceActivationType = true}),
        fusedBias_(std::move(fusedBias)),
        geluEpilogue_(geluEpilogue && fusedBias_ != nullptr) {}

  ~MatMulKernel() override {
    const CublasLtApi& lt = context()->lt();
    for (auto& [key, plan] : plans_) {
      lt.matmulDescDestroy(plan.desc);
      lt.matrixLayoutDestroy(plan.a);
      lt.matrixLayoutDestroy(plan.b);
      lt.matrixLayoutDestroy(plan.c);
    }
  }

  // Uploads the fused bias in the activation type.
  absl::Status prepare() {
    if (fusedBias_ == nullptr) return absl::OkStatus();
    const DataType type = context()->activationType();
    const int64_t count = fusedBias_->elementCount();
    std::vector<uint16_t> narrow;
    const void* host = fusedBias_->rawData();
    if (type != DataType::kFloat) {
      const float* values = reinterpret_cast<const float*>(fusedBias_->rawData());
      narrow.resize(static_cast<size_t>(count));
      for (int64_t i = 0; i < count; ++i) {
        narrow[i] = type == DataType::kFloat16 ? floatToHalfBits(values[i])
                                               : floatToBfloat16Bits(values[i]);
      }
      host = narrow.data();
    }
    const size_t bytes = static_cast<size_t>(count) * ir::dataTypeSize(type);
    absl::StatusOr<DeviceBuffer> buffer = context()->allocatePermanent(bytes);
    if (!buffer.ok()) return buffer.status();
    biasBuffer_ = *buffer;
    return check(cudaMemcpy(biasBuffer_.data, host, bytes, cudaMemcpyHostToDevice),
                 "uploading the bias");
  }

 protected:
  bool deviceSupports(Call& call) override {
    // A fused bias exists only here, so this node must not fall back.
    if (fusedBias_ != nullptr) return true;
    return ir::isFloatingPoint(call.input(0).type) && ir::isFloatingPoint(call.input(1).type) &&
           geometry(call).ok();
  }

  absl::Status runDevice(Call& call) override {
    absl::StatusOr<GemmGeometry> shape = geometry(call);
    if (!shape.ok()) return shape.status();
    if (fusedBias_ != nullptr && shape->n != fusedBias_->elementCount()) {
      return invalidArgument("the product has ", shape->n, " columns but the bias Add after it has ",
                             fusedBias_->elementCount());
    }
    TensorView& output = call.output(0);
    if (output.elementCount() == 0) return absl::OkStatus();

    // Operands and result in the activation type, through temporaries when
    // they have another.
    const DataType type = context()->activationType();
    std::vector<DeviceBuffer> temporaries;
    absl::StatusOr<const void*> a = asType(*context(), call.input(0), type, call.stream(), temporaries);
    if (!a.ok()) return a.status();
    absl::StatusOr<const void*> b = asType(*context(), call.input(1), type, call.stream(), temporaries);
    if (!b.ok()) return b.status();
    void* c = output.data;
    if (output.type != type) {
      absl::StatusOr<DeviceBuffer> buffer = context()->allocate(
          static_cast<size_t>(output.elementCount()) * ir::dataTypeSize(type));
      if (!buffer.ok()) return buffer.status();
      temporaries.push_back(*buffer);
      c = buffer->data;
    }

    if (shape->k == 0 && biasBuffer_.data != nullptr) {
      // With an empty sum the output is the fused bias, which the fallback
      // kernel adds to its zero sums.
      if (absl::Status status = simpleGemm(call, *shape, type, *a, *b, c); !status.ok()) {
        return status;
      }
    } else if (shape->k == 0) {
      // An empty sum without a bias is all zeros.
      if (absl::Status status = check(
              cudaMemsetAsync(c, 0, static_cast<size_t>(output.elementCount()) * ir::dataTypeSize(type),
                              call.stream()),
              "clearing the output");
          !status.ok()) {
        return status;
      }
    } else if (absl::Status status = gemm(call, *shape, type, *a, *b, c); !status.ok()) {
      return status;
    }

    if (c != output.data) {
      return check(launchConvert(c, elementTypeOf(type), output.data, elementTypeOf(output.type),
                                 output.elementCount(), call.stream()),
                   "converting the output");
    }
    return absl::OkStatus();
  }

 private:
  struct PlanKey {
    int64_t m, n, k, batch, strideA, strideB, strideC;
    int type;
    uint32_t alignA, alignB, alignC;
    auto tie() const {
      return std::tie(m, n, k, batch, strideA, strideB, strideC, type, alignA, alignB, alignC);
    }
    bool operator<(const PlanKey& other) const { return tie() < other.tie(); }
  };
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr;  // our B, as cuBLASLt's column-major A
    cublasLtMatrixLayout_t b = nullptr;  // our A
    cublasLtMatrixLayout_t c = nullptr;
    cublasLtMatmulAlgo_t algo;
  };

  absl::StatusOr<GemmGeometry> geometry(const Call& call) const {
    const Shape& a = call.input(0).shape;
    const Shape& b = call.input(1).shape;
    if (a.size() < 2 || b.size() < 2) {
      return unimplemented("1-D operands are not supported by the CUDA MatMul");
    }
    GemmGeometry g;
    g.k = a.back();
    g.n = b.back();
    if (b[b.size() - 2] != g.k) return invalidArgument("inner dims differ");
    int64_t batchB = 1;
    for (size_t d = 0; d + 2 < b.size(); ++d) batchB *= b[d];
    if (batchB == 1) {
      // One weight matrix: all of A's rows in one product.
      g.m = 1;
      for (size_t d = 0; d + 1 < a.size(); ++d) g.m *= a[d];
      return g;
    }
    if (a.size() != b.size() || !std::equal(a.begin(), a.end() - 2, b.begin())) {
      return unimplemented("broadcast batch dims are not supported by the CUDA MatMul");
    }
    g.m = a[a.size() - 2];
    g.batch = batchB;
    g.strideA = g.m * g.k;
    g.strideB = g.k * g.n;
    g.strideC = g.m * g.n;
    return g;
  }

  absl::Status gemm(Call& call, const GemmGeometry& g, DataType type, const void* a, const void* b,
                    void* c) {
    const CublasLtApi& lt = context()->lt();
    PlanKey key{g.m,
                g.n,
                g.k,
                g.batch,
                g.strideA,
                g.strideB,
                g.strideC,
                static_cast<int>(type),
                alignmentOf(a),
                alignmentOf(b),
                alignmentOf(c)};
    absl::StatusOr<const Plan*> plan = findPlan(key, type);
    if (!plan.ok()) return plan.status();
    if (*plan != nullptr) {
      const float alpha = 1.0f;
      const float beta = 0.0f;
      cublasStatus_t status =
          lt.matmul(context()->ltHandle(), (*plan)->desc, &alpha, b, (*plan)->a, a, (*plan)->b,
                    &beta, c, (*plan)->c, c, (*plan)->c, &(*plan)->algo, call.thread.workspace,
                    call.thread.workspaceBytes, call.stream());
      if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
      if (status != CUBLAS_STATUS_NOT_SUPPORTED) {
        return absl::InternalError(
            absl::StrCat(name(), ": cublasLtMatmul failed: ", cublasStatusName(status)));
      }
    }
    // cuBLASLt declined this shape.
    return simpleGemm(call, g, type, a, b, c);
  }

  // Computes the product with the fallback kernel, adding the fused bias if there is one.
  absl::Status simpleGemm(Call& call, const GemmGeometry& g, DataType type, const void* a,
                          const void* b, void* c) {
    SimpleGemmArgs args;
    args.a = a;
    args.aType = elementTypeOf(type);
    args.b = b;
    args.bType = elementTypeOf(type);
    args.bias = biasBuffer_.data;
    args.biasType = elementTypeOf(type);
    args.erfGelu = geluEpilogue_;
    args.c = c;
    args.cType = elementTypeOf(type);
    args.m = g.m;
    args.n = g.n;
    args.k = g.k;
    args.batch = g.batch;
    args.strideA = g.strideA;
    args.strideB = g.strideB;
    args.strideC = g.strideC;
    return check(launchSimpleGemm(args, call.stream()), "launching the fallback matrix product");
  }

  // The cached cuBLASLt plan of `key`; null when cuBLASLt has no algorithm
  // for it.
  absl::StatusOr<const Plan*> findPlan(const PlanKey& key, DataType type) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = plans_.find(key);
    if (it != plans_.end()) return &it->second;
    if (unsupported_.count(key) > 0) return nullptr;

    const CublasLtApi& lt = context()->lt();
    Plan plan;
    auto destroy = [&] {
      if (plan.desc != nullptr) lt.matmulDescDestroy(plan.desc);
      if (plan.a != nullptr) lt.matrixLayoutDestroy(plan.a);
      if (plan.b != nullptr) lt.matrixLayoutDestroy(plan.b);
      if (plan.c != nullptr) lt.matrixLayoutDestroy(plan.c);
    };
    auto fail = [&](const char* what, cublasStatus_t status) {
      destroy();
      return absl::InternalError(
          absl::StrCat(name(), ": ", what, " failed: ", cublasStatusName(status)));
    };
    // Float32 accumulation for every type; no TF32 for float32 operands.
    cublasStatus_t status = lt.matmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (status != CUBLAS_STATUS_SUCCESS) return fail("cublasLtMatmulDescCreate", status);
    if (biasBuffer_.data != nullptr) {
      cublasLtEpilogue_t epilogue =
          geluEpilogue_ ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
      lt.matmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue));
      const void* bias = biasBuffer_.data;
      lt.matmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
    }
    // Row-major C = A B is column-major C^T = B^T A^T: cuBLASLt's A is our B
    // ([n, k] column-major), its B is our A ([k, m]), and C is [n, m].
    const cudaDataType_t cudaType = cudaTypeOf(type);
    status = lt.matrixLayoutCreate(&plan.a, cudaType, key.n, key.k, key.n);
    if (status != CUBLAS_STATUS_SUCCESS) return fail("cublasLtMatrixLayoutCreate", status);
    status = lt.matrixLayoutCreate(&plan.b, cudaType, key.k, key.m, key.k);
    if (status != CUBLAS_STATUS_SUCCESS) return fail("cublasLtMatrixLayoutCreate", status);
    status = lt.matrixLayoutCreate(&plan.c, cudaType, key.n, key.m, key.n);
    if (status != CUBLAS_STATUS_SUCCESS) return fail("cublasLtMatrixLayoutCreate", status);
    if (key.batch > 1) {
      const int32_t count = static_cast<int32_t>(key.batch);
      const int64_t strides[3] = {key.strideB, key.strideA, key.strideC};
      cublasLtMatrixLayout_t layouts[3] = {plan.a, plan.b, plan.c};
      for (int i = 0; i < 3; ++i) {
        lt.matrixLayoutSetAttribute(layouts[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                    sizeof(count));
        lt.matrixLayoutSetAttribute(layouts[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                    &strides[i], sizeof(strides[i]));
      }
    }

    cublasLtMatmulPreference_t preference = nullptr;
    status = lt.preferenceCreate(&preference);
    if (status != CUBLAS_STATUS_SUCCESS) return fail("cublasLtMatmulPreferenceCreate", status);
    const uint64_t workspace = 32u << 20;
    lt.preferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                              sizeof(workspace));
    lt.preferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key.alignB,
                              sizeof(key.alignB));
    lt.preferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key.alignA,
                              sizeof(key.alignA));
    lt.preferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.alignC,
                              sizeof(key.alignC));
    lt.preferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.alignC,
                              sizeof(key.alignC));
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    status = lt.algoGetHeuristic(context()->ltHandle(), plan.desc, plan.a, plan.b, plan.c, plan.c,
                                 preference, 1, &result, &found);
    lt.preferenceDestroy(preference);
    if ((status == CUBLAS_STATUS_SUCCESS && found == 0) || status == CUBLAS_STATUS_NOT_SUPPORTED) {
      destroy();
      unsupported_.insert(key);
      return nullptr;
    }
    if (status != CUBLAS_STATUS_SUCCESS) return fail("cublasLtMatmulAlgoGetHeuristic", status);
    plan.algo = result.algo;
    auto inserted = plans_.emplace(key, plan);
    return &inserted.first->second;
  }

  std::shared_ptr<ir::Tensor> fusedBias_;
  bool geluEpilogue_;
  DeviceBuffer biasBuffer_;
  std::mutex mutex_;
  std::map<PlanKey, Plan> plans_;
  std::set<PlanKey> unsupported_;
};

// ---- Normalization ----

// Statistics outputs (mean, inverse standard deviation) are float32.
class NormalizationKernel : public OpKernel {
 public:
  NormalizationKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
                      std::unique_ptr<Kernel> cpu, bool skip, int64_t axis, float epsilon)
      : OpKernel(node, std::move(context), std::move(cpu), Options{}),
        skip_(skip),
        axis_(axis),
        epsilon_(epsilon) {}

 protected:
  DataType deviceOutputType(const Call& call, size_t output, DataType cpuType) const override {
    if (output == 1 || output == 2) return DataType::kFloat;
    return OpKernel::deviceOutputType(call, output, cpuType);
  }

  bool deviceSupports(Call& call) override {
    const TensorView& x = call.input(0);
    if (!ir::isFloatingPoint(x.type) || x.type == DataType::kDouble || x.shape.empty()) return false;
    const int64_t width = rowWidth(x.shape);
    if (width <= 0 || width > kMaxLayerNormWidth) return false;
    // Scale and bias must each hold one row (broadcast forms fall back).
    const size_t first = skip_ ? 2 : 1;
    for (size_t i = first; i < call.kernel.inputs.size(); ++i) {
      if (call.hasInput(i) && call.input(i).elementCount() != width) return false;
    }
    return true;
  }

  absl::Status runDevice(Call& call) override {
    const TensorView& x = call.input(0);
    LayerNormArgs args;
    args.width = rowWidth(x.shape);
    args.rows = x.elementCount() / args.width;
    args.input = x.data;
    args.inputType = elementTypeOf(x.type);
    args.epsilon = epsilon_;

    size_t gammaIndex = 1;
    if (skip_) {
      const TensorView& skip = call.input(1);
      args.skip = skip.data;
      args.skipType = elementTypeOf(skip.type);
      args.skipRows = skip.elementCount() / args.width;
      gammaIndex = 2;
      if (call.hasInput(4)) {
        args.bias = call.input(4).data;
        args.biasType = elementTypeOf(call.input(4).type);
      }
    }
    args.gamma = call.input(gammaIndex).data;
    args.gammaType = elementTypeOf(call.input(gammaIndex).type);
    if (call.hasInput(gammaIndex + 1)) {
      args.beta = call.input(gammaIndex + 1).data;
      args.betaType = elementTypeOf(call.input(gammaIndex + 1).type);
    }

    args.output = call.output(0).data;
    args.outputType = elementTypeOf(call.output(0).type);
    if (call.kernel.outputs.size() > 1) args.mean = static_cast<float*>(call.output(1).data);
    if (call.kernel.outputs.size() > 2) args.invStdDev = static_cast<float*>(call.output(2).data);
    if (skip_ && call.kernel.outputs.size() > 3 && call.output(3).data != nullptr) {
      args.sum = call.output(3).data;
      args.sumType = elementTypeOf(call.output(3).type);
    }
    return check(launchLayerNorm(args, call.stream()), "launching the kernel");
  }

 private:
  int64_t rowWidth(const Shape& shape) const {
    if (skip_) return shape.back();
    const int64_t rank = static_cast<int64_t>(shape.size());
    const int64_t axis = axis_ < 0 ? axis_ + rank : axis_;
    // deviceSupports runs before the CPU kernel checks the axis. A width of
    // 0 sends an invalid axis to the fallback, which reports it.
    if (axis < 0 || axis >= rank) return 0;
    int64_t width = 1;
    for (int64_t d = axis; d < rank; ++d) width *= shape[d];
    return width;
  }

  bool skip_;
  int64_t axis_;
  float epsilon_;
};

// ---- GELU ----

class GeluKernel : public OpKernel {
 public:
  // With `absorbed`, the MatMul before it applied the bias and GELU in its
  // epilogue, and this kernel only moves its input to its output.
  GeluKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
             std::unique_ptr<Kernel> cpu, bool tanhForm, bool absorbed = false)
      : OpKernel(node, std::move(context), std::move(cpu),
                 // The host path would apply the GELU again.
                 Options{.hostEvaluable = !absorbed, .canRunInPlace = true}),
        tanhForm_(tanhForm),
        absorbed_(absorbed) {}

 protected:
  bool deviceSupports(Call& call) override {
    return absorbed_ || ir::isFloatingPoint(call.input(0).type);
  }

  absl::Status runDevice(Call& call) override {
    const TensorView& x = call.input(0);
    if (absorbed_) return check(moveInput(x, call.output(0), call.stream()), "moving the input");
    BiasGeluArgs args;
    args.input = x.data;
    args.inputType = elementTypeOf(x.type);
    if (call.hasInput(1)) {
      args.bias = call.input(1).data;
      args.biasType = elementTypeOf(call.input(1).type);
      args.width = x.shape.back();
    }
    args.output = call.output(0).data;
    args.outputType = elementTypeOf(call.output(0).type);
    args.count = x.elementCount();
    args.tanhForm = tanhForm_;
    return check(launchBiasGelu(args, call.stream()), "launching the kernel");
  }

 private:
  bool tanhForm_;
  bool absorbed_;
};

// ---- RotaryEmbedding ----

class RotaryKernel : public OpKernel {
 public:
  // With `absorbed`, the attention reading the output rotates it, and this
  // kernel only moves its input to its output.
  RotaryKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
               std::unique_ptr<Kernel> cpu, bool interleaved, int64_t numHeads, int64_t rotaryDim,
               bool absorbed)
      : OpKernel(node, context, std::move(cpu),
                 // The host path would rotate.
                 Options{.hostEvaluable = !absorbed, .canRunInPlace = true}),
        interleaved_(interleaved),
        numHeads_(numHeads),
        rotaryDim_(rotaryDim),
        absorbed_(absorbed) {
    errorCode_ = context->registerErrorSource(absl::StrCat(
        node.describe(), ": an element of input position_ids is outside the rows of the cos/sin "
                         "caches; position ids must be below max_positions"));
  }

 protected:
  bool deviceSupports(Call& call) override {
    // Absorbed, this node must not fall back: the attention rotates again.
    if (absorbed_) return true;
    const TensorView& x = call.input(0);
    return ir::isFloatingPoint(x.type) && x.type != DataType::kDouble &&
           (x.shape.size() == 3 || x.shape.size() == 4) &&
           call.input(2).type == call.input(3).type && ir::isFloatingPoint(call.input(2).type);
  }

  absl::Status runDevice(Call& call) override {
    const TensorView& x = call.input(0);
    if (absorbed_) {
      // The output type differs when a float32 input meets converted caches.
      return check(moveInput(x, call.output(0), call.stream()), "moving the input");
    }
    const TensorView& positions = call.input(1);
    const TensorView& cosCache = call.input(2);
    RotaryArgs args;
    args.input = x.data;
    args.inputType = elementTypeOf(x.type);
    args.output = call.output(0).data;
    args.outputType = elementTypeOf(call.output(0).type);
    args.maxPositions = cosCache.shape[0];

    args.batch = x.shape[0];
    if (x.shape.size() == 3) {
      args.sequence = x.shape[1];
      const int64_t hidden = x.shape[2];
      args.headSize = rotaryDim_ == 0 ? cosCache.shape[1] * 2 : hidden / numHeads_;
      args.heads = hidden / args.headSize;
      args.headStride = args.headSize;
      args.sequenceStride = hidden;
      args.batchStride = args.sequence * hidden;
    } else {
      args.heads = x.shape[1];
      args.sequence = x.shape[2];
      args.headSize = x.shape[3];
      args.sequenceStride = args.headSize;
      args.headStride = args.sequence * args.headSize;
      args.batchStride = args.heads * args.headStride;
    }
    args.rotaryDim = rotaryDim_ > 0 ? rotaryDim_ : args.headSize;

    args.cosCache = cosCache.data;
    args.sinCache = call.input(3).data;
    args.cacheType = elementTypeOf(cosCache.type);
    args.interleaved = interleaved_;
    args.error = ErrorSink{call.thread.errorFlag, errorCode_};

    if (positions.elementCount() == 1) {
      // One offset for every position: read it on the host and check the
      // whole range here.
      absl::StatusOr<TensorView> host = hostInput(call, 1);
      if (!host.ok()) return host.status();
      const int64_t offset = host->type == DataType::kInt32 ? *host->as<int32_t>()
                                                            : *host->as<int64_t>();
      if (offset < 0 || offset + args.sequence > args.maxPositions) {
        return invalidArgument("positions ", offset, " to ", offset + args.sequence - 1,
                               " (position_ids offset plus sequence) are outside the cos/sin "
                               "cache rows [0, ", args.maxPositions, ")");
      }
      args.positionOffset = offset;
    } else {
      args.positions = positions.data;
      args.positionType = elementTypeOf(positions.type);
    }
    return check(launchRotary(args, call.stream()), "launching the kernel");
  }

 private:
  bool interleaved_;
  int64_t numHeads_;
  int64_t rotaryDim_;
  bool absorbed_;
  int errorCode_ = 0;
};

// ---- MultiHeadAttention ----

class AttentionKernel : public OpKernel {
 public:
  AttentionKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
                  std::unique_ptr<Kernel> cpu, int64_t numHeads, float maskFilterValue,
                  float scale, bool unidirectional, std::optional<FusedRotary> rotary)
      : OpKernel(node, std::move(context), std::move(cpu),
                 // The host path would skip the absorbed rotation.
                 Options{.hostEvaluable = !rotary.has_value()}),
        numHeads_(numHeads),
        maskFilterValue_(maskFilterValue),
        scale_(scale),
        unidirectional_(unidirectional),
        rotary_(std::move(rotary)) {}

  // Uploads the absorbed rotation's caches as float32.
  absl::Status prepare() {
    if (!rotary_) return absl::OkStatus();
    for (auto [tensor, buffer] : {std::pair{rotary_->cosCache.get(), &rotaryCos_},
                                  std::pair{rotary_->sinCache.get(), &rotarySin_}}) {
      absl::StatusOr<DeviceBuffer> uploaded = context()->allocatePermanent(tensor->byteSize());
      if (!uploaded.ok()) return uploaded.status();
      *buffer = *uploaded;
      if (absl::Status status =
              check(cudaMemcpy(buffer->data, tensor->rawData(), tensor->byteSize(),
                               cudaMemcpyHostToDevice),
                    "uploading the rotary caches");
          !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  }

 protected:
  bool deviceSupports(Call& call) override {
    // With an absorbed rotation this node must not fall back; runDevice
    // reports what the kernels do not take.
    return rotary_.has_value() || arguments(call).ok();
  }

  absl::Status runDevice(Call& call) override {
    absl::StatusOr<AttentionArgs> args = arguments(call);
    if (!args.ok()) return args.status();
    return check(launchAttention(*args, context()->tensorCoreAttention(), call.stream()),
                 "launching the kernel");
  }

 private:
  // The device kernels take query [b, s, hidden] with key and value
  // [b, kv, hidden] or [b, heads, kv, head_size], an optional bias, and a
  // 1-D or 2-D key_padding_mask. Other forms fall back.
  absl::StatusOr<AttentionArgs> arguments(Call& call) const {
    if (unidirectional_) return unimplemented("unidirectional attention");
    for (size_t i = 5; i < call.kernel.inputs.size(); ++i) {
      if (call.hasInput(i)) return unimplemented("input ", i);
    }
    if (!call.hasInput(1) || !call.hasInput(2)) return unimplemented("packed inputs");
    const TensorView& query = call.input(0);
    const TensorView& key = call.input(1);
    const TensorView& value = call.input(2);
    if (query.type != key.type || query.type != value.type || !ir::isFloatingPoint(query.type) ||
        query.type == DataType::kDouble) {
      return unimplemented("query, key and value must have one float type");
    }
    if (query.shape.size() != 3 || query.shape[2] % numHeads_ != 0) {
      return unimplemented("query must be [batch, seq, hidden]");
    }

    AttentionArgs args;
    const int64_t heads = numHeads_;
    args.batch = static_cast<int>(query.shape[0]);
    args.sequence = static_cast<int>(query.shape[1]);
    args.heads = static_cast<int>(heads);
    args.headSize = static_cast<int>(query.shape[2] / heads);
    args.queryStrides[0] = query.shape[1] * query.shape[2];
    args.queryStrides[1] = query.shape[2];
    args.queryStrides[2] = args.headSize;

    if (key.shape.size() == 3 && value.shape.size() == 3) {
      args.keySequence = static_cast<int>(key.shape[1]);
      args.valueHeadSize = static_cast<int>(value.shape[2] / heads);
      args.keyStrides[0] = key.shape[1] * key.shape[2];
      args.keyStrides[1] = key.shape[2];
      args.keyStrides[2] = args.headSize;
      args.valueStrides[0] = value.shape[1] * value.shape[2];
      args.valueStrides[1] = value.shape[2];
      args.valueStrides[2] = args.valueHeadSize;
    } else if (key.shape.size() == 4 && value.shape.size() == 4) {
      args.keySequence = static_cast<int>(key.shape[2]);
      args.valueHeadSize = static_cast<int>(value.shape[3]);
      args.keyStrides[0] = heads * key.shape[2] * key.shape[3];
      args.keyStrides[1] = key.shape[3];
      args.keyStrides[2] = key.shape[2] * key.shape[3];
      args.valueStrides[0] = heads * value.shape[2] * value.shape[3];
      args.valueStrides[1] = value.shape[3];
      args.valueStrides[2] = value.shape[2] * value.shape[3];
    } else {
      return unimplemented("key and value must both be 3-D or both 4-D");
    }
    if (args.keySequence == 0 || args.headSize > kMaxAttentionHeadSize ||
        args.valueHeadSize > kMaxAttentionHeadSize) {
      return unimplemented("empty keys or head size above ", kMaxAttentionHeadSize);
    }

    args.query = query.data;
    args.key = key.data;
    args.value = value.data;
    args.type = elementTypeOf(query.type);
    if (call.hasInput(3)) {
      args.bias = call.input(3).data;
      args.biasType = elementTypeOf(call.input(3).type);
    }

    if (call.hasInput(4)) {
      const TensorView& mask = call.input(4);
      if (mask.shape.size() == 1) {
        args.maskKind = 1;
      } else if (mask.shape.size() == 2) {
        args.maskKind = 2;
      } else {
        return unimplemented("3-D key_padding_mask");
      }
      args.mask = mask.data;
      args.maskType = elementTypeOf(mask.type);
    }

    args.output = call.output(0).data;
    args.outputType = elementTypeOf(call.output(0).type);
    args.scale = scale_ != 0.0f ? scale_ : 1.0f / std::sqrt(static_cast<float>(args.headSize));
    args.maskFilterValue = maskFilterValue_;

    if (rotary_) {
      const int64_t positions = rotary_->cosCache->dims()[0];
      const int64_t pairs = rotary_->cosCache->dims()[1];
      if (args.headSize != 2 * pairs) {
        return invalidArgument("the absorbed rotary caches have ", pairs,
                               " columns, but the head size is ", args.headSize);
      }
      const int64_t last = rotary_->offset + std::max(args.sequence, args.keySequence) - 1;
      if (last >= positions) {
        return invalidArgument("positions ", rotary_->offset, " to ", last,
                               " (position_ids offset plus sequence) are outside the cos/sin "
                               "cache rows [0, ", positions, ")");
      }
      args.rotaryCos = static_cast<const float*>(rotaryCos_.data);
      args.rotarySin = static_cast<const float*>(rotarySin_.data);
      args.rotaryOffset = rotary_->offset;
    }
    return args;
  }

  int64_t numHeads_;
  float maskFilterValue_;
  float scale_;
  bool unidirectional_;
  std::optional<FusedRotary> rotary_;
  DeviceBuffer rotaryCos_;
  DeviceBuffer rotarySin_;
};

}  // namespace

void addModelOps(DeviceOpTable& table) {
  table[{"", "MatMul"}] = [](const ir::Node& node, std::shared_ptr<CudaContext> context,
                             std::unique_ptr<Kernel> cpu,
                             int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    std::shared_ptr<ir::Tensor> bias;
    bool gelu = false;
    const bool erfEpilogue = context->geluEpilogueForm() == GeluForm::kErf;
    if (const ir::Node* add = fusedBiasAdd(node)) {
      bias = ir::constantOf(add->input(1));
    } else if (const ir::Node* biasGelu = fusedBiasGelu(node, erfEpilogue)) {
      bias = ir::constantOf(biasGelu->input(1));
      gelu = true;
    }
    auto kernel =
        std::make_unique<MatMulKernel>(node, std::move(context), std::move(cpu), bias, gelu);
    if (absl::Status status = kernel->prepare(); !status.ok()) return status;
    return kernel;
  };

  table[{"", "LayerNormalization"}] = [](const ir::Node& node, std::shared_ptr<CudaContext> context,
                                         std::unique_ptr<Kernel> cpu,
                                         int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    absl::StatusOr<int64_t> axis = node.intAttribute("axis", -1);
    if (!axis.ok()) return axis.status();
    absl::StatusOr<float> epsilon = node.floatAttribute("epsilon", 1e-5f);
    if (!epsilon.ok()) return epsilon.status();
    return std::make_unique<NormalizationKernel>(node, std::move(context), std::move(cpu), false,
                                                 *axis, *epsilon);
  };
  table[{"com.microsoft", "SkipLayerNormalization"}] =
      [](const ir::Node& node, std::shared_ptr<CudaContext> context, std::unique_ptr<Kernel> cpu,
         int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    // ONNX Runtime's schema default for epsilon.
    absl::StatusOr<float> epsilon = node.floatAttribute("epsilon", 1e-12f);
    if (!epsilon.ok()) return epsilon.status();
    return std::make_unique<NormalizationKernel>(node, std::move(context), std::move(cpu), true,
                                                 -1, *epsilon);
  };

  const std::pair<const char*, bool> geluOps[] = {
      {"BiasGelu", false}, {"Gelu", false}, {"FastGelu", true}};
  for (const auto& [op, tanhForm] : geluOps) {
    table[{"com.microsoft", op}] = [tanhForm = tanhForm](
                                       const ir::Node& node, std::shared_ptr<CudaContext> context,
                                       std::unique_ptr<Kernel> cpu,
                                       int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
      const bool absorbed = isBiasGeluFusedIntoMatMul(
          node, context->geluEpilogueForm() == GeluForm::kErf);
      return std::make_unique<GeluKernel>(node, std::move(context), std::move(cpu), tanhForm,
                                          absorbed);
    };
  }
  table[{"", "Gelu"}] = [](const ir::Node& node, std::shared_ptr<CudaContext> context,
                           std::unique_ptr<Kernel> cpu,
                           int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    absl::StatusOr<std::string> approximate = node.stringAttribute("approximate", "none");
    if (!approximate.ok()) return approximate.status();
    return std::make_unique<GeluKernel>(node, std::move(context), std::move(cpu),
                                        *approximate == "tanh");
  };

  table[{"com.microsoft", "RotaryEmbedding"}] =
      [](const ir::Node& node, std::shared_ptr<CudaContext> context, std::unique_ptr<Kernel> cpu,
         int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    absl::StatusOr<int64_t> interleaved = node.intAttribute("interleaved", 0);
    if (!interleaved.ok()) return interleaved.status();
    absl::StatusOr<int64_t> numHeads = node.intAttribute("num_heads", 0);
    if (!numHeads.ok()) return numHeads.status();
    absl::StatusOr<int64_t> rotaryDim = node.intAttribute("rotary_embedding_dim", 0);
    if (!rotaryDim.ok()) return rotaryDim.status();
    return std::make_unique<RotaryKernel>(node, std::move(context), std::move(cpu),
                                          *interleaved == 1, *numHeads, *rotaryDim,
                                          isRotaryFusedIntoAttention(node));
  };

  table[{"com.microsoft", "MultiHeadAttention"}] =
      [](const ir::Node& node, std::shared_ptr<CudaContext> context, std::unique_ptr<Kernel> cpu,
         int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    absl::StatusOr<int64_t> numHeads = node.intAttribute("num_heads", 0);
    if (!numHeads.ok()) return numHeads.status();
    absl::StatusOr<float> maskFilterValue = node.floatAttribute("mask_filter_value", -10000.0f);
    if (!maskFilterValue.ok()) return maskFilterValue.status();
    absl::StatusOr<float> scale = node.floatAttribute("scale", 0.0f);
    if (!scale.ok()) return scale.status();
    absl::StatusOr<int64_t> unidirectional = node.intAttribute("unidirectional", 0);
    if (!unidirectional.ok()) return unidirectional.status();
    auto kernel = std::make_unique<AttentionKernel>(node, std::move(context), std::move(cpu),
                                                    *numHeads, *maskFilterValue, *scale,
                                                    *unidirectional != 0, fusedRotaryOf(node));
    if (absl::Status status = kernel->prepare(); !status.ok()) return status;
    return kernel;
  };
}

}  // namespace roformer::runtime::cuda
