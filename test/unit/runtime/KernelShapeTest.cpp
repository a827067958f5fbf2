// Tests of the CPU kernels that reshape, select and move elements, and of
// the reductions.
#include <numeric>

#include "ir/Tensor.h"
#include "onnx/onnx_pb.h"
#include "test/unit/runtime/KernelTestHelpers.h"

namespace roformer::runtime::testing {
namespace {

std::vector<float> iota(size_t count) {
  std::vector<float> values(count);
  std::iota(values.begin(), values.end(), 0.0f);
  return values;
}

// ---- Reshape and friends ----

TEST(KernelShape, ReshapeCopiesZeroAndInfersMinusOne) {
  OneNodeGraph g("Reshape", 2, 1);
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<float>({2, 3, 4}, iota(24)),
                              makeTensor<int64_t>({3}, {0, -1, 2})});
  EXPECT_EQ(out.shape(), (Shape{2, 6, 2}));
  EXPECT_EQ(valuesOf<float>(out), iota(24));
}

TEST(KernelShape, ReshapeAllowZeroKeepsZeroDims) {
  OneNodeGraph g("Reshape", 2, 1);
  g.node().setIntAttribute("allowzero", 1);
  HostTensor out = runSingle(g.node(), 14,
                             {makeTensor<float>({0, 3}, {}), makeTensor<int64_t>({2}, {3, 0})});
  EXPECT_EQ(out.shape(), (Shape{3, 0}));
  // Without allowzero the 0 copies the input dim instead.
  OneNodeGraph copy("Reshape", 2, 1);
  HostTensor copied = runSingle(copy.node(), 14,
                                {makeTensor<float>({2, 3}, iota(6)), makeTensor<int64_t>({2}, {0, 3})});
  EXPECT_EQ(copied.shape(), (Shape{2, 3}));
}

TEST(KernelShape, ReshapeRejectsWrongCount) {
  OneNodeGraph g("Reshape", 2, 1);
  auto result = runKernel(g.node(), 13,
                          {makeTensor<float>({2, 3}, iota(6)), makeTensor<int64_t>({1}, {5})});
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("cannot reshape [2, 3]"), std::string::npos)
      << result.status();
  auto twoInferred = runKernel(g.node(), 13,
                               {makeTensor<float>({2, 3}, iota(6)), makeTensor<int64_t>({2}, {-1, -1})});
  EXPECT_FALSE(twoInferred.ok());
}

TEST(KernelShape, SqueezeAxesAttributeBeforeOpset13) {
  OneNodeGraph g("Squeeze", 1, 1);
  g.node().setIntsAttribute("axes", {-1});
  HostTensor out = runSingle(g.node(), 11, {makeTensor<float>({1, 3, 1}, {1, 2, 3})});
  EXPECT_EQ(out.shape(), (Shape{1, 3}));
}

TEST(KernelShape, SqueezeAxesInputFromOpset13) {
  OneNodeGraph g("Squeeze", 2, 1);
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<float>({1, 3, 1}, {1, 2, 3}), makeTensor<int64_t>({1}, {0})});
  EXPECT_EQ(out.shape(), (Shape{3, 1}));
  OneNodeGraph all("Squeeze", 1, 1);
  EXPECT_EQ(runSingle(all.node(), 13, {makeTensor<float>({1, 3, 1}, {1, 2, 3})}).shape(),
            (Shape{3}));
  auto notOne = runKernel(g.node(), 13,
                          {makeTensor<float>({1, 3, 1}, {1, 2, 3}), makeTensor<int64_t>({1}, {1})});
  EXPECT_FALSE(notOne.ok());
}

TEST(KernelShape, UnsqueezeAttributeAndInput) {
  OneNodeGraph old("Unsqueeze", 1, 1);
  old.node().setIntsAttribute("axes", {0, -1});
  EXPECT_EQ(runSingle(old.node(), 11, {makeTensor<float>({3}, {1, 2, 3})}).shape(),
            (Shape{1, 3, 1}));
  OneNodeGraph current("Unsqueeze", 2, 1);
  EXPECT_EQ(runSingle(current.node(), 13,
                      {makeTensor<float>({2, 3}, iota(6)), makeTensor<int64_t>({2}, {1, 3})})
                .shape(),
            (Shape{2, 1, 3, 1}));
  auto duplicate = runKernel(current.node(), 13,
                             {makeTensor<float>({3}, iota(3)), makeTensor<int64_t>({2}, {0, -3})});
  EXPECT_FALSE(duplicate.ok());
}

TEST(KernelShape, FlattenAndIdentity) {
  OneNodeGraph g("Flatten", 1, 1);
  g.node().setIntAttribute("axis", 2);
  EXPECT_EQ(runSingle(g.node(), 13, {makeTensor<float>({2, 3, 4}, iota(24))}).shape(),
            (Shape{6, 4}));
  OneNodeGraph identity("Identity", 1, 1);
  HostTensor out = runSingle(identity.node(), 16, {makeTensor<int64_t>({2}, {4, 5})});
  EXPECT_EQ(valuesOf<int64_t>(out), (std::vector<int64_t>{4, 5}));
}

TEST(KernelShape, ShapeWithStartAndEnd) {
  OneNodeGraph plain("Shape", 1, 1);
  EXPECT_EQ(valuesOf<int64_t>(runSingle(plain.node(), 13, {makeTensor<float>({2, 3, 4}, iota(24))})),
            (std::vector<int64_t>{2, 3, 4}));
  OneNodeGraph ranged("Shape", 1, 1);
  ranged.node().setIntAttribute("start", -2);
  ranged.node().setIntAttribute("end", 10);
  EXPECT_EQ(valuesOf<int64_t>(runSingle(ranged.node(), 15, {makeTensor<float>({2, 3, 4}, iota(24))})),
            (std::vector<int64_t>{3, 4}));
  OneNodeGraph size("Size", 1, 1);
  HostTensor count = runSingle(size.node(), 13, {makeTensor<float>({2, 3, 4}, iota(24))});
  EXPECT_EQ(count.shape(), Shape{});
  EXPECT_EQ(valuesOf<int64_t>(count), (std::vector<int64_t>{24}));
}

TEST(KernelShape, ConstantOfShapeWithValue) {
  OneNodeGraph g("ConstantOfShape", 1, 1);
  onnx::AttributeProto value;
  value.set_name("value");
  value.set_type(onnx::AttributeProto::TENSOR);
  value.mutable_t()->set_data_type(onnx::TensorProto::INT64);
  value.mutable_t()->add_dims(1);
  value.mutable_t()->add_int64_data(7);
  g.node().setAttribute(value);
  HostTensor out = runSingle(g.node(), 13, {makeTensor<int64_t>({2}, {2, 2})});
  EXPECT_EQ(valuesOf<int64_t>(out), (std::vector<int64_t>{7, 7, 7, 7}));

  OneNodeGraph zeros("ConstantOfShape", 1, 1);
  HostTensor defaults = runSingle(zeros.node(), 13, {makeTensor<int64_t>({1}, {3})});
  EXPECT_EQ(valuesOf<float>(defaults), (std::vector<float>{0, 0, 0}));
}

TEST(KernelShape, RangeFloatAndInt) {
  OneNodeGraph g("Range", 3, 1);
  EXPECT_EQ(valuesOf<int64_t>(runSingle(g.node(), 11,
                                        {makeTensor<int64_t>({}, {10}), makeTensor<int64_t>({}, {4}),
                                         makeTensor<int64_t>({}, {-3})})),
            (std::vector<int64_t>{10, 7}));
  EXPECT_EQ(valuesOf<float>(runSingle(g.node(), 11,
                                      {makeTensor<float>({}, {0}), makeTensor<float>({}, {1}),
                                       makeTensor<float>({}, {0.25f})})),
            (std::vector<float>{0, 0.25f, 0.5f, 0.75f}));
  auto zeroDelta = runKernel(g.node(), 11,
                             {makeTensor<int64_t>({}, {0}), makeTensor<int64_t>({}, {4}),
                              makeTensor<int64_t>({}, {0})});
  EXPECT_FALSE(zeroDelta.ok());
}

TEST(KernelShape, DropoutInferencePassesThrough) {
  OneNodeGraph g("Dropout", 3, 2);
  HostTensor ratio = makeTensor<float>({}, {0.5f});
  HostTensor training(DataType::kBool, {});
  training.data<bool>()[0] = false;
  auto outputs = runKernel(g.node(), 13, {makeTensor<float>({3}, {1, 2, 3}), ratio, training});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  EXPECT_EQ(valuesOf<float>((*outputs)[0]), (std::vector<float>{1, 2, 3}));
  EXPECT_TRUE((*outputs)[1].data<bool>()[2]);

  training.data<bool>()[0] = true;
  auto trainingMode = runKernel(g.node(), 13, {makeTensor<float>({3}, {1, 2, 3}), ratio, training});
  ASSERT_FALSE(trainingMode.ok());
  EXPECT_EQ(trainingMode.status().code(), absl::StatusCode::kUnimplemented);
}

// ---- Gather, Concat, Slice, Split, Transpose, Expand, Tile ----

TEST(KernelMovement, GatherRowsWithNegativeIndex) {
  OneNodeGraph g("Gather", 2, 1);
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<float>({3, 2}, iota(6)), makeTensor<int64_t>({2, 2}, {2, 0, -1, 1})});
  EXPECT_EQ(out.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{4, 5, 0, 1, 4, 5, 2, 3}));
}

TEST(KernelMovement, GatherAlongAxisOneWithInt32) {
  OneNodeGraph g("Gather", 2, 1);
  g.node().setIntAttribute("axis", 1);
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<float>({2, 3}, iota(6)), makeTensor<int32_t>({}, {2})});
  EXPECT_EQ(out.shape(), (Shape{2}));
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{2, 5}));
}

TEST(KernelMovement, GatherRejectsOutOfRangeIndex) {
  OneNodeGraph g("Gather", 2, 1);
  std::vector<int64_t> ids(20, 1);
  ids[17] = 50123;
  auto result = runKernel(g.node(), 13,
                          {makeTensor<float>({50000, 1}, std::vector<float>(50000)),
                           makeTensor<int64_t>({20}, ids)});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().message(),
            "Gather 'node': index 50123 at position 17 is outside [-50000, 50000)");
  ids[17] = -50001;
  auto negative = runKernel(g.node(), 13,
                            {makeTensor<float>({50000, 1}, std::vector<float>(50000)),
                             makeTensor<int64_t>({20}, ids)});
  EXPECT_FALSE(negative.ok());
}

TEST(KernelMovement, ConcatWithEmptyInput) {
  OneNodeGraph g("Concat", 3, 1);
  g.node().setIntAttribute("axis", -1);
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<float>({2, 1}, {1, 2}), makeTensor<float>({2, 0}, {}),
                              makeTensor<float>({2, 2}, {3, 4, 5, 6})});
  EXPECT_EQ(out.shape(), (Shape{2, 3}));
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{1, 3, 4, 2, 5, 6}));
  auto mismatch = runKernel(g.node(), 13,
                            {makeTensor<float>({2, 1}, {1, 2}), makeTensor<float>({1, 1}, {0}),
                             makeTensor<float>({2, 2}, {3, 4, 5, 6})});
  EXPECT_FALSE(mismatch.ok());
}

TEST(KernelMovement, SliceClampsAndStepsBackwards) {
  OneNodeGraph g("Slice", 5, 1);
  // Axis 1 from the end backwards by 2; axis 0 with an end past the dim.
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<float>({3, 5}, iota(15)), makeTensor<int64_t>({2}, {1, -1}),
                              makeTensor<int64_t>({2}, {100, -100}), makeTensor<int64_t>({2}, {0, 1}),
                              makeTensor<int64_t>({2}, {1, -2})});
  EXPECT_EQ(out.shape(), (Shape{2, 3}));
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{9, 7, 5, 14, 12, 10}));
}

TEST(KernelMovement, SliceWithoutAxesAndSteps) {
  OneNodeGraph g("Slice", 3, 1);
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<float>({4}, iota(4)), makeTensor<int64_t>({1}, {-3}),
                              makeTensor<int64_t>({1}, {-1})});
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{1, 2}));
  HostTensor empty = runSingle(g.node(), 13,
                               {makeTensor<float>({4}, iota(4)), makeTensor<int64_t>({1}, {3}),
                                makeTensor<int64_t>({1}, {1})});
  EXPECT_EQ(empty.shape(), (Shape{0}));
}

TEST(KernelMovement, SliceAttributesBeforeOpset10) {
  OneNodeGraph g("Slice", 1, 1);
  g.node().setIntsAttribute("starts", {1});
  g.node().setIntsAttribute("ends", {3});
  g.node().setIntsAttribute("axes", {1});
  HostTensor out = runSingle(g.node(), 9, {makeTensor<float>({2, 4}, iota(8))});
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{1, 2, 5, 6}));
}

TEST(KernelMovement, SplitAttributeInputAndEqual) {
  OneNodeGraph old("Split", 1, 2);
  old.node().setIntAttribute("axis", 1);
  old.node().setIntsAttribute("split", {1, 3});
  auto parts = runKernel(old.node(), 11, {makeTensor<float>({2, 4}, iota(8))});
  ASSERT_TRUE(parts.ok()) << parts.status();
  EXPECT_EQ(valuesOf<float>((*parts)[0]), (std::vector<float>{0, 4}));
  EXPECT_EQ(valuesOf<float>((*parts)[1]), (std::vector<float>{1, 2, 3, 5, 6, 7}));

  OneNodeGraph current("Split", 2, 2);
  auto fromInput = runKernel(current.node(), 13,
                             {makeTensor<float>({4}, iota(4)), makeTensor<int64_t>({2}, {3, 1})});
  ASSERT_TRUE(fromInput.ok()) << fromInput.status();
  EXPECT_EQ(valuesOf<float>((*fromInput)[1]), (std::vector<float>{3}));

  OneNodeGraph equal("Split", 1, 3);
  auto thirds = runKernel(equal.node(), 13, {makeTensor<float>({6}, iota(6))});
  ASSERT_TRUE(thirds.ok());
  EXPECT_EQ(valuesOf<float>((*thirds)[2]), (std::vector<float>{4, 5}));
  auto uneven = runKernel(equal.node(), 13, {makeTensor<float>({7}, iota(7))});
  EXPECT_FALSE(uneven.ok());

  OneNodeGraph numOutputs("Split", 1, 3);
  numOutputs.node().setIntAttribute("num_outputs", 3);
  auto ragged = runKernel(numOutputs.node(), 18, {makeTensor<float>({7}, iota(7))});
  ASSERT_TRUE(ragged.ok()) << ragged.status();
  EXPECT_EQ((*ragged)[0].shape(), (Shape{3}));
  EXPECT_EQ((*ragged)[2].shape(), (Shape{1}));
}

TEST(KernelMovement, TransposeDefaultAndPerm) {
  OneNodeGraph reverse("Transpose", 1, 1);
  HostTensor out = runSingle(reverse.node(), 13, {makeTensor<float>({2, 3}, iota(6))});
  EXPECT_EQ(out.shape(), (Shape{3, 2}));
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{0, 3, 1, 4, 2, 5}));

  OneNodeGraph perm("Transpose", 1, 1);
  perm.node().setIntsAttribute("perm", {0, 2, 1, 3});
  HostTensor swapped = runSingle(perm.node(), 13, {makeTensor<float>({1, 2, 3, 2}, iota(12))});
  EXPECT_EQ(swapped.shape(), (Shape{1, 3, 2, 2}));
  EXPECT_EQ(valuesOf<float>(swapped), (std::vector<float>{0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11}));

  OneNodeGraph bad("Transpose", 1, 1);
  bad.node().setIntsAttribute("perm", {0, 0});
  EXPECT_FALSE(runKernel(bad.node(), 13, {makeTensor<float>({2, 3}, iota(6))}).ok());
}

TEST(KernelMovement, ExpandAndTile) {
  OneNodeGraph expand("Expand", 2, 1);
  HostTensor expanded = runSingle(expand.node(), 13,
                                  {makeTensor<float>({2, 1}, {1, 2}), makeTensor<int64_t>({3}, {2, 1, 3})});
  EXPECT_EQ(expanded.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(valuesOf<float>(expanded), (std::vector<float>{1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2}));

  OneNodeGraph tile("Tile", 2, 1);
  HostTensor tiled = runSingle(tile.node(), 13,
                               {makeTensor<float>({2, 2}, {1, 2, 3, 4}), makeTensor<int64_t>({2}, {2, 2})});
  EXPECT_EQ(tiled.shape(), (Shape{4, 4}));
  EXPECT_EQ(valuesOf<float>(tiled),
            (std::vector<float>{1, 2, 1, 2, 3, 4, 3, 4, 1, 2, 1, 2, 3, 4, 3, 4}));
}

// ---- Reductions ----

TEST(KernelReduce, ReduceMeanAxesAttributeUntilOpset17) {
  OneNodeGraph g("ReduceMean", 1, 1);
  g.node().setIntsAttribute("axes", {-1});
  HostTensor out = runSingle(g.node(), 17, {makeTensor<float>({2, 3}, {1, 2, 3, 4, 5, 6})});
  EXPECT_EQ(out.shape(), (Shape{2, 1}));
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{2, 5}));

  OneNodeGraph input("ReduceMean", 2, 1);
  input.node().setIntAttribute("keepdims", 0);
  HostTensor fromInput = runSingle(input.node(), 18,
                                   {makeTensor<float>({2, 3}, {1, 2, 3, 4, 5, 6}),
                                    makeTensor<int64_t>({1}, {0})});
  EXPECT_EQ(fromInput.shape(), (Shape{3}));
  EXPECT_EQ(valuesOf<float>(fromInput), (std::vector<float>{2.5f, 3.5f, 4.5f}));
}

TEST(KernelReduce, ReduceSumAxesInputFromOpset13) {
  OneNodeGraph old("ReduceSum", 1, 1);
  old.node().setIntsAttribute("axes", {0, 2});
  old.node().setIntAttribute("keepdims", 0);
  HostTensor out = runSingle(old.node(), 12, {makeTensor<float>({2, 2, 2}, iota(8))});
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{0 + 1 + 4 + 5, 2 + 3 + 6 + 7}));

  OneNodeGraph current("ReduceSum", 2, 1);
  HostTensor all = runSingle(current.node(), 13,
                             {makeTensor<float>({2, 2}, {1, 2, 3, 4}), makeTensor<int64_t>({0}, {})});
  EXPECT_EQ(all.shape(), (Shape{1, 1}));
  EXPECT_EQ(valuesOf<float>(all), (std::vector<float>{10}));

  OneNodeGraph noop("ReduceSum", 2, 1);
  noop.node().setIntAttribute("noop_with_empty_axes", 1);
  HostTensor same = runSingle(noop.node(), 13,
                              {makeTensor<float>({2, 2}, {1, 2, 3, 4}), makeTensor<int64_t>({0}, {})});
  EXPECT_EQ(same.shape(), (Shape{2, 2}));
  EXPECT_EQ(valuesOf<float>(same), (std::vector<float>{1, 2, 3, 4}));
}

TEST(KernelReduce, ProdMaxMinAndEmptyAxis) {
  OneNodeGraph prod("ReduceProd", 1, 1);
  prod.node().setIntsAttribute("axes", {1});
  EXPECT_EQ(valuesOf<float>(runSingle(prod.node(), 13, {makeTensor<float>({2, 2}, {1, 2, 3, 4})})),
            (std::vector<float>{2, 12}));
  OneNodeGraph max("ReduceMax", 1, 1);
  max.node().setIntsAttribute("axes", {0});
  EXPECT_EQ(valuesOf<int64_t>(runSingle(max.node(), 13, {makeTensor<int64_t>({2, 2}, {1, 7, 3, 4})})),
            (std::vector<int64_t>{3, 7}));
  OneNodeGraph min("ReduceMin", 1, 1);
  EXPECT_EQ(valuesOf<float>(runSingle(min.node(), 13, {makeTensor<float>({3}, {5, -1, 2})})),
            (std::vector<float>{-1}));
  OneNodeGraph sumEmpty("ReduceSum", 1, 1);
  sumEmpty.node().setIntsAttribute("axes", {1});
  HostTensor zeros = runSingle(sumEmpty.node(), 12, {makeTensor<float>({2, 0}, {})});
  EXPECT_EQ(valuesOf<float>(zeros), (std::vector<float>{0, 0}));
}

TEST(KernelReduce, MixedAxesUseGeneralPath) {
  // Reduce axes 0 and 2 of [2, 3, 2] (not one contiguous block) and compare
  // with a direct sum.
  std::vector<float> x = iota(12);
  OneNodeGraph g("ReduceSum", 1, 1);
  g.node().setIntsAttribute("axes", {0, 2});
  std::vector<float> out = valuesOf<float>(runSingle(g.node(), 12, {makeTensor<float>({2, 3, 2}, x)}));
  ASSERT_EQ(out.size(), 3u);
  for (int j = 0; j < 3; ++j) {
    float expected = 0;
    for (int i = 0; i < 2; ++i) {
      for (int k = 0; k < 2; ++k) expected += x[(i * 3 + j) * 2 + k];
    }
    EXPECT_EQ(out[j], expected) << j;
  }
}

TEST(KernelReduce, RejectsAxisOutOfRange) {
  OneNodeGraph g("ReduceMean", 1, 1);
  g.node().setIntsAttribute("axes", {2});
  auto result = runKernel(g.node(), 13, {makeTensor<float>({2, 2}, {1, 2, 3, 4})});
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("ReduceMean 'node'"), std::string::npos);
}

}  // namespace
}  // namespace roformer::runtime::testing
