#include "passes/PassManager.h"

#include <gtest/gtest.h>

#include <sstream>

namespace roformer::passes {
namespace {

TEST(Pipeline, ParsesNamesOptionsAndFixpoint) {
  auto pipeline = parsePipeline("topo-sort, fixpoint(dce,topo-sort),dce");
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  EXPECT_EQ(pipelineToString(*pipeline), "topo-sort,fixpoint(dce,topo-sort),dce");
  ASSERT_EQ(pipeline->size(), 3u);
  EXPECT_TRUE((*pipeline)[1].isFixpoint());
  EXPECT_EQ((*pipeline)[1].fixpoint.size(), 2u);
}

TEST(Pipeline, EmptyTextIsEmptyPipeline) {
  auto pipeline = parsePipeline("  ");
  ASSERT_TRUE(pipeline.ok());
  EXPECT_TRUE(pipeline->empty());
}

TEST(Pipeline, RejectsUnknownPassAndBadSyntax) {
  auto unknown = parsePipeline("dce,nope");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown pass 'nope'"), std::string::npos);

  auto unclosed = parsePipeline("fixpoint(dce");
  ASSERT_FALSE(unclosed.ok());
  EXPECT_NE(unclosed.status().message().find("column 13"), std::string::npos)
      << unclosed.status();

  auto option = parsePipeline("dce(x=1)");
  ASSERT_FALSE(option.ok());
  EXPECT_NE(option.status().message().find("has no option 'x'"), std::string::npos);
}

// x -> Neg -> a -> Abs -> y, with the Abs listed first.
std::unique_ptr<ir::Model> unsortedModel() {
  auto model = std::make_unique<ir::Model>();
  model->setOpsetVersion("", 13);
  model->header().set_ir_version(8);
  ir::Graph& graph = model->graph();
  ir::Value* x = graph.getOrCreateValue("x");
  x->setTensorType(ir::DataType::kFloat, std::vector<int64_t>{2});
  graph.addInput(x);
  ir::Node* neg = graph.createNode("Neg", "", {x}, {"a"});
  ir::Node* abs = graph.createNode("Abs", "", {neg->output()}, {"y"});
  abs->output()->setTensorType(ir::DataType::kFloat, std::vector<int64_t>{2});
  graph.addOutput(abs->output());
  graph.moveBefore(abs, neg);
  return model;
}

TEST(PassManager, TopoSortMovesAndCounts) {
  auto model = unsortedModel();
  auto pipeline = parsePipeline("topo-sort");
  ASSERT_TRUE(pipeline.ok());
  PassManager manager(PassManagerOptions{});
  manager.setPipeline(*std::move(pipeline));
  ASSERT_TRUE(manager.run(*model).ok());
  EXPECT_EQ(model->graph().nodes().front()->opType(), "Neg");
  EXPECT_EQ(manager.statistics().at("topo-sort").at("nodes moved"), 2);
}

TEST(PassManager, VerifyEachCatchesInvalidIr) {
  auto model = unsortedModel();
  auto pipeline = parsePipeline("dce");
  ASSERT_TRUE(pipeline.ok());
  PassManagerOptions options;
  options.verifyEach = true;
  PassManager manager(options);
  manager.setPipeline(*std::move(pipeline));
  // dce keeps the (unsorted) nodes, so the verifier reports the order.
  absl::Status status = manager.run(*model);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("after pass 'dce'"), std::string::npos) << status;
  EXPECT_NE(status.message().find("topological order"), std::string::npos) << status;
}

TEST(PassManager, GlobalOptionReachesOnlyPassesDeclaringIt) {
  auto pipeline = parsePipeline("dce,topo-sort");
  ASSERT_TRUE(pipeline.ok());
  PassManager manager(PassManagerOptions{});
  manager.setPipeline(*std::move(pipeline));
  auto taken = manager.setGlobalOption("input-shape", "x=1");
  ASSERT_TRUE(taken.ok());
  EXPECT_EQ(*taken, 0);
}

}  // namespace
}  // namespace roformer::passes
