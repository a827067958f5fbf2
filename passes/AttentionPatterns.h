// Small matchers shared by fuse-rotary-attention's attention and rotary-table
// steps: Einsum equations, Transpose permutations, axes of Concat, Split and
// Unsqueeze, strided Slices, Casts and bool values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ir/Graph.h"
#include "passes/Match.h"

namespace roformer::passes::attention {

// Relative tolerance of float32 constants that stand for a real number (the
// scale 1/sqrt(d), the frequencies 10000^(-2i/d), the exponents -2i/d):
// rounding to float32 is at most 6e-8 relative, and pow() in float32 adds an
// ulp or two.
inline constexpr double kConstantTolerance = 1e-6;

// Renames the letters of an Einsum equation in order of first appearance, so
// that "bjhd,bkhd->bhjk" and "abcd,aecd->acbe" compare equal.
std::string canonicalEinsum(std::string_view equation);

// Checks that Einsum `node` computes `expected` up to the letters used.
bool matchEinsum(const ir::Node* node, std::string_view expected, MatchFailure* why);

// Checks that Transpose `node` has the permutation `perm`.
bool matchTranspose(const ir::Node* node, const std::vector<int64_t>& perm, MatchFailure* why);

// True when `axis` is `expected` in a tensor of rank `rank`, written either way.
bool isAxis(int64_t axis, int64_t expected, int64_t rank);

// Checks the `axis` attribute of `node` (Concat, Split) against `expected`.
bool matchIntAttributeAxis(const ir::Node* node, int64_t expected, int64_t rank, MatchFailure* why);

// Checks that Unsqueeze `node` inserts exactly axis `expected` into an output of
// rank `outputRank`.
bool matchUnsqueezeAxis(const ir::Node* node, int64_t expected, int64_t outputRank,
                        MatchFailure* why);

// Checks that Slice `node` takes axis `axis` of a rank-`rank` input from
// `start` with step `step`. Callers check the end with sliceReachesEnd once
// they know the axis size.
bool matchStridedSlice(const ir::Node* node, int64_t axis, int64_t rank, int64_t start,
                       int64_t step, MatchFailure* why);

// True when the one-axis Slice `node` ends at or after `size`.
bool sliceReachesEnd(const ir::Node* node, int64_t size);

// The `to` attribute of a Cast node.
std::optional<int64_t> castTarget(const ir::Node* node);

// True when `value` is a bool tensor: by its type, or by the op that computes it.
bool isBoolean(const ir::Value* value, int depth = 0);

}  // namespace roformer::passes::attention
