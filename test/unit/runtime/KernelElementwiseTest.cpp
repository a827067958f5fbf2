// Tests of the CPU elementwise kernels: unary math, broadcasting binary ops,
// comparisons, logic, Where, Clip, Min/Max/Sum/Mean and Cast.
#include <cmath>
#include <limits>

#include "runtime/cpu/VectorMath.h"
#include "test/unit/runtime/KernelTestHelpers.h"

namespace roformer::runtime::testing {
namespace {

TEST(KernelElementwise, AddSameShape) {
  OneNodeGraph g("Add", 2, 1);
  HostTensor out = runSingle(g.node(), 17,
                             {makeTensor<float>({2, 2}, {1, 2, 3, 4}),
                              makeTensor<float>({2, 2}, {10, 20, 30, 40})});
  EXPECT_EQ(out.shape(), (Shape{2, 2}));
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{11, 22, 33, 44}));
}

TEST(KernelElementwise, AddBroadcastsLastAxisBias) {
  OneNodeGraph g("Add", 2, 1);
  HostTensor out = runSingle(g.node(), 17,
                             {makeTensor<float>({2, 3}, {1, 2, 3, 4, 5, 6}),
                              makeTensor<float>({3}, {10, 20, 30})});
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{11, 22, 33, 14, 25, 36}));
}

TEST(KernelElementwise, SubBroadcastsBothWays) {
  // [2, 1] - [1, 3] -> [2, 3]
  OneNodeGraph g("Sub", 2, 1);
  HostTensor out = runSingle(g.node(), 14,
                             {makeTensor<float>({2, 1}, {10, 20}),
                              makeTensor<float>({1, 3}, {1, 2, 3})});
  EXPECT_EQ(out.shape(), (Shape{2, 3}));
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{9, 8, 7, 19, 18, 17}));
}

TEST(KernelElementwise, MulScalarOnLeft) {
  OneNodeGraph g("Mul", 2, 1);
  HostTensor out = runSingle(g.node(), 14,
                             {makeTensor<float>({}, {2}), makeTensor<float>({3}, {1, 2, 3})});
  EXPECT_EQ(out.shape(), (Shape{3}));
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{2, 4, 6}));
}

TEST(KernelElementwise, BroadcastMiddleAxis) {
  // [2, 3, 2] + [3, 1]: the second input varies along axis 1 only.
  OneNodeGraph g("Add", 2, 1);
  std::vector<float> a(12, 0.0f);
  HostTensor out = runSingle(g.node(), 14,
                             {makeTensor<float>({2, 3, 2}, a), makeTensor<float>({3, 1}, {1, 2, 3})});
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3}));
}

TEST(KernelElementwise, BroadcastRejectsMismatch) {
  OneNodeGraph g("Add", 2, 1);
  auto result = runKernel(g.node(), 14,
                          {makeTensor<float>({2, 3}, std::vector<float>(6)),
                           makeTensor<float>({2}, {1, 2})});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("not broadcastable"), std::string::npos)
      << result.status();
}

TEST(KernelElementwise, AddRejectsMixedTypes) {
  OneNodeGraph g("Add", 2, 1);
  auto result = runKernel(g.node(), 14,
                          {makeTensor<float>({1}, {1}), makeTensor<int64_t>({1}, {1})});
  EXPECT_FALSE(result.ok());
}

TEST(KernelElementwise, AddInt64) {
  OneNodeGraph g("Add", 2, 1);
  HostTensor out = runSingle(g.node(), 14,
                             {makeTensor<int64_t>({2}, {1, -5}), makeTensor<int64_t>({}, {7})});
  EXPECT_EQ(valuesOf<int64_t>(out), (std::vector<int64_t>{8, 2}));
}

TEST(KernelElementwise, DivIntegerTruncatesAndRejectsZero) {
  OneNodeGraph g("Div", 2, 1);
  HostTensor out = runSingle(g.node(), 14,
                             {makeTensor<int32_t>({3}, {7, -7, std::numeric_limits<int32_t>::min()}),
                              makeTensor<int32_t>({3}, {2, 2, -1})});
  // INT_MIN / -1 wraps to INT_MIN instead of trapping.
  EXPECT_EQ(valuesOf<int32_t>(out),
            (std::vector<int32_t>{3, -3, std::numeric_limits<int32_t>::min()}));

  auto zero = runKernel(g.node(), 14,
                        {makeTensor<int32_t>({2}, {1, 2}), makeTensor<int32_t>({2}, {1, 0})});
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.status().message().find("division by zero"), std::string::npos);
}

TEST(KernelElementwise, PowFloatAndMixedExponent) {
  OneNodeGraph g("Pow", 2, 1);
  HostTensor squared = runSingle(g.node(), 15,
                                 {makeTensor<float>({3}, {1.5f, -2, 3}), makeTensor<float>({}, {2})});
  EXPECT_EQ(valuesOf<float>(squared), (std::vector<float>{2.25f, 4, 9}));
  HostTensor mixed = runSingle(g.node(), 15,
                               {makeTensor<float>({2}, {2, 9}), makeTensor<int64_t>({2}, {3, 0})});
  EXPECT_EQ(valuesOf<float>(mixed), (std::vector<float>{8, 1}));
  HostTensor root = runSingle(g.node(), 15,
                              {makeTensor<float>({1}, {16}), makeTensor<float>({1}, {0.5f})});
  EXPECT_FLOAT_EQ(valuesOf<float>(root)[0], 4.0f);
}

TEST(KernelElementwise, ComparisonsGiveBool) {
  std::vector<std::pair<std::string, std::vector<bool>>> cases = {
      {"Equal", {false, true, false}},
      {"Less", {true, false, false}},
      {"Greater", {false, false, true}},
      {"LessOrEqual", {true, true, false}},
      {"GreaterOrEqual", {false, true, true}},
  };
  for (const auto& [op, expected] : cases) {
    OneNodeGraph g(op, 2, 1);
    HostTensor out = runSingle(g.node(), 16,
                               {makeTensor<int64_t>({3}, {1, 2, 3}), makeTensor<int64_t>({}, {2})});
    ASSERT_EQ(out.type(), DataType::kBool) << op;
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(out.data<bool>()[i], expected[i]) << op << " at " << i;
    }
  }
}

TEST(KernelElementwise, LogicOps) {
  HostTensor a = HostTensor(DataType::kBool, {4});
  HostTensor b = HostTensor(DataType::kBool, {4});
  bool av[] = {false, false, true, true};
  bool bv[] = {false, true, false, true};
  std::copy(av, av + 4, a.data<bool>());
  std::copy(bv, bv + 4, b.data<bool>());
  std::vector<std::pair<std::string, std::vector<bool>>> cases = {
      {"And", {false, false, false, true}},
      {"Or", {false, true, true, true}},
      {"Xor", {false, true, true, false}},
  };
  for (const auto& [op, expected] : cases) {
    OneNodeGraph g(op, 2, 1);
    HostTensor out = runSingle(g.node(), 7, {a, b});
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(out.data<bool>()[i], expected[i]) << op << " " << i;
  }
  OneNodeGraph notNode("Not", 1, 1);
  HostTensor negated = runSingle(notNode.node(), 1, {a});
  EXPECT_TRUE(negated.data<bool>()[0]);
  EXPECT_FALSE(negated.data<bool>()[3]);
}

TEST(KernelElementwise, UnaryMath) {
  const std::vector<float> x = {-1.5f, -0.25f, 0.0f, 0.5f, 2.0f};
  struct Case {
    std::string op;
    double (*reference)(double);
  };
  std::vector<Case> cases = {
      {"Neg", [](double v) { return -v; }},
      {"Abs", [](double v) { return std::fabs(v); }},
      {"Exp", [](double v) { return std::exp(v); }},
      {"Sin", [](double v) { return std::sin(v); }},
      {"Cos", [](double v) { return std::cos(v); }},
      {"Erf", [](double v) { return std::erf(v); }},
      {"Tanh", [](double v) { return std::tanh(v); }},
      {"Sigmoid", [](double v) { return 1.0 / (1.0 + std::exp(-v)); }},
      {"Relu", [](double v) { return v < 0 ? 0.0 : v; }},
      {"Floor", [](double v) { return std::floor(v); }},
      {"Ceil", [](double v) { return std::ceil(v); }},
  };
  for (const Case& c : cases) {
    OneNodeGraph g(c.op, 1, 1);
    std::vector<float> out = valuesOf<float>(runSingle(g.node(), 13, {makeTensor<float>({5}, x)}));
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_NEAR(out[i], c.reference(x[i]), 2e-7 * (1 + std::fabs(c.reference(x[i]))))
          << c.op << "(" << x[i] << ")";
    }
  }
  OneNodeGraph sqrtNode("Sqrt", 1, 1);
  EXPECT_EQ(valuesOf<float>(runSingle(sqrtNode.node(), 13, {makeTensor<float>({2}, {4, 2.25f})})),
            (std::vector<float>{2, 1.5f}));
  OneNodeGraph logNode("Log", 1, 1);
  EXPECT_NEAR(valuesOf<float>(runSingle(logNode.node(), 13, {makeTensor<float>({1}, {10})}))[0],
              std::log(10.0), 1e-6);
  OneNodeGraph reciprocal("Reciprocal", 1, 1);
  EXPECT_EQ(valuesOf<float>(runSingle(reciprocal.node(), 13, {makeTensor<float>({1}, {4})}))[0],
            0.25f);
}

TEST(KernelElementwise, UnaryRejectsIntegersForFloatOps) {
  OneNodeGraph g("Sqrt", 1, 1);
  auto result = runKernel(g.node(), 13, {makeTensor<int64_t>({1}, {4})});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnimplemented);
}

TEST(KernelElementwise, NegAndAbsWrapMostNegativeInteger) {
  OneNodeGraph neg("Neg", 1, 1);
  const int64_t lowest = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(valuesOf<int64_t>(runSingle(neg.node(), 13, {makeTensor<int64_t>({2}, {5, lowest})})),
            (std::vector<int64_t>{-5, lowest}));
}

TEST(KernelVectorMath, FastErfMatchesStdErf) {
  double worst = 0;
  for (int i = -6000; i <= 6000; ++i) {
    const float x = static_cast<float>(i) * 1e-3f;
    worst = std::max(worst, std::fabs(static_cast<double>(cpu::fastErf(x)) - std::erf(double(x))));
  }
  EXPECT_LT(worst, 3e-7);
}

TEST(KernelVectorMath, FastExpMatchesStdExp) {
  double worst = 0;
  for (int i = -8700; i <= 8800; ++i) {
    const float x = static_cast<float>(i) * 1e-2f;
    const double exact = std::exp(double(x));
    worst = std::max(worst, std::fabs(cpu::fastExp(x) - exact) / exact);
  }
  EXPECT_LT(worst, 3e-7);
  EXPECT_TRUE(std::isnan(cpu::fastExp(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_LT(cpu::fastExp(-1e4f), 1e-37f);
}

TEST(KernelVectorMath, RowHelpersHandleTails) {
  // 37 elements: two full 16-lane blocks and a tail of 5.
  std::vector<float> x(37);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) - 10.0f;
  EXPECT_FLOAT_EQ(cpu::sumOf(x.data(), 37), 36.0f * 37.0f / 2.0f - 370.0f);
  EXPECT_FLOAT_EQ(cpu::maxOf(x.data(), 37), 26.0f);
  EXPECT_FLOAT_EQ(cpu::maxOf(x.data(), 3), -8.0f);
}

TEST(KernelElementwise, WhereBroadcasts) {
  OneNodeGraph g("Where", 3, 1);
  HostTensor condition(DataType::kBool, {2, 1});
  condition.data<bool>()[0] = true;
  condition.data<bool>()[1] = false;
  HostTensor out = runSingle(g.node(), 16,
                             {condition, makeTensor<float>({2}, {1, 2}),
                              makeTensor<float>({2, 2}, {10, 20, 30, 40})});
  EXPECT_EQ(out.shape(), (Shape{2, 2}));
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{1, 2, 30, 40}));
}

TEST(KernelElementwise, ClipAttributesBeforeOpset11) {
  OneNodeGraph g("Clip", 1, 1);
  g.node().setFloatAttribute("min", -1.0f);
  g.node().setFloatAttribute("max", 2.0f);
  HostTensor out = runSingle(g.node(), 6, {makeTensor<float>({4}, {-3, 0.5f, 2, 5})});
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{-1, 0.5f, 2, 2}));
}

TEST(KernelElementwise, ClipInputsFromOpset11) {
  OneNodeGraph g("Clip", 3, 1, "", {1});
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<float>({3}, {-3, 0.5f, 5}), HostTensor(),
                              makeTensor<float>({}, {1})});
  // min omitted: only the upper bound applies.
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{-3, 0.5f, 1}));
  OneNodeGraph ints("Clip", 3, 1);
  HostTensor clipped = runSingle(ints.node(), 13,
                                 {makeTensor<int64_t>({3}, {-3, 1, 9}), makeTensor<int64_t>({}, {0}),
                                  makeTensor<int64_t>({}, {5})});
  EXPECT_EQ(valuesOf<int64_t>(clipped), (std::vector<int64_t>{0, 1, 5}));
}

TEST(KernelElementwise, VariadicMinMaxSumMean) {
  std::vector<HostTensor> inputs = {makeTensor<float>({2}, {1, 5}), makeTensor<float>({}, {3}),
                                    makeTensor<float>({2, 1}, {0, 4})};
  OneNodeGraph minNode("Min", 3, 1);
  EXPECT_EQ(valuesOf<float>(runSingle(minNode.node(), 13, inputs)),
            (std::vector<float>{0, 0, 1, 3}));
  OneNodeGraph maxNode("Max", 3, 1);
  EXPECT_EQ(valuesOf<float>(runSingle(maxNode.node(), 13, inputs)),
            (std::vector<float>{3, 5, 4, 5}));
  OneNodeGraph sumNode("Sum", 3, 1);
  EXPECT_EQ(valuesOf<float>(runSingle(sumNode.node(), 13, inputs)),
            (std::vector<float>{4, 8, 8, 12}));
  OneNodeGraph meanNode("Mean", 3, 1);
  std::vector<float> mean = valuesOf<float>(runSingle(meanNode.node(), 13, inputs));
  expectNear(mean, {4.0f / 3, 8.0f / 3, 8.0f / 3, 4}, 1e-6f);
}

TEST(KernelElementwise, MaxPropagatesNaN) {
  OneNodeGraph g("Max", 2, 1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> out = valuesOf<float>(
      runSingle(g.node(), 13, {makeTensor<float>({2}, {nan, 1}), makeTensor<float>({2}, {0, nan})}));
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_TRUE(std::isnan(out[1]));
}

TEST(KernelElementwise, CastConversions) {
  OneNodeGraph toInt("Cast", 1, 1);
  toInt.node().setIntAttribute("to", static_cast<int64_t>(DataType::kInt32));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  HostTensor ints = runSingle(toInt.node(), 13,
                              {makeTensor<float>({5}, {1.9f, -1.9f, 1e20f, -1e20f, nan})});
  EXPECT_EQ(valuesOf<int32_t>(ints),
            (std::vector<int32_t>{1, -1, std::numeric_limits<int32_t>::max(),
                                  std::numeric_limits<int32_t>::min(), 0}));

  OneNodeGraph toBool("Cast", 1, 1);
  toBool.node().setIntAttribute("to", static_cast<int64_t>(DataType::kBool));
  HostTensor bools = runSingle(toBool.node(), 13, {makeTensor<int64_t>({3}, {0, 2, -1})});
  ASSERT_EQ(bools.type(), DataType::kBool);
  EXPECT_FALSE(bools.data<bool>()[0]);
  EXPECT_TRUE(bools.data<bool>()[1]);
  EXPECT_TRUE(bools.data<bool>()[2]);

  OneNodeGraph toFloat("Cast", 1, 1);
  toFloat.node().setIntAttribute("to", static_cast<int64_t>(DataType::kFloat));
  EXPECT_EQ(valuesOf<float>(runSingle(toFloat.node(), 13, {makeTensor<int64_t>({2}, {3, -4})})),
            (std::vector<float>{3, -4}));
}

TEST(KernelElementwise, CastRejectsMissingOrInvalidTo) {
  OneNodeGraph missing("Cast", 1, 1);
  auto result = runKernel(missing.node(), 13, {makeTensor<float>({1}, {1})});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("Cast 'node'"), std::string::npos) << result.status();

  OneNodeGraph half("Cast", 1, 1);
  half.node().setIntAttribute("to", static_cast<int64_t>(DataType::kFloat16));
  auto unsupported = runKernel(half.node(), 13, {makeTensor<float>({1}, {1})});
  ASSERT_FALSE(unsupported.ok());
  EXPECT_EQ(unsupported.status().code(), absl::StatusCode::kUnimplemented);
}

TEST(KernelElementwise, ThreadedLargeBroadcastMatchesSerial) {
  // Big enough for the thread pool to split: [64, 4096] + [4096].
  std::vector<float> a = pseudoRandom(64 * 4096, 1);
  std::vector<float> b = pseudoRandom(4096, 2);
  OneNodeGraph g("Mul", 2, 1);
  ThreadPool pool(2);
  HostTensor threaded = runSingle(g.node(), 14,
                                  {makeTensor<float>({64, 4096}, a), makeTensor<float>({4096}, b)},
                                  &pool);
  std::vector<float> out = valuesOf<float>(threaded);
  for (size_t i = 0; i < out.size(); i += 997) EXPECT_EQ(out[i], a[i] * b[i % 4096]) << i;
}

TEST(KernelElementwise, ErfUsesFastPathOnLargeInput) {
  std::vector<float> x = pseudoRandom(100000, 3);
  for (float& v : x) v *= 4.0f;
  OneNodeGraph g("Erf", 1, 1);
  ThreadPool pool(2);
  std::vector<float> out = valuesOf<float>(runSingle(g.node(), 13, {makeTensor<float>({100000}, x)}, &pool));
  for (size_t i = 0; i < x.size(); i += 101) EXPECT_NEAR(out[i], std::erf(x[i]), 3e-7) << x[i];
}

}  // namespace
}  // namespace roformer::runtime::testing
