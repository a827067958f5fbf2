// Type and shape inference over the IR with ONNX's C++ implementation.
#pragma once

#include "absl/status/status.h"
#include "ir/Graph.h"

namespace roformer::ir {

// Runs ONNX shape inference (with the project's contrib schemas) and stores
// the inferred types on the values. Known types are kept; inference errors
// are returned with the node ONNX names.
absl::Status inferShapes(Model& model);

}  // namespace roformer::ir
