#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "passes/ShapeTerms.h"

namespace roformer::passes {
namespace {

std::optional<int64_t> rankFromShape(const ir::Value* value) { return rankOf(value); }

// x [B, S, 8] and the tf2onnx plumbing of Reshape(y, [-1, Shape(x)[1], 2, 4]):
// Shape, Cast to int32, Slice [1:2], Squeeze, Unsqueeze, Concat with constants.
class ShapeTermsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    x_ = graph_.getOrCreateValue("x");
    x_->setTensorType(
        ir::DataType::kFloat,
        std::vector<ir::Dim>{ir::Dim::symbolic("B"), ir::Dim::symbolic("S"), ir::Dim::known(8)});
    graph_.addInput(x_);
  }

  ir::Value* ints(const std::string& name, std::vector<int64_t> values, bool scalar = false) {
    std::vector<int64_t> dims;
    if (!scalar) dims.push_back(static_cast<int64_t>(values.size()));
    return graph_.addInitializer(name, ir::Tensor::create<int64_t>(dims, values));
  }

  ir::Value* node(const std::string& op, const std::vector<ir::Value*>& inputs,
                  const std::string& output) {
    return graph_.createNode(op, "", inputs, {output})->output();
  }

  // Shape(x) -> Cast<int32> -> Slice [1:2] -> Squeeze -> Unsqueeze.
  ir::Value* sequenceLength() {
    ir::Value* shape = node("Shape", {x_}, "shape");
    ir::Node* cast = graph_.createNode("Cast", "", {shape}, {"shape_int32"});
    cast->setIntAttribute("to", static_cast<int64_t>(ir::DataType::kInt32));
    ir::Value* sliced = node(
        "Slice", {cast->output(), ints("one", {1}), ints("two", {2}), ints("zero", {0})}, "sliced");
    ir::Value* squeezed = node("Squeeze", {sliced, ints("axis0", {0})}, "squeezed");
    return node("Unsqueeze", {squeezed, ints("axis0b", {0})}, "unsqueezed");
  }

  ir::Graph graph_;
  ir::Value* x_ = nullptr;
};

TEST_F(ShapeTermsTest, ReadsPackedReshapeTarget) {
  ir::Value* target =
      node("Concat", {ints("minus_one", {-1}), sequenceLength(), ints("heads", {2, 4})}, "target");
  graph_.findValue("target")->producer()->setIntAttribute("axis", 0);
  MatchFailure why;
  auto terms = evaluateShapeTerms(target, rankFromShape, &why);
  ASSERT_TRUE(terms.has_value()) << why.reason;
  EXPECT_FALSE(terms->scalar);
  ASSERT_EQ(terms->terms.size(), 4u);
  EXPECT_EQ(terms->terms[0].kind, DimTerm::Kind::kConstant);
  EXPECT_EQ(terms->terms[0].constant, -1);
  EXPECT_EQ(terms->terms[1].kind, DimTerm::Kind::kDimOf);
  EXPECT_EQ(terms->terms[1].value, x_);
  EXPECT_EQ(terms->terms[1].axis, 1);
  EXPECT_EQ(terms->terms[2].constant, 2);
  EXPECT_EQ(terms->terms[3].constant, 4);
}

TEST_F(ShapeTermsTest, GatherPicksDims) {
  ir::Value* shape = node("Shape", {x_}, "shape");
  ir::Value* picked = node("Gather", {shape, ints("indices", {2, 0})}, "picked");
  ir::Value* single = node("Gather", {shape, ints("index", {1}, /*scalar=*/true)}, "single");
  MatchFailure why;
  auto pair = evaluateShapeTerms(picked, rankFromShape, &why);
  ASSERT_TRUE(pair.has_value()) << why.reason;
  ASSERT_EQ(pair->terms.size(), 2u);
  EXPECT_EQ(pair->terms[0].axis, 2);
  EXPECT_EQ(pair->terms[1].axis, 0);
  auto scalar = evaluateShapeTerms(single, rankFromShape, &why);
  ASSERT_TRUE(scalar.has_value()) << why.reason;
  EXPECT_TRUE(scalar->scalar);
  EXPECT_EQ(scalar->terms[0].axis, 1);
}

TEST_F(ShapeTermsTest, RejectsArithmetic) {
  ir::Value* shape = node("Shape", {x_}, "shape");
  ir::Value* doubled = node("Add", {shape, shape}, "doubled");
  MatchFailure why;
  EXPECT_FALSE(evaluateShapeTerms(doubled, rankFromShape, &why).has_value());
  EXPECT_NE(why.reason.find("Add"), std::string::npos) << why.reason;
}

TEST_F(ShapeTermsTest, ShapeNeedsRank) {
  ir::Value* unknown = graph_.getOrCreateValue("unknown");
  graph_.addInput(unknown);
  ir::Value* shape = node("Shape", {unknown}, "shape");
  MatchFailure why;
  EXPECT_FALSE(evaluateShapeTerms(shape, rankFromShape, &why).has_value());
  EXPECT_NE(why.reason.find("whose rank is not known"), std::string::npos) << why.reason;
}

// Dim tracing: y = Reshape(MatMul(Reshape(x, [-1, 8]), W), [Shape(x)[0], Shape(x)[1], 16])
// keeps x's batch and sequence dims although y has no inferred shape.
TEST_F(ShapeTermsTest, ProvenanceFollowsTensordot) {
  ir::Value* weight =
      graph_.addInitializer("w", ir::Tensor::create<float>({8, 16}, std::vector<float>(128, 0.5f)));
  ir::Value* flat = node("Reshape", {x_, ints("flat_shape", {-1, 8})}, "flat");
  ir::Value* product = node("MatMul", {flat, weight}, "product");
  ir::Value* shape = node("Shape", {x_}, "x_shape");
  ir::Value* leading = node("Gather", {shape, ints("leading_axes", {0, 1})}, "leading");
  ir::Node* concat =
      graph_.createNode("Concat", "", {leading, ints("width", {16})}, {"unflat_shape"});
  concat->setIntAttribute("axis", 0);
  ir::Value* y = node("Reshape", {product, concat->output()}, "y");
  ir::Value* bias =
      graph_.addInitializer("bias", ir::Tensor::create<float>({16}, std::vector<float>(16, 1.0f)));
  ir::Value* biased = node("Add", {y, bias}, "biased");

  DimProvenance provenance;
  EXPECT_EQ(provenance.rank(biased), 3);
  auto batch = provenance.origin(biased, 0);
  auto sequence = provenance.origin(biased, 1);
  auto width = provenance.origin(biased, 2);
  ASSERT_TRUE(batch.has_value());
  ASSERT_TRUE(sequence.has_value());
  ASSERT_TRUE(width.has_value());
  EXPECT_EQ(batch->symbol, "B");
  EXPECT_EQ(sequence->symbol, "S");
  EXPECT_EQ(width->size, 16);
  // The flattened rows are not a dim of x.
  auto rows = provenance.origin(flat, 0);
  ASSERT_TRUE(rows.has_value());
  EXPECT_FALSE(*rows == *provenance.origin(x_, 0));
}

TEST_F(ShapeTermsTest, ProvenanceNeedsAgreeingInputs) {
  ir::Value* other = graph_.getOrCreateValue("other");
  other->setTensorType(
      ir::DataType::kFloat,
      std::vector<ir::Dim>{ir::Dim::symbolic("B"), ir::Dim::symbolic("T"), ir::Dim::known(8)});
  graph_.addInput(other);
  ir::Value* sum = node("Add", {x_, other}, "sum");
  DimProvenance provenance;
  auto batch = provenance.origin(sum, 0);
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(batch->symbol, "B");
  // S against T: the output dim could be either, so it has no origin of its own.
  auto sequence = provenance.origin(sum, 1);
  ASSERT_TRUE(sequence.has_value());
  EXPECT_NE(sequence->symbol, "S");
  EXPECT_NE(sequence->symbol, "T");
}

}  // namespace
}  // namespace roformer::passes
