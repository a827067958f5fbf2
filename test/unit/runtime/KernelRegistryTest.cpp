// Tests of the kernel registry, the thread pool and the constant-folding
// evaluator.
#include <atomic>
#include <thread>

#include "ir/Tensor.h"
#include "runtime/Evaluator.h"
#include "test/unit/runtime/KernelTestHelpers.h"

namespace roformer::runtime::testing {
namespace {

TEST(KernelRegistry, FindsByOpsetRange) {
  const KernelRegistry& registry = cpuKernelRegistry();
  EXPECT_NE(registry.find("", "Squeeze", 11), nullptr);
  EXPECT_NE(registry.find("", "Squeeze", 13), nullptr);
  EXPECT_NE(registry.find("", "Squeeze", 11), registry.find("", "Squeeze", 13));
  EXPECT_EQ(registry.find("", "LayerNormalization", 16), nullptr);
  EXPECT_NE(registry.find("", "LayerNormalization", 17), nullptr);
  EXPECT_NE(registry.find("com.microsoft", "MultiHeadAttention", 1), nullptr);
  EXPECT_EQ(registry.find("", "MultiHeadAttention", 1), nullptr);
  EXPECT_TRUE(registry.supports("com.microsoft", "RotaryEmbedding"));
  EXPECT_FALSE(registry.supports("", "NoSuchOp"));
}

TEST(KernelRegistry, ListsEveryOpOfTheIssue) {
  std::vector<std::string> ops = cpuKernelRegistry().listOps();
  const char* required[] = {
      "Cast", "Gather", "Equal", "Not", "Concat", "Slice", "Split", "Squeeze", "Unsqueeze",
      "Reshape", "Shape", "Range", "Pow", "Sin", "Cos", "Neg", "Add", "Sub", "Mul", "Div", "Sqrt",
      "Erf", "Sigmoid", "ReduceMean", "ReduceSum", "ReduceProd", "MatMul", "Einsum", "Transpose",
      "Softmax", "Identity", "ConstantOfShape", "Expand", "Where", "LayerNormalization",
      "com.microsoft.SkipLayerNormalization", "com.microsoft.BiasGelu",
      "com.microsoft.RotaryEmbedding", "com.microsoft.MultiHeadAttention"};
  for (const char* op : required) {
    EXPECT_NE(std::find(ops.begin(), ops.end(), op), ops.end()) << op;
  }
  EXPECT_TRUE(std::is_sorted(ops.begin(), ops.end()));
}

TEST(KernelThreadPool, CoversEveryIndexOnce) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(1000);
  pool.parallelFor(1000, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
  });
  for (size_t i = 0; i < hits.size(); ++i) EXPECT_EQ(hits[i].load(), 1) << i;
}

TEST(KernelThreadPool, RespectsGrainAndChunkCount) {
  ThreadPool pool(4);
  std::atomic<int> chunks{0};
  pool.parallelFor(10, 5, [&](int64_t begin, int64_t end) {
    EXPECT_GE(end - begin, 5);
    chunks.fetch_add(1);
  });
  EXPECT_EQ(chunks.load(), 2);
  chunks = 0;
  pool.parallelFor(100, 1, [&](int64_t, int64_t) { chunks.fetch_add(1); });
  EXPECT_EQ(chunks.load(), 4);
}

TEST(KernelThreadPool, ConcurrentCallersAndNesting) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  auto work = [&] {
    for (int round = 0; round < 50; ++round) {
      pool.parallelFor(8, 1, [&](int64_t begin, int64_t end) {
        // A loop inside a loop must not deadlock: the caller runs chunks
        // itself when every worker is busy.
        pool.parallelFor(end - begin, 1, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
      });
    }
  };
  std::thread first(work);
  std::thread second(work);
  first.join();
  second.join();
  EXPECT_EQ(total.load(), 2 * 50 * 8);
}

TEST(KernelThreadPool, SingleThreadRunsInline) {
  ThreadPool pool(1);
  std::thread::id caller = std::this_thread::get_id();
  pool.parallelFor(100, 1, [&](int64_t begin, int64_t end) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    EXPECT_EQ(begin, 0);
    EXPECT_EQ(end, 100);
  });
}

TEST(KernelEvaluator, EvaluatesNodeOnConstants) {
  OneNodeGraph g("Add", 2, 1);
  EXPECT_TRUE(canEvaluate(g.node(), 14));
  auto outputs = evaluateNode(g.node(),
                              {ir::Tensor::create<float>({2}, {1.0f, 2.0f}), ir::Tensor::scalar<float>(10.0f)},
                              14);
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  ASSERT_EQ(outputs->size(), 1u);
  EXPECT_EQ((*outputs)[0]->dims(), (std::vector<int64_t>{2}));
  std::span<const float> values = (*outputs)[0]->values<float>();
  EXPECT_EQ(std::vector<float>(values.begin(), values.end()), (std::vector<float>{11, 12}));
}

TEST(KernelEvaluator, OmittedOutputsAndInputsAreNull) {
  OneNodeGraph g("Split", 2, 3, "", {1}, {1});
  auto outputs = evaluateNode(g.node(), {ir::Tensor::create<int64_t>({3}, {1, 2, 3}), nullptr}, 13);
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  ASSERT_EQ(outputs->size(), 3u);
  EXPECT_EQ((*outputs)[1], nullptr);
  EXPECT_EQ((*outputs)[2]->values<int64_t>()[0], 3);
}

TEST(KernelEvaluator, ReportsMissingKernelAndBadInput) {
  OneNodeGraph unknown("NoSuchOp", 1, 1);
  EXPECT_FALSE(canEvaluate(unknown.node(), 13));
  auto missing = evaluateNode(unknown.node(), {ir::Tensor::scalar<float>(1.0f)}, 13);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);

  OneNodeGraph gather("Gather", 2, 1);
  auto outOfRange = evaluateNode(
      gather.node(), {ir::Tensor::create<float>({2}, {1, 2}), ir::Tensor::create<int64_t>({1}, {2})}, 13);
  ASSERT_FALSE(outOfRange.ok());
  EXPECT_EQ(outOfRange.status().message(), "Gather 'node': index 2 at position 0 is outside [-2, 2)");
}

TEST(KernelEvaluator, EmptyOutputIsValid) {
  OneNodeGraph g("Slice", 3, 1);
  auto outputs = evaluateNode(g.node(),
                              {ir::Tensor::create<float>({3}, {1, 2, 3}), ir::Tensor::create<int64_t>({1}, {2}),
                               ir::Tensor::create<int64_t>({1}, {1})},
                              13);
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  EXPECT_EQ((*outputs)[0]->dims(), (std::vector<int64_t>{0}));
  EXPECT_EQ((*outputs)[0]->byteSize(), 0u);
}

TEST(KernelEvaluator, RejectsOversizedOutputsBeforeAllocating) {
  // Expand to [2^31, 2^31] floats: 2^64 bytes, which wraps to 0 in 64 bits.
  OneNodeGraph expand("Expand", 2, 1);
  auto wrapped = evaluateNode(
      expand.node(),
      {ir::Tensor::scalar<float>(1.0f), ir::Tensor::create<int64_t>({2}, {int64_t{1} << 31, int64_t{1} << 31})},
      13);
  ASSERT_FALSE(wrapped.ok());
  EXPECT_EQ(wrapped.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(wrapped.status().message(),
            "Expand 'node': output 0 would have shape [2147483648, 2147483648], whose size does "
            "not fit in 64 bits");

  // 100 floats against a 256-byte cap.
  auto capped = evaluateNode(
      expand.node(), {ir::Tensor::scalar<float>(1.0f), ir::Tensor::create<int64_t>({1}, {100})}, 13,
      256);
  ASSERT_FALSE(capped.ok());
  EXPECT_EQ(capped.status().code(), absl::StatusCode::kResourceExhausted);
  auto fits = evaluateNode(
      expand.node(), {ir::Tensor::scalar<float>(1.0f), ir::Tensor::create<int64_t>({1}, {64})}, 13,
      256);
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_EQ((*fits)[0]->byteSize(), 256u);
}

}  // namespace
}  // namespace roformer::runtime::testing
