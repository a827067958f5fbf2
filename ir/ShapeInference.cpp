#include "ir/ShapeInference.h"

#include <exception>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "ir/ModelIO.h"
#include "ir/Schemas.h"
#include "onnx/shape_inference/implementation.h"

namespace roformer::ir {

absl::Status inferShapes(Model& model) {
  registerContribSchemas();
  onnx::ModelProto proto = exportForAnalysis(model);
  try {
    onnx::ShapeInferenceOptions options(/*check_type=*/false, /*error_mode=*/0,
                                        /*data_prop=*/true);
    onnx::shape_inference::InferShapes(proto, onnx::OpSchemaRegistry::Instance(), options);
  } catch (const std::exception& error) {
    return absl::InvalidArgumentError(
        absl::StrCat("ONNX shape inference failed: ", error.what()));
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
