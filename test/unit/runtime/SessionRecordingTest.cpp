// The executor's side of recorded runs (CUDA graphs), on a CPU backend that
// records the way stream capture does. While recording, compute() queues the
// kernel on a tape instead of running it, and nothing writes device memory.
// Replay runs the tape. Kernels whose outputs are all int64 (the shape
// arithmetic, which the CUDA backend computes on the host) also run at once
// into host mirrors that later steps' shape inference reads, as they do
// there. So a replayed run is right only if the executor copied the new
// inputs to the addresses the tape reads and took the outputs from where the
// tape wrote them. A run after a failed recording is right only if it runs
// every step again.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <span>
#include <thread>
#include <vector>

#include "ir/Graph.h"
#include "runtime/Session.h"
#include "runtime/cpu/CpuKernels.h"

namespace roformer::runtime {
namespace {

using ir::Dim;

class RecordingBackend;

// The work a recording queued, in order.
struct Tape : RecordedRun {
  std::thread::id thread;
  std::vector<std::function<absl::Status()>> steps;
};

class RecordingBackend : public Backend {
 public:
  RecordingBackend();

  std::string name() const override { return "recording"; }
  const KernelRegistry& kernels() const override { return registry_; }
  bool usesHostMemory() const override { return false; }

  absl::StatusOr<DeviceBuffer> allocate(size_t bytes) override {
    const size_t rounded = (std::max<size_t>(bytes, 1) + kBufferAlignment - 1) /
                           kBufferAlignment * kBufferAlignment;
    void* data = std::aligned_alloc(kBufferAlignment, rounded);
    if (data == nullptr) return absl::ResourceExhaustedError("out of memory");
    // A pattern, so that reads of memory nothing wrote show up.
    std::memset(data, 0xcd, rounded);
    return DeviceBuffer{data, bytes, std::shared_ptr<void>(data, [](void* p) { std::free(p); })};
  }
  absl::Status copyToDevice(void* dst, const void* src, size_t bytes) override {
    if (tape_ != nullptr) return absl::InternalError("an input was copied while recording");
    if (bytes > 0) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status copyToHost(void* dst, const void* src, size_t bytes) override {
    if (tape_ != nullptr) return absl::InternalError("an output was copied while recording");
    if (bytes > 0) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::StatusOr<DeviceBuffer> placeConstant(std::shared_ptr<const ir::Tensor> tensor) override {
    absl::StatusOr<DeviceBuffer> buffer = allocate(tensor->byteSize());
    if (!buffer.ok()) return buffer.status();
    if (tensor->byteSize() > 0) std::memcpy(buffer->data, tensor->rawData(), tensor->byteSize());
    return buffer;
  }
  std::unique_ptr<ThreadPool> createThreadPool() const override { return nullptr; }

  bool canRecord() const override { return recordable; }
  absl::Status beginRecording() override {
    if (tape_ != nullptr) return absl::InternalError("already recording");
    ++begins;
    tape_ = std::make_shared<Tape>();
    tape_->thread = std::this_thread::get_id();
    return absl::OkStatus();
  }
  absl::StatusOr<std::shared_ptr<RecordedRun>> endRecording(
      const std::vector<TensorView>& outputs) override {
    if (tape_ == nullptr) return absl::InternalError("not recording");
    std::shared_ptr<Tape> tape = std::move(tape_);
    tape_ = nullptr;
    mirrors_.clear();
    endedOutputs = outputs.size();
    if (failEnd) return absl::InternalError("the recording was invalidated");
    return tape;
  }
  void abandonRecording() override {
    ++abandons;
    tape_ = nullptr;
    mirrors_.clear();
  }
  absl::StatusOr<bool> replay(const RecordedRun& run) override {
    const auto& tape = static_cast<const Tape&>(run);
    if (tape.thread != std::this_thread::get_id()) return false;
    ++replays;
    for (const std::function<absl::Status()>& step : tape.steps) {
      if (absl::Status status = step(); !status.ok()) return status;
    }
    return true;
  }

  // Settings.
  bool recordable = true;
  // Op type whose kernel cannot be recorded.
  std::string rejectedOp;
  bool failEnd = false;

  // Counters.
  int inferCalls = 0;
  int begins = 0;
  int abandons = 0;
  int replays = 0;
  size_t endedOutputs = 0;

 private:
  friend class TapeKernel;
  KernelRegistry registry_;
  std::shared_ptr<Tape> tape_;
  // While recording: host copies of shape arithmetic, by device address.
  std::map<const void*, std::shared_ptr<std::vector<uint8_t>>> mirrors_;
};

// A CPU kernel that queues itself while its backend records.
class TapeKernel : public Kernel {
 public:
  TapeKernel(RecordingBackend& backend, std::string opType, std::unique_ptr<Kernel> kernel)
      : backend_(backend), opType_(std::move(opType)), kernel_(std::move(kernel)) {}

  absl::Status inferOutputs(KernelContext& context) override {
    ++backend_.inferCalls;
    if (backend_.tape_ == nullptr) return kernel_->inferOutputs(context);
    std::vector<TensorView> inputs = mirrored(context.inputs);
    KernelContext host{inputs, context.outputs, nullptr};
    return kernel_->inferOutputs(host);
  }

  absl::Status compute(KernelContext& context) override {
    if (backend_.tape_ == nullptr) return kernel_->compute(context);
    if (opType_ == backend_.rejectedOp) {
      return absl::FailedPreconditionError(opType_ + " cannot be recorded");
    }
    std::vector<TensorView> inputs(context.inputs.begin(), context.inputs.end());
    std::vector<TensorView> outputs(context.outputs.begin(), context.outputs.end());
    Kernel* kernel = kernel_.get();
    backend_.tape_->steps.push_back([kernel, inputs, outputs]() mutable {
      KernelContext queued{inputs, outputs, nullptr};
      return kernel->compute(queued);
    });
    bool shapeArithmetic = true;
    for (const TensorView& output : outputs) {
      if (output.type != DataType::kInt64) shapeArithmetic = false;
    }
    if (!shapeArithmetic) return absl::OkStatus();
    // Computed at once into host mirrors, which later steps' shape
    // inference reads; the recorded copy writes the device buffers.
    std::vector<TensorView> hostInputs = mirrored(context.inputs);
    std::vector<TensorView> hostOutputs = outputs;
    for (TensorView& output : hostOutputs) {
      auto bytes = std::make_shared<std::vector<uint8_t>>(std::max<size_t>(output.byteSize(), 1));
      backend_.mirrors_[output.data] = bytes;
      output.data = bytes->data();
    }
    KernelContext host{hostInputs, hostOutputs, nullptr};
    return kernel_->compute(host);
  }

  bool canRunInPlace() const override { return kernel_->canRunInPlace(); }

 private:
  RecordingBackend& backend_;
  std::string opType_;
  std::unique_ptr<Kernel> kernel_;

  // `views` with the host mirror's data wherever one exists.
  std::vector<TensorView> mirrored(std::span<const TensorView> views) const {
    std::vector<TensorView> result(views.begin(), views.end());
    for (TensorView& view : result) {
      auto mirror = backend_.mirrors_.find(view.data);
      if (mirror != backend_.mirrors_.end()) view.data = mirror->second->data();
    }
    return result;
  }
};

RecordingBackend::RecordingBackend() {
  const KernelRegistry& cpu = cpuKernelRegistry();
  for (const char* op :
       {"MatMul", "Add", "Mul", "Relu", "Softmax", "Shape", "Gather", "Concat", "Reshape"}) {
    const KernelFactory* factory = cpu.find("", op, 17);
    if (factory == nullptr) continue;
    registry_.add("", op,
                  [this, op, factory](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                    absl::StatusOr<std::unique_ptr<Kernel>> kernel = (*factory)(node);
                    if (!kernel.ok()) return kernel.status();
                    return std::make_unique<TapeKernel>(*this, op, std::move(*kernel));
                  });
  }
}

// x: [batch, seq, 4] -> h = Relu(x @ w + b): [batch, seq, 6], reshaped to
// [batch, seq, 2, 3] through Shape -> Gather -> Concat, then
// y = Softmax(reshaped) * 2 and z = h.
std::unique_ptr<ir::Model> recordedModel() {
  auto model = std::make_unique<ir::Model>();
  model->setOpsetVersion("", 17);
  ir::Graph& graph = model->graph();
  ir::Value* x = graph.getOrCreateValue("x");
  x->setTensorType(DataType::kFloat, {Dim::symbolic("batch"), Dim::symbolic("seq"), Dim::known(4)});
  graph.addInput(x);
  std::vector<float> weights(24);
  for (size_t i = 0; i < weights.size(); ++i) weights[i] = 0.125f * static_cast<float>(i % 9) - 0.5f;
  ir::Value* w = graph.addInitializer("w", ir::Tensor::create<float>({4, 6}, weights));
  ir::Value* b = graph.addInitializer(
      "b", ir::Tensor::create<float>({6}, {0.1f, -0.2f, 0.3f, 0.0f, 0.5f, -0.1f}));
  ir::Value* leading = graph.addInitializer("leading", ir::Tensor::create<int64_t>({2}, {0, 1}));
  ir::Value* trailing = graph.addInitializer("trailing", ir::Tensor::create<int64_t>({2}, {2, 3}));
  ir::Value* two = graph.addInitializer("two", ir::Tensor::create<float>({}, {2.0f}));

  ir::Node* matmul = graph.createNode("MatMul", "", {x, w}, {"xw"}, nullptr, "matmul");
  ir::Node* bias = graph.createNode("Add", "", {matmul->output(), b}, {"xwb"}, nullptr, "bias");
  ir::Node* relu = graph.createNode("Relu", "", {bias->output()}, {"z"}, nullptr, "relu");
  ir::Node* shape = graph.createNode("Shape", "", {x}, {"x_shape"}, nullptr, "shape");
  ir::Node* gather =
      graph.createNode("Gather", "", {shape->output(), leading}, {"leading_dims"}, nullptr, "gather");
  ir::Node* concat = graph.createNode("Concat", "", {gather->output(), trailing}, {"target"},
                                      nullptr, "concat");
  concat->setIntAttribute("axis", 0);
  ir::Node* reshape = graph.createNode("Reshape", "", {relu->output(), concat->output()},
                                       {"split"}, nullptr, "reshape");
  ir::Node* softmax = graph.createNode("Softmax", "", {reshape->output()}, {"p"}, nullptr, "softmax");
  ir::Node* scale = graph.createNode("Mul", "", {softmax->output(), two}, {"y"}, nullptr, "scale");
  graph.addOutput(scale->output());
  graph.addOutput(relu->output());
  return model;
}

std::vector<float> inputValues(int64_t count, float phase) {
  std::vector<float> values(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) values[i] = std::sin(phase + 0.37f * static_cast<float>(i));
  return values;
}

class SessionRecordingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = recordedModel();
    SessionOptions reference;
    reference.threads = 1;
    absl::StatusOr<std::unique_ptr<Session>> session = Session::create(*model_, reference);
    ASSERT_TRUE(session.ok()) << session.status();
    reference_ = std::move(*session);
    backend_ = std::make_shared<RecordingBackend>();
  }

  std::unique_ptr<Session> create(SessionOptions options = {}) {
    options.backend = backend_;
    absl::StatusOr<std::unique_ptr<Session>> session = Session::create(*model_, options);
    EXPECT_TRUE(session.ok()) << session.status();
    return session.ok() ? std::move(*session) : nullptr;
  }

  // Runs both sessions on the same new input and compares every output.
  void runAndCompare(Session& session, int64_t batch, int64_t seq, float phase) {
    HostTensor x = HostTensor::fromVector<float>({batch, seq, 4}, inputValues(batch * seq * 4, phase));
    absl::StatusOr<std::vector<HostTensor>> got = session.runOrdered({x});
    ASSERT_TRUE(got.ok()) << got.status();
    absl::StatusOr<std::vector<HostTensor>> want = reference_->runOrdered({x});
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_EQ(got->size(), want->size());
    for (size_t o = 0; o < want->size(); ++o) {
      const HostTensor& a = (*got)[o];
      const HostTensor& e = (*want)[o];
      ASSERT_EQ(a.shape(), e.shape()) << "output " << o;
      for (int64_t i = 0; i < e.elementCount(); ++i) {
        ASSERT_NEAR(a.data<float>()[i], e.data<float>()[i], 1e-6f)
            << "output " << o << " element " << i << " at phase " << phase;
      }
    }
  }

  std::unique_ptr<ir::Model> model_;
  std::unique_ptr<Session> reference_;
  std::shared_ptr<RecordingBackend> backend_;
};

TEST_F(SessionRecordingTest, RecordsThenReplays) {
  std::unique_ptr<Session> session = create();
  ASSERT_NE(session, nullptr);
  // Run 1 builds the plan, run 2 is recorded (and replayed), runs 3 to 5
  // replay.
  for (int run = 0; run < 2; ++run) runAndCompare(*session, 2, 5, static_cast<float>(run));
  EXPECT_EQ(backend_->begins, 1);
  EXPECT_EQ(backend_->endedOutputs, 2u);
  EXPECT_EQ(backend_->replays, 1);
  const int infersBeforeReplays = backend_->inferCalls;
  for (int run = 2; run < 5; ++run) runAndCompare(*session, 2, 5, static_cast<float>(run));
  EXPECT_EQ(backend_->replays, 4);
  // A replay calls no kernel's inferOutputs.
  EXPECT_EQ(backend_->inferCalls, infersBeforeReplays);
  SessionStats stats = session->stats();
  EXPECT_EQ(stats.recordedRuns, 1u);
  EXPECT_EQ(stats.replayedRuns, 3u);
  EXPECT_EQ(stats.unrecordable, 0u);
}

TEST_F(SessionRecordingTest, RecordsEachSignatureOnItsOwn) {
  std::unique_ptr<Session> session = create();
  ASSERT_NE(session, nullptr);
  // Alternating shapes. Run 2 records seq 3. Run 3, the first planned run
  // of seq 7, replaces the arena with a larger one, which drops what was
  // recorded for the old arena, and records seq 7. Run 4 records seq 3 again
  // and runs 5 to 9 replay.
  const int64_t seqs[] = {3, 7, 3, 7, 3, 7, 3, 7, 3, 7};
  for (int run = 0; run < 10; ++run) {
    runAndCompare(*session, 1, seqs[run], 0.5f * static_cast<float>(run));
  }
  SessionStats stats = session->stats();
  EXPECT_EQ(stats.recordedRuns, 3u);
  EXPECT_EQ(stats.replayedRuns, 5u);
}

TEST_F(SessionRecordingTest, UnrecordableKernelRunsStepwise) {
  backend_->rejectedOp = "Softmax";
  std::unique_ptr<Session> session = create();
  ASSERT_NE(session, nullptr);
  for (int run = 0; run < 5; ++run) runAndCompare(*session, 2, 4, static_cast<float>(run));
  SessionStats stats = session->stats();
  EXPECT_EQ(stats.recordedRuns, 0u);
  EXPECT_EQ(stats.replayedRuns, 0u);
  EXPECT_EQ(stats.unrecordable, 1u);
  EXPECT_NE(stats.unrecordableReason.find("Softmax 'softmax'"), std::string::npos)
      << stats.unrecordableReason;
  // Tried once, abandoned, and not tried again for this signature.
  EXPECT_EQ(backend_->begins, 1);
  EXPECT_EQ(backend_->abandons, 1);
  EXPECT_EQ(backend_->replays, 0);
}

TEST_F(SessionRecordingTest, InvalidatedRecordingRunsStepwise) {
  backend_->failEnd = true;
  std::unique_ptr<Session> session = create();
  ASSERT_NE(session, nullptr);
  for (int run = 0; run < 4; ++run) runAndCompare(*session, 1, 6, static_cast<float>(run));
  SessionStats stats = session->stats();
  EXPECT_EQ(stats.recordedRuns, 0u);
  EXPECT_EQ(stats.unrecordable, 1u);
  EXPECT_EQ(stats.unrecordableReason, "the recording was invalidated");
}

TEST_F(SessionRecordingTest, OffOrProfilingRecordsNothing) {
  SessionOptions off;
  off.recordRuns = false;
  std::unique_ptr<Session> plain = create(off);
  ASSERT_NE(plain, nullptr);
  SessionOptions profiled;
  profiled.profile = true;
  std::unique_ptr<Session> profiling = create(profiled);
  ASSERT_NE(profiling, nullptr);
  for (int run = 0; run < 4; ++run) {
    runAndCompare(*plain, 1, 3, static_cast<float>(run));
    runAndCompare(*profiling, 1, 3, static_cast<float>(run));
  }
  EXPECT_EQ(backend_->begins, 0);
  EXPECT_EQ(plain->stats().recordedRuns, 0u);
  EXPECT_EQ(profiling->stats().recordedRuns, 0u);
  EXPECT_EQ(profiling->profiledRuns(), 4u);
}

TEST_F(SessionRecordingTest, RecordsAgainOnAnotherThread) {
  std::unique_ptr<Session> session = create();
  ASSERT_NE(session, nullptr);
  for (int run = 0; run < 3; ++run) runAndCompare(*session, 2, 2, static_cast<float>(run));
  EXPECT_EQ(session->stats().recordedRuns, 1u);
  // The idle execution context goes to the new thread, whose replay is
  // declined (a CUDA graph uses its thread's stream and scratch).
  std::thread other([&] {
    for (int run = 3; run < 6; ++run) runAndCompare(*session, 2, 2, static_cast<float>(run));
  });
  other.join();
  SessionStats stats = session->stats();
  EXPECT_EQ(stats.recordedRuns, 2u);
  EXPECT_EQ(stats.replayedRuns, 3u);
}

TEST_F(SessionRecordingTest, FailedRunKeepsRecording) {
  std::unique_ptr<Session> session = create();
  ASSERT_NE(session, nullptr);
  for (int run = 0; run < 2; ++run) runAndCompare(*session, 1, 2, static_cast<float>(run));
  ASSERT_EQ(session->stats().recordedRuns, 1u);
  // A wrong input shape never reaches the recorded run: it is another
  // signature, and validation rejects the rank before anything runs.
  absl::StatusOr<std::vector<HostTensor>> wrong =
      session->runOrdered({HostTensor::fromVector<float>({2, 4}, inputValues(8, 0))});
  EXPECT_FALSE(wrong.ok());
  runAndCompare(*session, 1, 2, 9.0f);
  EXPECT_EQ(session->stats().replayedRuns, 1u);
}

}  // namespace
}  // namespace roformer::runtime
