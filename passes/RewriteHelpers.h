// Small graph-editing helpers shared by the simplification passes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "ir/Graph.h"

namespace roformer::passes {

// Returns why every use of `from` cannot be redirected to `to` with
// Graph::replaceAllUsesWith, or an empty string when it can. The redirect is
// unsafe when a subgraph reads `from` by name, because the subgraph would keep
// the old name. It is also unsafe when `from` is a graph output and `to`
// cannot take over its name: `to` is a graph input, an initializer or another
// graph output (names of the model's interface), or a subgraph reads `to` by
// name.
std::string replacementBlocker(const ir::Value* from, const ir::Value* to);

// Redirects every use of `from` to `to` (check replacementBlocker first).
// Both are the same tensor, so dims that `from`'s type has and `to`'s type
// lacks are copied to `to`: a graph output keeps the shape it declared even
// when inference has not reached `to` yet, which ONNX's checker requires.
void forwardValue(ir::Graph& graph, ir::Value* from, ir::Value* to);

// Makes `value` a constant: a new initializer holding `tensor` takes over its
// name and every use, and the old value is renamed. The node that produced
// `value` stays until its last output is unused (see eraseIfDead).
ir::Value* replaceWithConstant(ir::Graph& graph, ir::Value* value,
                               std::shared_ptr<ir::Tensor> tensor);

// Erases `node` when none of its outputs is used; returns whether it did.
bool eraseIfDead(ir::Graph& graph, ir::Node* node);

// Erases `node` when it is unused, then every producer of its inputs that
// this leaves unused, and so on up. Appends the erased nodes to `erased`
// (callers iterating over a node list skip those).
void eraseDeadChain(ir::Graph& graph, ir::Node* node, std::unordered_set<const ir::Node*>& erased);

// The model's opset for the default ONNX domain, or 1 when it imports none.
int64_t defaultOpset(const ir::Model& model);

// The elements of a constant integer value (initializer or Constant node),
// or nullopt when the value is not a constant integer tensor.
std::optional<std::vector<int64_t>> constantInts(const ir::Value* value);

// True when both dims are provably equal: both known and equal, or both
// symbolic with the same non-empty name.
bool sameDim(const ir::Dim& a, const ir::Dim& b);

// Normalizes `axis` against `rank` (negative counts from the end); nullopt
// when it is out of range.
std::optional<int64_t> normalizeAxis(int64_t axis, int64_t rank);

// Indices that a Slice node selects from a 1-D input of `length` elements,
// or nullopt when an argument is not a constant or addresses another axis.
// Opsets before 10 give starts, ends and axes as attributes.
std::optional<std::vector<int64_t>> sliceIndices1D(const ir::Node& slice, int64_t length);

// The number of a known dim, the name of a symbolic one, or "?".
std::string dimToString(const ir::Dim& dim);

}  // namespace roformer::passes
