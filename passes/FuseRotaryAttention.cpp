// fuse-rotary-attention: replaces each rotary self-attention block of a
// bert4keras RoFormer, as tf2onnx exports it, with two com.microsoft
// RotaryEmbedding nodes and one com.microsoft MultiHeadAttention node. Both
// are ONNX Runtime contrib ops, whose semantics docs/ops.md gives.
//
// The pattern is anchored on the Softmax and walked in named steps:
//
//                          x [b, s, in]
//          .-----------------+-----------------.          projections
//   Add(MatMul(x, Wq), bq)   ... Wk, bk         ... Wv, bv (MatMul on 3-D x, or
//          |                 |                 |           tensordot's Reshape
//   Reshape [b,s,H,d]    Reshape [b,s,H,d]   Reshape      -> MatMul -> Reshape)
//          q4                k4                v4          head split
//          |                 |                 |
//   q4 * cos_pos + rot(q4) * sin_pos   (same for k4)       rotary
//          |                 |                 |
//   Einsum("bjhd,bkhd->bhjk", q, k)            |           scores
//     or MatMul(Transpose(q, 0213), Transpose(k, 0231))
//          |                                   |
//   Mul(1/sqrt(d)) or Div(sqrt(d))             |           scale
//          |                                   |
//   scores * m + c * (1 - m)                   |           mask
//     m = Unsqueeze_{1,2}(Cast<float>(mask [b, s] : bool))
//          |                                   |
//   Softmax(axis -1)                           |
//          |                                   |
//   Einsum("bhjk,bkhd->bjhd", p, v4)  <--------'           context
//     or Transpose(MatMul(p, Transpose(v4, 0213)), 0213)
//          |
//   Reshape [b, s, H*d]  --> output
//
//   rot(t) = Reshape(Concat_4(Unsqueeze_4(Neg(t[..., 1::2])), Unsqueeze_4(t[..., ::2])), [b,s,H,d])
//
// and rewritten to
//
//   q   = RotaryEmbedding(Add_q, position_ids, cos_cache, sin_cache)   interleaved=1, num_heads=H
//   k   = RotaryEmbedding(Add_k, position_ids, cos_cache, sin_cache)
//   out = MultiHeadAttention(q, k, Add_v, <none>, Cast<int32>(mask))  num_heads=H,
//                                                 scale=the graph's, mask_filter_value=c
//
// Rotary tables. cos_pos [1, s, 1, d] repeats every odd column of the
// sinusoid table twice and sin_pos every even column:
//
//   cos_pos = Concat_3(p0, p0, p1, p1, ...),  p = Split_3(Unsqueeze_2(table[..., 1::2])) (d/2)
//   sin_pos = the same from table[..., 0::2]
//   table [1, s, d] = Reshape(Concat_3(Unsqueeze_3(Sin(a)), Unsqueeze_3(Cos(a))), [1, s, d])
//   a = Einsum("bn,d->bnd", pos, w)  or  Unsqueeze_2(pos) * w
//   pos = Unsqueeze_0(Cast<float>(Range(0, s, 1)))
//   w_i = 10000^(-2i/d): a constant, or Pow(10000, e) with constant exponents e
//
// With a fixed sequence length constant folding turns cos_pos and sin_pos into
// constants. Then every element must be within tableTolerance(p) of
// cos/sin(p * 10000^(-2i/d)) and the two columns of each pair must be equal.
// Otherwise the structure above must match, with base 10000 and exponents
// -2i/d. Both checks reject the layout that rotates halves (i, i + d/2).
//
// Caches and positions. cos_cache/sin_cache [max_s, d/2] hold row p of the
// verified table (folded) or cos/sin(float(p) * w_i) computed in float32 as the
// graph does. max_s is the `max-seq-len` option, or else the fixed sequence
// length; with neither the block is left unfused. position_ids is the
// one-element int64 tensor [0]: ONNX Runtime 1.30 reads a one-element tensor as
// an offset, so token t uses cache row t, and it rejects [1, s] for batches
// above 1.
//
// Why the mask gives the same softmax. The export computes
// scores * m + c * (1 - m): a kept key's score is unchanged (c * 0 is -0, which
// adds nothing) and a masked key's score is exactly c. MultiHeadAttention with
// key_padding_mask adds mask_filter_value to the scores of masked keys instead
// of replacing them (ONNX Runtime 1.30's CPU kernel: scores = scale * Q K' +
// mask, checked by running it), so with mask_filter_value = c a masked key
// scores fl(s + c). The pass requires |c| >= 2^35, where floats are at least
// 4096 apart, so fl(s + c) == c for every score |s| < 2048. Both graphs then
// feed Softmax the same values, including rows where every key is masked
// (uniform weights in both). ONNX Runtime's default mask_filter_value -10000
// would differ there: such a row would become softmax(s).
//
// Not matched: other rotary layouts, attention without the padding mask,
// masks that are not a bool [b, s] tensor cast to float, a scale other than
// 1/sqrt(d), inputs other than float, and patterns whose intermediate values
// have users outside the block. `--remarks-missed=fuse-rotary-attention`
// prints, for each Softmax that did not fuse, the node or constant that broke
// the pattern.
#include <cmath>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ir/Schemas.h"
#include "passes/AttentionDims.h"
#include "passes/AttentionPatterns.h"
#include "passes/Match.h"
#include "passes/Passes.h"
#include "passes/RotaryTables.h"
#include "passes/ShapeTerms.h"

namespace roformer::passes {
namespace {

using namespace attention;

// The smallest |c| accepted as the masked score; see the top comment.
constexpr double kMinMaskMagnitude = 0x1p35;

// ---------------------------------------------------------------------------
// The matched block

struct Projection {
  ir::Value* output = nullptr;  // [b, s, out], what the fused nodes read
  ir::Value* input = nullptr;   // x
  int64_t outSize = 0;
  ir::Node* matmul = nullptr;
  ir::Node* innerReshape = nullptr;  // tensordot form only
  ir::Node* outerReshape = nullptr;  // tensordot form only
};

// One of the two rotated branches (Q or K).
struct RotaryBranch {
  ir::Value* rotated = nullptr;   // [b, s, H, d] after the rotation
  ir::Value* heads = nullptr;     // q4 / k4
  ir::Node* headSplit = nullptr;  // Reshape(projection, [b, s, H, d])
  ir::Value* cosPos = nullptr;
  ir::Value* sinPos = nullptr;
  ir::Node* rotateReshape = nullptr;
  ir::Node* oddSlice = nullptr;
  ir::Node* evenSlice = nullptr;
  Projection projection;
};

struct AttentionMatch {
  ir::Node* softmax = nullptr;
  RotaryBranch query;
  RotaryBranch key;
  ir::Value* valueHeads = nullptr;
  ir::Node* valueSplit = nullptr;
  Projection value;
  ir::Value* scores = nullptr;
  double scale = 0;
  ir::Value* mask = nullptr;  // bool [b, s]
  double maskValue = 0;
  ir::Value* context = nullptr;
  ir::Node* outputReshape = nullptr;
  int64_t heads = 0;
  int64_t headSize = 0;
  int64_t hidden = 0;
  RotaryTable table;
  // Nodes of the block that the fusion replaces; each must become dead.
  std::vector<ir::Node*> core;
};

// ---------------------------------------------------------------------------
// The matcher, one method per step

class AttentionMatcher {
 public:
  explicit AttentionMatcher(ir::Node* softmax) { match_.softmax = softmax; }

  bool run(MatchFailure* why) {
    if (!matchSoftmax(why)) return false;
    if (!matchMask(why)) return false;
    if (!matchScale(why)) return false;
    if (!matchScores(why)) return false;
    if (!matchContext(why)) return false;
    if (!matchRotary(match_.query, "query", why)) return false;
    if (!matchRotary(match_.key, "key", why)) return false;
    if (!matchProjections(why)) return false;
    if (!matchHeadSplit(why)) return false;
    if (!checkRotation(match_.query, why) || !checkRotation(match_.key, why)) return false;
    if (!checkScaleAndMask(why)) return false;
    if (!checkOutput(why)) return false;
    return verifyTables(why);
  }

  AttentionMatch& result() { return match_; }
  const DimContext& dims() const { return *dims_; }

 private:
  void addCore(std::initializer_list<ir::Node*> nodes) {
    match_.core.insert(match_.core.end(), nodes.begin(), nodes.end());
  }

  // ---- softmax: the anchor ----
  bool matchSoftmax(MatchFailure* why) {
    ir::Node* softmax = match_.softmax;
    auto axis = softmax->intAttribute("axis", -1);
    // Before opset 13 Softmax flattens the input from `axis`. On rank 4 both
    // -1 and 3 still mean the last axis there, so one check covers every opset.
    if (!axis.ok() || (*axis != -1 && *axis != 3)) {
      return mismatch(why, absl::StrCat("Softmax axis is ", axis.ok() ? *axis : 0,
                                        ", expected the last axis of the scores"));
    }
    if (softmax->output(0)->elemType() != ir::DataType::kUndefined &&
        softmax->output(0)->elemType() != ir::DataType::kFloat) {
      return mismatch(why, "the scores are not float32");
    }
    addCore({softmax});
    return true;
  }

  // ---- mask: scores * m + c * (1 - m) ----
  bool matchMask(MatchFailure* why) {
    ir::Node* add = matchProducer(match_.softmax->input(0), "Add", why);
    if (add == nullptr) return false;
    std::string lastReason;
    for (int order = 0; order < 2; ++order) {
      MatchFailure inner;
      ir::Node* kept = matchProducer(add->input(order), "Mul", &inner);
      ir::Node* penalty = matchProducer(add->input(1 - order), "Mul", &inner);
      if (kept == nullptr || penalty == nullptr) {
        lastReason = inner.reason;
        continue;
      }
      // penalty = c * (1 - m), either operand order.
      for (int penaltyOrder = 0; penaltyOrder < 2; ++penaltyOrder) {
        auto c = scalarConstant(penalty->input(penaltyOrder));
        ir::Node* sub = matchProducer(penalty->input(1 - penaltyOrder), "Sub", &inner);
        if (!c || sub == nullptr) continue;
        auto one = scalarConstant(sub->input(0));
        if (!one || *one != 1.0) {
          lastReason = absl::StrCat(sub->describe(), " does not compute 1 - m");
          continue;
        }
        ir::Value* m = sub->input(1);
        int maskIndex = kept->input(0) == m ? 0 : kept->input(1) == m ? 1 : -1;
        if (maskIndex < 0) {
          lastReason = absl::StrCat(kept->describe(), " does not multiply the scores by the mask ",
                                    describeValue(m), " that ", sub->describe(), " inverts");
          continue;
        }
        match_.maskValue = *c;
        // c * (1 - m) does not depend on the scores, so layers may share it
        // after cse. It is erased with the block only when nothing else uses it.
        addCore({add, kept});
        scaled_ = kept->input(1 - maskIndex);
        return matchMaskSource(m, why);
      }
      if (lastReason.empty()) {
        lastReason = absl::StrCat(penalty->describe(), " is not a constant times (1 - mask)");
      }
    }
    return mismatch(why, absl::StrCat("the Softmax input ", describeValue(add->output(0)),
                                      " is not scores * m + c * (1 - m): ", lastReason));
  }

  // m = Unsqueeze(axes 1 and 2) of Cast<float>(mask), the Unsqueezes in any
  // grouping; mask must be a bool [b, s] tensor, so m is 0 or 1 per key.
  bool matchMaskSource(ir::Value* m, MatchFailure* why) {
    std::vector<std::vector<int64_t>> unsqueezeSteps;  // outermost first
    ir::Node* cast = nullptr;
    ir::Value* current = m;
    while (current->producer() != nullptr) {
      ir::Node* node = current->producer();
      if (node->is("Unsqueeze")) {
        auto axes = squeezeAxes(node);
        if (!axes) return mismatch(why, absl::StrCat(node->describe(), " has no constant axes"));
        unsqueezeSteps.push_back(*axes);
      } else if (node->is("Cast") && cast == nullptr) {
        cast = node;
      } else {
        break;
      }
      current = node->input(0);
    }
    if (cast == nullptr || castTarget(cast) != static_cast<int64_t>(ir::DataType::kFloat)) {
      return mismatch(why, absl::StrCat("the attention mask ", describeValue(m),
                                        " is not a Cast to float of a bool tensor"));
    }
    if (!isBoolean(cast->input(0))) {
      return mismatch(
          why, absl::StrCat("the attention mask ", describeValue(cast->input(0)), " cast by ",
                            cast->describe(), " is not bool, so it is not a 0/1 padding mask"));
    }
    match_.mask = cast->input(0);

    // Replay the Unsqueezes, innermost first, on the labels of a [b, s] mask.
    std::vector<std::string> labels = {"b", "s"};
    for (auto step = unsqueezeSteps.rbegin(); step != unsqueezeSteps.rend(); ++step) {
      int64_t outputRank = static_cast<int64_t>(labels.size() + step->size());
      std::vector<int64_t> axes;
      for (int64_t axis : *step) axes.push_back(axis < 0 ? axis + outputRank : axis);
      std::sort(axes.begin(), axes.end());
      for (int64_t axis : axes) {
        if (axis < 0 || axis > static_cast<int64_t>(labels.size())) {
          return mismatch(why, "an Unsqueeze of the attention mask has an invalid axis");
        }
        labels.insert(labels.begin() + axis, "1");
      }
    }
    if (labels != std::vector<std::string>{"b", "1", "1", "s"}) {
      return mismatch(why, absl::StrCat("the attention mask ", describeValue(m), " is laid out [",
                                        absl::StrJoin(labels, ", "),
                                        "], expected [b, 1, 1, s]: a padding mask of the keys"));
    }
    std::optional<int64_t> maskRank = rankOf(match_.mask);
    if (maskRank && *maskRank != 2) {
      return mismatch(why, absl::StrCat("the attention mask ", describeValue(match_.mask),
                                        " has rank ", *maskRank, ", expected [b, s]"));
    }
    return true;
  }

  // ---- scale: scores * (1/sqrt(d)) or scores / sqrt(d); d is checked later ----
  bool matchScale(MatchFailure* why) {
    ir::Node* node = scaled_->producer();
    if (node != nullptr && node->is("Mul")) {
      for (int order = 0; order < 2; ++order) {
        if (auto c = scalarConstant(node->input(order))) {
          scaleConstant_ = *c;
          scaleIsDivisor_ = false;
          match_.scores = node->input(1 - order);
          addCore({node});
          return true;
        }
      }
    } else if (node != nullptr && node->is("Div")) {
      if (auto c = scalarConstant(node->input(1))) {
        scaleConstant_ = *c;
        scaleIsDivisor_ = true;
        match_.scores = node->input(0);
        addCore({node});
        return true;
      }
    }
    return mismatch(why, absl::StrCat("the masked scores ", describeValue(scaled_),
                                      " are not scaled by a constant (Mul or Div)"));
  }

  // ---- scores: Q K' per head ----
  bool matchScores(MatchFailure* why) {
    ir::Node* node = match_.scores->producer();
    if (node != nullptr && node->is("Einsum")) {
      if (!matchEinsum(node, "bjhd,bkhd->bhjk", why)) return false;
      match_.query.rotated = node->input(0);
      match_.key.rotated = node->input(1);
      addCore({node});
      return true;
    }
    if (node != nullptr && node->is("MatMul")) {
      ir::Node* queryTranspose = matchProducer(node->input(0), "Transpose", why);
      if (queryTranspose == nullptr || !matchTranspose(queryTranspose, {0, 2, 1, 3}, why)) {
        return false;
      }
      ir::Node* keyTranspose = matchProducer(node->input(1), "Transpose", why);
      if (keyTranspose == nullptr || !matchTranspose(keyTranspose, {0, 2, 3, 1}, why)) {
        return false;
      }
      match_.query.rotated = queryTranspose->input(0);
      match_.key.rotated = keyTranspose->input(0);
      addCore({node, queryTranspose, keyTranspose});
      return true;
    }
    return mismatch(why, absl::StrCat("the scores ", describeValue(match_.scores),
                                      " are not computed by Einsum or MatMul"));
  }

  // ---- context: P V per head, back to [b, s, H, d], then Reshape [b, s, H*d] ----
  bool matchContext(MatchFailure* why) {
    ir::Value* probabilities = match_.softmax->output(0);
    if (!requireSingleUse(probabilities, why)) return false;
    ir::Node* user = probabilities->uses()[0].user;
    if (user->is("Einsum")) {
      if (probabilities->uses()[0].inputIndex != 0) {
        return mismatch(
            why, absl::StrCat(user->describe(), " reads the probabilities as its second operand"));
      }
      if (!matchEinsum(user, "bhjk,bkhd->bjhd", why)) return false;
      match_.valueHeads = user->input(1);
      match_.context = user->output(0);
      addCore({user});
    } else if (user->is("MatMul") && probabilities->uses()[0].inputIndex == 0) {
      ir::Node* valueTranspose = matchProducer(user->input(1), "Transpose", why);
      if (valueTranspose == nullptr || !matchTranspose(valueTranspose, {0, 2, 1, 3}, why)) {
        return false;
      }
      if (!requireSingleUse(user->output(0), why)) return false;
      ir::Node* back = user->output(0)->uses()[0].user;
      if (!back->is("Transpose") || !matchTranspose(back, {0, 2, 1, 3}, why)) {
        return mismatch(why, absl::StrCat("the context ", describeValue(user->output(0)),
                                          " is not transposed back to [b, s, H, d]"));
      }
      match_.valueHeads = valueTranspose->input(0);
      match_.context = back->output(0);
      addCore({user, valueTranspose, back});
    } else {
      return mismatch(why, absl::StrCat("the probabilities feed ", user->describe(),
                                        ", not an Einsum or MatMul with the values"));
    }

    for (const ir::Use& use : match_.context->uses()) {
      if (use.user->is("Reshape") && use.inputIndex == 0) {
        match_.outputReshape = use.user;
        break;
      }
    }
    if (match_.outputReshape == nullptr) {
      return mismatch(why, absl::StrCat("the context ", describeValue(match_.context),
                                        " is not reshaped to [b, s, hidden]"));
    }
    addCore({match_.outputReshape});
    return true;
  }

  // ---- rotary: q4 * cos_pos + rot(q4) * sin_pos ----
  bool matchRotary(RotaryBranch& branch, std::string_view role, MatchFailure* why) {
    MatchFailure inner;
    ir::Node* add = matchProducer(branch.rotated, "Add", &inner);
    if (add == nullptr) {
      return mismatch(why, absl::StrCat("the ", std::string(role), " rotation: ", inner.reason));
    }
    // Of the failed attempts, report the one that matched the most of rot().
    std::string bestReason;
    int bestProgress = -1;
    for (int order = 0; order < 2; ++order) {
      ir::Node* cosMul = add->input(order) ? add->input(order)->producer() : nullptr;
      ir::Node* sinMul = add->input(1 - order) ? add->input(1 - order)->producer() : nullptr;
      if (cosMul == nullptr || sinMul == nullptr || !cosMul->is("Mul") || !sinMul->is("Mul")) {
        continue;
      }
      for (int sinOrder = 0; sinOrder < 2; ++sinOrder) {
        RotaryBranch candidate = branch;
        MatchFailure inner;
        int progress = 0;
        if (!matchRotateHalf(sinMul->input(sinOrder), candidate, progress, &inner)) {
          if (progress > bestProgress) {
            bestProgress = progress;
            bestReason = inner.reason;
          }
          continue;
        }
        int cosIndex = cosMul->input(0) == candidate.heads   ? 0
                       : cosMul->input(1) == candidate.heads ? 1
                                                             : -1;
        if (cosIndex < 0) {
          bestReason = absl::StrCat(cosMul->describe(), " does not multiply ",
                                    describeValue(candidate.heads), ", the value that ",
                                    candidate.rotateReshape->describe(), " rotates");
          continue;
        }
        candidate.cosPos = cosMul->input(1 - cosIndex);
        candidate.sinPos = sinMul->input(1 - sinOrder);
        branch = candidate;
        addCore({add, cosMul, sinMul});
        return true;
      }
    }
    if (bestReason.empty()) {
      bestReason = absl::StrCat(add->describe(), " does not add two products");
    }
    return mismatch(
        why, absl::StrCat("the ", std::string(role), " rotation ", describeValue(branch.rotated),
                          " is not t * cos_pos + rot(t) * sin_pos: ", bestReason));
  }

  // Matches rot(t) = Reshape(Concat_4(Unsqueeze_4(Neg(t[..., 1::2])),
  // Unsqueeze_4(t[..., 0::2])), [b, s, H, d]). `progress` counts the steps
  // matched before a failure: 1 for the Reshape, 2 for the Concat (or the
  // Concat of halves), 3 for both slices.
  bool matchRotateHalf(ir::Value* value, RotaryBranch& branch, int& progress, MatchFailure* why) {
    ir::Node* node = value ? value->producer() : nullptr;
    if (node != nullptr && node->is("Concat")) {
      progress = 2;
      return mismatch(why,
                      absl::StrCat(node->describe(),
                                   " joins two parts along the head axis, which rotates halves "
                                   "(i, i + d/2); only RoFormer's interleaved pairs (2i, 2i+1) "
                                   "are fused"));
    }
    ir::Node* reshape = matchProducer(value, "Reshape", why);
    if (reshape == nullptr) return false;
    progress = 1;
    ir::Node* concat = matchProducer(reshape->input(0), "Concat", why);
    if (concat == nullptr) return false;
    progress = 2;
    if (concat->inputCount() != 2 || !matchIntAttributeAxis(concat, 4, 5, nullptr)) {
      return mismatch(why, absl::StrCat(concat->describe(),
                                        " does not stack two tensors along a new last axis"));
    }
    auto first = matchParentPath(concat, {{"Unsqueeze", 0}, {"Neg", 0}, {"Slice", 0}}, why);
    if (!first) return false;
    auto second = matchParentPath(concat, {{"Unsqueeze", 1}, {"Slice", 0}}, why);
    if (!second) return false;
    ir::Node* oddSlice = (*first)[2];
    ir::Node* evenSlice = (*second)[1];
    progress = 3;
    if (!matchUnsqueezeAxis((*first)[0], 4, 5, why) ||
        !matchUnsqueezeAxis((*second)[0], 4, 5, why)) {
      return false;
    }
    if (!matchStridedSlice(oddSlice, 3, 4, 1, 2, why) ||
        !matchStridedSlice(evenSlice, 3, 4, 0, 2, why)) {
      return false;
    }
    if (oddSlice->input(0) != evenSlice->input(0)) {
      return mismatch(why, absl::StrCat(oddSlice->describe(), " and ", evenSlice->describe(),
                                        " slice different values"));
    }
    branch.heads = oddSlice->input(0);
    branch.rotateReshape = reshape;
    branch.oddSlice = oddSlice;
    branch.evenSlice = evenSlice;
    addCore({reshape, concat, (*first)[0], (*first)[1], oddSlice, (*second)[0], evenSlice});
    return true;
  }

  // ---- projections: Add(MatMul(x, W), b), all three reading the same x ----
  bool matchProjections(MatchFailure* why) {
    match_.query.headSplit = matchProducer(match_.query.heads, "Reshape", why);
    if (match_.query.headSplit == nullptr) return false;
    match_.key.headSplit = matchProducer(match_.key.heads, "Reshape", why);
    if (match_.key.headSplit == nullptr) return false;
    match_.valueSplit = matchProducer(match_.valueHeads, "Reshape", why);
    if (match_.valueSplit == nullptr) return false;
    addCore({match_.query.headSplit, match_.key.headSplit, match_.valueSplit});

    if (!matchProjection(match_.query.headSplit->input(0), match_.query.projection, "query", why) ||
        !matchProjection(match_.key.headSplit->input(0), match_.key.projection, "key", why) ||
        !matchProjection(match_.valueSplit->input(0), match_.value, "value", why)) {
      return false;
    }
    ir::Value* x = match_.query.projection.input;
    if (match_.key.projection.input != x || match_.value.input != x) {
      return mismatch(why,
                      "the query, key and value projections read different inputs, so this "
                      "is not self-attention");
    }
    if (match_.query.projection.outSize != match_.key.projection.outSize ||
        match_.query.projection.outSize != match_.value.outSize) {
      return mismatch(why, "the query, key and value projections have different widths");
    }
    match_.hidden = match_.query.projection.outSize;
    return true;
  }

  bool matchProjection(ir::Value* output, Projection& projection, std::string_view role,
                       MatchFailure* why) {
    auto fail = [&](const std::string& reason) {
      return mismatch(why, absl::StrCat("the ", std::string(role), " projection ",
                                        describeValue(output), ": ", reason));
    };
    MatchFailure inner;
    ir::Node* add = matchProducer(output, "Add", &inner);
    if (add == nullptr) return fail(inner.reason);
    int biasIndex = -1;
    for (int i = 0; i < 2; ++i) {
      auto bias = ir::constantOf(add->input(i));
      if (bias && bias->rank() == 1) biasIndex = i;
    }
    if (biasIndex < 0) return fail(absl::StrCat(add->describe(), " does not add a 1-D bias"));
    ir::Value* product = add->input(1 - biasIndex);
    ir::Node* node = product->producer();
    if (node != nullptr && node->is("Reshape")) {
      projection.outerReshape = node;
      projection.matmul = matchProducer(node->input(0), "MatMul", &inner);
      if (projection.matmul == nullptr) return fail(inner.reason);
      projection.innerReshape = matchProducer(projection.matmul->input(0), "Reshape", &inner);
      if (projection.innerReshape == nullptr) return fail(inner.reason);
      projection.input = projection.innerReshape->input(0);
    } else if (node != nullptr && node->is("MatMul")) {
      projection.matmul = node;
      projection.input = node->input(0);
      std::optional<int64_t> rank = provenance_.rank(projection.input);
      if (rank != 3) {
        return fail(absl::StrCat("cannot prove that ", node->describe(),
                                 " multiplies a 3-D [b, s, in] input"));
      }
    } else {
      return fail(absl::StrCat(describeValue(product), " is not computed by MatMul"));
    }
    auto weight = ir::constantOf(projection.matmul->input(1));
    if (!weight || weight->rank() != 2 || weight->dataType() != ir::DataType::kFloat) {
      return fail(absl::StrCat(projection.matmul->describe(), " has no constant float 2-D weight"));
    }
    auto bias = ir::constantOf(add->input(biasIndex));
    if (bias->dims()[0] != weight->dims()[1]) {
      return fail(absl::StrCat("the bias of ", add->describe(), " has ", bias->dims()[0],
                               " elements but the weight has ", weight->dims()[1], " columns"));
    }
    projection.output = output;
    projection.outSize = weight->dims()[1];
    inSize_ = weight->dims()[0];
    return true;
  }

  // ---- head split: Reshape [b, s, hidden] -> [b, s, H, d] ----
  bool matchHeadSplit(MatchFailure* why) {
    ir::Value* x = match_.query.projection.input;
    dims_ = std::make_unique<DimContext>(x, provenance_);
    DimContext& dims = *dims_;
    const LogicalDim batch = LogicalDim::batch(), sequence = LogicalDim::sequence();
    dims.setLayout(x, {batch, sequence, LogicalDim::constant(inSize_)});
    for (Projection* projection :
         {&match_.query.projection, &match_.key.projection, &match_.value}) {
      if (!registerProjection(*projection, why)) return false;
    }

    // H and d come from the query's target shape; key and value must agree.
    RankOracle rankOracle = [&dims](const ir::Value* value) { return dims.rank(value); };
    MatchFailure inner;
    auto target = evaluateShapeTerms(match_.query.headSplit->input(1), rankOracle, &inner);
    if (!target || target->terms.size() != 4) {
      return mismatch(
          why, absl::StrCat("cannot read the head split ", match_.query.headSplit->describe(),
                            " as [b, s, H, d]", target ? "" : ": ", target ? "" : inner.reason));
    }
    auto heads = dims.resolve(target->terms[2]);
    auto headSize = dims.resolve(target->terms[3]);
    if (!heads || !headSize || heads->kind != LogicalDim::Kind::kConstant ||
        headSize->kind != LogicalDim::Kind::kConstant || heads->size <= 0 || headSize->size <= 0 ||
        heads->size * headSize->size != match_.hidden) {
      return mismatch(
          why, absl::StrCat(match_.query.headSplit->describe(), " does not split the hidden size ",
                            match_.hidden, " into constant heads and head size"));
    }
    match_.heads = heads->size;
    match_.headSize = headSize->size;
    if (match_.headSize % 2 != 0) {
      return mismatch(why, absl::StrCat("the head size ", match_.headSize,
                                        " is odd, so it has no rotary pairs"));
    }

    Layout split = {batch, sequence, LogicalDim::constant(match_.heads),
                    LogicalDim::constant(match_.headSize)};
    for (ir::Node* reshape : {match_.query.headSplit, match_.key.headSplit, match_.valueSplit}) {
      if (!dims.checkReshape(reshape, split, why)) return false;
      dims.setLayout(reshape->output(0), split);
    }
    for (ir::Value* value : {match_.query.rotated, match_.key.rotated, match_.context}) {
      dims.setLayout(value, split);
    }
    return true;
  }

  bool registerProjection(Projection& projection, MatchFailure* why) {
    DimContext& dims = *dims_;
    const LogicalDim out = LogicalDim::constant(projection.outSize);
    Layout projected = {LogicalDim::batch(), LogicalDim::sequence(), out};
    if (projection.innerReshape != nullptr) {
      // Tensordot: Reshape x to [N, in] (any N: the element count fixes it to
      // b*s once the last dim is `in`), MatMul, Reshape back to [b, s, out].
      RankOracle rankOracle = [&dims](const ir::Value* value) { return dims.rank(value); };
      MatchFailure inner;
      auto target = evaluateShapeTerms(projection.innerReshape->input(1), rankOracle, &inner);
      std::optional<LogicalDim> last;
      if (target && target->terms.size() == 2) last = dims.resolve(target->terms[1]);
      if (!last || !dims.same(*last, LogicalDim::constant(inSize_))) {
        return mismatch(
            why, absl::StrCat(projection.innerReshape->describe(), " does not flatten x to [b*s, ",
                              inSize_, "]", target ? "" : ": ", target ? "" : inner.reason));
      }
      dims.setLayout(projection.innerReshape->output(0),
                     {LogicalDim::batchTimesSequence(), LogicalDim::constant(inSize_)});
      dims.setLayout(projection.matmul->output(0), {LogicalDim::batchTimesSequence(), out});
      if (!dims.checkReshape(projection.outerReshape, projected, why)) return false;
      dims.setLayout(projection.outerReshape->output(0), projected);
    } else {
      dims.setLayout(projection.matmul->output(0), projected);
    }
    dims.setLayout(projection.output, projected);
    return true;
  }

  // ---- rotation details that need d: slice ends and the rot() reshape ----
  bool checkRotation(RotaryBranch& branch, MatchFailure* why) {
    DimContext& dims = *dims_;
    if (branch.heads != branch.headSplit->output(0)) {
      return mismatch(why, "internal: the rotated value is not the head split");
    }
    for (ir::Node* slice : {branch.oddSlice, branch.evenSlice}) {
      if (!sliceReachesEnd(slice, match_.headSize)) {
        return mismatch(why, absl::StrCat(slice->describe(), " stops before the end of the head (",
                                          match_.headSize, ")"));
      }
    }
    const LogicalDim batch = LogicalDim::batch(), sequence = LogicalDim::sequence();
    const LogicalDim heads = LogicalDim::constant(match_.heads);
    dims.setLayout(branch.rotateReshape->input(0),
                   {batch, sequence, heads, LogicalDim::constant(match_.headSize / 2),
                    LogicalDim::constant(2)});
    Layout split = {batch, sequence, heads, LogicalDim::constant(match_.headSize)};
    if (!dims.checkReshape(branch.rotateReshape, split, why)) return false;

    if (branch.cosPos != match_.query.cosPos || branch.sinPos != match_.query.sinPos) {
      return mismatch(why, "the query and key rotations use different cos/sin tables");
    }
    return true;
  }

  // ---- the constants: scale 1/sqrt(d), masked score c ----
  bool checkScaleAndMask(MatchFailure* why) {
    double expected = 1.0 / std::sqrt(static_cast<double>(match_.headSize));
    double scale = scaleIsDivisor_ ? 1.0 / scaleConstant_ : scaleConstant_;
    if (std::abs(scale - expected) > kConstantTolerance * expected) {
      return mismatch(why, absl::StrFormat("the scores are scaled by %.9g, not 1/sqrt(%d) = %.9g",
                                           scale, match_.headSize, expected));
    }
    match_.scale = scale;
    if (!(match_.maskValue <= -kMinMaskMagnitude)) {
      return mismatch(
          why, absl::StrFormat("the masked score %g is above -2^35, so adding it to the scores "
                               "(as MultiHeadAttention does) is not the same as replacing them",
                               match_.maskValue));
    }
    auto shape = match_.mask->shape();
    if (shape && shape->size() == 2) {
      const LogicalDim expectedDims[2] = {LogicalDim::batch(), LogicalDim::sequence()};
      for (int axis = 0; axis < 2; ++axis) {
        // Only a dim proven different rejects the mask; see the note below.
        auto dim = dims_->resolve(match_.mask, axis);
        LogicalDim expected = dims_->canonical(expectedDims[axis]);
        if (dim && dim->kind == LogicalDim::Kind::kConstant &&
            expected.kind == LogicalDim::Kind::kConstant && dim->size != expected.size) {
          return mismatch(
              why, absl::StrCat("dim ", axis, " of the attention mask ", describeValue(match_.mask),
                                " is ", dimName(*dim), ", expected ", dimName(expected)));
        }
      }
    }
    // NOTE: a mask dim that is unknown, or not provably equal, is accepted: the
    // original only runs when it broadcasts against [b, H, s, s], and ONNX
    // Runtime checks key_padding_mask against [b, s] when it runs.
    return true;
  }

  // ---- output: Reshape [b, s, H, d] -> [b, s, hidden] ----
  bool checkOutput(MatchFailure* why) {
    Layout merged = {LogicalDim::batch(), LogicalDim::sequence(),
                     LogicalDim::constant(match_.hidden)};
    return dims_->checkReshape(match_.outputReshape, merged, why);
  }

  // ---- tables: folded constants or the computed sinusoid ----
  bool verifyTables(MatchFailure* why) {
    auto table =
        verifyRotaryTables(match_.query.cosPos, match_.query.sinPos, match_.headSize, *dims_, why);
    if (!table) return false;
    match_.table = std::move(*table);
    return true;
  }

  AttentionMatch match_;
  // Per match: the cache must not outlive the rewrite of an earlier block.
  DimProvenance provenance_;
  std::unique_ptr<DimContext> dims_;
  ir::Value* scaled_ = nullptr;
  double scaleConstant_ = 0;
  bool scaleIsDivisor_ = false;
  int64_t inSize_ = 0;
};

// ---------------------------------------------------------------------------
// Dead nodes after the rewrite

// Returns the nodes that become unused once every use of the block's output is
// redirected, in an order where each node comes after all its users. The
// producers of `kept` values stay (the fused nodes read them).
std::vector<ir::Node*> nodesDeadAfterFusion(const AttentionMatch& match,
                                            const std::unordered_set<const ir::Value*>& kept) {
  std::vector<ir::Node*> order = {match.outputReshape};
  std::unordered_set<const ir::Node*> dead = {match.outputReshape};
  for (size_t next = 0; next < order.size(); ++next) {
    for (const ir::Value* input : order[next]->inputs()) {
      if (input == nullptr || kept.count(input) > 0) continue;
      ir::Node* producer = input->producer();
      if (producer == nullptr || dead.count(producer) > 0) continue;
      bool unused = true;
      for (const ir::Value* output : producer->outputs()) {
        if (output == nullptr) continue;
        if (output->isGraphOutput() || kept.count(output) > 0) unused = false;
        for (const ir::Use& use : output->uses()) {
          if (dead.count(use.user) == 0) unused = false;
        }
      }
      if (!unused) continue;
      dead.insert(producer);
      order.push_back(producer);
    }
  }
  return order;
}

// Names the first value of the block that something outside it still uses.
std::string describeExtraUser(const AttentionMatch& match,
                              const std::unordered_set<const ir::Node*>& dead) {
  std::unordered_set<const ir::Node*> core(match.core.begin(), match.core.end());
  for (const ir::Node* node : match.core) {
    if (dead.count(node) > 0) continue;
    for (const ir::Value* output : node->outputs()) {
      if (output == nullptr) continue;
      if (output->isGraphOutput()) {
        return absl::StrCat(describeValue(output), " inside the attention block is a graph output");
      }
      for (const ir::Use& use : output->uses()) {
        if (dead.count(use.user) == 0 && core.count(use.user) == 0) {
          return absl::StrCat(describeValue(output), " inside the attention block is also used by ",
                              use.user->describe(), ", which the fusion would leave without it");
        }
      }
    }
  }
  return "a value inside the attention block is used outside it";
}

// ---------------------------------------------------------------------------
// The pass

class FuseRotaryAttentionPass final : public Pass {
 public:
  FuseRotaryAttentionPass() {
    declareOption("max-seq-len",
                  "Rows of the rotary cos/sin caches, the longest sequence the fused model "
                  "accepts (0: the fixed sequence length of the input)",
                  &maxSeqLen_);
  }

  std::string_view name() const override { return "fuse-rotary-attention"; }
  std::string_view summary() const override {
    return "Fuse RoFormer rotary self-attention into com.microsoft RotaryEmbedding and "
           "MultiHeadAttention";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    if (maxSeqLen_ < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("max-seq-len must be 0 or positive, got ", maxSeqLen_));
    }
    ir::Graph& graph = model.graph();
    state_ = RewriteState{};
    // New nodes go before the block's output Reshape, which keeps the node
    // list topological only if it was to begin with.
    if (auto status = graph.topoSort(); !status.ok()) return status;

    std::vector<ir::Node*> anchors;
    for (const auto& node : graph.nodes()) {
      if (node->is("Softmax")) anchors.push_back(node.get());
    }
    std::unordered_set<const ir::Node*> erased;
    bool changed = false;
    for (ir::Node* softmax : anchors) {
      if (erased.count(softmax) > 0) continue;
      AttentionMatcher matcher(softmax);
      MatchFailure why;
      if (!matcher.run(&why)) {
        context.remarkMissed(*softmax, why.reason);
        continue;
      }
      AttentionMatch& match = matcher.result();

      std::unordered_set<const ir::Value*> kept = {match.query.projection.output,
                                                   match.key.projection.output, match.value.output,
                                                   match.mask};
      std::vector<ir::Node*> dead = nodesDeadAfterFusion(match, kept);
      std::unordered_set<const ir::Node*> deadSet(dead.begin(), dead.end());
      bool coreDies = true;
      for (const ir::Node* node : match.core) coreDies = coreDies && deadSet.count(node) > 0;
      if (!coreDies) {
        context.remarkMissed(*softmax, describeExtraUser(match, deadSet));
        continue;
      }

      auto rows = cacheRows(match, matcher.dims(), context);
      if (!rows.ok()) return rows.status();
      if (*rows == 0) continue;  // remarked

      if (auto status = rewrite(model, match, *rows, dead, erased, context); !status.ok()) {
        return status;
      }
      context.count("attention blocks fused");
      changed = true;
    }
    return changed;
  }

 private:
  struct RewriteState {
    ir::Value* positionIds = nullptr;
    std::vector<std::pair<ir::Value*, ir::Value*>> caches;  // (cos, sin)
    std::unordered_map<const ir::Value*, ir::Value*> maskCasts;
  };

  // Rows of the caches: the option, or the fixed sequence length. Returns 0
  // after a remark when neither is known.
  absl::StatusOr<int64_t> cacheRows(const AttentionMatch& match, const DimContext& dims,
                                    PassContext& context) {
    std::optional<int64_t> needed = dims.fixedSequence();
    if (match.table.folded) needed = match.table.rows;
    if (maxSeqLen_ > 0) {
      if (needed && maxSeqLen_ < *needed) {
        return absl::InvalidArgumentError(
            absl::StrCat("max-seq-len ", maxSeqLen_, " is below the sequence length ", *needed,
                         " of the attention block at ", match.softmax->describe(),
                         "; raise --max-seq-len to at least ", *needed, " or leave it unset"));
      }
      return maxSeqLen_;
    }
    if (needed) return *needed;
    context.remarkMissed(*match.softmax,
                         "the sequence length is not fixed, so the rotary cache size is unknown; "
                         "pass --max-seq-len (or the max-seq-len option) to fuse");
    return 0;
  }

  // cos_cache and sin_cache [rows, d/2]: the folded table's rows, then
  // cos/sin(float(p) * w_i) in float32 as the graph computes them.
  std::pair<ir::Value*, ir::Value*> caches(ir::Graph& graph, const AttentionMatch& match,
                                           int64_t rows, PassContext& context) {
    const int64_t d = match.headSize, half = d / 2;
    std::vector<float> frequencies = match.table.frequencies;
    if (frequencies.empty()) {
      for (int64_t i = 0; i < half; ++i) {
        frequencies.push_back(static_cast<float>(std::pow(kRopeBase, -2.0 * i / d)));
      }
    }
    std::vector<float> cosValues(rows * half), sinValues(rows * half);
    for (int64_t p = 0; p < rows; ++p) {
      for (int64_t i = 0; i < half; ++i) {
        if (match.table.folded && p < match.table.rows) {
          cosValues[p * half + i] = match.table.cosPos->values<float>()[p * d + 2 * i];
          sinValues[p * half + i] = match.table.sinPos->values<float>()[p * d + 2 * i];
          continue;
        }
        float angle = static_cast<float>(p) * frequencies[i];
        cosValues[p * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
        sinValues[p * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
      }
    }
    auto cosTensor = ir::Tensor::create<float>({rows, half}, cosValues);
    auto sinTensor = ir::Tensor::create<float>({rows, half}, sinValues);
    for (const auto& [cosValue, sinValue] : state_.caches) {
      if (cosValue->initializer()->contentEquals(*cosTensor) &&
          sinValue->initializer()->contentEquals(*sinTensor)) {
        return {cosValue, sinValue};
      }
    }
    ir::Value* cosValue = graph.addInitializer("rotary_cos_cache", cosTensor);
    ir::Value* sinValue = graph.addInitializer("rotary_sin_cache", sinTensor);
    cosValue->setTensorType(ir::DataType::kFloat, std::vector<int64_t>{rows, half});
    sinValue->setTensorType(ir::DataType::kFloat, std::vector<int64_t>{rows, half});
    state_.caches.emplace_back(cosValue, sinValue);
    context.count("rotary caches added");
    return {cosValue, sinValue};
  }

  ir::Value* positionIds(ir::Graph& graph) {
    if (state_.positionIds == nullptr) {
      state_.positionIds =
          graph.addInitializer("rotary_position_offset", ir::Tensor::create<int64_t>({1}, {0}));
      state_.positionIds->setTensorType(ir::DataType::kInt64, std::vector<int64_t>{1});
    }
    return state_.positionIds;
  }

  ir::Value* maskAsInt32(ir::Graph& graph, ir::Value* mask, ir::Node* before) {
    auto it = state_.maskCasts.find(mask);
    if (it != state_.maskCasts.end()) return it->second;
    ir::Node* cast = graph.createNode("Cast", "", {mask}, {mask->name() + "_int32"}, before,
                                      graph.uniqueNodeName(mask->name() + "/key_padding_mask"));
    cast->setIntAttribute("to", static_cast<int64_t>(ir::DataType::kInt32));
    if (auto shape = mask->shape()) cast->output(0)->setTensorType(ir::DataType::kInt32, *shape);
    state_.maskCasts.emplace(mask, cast->output(0));
    return cast->output(0);
  }

  absl::Status rewrite(ir::Model& model, AttentionMatch& match, int64_t rows,
                       const std::vector<ir::Node*>& dead,
                       std::unordered_set<const ir::Node*>& erased, PassContext& context) {
    ir::Graph& graph = model.graph();
    ir::registerContribSchemas();
    if (!model.opsetVersion(ir::kMicrosoftDomain)) model.setOpsetVersion(ir::kMicrosoftDomain, 1);

    ir::Node* before = match.outputReshape;
    auto [cosCache, sinCache] = caches(graph, match, rows, context);
    ir::Value* positions = positionIds(graph);
    ir::Value* keyPaddingMask = maskAsInt32(graph, match.mask, before);
    // New nodes go in the Softmax's name scope ("model/layer-3/Softmax" gives
    // "model/layer-3/"), where the block's other nodes were.
    const std::string& anchorName = match.softmax->name();
    size_t slash = anchorName.rfind('/');
    std::string scope = slash == std::string::npos ? "" : anchorName.substr(0, slash + 1);

    auto rotary = [&](const Projection& projection, std::string_view role) {
      ir::Node* node = graph.createNode(
          "RotaryEmbedding", ir::kMicrosoftDomain,
          {projection.output, positions, cosCache, sinCache},
          {absl::StrCat(projection.output->name(), "_rotary")}, before,
          graph.uniqueNodeName(absl::StrCat(scope, "RotaryEmbedding_", std::string(role))));
      node->setIntAttribute("interleaved", 1);
      node->setIntAttribute("num_heads", match.heads);
      node->output(0)->setType(projection.output->type());
      return node->output(0);
    };
    ir::Value* query = rotary(match.query.projection, "query");
    ir::Value* key = rotary(match.key.projection, "key");

    ir::Node* attention =
        graph.createNode("MultiHeadAttention", ir::kMicrosoftDomain,
                         {query, key, match.value.output, nullptr, keyPaddingMask},
                         {absl::StrCat(scope, "MultiHeadAttention_output")}, before,
                         graph.uniqueNodeName(absl::StrCat(scope, "MultiHeadAttention")));
    attention->setIntAttribute("num_heads", match.heads);
    attention->setFloatAttribute("scale", static_cast<float>(match.scale));
    attention->setFloatAttribute("mask_filter_value", static_cast<float>(match.maskValue));
    ir::Value* output = match.outputReshape->output(0);
    attention->output(0)->setType(output->type());
    // x's batch and sequence dims with the hidden width: often more than shape
    // inference knew about the projections and the old output.
    if (auto shape = match.query.projection.input->shape(); shape && shape->size() == 3) {
      std::vector<ir::Dim> dims = {(*shape)[0], (*shape)[1], ir::Dim::known(match.hidden)};
      for (ir::Value* value : {query, key, attention->output(0)}) {
        value->setTensorType(ir::DataType::kFloat, dims);
      }
    }
    graph.replaceAllUsesWith(output, attention->output(0));

    std::vector<ir::Value*> constants;
    for (ir::Node* node : dead) {
      for (ir::Value* input : node->inputs()) {
        if (input != nullptr && input->isInitializer()) constants.push_back(input);
      }
      if (auto status = graph.eraseNode(node); !status.ok()) {
        return absl::InternalError(absl::StrCat("fuse-rotary-attention: cannot erase ",
                                                node->describe(), ": ", status.message()));
      }
      erased.insert(node);
    }
    for (ir::Value* constant : constants) {
      if (constant->isInitializer() && !constant->hasUses() && !constant->isGraphInput()) {
        graph.removeInitializer(constant);
      }
    }
    context.count("nodes removed", static_cast<int64_t>(dead.size()));
    return absl::OkStatus();
  }

  int64_t maxSeqLen_ = 0;
  RewriteState state_;
};

}  // namespace

std::unique_ptr<Pass> createFuseRotaryAttentionPass() {
  return std::make_unique<FuseRotaryAttentionPass>();
}

}  // namespace roformer::passes
