#include "runtime/Session.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "ir/Graph.h"

namespace roformer::runtime {
namespace {

using ir::Dim;

// Checks that a status message contains `text`, printing the message if not.
#define EXPECT_MESSAGE_HAS(status, text)                                      \
  EXPECT_NE(std::string((status).message()).find(text), std::string::npos) \
      << "message: " << (status).message()

ir::Value* addInput(ir::Graph& graph, const std::string& name, DataType type,
                    const std::vector<Dim>& dims) {
  ir::Value* value = graph.getOrCreateValue(name);
  value->setTensorType(type, dims);
  graph.addInput(value);
  return value;
}

// y = (x @ w + b) * x2 + x2 with x: [batch, 4], w: [4, 3], b: [3] and x2 the
// elementwise square of the matmul output, so that several intermediates
// live at once and some die early.
std::unique_ptr<ir::Model> denseModel() {
  auto model = std::make_unique<ir::Model>();
  model->setOpsetVersion("", 17);
  ir::Graph& graph = model->graph();
  ir::Value* x = addInput(graph, "x", DataType::kFloat, {Dim::symbolic("batch"), Dim::known(4)});
  std::vector<float> weights(12);
  for (size_t i = 0; i < weights.size(); ++i) weights[i] = 0.25f * static_cast<float>(i) - 1.0f;
  ir::Value* w = graph.addInitializer("w", ir::Tensor::create<float>({4, 3}, weights));
  ir::Value* b = graph.addInitializer("b", ir::Tensor::create<float>({3}, {0.5f, -0.5f, 1.0f}));
  ir::Node* matmul = graph.createNode("MatMul", "", {x, w}, {"xw"}, nullptr, "matmul");
  ir::Node* bias = graph.createNode("Add", "", {matmul->output(), b}, {"xwb"}, nullptr, "bias");
  ir::Node* square =
      graph.createNode("Mul", "", {matmul->output(), matmul->output()}, {"sq"}, nullptr, "square");
  ir::Node* scale =
      graph.createNode("Mul", "", {bias->output(), square->output()}, {"scaled"}, nullptr, "scale");
  ir::Node* sum =
      graph.createNode("Add", "", {scale->output(), square->output()}, {"y"}, nullptr, "sum");
  graph.addOutput(sum->output());
  return model;
}

// The same computation in plain loops.
std::vector<float> denseReference(const std::vector<float>& x, int64_t batch) {
  std::vector<float> y(static_cast<size_t>(batch * 3));
  const float bias[3] = {0.5f, -0.5f, 1.0f};
  for (int64_t r = 0; r < batch; ++r) {
    for (int64_t c = 0; c < 3; ++c) {
      float dot = 0;
      for (int64_t k = 0; k < 4; ++k) {
        dot += x[r * 4 + k] * (0.25f * static_cast<float>(k * 3 + c) - 1.0f);
      }
      float squared = dot * dot;
      y[r * 3 + c] = (dot + bias[c]) * squared + squared;
    }
  }
  return y;
}

std::vector<float> ramp(int64_t count, float scale) {
  std::vector<float> values(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) values[i] = scale * static_cast<float>(i % 7) - 1.0f;
  return values;
}

SessionOptions testOptions() {
  SessionOptions options;
  options.threads = 2;
  return options;
}

std::unique_ptr<Session> createSession(const ir::Model& model, SessionOptions options) {
  absl::StatusOr<std::unique_ptr<Session>> session = Session::create(model, options);
  EXPECT_TRUE(session.ok()) << session.status();
  return session.ok() ? std::move(*session) : nullptr;
}

void expectNear(const HostTensor& tensor, const std::vector<float>& expected) {
  ASSERT_EQ(tensor.type(), DataType::kFloat);
  ASSERT_EQ(tensor.elementCount(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(tensor.data<float>()[i], expected[i], 1e-4f * (1 + std::fabs(expected[i])))
        << "element " << i;
  }
}

TEST(SessionTest, RunsDenseGraph) {
  std::unique_ptr<ir::Model> model = denseModel();
  std::unique_ptr<Session> session = createSession(*model, testOptions());
  ASSERT_NE(session, nullptr);
  ASSERT_EQ(session->inputs().size(), 1u);
  EXPECT_EQ(session->inputs()[0].name, "x");
  EXPECT_EQ(session->outputs()[0].name, "y");
  EXPECT_EQ(session->stepCount(), 5u);

  std::vector<float> x = ramp(8, 0.5f);
  auto outputs = session->run({{"x", HostTensor::fromVector<float>({2, 4}, x)}});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  ASSERT_EQ(outputs->count("y"), 1u);
  EXPECT_EQ(outputs->at("y").shape(), (Shape{2, 3}));
  expectNear(outputs->at("y"), denseReference(x, 2));
}

TEST(SessionTest, RunsAfterModelIsDestroyed) {
  std::unique_ptr<ir::Model> model = denseModel();
  std::unique_ptr<Session> session = createSession(*model, testOptions());
  ASSERT_NE(session, nullptr);
  model.reset();
  std::vector<float> x = ramp(4, 1.5f);
  auto outputs = session->runOrdered({HostTensor::fromVector<float>({1, 4}, x)});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  expectNear((*outputs)[0], denseReference(x, 1));
}

TEST(SessionTest, ReusesPlansAcrossShapes) {
  std::unique_ptr<ir::Model> model = denseModel();
  std::unique_ptr<Session> session = createSession(*model, testOptions());
  ASSERT_NE(session, nullptr);
  for (int64_t batch : {1, 5, 1, 5, 3}) {
    std::vector<float> x = ramp(batch * 4, 0.25f * static_cast<float>(batch));
    auto outputs = session->runOrdered({HostTensor::fromVector<float>({batch, 4}, x)});
    ASSERT_TRUE(outputs.ok()) << outputs.status();
    EXPECT_EQ((*outputs)[0].shape(), (Shape{batch, 3}));
    expectNear((*outputs)[0], denseReference(x, batch));
  }
  SessionStats stats = session->stats();
  EXPECT_EQ(stats.runs, 5u);
  EXPECT_EQ(stats.plansBuilt, 3u);  // batches 1, 5 and 3
  EXPECT_EQ(stats.cachedPlans, 3u);
  EXPECT_EQ(stats.planMismatches, 0u);
}

TEST(SessionTest, PlanCacheDropsLeastRecentlyUsed) {
  std::unique_ptr<ir::Model> model = denseModel();
  SessionOptions options = testOptions();
  options.maxCachedPlans = 2;
  std::unique_ptr<Session> session = createSession(*model, options);
  ASSERT_NE(session, nullptr);
  for (int64_t batch : {1, 2, 1, 3, 1, 2}) {
    auto outputs =
        session->runOrdered({HostTensor::fromVector<float>({batch, 4}, ramp(batch * 4, 1))});
    ASSERT_TRUE(outputs.ok()) << outputs.status();
  }
  // 1 and 2 planned, 1 reused, 3 planned (drops 2), 1 reused, 2 planned again.
  EXPECT_EQ(session->stats().plansBuilt, 4u);
  EXPECT_EQ(session->stats().cachedPlans, 2u);
}

TEST(SessionTest, ArenaSharesDeadBuffers) {
  // A chain of 12 Adds: each intermediate dies at the next step, so the
  // arena needs about two buffers instead of eleven.
  auto model = std::make_unique<ir::Model>();
  model->setOpsetVersion("", 17);
  ir::Graph& graph = model->graph();
  ir::Value* current = addInput(graph, "x", DataType::kFloat, {Dim::known(256)});
  ir::Value* one = graph.addInitializer("one", ir::Tensor::scalar<float>(1.0f));
  for (int i = 0; i < 12; ++i) {
    current = graph.createNode("Add", "", {current, one}, {"t" + std::to_string(i)})->output();
  }
  graph.addOutput(current);
  std::unique_ptr<Session> session = createSession(*model, testOptions());
  ASSERT_NE(session, nullptr);
  for (int run = 0; run < 2; ++run) {
    auto outputs = session->runOrdered({HostTensor::fromVector<float>({256}, ramp(256, 1))});
    ASSERT_TRUE(outputs.ok()) << outputs.status();
    std::vector<float> expected = ramp(256, 1);
    for (float& v : expected) v += 12;
    expectNear((*outputs)[0], expected);
  }
  SessionStats stats = session->stats();
  EXPECT_EQ(stats.unsharedBytes, 11u * 1024u);
  EXPECT_LE(stats.arenaBytes, 2u * 1024u);
}

TEST(SessionTest, ConcurrentRunsMatchSerialRuns) {
  std::unique_ptr<ir::Model> model = denseModel();
  std::unique_ptr<Session> session = createSession(*model, testOptions());
  ASSERT_NE(session, nullptr);
  // Each thread uses its own batch size, so the runs also race on the plan cache.
  std::vector<float> inputA = ramp(3 * 4, 0.75f);
  std::vector<float> inputB = ramp(6 * 4, -0.5f);
  auto serialA = session->runOrdered({HostTensor::fromVector<float>({3, 4}, inputA)});
  auto serialB = session->runOrdered({HostTensor::fromVector<float>({6, 4}, inputB)});
  ASSERT_TRUE(serialA.ok()) << serialA.status();
  ASSERT_TRUE(serialB.ok()) << serialB.status();

  std::vector<int> mismatches(2, 0);
  std::vector<std::string> errors(2);
  auto worker = [&](int index, const std::vector<float>& input, int64_t batch,
                    const HostTensor& expected) {
    for (int i = 0; i < 200; ++i) {
      auto outputs = session->runOrdered({HostTensor::fromVector<float>({batch, 4}, input)});
      if (!outputs.ok()) {
        errors[index] = std::string(outputs.status().message());
        return;
      }
      if (std::memcmp((*outputs)[0].rawData(), expected.rawData(), expected.byteSize()) != 0) {
        ++mismatches[index];
      }
    }
  };
  std::thread first(worker, 0, std::cref(inputA), 3, std::cref((*serialA)[0]));
  std::thread second(worker, 1, std::cref(inputB), 6, std::cref((*serialB)[0]));
  first.join();
  second.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  EXPECT_EQ(mismatches[0], 0);
  EXPECT_EQ(mismatches[1], 0);
}

TEST(SessionTest, ValueDependentShapeReplans) {
  // Reshape to a shape given as an input: equal input shapes, different
  // output shapes, so the cached plan must be detected as wrong and replaced.
  auto model = std::make_unique<ir::Model>();
  model->setOpsetVersion("", 17);
  ir::Graph& graph = model->graph();
  ir::Value* x = addInput(graph, "x", DataType::kFloat, {Dim::known(12)});
  ir::Value* shape = addInput(graph, "shape", DataType::kInt64, {Dim::known(2)});
  ir::Node* reshape = graph.createNode("Reshape", "", {x, shape}, {"r"});
  ir::Value* two = graph.addInitializer("two", ir::Tensor::scalar<float>(2.0f));
  ir::Node* scale = graph.createNode("Mul", "", {reshape->output(), two}, {"y"});
  graph.addOutput(scale->output());
  std::unique_ptr<Session> session = createSession(*model, testOptions());
  ASSERT_NE(session, nullptr);

  std::vector<float> values = ramp(12, 1);
  std::vector<float> doubled = values;
  for (float& v : doubled) v *= 2;
  for (Shape target : {Shape{3, 4}, Shape{4, 3}, Shape{4, 3}, Shape{2, 6}}) {
    auto outputs = session->run({{"x", HostTensor::fromVector<float>({12}, values)},
                                 {"shape", HostTensor::fromVector<int64_t>({2}, target)}});
    ASSERT_TRUE(outputs.ok()) << outputs.status();
    EXPECT_EQ(outputs->at("y").shape(), target);
    expectNear(outputs->at("y"), doubled);
  }
  SessionStats stats = session->stats();
  EXPECT_EQ(stats.planMismatches, 2u);  // [4, 3] after [3, 4], [2, 6] after [4, 3]
  EXPECT_EQ(stats.plansBuilt, 3u);
}

TEST(SessionTest, OmittedOutputsGetNoBuffer) {
  // LayerNormalization with its optional Mean and InvStdDev outputs omitted
  // in one node and requested in the other.
  auto model = std::make_unique<ir::Model>();
  model->setOpsetVersion("", 17);
  ir::Graph& graph = model->graph();
  ir::Value* x = addInput(graph, "x", DataType::kFloat, {Dim::known(2), Dim::known(4)});
  ir::Value* scale = graph.addInitializer("scale", ir::Tensor::create<float>({4}, {1, 1, 1, 1}));
  ir::Value* bias = graph.addInitializer("bias", ir::Tensor::create<float>({4}, {0, 0, 0, 0}));
  ir::Node* bare = graph.createNode("LayerNormalization", "", {x, scale, bias}, {"y", "", ""});
  ir::Node* full =
      graph.createNode("LayerNormalization", "", {x, scale, bias}, {"z", "mean", "inv_std"});
  graph.addOutput(bare->output(0));
  graph.addOutput(full->output(1));
  std::unique_ptr<Session> session = createSession(*model, testOptions());
  ASSERT_NE(session, nullptr);
  auto outputs = session->runOrdered(
      {HostTensor::fromVector<float>({2, 4}, {1, 2, 3, 4, -1, -1, 1, 1})});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  // Row 1: mean 2.5, variance 1.25; row 2: mean 0, variance 1.
  float inverse = 1.0f / std::sqrt(1.25f + 1e-5f);
  expectNear((*outputs)[0], {-1.5f * inverse, -0.5f * inverse, 0.5f * inverse, 1.5f * inverse,
                             -1 / std::sqrt(1 + 1e-5f), -1 / std::sqrt(1 + 1e-5f),
                             1 / std::sqrt(1 + 1e-5f), 1 / std::sqrt(1 + 1e-5f)});
  expectNear((*outputs)[1], {2.5f, 0.0f});
  // Only z and inv_std need arena space (64 bytes each once aligned); the
  // omitted outputs take none and the graph outputs have their own buffers.
  EXPECT_EQ(session->stats().unsharedBytes, 128u);
}

TEST(SessionTest, ProfileTimesEveryStep) {
  std::unique_ptr<ir::Model> model = denseModel();
  SessionOptions options = testOptions();
  options.profile = true;
  std::unique_ptr<Session> session = createSession(*model, options);
  ASSERT_NE(session, nullptr);
  for (int run = 0; run < 2; ++run) {
    ASSERT_TRUE(session->runOrdered({HostTensor::fromVector<float>({2, 4}, ramp(8, 1))}).ok());
  }
  EXPECT_EQ(session->profiledRuns(), 2u);
  std::vector<StepProfile> steps = session->profile();
  ASSERT_EQ(steps.size(), 5u);
  EXPECT_EQ(steps[0].opType, "MatMul");
  EXPECT_EQ(steps[0].node, "MatMul 'matmul'");
  for (const StepProfile& step : steps) EXPECT_GE(step.meanMilliseconds, 0.0) << step.node;
  session->resetProfile();
  EXPECT_EQ(session->profiledRuns(), 0u);
  EXPECT_TRUE(session->profile().empty());

  std::unique_ptr<Session> unprofiled = createSession(*model, testOptions());
  ASSERT_NE(unprofiled, nullptr);
  ASSERT_TRUE(unprofiled->runOrdered({HostTensor::fromVector<float>({2, 4}, ramp(8, 1))}).ok());
  EXPECT_TRUE(unprofiled->profile().empty());
}

TEST(SessionTest, ConstantWeightsAreNotCopied) {
  CpuBackend backend(BackendOptions{});
  auto tensor = ir::Tensor::create<float>({2}, {1.0f, 2.0f});
  absl::StatusOr<DeviceBuffer> placed = backend.placeConstant(tensor);
  ASSERT_TRUE(placed.ok());
  EXPECT_EQ(placed->data, static_cast<const void*>(tensor->rawData()));
}

TEST(SessionTest, GraphInputPassedThroughIsCopied) {
  auto model = std::make_unique<ir::Model>();
  model->setOpsetVersion("", 17);
  ir::Graph& graph = model->graph();
  ir::Value* x = addInput(graph, "x", DataType::kFloat, {Dim::known(2)});
  graph.addOutput(x);
  std::unique_ptr<Session> session = createSession(*model, testOptions());
  ASSERT_NE(session, nullptr);
  HostTensor input = HostTensor::fromVector<float>({2}, {3.0f, 4.0f});
  auto outputs = session->runOrdered({input});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  EXPECT_NE((*outputs)[0].rawData(), input.rawData());
  expectNear((*outputs)[0], {3.0f, 4.0f});
}

// ---- Load-time errors ----

TEST(SessionTest, UnsupportedOpFailsAtCreation) {
  auto model = std::make_unique<ir::Model>();
  model->setOpsetVersion("", 17);
  model->setOpsetVersion("com.example", 1);
  ir::Graph& graph = model->graph();
  ir::Value* x = addInput(graph, "x", DataType::kFloat, {Dim::known(2)});
  ir::Node* node = graph.createNode("Frobnicate", "com.example", {x}, {"y"}, nullptr, "frob_1");
  graph.addOutput(node->output());
  absl::StatusOr<std::unique_ptr<Session>> session = Session::create(*model, testOptions());
  ASSERT_FALSE(session.ok());
  EXPECT_MESSAGE_HAS(session.status(), "Frobnicate");
  EXPECT_MESSAGE_HAS(session.status(), "com.example");
  EXPECT_MESSAGE_HAS(session.status(), "frob_1");
  EXPECT_MESSAGE_HAS(session.status(), "cpu");
}

TEST(SessionTest, UnknownDeviceFailsAtCreation) {
  std::unique_ptr<ir::Model> model = denseModel();
  SessionOptions options = testOptions();
  options.device = "tpu";
  absl::StatusOr<std::unique_ptr<Session>> session = Session::create(*model, options);
  ASSERT_FALSE(session.ok());
  EXPECT_MESSAGE_HAS(session.status(), "no backend for device 'tpu'");
  EXPECT_MESSAGE_HAS(session.status(), "cpu");
}

TEST(SessionTest, ReducedPrecisionRejectedOnCpu) {
  std::unique_ptr<ir::Model> model = denseModel();
  SessionOptions options = testOptions();
  options.precision = Precision::kFp16;
  absl::StatusOr<std::unique_ptr<Session>> session = Session::create(*model, options);
  ASSERT_FALSE(session.ok());
  EXPECT_MESSAGE_HAS(session.status(), "fp16");
}

TEST(SessionTest, DeadNodesAreNotScheduled) {
  std::unique_ptr<ir::Model> model = denseModel();
  ir::Graph& graph = model->graph();
  // An op no backend has, feeding nothing: it must neither fail nor run.
  model->setOpsetVersion("com.example", 1);
  graph.createNode("Frobnicate", "com.example", {graph.inputs()[0]}, {"unused"});
  std::unique_ptr<Session> session = createSession(*model, testOptions());
  ASSERT_NE(session, nullptr);
  EXPECT_EQ(session->stepCount(), 5u);
}

// ---- Input validation ----

class SessionInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // ids: float [batch, seq] -> Cast(int64) -> Gather(table [10, 2]), and
    // mask: float [batch, seq, 1] added to the gathered rows.
    model_ = std::make_unique<ir::Model>();
    model_->setOpsetVersion("", 17);
    ir::Graph& graph = model_->graph();
    ir::Value* ids = addInput(graph, "ids", DataType::kFloat,
                              {Dim::symbolic("batch"), Dim::symbolic("seq")});
    ir::Value* mask = addInput(graph, "mask", DataType::kFloat,
                               {Dim::symbolic("batch"), Dim::symbolic("seq"), Dim::known(1)});
    ir::Node* cast = graph.createNode("Cast", "", {ids}, {"ids_int"});
    cast->setIntAttribute("to", static_cast<int64_t>(DataType::kInt64));
    std::vector<float> table(20);
    for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<float>(i);
    ir::Value* embedding = graph.addInitializer("table", ir::Tensor::create<float>({10, 2}, table));
    ir::Node* gather =
        graph.createNode("Gather", "", {embedding, cast->output()}, {"embedded"}, nullptr, "lookup");
    ir::Node* add = graph.createNode("Add", "", {gather->output(), mask}, {"y"});
    graph.addOutput(add->output());
    SessionOptions options = testOptions();
    options.maxBatch = 4;
    session_ = createSession(*model_, options);
    ASSERT_NE(session_, nullptr);
  }

  absl::Status runWith(std::map<std::string, HostTensor> inputs) {
    return session_->run(inputs).status();
  }

  static HostTensor ids(Shape shape, std::vector<float> values) {
    return HostTensor::fromVector<float>(std::move(shape), values);
  }
  static HostTensor mask(int64_t batch, int64_t seq) {
    return HostTensor::fromVector<float>({batch, seq, 1},
                                         std::vector<float>(static_cast<size_t>(batch * seq), 0));
  }

  std::unique_ptr<ir::Model> model_;
  std::unique_ptr<Session> session_;
};

TEST_F(SessionInputTest, ValidInputsRun) {
  auto outputs = session_->run({{"ids", ids({1, 3}, {0, 9, 4})}, {"mask", mask(1, 3)}});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  expectNear(outputs->at("y"), {0, 1, 18, 19, 8, 9});
}

TEST_F(SessionInputTest, IdInputIsDetected) {
  const TensorInfo& info = session_->inputs()[0];
  ASSERT_TRUE(info.idUse.has_value());
  EXPECT_TRUE(info.idUse->floatIds);
  EXPECT_EQ(info.idUse->tableRows, 10);
  EXPECT_FALSE(session_->inputs()[1].idUse.has_value());
}

TEST_F(SessionInputTest, RejectsUnknownName) {
  absl::Status status =
      runWith({{"ids", ids({1, 1}, {1})}, {"mask", mask(1, 1)}, {"tokens", mask(1, 1)}});
  ASSERT_FALSE(status.ok());
  EXPECT_MESSAGE_HAS(status, "'tokens' is not an input");
  EXPECT_MESSAGE_HAS(status, "'ids'");
}

TEST_F(SessionInputTest, RejectsMissingInput) {
  absl::Status status = runWith({{"ids", ids({1, 1}, {1})}});
  ASSERT_FALSE(status.ok());
  EXPECT_MESSAGE_HAS(status, "missing input 'mask'");
}

TEST_F(SessionInputTest, RejectsWrongType) {
  absl::Status status =
      runWith({{"ids", HostTensor::fromVector<int64_t>({1, 1}, {1})}, {"mask", mask(1, 1)}});
  ASSERT_FALSE(status.ok());
  EXPECT_MESSAGE_HAS(status, "input 'ids' has type int64");
  EXPECT_MESSAGE_HAS(status, "declares float");
}

TEST_F(SessionInputTest, RejectsWrongRank) {
  absl::Status status = runWith({{"ids", ids({2}, {1, 2})}, {"mask", mask(1, 2)}});
  ASSERT_FALSE(status.ok());
  EXPECT_MESSAGE_HAS(status, "input 'ids'");
  EXPECT_MESSAGE_HAS(status, "rank 1");
  EXPECT_MESSAGE_HAS(status, "declares rank 2");
}

TEST_F(SessionInputTest, RejectsWrongFixedDim) {
  absl::Status status = runWith({{"ids", ids({1, 2}, {1, 2})},
                                 {"mask", HostTensor::fromVector<float>({1, 2, 2}, {0, 0, 0, 0})}});
  ASSERT_FALSE(status.ok());
  EXPECT_MESSAGE_HAS(status, "input 'mask'");
  EXPECT_MESSAGE_HAS(status, "dim 2 must be 1");
}

TEST_F(SessionInputTest, RejectsInconsistentSymbol) {
  absl::Status status = runWith({{"ids", ids({1, 2}, {1, 2})}, {"mask", mask(1, 3)}});
  ASSERT_FALSE(status.ok());
  EXPECT_MESSAGE_HAS(status, "input 'mask'");
  EXPECT_MESSAGE_HAS(status, "'seq'");
  EXPECT_MESSAGE_HAS(status, "input 'ids'");
}

TEST_F(SessionInputTest, RejectsBatchAboveMaximum) {
  absl::Status status = runWith(
      {{"ids", ids({5, 1}, {1, 1, 1, 1, 1})}, {"mask", mask(5, 1)}});
  ASSERT_FALSE(status.ok());
  EXPECT_MESSAGE_HAS(status, "input 'ids' has batch size 5");
  EXPECT_MESSAGE_HAS(status, "maximum of 4");
}

TEST_F(SessionInputTest, RejectsNanId) {
  absl::Status status =
      runWith({{"ids", ids({1, 3}, {1, std::nanf(""), 2})}, {"mask", mask(1, 3)}});
  ASSERT_FALSE(status.ok());
  EXPECT_MESSAGE_HAS(status, "input 'ids'");
  EXPECT_MESSAGE_HAS(status, "[0, 1]");
  EXPECT_MESSAGE_HAS(status, "finite");
}

TEST_F(SessionInputTest, RejectsInfiniteId) {
  absl::Status status =
      runWith({{"ids", ids({1, 2}, {INFINITY, 2})}, {"mask", mask(1, 2)}});
  ASSERT_FALSE(status.ok());
  EXPECT_MESSAGE_HAS(status, "finite");
}

TEST_F(SessionInputTest, RejectsFractionalId) {
  absl::Status status = runWith({{"ids", ids({2, 1}, {1, 2.5f})}, {"mask", mask(2, 1)}});
  ASSERT_FALSE(status.ok());
  EXPECT_MESSAGE_HAS(status, "element [1, 0] is 2.5");
  EXPECT_MESSAGE_HAS(status, "not an integer");
}

TEST_F(SessionInputTest, RejectsIdOutsideTable) {
  absl::Status status = runWith({{"ids", ids({1, 2}, {3, 10})}, {"mask", mask(1, 2)}});
  ASSERT_FALSE(status.ok());
  EXPECT_MESSAGE_HAS(status, "element [0, 1] is 10");
  EXPECT_MESSAGE_HAS(status, "table of 10 rows");
  EXPECT_MESSAGE_HAS(status, "lookup");
}

TEST_F(SessionInputTest, RejectsNegativeId) {
  absl::Status status = runWith({{"ids", ids({1, 2}, {-1, 3})}, {"mask", mask(1, 2)}});
  ASSERT_FALSE(status.ok());
  EXPECT_MESSAGE_HAS(status, "element [0, 0] is -1");
  EXPECT_MESSAGE_HAS(status, "negative");
}

TEST_F(SessionInputTest, RejectsZeroSizedDim) {
  absl::Status status = runWith({{"ids", ids({1, 0}, {})}, {"mask", mask(1, 0)}});
  ASSERT_FALSE(status.ok());
  EXPECT_MESSAGE_HAS(status, "dim 1 is 0");
}

TEST_F(SessionInputTest, OrderedRunChecksCount) {
  auto outputs = session_->runOrdered({ids({1, 1}, {1})});
  ASSERT_FALSE(outputs.ok());
  EXPECT_MESSAGE_HAS(outputs.status(), "expected 2 inputs");
}

TEST_F(SessionInputTest, ValidationCanBeDisabledForIds) {
  SessionOptions options = testOptions();
  options.validateIds = false;
  std::unique_ptr<Session> session = createSession(*model_, options);
  ASSERT_NE(session, nullptr);
  // Without the input check, the Gather kernel still rejects the id.
  auto outputs = session->run({{"ids", ids({1, 1}, {12})}, {"mask", mask(1, 1)}});
  ASSERT_FALSE(outputs.ok());
  EXPECT_MESSAGE_HAS(outputs.status(), "lookup");
}

// ---- A backend whose memory is not the host's ----

// Runs the CPU kernels but reports separate device memory, so the session
// copies inputs in and outputs out, as it will for a GPU. Fresh buffers are
// filled with a pattern so that reads of unwritten memory show up.
class CopyingBackend : public CpuBackend {
 public:
  CopyingBackend() : CpuBackend(BackendOptions{2, Precision::kFp32}) {}
  std::string name() const override { return "copying"; }
  bool usesHostMemory() const override { return false; }
  absl::StatusOr<DeviceBuffer> allocate(size_t bytes) override {
    absl::StatusOr<DeviceBuffer> buffer = CpuBackend::allocate(bytes);
    if (buffer.ok()) std::memset(buffer->data, 0xcd, bytes);
    ++allocations;
    return buffer;
  }
  absl::Status copyToDevice(void* dst, const void* src, size_t bytes) override {
    ++copiesIn;
    return CpuBackend::copyToDevice(dst, src, bytes);
  }
  absl::Status copyToHost(void* dst, const void* src, size_t bytes) override {
    ++copiesOut;
    return CpuBackend::copyToHost(dst, src, bytes);
  }
  absl::Status synchronize() override {
    ++synchronizations;
    return absl::OkStatus();
  }
  int synchronizations = 0;
  int allocations = 0;
  int copiesIn = 0;
  int copiesOut = 0;
};

TEST(SessionTest, DeviceBackendCopiesInputsAndOutputs) {
  std::unique_ptr<ir::Model> model = denseModel();
  auto backend = std::make_shared<CopyingBackend>();
  SessionOptions options = testOptions();
  options.backend = backend;
  std::unique_ptr<Session> session = createSession(*model, options);
  ASSERT_NE(session, nullptr);
  EXPECT_EQ(session->backend().name(), "copying");
  for (int run = 0; run < 3; ++run) {
    std::vector<float> x = ramp(12, 0.5f + static_cast<float>(run));
    auto outputs = session->runOrdered({HostTensor::fromVector<float>({3, 4}, x)});
    ASSERT_TRUE(outputs.ok()) << outputs.status();
    expectNear((*outputs)[0], denseReference(x, 3));
  }
  EXPECT_EQ(backend->copiesIn, 3);
  EXPECT_EQ(backend->copiesOut, 3);
  EXPECT_EQ(backend->synchronizations, 3);
  // The first run allocates each tensor, the second the arena, the third nothing.
  int afterPlanned = backend->allocations;
  auto outputs = session->runOrdered({HostTensor::fromVector<float>({3, 4}, ramp(12, 1))});
  ASSERT_TRUE(outputs.ok());
  EXPECT_EQ(backend->allocations, afterPlanned);
}

}  // namespace
}  // namespace roformer::runtime
