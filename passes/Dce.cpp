// dce: removes nodes whose outputs nothing uses, and initializers nothing
// reads.
//
// A node is dead when none of its outputs is used by another node, by a
// subgraph or as a graph output. Removing one can make its producers dead, so
// the pass walks the node list backwards once, which removes whole dead
// chains in a single run. Graph inputs are never removed: they are the
// model's interface.
#include "passes/Passes.h"

namespace roformer::passes {
namespace {

class DcePass final : public Pass {
 public:
  std::string_view name() const override { return "dce"; }
  std::string_view summary() const override {
    return "Remove nodes whose outputs are unused and initializers nothing reads";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    ir::Graph& graph = model.graph();
    bool changed = false;

    std::vector<ir::Node*> reversed;
    for (const auto& node : graph.nodes()) reversed.push_back(node.get());
    for (auto it = reversed.rbegin(); it != reversed.rend(); ++it) {
      ir::Node* node = *it;
      bool used = false;
      for (const ir::Value* output : node->outputs()) {
        if (output != nullptr && output->hasUses()) used = true;
      }
      if (used) continue;
      if (auto status = graph.eraseNode(node); !status.ok()) return status;
      context.count("nodes removed");
      changed = true;
    }

    std::vector<ir::Value*> initializers = graph.initializers();
    for (ir::Value* value : initializers) {
      if (value->hasUses() || value->isGraphInput()) continue;
      graph.removeInitializer(value);
      context.count("initializers removed");
      changed = true;
    }
    graph.pruneUnusedValues();
    return changed;
  }
};

}  // namespace

std::unique_ptr<Pass> createDcePass() { return std::make_unique<DcePass>(); }

}  // namespace roformer::passes
