#include "passes/Match.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace roformer::passes {

bool mismatch(MatchFailure* why, std::string reason) {
  if (why != nullptr) why->reason = std::move(reason);
  return false;
}

std::string describeValue(const ir::Value* value) {
  if (value == nullptr) return "an omitted input";
  return absl::StrCat("value '", value->name(), "'");
}

ir::Node* matchProducer(const ir::Value* value, std::string_view opType, MatchFailure* why,
                        std::string_view domain) {
  std::string expected =
      domain.empty() ? std::string(opType) : absl::StrCat(std::string(domain), ".",
                                                          std::string(opType));
  if (value == nullptr) {
    mismatch(why, absl::StrCat("expected an output of ", expected, " but the input is omitted"));
    return nullptr;
  }
  ir::Node* producer = value->producer();
  if (producer == nullptr) {
    mismatch(why, absl::StrCat(describeValue(value), " is not computed by a node (expected ",
                               expected, ")"));
    return nullptr;
  }
  if (!producer->is(opType, domain)) {
    mismatch(why, absl::StrCat(describeValue(value), " is computed by ", producer->describe(),
                               ", not by ", expected));
    return nullptr;
  }
  return producer;
}

std::optional<std::vector<ir::Node*>> matchParentPath(const ir::Node* node,
                                                      std::initializer_list<PathStep> path,
                                                      MatchFailure* why) {
  return matchParentPath(node, std::vector<PathStep>(path), why);
}

std::optional<std::vector<ir::Node*>> matchParentPath(const ir::Node* node,
                                                      const std::vector<PathStep>& path,
                                                      MatchFailure* why) {
  std::vector<ir::Node*> matched;
  matched.reserve(path.size());
  const ir::Node* current = node;
  for (const PathStep& step : path) {
    ir::Node* producer = nullptr;
    if (step.inputIndex == PathStep::kAnyInput) {
      for (const ir::Value* input : current->inputs()) {
        if (input != nullptr && input->producer() != nullptr &&
            input->producer()->is(step.opType, step.domain)) {
          producer = input->producer();
          break;
        }
      }
      if (producer == nullptr) {
        mismatch(why, absl::StrCat("no input of ", current->describe(), " is computed by ",
                                   std::string(step.opType)));
        return std::nullopt;
      }
    } else {
      if (static_cast<size_t>(step.inputIndex) >= current->inputCount()) {
        mismatch(why, absl::StrCat(current->describe(), " has no input ", step.inputIndex));
        return std::nullopt;
      }
      MatchFailure inner;
      producer = matchProducer(current->input(step.inputIndex), step.opType, &inner, step.domain);
      if (producer == nullptr) {
        mismatch(why, absl::StrCat("input ", step.inputIndex, " of ", current->describe(), ": ",
                                   inner.reason));
        return std::nullopt;
      }
    }
    matched.push_back(producer);
    current = producer;
  }
  return matched;
}

std::optional<double> scalarConstant(const ir::Value* value) {
  if (value == nullptr) return std::nullopt;
  if (const ir::Node* cast = value->producer(); cast != nullptr && cast->is("Cast")) {
    absl::StatusOr<int64_t> to = cast->intAttribute("to", 0);
    bool toFloat = to.ok() && (*to == static_cast<int64_t>(ir::DataType::kFloat) ||
                               *to == static_cast<int64_t>(ir::DataType::kDouble));
    return toFloat ? scalarConstant(cast->input(0)) : std::nullopt;
  }
  std::shared_ptr<ir::Tensor> tensor = ir::constantOf(value);
  if (tensor == nullptr || tensor->rank() > 1 || tensor->elementCount() != 1) return std::nullopt;
  // NOTE: float16 and bfloat16 constants are not decoded (toDoubleVector
  // returns nullopt for them), so patterns in half precision do not match.
  std::optional<std::vector<double>> values = tensor->toDoubleVector();
  if (!values || values->size() != 1) return std::nullopt;
  return values->front();
}

bool matchScalarConstant(const ir::Value* value, double expected, double tolerance,
                         std::string_view role, MatchFailure* why) {
  std::optional<double> actual = scalarConstant(value);
  if (!actual) {
    return mismatch(why, absl::StrCat(std::string(role), " (", describeValue(value),
                                      ") is not a scalar constant"));
  }
  double scale = std::max(1.0, std::fabs(expected));
  if (!(std::fabs(*actual - expected) <= tolerance * scale)) {
    return mismatch(why, absl::StrCat(std::string(role), " (", describeValue(value), ") is ",
                                      *actual, ", expected ", expected));
  }
  return true;
}

bool isSingleUse(const ir::Value* value) {
  return value != nullptr && value->singleUser() != nullptr;
}

bool requireSingleUse(const ir::Value* value, MatchFailure* why) {
  if (isSingleUse(value)) return true;
  if (value == nullptr) return mismatch(why, "an expected intermediate value is omitted");
  if (value->isGraphOutput()) {
    return mismatch(why, absl::StrCat(describeValue(value),
                                      " is a graph output, so fusing would lose it"));
  }
  std::vector<std::string> users;
  for (const ir::Use& use : value->uses()) users.push_back(use.user->describe());
  return mismatch(why, absl::StrCat(describeValue(value), " has ", value->useCount(),
                                    " uses (", absl::StrJoin(users, ", "),
                                    "), so fusing would lose the extra ones"));
}

bool requireUsersWithin(const ir::Value* value, const std::vector<const ir::Node*>& allowed,
                        MatchFailure* why) {
  if (value == nullptr) return mismatch(why, "an expected intermediate value is omitted");
  if (value->isGraphOutput()) {
    return mismatch(why, absl::StrCat(describeValue(value),
                                      " is a graph output, so fusing would lose it"));
  }
  for (const ir::Use& use : value->uses()) {
    if (std::find(allowed.begin(), allowed.end(), use.user) == allowed.end()) {
      return mismatch(why, absl::StrCat(describeValue(value), " is also used by ",
                                        use.user->describe(),
                                        ", so fusing would lose that use"));
    }
  }
  return true;
}

void eraseUnusedNodes(ir::Graph& graph, std::vector<ir::Node*> nodes) {
  // A pattern may list a node twice; erasing it twice would free it twice.
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  bool progress = true;
  while (progress && !nodes.empty()) {
    progress = false;
    for (auto it = nodes.begin(); it != nodes.end();) {
      bool used = false;
      for (const ir::Value* output : (*it)->outputs()) {
        if (output != nullptr && output->hasUses()) used = true;
      }
      if (used || !graph.eraseNode(*it).ok()) {
        ++it;
        continue;
      }
      it = nodes.erase(it);
      progress = true;
    }
  }
}

std::optional<OperandOrder> commutativeOperands(const ir::Node* node,
                                                const OperandPredicate& predicate,
                                                MatchFailure* why) {
  if (node->inputCount() != 2) {
    mismatch(why, absl::StrCat(node->describe(), " has ", node->inputCount(),
                               " inputs, expected 2"));
    return std::nullopt;
  }
  MatchFailure first;
  if (predicate(node->input(0), &first)) return OperandOrder{0, 1};
  MatchFailure second;
  if (predicate(node->input(1), &second)) return OperandOrder{1, 0};
  mismatch(why, absl::StrCat("neither input of ", node->describe(), " fits: input 0: ",
                             first.reason, ", and input 1: ", second.reason));
  return std::nullopt;
}

std::optional<std::vector<int64_t>> reductionAxes(const ir::Node* node, MatchFailure* why) {
  if (const onnx::AttributeProto* axes = node->findAttribute("axes")) {
    if (axes->type() != onnx::AttributeProto::INTS) {
      mismatch(why, absl::StrCat(node->describe(), " has an 'axes' attribute that is not INTS"));
      return std::nullopt;
    }
    return std::vector<int64_t>(axes->ints().begin(), axes->ints().end());
  }
  const ir::Value* axesInput = node->input(1);
  if (axesInput == nullptr) return std::vector<int64_t>{};
  std::shared_ptr<ir::Tensor> tensor = ir::constantOf(axesInput);
  std::optional<std::vector<int64_t>> axes;
  if (tensor != nullptr) axes = tensor->toInt64Vector();
  if (!axes) {
    mismatch(why, absl::StrCat("the axes of ", node->describe(), " (", describeValue(axesInput),
                               ") are not a constant integer tensor"));
    return std::nullopt;
  }
  return axes;
}

std::optional<int64_t> rankOf(const ir::Value* value) {
  if (value == nullptr) return std::nullopt;
  std::optional<std::vector<ir::Dim>> shape = value->shape();
  if (!shape) return std::nullopt;
  return static_cast<int64_t>(shape->size());
}

bool isLastAxis(int64_t axis, std::optional<int64_t> rank) {
  if (axis == -1) return true;
  return rank.has_value() && *rank > 0 && axis == *rank - 1;
}

}  // namespace roformer::passes
