#include "passes/ShapeTerms.h"

#include <algorithm>
#include <string>
#include <unordered_set>

#include "absl/strings/str_cat.h"

namespace roformer::passes {
namespace {

// Shape plumbing in real exports is a handful of nodes deep; the bound only
// protects the stack from hostile graphs.
constexpr int kMaxDepth = 32;

std::optional<int64_t> normalizeIndex(int64_t index, int64_t size) {
  if (index < 0) index += size;
  if (index < 0 || index >= size) return std::nullopt;
  return index;
}

// Reads a list of ints from attribute `name`, or from constant input `inputIndex`
// when the attribute is absent. Distinguishes "absent" (empty optional inside)
// from "present but not constant" (nullopt).
std::optional<std::optional<std::vector<int64_t>>> attributeOrInput(const ir::Node* node,
                                                                    std::string_view name,
                                                                    size_t inputIndex) {
  if (const auto* attribute = node->findAttribute(name); attribute != nullptr) {
    return std::vector<int64_t>(attribute->ints().begin(), attribute->ints().end());
  }
  const ir::Value* input = node->input(inputIndex);
  if (input == nullptr) return std::optional<std::vector<int64_t>>();
  auto values = constantIntegers(input);
  if (!values) return std::nullopt;
  return std::optional<std::vector<int64_t>>(*values);
}

class Evaluator {
 public:
  Evaluator(const RankOracle& rankOf, MatchFailure* why) : rankOf_(rankOf), why_(why) {}

  std::optional<ShapeTerms> evaluate(const ir::Value* value, int depth) {
    if (value == nullptr) return fail("a shape input is omitted");
    if (depth > kMaxDepth) {
      return fail(absl::StrCat("the shape computation of ", describeValue(value), " is more than ",
                               kMaxDepth, " nodes deep"));
    }
    if (auto tensor = ir::constantOf(value)) return fromConstant(value, *tensor);

    const ir::Node* node = value->producer();
    if (node == nullptr) {
      return fail(
          absl::StrCat(describeValue(value), " is neither a constant nor computed by a node"));
    }
    const std::string& op = node->opType();
    if (!node->domain().empty()) return unsupported(node);
    if (op == "Shape") return shape(node);
    if (op == "Cast") return cast(node, depth);
    if (op == "Identity") return evaluate(node->input(0), depth + 1);
    if (op == "Slice") return slice(node, depth);
    if (op == "Gather") return gather(node, depth);
    if (op == "Squeeze") return squeeze(node, depth);
    if (op == "Unsqueeze") return unsqueeze(node, depth);
    if (op == "Concat") return concat(node, depth);
    if (op == "ReduceProd") return reduceProd(node, depth);
    return unsupported(node);
  }

 private:
  std::optional<ShapeTerms> fail(std::string reason) {
    mismatch(why_, std::move(reason));
    return std::nullopt;
  }

  std::optional<ShapeTerms> unsupported(const ir::Node* node) {
    return fail(absl::StrCat("the shape computation contains ", node->describe(),
                             ", which is not shape plumbing this pass can read"));
  }

  std::optional<ShapeTerms> fromConstant(const ir::Value* value, const ir::Tensor& tensor) {
    auto values = constantIntegers(value);
    if (!values || tensor.rank() > 1) {
      return fail(absl::StrCat("the constant ", describeValue(value),
                               " is not a scalar or 1-D integer tensor"));
    }
    ShapeTerms result;
    result.scalar = tensor.rank() == 0;
    for (int64_t element : *values) result.terms.push_back(DimTerm::makeConstant(element));
    return result;
  }

  std::optional<ShapeTerms> shape(const ir::Node* node) {
    const ir::Value* input = node->input(0);
    std::optional<int64_t> rank = rankOf_(input);
    if (!rank) {
      return fail(absl::StrCat(node->describe(), " reads ", describeValue(input),
                               ", whose rank is not known"));
    }
    auto start = node->intAttribute("start", 0);
    auto end = node->intAttribute("end", *rank);
    if (!start.ok() || !end.ok())
      return fail(absl::StrCat(node->describe(), " has invalid attributes"));
    int64_t first = std::clamp(*start < 0 ? *start + *rank : *start, int64_t{0}, *rank);
    int64_t last = std::clamp(*end < 0 ? *end + *rank : *end, int64_t{0}, *rank);
    ShapeTerms result;
    for (int64_t axis = first; axis < last; ++axis)
      result.terms.push_back(DimTerm::dimOf(input, axis));
    return result;
  }

  std::optional<ShapeTerms> cast(const ir::Node* node, int depth) {
    auto to = node->intAttribute("to", 0);
    if (!to.ok() || !ir::isValidDataType(static_cast<int32_t>(*to)) ||
        !ir::isInteger(static_cast<ir::DataType>(*to))) {
      return fail(absl::StrCat(node->describe(), " does not cast to an integer type"));
    }
    return evaluate(node->input(0), depth + 1);
  }

  std::optional<ShapeTerms> slice(const ir::Node* node, int depth) {
    auto params = sliceParams(node);
    if (!params || params->starts.size() != 1 || params->ends.size() != 1) {
      return fail(
          absl::StrCat(node->describe(), " has slice parameters that are not one constant axis"));
    }
    auto input = evaluate(node->input(0), depth + 1);
    if (!input) return std::nullopt;
    if (input->scalar) return fail(absl::StrCat(node->describe(), " slices a scalar"));
    int64_t size = static_cast<int64_t>(input->terms.size());
    if (params->axes[0] != 0 && params->axes[0] != -1) {
      return fail(
          absl::StrCat(node->describe(), " slices axis ", params->axes[0], " of a 1-D tensor"));
    }
    int64_t step = params->steps[0];
    if (step <= 0) return fail(absl::StrCat(node->describe(), " has a step that is not positive"));
    int64_t start = params->starts[0] < 0 ? params->starts[0] + size : params->starts[0];
    int64_t end = params->ends[0] < 0 ? params->ends[0] + size : params->ends[0];
    start = std::clamp(start, int64_t{0}, size);
    end = std::clamp(end, int64_t{0}, size);
    ShapeTerms result;
    for (int64_t index = start; index < end; index += step)
      result.terms.push_back(input->terms[index]);
    return result;
  }

  std::optional<ShapeTerms> gather(const ir::Node* node, int depth) {
    auto axis = node->intAttribute("axis", 0);
    if (!axis.ok() || (*axis != 0 && *axis != -1)) {
      return fail(absl::StrCat(node->describe(), " does not gather along axis 0"));
    }
    auto indicesTensor = ir::constantOf(node->input(1));
    auto indices = constantIntegers(node->input(1));
    if (!indicesTensor || !indices || indicesTensor->rank() > 1) {
      return fail(
          absl::StrCat(node->describe(), " has indices that are not a constant scalar or vector"));
    }
    auto data = evaluate(node->input(0), depth + 1);
    if (!data) return std::nullopt;
    if (data->scalar) return fail(absl::StrCat(node->describe(), " gathers from a scalar"));
    ShapeTerms result;
    result.scalar = indicesTensor->rank() == 0;
    int64_t size = static_cast<int64_t>(data->terms.size());
    for (int64_t index : *indices) {
      auto normalized = normalizeIndex(index, size);
      if (!normalized) {
        return fail(
            absl::StrCat(node->describe(), " gathers index ", index, " of ", size, " elements"));
      }
      result.terms.push_back(data->terms[*normalized]);
    }
    return result;
  }

  std::optional<ShapeTerms> squeeze(const ir::Node* node, int depth) {
    auto input = evaluate(node->input(0), depth + 1);
    if (!input) return std::nullopt;
    auto axes = squeezeAxes(node);
    bool axesValid =
        !axes || axes->empty() || (axes->size() == 1 && ((*axes)[0] == 0 || (*axes)[0] == -1));
    if (input->scalar || input->terms.size() != 1 || !axesValid) {
      return fail(
          absl::StrCat(node->describe(), " does not squeeze a one-element vector to a scalar"));
    }
    input->scalar = true;
    return input;
  }

  std::optional<ShapeTerms> unsqueeze(const ir::Node* node, int depth) {
    auto input = evaluate(node->input(0), depth + 1);
    if (!input) return std::nullopt;
    auto axes = squeezeAxes(node);
    if (!input->scalar || !axes || axes->size() != 1 || ((*axes)[0] != 0 && (*axes)[0] != -1)) {
      return fail(absl::StrCat(node->describe(), " does not unsqueeze a scalar to a vector"));
    }
    input->scalar = false;
    return input;
  }

  std::optional<ShapeTerms> concat(const ir::Node* node, int depth) {
    auto axis = node->intAttribute("axis", 0);
    if (!axis.ok() || (*axis != 0 && *axis != -1)) {
      return fail(absl::StrCat(node->describe(), " does not concatenate along axis 0"));
    }
    ShapeTerms result;
    for (const ir::Value* input : node->inputs()) {
      auto part = evaluate(input, depth + 1);
      if (!part) return std::nullopt;
      if (part->scalar) return fail(absl::StrCat(node->describe(), " concatenates a scalar"));
      result.terms.insert(result.terms.end(), part->terms.begin(), part->terms.end());
    }
    return result;
  }

  std::optional<ShapeTerms> reduceProd(const ir::Node* node, int depth) {
    auto input = evaluate(node->input(0), depth + 1);
    if (!input) return std::nullopt;
    auto keepDims = node->intAttribute("keepdims", 1);
    if (!keepDims.ok() || input->scalar) {
      return fail(absl::StrCat(node->describe(), " does not reduce a vector"));
    }
    ShapeTerms result;
    result.scalar = *keepDims == 0;
    if (input->terms.size() == 1) {
      result.terms.push_back(input->terms[0]);
      return result;
    }
    int64_t product = 1;
    for (const DimTerm& term : input->terms) {
      if (term.kind != DimTerm::Kind::kConstant) {
        result.terms.push_back(DimTerm::unknown());
        return result;
      }
      product *= term.constant;
    }
    result.terms.push_back(DimTerm::makeConstant(product));
    return result;
  }

  const RankOracle& rankOf_;
  MatchFailure* why_;
};

}  // namespace

std::optional<ShapeTerms> evaluateShapeTerms(const ir::Value* value, const RankOracle& rankOf,
                                             MatchFailure* why) {
  Evaluator evaluator(rankOf, why);
  return evaluator.evaluate(value, 0);
}

std::optional<std::vector<int64_t>> constantIntegers(const ir::Value* value) {
  if (value == nullptr) return std::nullopt;
  auto tensor = ir::constantOf(value);
  if (!tensor || !ir::isInteger(tensor->dataType())) return std::nullopt;
  return tensor->toInt64Vector();
}

std::optional<std::vector<int64_t>> squeezeAxes(const ir::Node* node) {
  auto axes = attributeOrInput(node, "axes", 1);
  if (!axes || !*axes) return std::nullopt;
  return **axes;
}

std::optional<SliceParams> sliceParams(const ir::Node* node) {
  SliceParams params;
  if (node->hasAttribute("starts")) {
    // Before opset 10 the parameters are attributes and there are no steps.
    auto starts = node->intsAttribute("starts", {});
    auto ends = node->intsAttribute("ends", {});
    auto axes = node->intsAttribute("axes", {});
    if (!starts.ok() || !ends.ok() || !axes.ok()) return std::nullopt;
    params.starts = *starts;
    params.ends = *ends;
    params.axes = *axes;
  } else {
    auto starts = constantIntegers(node->input(1));
    auto ends = constantIntegers(node->input(2));
    if (!starts || !ends) return std::nullopt;
    params.starts = *starts;
    params.ends = *ends;
    if (node->input(3) != nullptr) {
      auto axes = constantIntegers(node->input(3));
      if (!axes) return std::nullopt;
      params.axes = *axes;
    }
    if (node->input(4) != nullptr) {
      auto steps = constantIntegers(node->input(4));
      if (!steps) return std::nullopt;
      params.steps = *steps;
    }
  }
  if (params.starts.size() != params.ends.size()) return std::nullopt;
  if (params.axes.empty()) {
    for (size_t i = 0; i < params.starts.size(); ++i)
      params.axes.push_back(static_cast<int64_t>(i));
  }
  if (params.steps.empty()) params.steps.assign(params.starts.size(), 1);
  if (params.axes.size() != params.starts.size() || params.steps.size() != params.starts.size()) {
    return std::nullopt;
  }
  return params;
}

std::optional<std::vector<int64_t>> transposePermutation(const ir::Node* node) {
  const auto* attribute = node->findAttribute("perm");
  if (attribute == nullptr) return std::nullopt;
  return std::vector<int64_t>(attribute->ints().begin(), attribute->ints().end());
}

// ---------------------------------------------------------------------------
// DimProvenance

namespace {

// Real chains cross every layer of the model (a few dozen nodes each); the
// bound only protects the stack.
constexpr int kMaxTraceDepth = 4096;

// Ops whose output has the shape of their first input.
bool passesShapeOfFirstInput(const ir::Node* node) {
  static const std::unordered_set<std::string> kOnnx = {
      "Cast", "Identity", "Relu",       "Neg",     "Erf",
      "Sqrt", "Exp",      "Log",        "Tanh",    "Sigmoid",
      "Not",  "Abs",      "Reciprocal", "Softmax", "LayerNormalization",
      "Sin",  "Cos",      "Floor",      "Ceil",    "Dropout"};
  static const std::unordered_set<std::string> kMicrosoft = {"SkipLayerNormalization", "BiasGelu",
                                                             "Gelu", "FastGelu", "RotaryEmbedding"};
  if (node->domain().empty()) return kOnnx.count(node->opType()) > 0;
  if (node->domain() == "com.microsoft") return kMicrosoft.count(node->opType()) > 0;
  return false;
}

bool isBroadcastingElementwise(const ir::Node* node) {
  static const std::unordered_set<std::string> kOps = {
      "Add",         "Sub", "Mul", "Div", "Pow",   "Equal", "Greater", "Less", "GreaterOrEqual",
      "LessOrEqual", "And", "Or",  "Xor", "Where", "Max",   "Min"};
  return node->domain().empty() && kOps.count(node->opType()) > 0;
}

std::optional<int64_t> normalizedAxis(const ir::Node* node, std::optional<int64_t> rank) {
  auto axis = node->intAttribute("axis", 0);
  if (!axis.ok()) return std::nullopt;
  if (*axis >= 0) return *axis;
  if (!rank) return std::nullopt;
  return *axis + *rank;
}

}  // namespace

std::optional<DimOrigin> DimProvenance::origin(const ir::Value* value, int64_t axis) {
  return trace(value, axis, 0);
}

std::optional<int64_t> DimProvenance::rank(const ir::Value* value) { return rankAt(value, 0); }

std::optional<DimOrigin> DimProvenance::trace(const ir::Value* value, int64_t axis, int depth) {
  if (value == nullptr || axis < 0 || depth > kMaxTraceDepth) return std::nullopt;
  auto key = std::make_pair(value, axis);
  if (auto it = origins_.find(key); it != origins_.end()) return it->second;

  std::optional<DimOrigin> result;
  std::string symbol;
  auto shape = value->shape();
  if (shape && axis < static_cast<int64_t>(shape->size())) {
    const ir::Dim& dim = (*shape)[axis];
    if (dim.value) result = DimOrigin{dim.value, "", nullptr, 0};
    symbol = dim.symbol;
  }
  if (!result) {
    if (auto tensor = ir::constantOf(value); tensor && axis < tensor->rank()) {
      result = DimOrigin{tensor->dims()[axis], "", nullptr, 0};
    }
  }
  const ir::Node* node = value->producer();
  if (!result && node != nullptr && !value->isGraphInput()) {
    if (passesShapeOfFirstInput(node)) {
      result = trace(node->input(0), axis, depth + 1);
    } else if (node->is("MultiHeadAttention", "com.microsoft") && axis < 2) {
      result = trace(node->input(0), axis, depth + 1);
    } else if (isBroadcastingElementwise(node)) {
      result = traceElementwise(node, axis, depth + 1);
    } else if (node->is("MatMul")) {
      auto left = rankAt(node->input(0), depth + 1);
      auto right = rankAt(node->input(1), depth + 1);
      if (left && right && *right == 2 && axis < *left - 1) {
        result = trace(node->input(0), axis, depth + 1);
      }
    } else if (node->is("Gather")) {
      auto indicesRank = rankAt(node->input(1), depth + 1);
      auto gatherAxis = node->intAttribute("axis", 0);
      if (indicesRank && gatherAxis.ok() && *gatherAxis == 0) {
        result = axis < *indicesRank ? trace(node->input(1), axis, depth + 1)
                                     : trace(node->input(0), axis - *indicesRank + 1, depth + 1);
      }
    } else if (node->is("Reshape")) {
      result = traceReshape(node, axis, depth + 1);
    } else if (node->domain().empty() && node->opType().rfind("Reduce", 0) == 0) {
      result = traceReduction(node, axis, depth + 1);
    } else if (node->is("Transpose")) {
      if (auto perm = transposePermutation(node)) {
        if (axis < static_cast<int64_t>(perm->size())) {
          result = trace(node->input(0), (*perm)[axis], depth + 1);
        }
      } else if (auto inputRank = rankAt(node->input(0), depth + 1);
                 inputRank && axis < *inputRank) {
        result = trace(node->input(0), *inputRank - 1 - axis, depth + 1);
      }
    } else if (node->is("Split")) {
      auto splitAxis = normalizedAxis(node, rankAt(node->input(0), depth + 1));
      if (splitAxis && axis != *splitAxis) result = trace(node->input(0), axis, depth + 1);
    } else if (node->is("Concat")) {
      auto concatAxis = normalizedAxis(node, rankAt(node->input(0), depth + 1));
      if (concatAxis && axis != *concatAxis) {
        for (const ir::Value* input : node->inputs()) {
          auto part = trace(input, axis, depth + 1);
          if (!part || (result && !(*part == *result))) {
            result.reset();
            break;
          }
          result = part;
        }
      }
    }
  }
  if (!result && !symbol.empty()) result = DimOrigin{std::nullopt, symbol, nullptr, 0};
  if (!result) result = DimOrigin{std::nullopt, "", value, axis};
  origins_[key] = result;
  return result;
}

// Broadcasting aligns dims from the right; inputs of lower rank and inputs
// whose dim is 1 do not decide the output dim. The others must agree.
std::optional<DimOrigin> DimProvenance::traceElementwise(const ir::Node* node, int64_t axis,
                                                         int depth) {
  std::vector<int64_t> ranks;
  int64_t outputRank = 0;
  for (const ir::Value* input : node->inputs()) {
    auto inputRank = rankAt(input, depth);
    if (!inputRank) return std::nullopt;
    ranks.push_back(*inputRank);
    outputRank = std::max(outputRank, *inputRank);
  }
  std::optional<DimOrigin> result;
  for (size_t i = 0; i < ranks.size(); ++i) {
    int64_t inputAxis = axis - (outputRank - ranks[i]);
    if (inputAxis < 0) continue;
    auto part = trace(node->input(i), inputAxis, depth);
    if (!part) return std::nullopt;
    if (part->size == 1) continue;
    if (result && !(*part == *result)) return std::nullopt;
    result = part;
  }
  if (!result) return DimOrigin{1, "", nullptr, 0};
  return result;
}

// Reduced axes become 1 (keepdims) or disappear; the others pass through.
std::optional<DimOrigin> DimProvenance::traceReduction(const ir::Node* node, int64_t axis,
                                                       int depth) {
  auto inputRank = rankAt(node->input(0), depth);
  auto axes = reductionAxes(node, nullptr);
  auto keepDims = node->intAttribute("keepdims", 1);
  if (!inputRank || !axes || axes->empty() || !keepDims.ok()) return std::nullopt;
  std::vector<bool> reduced(*inputRank, false);
  for (int64_t reducedAxis : *axes) {
    int64_t normalized = reducedAxis < 0 ? reducedAxis + *inputRank : reducedAxis;
    if (normalized < 0 || normalized >= *inputRank) return std::nullopt;
    reduced[normalized] = true;
  }
  int64_t outputAxis = 0;
  for (int64_t inputAxis = 0; inputAxis < *inputRank; ++inputAxis) {
    if (reduced[inputAxis] && *keepDims == 0) continue;
    if (outputAxis == axis) {
      if (reduced[inputAxis]) return DimOrigin{1, "", nullptr, 0};
      return trace(node->input(0), inputAxis, depth);
    }
    ++outputAxis;
  }
  return std::nullopt;
}

std::optional<DimOrigin> DimProvenance::traceReshape(const ir::Node* node, int64_t axis,
                                                     int depth) {
  RankOracle rankOracle = [this, depth](const ir::Value* value) { return rankAt(value, depth); };
  auto target = evaluateShapeTerms(node->input(1), rankOracle, nullptr);
  if (!target || target->scalar || axis >= static_cast<int64_t>(target->terms.size())) {
    return std::nullopt;
  }
  const DimTerm& term = target->terms[axis];
  auto allowZero = node->intAttribute("allowzero", 0);
  if (term.kind == DimTerm::Kind::kConstant) {
    if (term.constant == 0 && allowZero.ok() && *allowZero == 0) {
      return trace(node->input(0), axis, depth);
    }
    if (term.constant < 0) return std::nullopt;
    return DimOrigin{term.constant, "", nullptr, 0};
  }
  if (term.kind == DimTerm::Kind::kDimOf) return trace(term.value, term.axis, depth);
  return std::nullopt;
}

std::optional<int64_t> DimProvenance::rankAt(const ir::Value* value, int depth) {
  if (value == nullptr || depth > kMaxTraceDepth) return std::nullopt;
  if (auto it = ranks_.find(value); it != ranks_.end()) return it->second;

  std::optional<int64_t> result = rankOf(value);
  if (!result) {
    if (auto tensor = ir::constantOf(value)) result = tensor->rank();
  }
  const ir::Node* node = value->producer();
  if (!result && node != nullptr && !value->isGraphInput()) {
    if (passesShapeOfFirstInput(node) || node->is("Transpose") || node->is("Split") ||
        node->is("Concat")) {
      result = rankAt(node->input(0), depth + 1);
    } else if (node->is("MultiHeadAttention", "com.microsoft")) {
      result = 3;
    } else if (isBroadcastingElementwise(node)) {
      for (const ir::Value* input : node->inputs()) {
        auto inputRank = rankAt(input, depth + 1);
        if (!inputRank) {
          result.reset();
          break;
        }
        result = std::max(result.value_or(0), *inputRank);
      }
    } else if (node->is("MatMul")) {
      auto left = rankAt(node->input(0), depth + 1);
      auto right = rankAt(node->input(1), depth + 1);
      if (left && right && *left >= 2 && *right >= 2) result = std::max(*left, *right);
    } else if (node->is("Gather")) {
      auto data = rankAt(node->input(0), depth + 1);
      auto indices = rankAt(node->input(1), depth + 1);
      if (data && indices) result = *data + *indices - 1;
    } else if (node->is("Reshape")) {
      RankOracle rankOracle = [this, depth](const ir::Value* v) { return rankAt(v, depth + 1); };
      auto target = evaluateShapeTerms(node->input(1), rankOracle, nullptr);
      if (target && !target->scalar) result = static_cast<int64_t>(target->terms.size());
    } else if (node->is("Shape")) {
      result = 1;
    } else if (node->domain().empty() && node->opType().rfind("Reduce", 0) == 0) {
      auto inputRank = rankAt(node->input(0), depth + 1);
      auto axes = reductionAxes(node, nullptr);
      auto keepDims = node->intAttribute("keepdims", 1);
      if (inputRank && axes && !axes->empty() && keepDims.ok()) {
        result = *keepDims != 0 ? *inputRank : *inputRank - static_cast<int64_t>(axes->size());
      }
    } else if (node->is("Unsqueeze") || node->is("Squeeze")) {
      auto inputRank = rankAt(node->input(0), depth + 1);
      auto axes = squeezeAxes(node);
      if (inputRank && axes) {
        int64_t count = static_cast<int64_t>(axes->size());
        result = node->is("Unsqueeze") ? *inputRank + count : *inputRank - count;
      }
    }
  }
  ranks_[value] = result;
  return result;
}

}  // namespace roformer::passes
