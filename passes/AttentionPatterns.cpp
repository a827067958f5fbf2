#include "passes/AttentionPatterns.h"

#include <map>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "passes/ShapeTerms.h"

namespace roformer::passes::attention {

std::string canonicalEinsum(std::string_view equation) {
  std::map<char, char> names;
  char next = 'a';
  std::string out;
  for (char c : equation) {
    if (c == ' ') continue;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      auto [it, inserted] = names.try_emplace(c, next);
      if (inserted) ++next;
      out += it->second;
    } else {
      out += c;
    }
  }
  return out;
}

bool matchEinsum(const ir::Node* node, std::string_view expected, MatchFailure* why) {
  auto equation = node->stringAttribute("equation", "");
  if (!equation.ok()) return mismatch(why, std::string(equation.status().message()));
  if (canonicalEinsum(*equation) != canonicalEinsum(expected)) {
    return mismatch(why, absl::StrCat(node->describe(), " computes \"", *equation,
                                      "\", expected \"", std::string(expected), "\""));
  }
  return true;
}

bool matchTranspose(const ir::Node* node, const std::vector<int64_t>& perm, MatchFailure* why) {
  auto actual = transposePermutation(node);
  if (!actual || *actual != perm) {
    return mismatch(why, absl::StrCat(node->describe(), " has perm [",
                                      actual ? absl::StrJoin(*actual, ",") : "reversed",
                                      "], expected [", absl::StrJoin(perm, ","), "]"));
  }
  return true;
}

bool isAxis(int64_t axis, int64_t expected, int64_t rank) {
  return axis == expected || axis + rank == expected;
}

bool matchIntAttributeAxis(const ir::Node* node, int64_t expected, int64_t rank,
                           MatchFailure* why) {
  auto axis = node->intAttribute("axis", 0);
  if (!axis.ok() || !isAxis(*axis, expected, rank)) {
    return mismatch(why,
                    absl::StrCat(node->describe(), " works on axis ",
                                 axis.ok() ? std::to_string(*axis) : "?", ", expected ", expected));
  }
  return true;
}

bool matchUnsqueezeAxis(const ir::Node* node, int64_t expected, int64_t outputRank,
                        MatchFailure* why) {
  auto axes = squeezeAxes(node);
  if (!axes || axes->size() != 1 || !isAxis((*axes)[0], expected, outputRank)) {
    return mismatch(why, absl::StrCat(node->describe(), " does not insert axis ", expected));
  }
  return true;
}

bool matchStridedSlice(const ir::Node* node, int64_t axis, int64_t rank, int64_t start,
                       int64_t step, MatchFailure* why) {
  auto params = sliceParams(node);
  if (!params || params->starts.size() != 1) {
    return mismatch(why, absl::StrCat(node->describe(), " is not a constant slice of one axis"));
  }
  if (!isAxis(params->axes[0], axis, rank) || params->starts[0] != start ||
      params->steps[0] != step) {
    return mismatch(why, absl::StrCat(node->describe(), " takes [", params->starts[0],
                                      "::", params->steps[0], "] of axis ", params->axes[0],
                                      ", expected [", start, "::", step, "] of axis ", axis));
  }
  return true;
}

bool sliceReachesEnd(const ir::Node* node, int64_t size) {
  auto params = sliceParams(node);
  return params && params->ends.size() == 1 && params->ends[0] >= size;
}

std::optional<int64_t> castTarget(const ir::Node* node) {
  auto to = node->intAttribute("to", 0);
  if (!to.ok()) return std::nullopt;
  return *to;
}

bool isBoolean(const ir::Value* value, int depth) {
  if (value == nullptr || depth > 16) return false;
  if (value->elemType() != ir::DataType::kUndefined) {
    return value->elemType() == ir::DataType::kBool;
  }
  const ir::Node* node = value->producer();
  if (node == nullptr || !node->domain().empty()) return false;
  static const std::unordered_set<std::string> kComparisons = {
      "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Not",
      "And",   "Or",      "Xor",  "IsNaN",          "IsInf"};
  const std::string& op = node->opType();
  if (kComparisons.count(op) > 0) return true;
  if (op == "Cast") return castTarget(node) == static_cast<int64_t>(ir::DataType::kBool);
  if (op == "ConstantOfShape") {
    const auto* attribute = node->findAttribute("value");
    return attribute != nullptr && attribute->t().data_type() == onnx::TensorProto::BOOL;
  }
  if (op == "Concat") {
    for (const ir::Value* input : node->inputs()) {
      if (!isBoolean(input, depth + 1)) return false;
    }
    return node->inputCount() > 0;
  }
  static const std::unordered_set<std::string> kDataMovement = {
      "Slice", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Expand", "Transpose", "Gather"};
  if (kDataMovement.count(op) > 0) return isBoolean(node->input(0), depth + 1);
  return false;
}

}  // namespace roformer::passes::attention
