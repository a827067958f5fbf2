#include "passes/OpsetUpgrade.h"

#include <exception>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "ir/ModelIO.h"
#include "onnx/version_converter/convert.h"

namespace roformer::passes {
namespace {

// Initializers above this size travel to the converter as typed graph inputs
// without data, so the weights are not copied. NOTE: this assumes that no
// adapter on the way needs the values of a large initializer. One that did
// would see a graph input and fail, and the conversion would be rejected.
constexpr uint64_t kDeclareInitializersAbove = 256;

}  // namespace

absl::Status upgradeOnnxOpset(ir::Model& model, int64_t target) {
  std::optional<int64_t> current = model.opsetVersion("");
  if (current.has_value() && *current >= target) return absl::OkStatus();

  for (const auto& node : model.graph().nodes()) {
    if (!node->domain().empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot raise the ONNX opset import to ", target, ": ", node->describe(),
          " is in domain '", node->domain(),
          "', and ONNX 1.12's version converter accepts only ONNX-domain nodes; run this pass "
          "before passes that emit contrib ops"));
    }
  }

  ir::ExportOptions options;
  options.declareInitializersAbove = kDeclareInitializersAbove;
  onnx::ModelProto skeleton = ir::exportModel(model, options);

  onnx::ModelProto converted;
  try {
    converted = onnx::version_conversion::ConvertVersion(skeleton, static_cast<int>(target));
  } catch (const std::exception& error) {
    return absl::FailedPreconditionError(
        absl::StrCat("ONNX's version converter failed to convert the model from opset ",
                     current.value_or(0), " to ", target, ": ", error.what()));
  }

  absl::StatusOr<std::unique_ptr<ir::Model>> imported =
      ir::importModel(std::move(converted), model.baseDir(), "the opset-converted model");
  if (!imported.ok()) {
    return absl::InternalError(absl::StrCat("cannot import the model converted to opset ", target,
                                            ": ", imported.status().message()));
  }

  // Give the declared initializers their data back, sharing the buffers.
  ir::Graph& graph = (*imported)->graph();
  for (const ir::Value* original : model.graph().initializers()) {
    const std::shared_ptr<ir::Tensor>& tensor = original->initializer();
    // Smaller ones were exported with their data.
    if (tensor->byteSize() <= kDeclareInitializersAbove) continue;
    ir::Value* value = graph.findValue(original->name());
    if (value == nullptr || value->producer() != nullptr) {
      return absl::InternalError(absl::StrCat("the model converted to opset ", target,
                                              " lost initializer '", original->name(), "'"));
    }
    if (value->isGraphInput() && !original->isGraphInput()) graph.removeInput(value);
    graph.setInitializer(value, tensor);
  }

  // ONNX 1.12 pairs opset 17 with IR version 8 (onnx.helper.VERSION_TABLE);
  // the converter keeps the model's older IR version.
  if (target >= 17 && (*imported)->header().ir_version() < 8) {
    (*imported)->header().set_ir_version(8);
  }
  (*imported)->setBaseDir(model.baseDir());
  model = std::move(**imported);
  return absl::OkStatus();
}

}  // namespace roformer::passes
