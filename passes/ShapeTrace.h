// Reading the entries of shape tensors that a graph computes, such as
// Concat(Gather(Cast(Shape(x)), [0, 1]), [768]): which entries are constants
// and which are dims of some value. Used to fold shape arithmetic whose dims
// are known and to prove computed Reshape shapes equal to constant ones.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ir/Graph.h"

namespace roformer::passes {

// One entry of a 1-D integer tensor as far as the graph shows it.
struct ShapeEntry {
  enum class Kind { kConstant, kDimOf, kUnknown };
  Kind kind = Kind::kUnknown;
  int64_t constant = 0;
  // For kDimOf: the entry is dim `axis` of `of`.
  const ir::Value* of = nullptr;
  int64_t axis = 0;

  static ShapeEntry known(int64_t value) { return {Kind::kConstant, value, nullptr, 0}; }
  static ShapeEntry dimOf(const ir::Value* value, int64_t axis) {
    return {Kind::kDimOf, 0, value, axis};
  }
  static ShapeEntry unknown() { return {}; }
};

// Returns the entries of the 1-D or scalar integer tensor `value`, following
// Shape (with start and end), Cast between integer types, Concat, Gather and
// Slice with constant indices, Squeeze, Unsqueeze, Reshape and Identity of
// single entries, and single-entry reductions. Entries of other producers are
// kUnknown when the value's length is known; nullopt when even that is not.
std::optional<std::vector<ShapeEntry>> traceEntries(const ir::Value* value);

// The inferred dim a kDimOf entry refers to, or nullopt.
std::optional<ir::Dim> dimOfEntry(const ShapeEntry& entry);

// The entry's value when it is a constant or a dim that inference found.
std::optional<int64_t> knownEntryValue(const ShapeEntry& entry);

// True when `entry` is provably dim `axis` of `value`, whose inferred dims
// are `dims` (may be absent): the same value and axis, a positive constant
// equal to a known dim, or a dim equal by sameDim.
bool entryEqualsDim(const ShapeEntry& entry, const ir::Value* value, int64_t axis,
                    const std::optional<std::vector<ir::Dim>>& dims);

// "[64, dim 0 of 'x', ?]", for remarks.
std::string describeEntries(const std::vector<ShapeEntry>& entries);

}  // namespace roformer::passes
