// Structural checks of the IR, run after every pass under --verify-each.
#pragma once

#include "absl/status/status.h"
#include "ir/Graph.h"

namespace roformer::ir {

struct VerifyOptions {
  // Also run ONNX's checker on the exported model (slower on large models).
  bool runOnnxChecker = true;
};

// Checks the IR's invariants (use lists match node inputs, every used value
// is defined exactly once, nodes are in topological order, graph outputs are
// defined) and, optionally, ONNX's checker. The error names the node or value.
absl::Status verifyModel(const Model& model, const VerifyOptions& options = {});

}  // namespace roformer::ir
