// Helpers for the fusion passes: walking producer chains by op type and input
// index, reading scalar constants, checking single use and trying both orders
// of a commutative op.
//
// Every helper that can fail takes a `MatchFailure*` (null when the caller does
// not want reasons) and, on failure, stores a sentence naming the node, value
// or constant that broke the pattern. A pass hands that sentence to
// PassContext::remarkMissed, so `--remarks-missed=PASS` explains each miss.
//
// Typical use, anchored on the last node of a pattern and walking up:
//
//   MatchFailure why;
//   auto path = matchParentPath(add, {{"Mul", 0}, {"Div", 0}, {"Sqrt", 1}}, &why);
//   if (!path) {
//     context.remarkMissed(*add, why.reason);
//     continue;  // with the next candidate anchor
//   }
//   ir::Node* mul = (*path)[0];
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ir/Graph.h"

namespace roformer::passes {

// The reason a pattern did not match: one sentence naming the node, value or
// constant where matching stopped.
struct MatchFailure {
  std::string reason;
};

// Stores `reason` in `why` (when `why` is not null) and returns false, so that
// a matcher can end with `return mismatch(why, ...)`.
bool mismatch(MatchFailure* why, std::string reason);

// "value 'name'", for messages.
std::string describeValue(const ir::Value* value);

// Returns the node that produces `value` when it is `opType` in `domain`
// ("" is the ONNX domain); otherwise null, with a reason.
ir::Node* matchProducer(const ir::Value* value, std::string_view opType, MatchFailure* why,
                        std::string_view domain = "");

// One step of a producer path: follow input `inputIndex` of the current node
// and require its producer to be `opType` in `domain`. kAnyInput tries the
// inputs in order and takes the first whose producer has that op type. It
// does not backtrack when a later step then fails.
struct PathStep {
  static constexpr int kAnyInput = -1;
  std::string_view opType;
  int inputIndex = 0;
  std::string_view domain = "";
};

// Walks from `node` up through `path` and returns the matched producers in
// path order, so element i is the node reached by step i. On failure it
// returns nullopt with a reason naming the step that failed.
std::optional<std::vector<ir::Node*>> matchParentPath(const ir::Node* node,
                                                      std::initializer_list<PathStep> path,
                                                      MatchFailure* why);
std::optional<std::vector<ir::Node*>> matchParentPath(const ir::Node* node,
                                                      const std::vector<PathStep>& path,
                                                      MatchFailure* why);

// Returns the value of a constant (initializer or Constant node) of shape []
// or [1], converted to double. Any float, double or integer element type is
// accepted, and anything else gives nullopt. A constant of shape [1, 1] is not
// a scalar here because broadcasting it can raise the rank of the result.
// A Cast to float or double of such a constant is read through, as ONNX's
// function expansions write `Cast(Constant)` for attribute values.
std::optional<double> scalarConstant(const ir::Value* value);

// Checks that `value` is a scalar constant (as scalarConstant reads it) within
// `tolerance` of `expected`, relative to max(1, |expected|). `role` names the
// constant in the reason, for example "the GELU half factor".
bool matchScalarConstant(const ir::Value* value, double expected, double tolerance,
                         std::string_view role, MatchFailure* why);

// True when exactly one node input uses `value` and it is not a graph output,
// so a fusion may remove it without losing a result.
bool isSingleUse(const ir::Value* value);

// isSingleUse with a reason naming the value and its users.
bool requireSingleUse(const ir::Value* value, MatchFailure* why);

// Checks that every use of `value` is an input of one of `allowed` and that
// it is not a graph output, so that removing the `allowed` nodes loses no
// result. For intermediates that a pattern reads more than once, such as
// `d` in `Mul(d, d)`.
bool requireUsersWithin(const ir::Value* value, const std::vector<const ir::Node*>& allowed,
                        MatchFailure* why);

// Operand positions of a binary commutative node (Add, Mul): `matched` is the
// input that satisfied the predicate, `other` the remaining one.
struct OperandOrder {
  int matched = 0;
  int other = 1;
};

using OperandPredicate = std::function<bool(const ir::Value*, MatchFailure*)>;

// Tries input 0, then input 1 of the two-input node `node` against
// `predicate` and returns the first order that satisfies it. When neither
// does, it returns nullopt with a reason quoting why each input failed.
std::optional<OperandOrder> commutativeOperands(const ir::Node* node,
                                                const OperandPredicate& predicate,
                                                MatchFailure* why);

// Returns the axes of a Reduce* node, from its `axes` attribute (ReduceMean
// up to opset 17) or its constant second input (opset 18). When they are
// neither, it returns nullopt with a reason. An empty result means that no
// axes were given, which ONNX reads as all axes unless the node sets
// `noop_with_empty_axes`; callers must check that attribute themselves.
std::optional<std::vector<int64_t>> reductionAxes(const ir::Node* node, MatchFailure* why);

// The rank of `value` when its shape is known.
std::optional<int64_t> rankOf(const ir::Value* value);

// Erases the nodes of a replaced pattern whose outputs are no longer used,
// repeating until none is left or none can go. A node whose output is still
// used stays, so a caller can leave shared producers to dce.
void eraseUnusedNodes(ir::Graph& graph, std::vector<ir::Node*> nodes);

// True when `axis` names the last axis of a tensor of rank `rank`: -1 always,
// and rank - 1 when the rank is known.
bool isLastAxis(int64_t axis, std::optional<int64_t> rank);

}  // namespace roformer::passes
