#include "ir/Graph.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace roformer::ir {
namespace {

// x -> Relu -> a -> Neg -> b (graph output)
struct Chain {
  Graph graph;
  Value* x;
  Node* relu;
  Node* neg;
  Chain() {
    x = graph.getOrCreateValue("x");
    x->setTensorType(DataType::kFloat, std::vector<int64_t>{2});
    graph.addInput(x);
    relu = graph.createNode("Relu", "", {x}, {"a"});
    neg = graph.createNode("Neg", "", {relu->output()}, {"b"});
    graph.addOutput(neg->output());
  }
};

TEST(Graph, UseListsFollowInputs) {
  Chain chain;
  ASSERT_EQ(chain.x->uses().size(), 1u);
  EXPECT_EQ(chain.x->uses()[0].user, chain.relu);
  EXPECT_EQ(chain.x->uses()[0].inputIndex, 0);
  EXPECT_EQ(chain.relu->output()->singleUser(), chain.neg);
  EXPECT_TRUE(chain.neg->output()->isGraphOutput());
  EXPECT_EQ(chain.neg->output()->singleUser(), nullptr);

  chain.neg->setInput(0, chain.x);
  EXPECT_EQ(chain.x->uses().size(), 2u);
  EXPECT_TRUE(chain.relu->output()->uses().empty());
}

TEST(Graph, ReplaceAllUsesMovesEveryUse) {
  Chain chain;
  Node* second = chain.graph.createNode("Abs", "", {chain.relu->output()}, {"c"});
  chain.graph.addOutput(second->output());
  Value* replacement = chain.graph.createNode("Sigmoid", "", {chain.x}, {"s"})->output();

  chain.graph.replaceAllUsesWith(chain.relu->output(), replacement);
  EXPECT_FALSE(chain.relu->output()->hasUses());
  EXPECT_EQ(replacement->uses().size(), 2u);
  EXPECT_EQ(chain.neg->input(0), replacement);
  EXPECT_EQ(second->input(0), replacement);
}

TEST(Graph, ReplaceAllUsesKeepsGraphOutputName) {
  Chain chain;
  Value* oldOutput = chain.neg->output();
  Node* abs = chain.graph.createNode("Abs", "", {chain.x}, {"c"});
  chain.graph.replaceAllUsesWith(oldOutput, abs->output());
  ASSERT_EQ(chain.graph.outputs().size(), 1u);
  EXPECT_EQ(chain.graph.outputs()[0], abs->output());
  EXPECT_EQ(abs->output()->name(), "b");
  EXPECT_NE(oldOutput->name(), "b");
  EXPECT_EQ(chain.graph.findValue("b"), abs->output());
}

TEST(Graph, EraseRejectsUsedNode) {
  Chain chain;
  absl::Status status = chain.graph.eraseNode(chain.relu);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("'a'"), std::string::npos) << status.message();
  EXPECT_EQ(chain.graph.nodeCount(), 2u);
}

TEST(Graph, EraseRemovesUses) {
  Chain chain;
  chain.graph.setOutput(0, chain.x);
  ASSERT_TRUE(chain.graph.eraseNode(chain.neg).ok());
  EXPECT_FALSE(chain.relu->output()->hasUses());
  ASSERT_TRUE(chain.graph.eraseNode(chain.relu).ok());
  EXPECT_EQ(chain.graph.nodeCount(), 0u);
  // x is still a graph output, so only its node use is gone.
  EXPECT_TRUE(chain.x->uses().empty());
  EXPECT_EQ(chain.graph.pruneUnusedValues(), 2u);
}

TEST(Graph, TopoSortOrdersAndKeepsValidOrder) {
  Chain chain;
  chain.graph.moveBefore(chain.neg, chain.relu);
  ASSERT_TRUE(chain.graph.topoSort().ok());
  std::vector<std::string> order;
  for (const auto& node : chain.graph.nodes()) order.push_back(node->opType());
  EXPECT_EQ(order, (std::vector<std::string>{"Relu", "Neg"}));

  // Independent nodes keep their relative order.
  Node* first = chain.graph.createNode("Abs", "", {chain.x}, {"p"});
  Node* second = chain.graph.createNode("Abs", "", {chain.x}, {"q"});
  ASSERT_TRUE(chain.graph.topoSort().ok());
  auto position = [&](Node* node) {
    int i = 0;
    for (const auto& n : chain.graph.nodes()) {
      if (n.get() == node) return i;
      ++i;
    }
    return -1;
  };
  EXPECT_LT(position(first), position(second));
}

TEST(Graph, TopoSortReportsCycle) {
  Graph graph;
  Value* x = graph.getOrCreateValue("x");
  graph.addInput(x);
  Node* add = graph.createNode("Add", "", {x, nullptr}, {"a"});
  Node* neg = graph.createNode("Neg", "", {add->output()}, {"b"});
  add->setInput(1, neg->output());
  absl::Status status = graph.topoSort();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("cycle"), std::string::npos) << status.message();
}

TEST(Graph, RenameRejectsCollisionAndImplicitUse) {
  Chain chain;
  EXPECT_EQ(chain.graph.renameValue(chain.x, "a").code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(chain.graph.renameValue(chain.x, "input_token0").ok());
  EXPECT_EQ(chain.graph.findValue("input_token0"), chain.x);
  EXPECT_EQ(chain.graph.findValue("x"), nullptr);

  Node* loop = chain.graph.createNode("If", "", {chain.x}, {"o"});
  loop->setImplicitInputs({chain.relu->output()});
  EXPECT_EQ(chain.graph.renameValue(chain.relu->output(), "renamed").code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(Graph, UniqueNamesAvoidExisting) {
  Chain chain;
  EXPECT_EQ(chain.graph.uniqueValueName("a"), "a_1");
  EXPECT_EQ(chain.graph.uniqueValueName("fresh"), "fresh");
  Value* created = chain.graph.createValue("a");
  EXPECT_EQ(created->name(), "a_1");
}

TEST(Graph, ConstantOfReadsInitializersAndConstantNodes) {
  Graph graph;
  Value* weights = graph.addInitializer("w", Tensor::create<float>({2}, {1.0f, 2.0f}));
  ASSERT_NE(constantOf(weights), nullptr);
  EXPECT_EQ(constantOf(weights)->values<float>()[1], 2.0f);

  Node* constant = graph.createNode("Constant", "", {}, {"c"});
  constant->setIntsAttribute("value_ints", {3, 4, 5});
  auto tensor = constantOf(constant->output());
  ASSERT_NE(tensor, nullptr);
  EXPECT_EQ(tensor->dataType(), DataType::kInt64);
  EXPECT_EQ(tensor->dims(), std::vector<int64_t>{3});
  EXPECT_EQ(tensor->toInt64Vector(), (std::vector<int64_t>{3, 4, 5}));

  Value* input = graph.getOrCreateValue("x");
  graph.addInput(input);
  EXPECT_EQ(constantOf(input), nullptr);
}

TEST(Graph, AttributeAccessorsCheckTypes) {
  Graph graph;
  Node* node = graph.createNode("Transpose", "", {}, {"t"}, nullptr, "perm_node");
  node->setIntsAttribute("perm", {0, 2, 1});
  EXPECT_EQ(*node->intsAttribute("perm", {}), (std::vector<int64_t>{0, 2, 1}));
  EXPECT_EQ(*node->intAttribute("missing", 7), 7);
  auto wrong = node->intAttribute("perm", 0);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("perm_node"), std::string::npos);
}

}  // namespace
}  // namespace roformer::ir
