#include "passes/RewriteHelpers.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace roformer::passes {

std::string replacementBlocker(const ir::Value* from, const ir::Value* to) {
  for (const ir::Use& use : from->uses()) {
    if (use.inputIndex == ir::Use::kImplicitUse) {
      return absl::StrCat("the subgraph of ", use.user->describe(), " reads '", from->name(),
                          "' by name");
    }
  }
  if (!from->isGraphOutput()) return "";
  if (to->isGraphInput()) {
    return absl::StrCat("graph output '", from->name(), "' would become graph input '",
                        to->name(), "'");
  }
  if (to->isInitializer()) {
    return absl::StrCat("graph output '", from->name(), "' would become initializer '",
                        to->name(), "'");
  }
  if (to->isGraphOutput()) {
    return absl::StrCat("graph outputs '", from->name(), "' and '", to->name(),
                        "' would merge into one value");
  }
  for (const ir::Use& use : to->uses()) {
    if (use.inputIndex == ir::Use::kImplicitUse) {
      return absl::StrCat("graph output '", from->name(), "' would rename '", to->name(),
                          "', which the subgraph of ", use.user->describe(), " reads by name");
    }
  }
  return "";
}

void forwardValue(ir::Graph& graph, ir::Value* from, ir::Value* to) {
  const onnx::TypeProto& known = from->type();
  if (known.value_case() == onnx::TypeProto::kTensorType && !to->isInitializer()) {
    const auto& knownTensor = known.tensor_type();
    if (to->type().value_case() != onnx::TypeProto::kTensorType) {
      to->setType(known);
    } else {
      auto* tensor = to->mutableType().mutable_tensor_type();
      if (tensor->elem_type() == 0) tensor->set_elem_type(knownTensor.elem_type());
      if (!tensor->has_shape() && knownTensor.has_shape()) {
        *tensor->mutable_shape() = knownTensor.shape();
      } else if (tensor->has_shape() && knownTensor.has_shape() &&
                 tensor->shape().dim_size() == knownTensor.shape().dim_size()) {
        for (int i = 0; i < tensor->shape().dim_size(); ++i) {
          auto* dim = tensor->mutable_shape()->mutable_dim(i);
          const auto& knownDim = knownTensor.shape().dim(i);
          bool better = knownDim.has_dim_value() ? !dim->has_dim_value()
                                                 : knownDim.has_dim_param() &&
                                                       !dim->has_dim_value() &&
                                                       !dim->has_dim_param();
          if (better) *dim = knownDim;
        }
      }
    }
  }
  graph.replaceAllUsesWith(from, to);
}

ir::Value* replaceWithConstant(ir::Graph& graph, ir::Value* value,
                               std::shared_ptr<ir::Tensor> tensor) {
  std::string name = value->name();
  ir::Value* constant = graph.addInitializer(absl::StrCat(name, "_folded"), std::move(tensor));
  graph.replaceAllUsesWith(value, constant);
  // After the redirect nothing refers to `value` by name, so both renames
  // succeed: the constant keeps the original name, which graph outputs and
  // subgraphs that read it by name rely on.
  auto renamedOld = graph.renameValue(value, graph.uniqueValueName(absl::StrCat(name, "_dead")));
  if (renamedOld.ok()) (void)graph.renameValue(constant, name);
  return constant;
}

bool eraseIfDead(ir::Graph& graph, ir::Node* node) {
  for (const ir::Value* output : node->outputs()) {
    if (output != nullptr && output->hasUses()) return false;
  }
  return graph.eraseNode(node).ok();
}

void eraseDeadChain(ir::Graph& graph, ir::Node* node,
                    std::unordered_set<const ir::Node*>& erased) {
  std::vector<ir::Node*> pending = {node};
  while (!pending.empty()) {
    ir::Node* current = pending.back();
    pending.pop_back();
    if (erased.count(current) > 0) continue;
    std::vector<ir::Node*> producers;
    for (const ir::Value* input : current->inputs()) {
      if (input != nullptr && input->producer() != nullptr) producers.push_back(input->producer());
    }
    if (!eraseIfDead(graph, current)) continue;
    erased.insert(current);
    pending.insert(pending.end(), producers.begin(), producers.end());
  }
}

int64_t defaultOpset(const ir::Model& model) { return model.opsetVersion("").value_or(1); }

std::optional<std::vector<int64_t>> constantInts(const ir::Value* value) {
  std::shared_ptr<ir::Tensor> tensor = ir::constantOf(value);
  if (tensor == nullptr) return std::nullopt;
  return tensor->toInt64Vector();
}

bool sameDim(const ir::Dim& a, const ir::Dim& b) {
  if (a.isKnown() || b.isKnown()) return a.isKnown() && b.isKnown() && *a.value == *b.value;
  return !a.symbol.empty() && a.symbol == b.symbol;
}

std::optional<int64_t> normalizeAxis(int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank) return std::nullopt;
  return axis < 0 ? axis + rank : axis;
}

std::optional<std::vector<int64_t>> sliceIndices1D(const ir::Node& slice, int64_t length) {
  std::optional<std::vector<int64_t>> starts;
  std::optional<std::vector<int64_t>> ends;
  std::optional<std::vector<int64_t>> axes;
  std::optional<std::vector<int64_t>> steps;
  if (slice.inputCount() == 1) {
    auto startsAttribute = slice.intsAttribute("starts", {});
    auto endsAttribute = slice.intsAttribute("ends", {});
    auto axesAttribute = slice.intsAttribute("axes", {0});
    if (!startsAttribute.ok() || !endsAttribute.ok() || !axesAttribute.ok()) return std::nullopt;
    starts = *startsAttribute;
    ends = *endsAttribute;
    axes = *axesAttribute;
  } else {
    starts = constantInts(slice.input(1));
    ends = constantInts(slice.input(2));
    if (slice.input(3) != nullptr) axes = constantInts(slice.input(3));
    if (slice.input(4) != nullptr) steps = constantInts(slice.input(4));
    if ((slice.input(3) != nullptr && !axes) || (slice.input(4) != nullptr && !steps)) {
      return std::nullopt;
    }
  }
  if (!starts || !ends || starts->size() != 1 || ends->size() != 1) return std::nullopt;
  if (axes && (axes->size() != 1 || ((*axes)[0] != 0 && (*axes)[0] != -1))) return std::nullopt;
  int64_t step = 1;
  if (steps) {
    if (steps->size() != 1 || (*steps)[0] == 0) return std::nullopt;
    step = (*steps)[0];
  }
  // Clamping as the Slice operator specifies: to [0, length] for positive
  // steps and [-1, length - 1] for negative ones.
  auto clampIndex = [&](int64_t index) {
    if (index < 0) index += length;
    return step > 0 ? std::clamp<int64_t>(index, 0, length)
                    : std::clamp<int64_t>(index, -1, length - 1);
  };
  int64_t begin = clampIndex((*starts)[0]);
  int64_t end = clampIndex((*ends)[0]);
  std::vector<int64_t> indices;
  for (int64_t i = begin; step > 0 ? i < end : i > end; i += step) indices.push_back(i);
  return indices;
}

std::string dimToString(const ir::Dim& dim) {
  if (dim.isKnown()) return std::to_string(*dim.value);
  return dim.symbol.empty() ? "?" : dim.symbol;
}

}  // namespace roformer::passes
