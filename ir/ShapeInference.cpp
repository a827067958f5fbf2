#include "ir/ShapeInference.h"

#include <exception>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "ir/ModelIO.h"
#include "ir/Schemas.h"
#include "onnx/shape_inference/implementation.h"

namespace roformer::ir {
namespace {

absl::Status runOnnxInference(onnx::ModelProto& proto, bool dataPropagation) {
  try {
    onnx::ShapeInferenceOptions options(/*check_type=*/false, /*error_mode=*/0,
                                        dataPropagation);
    onnx::shape_inference::InferShapes(proto, onnx::OpSchemaRegistry::Instance(), options);
  } catch (const std::exception& error) {
    return absl::InvalidArgumentError(
        absl::StrCat("ONNX shape inference failed: ", error.what()));
  }
  return absl::OkStatus();
}

// Whether every input of a Shape node in `proto`'s graph has a type.
bool shapeInputsTyped(const onnx::ModelProto& proto) {
  const onnx::GraphProto& graph = proto.graph();
  std::unordered_set<std::string> typed;
  for (const onnx::TensorProto& initializer : graph.initializer()) typed.insert(initializer.name());
  auto addTyped = [&](const auto& infos) {
    for (const onnx::ValueInfoProto& info : infos) {
      if (info.has_type() && info.type().value_case() != onnx::TypeProto::VALUE_NOT_SET) {
        typed.insert(info.name());
      }
    }
  };
  addTyped(graph.input());
  addTyped(graph.value_info());
  addTyped(graph.output());
  for (const onnx::NodeProto& node : graph.node()) {
    const bool standard = node.domain().empty() || node.domain() == "ai.onnx";
    if (standard && node.op_type() == "Shape" && node.input_size() > 0 &&
        typed.count(node.input(0)) == 0) {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::Status inferShapes(Model& model) {
  registerContribSchemas();
  onnx::ModelProto proto = exportForAnalysis(model);
  // ONNX 1.12's data propagation for Shape reads its input's type without
  // checking that it has one, and crashes when the input is an untyped graph
  // input or follows an op without a schema. So when some Shape input has no
  // type yet, infer types without data propagation first, and propagate
  // data only if that typed every Shape input.
  bool propagate = shapeInputsTyped(proto);
  if (!propagate) {
    if (absl::Status status = runOnnxInference(proto, /*dataPropagation=*/false); !status.ok()) {
      return status;
    }
    propagate = shapeInputsTyped(proto);
  }
  if (propagate) {
    if (absl::Status status = runOnnxInference(proto, /*dataPropagation=*/true); !status.ok()) {
      return status;
    }
  }

  Graph& graph = model.graph();
  auto apply = [&](const onnx::ValueInfoProto& info) {
    Value* value = graph.findValue(info.name());
    if (value == nullptr || !info.has_type()) return;
    if (value->isInitializer() || value->isGraphInput()) return;
    value->setType(info.type());
  };
  for (const auto& info : proto.graph().value_info()) apply(info);
  for (const auto& info : proto.graph().output()) {
    Value* value = graph.findValue(info.name());
    if (value == nullptr || !info.has_type()) continue;
    // Keep a declared output shape unless inference knows more dims.
    if (value->type().value_case() == onnx::TypeProto::VALUE_NOT_SET) {
      value->setType(info.type());
    } else {
      onnx::TypeProto merged = value->type();
      try {
        onnx::shape_inference::mergeShapesAndTypes(info.type(), &merged);
        value->setType(merged);
      } catch (const std::exception&) {
        // Declared and inferred types disagree; keep the declaration.
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace roformer::ir
