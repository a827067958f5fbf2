// Each CUDA kernel against the CPU kernel of the same node, in float32 and
// with fp16 and bf16 tolerances, at batch sizes 1, 2, 3 and 64 and at
// lengths that are not multiples of the kernels' tiles.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <tuple>

#include "CudaTestSupport.h"
#include "runtime/cuda/RotaryFusion.h"

namespace roformer::runtime::cuda {
namespace {

using testing::Feeds;
using testing::InputSpec;
using testing::OpSpec;

const Precision kPrecisions[] = {Precision::kFp32, Precision::kFp16, Precision::kBf16};

void expectAllPrecisions(const OpSpec& spec, const Feeds& feeds) {
  for (Precision precision : kPrecisions) {
    SCOPED_TRACE(precisionName(precision));
    testing::Tolerance tolerance = testing::toleranceFor(precision);
    testing::expectMatchesCpu(spec, feeds, precision, tolerance.atol, tolerance.rtol);
  }
}

// Runs `spec` on both backends and checks that the tested node took the CPU
// fallback and that the outputs agree.
void expectFallbackMatchesCpu(const OpSpec& spec, const Feeds& feeds, Precision precision) {
  const DataType floatType = activationTypeOf(precision);
  Feeds rounded;
  Feeds narrowed = testing::narrowFeeds(spec, feeds, floatType, rounded);
  absl::StatusOr<testing::RunResult> cpu =
      testing::runModel(*testing::buildModel(spec, DataType::kFloat), "cpu", Precision::kFp32, rounded);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  absl::StatusOr<testing::RunResult> gpu =
      testing::runModel(*testing::buildModel(spec, floatType), "cuda", precision, narrowed);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_GT(gpu->stats.fallbackSteps, 0u);
  ASSERT_EQ(gpu->outputs[0].shape(), cpu->outputs[0].shape());
  // The fallback runs the CPU kernel on the same rounded values.
  EXPECT_LT(testing::compareTensors(gpu->outputs[0], cpu->outputs[0]).maxAbsError, 1e-6);
}

// ---- Normalization ----

class CudaLayerNormTest : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t>> {};

TEST_P(CudaLayerNormTest, MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const auto [batch, sequence, hidden] = GetParam();
  OpSpec spec{"LayerNormalization",
              "",
              {InputSpec::floating("x", 3), InputSpec::constantTensor("gamma", testing::floatConstant({hidden}, 11, 0.5f, 1.5f)),
               InputSpec::constantTensor("beta", testing::floatConstant({hidden}, 12))},
              3};
  spec.attributes = [](ir::Node& node) { node.setFloatAttribute("epsilon", 1e-12f); };
  // An offset mean tests that the variance is taken around the mean.
  Feeds feeds{{"x", testing::floatTensor({batch, sequence, hidden}, 13, 2.0f, 6.0f)}};
  expectAllPrecisions(spec, feeds);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaLayerNormTest,
                         ::testing::Values(std::make_tuple(1, 1, 768), std::make_tuple(2, 7, 768),
                                           std::make_tuple(3, 130, 64), std::make_tuple(64, 5, 100),
                                           std::make_tuple(1, 3, 4097)));

TEST(CudaLayerNormTest, InvalidAxisReturnsError) {
  SKIP_WITHOUT_CUDA();
  // The device kernel's path check reads the axis before the CPU kernel
  // validates it. Under AddressSanitizer an out-of-range read there fails
  // this test.
  OpSpec spec{"LayerNormalization",
              "",
              {InputSpec::floating("x", 3),
               InputSpec::constantTensor("gamma", testing::floatConstant({8}, 14))}};
  spec.attributes = [](ir::Node& node) { node.setIntAttribute("axis", -4); };
  Feeds feeds{{"x", testing::floatTensor({2, 3, 8}, 15)}};
  std::unique_ptr<ir::Model> model = testing::buildModel(spec, DataType::kFloat);
  absl::StatusOr<testing::RunResult> gpu = testing::runModel(*model, "cuda", Precision::kFp32, feeds);
  ASSERT_FALSE(gpu.ok());
  EXPECT_NE(gpu.status().message().find("axis"), std::string::npos) << gpu.status();
}

class CudaSkipLayerNormTest : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t>> {};

TEST_P(CudaSkipLayerNormTest, MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const auto [batch, sequence, hidden] = GetParam();
  OpSpec spec{"SkipLayerNormalization",
              "com.microsoft",
              {InputSpec::floating("x", 3), InputSpec::floating("skip", 3),
               InputSpec::constantTensor("gamma", testing::floatConstant({hidden}, 21, 0.5f, 1.5f)),
               InputSpec::constantTensor("beta", testing::floatConstant({hidden}, 22)),
               InputSpec::constantTensor("bias", testing::floatConstant({hidden}, 23))},
              4};
  Feeds feeds{{"x", testing::floatTensor({batch, sequence, hidden}, 24)},
              {"skip", testing::floatTensor({batch, sequence, hidden}, 25)}};
  expectAllPrecisions(spec, feeds);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaSkipLayerNormTest,
                         ::testing::Values(std::make_tuple(1, 1, 768), std::make_tuple(2, 65, 768),
                                           std::make_tuple(3, 17, 64), std::make_tuple(64, 3, 96)));

TEST(CudaSkipLayerNormTest, BroadcastsSkipOverBatch) {
  SKIP_WITHOUT_CUDA();
  OpSpec spec{"SkipLayerNormalization",
              "com.microsoft",
              {InputSpec::floating("x", 3), InputSpec::floating("skip", 3),
               InputSpec::constantTensor("gamma", testing::floatConstant({64}, 31))}};
  Feeds feeds{{"x", testing::floatTensor({3, 9, 64}, 32)},
              {"skip", testing::floatTensor({1, 9, 64}, 33)}};
  expectAllPrecisions(spec, feeds);
}

// ---- GELU ----

TEST(CudaGeluTest, BiasGeluMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  for (int64_t batch : {1, 2, 3, 64}) {
    SCOPED_TRACE(batch);
    OpSpec spec{"BiasGelu",
                "com.microsoft",
                {InputSpec::floating("x", 3),
                 InputSpec::constantTensor("bias", testing::floatConstant({256}, 41))}};
    Feeds feeds{{"x", testing::floatTensor({batch, 9, 256}, 42, -4.0f, 4.0f)}};
    expectAllPrecisions(spec, feeds);
  }
}

TEST(CudaGeluTest, GeluAndFastGeluMatchCpu) {
  SKIP_WITHOUT_CUDA();
  for (const char* op : {"Gelu", "FastGelu"}) {
    SCOPED_TRACE(op);
    OpSpec spec{op, "com.microsoft", {InputSpec::floating("x", 2)}};
    Feeds feeds{{"x", testing::floatTensor({5, 33}, 43, -6.0f, 6.0f)}};
    expectAllPrecisions(spec, feeds);
  }
}

// ---- RotaryEmbedding ----

// The caches of base 10000: cos/sin(p * 10000^(-2i/d)), [positions, d/2].
std::pair<std::shared_ptr<ir::Tensor>, std::shared_ptr<ir::Tensor>> rotaryCaches(int64_t positions,
                                                                                int64_t headSize) {
  const int64_t half = headSize / 2;
  std::vector<float> cosValues(static_cast<size_t>(positions * half));
  std::vector<float> sinValues(cosValues.size());
  for (int64_t p = 0; p < positions; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(p) * std::pow(10000.0, -2.0 * i / headSize);
      cosValues[p * half + i] = static_cast<float>(std::cos(angle));
      sinValues[p * half + i] = static_cast<float>(std::sin(angle));
    }
  }
  return {ir::Tensor::create<float>({positions, half}, cosValues),
          ir::Tensor::create<float>({positions, half}, sinValues)};
}

class CudaRotaryTest : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, bool>> {};

TEST_P(CudaRotaryTest, OffsetPositionsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  const auto [batch, sequence, interleaved] = GetParam();
  const int64_t heads = 4;
  const int64_t headSize = 16;
  auto [cosCache, sinCache] = rotaryCaches(1024, headSize);
  OpSpec spec{"RotaryEmbedding",
              "com.microsoft",
              {InputSpec::floating("x", 3),
               InputSpec::constantTensor("positions", ir::Tensor::create<int64_t>({1}, {0})),
               InputSpec::constantTensor("cos", cosCache), InputSpec::constantTensor("sin", sinCache)}};
  spec.attributes = [interleaved = interleaved](ir::Node& node) {
    node.setIntAttribute("interleaved", interleaved ? 1 : 0);
    node.setIntAttribute("num_heads", 4);
  };
  Feeds feeds{{"x", testing::floatTensor({batch, sequence, heads * headSize}, 51)}};
  expectAllPrecisions(spec, feeds);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaRotaryTest,
                         ::testing::Values(std::make_tuple(1, 1, true), std::make_tuple(2, 130, true),
                                           std::make_tuple(3, 1024, true), std::make_tuple(64, 7, true),
                                           std::make_tuple(2, 33, false)));

TEST(CudaRotaryTest, PerTokenPositionsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  auto [cosCache, sinCache] = rotaryCaches(64, 32);
  OpSpec spec{"RotaryEmbedding",
              "com.microsoft",
              {InputSpec::floating("x", 4), InputSpec::typed("positions", DataType::kInt64, 2),
               InputSpec::constantTensor("cos", cosCache), InputSpec::constantTensor("sin", sinCache)}};
  spec.attributes = [](ir::Node& node) { node.setIntAttribute("interleaved", 1); };
  std::vector<int64_t> positions;
  for (int64_t b = 0; b < 3; ++b) {
    for (int64_t s = 0; s < 5; ++s) positions.push_back((7 * b + 11 * s) % 64);
  }
  Feeds feeds{{"x", testing::floatTensor({3, 2, 5, 32}, 52)},
              {"positions", HostTensor::fromVector<int64_t>({3, 5}, positions)}};
  expectAllPrecisions(spec, feeds);
}

// ---- MultiHeadAttention ----

struct AttentionCase {
  int64_t batch;
  int64_t sequence;
  int64_t heads;
  int64_t headSize;
  bool withBias;
};

// Test names and failure messages show the case, not its bytes.
void PrintTo(const AttentionCase& c, std::ostream* out) {
  *out << "batch " << c.batch << ", sequence " << c.sequence << ", " << c.heads << " heads of "
       << c.headSize << (c.withBias ? ", with bias" : "");
}

// Valid key counts per batch entry: the full length, one key, about half,
// and every fourth entry with no valid key at all.
std::vector<int32_t> paddingMask(int64_t batch, int64_t sequence) {
  std::vector<int32_t> mask(static_cast<size_t>(batch * sequence), 0);
  for (int64_t b = 0; b < batch; ++b) {
    int64_t valid = sequence;
    if (b % 4 == 1) valid = 1;
    if (b % 4 == 2) valid = sequence / 2 + 1;
    if (b % 4 == 3) valid = 0;
    if (batch == 1) valid = sequence;
    for (int64_t s = 0; s < valid; ++s) mask[b * sequence + s] = 1;
  }
  return mask;
}

void expectAttentionMatches(const AttentionCase& c, bool tensorCores) {
  const int64_t hidden = c.heads * c.headSize;
  std::vector<InputSpec> inputs = {InputSpec::floating("q", 3), InputSpec::floating("k", 3),
                                   InputSpec::floating("v", 3)};
  inputs.push_back(c.withBias ? InputSpec::constantTensor(
                                    "bias", testing::floatConstant({3 * hidden}, 61, -0.2f, 0.2f))
                              : InputSpec::omitted());
  inputs.push_back(InputSpec::typed("mask", DataType::kInt32, 2));
  OpSpec spec{"MultiHeadAttention", "com.microsoft", inputs};
  spec.attributes = [heads = c.heads](ir::Node& node) {
    node.setIntAttribute("num_heads", heads);
    node.setFloatAttribute("mask_filter_value", -1e12f);
  };
  // Scores of a few units, so the softmax is not nearly uniform.
  const float range = 2.0f;
  Feeds feeds{{"q", testing::floatTensor({c.batch, c.sequence, hidden}, 62, -range, range)},
              {"k", testing::floatTensor({c.batch, c.sequence, hidden}, 63, -range, range)},
              {"v", testing::floatTensor({c.batch, c.sequence, hidden}, 64)},
              {"mask", HostTensor::fromVector<int32_t>({c.batch, c.sequence},
                                                       paddingMask(c.batch, c.sequence))}};
  if (tensorCores) {
    unsetenv("ROFORMER_CUDA_ATTENTION");
  } else {
    setenv("ROFORMER_CUDA_ATTENTION", "simt", 1);
  }
  expectAllPrecisions(spec, feeds);
  unsetenv("ROFORMER_CUDA_ATTENTION");
}

class CudaAttentionTest : public ::testing::TestWithParam<std::tuple<AttentionCase, bool>> {};

TEST_P(CudaAttentionTest, MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const auto [attentionCase, tensorCores] = GetParam();
  expectAttentionMatches(attentionCase, tensorCores);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaAttentionTest,
    ::testing::Combine(::testing::Values(AttentionCase{1, 1, 4, 16, false},
                                         AttentionCase{2, 65, 4, 16, true},
                                         AttentionCase{3, 130, 12, 64, false},
                                         AttentionCase{64, 33, 4, 16, false},
                                         AttentionCase{2, 1024, 12, 64, false},
                                         AttentionCase{4, 100, 2, 128, true},
                                         AttentionCase{2, 40, 3, 32, false},
                                         AttentionCase{2, 20, 2, 24, false}),
                       ::testing::Bool()));

TEST(CudaAttentionTest, LengthMaskMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  OpSpec spec{"MultiHeadAttention",
              "com.microsoft",
              {InputSpec::floating("q", 3), InputSpec::floating("k", 3), InputSpec::floating("v", 3),
               InputSpec::omitted(), InputSpec::typed("lengths", DataType::kInt32, 1)}};
  spec.attributes = [](ir::Node& node) { node.setIntAttribute("num_heads", 2); };
  Feeds feeds{{"q", testing::floatTensor({3, 70, 128}, 71)},
              {"k", testing::floatTensor({3, 70, 128}, 72)},
              {"v", testing::floatTensor({3, 70, 128}, 73)},
              {"lengths", HostTensor::fromVector<int32_t>({3}, {70, 1, 33})}};
  expectAllPrecisions(spec, feeds);
}

// ---- RotaryEmbedding absorbed into MultiHeadAttention ----

// q' = RotaryEmbedding(q), k' = RotaryEmbedding(k), y = MHA(q', k', v, mask),
// as the fusion passes write it, with x of the given float type.
std::unique_ptr<ir::Model> rotaryAttentionModel(DataType floatType, int64_t heads,
                                                int64_t headSize, int64_t offset, bool withBias) {
  auto model = std::make_unique<ir::Model>();
  model->setOpsetVersion("", 17);
  model->setOpsetVersion("com.microsoft", 1);
  ir::Graph& graph = model->graph();
  auto input = [&](const char* name, DataType type, size_t rank) {
    ir::Value* value = graph.getOrCreateValue(name);
    value->setTensorType(type, std::vector<ir::Dim>(rank, ir::Dim::unknown()));
    graph.addInput(value);
    return value;
  };
  ir::Value* q = input("q", floatType, 3);
  ir::Value* k = input("k", floatType, 3);
  ir::Value* v = input("v", floatType, 3);
  ir::Value* mask = input("mask", DataType::kInt32, 2);
  auto [cosCache, sinCache] = rotaryCaches(1100, headSize);
  ir::Value* position = graph.addInitializer("offset", ir::Tensor::create<int64_t>({}, {offset}));
  ir::Value* cosValue = graph.addInitializer("cos", cosCache);
  ir::Value* sinValue = graph.addInitializer("sin", sinCache);
  auto rotate = [&](ir::Value* x, const char* name) {
    ir::Node* node = graph.createNode("RotaryEmbedding", "com.microsoft",
                                      {x, position, cosValue, sinValue}, {name}, nullptr, name);
    node->setIntAttribute("interleaved", 1);
    node->setIntAttribute("num_heads", heads);
    return node->output(0);
  };
  ir::Value* bias = nullptr;
  if (withBias) {
    bias = graph.addInitializer(
        "bias", testing::floatConstant({3 * heads * headSize}, 65, -0.2f, 0.2f));
  }
  ir::Node* attention = graph.createNode(
      "MultiHeadAttention", "com.microsoft",
      {rotate(q, "q_rotated"), rotate(k, "k_rotated"), v, bias, mask}, {"attention"}, nullptr,
      "attention");
  attention->setIntAttribute("num_heads", heads);
  attention->setFloatAttribute("mask_filter_value", -1e12f);
  // The graph output is float32, so the attention itself stores the
  // reduced type and the Identity widens it.
  ir::Node* widen = graph.createNode("Identity", "", {attention->output(0)}, {"y"}, nullptr, "widen");
  graph.addOutput(widen->output(0));
  return model;
}

const ir::Node* findNode(const ir::Model& model, const std::string& name) {
  for (const auto& node : model.graph().nodes()) {
    if (node->name() == name) return node.get();
  }
  return nullptr;
}

TEST(CudaRotaryFusionTest, AbsorbsBothRotations) {
  std::unique_ptr<ir::Model> model = rotaryAttentionModel(DataType::kFloat, 4, 16, 3, false);
  std::optional<FusedRotary> fused = fusedRotaryOf(*findNode(*model, "attention"));
  ASSERT_TRUE(fused.has_value());
  EXPECT_EQ(fused->offset, 3);
  EXPECT_EQ(fused->cosCache->dims(), (std::vector<int64_t>{1100, 8}));
  EXPECT_TRUE(isRotaryFusedIntoAttention(*findNode(*model, "q_rotated")));
  EXPECT_TRUE(isRotaryFusedIntoAttention(*findNode(*model, "k_rotated")));
}

TEST(CudaRotaryFusionTest, SkipsHalfSplitPairs) {
  std::unique_ptr<ir::Model> model = rotaryAttentionModel(DataType::kFloat, 4, 16, 0, false);
  ir::Node* rotary = const_cast<ir::Node*>(findNode(*model, "k_rotated"));
  rotary->setIntAttribute("interleaved", 0);
  EXPECT_FALSE(fusedRotaryOf(*findNode(*model, "attention")).has_value());
  EXPECT_FALSE(isRotaryFusedIntoAttention(*findNode(*model, "q_rotated")));
  EXPECT_FALSE(isRotaryFusedIntoAttention(*rotary));
}

TEST(CudaRotaryFusionTest, SkipsRotationWithSecondUser) {
  std::unique_ptr<ir::Model> model = rotaryAttentionModel(DataType::kFloat, 4, 16, 0, false);
  ir::Graph& graph = model->graph();
  ir::Value* rotated = findNode(*model, "q_rotated")->output(0);
  ir::Node* other = graph.createNode("Relu", "", {rotated}, {"other"}, nullptr, "other");
  graph.addOutput(other->output(0));
  EXPECT_FALSE(fusedRotaryOf(*findNode(*model, "attention")).has_value());
  EXPECT_FALSE(isRotaryFusedIntoAttention(*findNode(*model, "k_rotated")));
}

TEST(CudaRotaryFusionTest, SkipsRotationWithoutNumHeads) {
  // Without num_heads, the rotations use heads of 2 * 8 elements, while the
  // attention has 2 heads of 32: a valid graph that the kernel cannot
  // rotate on load.
  std::unique_ptr<ir::Model> model = rotaryAttentionModel(DataType::kFloat, 4, 16, 0, false);
  ir::Node* attention = const_cast<ir::Node*>(findNode(*model, "attention"));
  attention->setIntAttribute("num_heads", 2);
  for (const char* name : {"q_rotated", "k_rotated"}) {
    const_cast<ir::Node*>(findNode(*model, name))->setIntAttribute("num_heads", 0);
  }
  EXPECT_FALSE(fusedRotaryOf(*attention).has_value());
  EXPECT_FALSE(isRotaryFusedIntoAttention(*findNode(*model, "q_rotated")));
  EXPECT_FALSE(isRotaryFusedIntoAttention(*findNode(*model, "k_rotated")));

  Feeds feeds{{"q", testing::floatTensor({2, 9, 64}, 91, -2.0f, 2.0f)},
              {"k", testing::floatTensor({2, 9, 64}, 92, -2.0f, 2.0f)},
              {"v", testing::floatTensor({2, 9, 64}, 93)},
              {"mask", HostTensor::fromVector<int32_t>({2, 9}, paddingMask(2, 9))}};
  absl::StatusOr<testing::RunResult> cpu = testing::runModel(*model, "cpu", Precision::kFp32, feeds);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  if (!cudaDeviceStatus().ok()) return;
  absl::StatusOr<testing::RunResult> gpu = testing::runModel(*model, "cuda", Precision::kFp32, feeds);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_LT(testing::compareTensors(gpu->outputs[0], cpu->outputs[0]).maxAbsError, 1e-4);
}

TEST(CudaRotaryFusionTest, SkipsPerTokenPositions) {
  std::unique_ptr<ir::Model> model = rotaryAttentionModel(DataType::kFloat, 4, 16, 0, false);
  ir::Graph& graph = model->graph();
  ir::Value* positions = graph.getOrCreateValue("positions");
  positions->setTensorType(DataType::kInt64, {ir::Dim::unknown(), ir::Dim::unknown()});
  graph.addInput(positions);
  const_cast<ir::Node*>(findNode(*model, "q_rotated"))->setInput(1, positions);
  EXPECT_FALSE(fusedRotaryOf(*findNode(*model, "attention")).has_value());
}

TEST(CudaRotaryFusionTest, TurnedOffByEnvironment) {
  std::unique_ptr<ir::Model> model = rotaryAttentionModel(DataType::kFloat, 4, 16, 0, false);
  setenv("ROFORMER_CUDA_FUSE_ROTARY", "0", 1);
  EXPECT_FALSE(fusedRotaryOf(*findNode(*model, "attention")).has_value());
  EXPECT_FALSE(isRotaryFusedIntoAttention(*findNode(*model, "q_rotated")));
  unsetenv("ROFORMER_CUDA_FUSE_ROTARY");
  EXPECT_TRUE(fusedRotaryOf(*findNode(*model, "attention")).has_value());
}

TEST(CudaRotaryFusionTest, ReferenceModelRunsOnCpu) {
  // The GPU tests below compare with this model on the CPU backend. This
  // test needs no GPU: the model runs, and the offset changes the result.
  Feeds feeds{{"q", testing::floatTensor({2, 9, 32}, 91, -2.0f, 2.0f)},
              {"k", testing::floatTensor({2, 9, 32}, 92, -2.0f, 2.0f)},
              {"v", testing::floatTensor({2, 9, 32}, 93)},
              {"mask", HostTensor::fromVector<int32_t>({2, 9}, paddingMask(2, 9))}};
  absl::StatusOr<testing::RunResult> first = testing::runModel(
      *rotaryAttentionModel(DataType::kFloat, 2, 16, 0, true), "cpu", Precision::kFp32, feeds);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<testing::RunResult> shifted = testing::runModel(
      *rotaryAttentionModel(DataType::kFloat, 2, 16, 7, true), "cpu", Precision::kFp32, feeds);
  ASSERT_TRUE(shifted.ok()) << shifted.status();
  ASSERT_EQ(first->outputs[0].shape(), (Shape{2, 9, 32}));
  EXPECT_GT(testing::compareTensors(first->outputs[0], shifted->outputs[0]).maxAbsError, 1e-3);
}

struct RotaryAttentionCase {
  int64_t batch;
  int64_t sequence;
  int64_t heads;
  int64_t headSize;
  int64_t offset;
  bool withBias;
};

void PrintTo(const RotaryAttentionCase& c, std::ostream* out) {
  *out << "batch " << c.batch << ", sequence " << c.sequence << ", " << c.heads << " heads of "
       << c.headSize << ", offset " << c.offset << (c.withBias ? ", with bias" : "");
}

class CudaRotaryAttentionTest
    : public ::testing::TestWithParam<std::tuple<RotaryAttentionCase, bool>> {};

TEST_P(CudaRotaryAttentionTest, AbsorbedRotationMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const auto [c, tensorCores] = GetParam();
  const int64_t hidden = c.heads * c.headSize;
  Feeds feeds{{"q", testing::floatTensor({c.batch, c.sequence, hidden}, 91, -2.0f, 2.0f)},
              {"k", testing::floatTensor({c.batch, c.sequence, hidden}, 92, -2.0f, 2.0f)},
              {"v", testing::floatTensor({c.batch, c.sequence, hidden}, 93)},
              {"mask", HostTensor::fromVector<int32_t>({c.batch, c.sequence},
                                                       paddingMask(c.batch, c.sequence))}};
  if (tensorCores) {
    unsetenv("ROFORMER_CUDA_ATTENTION");
  } else {
    setenv("ROFORMER_CUDA_ATTENTION", "simt", 1);
  }
  for (Precision precision : kPrecisions) {
    SCOPED_TRACE(precisionName(precision));
    OpSpec inputsOnly{"MultiHeadAttention",
                      "com.microsoft",
                      {InputSpec::floating("q", 3), InputSpec::floating("k", 3),
                       InputSpec::floating("v", 3)}};
    auto build = [&c = c](DataType floatType) {
      return rotaryAttentionModel(floatType, c.heads, c.headSize, c.offset, c.withBias);
    };
    ASSERT_TRUE(fusedRotaryOf(*findNode(*build(DataType::kFloat16), "attention")).has_value());
    absl::StatusOr<testing::CpuGpuRuns> runs =
        testing::runOnBoth(build, inputsOnly, feeds, precision);
    ASSERT_TRUE(runs.ok()) << runs.status();
    EXPECT_EQ(runs->gpu.stats.fallbackSteps, 0u);
    testing::Tolerance tolerance = testing::toleranceFor(precision);
    testing::Comparison comparison =
        testing::compareTensors(runs->gpu.outputs[0], runs->cpu.outputs[0]);
    // Attention outputs are weighted means of v in [-1, 1].
    EXPECT_LT(comparison.maxAbsError, tolerance.atol + tolerance.rtol);
    EXPECT_GT(comparison.cosine, precision == Precision::kFp32 ? 0.999999 : 0.999);
  }
  unsetenv("ROFORMER_CUDA_ATTENTION");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaRotaryAttentionTest,
    ::testing::Combine(::testing::Values(RotaryAttentionCase{1, 1, 4, 16, 0, false},
                                         RotaryAttentionCase{2, 65, 4, 16, 5, true},
                                         RotaryAttentionCase{3, 130, 12, 64, 0, false},
                                         RotaryAttentionCase{64, 33, 4, 64, 0, false},
                                         RotaryAttentionCase{2, 1024, 12, 64, 0, false},
                                         RotaryAttentionCase{2, 100, 2, 128, 70, true}),
                       ::testing::Bool()));

TEST(CudaRotaryAttentionTest, PositionsPastCachesFail) {
  SKIP_WITHOUT_CUDA();
  // Caches of 1100 rows, offset 100 and 1024 tokens: rows up to 1123.
  std::unique_ptr<ir::Model> model = rotaryAttentionModel(DataType::kFloat, 2, 16, 100, false);
  Feeds feeds{{"q", testing::floatTensor({1, 1024, 32}, 94)},
              {"k", testing::floatTensor({1, 1024, 32}, 95)},
              {"v", testing::floatTensor({1, 1024, 32}, 96)},
              {"mask", HostTensor::fromVector<int32_t>({1, 1024}, paddingMask(1, 1024))}};
  absl::StatusOr<testing::RunResult> gpu = testing::runModel(*model, "cuda", Precision::kFp32, feeds);
  ASSERT_FALSE(gpu.ok());
  EXPECT_NE(std::string(gpu.status().message()).find("outside the cos/sin cache rows"),
            std::string::npos)
      << gpu.status().message();
}

// ---- MatMul ----

class CudaMatMulTest : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t, int64_t>> {};

TEST_P(CudaMatMulTest, ProjectionWithBiasMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const auto [batch, sequence, in, out] = GetParam();
  // MatMul + Add(bias): the bias goes into cuBLASLt's epilogue.
  auto model = [in = in, out = out](DataType floatType) {
    auto result = std::make_unique<ir::Model>();
    result->setOpsetVersion("", 17);
    ir::Graph& graph = result->graph();
    ir::Value* x = graph.getOrCreateValue("x");
    x->setTensorType(floatType, std::vector<ir::Dim>(3, ir::Dim::unknown()));
    graph.addInput(x);
    ir::Value* w = graph.addInitializer("w", testing::floatConstant({in, out}, 81, -0.1f, 0.1f));
    ir::Value* b = graph.addInitializer("b", testing::floatConstant({out}, 82));
    ir::Node* matMul = graph.createNode("MatMul", "", {x, w}, {"xw"}, nullptr, "matmul");
    ir::Node* add = graph.createNode("Add", "", {matMul->output(0), b}, {"y"}, nullptr, "bias");
    ir::Node* relu = graph.createNode("Relu", "", {add->output(0)}, {"z"}, nullptr, "relu");
    graph.addOutput(relu->output(0));
    return result;
  };
  Feeds feeds{{"x", testing::floatTensor({batch, sequence, in}, 83)}};
  for (Precision precision : kPrecisions) {
    SCOPED_TRACE(precisionName(precision));
    OpSpec inputsOnly{"MatMul", "", {InputSpec::floating("x", 3)}};
    absl::StatusOr<testing::CpuGpuRuns> runs =
        testing::runOnBoth(model, inputsOnly, feeds, precision);
    ASSERT_TRUE(runs.ok()) << runs.status();
    const testing::RunResult* cpu = &runs->cpu;
    const testing::RunResult* gpu = &runs->gpu;
    EXPECT_EQ(gpu->stats.fallbackSteps, 0u);
    testing::Comparison comparison = testing::compareTensors(gpu->outputs[0], cpu->outputs[0]);
    // Sums of `in` products of size 0.1, so the rounding grows with `in`.
    double tolerance = 1e-4;
    double minCosine = 0.999999;
    if (precision != Precision::kFp32) {
      tolerance = precision == Precision::kFp16 ? 2e-2 : 8e-2;
      minCosine = 0.999;
    }
    EXPECT_LT(comparison.maxAbsError, tolerance);
    EXPECT_GT(comparison.cosine, minCosine);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaMatMulTest,
                         ::testing::Values(std::make_tuple(1, 1, 768, 768),
                                           std::make_tuple(2, 65, 768, 2304),
                                           std::make_tuple(3, 17, 33, 17),
                                           std::make_tuple(64, 9, 256, 64)));

TEST(CudaMatMulTest, EmptyInnerDimAddsBias) {
  SKIP_WITHOUT_CUDA();
  // Graph inputs may not have a dim of 0, so a Slice empties the inner dim.
  // The product is then all zeros, and the output is the fused bias alone.
  auto model = [](DataType floatType) {
    auto result = std::make_unique<ir::Model>();
    result->setOpsetVersion("", 17);
    ir::Graph& graph = result->graph();
    ir::Value* x = graph.getOrCreateValue("x");
    x->setTensorType(floatType, std::vector<ir::Dim>(3, ir::Dim::unknown()));
    graph.addInput(x);
    ir::Value* zero = graph.addInitializer("zero", ir::Tensor::create<int64_t>({1}, {0}));
    ir::Value* lastAxis = graph.addInitializer("last_axis", ir::Tensor::create<int64_t>({1}, {2}));
    ir::Node* slice =
        graph.createNode("Slice", "", {x, zero, zero, lastAxis}, {"empty"}, nullptr, "slice");
    ir::Value* w = graph.addInitializer("w", testing::floatConstant({0, 5}, 84));
    ir::Value* b = graph.addInitializer("b", testing::floatConstant({5}, 85));
    ir::Node* matMul = graph.createNode("MatMul", "", {slice->output(0), w}, {"xw"}, nullptr, "matmul");
    ir::Node* add = graph.createNode("Add", "", {matMul->output(0), b}, {"y"}, nullptr, "bias");
    graph.addOutput(add->output(0));
    return result;
  };
  Feeds feeds{{"x", testing::floatTensor({2, 3, 4}, 86)}};
  for (Precision precision : kPrecisions) {
    SCOPED_TRACE(precisionName(precision));
    OpSpec inputsOnly{"MatMul", "", {InputSpec::floating("x", 3)}};
    absl::StatusOr<testing::CpuGpuRuns> runs =
        testing::runOnBoth(model, inputsOnly, feeds, precision);
    ASSERT_TRUE(runs.ok()) << runs.status();
    const testing::RunResult* cpu = &runs->cpu;
    const testing::RunResult* gpu = &runs->gpu;
    ASSERT_EQ(gpu->outputs[0].shape(), cpu->outputs[0].shape());
    // Only the bias's rounding to the precision differs.
    const testing::Tolerance tolerance = testing::toleranceFor(precision);
    EXPECT_LT(testing::compareTensors(gpu->outputs[0], cpu->outputs[0]).maxAbsError, tolerance.atol);
  }
}

TEST(CudaMatMulTest, BatchedProductMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  OpSpec spec{"MatMul", "", {InputSpec::floating("a", 4), InputSpec::floating("b", 4)}};
  Feeds feeds{{"a", testing::floatTensor({2, 3, 17, 40}, 91)},
              {"b", testing::floatTensor({2, 3, 40, 9}, 92)}};
  for (Precision precision : kPrecisions) {
    SCOPED_TRACE(precisionName(precision));
    float atol = 1e-4f;
    if (precision == Precision::kFp16) atol = 5e-2f;
    if (precision == Precision::kBf16) atol = 2e-1f;
    testing::expectMatchesCpu(spec, feeds, precision, atol, 1e-2f);
  }
}

// ---- Elementwise, data movement and reductions ----

TEST(CudaElementwiseTest, BroadcastArithmeticMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  for (const char* op : {"Add", "Sub", "Mul", "Div", "Max", "Min"}) {
    SCOPED_TRACE(op);
    OpSpec spec{op, "", {InputSpec::floating("a", 3), InputSpec::floating("b", 3)}};
    Feeds feeds{{"a", testing::floatTensor({3, 5, 64}, 101)},
                {"b", testing::floatTensor({3, 1, 64}, 102, 0.5f, 2.0f)}};
    expectAllPrecisions(spec, feeds);
  }
}

TEST(CudaElementwiseTest, AlternatingBroadcastFallsBack) {
  SKIP_WITHOUT_CUDA();
  // Broadcasting alternates between the inputs in every dim, so no dims
  // merge and the loop nest would need 9, one more than kMaxDims.
  OpSpec add{"Add", "", {InputSpec::floating("a", 9), InputSpec::floating("b", 9)}};
  Feeds feeds{{"a", testing::floatTensor({2, 1, 2, 1, 2, 1, 2, 1, 2}, 104)},
              {"b", testing::floatTensor({1, 2, 1, 2, 1, 2, 1, 2, 1}, 105)}};
  for (Precision precision : kPrecisions) {
    SCOPED_TRACE(precisionName(precision));
    expectFallbackMatchesCpu(add, feeds, precision);
  }
}

TEST(CudaElementwiseTest, UnaryOpsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  for (const char* op : {"Sigmoid", "Erf", "Neg", "Abs", "Exp", "Tanh", "Relu", "Sqrt"}) {
    SCOPED_TRACE(op);
    OpSpec spec{op, "", {InputSpec::floating("x", 2)}};
    const bool positive = std::string(op) == "Sqrt";
    Feeds feeds{{"x", testing::floatTensor({7, 33}, 103, positive ? 0.0f : -3.0f, 3.0f)}};
    expectAllPrecisions(spec, feeds);
  }
}

TEST(CudaElementwiseTest, MaskOpsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  // token != 0 as Equal + Not on float ids, then Cast to float: the TF
  // export's mask.
  std::vector<float> ids = {101, 5, 0, 0, 7, 102, 0, 9, 3, 0};
  auto run = [&](const OpSpec& spec, const Feeds& feeds) {
    std::unique_ptr<ir::Model> model = testing::buildModel(spec, DataType::kFloat);
    absl::StatusOr<testing::RunResult> cpu = testing::runModel(*model, "cpu", Precision::kFp32, feeds);
    EXPECT_TRUE(cpu.ok()) << cpu.status();
    absl::StatusOr<testing::RunResult> gpu = testing::runModel(*model, "cuda", Precision::kFp16, feeds);
    EXPECT_TRUE(gpu.ok()) << gpu.status();
    if (!cpu.ok() || !gpu.ok()) return;
    EXPECT_EQ(gpu->stats.fallbackSteps, 0u);
    ASSERT_EQ(gpu->outputs[0].byteSize(), cpu->outputs[0].byteSize());
    EXPECT_EQ(std::memcmp(gpu->outputs[0].rawData(), cpu->outputs[0].rawData(),
                          cpu->outputs[0].byteSize()),
              0);
  };

  OpSpec equal{"Equal", "",
               {InputSpec::typed("ids", DataType::kFloat, 2),
                InputSpec::constantTensor("zero", ir::Tensor::create<float>({}, {0.0f}))}};
  run(equal, Feeds{{"ids", HostTensor::fromVector<float>({2, 5}, ids)}});

  OpSpec notOp{"Not", "", {InputSpec::typed("m", DataType::kBool, 2)}};
  std::vector<bool> flags = {true, false, false, true, true, false, true, false, false, true};
  HostTensor boolTensor(DataType::kBool, {2, 5});
  for (size_t i = 0; i < flags.size(); ++i) boolTensor.data<uint8_t>()[i] = flags[i] ? 1 : 0;
  run(notOp, Feeds{{"m", boolTensor}});

  OpSpec cast{"Cast", "", {InputSpec::typed("m", DataType::kBool, 2)}};
  cast.attributes = [](ir::Node& node) { node.setIntAttribute("to", 1); };
  run(cast, Feeds{{"m", boolTensor}});

  OpSpec castIds{"Cast", "", {InputSpec::typed("ids", DataType::kFloat, 2)}};
  castIds.attributes = [](ir::Node& node) { node.setIntAttribute("to", 6); };
  run(castIds, Feeds{{"ids", HostTensor::fromVector<float>({2, 5}, ids)}});

  OpSpec where{"Where", "",
               {InputSpec::typed("m", DataType::kBool, 2), InputSpec::typed("a", DataType::kFloat, 2),
                InputSpec::constantTensor("b", ir::Tensor::create<float>({}, {-7.5f}))}};
  run(where, Feeds{{"m", boolTensor}, {"a", HostTensor::fromVector<float>({2, 5}, ids)}});
}

TEST(CudaElementwiseTest, PoolingOpsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  // The head's masked mean: ReduceSum over the sequence axis.
  for (int64_t batch : {1, 2, 3, 64}) {
    SCOPED_TRACE(batch);
    OpSpec spec{"ReduceSum", "",
                {InputSpec::floating("x", 3),
                 InputSpec::constantTensor("axes", ir::Tensor::create<int64_t>({1}, {1}))}};
    spec.attributes = [](ir::Node& node) { node.setIntAttribute("keepdims", 0); };
    Feeds feeds{{"x", testing::floatTensor({batch, 130, 64}, 111)}};
    for (Precision precision : kPrecisions) {
      SCOPED_TRACE(precisionName(precision));
      // A sum of 130 terms of size 1 carries the rounding of its stored result.
      testing::expectMatchesCpu(spec, feeds, precision, precision == Precision::kFp32 ? 1e-4f : 0.2f,
                                1e-2f);
    }
  }
  OpSpec mean{"ReduceMean", "", {InputSpec::floating("x", 3)}};
  mean.opset = 17;
  mean.attributes = [](ir::Node& node) { node.setIntsAttribute("axes", {-1}); };
  expectAllPrecisions(mean, Feeds{{"x", testing::floatTensor({3, 7, 300}, 112)}});
}

TEST(CudaElementwiseTest, SoftmaxMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  OpSpec spec{"Softmax", "", {InputSpec::floating("x", 3)}};
  expectAllPrecisions(spec, Feeds{{"x", testing::floatTensor({2, 5, 1000}, 121, -5.0f, 5.0f)}});
}

TEST(CudaDataMovementTest, CopiesMatchCpu) {
  SKIP_WITHOUT_CUDA();
  OpSpec transpose{"Transpose", "", {InputSpec::floating("x", 4)}};
  transpose.attributes = [](ir::Node& node) { node.setIntsAttribute("perm", {0, 2, 1, 3}); };
  expectAllPrecisions(transpose, Feeds{{"x", testing::floatTensor({2, 5, 3, 16}, 131)}});

  OpSpec slice{"Slice", "",
               {InputSpec::floating("x", 3),
                InputSpec::constantTensor("starts", ir::Tensor::create<int64_t>({2}, {1, -10})),
                InputSpec::constantTensor("ends", ir::Tensor::create<int64_t>({2}, {1000, -1})),
                InputSpec::constantTensor("axes", ir::Tensor::create<int64_t>({2}, {1, 2})),
                InputSpec::constantTensor("steps", ir::Tensor::create<int64_t>({2}, {1, 2}))}};
  expectAllPrecisions(slice, Feeds{{"x", testing::floatTensor({3, 7, 33}, 132)}});

  OpSpec concat{"Concat", "", {InputSpec::floating("a", 3), InputSpec::floating("b", 3)}};
  concat.attributes = [](ir::Node& node) { node.setIntAttribute("axis", 1); };
  expectAllPrecisions(concat, Feeds{{"a", testing::floatTensor({2, 1, 8}, 133)},
                                    {"b", testing::floatTensor({2, 6, 8}, 134)}});

  OpSpec split{"Split", "",
               {InputSpec::floating("x", 3),
                InputSpec::constantTensor("split", ir::Tensor::create<int64_t>({3}, {64, 64, 32}))},
               3};
  split.attributes = [](ir::Node& node) { node.setIntAttribute("axis", -1); };
  expectAllPrecisions(split, Feeds{{"x", testing::floatTensor({3, 5, 160}, 135)}});

  OpSpec expand{"Expand", "",
                {InputSpec::floating("x", 3),
                 InputSpec::constantTensor("shape", ir::Tensor::create<int64_t>({3}, {4, 3, 8}))}};
  expectAllPrecisions(expand, Feeds{{"x", testing::floatTensor({1, 3, 1}, 136)}});

  OpSpec unsqueeze{"Unsqueeze", "",
                   {InputSpec::floating("x", 2),
                    InputSpec::constantTensor("axes", ir::Tensor::create<int64_t>({1}, {1}))}};
  expectAllPrecisions(unsqueeze, Feeds{{"x", testing::floatTensor({3, 9}, 137)}});
}

TEST(CudaDataMovementTest, ConcatAboveMaxRankFallsBack) {
  SKIP_WITHOUT_CUDA();
  // kMaxDims is 8. The reduced precisions matter, because there the device
  // path would have planned a reduced output type that the fallback does
  // not produce.
  OpSpec concat{"Concat", "", {InputSpec::floating("a", 9), InputSpec::floating("b", 9)}};
  concat.attributes = [](ir::Node& node) { node.setIntAttribute("axis", 0); };
  Feeds feeds{{"a", testing::floatTensor({1, 2, 1, 2, 1, 2, 1, 2, 1}, 138)},
              {"b", testing::floatTensor({2, 2, 1, 2, 1, 2, 1, 2, 1}, 139)}};
  for (Precision precision : kPrecisions) {
    SCOPED_TRACE(precisionName(precision));
    expectFallbackMatchesCpu(concat, feeds, precision);
  }
}

TEST(CudaDataMovementTest, EmbeddingGatherMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  for (int64_t batch : {1, 2, 3, 64}) {
    SCOPED_TRACE(batch);
    OpSpec spec{"Gather", "",
                {InputSpec::constantTensor("table", testing::floatConstant({1000, 64}, 141)),
                 InputSpec::typed("ids", DataType::kInt32, 2)}};
    std::vector<int32_t> ids;
    for (int64_t i = 0; i < batch * 17; ++i) ids.push_back(static_cast<int32_t>((i * 37) % 1000));
    Feeds feeds{{"ids", HostTensor::fromVector<int32_t>({batch, 17}, ids)}};
    expectAllPrecisions(spec, feeds);
  }
}

}  // namespace
}  // namespace roformer::runtime::cuda
