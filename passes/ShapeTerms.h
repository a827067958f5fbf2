// Reading shape plumbing symbolically, for fusions that must prove what a
// Reshape's target is while it is still computed at run time.
//
// tf2onnx exports compute most Reshape targets from Shape: `Shape(x)`, then
// Cast, Slice or Gather to pick dims, Squeeze/Unsqueeze, and Concat with
// constants. evaluateShapeTerms reads such an integer tensor as a list of
// terms, each a constant, "dim k of value v", or unknown, so that a matcher can
// compare the target with the dims it expects without knowing the sizes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ir/Graph.h"
#include "passes/Match.h"

namespace roformer::passes {

// One element of an integer tensor computed by shape plumbing.
struct DimTerm {
  enum class Kind { kUnknown, kConstant, kDimOf };
  Kind kind = Kind::kUnknown;
  // The element, for kConstant.
  int64_t constant = 0;
  // For kDimOf: the element equals dim `axis` of `value` at run time.
  const ir::Value* value = nullptr;
  int64_t axis = 0;

  static DimTerm unknown() { return DimTerm{}; }
  static DimTerm makeConstant(int64_t c) { return DimTerm{Kind::kConstant, c, nullptr, 0}; }
  static DimTerm dimOf(const ir::Value* v, int64_t a) { return DimTerm{Kind::kDimOf, 0, v, a}; }
};

// The elements of a scalar or 1-D integer tensor, as terms.
struct ShapeTerms {
  std::vector<DimTerm> terms;
  // True for a 0-d tensor, which then has exactly one term.
  bool scalar = false;
};

// Returns the rank of a value when the caller knows it, or nullopt. Shape(v)
// needs the rank of v to produce one term per dim.
using RankOracle = std::function<std::optional<int64_t>(const ir::Value*)>;

// Reads `value` as terms. It follows constants, Shape, Cast between integer
// types, Identity, Slice, Gather along axis 0 with constant indices, Squeeze,
// Unsqueeze, Concat along axis 0 and ReduceProd of a single term. On anything
// else it returns nullopt with a reason naming the node.
std::optional<ShapeTerms> evaluateShapeTerms(const ir::Value* value, const RankOracle& rankOf,
                                             MatchFailure* why);

// The origin of a dim: a known size, a symbolic dim (a graph input's, or one
// shape inference named), or dim `axis` of `value` when the analysis cannot
// look past that value. Two dims with equal origins are equal at run time.
struct DimOrigin {
  std::optional<int64_t> size;
  std::string symbol;
  const ir::Value* value = nullptr;
  int64_t axis = 0;
  bool operator==(const DimOrigin&) const = default;
};

// Traces dims back through the ops that pass them on unchanged. These are
// elementwise ops (with broadcasting, when every input that reaches the dim
// agrees), normalizations, reductions, MatMul by a 2-D weight, Gather of
// embedding rows, Reshape with a readable target, Transpose, Concat and Split
// off their axis, and the com.microsoft ops this project emits. A fusion uses
// it to prove that two values share their batch or sequence dim when shape
// inference left those dims unknown. Results are cached, so an instance must
// not outlive changes to the nodes it has visited.
class DimProvenance {
 public:
  std::optional<DimOrigin> origin(const ir::Value* value, int64_t axis);
  // The rank of `value`: inferred, a constant's, or derived from its producer.
  std::optional<int64_t> rank(const ir::Value* value);

 private:
  std::optional<DimOrigin> trace(const ir::Value* value, int64_t axis, int depth);
  std::optional<int64_t> rankAt(const ir::Value* value, int depth);
  std::optional<DimOrigin> traceElementwise(const ir::Node* node, int64_t axis, int depth);
  std::optional<DimOrigin> traceReduction(const ir::Node* node, int64_t axis, int depth);
  std::optional<DimOrigin> traceReshape(const ir::Node* node, int64_t axis, int depth);

  std::map<std::pair<const ir::Value*, int64_t>, std::optional<DimOrigin>> origins_;
  std::map<const ir::Value*, std::optional<int64_t>> ranks_;
};

// The elements of a constant integer tensor (any width), or nullopt.
std::optional<std::vector<int64_t>> constantIntegers(const ir::Value* value);

// The axes of a Squeeze or Unsqueeze node: its `axes` attribute before opset
// 13, its constant second input from opset 13. nullopt when they are neither
// (for Squeeze, also when no axes are given, which squeezes every 1).
std::optional<std::vector<int64_t>> squeezeAxes(const ir::Node* node);

// The constant parameters of a Slice node (inputs from opset 10, attributes
// before), with the ONNX defaults filled in: axes 0..n-1 and steps 1.
struct SliceParams {
  std::vector<int64_t> starts;
  std::vector<int64_t> ends;
  std::vector<int64_t> axes;
  std::vector<int64_t> steps;
};
std::optional<SliceParams> sliceParams(const ir::Node* node);

// The elements of Transpose's `perm` attribute, or nullopt when it is absent
// (which reverses the axes).
std::optional<std::vector<int64_t>> transposePermutation(const ir::Node* node);

}  // namespace roformer::passes
