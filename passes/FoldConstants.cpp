// fold-constants: evaluates nodes whose inputs are all constant and replaces
// their outputs with initializers.
//
// Steps, each counted:
//   1. Constant nodes become initializers of the same name.
//   2. Every other node whose inputs are all initializers (omitted optional
//      inputs allowed) is evaluated with the runtime's CPU kernels through
//      runtime/Evaluator.h, so each op has one implementation. Nodes are
//      visited in topological order, so whole constant chains fold in one run.
//   3. Initializers nothing reads are removed.
//   4. Initializers with equal type, dims and bytes are merged into the first
//      one (content hash, then a byte comparison).
//
// Never folded:
//   - nodes with subgraphs (If, Loop, Scan), whose outer reads are not plain
//     inputs;
//   - non-deterministic ops (RandomNormal, RandomUniform, their *Like forms,
//     Multinomial, Bernoulli): folding would freeze one random draw;
//   - ops the evaluator has no kernel for, and nodes whose evaluation fails
//     (the runtime then reports the error on real inputs);
//   - folds over the size guard. A fold may add at most
//     max(max-growth x freed bytes, max-bytes) bytes of outputs, where freed
//     bytes are those of its constant inputs that nothing else reads (they
//     are removed with it). So expanding a shared weight (Tile, Expand,
//     a Transpose of a weight used elsewhere) stays a node, while chains of
//     small constants, like the rotary sin/cos tables, fold completely.
//
// Graph inputs that have an initializer (overridable defaults) are not
// constants here, and graph outputs keep their names.
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "passes/Passes.h"
#include "passes/RewriteHelpers.h"
#include "runtime/Evaluator.h"

namespace roformer::passes {
namespace {

// Outputs of at most this many bytes may always be folded: they bound the
// growth of one fold to 1 MiB, and cover the rotary tables of a sequence of
// up to 2048 positions at head size 64 (2048 x 64 x 4 bytes = 512 KiB each).
constexpr int64_t kDefaultMaxBytes = int64_t{1} << 20;

bool isNonDeterministic(const ir::Node& node) {
  static const std::unordered_set<std::string> kRandomOps = {
      "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
      "Multinomial",  "Bernoulli"};
  return node.domain().empty() && kRandomOps.count(node.opType()) > 0;
}

std::string formatBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  if (bytes < (int64_t{1} << 20)) return absl::StrFormat("%.1f KiB", bytes / 1024.0);
  return absl::StrFormat("%.1f MiB", bytes / 1048576.0);
}

class FoldConstantsPass final : public Pass {
 public:
  FoldConstantsPass() {
    declareOption("max-growth",
                  "A fold may write up to this many times the bytes of the constant inputs it "
                  "frees",
                  &maxGrowth_);
    declareOption("max-bytes", "A fold may always write outputs of up to this many bytes",
                  &maxBytes_);
  }

  std::string_view name() const override { return "fold-constants"; }
  std::string_view summary() const override {
    return "Evaluate nodes with constant inputs, merge equal constants, drop unused ones";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    if (maxGrowth_ < 0 || maxBytes_ < 0) {
      return absl::InvalidArgumentError(
          "fold-constants: max-growth and max-bytes must not be negative");
    }
    ir::Graph& graph = model.graph();
    bool changed = convertConstantNodes(graph, context);
    changed = foldNodes(model, context) || changed;
    // Unused initializers go first, so that merging hashes only live ones.
    changed = removeUnusedInitializers(graph, context) || changed;
    changed = mergeEqualInitializers(graph, context) || changed;
    return changed;
  }

 private:
  static std::vector<ir::Node*> nodeList(const ir::Graph& graph) {
    std::vector<ir::Node*> nodes;
    nodes.reserve(graph.nodeCount());
    for (const auto& node : graph.nodes()) nodes.push_back(node.get());
    return nodes;
  }

  static bool convertConstantNodes(ir::Graph& graph, PassContext& context) {
    bool changed = false;
    for (ir::Node* node : nodeList(graph)) {
      if (!node->is("Constant") || node->output() == nullptr) continue;
      std::shared_ptr<ir::Tensor> value = node->constantValue();
      if (value == nullptr) {
        context.remarkMissed(*node, "its value has no dense tensor form (sparse or strings)");
        continue;
      }
      replaceWithConstant(graph, node->output(), std::move(value));
      eraseIfDead(graph, node);
      context.count("Constant nodes turned into initializers");
      changed = true;
    }
    return changed;
  }

  bool foldNodes(ir::Model& model, PassContext& context) const {
    ir::Graph& graph = model.graph();
    bool changed = false;
    for (ir::Node* node : nodeList(graph)) {
      if (node->is("Constant") || node->inputCount() == 0) continue;
      std::vector<std::shared_ptr<ir::Tensor>> inputs;
      if (!collectConstantInputs(*node, inputs)) continue;
      if (node->hasSubgraphs()) {
        context.remarkMissed(*node, "nodes with subgraphs are not folded");
        continue;
      }
      if (isNonDeterministic(*node)) {
        context.remarkMissed(*node, "the op is random, so folding would freeze one draw");
        continue;
      }
      std::optional<int64_t> opset = model.opsetVersion(node->domain());
      if (!opset) {
        context.remarkMissed(*node, "the model imports no opset for the node's domain");
        continue;
      }
      if (!runtime::canEvaluate(*node, *opset)) {
        context.count("constant nodes without a CPU kernel");
        context.remarkMissed(*node, absl::StrCat("the CPU evaluator has no kernel for this op at "
                                                 "opset ",
                                                 *opset));
        continue;
      }

      int64_t limit = sizeLimit(*node);
      if (auto expected = expectedOutputBytes(*node); expected && *expected > limit) {
        rejectBySize(*node, *expected, limit, context);
        continue;
      }
      // The evaluator applies the guard again to the shapes its kernel
      // infers, which covers outputs that inference left without a shape.
      auto outputs = runtime::evaluateNode(*node, inputs, *opset, limit);
      if (outputs.status().code() == absl::StatusCode::kResourceExhausted) {
        context.count("folds rejected by the size guard");
        context.remarkMissed(*node, absl::StrCat("not folded: ", outputs.status().message()));
        continue;
      }
      if (!outputs.ok()) {
        context.count("evaluations failed");
        context.remarkMissed(*node, absl::StrCat("evaluation failed: ",
                                                 outputs.status().message()));
        continue;
      }
      if (outputs->size() < node->outputCount()) {
        context.count("evaluations failed");
        context.remarkMissed(*node, "the evaluator returned fewer outputs than the node has");
        continue;
      }
      for (size_t i = 0; i < node->outputCount(); ++i) {
        if (node->output(i) != nullptr) replaceWithConstant(graph, node->output(i), (*outputs)[i]);
      }
      eraseIfDead(graph, node);
      context.count("nodes folded");
      changed = true;
    }
    return changed;
  }

  // Fills `inputs` with the node's constant inputs (null for omitted ones);
  // false when some input is not a constant.
  static bool collectConstantInputs(const ir::Node& node,
                                    std::vector<std::shared_ptr<ir::Tensor>>& inputs) {
    for (const ir::Value* input : node.inputs()) {
      if (input == nullptr) {
        inputs.push_back(nullptr);
        continue;
      }
      std::shared_ptr<ir::Tensor> tensor = ir::constantOf(input);
      if (tensor == nullptr) return false;
      inputs.push_back(std::move(tensor));
    }
    return true;
  }

  // The size guard: max(max-growth x bytes of the inputs only this node
  // reads, max-bytes).
  int64_t sizeLimit(const ir::Node& node) const {
    int64_t freedBytes = 0;
    std::unordered_set<const ir::Value*> seen;
    for (const ir::Value* input : node.inputs()) {
      if (input == nullptr || !seen.insert(input).second || input->isGraphOutput()) continue;
      bool onlyThisNode = true;
      for (const ir::Use& use : input->uses()) onlyThisNode = onlyThisNode && use.user == &node;
      if (onlyThisNode) freedBytes += static_cast<int64_t>(ir::constantOf(input)->byteSize());
    }
    double growthLimit = maxGrowth_ * static_cast<double>(freedBytes);
    return std::max(static_cast<int64_t>(growthLimit), maxBytes_);
  }

  // Bytes of the outputs when inference gave each a static shape and a
  // fixed-size element type, so that oversized folds are rejected before they
  // are computed.
  static std::optional<int64_t> expectedOutputBytes(const ir::Node& node) {
    int64_t total = 0;
    for (const ir::Value* output : node.outputs()) {
      if (output == nullptr) continue;
      auto dims = output->staticShape();
      if (!dims || ir::dataTypeSize(output->elemType()) == 0) return std::nullopt;
      // A size past 64 bits is as good as infinite for the guard.
      std::optional<int64_t> bytes = ir::checkedByteSize(output->elemType(), *dims);
      if (!bytes || __builtin_add_overflow(total, *bytes, &total)) {
        return std::numeric_limits<int64_t>::max();
      }
    }
    return total;
  }

  static void rejectBySize(const ir::Node& node, int64_t bytes, int64_t limit,
                           PassContext& context) {
    context.count("folds rejected by the size guard");
    std::string size = bytes == std::numeric_limits<int64_t>::max()
                           ? std::string("a size that does not fit in 64 bits")
                           : formatBytes(bytes);
    context.remarkMissed(node, absl::StrCat("the result would take ", size,
                                            ", more than the size guard allows (",
                                            formatBytes(limit), ")"));
  }

  bool mergeEqualInitializers(ir::Graph& graph, PassContext& context) {
    // Candidates grouped by type and dims first, so most weights are never
    // hashed; hashes are cached across runs by tensor.
    std::map<std::pair<int32_t, std::vector<int64_t>>, std::vector<ir::Value*>> groups;
    for (ir::Value* value : graph.initializers()) {
      if (value->isGraphInput() || value->isGraphOutput()) continue;
      const ir::Tensor& tensor = *value->initializer();
      groups[{static_cast<int32_t>(tensor.dataType()), tensor.dims()}].push_back(value);
    }

    bool changed = false;
    for (auto& [key, values] : groups) {
      if (values.size() < 2) continue;
      std::unordered_map<uint64_t, std::vector<ir::Value*>> byHash;
      for (ir::Value* value : values) {
        ir::Value* kept = nullptr;
        auto& sameHash = byHash[hashOf(value->initializer())];
        for (ir::Value* candidate : sameHash) {
          if (candidate->initializer()->contentEquals(*value->initializer())) {
            kept = candidate;
            break;
          }
        }
        if (kept == nullptr) {
          sameHash.push_back(value);
          continue;
        }
        std::string blocker = replacementBlocker(value, kept);
        if (!blocker.empty()) {
          context.remarkMissed(absl::StrCat("initializer '", value->name(), "'"),
                               absl::StrCat("not merged with '", kept->name(), "': ", blocker));
          continue;
        }
        forwardValue(graph, value, kept);
        graph.removeInitializer(value);
        context.count("equal initializers merged");
        changed = true;
      }
    }
    pruneHashCache();
    return changed;
  }

  uint64_t hashOf(const std::shared_ptr<ir::Tensor>& tensor) {
    auto it = hashCache_.find(tensor.get());
    if (it != hashCache_.end() && !it->second.tensor.expired() &&
        it->second.tensor.lock() == tensor) {
      return it->second.hash;
    }
    uint64_t hash = tensor->contentHash();
    hashCache_[tensor.get()] = CachedHash{tensor, hash};
    return hash;
  }

  void pruneHashCache() {
    for (auto it = hashCache_.begin(); it != hashCache_.end();) {
      it = it->second.tensor.expired() ? hashCache_.erase(it) : std::next(it);
    }
  }

  static bool removeUnusedInitializers(ir::Graph& graph, PassContext& context) {
    std::vector<ir::Value*> unused;
    for (ir::Value* value : graph.initializers()) {
      if (!value->hasUses() && !value->isGraphInput()) unused.push_back(value);
    }
    for (ir::Value* value : unused) {
      graph.removeInitializer(value);
      context.count("unused initializers removed");
    }
    if (!unused.empty()) graph.pruneUnusedValues();
    return !unused.empty();
  }

  struct CachedHash {
    std::weak_ptr<ir::Tensor> tensor;
    uint64_t hash = 0;
  };

  double maxGrowth_ = 1.0;
  int64_t maxBytes_ = kDefaultMaxBytes;
  std::unordered_map<const ir::Tensor*, CachedHash> hashCache_;
};

}  // namespace

std::unique_ptr<Pass> createFoldConstantsPass() { return std::make_unique<FoldConstantsPass>(); }

}  // namespace roformer::passes
