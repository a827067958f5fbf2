#include "passes/Match.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace roformer::passes {
namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// x -> Sqrt -> s; Add(s, one) -> a; Mul(x, a) -> y (graph output).
class MatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    x_ = graph_.getOrCreateValue("x");
    x_->setTensorType(ir::DataType::kFloat, std::vector<int64_t>{2, 3});
    graph_.addInput(x_);
    one_ = graph_.addInitializer("one", ir::Tensor::scalar<float>(1.0f));
    sqrt_ = graph_.createNode("Sqrt", "", {x_}, {"s"}, nullptr, "sqrt");
    add_ = graph_.createNode("Add", "", {sqrt_->output(), one_}, {"a"}, nullptr, "add");
    mul_ = graph_.createNode("Mul", "", {x_, add_->output()}, {"y"}, nullptr, "mul");
    graph_.addOutput(mul_->output());
  }

  ir::Graph graph_;
  ir::Value* x_ = nullptr;
  ir::Value* one_ = nullptr;
  ir::Node* sqrt_ = nullptr;
  ir::Node* add_ = nullptr;
  ir::Node* mul_ = nullptr;
};

TEST_F(MatchTest, ProducerMatchesOpType) {
  MatchFailure why;
  EXPECT_EQ(matchProducer(add_->input(0), "Sqrt", &why), sqrt_);
  EXPECT_EQ(matchProducer(add_->input(0), "Erf", &why), nullptr);
  EXPECT_TRUE(contains(why.reason, "value 's' is computed by Sqrt 'sqrt', not by Erf"))
      << why.reason;
  EXPECT_EQ(matchProducer(x_, "Sqrt", &why), nullptr);
  EXPECT_TRUE(contains(why.reason, "value 'x' is not computed by a node")) << why.reason;
}

TEST_F(MatchTest, ProducerChecksDomain) {
  MatchFailure why;
  EXPECT_EQ(matchProducer(add_->input(0), "Sqrt", &why, "com.microsoft"), nullptr);
  EXPECT_TRUE(contains(why.reason, "not by com.microsoft.Sqrt")) << why.reason;
}

TEST_F(MatchTest, ParentPathWalksInputs) {
  MatchFailure why;
  auto path = matchParentPath(mul_, {{"Add", 1}, {"Sqrt", 0}}, &why);
  ASSERT_TRUE(path.has_value()) << why.reason;
  ASSERT_EQ(path->size(), 2u);
  EXPECT_EQ((*path)[0], add_);
  EXPECT_EQ((*path)[1], sqrt_);
}

TEST_F(MatchTest, ParentPathNamesFailedStep) {
  MatchFailure why;
  EXPECT_FALSE(matchParentPath(mul_, {{"Add", 0}}, &why).has_value());
  EXPECT_TRUE(contains(why.reason, "input 0 of Mul 'mul': value 'x' is not computed by a node"))
      << why.reason;
  EXPECT_FALSE(matchParentPath(mul_, {{"Add", 5}}, &why).has_value());
  EXPECT_TRUE(contains(why.reason, "Mul 'mul' has no input 5")) << why.reason;
}

TEST_F(MatchTest, ParentPathAnyInput) {
  MatchFailure why;
  auto path = matchParentPath(mul_, {{"Add", PathStep::kAnyInput}, {"Sqrt", 0}}, &why);
  ASSERT_TRUE(path.has_value()) << why.reason;
  EXPECT_EQ((*path)[0], add_);
  EXPECT_FALSE(matchParentPath(mul_, {{"Erf", PathStep::kAnyInput}}, &why).has_value());
  EXPECT_TRUE(contains(why.reason, "no input of Mul 'mul' is computed by Erf")) << why.reason;
}

TEST_F(MatchTest, ScalarConstantShapes) {
  ir::Value* scalar = graph_.addInitializer("scalar", ir::Tensor::scalar<float>(0.5f));
  ir::Value* vector1 = graph_.addInitializer(
      "vector1", ir::Tensor::create<double>({1}, std::vector<double>{2.0}));
  ir::Value* matrix = graph_.addInitializer(
      "matrix", ir::Tensor::create<float>({1, 1}, std::vector<float>{3.0f}));
  ir::Value* integer = graph_.addInitializer("integer", ir::Tensor::scalar<int64_t>(7));
  ir::Value* pair = graph_.addInitializer(
      "pair", ir::Tensor::create<float>({2}, std::vector<float>{1.0f, 2.0f}));

  EXPECT_EQ(scalarConstant(scalar), 0.5);
  EXPECT_EQ(scalarConstant(vector1), 2.0);
  EXPECT_EQ(scalarConstant(integer), 7.0);
  EXPECT_FALSE(scalarConstant(matrix).has_value());
  EXPECT_FALSE(scalarConstant(pair).has_value());
  EXPECT_FALSE(scalarConstant(x_).has_value());
  EXPECT_FALSE(scalarConstant(nullptr).has_value());
}

TEST_F(MatchTest, ScalarConstantThroughCast) {
  ir::Value* integer = graph_.addInitializer("integer", ir::Tensor::scalar<int64_t>(2));
  ir::Node* toFloat = graph_.createNode("Cast", "", {integer}, {"as_float"});
  toFloat->setIntAttribute("to", static_cast<int64_t>(ir::DataType::kFloat));
  ir::Node* toInt = graph_.createNode("Cast", "", {one_}, {"as_int"});
  toInt->setIntAttribute("to", static_cast<int64_t>(ir::DataType::kInt32));

  EXPECT_EQ(scalarConstant(toFloat->output()), 2.0);
  EXPECT_FALSE(scalarConstant(toInt->output()).has_value());
}

TEST_F(MatchTest, ScalarConstantTolerance) {
  ir::Value* root2 = graph_.addInitializer("root2", ir::Tensor::scalar<float>(1.4142135f));
  ir::Value* truncated = graph_.addInitializer("truncated", ir::Tensor::scalar<float>(1.414f));
  MatchFailure why;
  EXPECT_TRUE(matchScalarConstant(root2, std::sqrt(2.0), 1e-6, "sqrt(2)", &why));
  EXPECT_FALSE(matchScalarConstant(truncated, std::sqrt(2.0), 1e-6, "sqrt(2)", &why));
  EXPECT_TRUE(contains(why.reason, "sqrt(2) (value 'truncated') is 1.414")) << why.reason;
  EXPECT_FALSE(matchScalarConstant(x_, 1.0, 1e-6, "the one", &why));
  EXPECT_TRUE(contains(why.reason, "the one (value 'x') is not a scalar constant")) << why.reason;
}

TEST_F(MatchTest, SingleUseAndGraphOutputs) {
  MatchFailure why;
  EXPECT_TRUE(isSingleUse(sqrt_->output()));
  EXPECT_FALSE(isSingleUse(x_));
  EXPECT_FALSE(requireSingleUse(x_, &why));
  EXPECT_TRUE(contains(why.reason, "value 'x' has 2 uses (Sqrt 'sqrt', Mul 'mul')"))
      << why.reason;
  EXPECT_FALSE(requireSingleUse(mul_->output(), &why));
  EXPECT_TRUE(contains(why.reason, "value 'y' is a graph output")) << why.reason;
}

TEST_F(MatchTest, UsersWithinAllowedNodes) {
  MatchFailure why;
  EXPECT_TRUE(requireUsersWithin(x_, {sqrt_, mul_}, &why)) << why.reason;
  EXPECT_FALSE(requireUsersWithin(x_, {sqrt_}, &why));
  EXPECT_TRUE(contains(why.reason, "value 'x' is also used by Mul 'mul'")) << why.reason;
}

TEST_F(MatchTest, CommutativeOperandsOrder) {
  auto isConstant = [](const ir::Value* value, MatchFailure* inner) {
    if (scalarConstant(value)) return true;
    return mismatch(inner, describeValue(value) + " is not constant");
  };
  MatchFailure why;
  auto order = commutativeOperands(add_, isConstant, &why);
  ASSERT_TRUE(order.has_value()) << why.reason;
  EXPECT_EQ(order->matched, 1);
  EXPECT_EQ(order->other, 0);

  EXPECT_FALSE(commutativeOperands(mul_, isConstant, &why).has_value());
  EXPECT_TRUE(contains(why.reason, "neither input of Mul 'mul' fits: input 0: value 'x' is not "
                                   "constant, and input 1: value 'a' is not constant"))
      << why.reason;
}

TEST_F(MatchTest, ReductionAxesFromAttributeOrInput) {
  ir::Node* fromAttribute = graph_.createNode("ReduceMean", "", {x_}, {"m1"});
  fromAttribute->setIntsAttribute("axes", {-1});
  ir::Value* axes = graph_.addInitializer(
      "axes", ir::Tensor::create<int64_t>({1}, std::vector<int64_t>{1}));
  ir::Node* fromInput = graph_.createNode("ReduceMean", "", {x_, axes}, {"m2"});
  ir::Node* fromValue = graph_.createNode("ReduceMean", "", {x_, x_}, {"m3"});

  MatchFailure why;
  EXPECT_EQ(reductionAxes(fromAttribute, &why), std::vector<int64_t>{-1});
  EXPECT_EQ(reductionAxes(fromInput, &why), std::vector<int64_t>{1});
  EXPECT_FALSE(reductionAxes(fromValue, &why).has_value());
  EXPECT_TRUE(contains(why.reason, "are not a constant integer tensor")) << why.reason;
}

TEST_F(MatchTest, LastAxis) {
  EXPECT_TRUE(isLastAxis(-1, std::nullopt));
  EXPECT_TRUE(isLastAxis(2, 3));
  EXPECT_FALSE(isLastAxis(1, 3));
  EXPECT_FALSE(isLastAxis(2, std::nullopt));
  EXPECT_EQ(rankOf(x_), 2);
  EXPECT_FALSE(rankOf(sqrt_->output()).has_value());
}

TEST_F(MatchTest, EraseUnusedNodesLeavesUsedOnes) {
  ir::Node* dead = graph_.createNode("Neg", "", {x_}, {"dead"});
  ir::Node* deadUser = graph_.createNode("Abs", "", {dead->output()}, {"dead2"});
  size_t before = graph_.nodeCount();
  eraseUnusedNodes(graph_, {dead, deadUser, deadUser, add_});
  EXPECT_EQ(graph_.nodeCount(), before - 2);
  EXPECT_EQ(mul_->input(1)->producer(), add_);
}

}  // namespace
}  // namespace roformer::passes
