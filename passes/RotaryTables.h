// Verification of the rotary position tables of a RoFormer attention block,
// as fuse-rotary-attention finds them: folded to constants, or still computed
// from the sequence length.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "ir/Graph.h"
#include "passes/AttentionDims.h"
#include "passes/Match.h"

namespace roformer::passes::attention {

// The frequency base of RoFormer's rotary embedding (bert4keras'
// SinusoidalPositionEmbedding).
inline constexpr double kRopeBase = 10000.0;

// Folded tables: the graph computes the angle p * w_i in float32, so it is off
// by about p * 2^-22 (w rounded, then the product rounded) before sin/cos add
// another 2^-24. The tolerance allows four times that, which still rejects any
// other base or position offset.
double tableTolerance(int64_t position);

// The verified tables: either the folded cos_pos/sin_pos constants or the
// frequencies w_i of a computed table.
struct RotaryTable {
  bool folded = false;
  int64_t rows = 0;  // folded only
  std::shared_ptr<ir::Tensor> cosPos;
  std::shared_ptr<ir::Tensor> sinPos;
  std::vector<float> frequencies;  // computed only
};

// Checks that `cosPos` and `sinPos`, which multiply a [b, s, H, d] tensor in
// the rotation, are RoPE's tables for head size `headSize`. In bert4keras'
// interleaved layout, columns 2i and 2i+1 of row p both hold cos (sin) of
// p * 10000^(-2i/d). `dims` relates the table's length to the block's
// sequence dim. Returns the verified table, or nullopt with a reason.
std::optional<RotaryTable> verifyRotaryTables(ir::Value* cosPos, ir::Value* sinPos,
                                              int64_t headSize, DimContext& dims,
                                              MatchFailure* why);

}  // namespace roformer::passes::attention
