// Evaluation of single nodes on constant inputs with the CPU kernels, for
// constant folding. Folding and the runtime share one implementation of
// each op this way.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/Graph.h"
#include "ir/Tensor.h"

namespace roformer::runtime {

// True when the CPU backend has a kernel for the node's op at `opset` (the
// version the model imports for the node's domain). A kernel can still
// reject the node's attributes or input types in evaluateNode.
bool canEvaluate(const ir::Node& node, int64_t opset);

// Runs the node's CPU kernel on `inputs` (one per node input, null for an
// omitted optional input) and returns one tensor per node output, null for
// an omitted one. Errors name the node: no kernel (NotFound), unsupported
// attributes or types (InvalidArgument, Unimplemented), or invalid input
// values. The outputs' sizes are checked after the kernel infers their
// shapes and before anything is allocated: more than `maxOutputBytes` in all,
// or a size that does not fit in 64 bits, is a ResourceExhausted error.
absl::StatusOr<std::vector<std::shared_ptr<ir::Tensor>>> evaluateNode(
    const ir::Node& node, const std::vector<std::shared_ptr<ir::Tensor>>& inputs, int64_t opset,
    int64_t maxOutputBytes = std::numeric_limits<int64_t>::max());

}  // namespace roformer::runtime
