// Google Benchmark micro-benchmarks of the CPU kernels that dominate a
// full-size RoFormer run (hidden 768, 12 heads of 64, FFN 3072): the MatMul
// shapes of the projections and the FFN, LayerNormalization,
// SkipLayerNormalization, BiasGelu and MultiHeadAttention. Each kernel is
// built through the CPU kernel registry from a one-node graph, exactly as a
// session builds it, and timed in wall-clock time because the kernels run on
// several threads. OpenBLAS sgemm on the same shapes is the reference for the
// MatMul rows.
//
// Both counters are rates per second of wall time. GFLOP (read as GFLOP/s)
// counts 2 flops per multiply-add of the matrix products and leaves softmax
// and normalization arithmetic out. GB (read as GB/s) counts every input read
// once and every output written once, a lower bound of the memory traffic.
//
// Usage: bench-kernels [--threads=N] [Google Benchmark flags]
//   --threads=N  threads for the kernels and OpenBLAS (default: every
//                hardware thread, as roformer-run)
#include <cblas.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "ir/Graph.h"
#include "runtime/Backend.h"
#include "runtime/Kernel.h"
#include "runtime/Tensor.h"
#include "runtime/cpu/CpuKernels.h"

namespace {

using roformer::ir::DataType;
using roformer::runtime::HostTensor;
using roformer::runtime::KernelContext;
using roformer::runtime::Shape;
using roformer::runtime::TensorView;

constexpr int64_t kHidden = 768;
constexpr int64_t kFfn = 3072;
constexpr int64_t kHeads = 12;
constexpr int64_t kSequence = 1024;
// bert4keras's LayerNorm epsilon, which fuse-layernorm copies into the node.
constexpr float kLayerNormEpsilon = 1e-12f;

int threadCount = 0;

HostTensor randomFloats(Shape shape, uint32_t seed, float mean = 0.0f, float stddev = 1.0f) {
  HostTensor tensor(DataType::kFloat, std::move(shape));
  std::mt19937 random(seed);
  std::normal_distribution<float> normal(mean, stddev);
  float* data = tensor.data<float>();
  for (int64_t i = 0; i < tensor.elementCount(); ++i) data[i] = normal(random);
  return tensor;
}

HostTensor onesInt32(Shape shape) {
  HostTensor tensor(DataType::kInt32, std::move(shape));
  std::fill_n(tensor.data<int32_t>(), tensor.elementCount(), 1);
  return tensor;
}

// One node of a one-node graph, its CPU kernel, and the tensors it reads and
// writes.
class KernelHarness {
 public:
  KernelHarness(std::string opType, std::string domain, int opset)
      : opType_(std::move(opType)), domain_(std::move(domain)), opset_(opset),
        threads_(roformer::runtime::resolveThreadCount(threadCount)) {}

  void addInput(HostTensor tensor) { inputs_.push_back(std::move(tensor)); }
  void setIntAttribute(std::string name, int64_t value) { intAttributes_.emplace_back(name, value); }
  void setFloatAttribute(std::string name, float value) {
    floatAttributes_.emplace_back(name, value);
  }

  // Builds the node and its kernel, infers the output shapes and allocates
  // the outputs.
  absl::Status prepare(size_t outputCount = 1) {
    std::vector<roformer::ir::Value*> values;
    for (size_t i = 0; i < inputs_.size(); ++i) {
      // An empty tensor stands for an omitted optional input.
      values.push_back(inputs_[i].empty() ? nullptr
                                          : graph_.getOrCreateValue(absl::StrCat("input", i)));
    }
    std::vector<std::string> outputNames;
    for (size_t i = 0; i < outputCount; ++i) outputNames.push_back(absl::StrCat("output", i));
    roformer::ir::Node* node = graph_.createNode(opType_, domain_, values, outputNames);
    for (const auto& [name, value] : intAttributes_) node->setIntAttribute(name, value);
    for (const auto& [name, value] : floatAttributes_) node->setFloatAttribute(name, value);

    const roformer::runtime::KernelFactory* factory =
        roformer::runtime::cpuKernelRegistry().find(domain_, opType_, opset_);
    if (factory == nullptr) {
      return absl::NotFoundError(absl::StrCat("the CPU backend has no kernel for ", domain_,
                                              domain_.empty() ? "" : ".", opType_, " at opset ",
                                              opset_));
    }
    absl::StatusOr<std::unique_ptr<roformer::runtime::Kernel>> kernel = (*factory)(*node);
    if (!kernel.ok()) return kernel.status();
    kernel_ = std::move(*kernel);

    // As in a session: OpenBLAS on one thread, the kernels split the work.
    roformer::runtime::setBlasThreads(1);
    pool_ = std::make_unique<roformer::runtime::ThreadPool>(threads_);
    for (const HostTensor& input : inputs_) inputViews_.push_back(input.view());
    outputViews_.resize(outputCount);
    KernelContext context = makeContext();
    if (absl::Status inferred = kernel_->inferOutputs(context); !inferred.ok()) return inferred;
    for (TensorView& view : outputViews_) {
      outputs_.emplace_back(view.type, view.shape);
      view.data = outputs_.back().rawData();
    }
    return absl::OkStatus();
  }

  absl::Status run() {
    KernelContext context = makeContext();
    return kernel_->compute(context);
  }

  int threads() const { return threads_; }

 private:
  KernelContext makeContext() {
    KernelContext context;
    context.inputs = inputViews_;
    context.outputs = outputViews_;
    context.threads = pool_.get();
    return context;
  }

  std::string opType_;
  std::string domain_;
  int opset_;
  int threads_;
  roformer::ir::Graph graph_;
  std::vector<std::pair<std::string, int64_t>> intAttributes_;
  std::vector<std::pair<std::string, float>> floatAttributes_;
  std::vector<HostTensor> inputs_;
  std::vector<HostTensor> outputs_;
  std::vector<TensorView> inputViews_;
  std::vector<TensorView> outputViews_;
  std::unique_ptr<roformer::runtime::Kernel> kernel_;
  std::unique_ptr<roformer::runtime::ThreadPool> pool_;
};

// Times harness.run() and sets the counters from the work of one run.
void runHarness(benchmark::State& state, KernelHarness& harness, double flops, double bytes) {
  if (absl::Status prepared = harness.prepare(); !prepared.ok()) {
    state.SkipWithError(std::string(prepared.message()).c_str());
    return;
  }
  for (auto _ : state) {
    if (absl::Status ran = harness.run(); !ran.ok()) {
      state.SkipWithError(std::string(ran.message()).c_str());
      return;
    }
  }
  if (flops > 0) {
    state.counters["GFLOP"] =
        benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  }
  state.counters["GB"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = harness.threads();
}

// Arguments of the matrix products: batch, sequence, K, N. M is batch *
// sequence because the MatMul kernel folds a [batch, seq, K] input into one
// product when B is a 2-D weight.
void matMulArguments(benchmark::internal::Benchmark* benchmark) {
  benchmark->ArgNames({"batch", "seq", "K", "N"});
  benchmark->Args({1, kSequence, kHidden, kHidden});      // attention output projection
  benchmark->Args({1, kSequence, kHidden, kFfn});         // FFN in
  benchmark->Args({1, kSequence, kFfn, kHidden});         // FFN out
  benchmark->Args({2, kSequence, kHidden, 3 * kHidden});  // packed QKV projection, batch 2
}

double matMulFlops(int64_t m, int64_t n, int64_t k) { return 2.0 * m * n * k; }
double matMulBytes(int64_t m, int64_t n, int64_t k) { return 4.0 * (m * k + k * n + m * n); }

void BM_MatMul(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const int64_t sequence = state.range(1);
  const int64_t k = state.range(2);
  const int64_t n = state.range(3);
  KernelHarness harness("MatMul", "", 13);
  harness.addInput(randomFloats({batch, sequence, k}, 1));
  harness.addInput(randomFloats({k, n}, 2, 0.0f, 0.02f));
  const int64_t m = batch * sequence;
  runHarness(state, harness, matMulFlops(m, n, k), matMulBytes(m, n, k));
}
BENCHMARK(BM_MatMul)->Apply(matMulArguments)->UseRealTime()->Unit(benchmark::kMillisecond);

// cblas_sgemm on the same shapes, without the kernel: the MatMul rows should
// be within a few percent of these.
void BM_OpenBlasSgemm(benchmark::State& state) {
  const int64_t m = state.range(0) * state.range(1);
  const int64_t k = state.range(2);
  const int64_t n = state.range(3);
  const int threads = roformer::runtime::resolveThreadCount(threadCount);
  roformer::runtime::setBlasThreads(threads);
  HostTensor a = randomFloats({m, k}, 1);
  HostTensor b = randomFloats({k, n}, 2, 0.0f, 0.02f);
  HostTensor c(DataType::kFloat, {m, n});
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(m),
                static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, a.data<float>(),
                static_cast<blasint>(k), b.data<float>(), static_cast<blasint>(n), 0.0f,
                c.data<float>(), static_cast<blasint>(n));
    benchmark::DoNotOptimize(c.data<float>());
  }
  state.counters["GFLOP"] = benchmark::Counter(matMulFlops(m, n, k) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB"] = benchmark::Counter(matMulBytes(m, n, k) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = threads;
}
BENCHMARK(BM_OpenBlasSgemm)->Apply(matMulArguments)->UseRealTime()->Unit(benchmark::kMillisecond);

// LayerNormalization over the last axis of [rows, 768] (ONNX opset 17).
void BM_LayerNormalization(benchmark::State& state) {
  const int64_t rows = state.range(0);
  KernelHarness harness("LayerNormalization", "", 17);
  harness.addInput(randomFloats({rows, kHidden}, 3));
  harness.addInput(randomFloats({kHidden}, 4, 1.0f, 0.1f));
  harness.addInput(randomFloats({kHidden}, 5, 0.0f, 0.1f));
  harness.setIntAttribute("axis", -1);
  harness.setFloatAttribute("epsilon", kLayerNormEpsilon);
  runHarness(state, harness, 0, 4.0 * (2 * rows * kHidden + 2 * kHidden));
}
BENCHMARK(BM_LayerNormalization)
    ->ArgName("rows")
    ->Arg(kSequence)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// SkipLayerNormalization with a bias, as fuse-skip-layernorm emits it after a
// dense layer: input, skip, gamma, beta, bias.
void BM_SkipLayerNormalization(benchmark::State& state) {
  const int64_t rows = state.range(0);
  KernelHarness harness("SkipLayerNormalization", "com.microsoft", 1);
  harness.addInput(randomFloats({1, rows, kHidden}, 6));
  harness.addInput(randomFloats({1, rows, kHidden}, 7));
  harness.addInput(randomFloats({kHidden}, 8, 1.0f, 0.1f));
  harness.addInput(randomFloats({kHidden}, 9, 0.0f, 0.1f));
  harness.addInput(randomFloats({kHidden}, 10, 0.0f, 0.1f));
  harness.setFloatAttribute("epsilon", kLayerNormEpsilon);
  runHarness(state, harness, 0, 4.0 * (3 * rows * kHidden + 3 * kHidden));
}
BENCHMARK(BM_SkipLayerNormalization)
    ->ArgName("rows")
    ->Arg(kSequence)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// BiasGelu on the FFN's intermediate [1, rows, 3072].
void BM_BiasGelu(benchmark::State& state) {
  const int64_t rows = state.range(0);
  KernelHarness harness("BiasGelu", "com.microsoft", 1);
  harness.addInput(randomFloats({1, rows, kFfn}, 11));
  harness.addInput(randomFloats({kFfn}, 12, 0.0f, 0.1f));
  runHarness(state, harness, 0, 4.0 * (2 * rows * kFfn + kFfn));
}
BENCHMARK(BM_BiasGelu)->ArgName("rows")->Arg(kSequence)->UseRealTime()->Unit(
    benchmark::kMicrosecond);

// MultiHeadAttention on separate Q, K, V of [1, seq, 768] (12 heads of 64)
// with an int32 key_padding_mask of ones, the form fuse-rotary-attention
// emits (the rotary embedding is applied before, by RotaryEmbedding).
void BM_MultiHeadAttention(benchmark::State& state) {
  const int64_t sequence = state.range(0);
  const int64_t batch = 1;
  const int64_t headSize = kHidden / kHeads;
  KernelHarness harness("MultiHeadAttention", "com.microsoft", 1);
  harness.addInput(randomFloats({batch, sequence, kHidden}, 13));
  harness.addInput(randomFloats({batch, sequence, kHidden}, 14));
  harness.addInput(randomFloats({batch, sequence, kHidden}, 15));
  harness.addInput(HostTensor());  // bias omitted
  harness.addInput(onesInt32({batch, sequence}));
  harness.setIntAttribute("num_heads", kHeads);
  // Q K^T and P V: 2 * seq * seq * head_size flops each, per head.
  const double flops = 4.0 * batch * kHeads * sequence * sequence * headSize;
  const double bytes = 4.0 * (4 * batch * sequence * kHidden + batch * sequence);
  runHarness(state, harness, flops, bytes);
}
BENCHMARK(BM_MultiHeadAttention)
    ->ArgName("seq")
    ->Arg(128)
    ->Arg(512)
    ->Arg(kSequence)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Removes --threads=N from argv (Google Benchmark rejects flags it does not
// know) and stores N. Returns false on an invalid value.
bool takeThreadsFlag(int& argc, char** argv) {
  const std::string prefix = "--threads=";
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    std::string argument = argv[i];
    if (argument.rfind(prefix, 0) != 0) {
      argv[kept++] = argv[i];
      continue;
    }
    char* end = nullptr;
    long value = std::strtol(argument.c_str() + prefix.size(), &end, 10);
    if (end == argument.c_str() + prefix.size() || *end != '\0' || value < 1) {
      std::cerr << "bench-kernels: error: invalid " << argument
                << "; expected --threads=N with N a positive integer\n";
      return false;
    }
    threadCount = static_cast<int>(value);
  }
  argc = kept;
  argv[argc] = nullptr;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (!takeThreadsFlag(argc, argv)) return 1;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("kernel_threads",
                              std::to_string(roformer::runtime::resolveThreadCount(threadCount)));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
