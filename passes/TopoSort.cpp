// topo-sort: orders the node list so every node follows the producers of its
// inputs, keeping the existing order wherever it is already valid. Fails on a
// cycle, naming a node on it.
#include "passes/Passes.h"

namespace roformer::passes {
namespace {

class TopoSortPass final : public Pass {
 public:
  std::string_view name() const override { return "topo-sort"; }
  std::string_view summary() const override {
    return "Sort nodes topologically, keeping the current order where valid";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    ir::Graph& graph = model.graph();
    std::vector<const ir::Node*> before;
    for (const auto& node : graph.nodes()) before.push_back(node.get());
    if (auto status = graph.topoSort(); !status.ok()) return status;
    size_t index = 0;
    int64_t moved = 0;
    for (const auto& node : graph.nodes()) {
      if (node.get() != before[index++]) ++moved;
    }
    if (moved > 0) context.count("nodes moved", moved);
    return moved > 0;
  }
};

}  // namespace

std::unique_ptr<Pass> createTopoSortPass() { return std::make_unique<TopoSortPass>(); }

}  // namespace roformer::passes
