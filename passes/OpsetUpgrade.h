// Raising a model's ONNX-domain opset import so that a pass can emit an op
// introduced in a later opset, such as LayerNormalization (opset 17).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "ir/Graph.h"

namespace roformer::passes {

// Converts `model` to ONNX-domain opset `target` with ONNX's version converter
// (onnx::version_conversion::ConvertVersion, ONNX 1.12). The converter
// rewrites the nodes whose signature changed on the way, for example
// Unsqueeze, whose `axes` attribute became an input at opset 13, and leaves
// the others as they are. Does nothing when the model already imports
// `target` or later.
//
// On failure the model is unchanged. FailedPrecondition when a node is in
// another domain, because ONNX 1.12's converter cannot convert such a graph,
// and when the converter rejects the graph (for example Softmax before opset
// 13 with an input of unknown rank); the message carries the converter's.
absl::Status upgradeOnnxOpset(ir::Model& model, int64_t target);

}  // namespace roformer::passes
