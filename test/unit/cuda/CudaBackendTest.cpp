// Tests of the CUDA backend that need no GPU: registration, the error on
// machines without one, the host-side fp16/bf16 conversions, and which Add
// nodes the MatMul kernel absorbs. Then the session-level behavior on a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>

#include "CudaTestSupport.h"
#include "runtime/Backend.h"
#include "runtime/cuda/GeluEpilogue.h"
#include "runtime/cuda/MatMulFusion.h"

namespace roformer::runtime::cuda {
namespace {

using testing::Feeds;
using testing::InputSpec;
using testing::OpSpec;

TEST(CudaBackendTest, RegisteredAsCuda) {
  std::vector<std::string> names = availableBackends();
  EXPECT_NE(std::find(names.begin(), names.end(), "cuda"), names.end());
}

TEST(CudaBackendTest, MissingDeviceIsFailedPrecondition) {
  if (cudaDeviceStatus().ok()) GTEST_SKIP() << "this machine has a CUDA device";
  BackendOptions options;
  options.precision = Precision::kFp16;
  absl::StatusOr<std::shared_ptr<Backend>> backend = createBackend("cuda", options);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(backend.status().message()).find("no CUDA device"), std::string::npos)
      << backend.status().message();
}

TEST(CudaBackendTest, CpuSessionsRunWithoutDevice) {
  // Linking the CUDA backend must not disturb the CPU path.
  OpSpec spec{"Add", "", {InputSpec::floating("a", 2), InputSpec::floating("b", 2)}};
  std::unique_ptr<ir::Model> model = testing::buildModel(spec, DataType::kFloat);
  Feeds feeds{{"a", testing::floatTensor({2, 3}, 1)}, {"b", testing::floatTensor({2, 3}, 2)}};
  absl::StatusOr<testing::RunResult> result = testing::runModel(*model, "cpu", Precision::kFp32, feeds);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FLOAT_EQ(result->outputs[0].data<float>()[4],
                  feeds.at("a").data<float>()[4] + feeds.at("b").data<float>()[4]);
}

// ---- Bias fusion into the MatMul epilogue ----

struct ProjectionGraph {
  ir::Graph graph;
  ir::Node* matMul = nullptr;
  ir::Node* add = nullptr;
};

// x [?, 4] -> MatMul(W [4, 3]) -> Add(b) -> y, with switches for the cases
// that must not fuse.
std::unique_ptr<ProjectionGraph> projection(bool biasFirst = false, bool secondUser = false,
                                            bool constantBias = true, int64_t biasSize = 3) {
  auto result = std::make_unique<ProjectionGraph>();
  ir::Graph& graph = result->graph;
  ir::Value* x = graph.getOrCreateValue("x");
  x->setTensorType(DataType::kFloat, std::vector<ir::Dim>{ir::Dim::unknown(), ir::Dim::known(4)});
  graph.addInput(x);
  ir::Value* w = graph.addInitializer("w", testing::floatConstant({4, 3}, 1));
  ir::Value* b;
  if (constantBias) {
    b = graph.addInitializer("b", testing::floatConstant({biasSize}, 2));
  } else {
    b = graph.getOrCreateValue("b");
    b->setTensorType(DataType::kFloat, std::vector<int64_t>{biasSize});
    graph.addInput(b);
  }
  result->matMul = graph.createNode("MatMul", "", {x, w}, {"xw"}, nullptr, "matmul");
  ir::Value* product = result->matMul->output(0);
  std::vector<ir::Value*> addInputs = biasFirst ? std::vector<ir::Value*>{b, product}
                                                : std::vector<ir::Value*>{product, b};
  result->add = graph.createNode("Add", "", addInputs, {"y"}, nullptr, "bias");
  graph.addOutput(result->add->output(0));
  if (secondUser) {
    ir::Node* other = graph.createNode("Relu", "", {product}, {"r"}, nullptr, "relu");
    graph.addOutput(other->output(0));
  }
  return result;
}

TEST(CudaBiasFusionTest, FusesConstantBiasOfProjection) {
  std::unique_ptr<ProjectionGraph> g = projection();
  EXPECT_EQ(fusedBiasAdd(*g->matMul), g->add);
  EXPECT_TRUE(isBiasAddFusedIntoMatMul(*g->add));
}

TEST(CudaBiasFusionTest, SkipsBiasAsFirstOperand) {
  std::unique_ptr<ProjectionGraph> g = projection(/*biasFirst=*/true);
  EXPECT_EQ(fusedBiasAdd(*g->matMul), nullptr);
  EXPECT_FALSE(isBiasAddFusedIntoMatMul(*g->add));
}

TEST(CudaBiasFusionTest, SkipsProductWithSecondUser) {
  std::unique_ptr<ProjectionGraph> g = projection(false, /*secondUser=*/true);
  EXPECT_EQ(fusedBiasAdd(*g->matMul), nullptr);
  EXPECT_FALSE(isBiasAddFusedIntoMatMul(*g->add));
}

TEST(CudaBiasFusionTest, SkipsNonConstantBias) {
  std::unique_ptr<ProjectionGraph> g = projection(false, false, /*constantBias=*/false);
  EXPECT_EQ(fusedBiasAdd(*g->matMul), nullptr);
}

TEST(CudaBiasFusionTest, SkipsBiasOfOtherWidth) {
  std::unique_ptr<ProjectionGraph> g = projection(false, false, true, /*biasSize=*/1);
  EXPECT_EQ(fusedBiasAdd(*g->matMul), nullptr);
}

// ---- BiasGelu in the MatMul epilogue ----

// x [?, 4] -> MatMul(W [4, 3]) -> com.microsoft BiasGelu(b) -> y.
std::unique_ptr<ProjectionGraph> geluProjection(bool secondUser = false) {
  auto result = std::make_unique<ProjectionGraph>();
  ir::Graph& graph = result->graph;
  ir::Value* x = graph.getOrCreateValue("x");
  x->setTensorType(DataType::kFloat, std::vector<ir::Dim>{ir::Dim::unknown(), ir::Dim::known(4)});
  graph.addInput(x);
  ir::Value* w = graph.addInitializer("w", testing::floatConstant({4, 3}, 1));
  ir::Value* b = graph.addInitializer("b", testing::floatConstant({3}, 2));
  result->matMul = graph.createNode("MatMul", "", {x, w}, {"xw"}, nullptr, "matmul");
  result->add = graph.createNode("BiasGelu", "com.microsoft", {result->matMul->output(0), b},
                                 {"y"}, nullptr, "gelu");
  graph.addOutput(result->add->output(0));
  if (secondUser) {
    ir::Node* other = graph.createNode("Relu", "", {result->matMul->output(0)}, {"r"}, nullptr,
                                       "relu");
    graph.addOutput(other->output(0));
  }
  return result;
}

TEST(CudaGeluFusionTest, FusesOnlyWithErfEpilogue) {
  std::unique_ptr<ProjectionGraph> g = geluProjection();
  EXPECT_EQ(fusedBiasGelu(*g->matMul, /*epilogueIsErf=*/true), g->add);
  EXPECT_TRUE(isBiasGeluFusedIntoMatMul(*g->add, true));
  EXPECT_EQ(fusedBiasGelu(*g->matMul, /*epilogueIsErf=*/false), nullptr);
  EXPECT_FALSE(isBiasGeluFusedIntoMatMul(*g->add, false));
  EXPECT_EQ(fusedBiasAdd(*g->matMul), nullptr);
}

TEST(CudaGeluFusionTest, SkipsProductWithSecondUser) {
  std::unique_ptr<ProjectionGraph> g = geluProjection(/*secondUser=*/true);
  EXPECT_EQ(fusedBiasGelu(*g->matMul, true), nullptr);
  EXPECT_FALSE(isBiasGeluFusedIntoMatMul(*g->add, true));
}

TEST(CudaGeluFusionTest, ClassifiesGeluForms) {
  std::vector<float> inputs;
  std::vector<float> erfValues;
  std::vector<float> tanhValues;
  for (int i = 0; i < 64; ++i) {
    const double x = -5.0 + 10.0 * i / 63;
    inputs.push_back(static_cast<float>(x));
    erfValues.push_back(static_cast<float>(0.5 * x * (1 + std::erf(x / std::sqrt(2.0)))));
    const double inner = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
    tanhValues.push_back(static_cast<float>(0.5 * x * (1 + std::tanh(inner))));
  }
  EXPECT_EQ(classifyGelu(inputs.data(), erfValues.data(), 64), GeluForm::kErf);
  EXPECT_EQ(classifyGelu(inputs.data(), tanhValues.data(), 64), GeluForm::kTanh);
  // Halfway between the forms is neither.
  std::vector<float> between(64);
  for (int i = 0; i < 64; ++i) between[i] = 0.5f * (erfValues[i] + tanhValues[i]);
  EXPECT_EQ(classifyGelu(inputs.data(), between.data(), 64), GeluForm::kUnknown);
}

TEST(CudaGeluFusionTest, ProbesTheEpilogueForm) {
  SKIP_WITHOUT_CUDA();
  absl::StatusOr<std::shared_ptr<CudaContext>> context = CudaContext::create(BackendOptions{});
  ASSERT_TRUE(context.ok()) << context.status();
  // The GPU check reads this line: which form the epilogue computes.
  std::cout << "cuBLASLt GELU epilogue: " << geluFormName((*context)->geluEpilogueForm())
            << ((*context)->geluEpilogueDetail().empty() ? "" : " (")
            << (*context)->geluEpilogueDetail()
            << ((*context)->geluEpilogueDetail().empty() ? "" : ")") << "\n";
  RecordProperty("gelu_epilogue", geluFormName((*context)->geluEpilogueForm()));
  EXPECT_NE((*context)->geluEpilogueForm(), GeluForm::kUnknown)
      << (*context)->geluEpilogueDetail();
}

TEST(CudaGeluFusionTest, ProjectionWithBiasGeluMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  // Whichever form the probe found, the result is the erf GELU: fused into
  // the epilogue, or the separate kernel.
  auto model = [](DataType floatType) {
    auto result = std::make_unique<ir::Model>();
    result->setOpsetVersion("", 17);
    result->setOpsetVersion("com.microsoft", 1);
    ir::Graph& graph = result->graph();
    ir::Value* x = graph.getOrCreateValue("x");
    x->setTensorType(floatType, std::vector<ir::Dim>(3, ir::Dim::unknown()));
    graph.addInput(x);
    ir::Value* w = graph.addInitializer("w", testing::floatConstant({96, 200}, 85, -0.2f, 0.2f));
    ir::Value* b = graph.addInitializer("b", testing::floatConstant({200}, 86));
    ir::Node* matMul = graph.createNode("MatMul", "", {x, w}, {"xw"}, nullptr, "matmul");
    ir::Node* gelu = graph.createNode("BiasGelu", "com.microsoft", {matMul->output(0), b},
                                      {"h"}, nullptr, "gelu");
    ir::Node* widen = graph.createNode("Identity", "", {gelu->output(0)}, {"y"}, nullptr, "widen");
    graph.addOutput(widen->output(0));
    return result;
  };
  Feeds feeds{{"x", testing::floatTensor({3, 37, 96}, 87)}};
  for (Precision precision : {Precision::kFp32, Precision::kFp16, Precision::kBf16}) {
    SCOPED_TRACE(precisionName(precision));
    OpSpec inputsOnly{"MatMul", "", {InputSpec::floating("x", 3)}};
    absl::StatusOr<testing::CpuGpuRuns> runs =
        testing::runOnBoth(model, inputsOnly, feeds, precision);
    ASSERT_TRUE(runs.ok()) << runs.status();
    EXPECT_EQ(runs->gpu.stats.fallbackSteps, 0u);
    testing::Comparison comparison =
        testing::compareTensors(runs->gpu.outputs[0], runs->cpu.outputs[0]);
    EXPECT_LT(comparison.maxAbsError, precision == Precision::kFp32   ? 1e-4
                                      : precision == Precision::kFp16 ? 2e-2
                                                                      : 8e-2);
    EXPECT_GT(comparison.cosine, precision == Precision::kFp32 ? 0.999999 : 0.999);
  }
}

// ---- Pinned memory ----

TEST(CudaContextTest, FailedPinnedAllocationClearsError) {
  SKIP_WITHOUT_CUDA();
  absl::StatusOr<std::shared_ptr<CudaContext>> context = CudaContext::create(BackendOptions{});
  ASSERT_TRUE(context.ok()) << context.status();
  // 1 EiB: more than any host can pin.
  absl::StatusOr<std::shared_ptr<void>> pinned = (*context)->allocatePinned(size_t{1} << 60);
  ASSERT_FALSE(pinned.ok());
  EXPECT_EQ(pinned.status().code(), absl::StatusCode::kResourceExhausted);
  // Every kernel launch returns cudaGetLastError, so an error left there
  // would fail the next launch, although copyToDevice goes on without
  // pinned staging memory.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// ---- Sessions on a GPU ----

// y = Relu(Reshape(x, Concat(Shape(x)[0:1], [-1]))), and with
// `shapeOutput` also the output "shape" = Shape(x).
std::unique_ptr<ir::Model> reshapeModel(bool shapeOutput = false) {
  auto model = std::make_unique<ir::Model>();
  model->setOpsetVersion("", 17);
  ir::Graph& graph = model->graph();
  ir::Value* x = graph.getOrCreateValue("x");
  x->setTensorType(DataType::kFloat, std::vector<ir::Dim>(3, ir::Dim::unknown()));
  graph.addInput(x);
  ir::Node* shape = graph.createNode("Shape", "", {x}, {"shape"}, nullptr, "shape");
  ir::Value* index = graph.addInitializer("index", ir::Tensor::create<int64_t>({1}, {0}));
  ir::Node* batch = graph.createNode("Gather", "", {shape->output(0), index}, {"batch"}, nullptr,
                                     "batch");
  ir::Value* rest = graph.addInitializer("rest", ir::Tensor::create<int64_t>({1}, {-1}));
  ir::Node* target = graph.createNode("Concat", "", {batch->output(0), rest}, {"target"}, nullptr,
                                      "target");
  target->setIntAttribute("axis", 0);
  ir::Node* reshape = graph.createNode("Reshape", "", {x, target->output(0)}, {"flat"}, nullptr,
                                       "reshape");
  ir::Node* relu = graph.createNode("Relu", "", {reshape->output(0)}, {"y"}, nullptr, "relu");
  graph.addOutput(relu->output(0));
  if (shapeOutput) graph.addOutput(shape->output(0));
  return model;
}

TEST(CudaSessionTest, ShapeArithmeticStaysOnHost) {
  SKIP_WITHOUT_CUDA();
  // The reshape target is computed from x's shape, which the backend
  // evaluates on host mirrors without reading anything back from the device.
  std::unique_ptr<ir::Model> model = reshapeModel();
  Feeds feeds{{"x", testing::floatTensor({3, 5, 7}, 4)}};
  absl::StatusOr<testing::RunResult> cpu = testing::runModel(*model, "cpu", Precision::kFp32, feeds);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  absl::StatusOr<testing::RunResult> gpu = testing::runModel(*model, "cuda", Precision::kFp32, feeds);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  ASSERT_EQ(gpu->outputs[0].shape(), (Shape{3, 35}));
  EXPECT_EQ(testing::compareTensors(gpu->outputs[0], cpu->outputs[0]).maxAbsError, 0.0);
  EXPECT_GE(gpu->stats.hostSteps, 3u);  // Shape, Gather, Concat
  EXPECT_EQ(gpu->stats.shapeReads, 0u);
  EXPECT_EQ(gpu->stats.fallbackSteps, 0u);
}

TEST(CudaSessionTest, FallbackRunsOpsWithoutDeviceKernel) {
  SKIP_WITHOUT_CUDA();
  // Einsum has no CUDA kernel: the CPU kernel runs on copies.
  OpSpec spec{"Einsum", "", {InputSpec::floating("a", 2), InputSpec::floating("b", 2)}};
  spec.attributes = [](ir::Node& node) { node.setStringAttribute("equation", "ij,jk->ik"); };
  std::unique_ptr<ir::Model> model = testing::buildModel(spec, DataType::kFloat);
  Feeds feeds{{"a", testing::floatTensor({3, 4}, 5)}, {"b", testing::floatTensor({4, 2}, 6)}};
  absl::StatusOr<testing::RunResult> cpu = testing::runModel(*model, "cpu", Precision::kFp32, feeds);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  absl::StatusOr<testing::RunResult> gpu = testing::runModel(*model, "cuda", Precision::kFp32, feeds);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_LT(testing::compareTensors(gpu->outputs[0], cpu->outputs[0]).maxAbsError, 1e-6);
  EXPECT_EQ(gpu->stats.fallbackSteps, 1u);
  ASSERT_EQ(gpu->stats.fallbackOps.size(), 1u);
  EXPECT_EQ(gpu->stats.fallbackOps[0], "Einsum");
}

// A Gather from a [10, 8] table on the GPU with the session's own id check
// off, so that the kernel's check must fire.
absl::StatusOr<std::unique_ptr<Session>> gatherSession() {
  OpSpec spec{"Gather",
              "",
              {InputSpec::constantTensor("table", testing::floatConstant({10, 8}, 7)),
               InputSpec::typed("ids", DataType::kInt32, 2)}};
  std::unique_ptr<ir::Model> model = testing::buildModel(spec, DataType::kFloat);
  SessionOptions options;
  options.device = "cuda";
  options.validateIds = false;
  return Session::create(*model, options);
}

TEST(CudaSessionTest, GatherReportsIdOutsideTable) {
  SKIP_WITHOUT_CUDA();
  absl::StatusOr<std::unique_ptr<Session>> session = gatherSession();
  ASSERT_TRUE(session.ok()) << session.status();
  Feeds good{{"ids", HostTensor::fromVector<int32_t>({1, 3}, {0, 9, -1})}};
  ASSERT_TRUE((*session)->run(good).ok());
  Feeds bad{{"ids", HostTensor::fromVector<int32_t>({1, 3}, {0, 10, 2})}};
  absl::StatusOr<std::map<std::string, HostTensor>> outputs = (*session)->run(bad);
  ASSERT_FALSE(outputs.ok());
  EXPECT_EQ(outputs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(outputs.status().message()).find("outside the range"), std::string::npos)
      << outputs.status().message();
  // The error is cleared: the next good run succeeds.
  EXPECT_TRUE((*session)->run(good).ok());
}

TEST(CudaSessionTest, ConvertsLargeWeightsAtReducedPrecision) {
  SKIP_WITHOUT_CUDA();
  // A [128, 64] table (8192 elements) is stored as fp16; Gather then reads
  // fp16 rows, and the output is widened back to float32 for the caller.
  OpSpec spec{"Gather",
              "",
              {InputSpec::constantTensor("table", testing::floatConstant({128, 64}, 8)),
               InputSpec::typed("ids", DataType::kInt64, 1)}};
  Feeds feeds{{"ids", HostTensor::fromVector<int64_t>({4}, {0, 127, 5, 5})}};
  std::unique_ptr<ir::Model> model = testing::buildModel(spec, DataType::kFloat);
  absl::StatusOr<testing::RunResult> cpu = testing::runModel(*model, "cpu", Precision::kFp32, feeds);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  absl::StatusOr<testing::RunResult> gpu = testing::runModel(*model, "cuda", Precision::kFp16, feeds);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  ASSERT_EQ(gpu->outputs[0].type(), DataType::kFloat);
  for (int64_t i = 0; i < cpu->outputs[0].elementCount(); ++i) {
    const float expected = halfBitsToFloat(floatToHalfBits(cpu->outputs[0].data<float>()[i]));
    ASSERT_EQ(gpu->outputs[0].data<float>()[i], expected) << "element " << i;
  }
}

// ---- Recorded runs (CUDA graphs) ----

// Runs `model` on the GPU `runs` times with inputs from `feedsOf(run)`, and
// checks every output against the CPU backend.
void expectRunsMatchCpu(const ir::Model& model, int runs,
                        const std::function<Feeds(int)>& feedsOf, SessionStats& stats,
                        SessionOptions gpuOptions = {}) {
  SessionOptions cpuOptions;
  cpuOptions.threads = 2;
  absl::StatusOr<std::unique_ptr<Session>> cpu = Session::create(model, cpuOptions);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  gpuOptions.device = "cuda";
  absl::StatusOr<std::unique_ptr<Session>> gpu = Session::create(model, gpuOptions);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  for (int run = 0; run < runs; ++run) {
    SCOPED_TRACE(::testing::Message() << "run " << run);
    Feeds feeds = feedsOf(run);
    absl::StatusOr<std::map<std::string, HostTensor>> expected = (*cpu)->run(feeds);
    ASSERT_TRUE(expected.ok()) << expected.status();
    absl::StatusOr<std::map<std::string, HostTensor>> actual = (*gpu)->run(feeds);
    ASSERT_TRUE(actual.ok()) << actual.status();
    for (const auto& [name, tensor] : *expected) {
      SCOPED_TRACE(name);
      ASSERT_EQ(actual->at(name).shape(), tensor.shape());
      EXPECT_LT(testing::compareTensors(actual->at(name), tensor).maxAbsError, 1e-6);
    }
  }
  stats = (*gpu)->stats();
}

TEST(CudaGraphTest, ReplaysWithNewInputs) {
  SKIP_WITHOUT_CUDA();
  // Run 2 is recorded, runs 3 to 5 replay it, each with new values. The
  // shape output exists only as a host mirror until the graph uploads it.
  std::unique_ptr<ir::Model> model = reshapeModel(/*shapeOutput=*/true);
  SessionStats stats;
  expectRunsMatchCpu(*model, 5, [](int run) {
    return Feeds{{"x", testing::floatTensor({3, 5, 7}, 40 + static_cast<uint32_t>(run))}};
  }, stats);
  EXPECT_EQ(stats.recordedRuns, 1u);
  EXPECT_EQ(stats.replayedRuns, 3u);
  EXPECT_EQ(stats.unrecordable, 0u) << stats.unrecordableReason;
}

TEST(CudaGraphTest, RecordsEachShapeSignature) {
  SKIP_WITHOUT_CUDA();
  std::unique_ptr<ir::Model> model = reshapeModel();
  SessionStats stats;
  // Large inputs (4 MiB) outgrow the first pinned staging block. Growing the
  // arena for batch 64 drops the recording of batch 2, which is recorded
  // again: three recordings, then seven replays.
  expectRunsMatchCpu(*model, 12, [](int run) {
    const int64_t batch = run % 2 == 0 ? 2 : 64;
    return Feeds{{"x", testing::floatTensor({batch, 128, 128}, 60 + static_cast<uint32_t>(run))}};
  }, stats);
  EXPECT_EQ(stats.recordedRuns, 3u);
  EXPECT_EQ(stats.replayedRuns, 7u);
  EXPECT_EQ(stats.unrecordable, 0u) << stats.unrecordableReason;
}

TEST(CudaGraphTest, FallbackRunsStepByStep) {
  SKIP_WITHOUT_CUDA();
  // Einsum runs on the host from device inputs, which a graph cannot do.
  OpSpec spec{"Einsum", "", {InputSpec::floating("a", 2), InputSpec::floating("b", 2)}};
  spec.attributes = [](ir::Node& node) { node.setStringAttribute("equation", "ij,jk->ik"); };
  std::unique_ptr<ir::Model> model = testing::buildModel(spec, DataType::kFloat);
  SessionStats stats;
  expectRunsMatchCpu(*model, 5, [](int run) {
    const auto seed = static_cast<uint32_t>(2 * run);
    return Feeds{{"a", testing::floatTensor({3, 4}, seed)},
                 {"b", testing::floatTensor({4, 2}, seed + 1)}};
  }, stats);
  EXPECT_EQ(stats.recordedRuns, 0u);
  EXPECT_EQ(stats.unrecordable, 1u);
  EXPECT_NE(stats.unrecordableReason.find("cannot be recorded in a CUDA graph"), std::string::npos)
      << stats.unrecordableReason;
}

TEST(CudaGraphTest, OffRunsStepByStep) {
  SKIP_WITHOUT_CUDA();
  std::unique_ptr<ir::Model> model = reshapeModel();
  SessionOptions options;
  options.recordRuns = false;
  SessionStats stats;
  expectRunsMatchCpu(*model, 4, [](int run) {
    return Feeds{{"x", testing::floatTensor({2, 3, 4}, 80 + static_cast<uint32_t>(run))}};
  }, stats, options);
  EXPECT_EQ(stats.recordedRuns, 0u);
  EXPECT_EQ(stats.replayedRuns, 0u);
}

TEST(CudaGraphTest, ReplayReportsDeviceErrors) {
  SKIP_WITHOUT_CUDA();
  absl::StatusOr<std::unique_ptr<Session>> session = gatherSession();
  ASSERT_TRUE(session.ok()) << session.status();
  Feeds good{{"ids", HostTensor::fromVector<int32_t>({1, 3}, {0, 9, -1})}};
  for (int run = 0; run < 2; ++run) ASSERT_TRUE((*session)->run(good).ok());
  ASSERT_EQ((*session)->stats().recordedRuns, 1u);
  ASSERT_EQ((*session)->stats().replayedRuns, 0u);

  Feeds bad{{"ids", HostTensor::fromVector<int32_t>({1, 3}, {0, 10, 2})}};
  absl::StatusOr<std::map<std::string, HostTensor>> outputs = (*session)->run(bad);
  ASSERT_FALSE(outputs.ok());
  EXPECT_EQ(outputs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*session)->stats().replayedRuns, 1u);
  absl::StatusOr<std::map<std::string, HostTensor>> again = (*session)->run(good);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*session)->stats().replayedRuns, 2u);
}

}  // namespace
}  // namespace roformer::runtime::cuda
