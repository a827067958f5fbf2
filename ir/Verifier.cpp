#include "ir/Verifier.h"

#include <exception>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "ir/ModelIO.h"
#include "ir/Schemas.h"
#include "onnx/checker.h"

namespace roformer::ir {
namespace {

absl::Status verifyUses(const Graph& graph) {
  // Every node input appears in its value's use list and vice versa.
  for (const auto& node : graph.nodes()) {
    for (size_t i = 0; i < node->inputCount(); ++i) {
      const Value* input = node->input(i);
      if (input == nullptr) continue;
      Use expected{node.get(), static_cast<int>(i)};
      if (std::find(input->uses().begin(), input->uses().end(), expected) == input->uses().end()) {
        return absl::InternalError(absl::StrCat("input ", i, " of ", node->describe(), " ('",
                                                input->name(), "') is missing from its use list"));
      }
    }
  }
  for (const Value* value : graph.values()) {
    for (const Use& use : value->uses()) {
      bool present = use.inputIndex == Use::kImplicitUse
                         ? std::find(use.user->implicitInputs().begin(),
                                     use.user->implicitInputs().end(),
                                     value) != use.user->implicitInputs().end()
                         : use.user->input(static_cast<size_t>(use.inputIndex)) == value;
      if (!present) {
        return absl::InternalError(absl::StrCat("value '", value->name(),
                                                "' lists a stale use by ", use.user->describe()));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status verifyDefinitionsAndOrder(const Graph& graph) {
  std::unordered_set<const Value*> defined;
  for (const Value* input : graph.inputs()) defined.insert(input);
  for (const Value* value : graph.initializers()) defined.insert(value);
  for (const auto& node : graph.nodes()) {
    auto check = [&](const Value* input, const std::string& where) -> absl::Status {
      if (input == nullptr || defined.count(input) > 0) return absl::OkStatus();
      if (input->producer() == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, " of ", node->describe(), " ('", input->name(),
                         "') is not produced by any node, initializer or graph input"));
      }
      return absl::InvalidArgumentError(
          absl::StrCat(where, " of ", node->describe(), " ('", input->name(),
                       "') is used before its producer ", input->producer()->describe(),
                       "; the node list is not in topological order"));
    };
    for (size_t i = 0; i < node->inputCount(); ++i) {
      if (auto status = check(node->input(i), absl::StrCat("input ", i)); !status.ok()) {
        return status;
      }
    }
    for (const Value* input : node->implicitInputs()) {
      if (auto status = check(input, "a subgraph input"); !status.ok()) return status;
    }
    for (const Value* output : node->outputs()) {
      if (output == nullptr) continue;
      if (output->producer() != node.get()) {
        return absl::InternalError(absl::StrCat("output '", output->name(), "' of ",
                                                node->describe(), " names another producer"));
      }
      if (!defined.insert(output).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("value '", output->name(), "' is defined more than once"));
      }
    }
  }
  for (const Value* output : graph.outputs()) {
    if (defined.count(output) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("graph output '", output->name(), "' is not defined"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status verifyModel(const Model& model, const VerifyOptions& options) {
  const Graph& graph = model.graph();
  if (auto status = verifyUses(graph); !status.ok()) return status;
  if (auto status = verifyDefinitionsAndOrder(graph); !status.ok()) return status;
  if (!options.runOnnxChecker) return absl::OkStatus();

  registerContribSchemas();
  onnx::ModelProto proto = exportForAnalysis(model);
  try {
    onnx::checker::CheckerContext context;
    context.set_ir_version(static_cast<int>(proto.ir_version()));
    std::unordered_map<std::string, int> opsets;
    for (const auto& opset : proto.opset_import()) {
      opsets[opset.domain()] = static_cast<int>(opset.version());
    }
    context.set_opset_imports(opsets);
    if (!model.baseDir().empty()) context.set_model_dir(model.baseDir().string());
    onnx::checker::LexicalScopeContext scope;
    onnx::checker::check_graph(proto.graph(), context, scope);
  } catch (const std::exception& error) {
    return absl::InvalidArgumentError(absl::StrCat("ONNX checker: ", error.what()));
  }
  return absl::OkStatus();
}

}  // namespace roformer::ir
