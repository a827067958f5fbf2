// eliminate-identities: removes nodes whose output equals one of their
// inputs, forwarding that input to every user.
//
// Matched (x is the forwarded input):
//   Identity(x)
//   Dropout(x) in inference form: opset 12 and later with no training_mode
//     input or a constant false one; earlier opsets unless is_test=0 (opset
//     6 and before). The mask output must be unused.
//   Cast(x, to=T) where x already has element type T
//   Reshape(x, shape) where the constant shape resolves to x's dims (each
//     entry equal to the known dim, 0 with allowzero=0, or a single -1 when all
//     other entries match), or where x and the output have the same static shape
//   Transpose(x) with the identity permutation.
//   Transpose(Transpose(x, p1), p2) where applying p1 then p2 is the identity.
//   Squeeze(Unsqueeze(x, axes), axes) and Unsqueeze(Squeeze(x, axes), axes)
//     with the same axes (attribute before opset 13, input from 13 on).
//   Mul(x, 1), Mul(1, x), Div(x, 1), Add(x, 0), Add(0, x), Sub(x, 0), where the
//     constant has only 1s (or 0s) and broadcasting it cannot change x's
//     shape: every dim of the constant is 1 and its rank is at most x's. For
//     floating point this is exact except that Add(-0.0, 0) gives +0.0.
//   Keras' merged mask, as tf2onnx exports `reduce_all(concat([b[None]] * n), 0)`
//   for merge layers (Add) whose inputs carry the same boolean mask b:
//       U = Unsqueeze(b, axes=[k]); C = Concat(U, U, ..., U, axis=k)
//       R = ReduceMin(Cast(C, to=numeric), axes=[k], keepdims=0)
//       Greater(R, 0)                                   -> b
//   Cast maps b to 0 and 1, the minimum over copies of one value is that
//   value, and Greater(v, 0) maps 0 and 1 back to b, so the result is b
//   exactly. Without this every layer's mask is a separate value and CSE
//   cannot share one mask computation.
//
// Rejected (remark): a value that a subgraph reads by name, and an output
// that is a graph output when the forwarded input cannot take over its name.
// That is the case for a graph input, an initializer, another graph output
// and a value a subgraph reads by name. The node stays for dce to remove once nothing uses it.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "passes/Match.h"
#include "passes/Passes.h"
#include "passes/RewriteHelpers.h"

namespace roformer::passes {
namespace {

// The forwarded input and the counter of the rule that matched.
struct Forward {
  ir::Value* input = nullptr;
  std::string rule;
};

// Axes from the `axes` attribute or, from opset 13 on, the constant second
// input; nullopt when they are neither.
std::optional<std::vector<int64_t>> squeezeAxes(const ir::Node& node) {
  if (node.inputCount() >= 2 && node.input(1) != nullptr) return constantInts(node.input(1));
  if (!node.hasAttribute("axes")) return std::nullopt;
  auto axes = node.intsAttribute("axes", {});
  if (!axes.ok()) return std::nullopt;
  return *axes;
}

std::optional<std::vector<int64_t>> normalizedSorted(const std::vector<int64_t>& axes,
                                                     int64_t rank) {
  std::vector<int64_t> out;
  for (int64_t axis : axes) {
    auto normalized = normalizeAxis(axis, rank);
    if (!normalized) return std::nullopt;
    out.push_back(*normalized);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::vector<int64_t>> transposePermutation(const ir::Node& node) {
  auto perm = node.intsAttribute("perm", {});
  if (!perm.ok()) return std::nullopt;
  if (perm->empty()) {
    // No perm reverses the axes, which needs the rank.
    auto dims = node.input(0)->shape();
    if (!dims) return std::nullopt;
    for (int64_t i = static_cast<int64_t>(dims->size()) - 1; i >= 0; --i) perm->push_back(i);
  }
  return *perm;
}

bool isIdentityPermutation(const std::vector<int64_t>& perm) {
  for (size_t i = 0; i < perm.size(); ++i) {
    if (perm[i] != static_cast<int64_t>(i)) return false;
  }
  return true;
}

// True when every element of the constant is `expected` and broadcasting it
// against a tensor of `dims` cannot change that tensor's shape.
bool isNeutralConstant(const ir::Value* constant, double expected, const ir::Value* other) {
  std::shared_ptr<ir::Tensor> tensor = ir::constantOf(constant);
  if (tensor == nullptr || tensor->elementCount() == 0) return false;
  if (tensor->dataType() != other->elemType()) return false;
  // The shape first: only a one-element constant can be neutral, so a large
  // weight is never converted.
  auto dims = other->shape();
  if (!dims || tensor->rank() > static_cast<int64_t>(dims->size())) return false;
  for (int64_t dim : tensor->dims()) {
    if (dim != 1) return false;
  }
  auto values = tensor->toDoubleVector();
  return values && values->size() == 1 && (*values)[0] == expected;
}

class EliminateIdentitiesPass final : public Pass {
 public:
  std::string_view name() const override { return "eliminate-identities"; }
  std::string_view summary() const override {
    return "Remove Identity, inference Dropout, no-op Cast/Reshape/Transpose/Squeeze pairs, "
           "x*1 and x+0";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    ir::Graph& graph = model.graph();
    int64_t opset = defaultOpset(model);
    std::vector<ir::Node*> nodes;
    for (const auto& node : graph.nodes()) nodes.push_back(node.get());

    bool changed = false;
    for (ir::Node* node : nodes) {
      if (!node->domain().empty() || node->output() == nullptr) continue;
      std::optional<Forward> forward = match(*node, opset);
      if (!forward) continue;
      ir::Value* output = node->output();
      std::string blocker = replacementBlocker(output, forward->input);
      if (!blocker.empty()) {
        context.remarkMissed(*node, blocker);
        continue;
      }
      forwardValue(graph, output, forward->input);
      eraseIfDead(graph, node);
      context.count(forward->rule);
      changed = true;
    }
    return changed;
  }

 private:
  static std::optional<Forward> match(const ir::Node& node, int64_t opset) {
    const std::string& op = node.opType();
    ir::Value* x = node.input(0);
    if (x == nullptr) return std::nullopt;

    if (op == "Identity") return Forward{x, "Identity removed"};
    if (op == "Dropout" && isInferenceDropout(node, opset)) {
      return Forward{x, "inference Dropout removed"};
    }
    if (op == "Cast" && isSameTypeCast(node)) return Forward{x, "Cast to the same type removed"};
    if (op == "Reshape" && isNoOpReshape(node)) {
      return Forward{x, "Reshape to the same shape removed"};
    }
    if (op == "Transpose") return matchTranspose(node);
    if (op == "Squeeze" || op == "Unsqueeze") return matchSqueezePair(node);
    if (op == "Greater") {
      ir::Value* mask = matchMergedMask(node);
      if (mask == nullptr) return std::nullopt;
      return Forward{mask, "Keras merged masks removed"};
    }
    return matchNeutralOperand(node);
  }

  static bool isSameTypeCast(const ir::Node& cast) {
    auto to = cast.intAttribute("to", -1);
    ir::DataType type = cast.input(0)->elemType();
    return to.ok() && type != ir::DataType::kUndefined && static_cast<int64_t>(type) == *to;
  }

  // Mul or Div by 1, Add or Sub of 0; Mul and Add take the constant on either
  // side.
  static std::optional<Forward> matchNeutralOperand(const ir::Node& node) {
    const std::string& op = node.opType();
    if (node.inputCount() != 2 || node.input(1) == nullptr) return std::nullopt;
    if (op == "Mul" || op == "Add") {
      double neutral = op == "Mul" ? 1.0 : 0.0;
      std::string rule = op == "Mul" ? "Mul by one removed" : "Add of zero removed";
      if (isNeutralConstant(node.input(1), neutral, node.input(0))) {
        return Forward{node.input(0), rule};
      }
      if (isNeutralConstant(node.input(0), neutral, node.input(1))) {
        return Forward{node.input(1), rule};
      }
      return std::nullopt;
    }
    if (op == "Sub" || op == "Div") {
      double neutral = op == "Div" ? 1.0 : 0.0;
      if (isNeutralConstant(node.input(1), neutral, node.input(0))) {
        return Forward{node.input(0), op == "Div" ? "Div by one removed" : "Sub of zero removed"};
      }
    }
    return std::nullopt;
  }

  static bool isInferenceDropout(const ir::Node& node, int64_t opset) {
    if (node.outputCount() > 1 && node.output(1) != nullptr && node.output(1)->hasUses()) {
      return false;
    }
    if (opset >= 12) {
      const ir::Value* training = node.input(2);
      if (training == nullptr) return true;
      auto flag = constantInts(training);
      if (!flag) {
        std::shared_ptr<ir::Tensor> tensor = ir::constantOf(training);
        if (tensor == nullptr || tensor->dataType() != ir::DataType::kBool) return false;
        return tensor->elementCount() == 1 && tensor->rawData()[0] == 0;
      }
      return flag->size() == 1 && (*flag)[0] == 0;
    }
    auto isTest = node.intAttribute("is_test", opset <= 6 ? 0 : 1);
    return isTest.ok() && *isTest != 0;
  }

  static bool isNoOpReshape(const ir::Node& node) {
    const ir::Value* x = node.input(0);
    auto outputDims = node.output()->staticShape();
    auto inputStatic = x->staticShape();
    if (inputStatic && outputDims && *inputStatic == *outputDims) return true;

    auto target = constantInts(node.input(1));
    auto dims = x->shape();
    if (!target || !dims || target->size() != dims->size()) return false;
    auto allowZero = node.intAttribute("allowzero", 0);
    if (!allowZero.ok()) return false;
    int unresolved = 0;
    for (size_t i = 0; i < target->size(); ++i) {
      int64_t entry = (*target)[i];
      const ir::Dim& dim = (*dims)[i];
      if (entry == 0 && *allowZero == 0) continue;
      if (entry == -1) {
        ++unresolved;
        continue;
      }
      if (!dim.isKnown() || *dim.value != entry) return false;
    }
    // With every other entry equal to x's dim, a single -1 can only be x's
    // dim too, unless another dim is 0 (then Reshape rejects the -1).
    return unresolved <= 1;
  }

  // Returns b when `greater` ends the merged-mask chain drawn in the header.
  static ir::Value* matchMergedMask(const ir::Node& greater) {
    auto zero = scalarConstant(greater.input(1));
    if (!zero || *zero != 0.0) return nullptr;
    auto path = matchParentPath(&greater, {{"ReduceMin", 0}, {"Cast", 0}, {"Concat", 0}}, nullptr);
    if (!path) return nullptr;
    const ir::Node* reduce = (*path)[0];
    const ir::Node* cast = (*path)[1];
    const ir::Node* concat = (*path)[2];

    const ir::Value* copy = concat->input(0);
    const ir::Node* unsqueeze = copy->producer();
    if (unsqueeze == nullptr || !unsqueeze->is("Unsqueeze")) return nullptr;
    for (const ir::Value* input : concat->inputs()) {
      if (input != copy) return nullptr;
    }
    ir::Value* mask = unsqueeze->input(0);
    auto maskDims = mask->shape();
    if (mask->elemType() != ir::DataType::kBool || !maskDims) return nullptr;
    auto castTo = cast->intAttribute("to", 0);
    if (!castTo.ok() || *castTo == static_cast<int64_t>(ir::DataType::kBool) ||
        *castTo == static_cast<int64_t>(ir::DataType::kString) || *castTo == 0) {
      return nullptr;
    }

    // The Unsqueeze, Concat and ReduceMin axes must all be the new axis k.
    auto rank = static_cast<int64_t>(maskDims->size()) + 1;
    auto unsqueezeAxes = squeezeAxes(*unsqueeze);
    auto reduceAxes = reductionAxes(reduce, nullptr);
    auto concatAxis = concat->intAttribute("axis", 0);
    auto keepDims = reduce->intAttribute("keepdims", 1);
    if (!unsqueezeAxes || !reduceAxes || !concatAxis.ok() || !keepDims.ok() || *keepDims != 0) {
      return nullptr;
    }
    auto k = normalizedSorted(*unsqueezeAxes, rank);
    auto reduced = normalizedSorted(*reduceAxes, rank);
    auto concatenated = normalizeAxis(*concatAxis, rank);
    if (!k || k->size() != 1 || !reduced || *reduced != *k || !concatenated ||
        *concatenated != (*k)[0]) {
      return nullptr;
    }
    return mask;
  }

  static std::optional<Forward> matchTranspose(const ir::Node& node) {
    auto outer = transposePermutation(node);
    if (!outer) return std::nullopt;
    if (isIdentityPermutation(*outer)) {
      return Forward{node.input(0), "Transpose with the identity permutation removed"};
    }
    const ir::Node* inner = node.input(0)->producer();
    if (inner == nullptr || !inner->is("Transpose")) return std::nullopt;
    auto first = transposePermutation(*inner);
    if (!first || first->size() != outer->size()) return std::nullopt;
    // Output axis i of the pair is input axis first[outer[i]].
    std::vector<int64_t> combined;
    for (int64_t axis : *outer) {
      if (axis < 0 || axis >= static_cast<int64_t>(first->size())) return std::nullopt;
      combined.push_back((*first)[axis]);
    }
    if (!isIdentityPermutation(combined)) return std::nullopt;
    return Forward{inner->input(0), "Transpose pairs that cancel removed"};
  }

  static std::optional<Forward> matchSqueezePair(const ir::Node& node) {
    const bool outerIsSqueeze = node.opType() == "Squeeze";
    const ir::Node* inner = node.input(0)->producer();
    if (inner == nullptr || !inner->is(outerIsSqueeze ? "Unsqueeze" : "Squeeze")) {
      return std::nullopt;
    }
    auto outerAxes = squeezeAxes(node);
    auto innerAxes = squeezeAxes(*inner);
    // The axes of both nodes index the rank-r tensor with the 1s present:
    // the Unsqueeze output and the Squeeze input.
    const ir::Value* expanded = outerIsSqueeze ? node.input(0) : inner->input(0);
    auto dims = expanded->shape();
    if (!outerAxes || !innerAxes || !dims) return std::nullopt;
    auto rank = static_cast<int64_t>(dims->size());
    auto a = normalizedSorted(*outerAxes, rank);
    auto b = normalizedSorted(*innerAxes, rank);
    if (!a || !b || *a != *b || a->empty()) return std::nullopt;
    return Forward{inner->input(0), "Squeeze/Unsqueeze pairs removed"};
  }
};

}  // namespace

std::unique_ptr<Pass> createEliminateIdentitiesPass() {
  return std::make_unique<EliminateIdentitiesPass>();
}

}  // namespace roformer::passes
