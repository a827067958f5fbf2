// Dims of a matched attention block in terms of its input x [batch, sequence,
// in], and proofs that Reshapes keep them. fuse-rotary-attention uses them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ir/Graph.h"
#include "passes/Match.h"
#include "passes/ShapeTerms.h"

namespace roformer::passes::attention {

// A dim of a matched value: the batch or sequence dim of the block input x, a
// known size, or batch * sequence (the rows of tensordot's 2-D MatMul).
struct LogicalDim {
  enum class Kind { kBatch, kSequence, kBatchTimesSequence, kConstant };
  Kind kind = Kind::kConstant;
  int64_t size = 0;

  static LogicalDim batch() { return {Kind::kBatch, 0}; }
  static LogicalDim sequence() { return {Kind::kSequence, 0}; }
  static LogicalDim batchTimesSequence() { return {Kind::kBatchTimesSequence, 0}; }
  static LogicalDim constant(int64_t size) { return {Kind::kConstant, size}; }
  bool operator==(const LogicalDim&) const = default;
};
using Layout = std::vector<LogicalDim>;

// "batch", "sequence", "batch*sequence" or the size, for messages.
std::string dimName(const LogicalDim& dim);

// Relates dims of values to the block input x [batch, sequence, in]: through
// the layouts the matcher registers for the values it matched, and through the
// inferred shapes of other values (known sizes, or the same symbol as x).
// Failing those, it traces both dims to a common origin.
class DimContext {
 public:
  DimContext(const ir::Value* x, DimProvenance& provenance);

  void setLayout(const ir::Value* value, Layout layout) { layouts_[value] = std::move(layout); }
  const Layout* layout(const ir::Value* value) const {
    auto it = layouts_.find(value);
    return it == layouts_.end() ? nullptr : &it->second;
  }

  std::optional<int64_t> rank(const ir::Value* value) const;

  // Replaces batch and sequence by their sizes when x's shape gives them, so
  // that a constant 128 and "sequence" compare equal when s is fixed to 128.
  LogicalDim canonical(LogicalDim dim) const;

  bool same(const LogicalDim& a, const LogicalDim& b) const { return canonical(a) == canonical(b); }

  // The fixed sequence length, when x's shape gives it.
  std::optional<int64_t> fixedSequence() const { return sequence_.value; }

  // Dim `axis` of `value` as a logical dim, or nullopt when nothing proves it.
  std::optional<LogicalDim> resolve(const ir::Value* value, int64_t axis) const;
  std::optional<LogicalDim> resolve(const DimTerm& term) const;

  // Checks that `reshape` turns its input, whose layout must be registered,
  // into `expected`. Its target may be constant or computed by shape plumbing.
  bool checkReshape(const ir::Node* reshape, const Layout& expected, MatchFailure* why) const;

 private:
  // Element counts as batch^i * sequence^j * constant, compared term by term.
  bool sameElementCount(const Layout& a, const Layout& b) const;

  DimProvenance& provenance_;
  ir::Dim batch_;
  ir::Dim sequence_;
  std::optional<DimOrigin> batchOrigin_;
  std::optional<DimOrigin> sequenceOrigin_;
  std::unordered_map<const ir::Value*, Layout> layouts_;
};

}  // namespace roformer::passes::attention
