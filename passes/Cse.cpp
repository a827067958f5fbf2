// cse: common subexpression elimination. Two nodes compute the same values
// when they have the same domain, op type, number of outputs, attributes and
// inputs. The later node's outputs are then replaced by the earlier one's.
//
// Inputs are the same when they are the same value or, for constants
// (initializers and Constant nodes), when their type, dims and bytes are
// equal. Attributes are compared exactly, by their serialized protobuf bytes,
// in name order; so 1.0 and 1 differ, as do `axes=[1]` and `axes=[-1]`.
// For the two-input commutative ops Add, Mul, Max, Min, And, Or, Xor, Equal,
// BitwiseAnd, BitwiseOr and BitwiseXor the operand order is ignored: in IEEE
// arithmetic a + b and b + a are the same bits. Sum and Mean with more inputs
// are not reordered, because the order of a floating-point sum changes its
// rounding.
//
// Nodes are visited in topological order, so once a node is merged its users
// compare equal too, and whole repeated chains (each layer's mask
// computation, repeated Shape nodes) collapse in one run.
//
// Never merged: nodes with subgraphs, random ops (two draws are different
// values), nodes with no outputs, and merges that would rename the model's
// interface (see replacementBlocker). A remark names the blocking value.
#include <algorithm>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "passes/Passes.h"
#include "passes/RewriteHelpers.h"

namespace roformer::passes {
namespace {

bool isCommutative(const ir::Node& node) {
  static const std::unordered_set<std::string> kOps = {
      "Add", "Mul", "Max", "Min", "And", "Or", "Xor", "Equal", "BitwiseAnd", "BitwiseOr",
      "BitwiseXor"};
  return node.domain().empty() && node.inputCount() == 2 && kOps.count(node.opType()) > 0;
}

bool isRandom(const ir::Node& node) {
  static const std::unordered_set<std::string> kOps = {
      "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
      "Multinomial",  "Bernoulli"};
  return node.domain().empty() && kOps.count(node.opType()) > 0;
}

class CsePass final : public Pass {
 public:
  std::string_view name() const override { return "cse"; }
  std::string_view summary() const override {
    return "Merge nodes with the same op, attributes and inputs (constants by content)";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    ir::Graph& graph = model.graph();
    std::vector<ir::Node*> nodes;
    for (const auto& node : graph.nodes()) nodes.push_back(node.get());

    std::unordered_map<std::string, ir::Node*> seen;
    bool changed = false;
    for (ir::Node* node : nodes) {
      if (node->outputCount() == 0 || node->hasSubgraphs() || isRandom(*node)) continue;
      std::string key = keyOf(*node);
      auto [it, inserted] = seen.emplace(std::move(key), node);
      if (inserted) continue;
      ir::Node* kept = it->second;

      std::string blocker;
      for (size_t i = 0; i < node->outputCount() && blocker.empty(); ++i) {
        ir::Value* from = node->output(i);
        ir::Value* to = kept->output(i);
        if (from == nullptr) continue;
        if (to == nullptr) {
          blocker = absl::StrCat("output ", i, " is omitted on the equal ", kept->describe());
        } else {
          blocker = replacementBlocker(from, to);
        }
      }
      if (!blocker.empty()) {
        context.remarkMissed(*node, absl::StrCat("equal to ", kept->describe(),
                                                 " but not merged: ", blocker));
        continue;
      }
      for (size_t i = 0; i < node->outputCount(); ++i) {
        if (node->output(i) != nullptr) forwardValue(graph, node->output(i), kept->output(i));
      }
      eraseIfDead(graph, node);
      context.count("nodes merged");
      changed = true;
    }
    // The tables refer to tensors by address, so they must not outlive this run.
    nextId_ = 0;
    constantIds_.clear();
    smallConstants_.clear();
    largeConstants_.clear();
    return changed;
  }

 private:
  // A string equal for exactly the nodes this pass treats as equal.
  std::string keyOf(const ir::Node& node) {
    std::string key = absl::StrCat(node.domain(), "|", node.opType(), "|", node.outputCount(),
                                   "|");
    if (node.is("Constant")) {
      std::shared_ptr<ir::Tensor> value = node.constantValue();
      if (value != nullptr) return absl::StrCat(key, "constant ", constantId(value));
    }

    std::vector<std::string> inputs;
    for (const ir::Value* input : node.inputs()) inputs.push_back(inputId(input));
    if (isCommutative(node)) std::sort(inputs.begin(), inputs.end());
    for (const std::string& input : inputs) absl::StrAppend(&key, input, ",");

    std::vector<const onnx::AttributeProto*> attributes;
    for (const auto& attribute : node.attributes()) attributes.push_back(&attribute);
    std::sort(attributes.begin(), attributes.end(),
              [](const auto* a, const auto* b) { return a->name() < b->name(); });
    for (const auto* attribute : attributes) {
      std::string bytes = attribute->SerializeAsString();
      absl::StrAppend(&key, "|", bytes.size(), ":", bytes);
    }
    return key;
  }

  std::string inputId(const ir::Value* input) {
    if (input == nullptr) return "-";
    std::shared_ptr<ir::Tensor> constant = ir::constantOf(input);
    if (constant != nullptr) return absl::StrCat("c", constantId(constant));
    return absl::StrCat("v", reinterpret_cast<uintptr_t>(input));
  }

  // Numbers constants so that tensors with equal content get equal numbers.
  // Small tensors are looked up by their bytes. Larger ones are compared with
  // the earlier tensors of the same type and dims, which usually differ in
  // their first bytes, so weights are not hashed on every run.
  size_t constantId(const std::shared_ptr<ir::Tensor>& tensor) {
    auto known = constantIds_.find(tensor.get());
    if (known != constantIds_.end()) return known->second;
    size_t id = nextId_;
    std::string signature = absl::StrCat(static_cast<int>(tensor->dataType()), "[",
                                         absl::StrJoin(tensor->dims(), ","), "]");
    if (tensor->dataType() != ir::DataType::kString && tensor->byteSize() <= kSmallBytes) {
      absl::StrAppend(&signature, std::string(reinterpret_cast<const char*>(tensor->rawData()),
                                              tensor->byteSize()));
      auto [it, inserted] = smallConstants_.emplace(signature, id);
      id = it->second;
    } else {
      auto& candidates = largeConstants_[signature];
      for (const auto& [candidate, candidateId] : candidates) {
        if (candidate->contentEquals(*tensor)) {
          id = candidateId;
          break;
        }
      }
      if (id == nextId_) candidates.emplace_back(tensor, id);
    }
    if (id == nextId_) ++nextId_;
    constantIds_[tensor.get()] = id;
    return id;
  }

  static constexpr size_t kSmallBytes = 256;
  size_t nextId_ = 0;
  std::unordered_map<const ir::Tensor*, size_t> constantIds_;
  std::unordered_map<std::string, size_t> smallConstants_;
  std::unordered_map<std::string, std::vector<std::pair<std::shared_ptr<ir::Tensor>, size_t>>>
      largeConstants_;
};

}  // namespace

std::unique_ptr<Pass> createCsePass() { return std::make_unique<CsePass>(); }

}  // namespace roformer::passes
