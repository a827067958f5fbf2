#include "passes/OpsetUpgrade.h"

#include <gtest/gtest.h>

#include <vector>

namespace roformer::passes {
namespace {

// y = Unsqueeze(Mul(Add(x, weights), small), axes = [0]) at opset 11. The
// weights are large enough to travel to the converter without their data.
std::unique_ptr<ir::Model> opset11Model(bool weightsAreInput) {
  auto model = std::make_unique<ir::Model>();
  model->setOpsetVersion("", 11);
  model->header().set_ir_version(6);
  ir::Graph& graph = model->graph();
  ir::Value* x = graph.getOrCreateValue("x");
  x->setTensorType(ir::DataType::kFloat, std::vector<int64_t>{2, 128});
  graph.addInput(x);
  std::vector<float> values(128);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  ir::Value* weights = graph.addInitializer("weights", ir::Tensor::create<float>({128}, values));
  if (weightsAreInput) graph.addInput(weights);
  ir::Value* small = graph.addInitializer("small", ir::Tensor::scalar<float>(2.0f));
  ir::Node* add = graph.createNode("Add", "", {x, weights}, {"sum"});
  ir::Node* mul = graph.createNode("Mul", "", {add->output(), small}, {"scaled"});
  ir::Node* unsqueeze = graph.createNode("Unsqueeze", "", {mul->output()}, {"y"});
  unsqueeze->setIntsAttribute("axes", {0});
  unsqueeze->output()->setTensorType(ir::DataType::kFloat, std::vector<int64_t>{1, 2, 128});
  graph.addOutput(unsqueeze->output());
  return model;
}

TEST(OpsetUpgrade, ConvertsAndKeepsWeights) {
  auto model = opset11Model(false);
  const void* weightBytes = model->graph().findValue("weights")->initializer()->rawData();

  absl::Status status = upgradeOnnxOpset(*model, 17);
  ASSERT_TRUE(status.ok()) << status;

  EXPECT_EQ(model->opsetVersion(""), 17);
  EXPECT_EQ(model->header().ir_version(), 8);
  ir::Graph& graph = model->graph();
  ASSERT_EQ(graph.inputs().size(), 1u);
  EXPECT_EQ(graph.inputs()[0]->name(), "x");

  ir::Value* weights = graph.findValue("weights");
  ASSERT_NE(weights, nullptr);
  ASSERT_TRUE(weights->isInitializer());
  EXPECT_FALSE(weights->isGraphInput());
  EXPECT_EQ(weights->initializer()->rawData(), weightBytes);
  ir::Value* small = graph.findValue("small");
  ASSERT_NE(small, nullptr);
  ASSERT_TRUE(small->isInitializer());
  EXPECT_EQ(small->initializer()->values<float>()[0], 2.0f);

  // Unsqueeze takes its axes as an input from opset 13 on.
  ir::Node* unsqueeze = graph.outputs()[0]->producer();
  ASSERT_NE(unsqueeze, nullptr);
  EXPECT_TRUE(unsqueeze->is("Unsqueeze"));
  EXPECT_FALSE(unsqueeze->hasAttribute("axes"));
  ASSERT_EQ(unsqueeze->inputCount(), 2u);
  std::shared_ptr<ir::Tensor> axes = ir::constantOf(unsqueeze->input(1));
  ASSERT_NE(axes, nullptr);
  EXPECT_EQ(axes->toInt64Vector(), std::vector<int64_t>{0});
}

TEST(OpsetUpgrade, KeepsInitializerThatIsInput) {
  auto model = opset11Model(true);
  absl::Status status = upgradeOnnxOpset(*model, 17);
  ASSERT_TRUE(status.ok()) << status;

  ir::Graph& graph = model->graph();
  ASSERT_EQ(graph.inputs().size(), 2u);
  ir::Value* weights = graph.findValue("weights");
  ASSERT_NE(weights, nullptr);
  EXPECT_TRUE(weights->isGraphInput());
  ASSERT_TRUE(weights->isInitializer());
  EXPECT_EQ(weights->initializer()->values<float>()[127], 127.0f);
  EXPECT_EQ(graph.initializers().size(), 2u);
}

TEST(OpsetUpgrade, NothingToDoAtTarget) {
  auto model = opset11Model(false);
  model->setOpsetVersion("", 17);
  size_t nodes = model->graph().nodeCount();
  ASSERT_TRUE(upgradeOnnxOpset(*model, 17).ok());
  EXPECT_EQ(model->graph().nodeCount(), nodes);
  EXPECT_EQ(model->header().ir_version(), 6);
}

TEST(OpsetUpgrade, RejectsContribNodes) {
  auto model = opset11Model(false);
  ir::Graph& graph = model->graph();
  ir::Node* gelu = graph.createNode("Gelu", "com.microsoft", {graph.findValue("x")}, {"g"},
                                    nullptr, "gelu");
  graph.addOutput(gelu->output());

  absl::Status status = upgradeOnnxOpset(*model, 17);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("com.microsoft.Gelu 'gelu' is in domain 'com.microsoft'"),
            std::string::npos)
      << status;
  EXPECT_EQ(model->opsetVersion(""), 11);
}

}  // namespace
}  // namespace roformer::passes
