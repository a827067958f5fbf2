// fuse-layernorm: replaces the op chains that exporters write for layer
// normalization over the last axis with one ONNX LayerNormalization
// (opset 17, axis = -1, epsilon read from the graph).
//
// The bert4keras form, as tf2onnx exports it:
//
//          x ───────────────┐
//          │                │
//     ReduceMean(-1)        │
//          │ mean           │
//          └──────► Sub(x, mean) = d ──────────────┐
//                    │          │                  │
//                    └─► Mul(d, d) ◄┘              │
//                          │                       │
//                     ReduceMean(-1) = var         │
//                          │                       │
//                     Add(var, epsilon)            │
//                          │                       │
//                        Sqrt = s                  │
//                          │                       │
//                          └─────────────► Div(d, s) = n
//                                                  │
//                                           Mul(n, gamma)
//                                                  │
//                                           Add(·, beta)        anchor
//
// Every accepted variant, in terms of the names above (each Mul and Add in
// either operand order):
//   var = ReduceMean(Mul(d, d)) or ReduceMean(Pow(d, 2))           bert4keras, PyTorch
//   var = Sub(ReduceMean(Mul(x, x) or Pow(x, 2)),
//             Mul(mean, mean) or Pow(mean, 2))                     ONNX's own expansion
//   n   = Div(d, s) or Mul(d, Reciprocal(s)), optionally followed by a Cast to float
//   x   = the input, or Cast-to-float(Flatten(X, axis = last)) when the anchor's only
//         user is Reshape(anchor, Shape(X)): then X is normalized and the Reshape's
//         output replaced, as in ONNX's function expansion of LayerNormalization
//   gamma, beta of shape [D] (D = last dim of x), [1, ..., 1, D] constants,
//         or Flatten(W, axis = 0) of a W of shape [D]
// When a Reshape reads `mean`, or a Reciprocal of `s` feeds only Reshapes (the
// Mean and InvStdDev outputs of ONNX's expansion), those read the fused node's
// Mean and InvStdDev outputs instead, which hold the same values in the same
// order.
//
// Rejected, with a missed remark naming the node or value:
// - a reduction over any axis but the last, or ReduceMean without keepdims;
// - epsilon added anywhere but to the variance under the square root;
// - a Pow exponent other than 2;
// - an intermediate value with a user outside the pattern, which fusing
//   would lose;
// - gamma or beta without a known [D] shape;
// - an input whose element type is not float or whose last dim is unknown;
// - a pattern without beta.
// A model that imports an ONNX opset below 17 is first converted to opset 17
// with ONNX's version converter (see passes/OpsetUpgrade.h). When that fails,
// every matched candidate is reported and the model is left unchanged.
#include <cmath>
#include <memory>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "passes/Match.h"
#include "passes/OpsetUpgrade.h"
#include "passes/Passes.h"

namespace roformer::passes {
namespace {

// The first ONNX opset with LayerNormalization.
constexpr int64_t kLayerNormOpset = 17;

// The values and nodes of a successful match, enough to build the fused node.
struct LayerNormMatch {
  ir::Node* anchor = nullptr;
  ir::Value* input = nullptr;
  ir::Value* gamma = nullptr;
  ir::Value* beta = nullptr;
  // Replacements for constant gamma or beta of shape [1, ..., 1, D].
  std::shared_ptr<ir::Tensor> gammaAsVector;
  std::shared_ptr<ir::Tensor> betaAsVector;
  double epsilon = 0;
  // The value the fused output replaces: the anchor's output, or the output
  // of the Reshape back to the input's shape in the flattened form.
  ir::Value* result = nullptr;
  // Reshapes that read the mean or the inverse standard deviation.
  std::vector<ir::Node*> meanReaders;
  std::vector<ir::Node*> invStdDevReaders;
  // Nodes the fused node replaces.
  std::vector<ir::Node*> nodes;
  const char* variance = "";
};

bool isFloatCast(const ir::Node* node) {
  absl::StatusOr<int64_t> to = node->intAttribute("to", 0);
  return to.ok() && *to == static_cast<int64_t>(ir::DataType::kFloat);
}

// Follows a Cast to float, which is a no-op on the float values this pass
// accepts; returns the Cast in `cast`.
ir::Value* skipFloatCast(ir::Value* value, ir::Node** cast) {
  *cast = nullptr;
  ir::Node* producer = value != nullptr ? value->producer() : nullptr;
  if (producer != nullptr && producer->is("Cast") && isFloatCast(producer)) {
    *cast = producer;
    return producer->input(0);
  }
  return value;
}

// The rank of `value`, from its type or, for the output of Flatten, 2.
std::optional<int64_t> patternRank(const ir::Value* value) {
  if (std::optional<int64_t> rank = rankOf(value)) return rank;
  const ir::Node* producer = value->producer();
  if (producer == nullptr) return std::nullopt;
  if (producer->is("Flatten")) return 2;
  if (producer->is("Cast")) return patternRank(producer->input(0));
  return std::nullopt;
}

// The last dim of `value` when known, from its type or through Cast and a
// Flatten that keeps the last axis.
std::optional<int64_t> lastDim(const ir::Value* value) {
  if (std::optional<std::vector<ir::Dim>> shape = value->shape()) {
    if (!shape->empty() && shape->back().isKnown()) return shape->back().value;
  }
  const ir::Node* producer = value->producer();
  if (producer == nullptr) return std::nullopt;
  if (producer->is("Cast")) return lastDim(producer->input(0));
  if (producer->is("Flatten")) {
    absl::StatusOr<int64_t> axis = producer->intAttribute("axis", 1);
    if (axis.ok() && isLastAxis(*axis, rankOf(producer->input(0)))) {
      return lastDim(producer->input(0));
    }
  }
  return std::nullopt;
}

// Checks that `reduce` is a ReduceMean of `expectedInput` over the last axis
// that keeps the reduced dim. `rank` is the rank of the pattern's input, which
// every value it reduces shares.
bool matchLastAxisMean(const ir::Node* reduce, const ir::Value* expectedInput,
                       std::optional<int64_t> rank, MatchFailure* why) {
  if (reduce->input(0) != expectedInput) {
    return mismatch(why, absl::StrCat(reduce->describe(), " reads ",
                                      describeValue(reduce->input(0)), " instead of ",
                                      describeValue(expectedInput)));
  }
  absl::StatusOr<int64_t> keepdims = reduce->intAttribute("keepdims", 1);
  if (!keepdims.ok() || *keepdims != 1) {
    return mismatch(why, absl::StrCat(reduce->describe(), " does not keep the reduced dim"));
  }
  std::optional<std::vector<int64_t>> axes = reductionAxes(reduce, why);
  if (!axes) return false;
  if (axes->size() != 1 || !isLastAxis(axes->front(), rank)) {
    std::string shown;
    for (int64_t axis : *axes) absl::StrAppend(&shown, shown.empty() ? "" : ", ", axis);
    return mismatch(why, absl::StrCat(reduce->describe(), " reduces axes [", shown,
                                      "], not only the last axis",
                                      rank ? absl::StrCat(" of rank ", *rank) : std::string()));
  }
  return true;
}

// Checks that `node` is Mul(v, v) or Pow(v, 2).
bool matchSquareOf(const ir::Node* node, const ir::Value* v, MatchFailure* why) {
  if (node->is("Mul")) {
    if (node->input(0) == v && node->input(1) == v) return true;
    return mismatch(why, absl::StrCat(node->describe(), " is not the square of ",
                                      describeValue(v)));
  }
  if (node->is("Pow")) {
    if (node->input(0) != v) {
      return mismatch(why, absl::StrCat(node->describe(), " raises ",
                                        describeValue(node->input(0)), ", not ",
                                        describeValue(v)));
    }
    // Exactly 2: any other exponent computes something else.
    return matchScalarConstant(node->input(1), 2.0, 0.0, "the exponent of " + node->describe(),
                               why);
  }
  return mismatch(why, absl::StrCat(node->describe(), " is neither Mul nor Pow"));
}

class LayerNormMatcher {
 public:
  // Matches the pattern ending at `anchor`; on failure returns nullopt with
  // the reason of the operand order that got furthest.
  std::optional<LayerNormMatch> match(ir::Node* anchor, MatchFailure* why) {
    MatchFailure best;
    size_t bestDepth = 0;
    for (int betaIndex : {1, 0}) {
      for (int gammaIndex : {1, 0}) {
        LayerNormMatch m;
        m.anchor = anchor;
        MatchFailure attempt;
        if (matchFrom(anchor, betaIndex, gammaIndex, m, &attempt)) return m;
        if (m.nodes.size() >= bestDepth) {
          bestDepth = m.nodes.size();
          best = attempt;
        }
      }
    }
    mismatch(why, best.reason);
    return std::nullopt;
  }

 private:
  // Tries one operand order of the anchor Add and of the gamma Mul.
  bool matchFrom(ir::Node* anchor, int betaIndex, int gammaIndex, LayerNormMatch& m,
                 MatchFailure* why) {
    m.nodes.push_back(anchor);
    m.beta = anchor->input(betaIndex);
    ir::Node* scale = matchProducer(anchor->input(1 - betaIndex), "Mul", why);
    if (scale == nullptr) return false;
    m.nodes.push_back(scale);
    m.gamma = scale->input(gammaIndex);
    ir::Value* scaled = scale->output();
    if (!requireSingleUse(scaled, why)) return false;

    // n, optionally through a Cast to float.
    ir::Node* outputCast = nullptr;
    ir::Value* normalized = skipFloatCast(scale->input(1 - gammaIndex), &outputCast);
    if (outputCast != nullptr) {
      if (!requireSingleUse(outputCast->output(), why)) return false;
      m.nodes.push_back(outputCast);
    }
    ir::Value* deviation = nullptr;
    ir::Value* stdDev = nullptr;
    ir::Node* divide = nullptr;
    ir::Node* reciprocal = nullptr;
    if (!matchNormalized(normalized, &divide, &reciprocal, &deviation, &stdDev, why)) return false;
    m.nodes.push_back(divide);
    if (reciprocal != nullptr) m.nodes.push_back(reciprocal);
    if (!requireSingleUse(normalized, why)) return false;

    // s = Sqrt(Add(var, epsilon)).
    ir::Node* sqrt = matchProducer(stdDev, "Sqrt", why);
    if (sqrt == nullptr) return false;
    m.nodes.push_back(sqrt);
    ir::Node* addEpsilon = matchProducer(sqrt->input(0), "Add", why);
    if (addEpsilon == nullptr) return false;
    m.nodes.push_back(addEpsilon);
    auto epsilonOrder = commutativeOperands(
        addEpsilon,
        [](const ir::Value* value, MatchFailure* inner) {
          if (scalarConstant(value)) return true;
          return mismatch(inner, absl::StrCat(describeValue(value), " is not a scalar constant"));
        },
        why);
    if (!epsilonOrder) return false;
    m.epsilon = *scalarConstant(addEpsilon->input(epsilonOrder->matched));
    if (!std::isfinite(m.epsilon) || m.epsilon < 0) {
      return mismatch(why, absl::StrCat("epsilon of ", addEpsilon->describe(), " is ", m.epsilon,
                                        ", expected a finite value of at least 0"));
    }
    ir::Value* variance = addEpsilon->input(epsilonOrder->other);
    if (!requireSingleUse(addEpsilon->output(), why)) return false;
    if (!requireSingleUse(variance, why)) return false;

    // d = Sub(x, mean), mean = ReduceMean(x).
    ir::Node* subtract = matchProducer(deviation, "Sub", why);
    if (subtract == nullptr) return false;
    m.nodes.push_back(subtract);
    ir::Value* x = subtract->input(0);
    ir::Value* mean = subtract->input(1);
    ir::Node* meanNode = matchProducer(mean, "ReduceMean", why);
    if (meanNode == nullptr) return false;
    m.nodes.push_back(meanNode);
    std::optional<int64_t> rank = patternRank(x);
    if (!matchLastAxisMean(meanNode, x, rank, why)) return false;

    // The variance, centered or as E[x^2] - E[x]^2.
    std::vector<const ir::Node*> meanUsers = {subtract};
    std::vector<const ir::Node*> deviationUsers = {divide};
    if (!matchVariance(variance, x, mean, deviation, rank, m, &meanUsers, &deviationUsers, why)) {
      return false;
    }

    // Which uses of the intermediates may stay: the mean and inverse standard
    // deviation that ONNX's expansion reshapes into its extra outputs.
    for (const ir::Use& use : mean->uses()) {
      if (use.user->is("Reshape") && use.inputIndex == 0) {
        m.meanReaders.push_back(use.user);
        meanUsers.push_back(use.user);
      }
    }
    if (!requireUsersWithin(mean, meanUsers, why)) return false;
    if (!requireUsersWithin(deviation, deviationUsers, why)) return false;
    std::vector<const ir::Node*> stdDevUsers = {reciprocal != nullptr ? reciprocal : divide};
    if (reciprocal == nullptr) {
      if (!collectInvStdDevReaders(stdDev, m, &stdDevUsers, why)) return false;
    }
    if (!requireUsersWithin(stdDev, stdDevUsers, why)) return false;
    if (reciprocal != nullptr && !requireSingleUse(reciprocal->output(), why)) return false;

    if (!matchInput(x, m, why)) return false;
    return matchAffine(m, why);
  }

  // n = Div(d, s) or Mul(d, Reciprocal(s)).
  bool matchNormalized(ir::Value* normalized, ir::Node** divide, ir::Node** reciprocal,
                       ir::Value** deviation, ir::Value** stdDev, MatchFailure* why) {
    ir::Node* producer = normalized != nullptr ? normalized->producer() : nullptr;
    if (producer != nullptr && producer->is("Div")) {
      *divide = producer;
      *deviation = producer->input(0);
      *stdDev = producer->input(1);
      return true;
    }
    if (producer != nullptr && producer->is("Mul")) {
      auto order = commutativeOperands(
          producer,
          [](const ir::Value* value, MatchFailure* inner) {
            return matchProducer(value, "Reciprocal", inner) != nullptr;
          },
          why);
      if (!order) return false;
      *divide = producer;
      *reciprocal = producer->input(order->matched)->producer();
      *deviation = producer->input(order->other);
      *stdDev = (*reciprocal)->input(0);
      return true;
    }
    return mismatch(why, absl::StrCat(describeValue(normalized), " is computed by ",
                                      producer != nullptr ? producer->describe() : "no node",
                                      ", not by Div or Mul"));
  }

  bool matchVariance(ir::Value* variance, ir::Value* x, ir::Value* mean, ir::Value* deviation,
                     std::optional<int64_t> rank, LayerNormMatch& m, std::vector<const ir::Node*>* meanUsers,
                     std::vector<const ir::Node*>* deviationUsers, MatchFailure* why) {
    ir::Node* producer = variance->producer();
    if (producer != nullptr && producer->is("ReduceMean")) {
      // Centered: ReduceMean(Mul(d, d) or Pow(d, 2)).
      m.nodes.push_back(producer);
      ir::Node* square = producer->input(0) != nullptr ? producer->input(0)->producer() : nullptr;
      if (square == nullptr) {
        return mismatch(why, absl::StrCat(producer->describe(), " does not read a square"));
      }
      if (!matchSquareOf(square, deviation, why)) return false;
      m.nodes.push_back(square);
      if (!requireSingleUse(square->output(), why)) return false;
      if (!matchLastAxisMean(producer, square->output(), rank, why)) return false;
      deviationUsers->push_back(square);
      m.variance = "centered";
      return true;
    }
    if (producer != nullptr && producer->is("Sub")) {
      // E[x^2] - E[x]^2, as ONNX's function expansion computes it.
      m.nodes.push_back(producer);
      ir::Node* meanOfSquare = matchProducer(producer->input(0), "ReduceMean", why);
      if (meanOfSquare == nullptr) return false;
      m.nodes.push_back(meanOfSquare);
      ir::Value* squareValue = meanOfSquare->input(0);
      ir::Node* square = squareValue != nullptr ? squareValue->producer() : nullptr;
      if (square == nullptr) {
        return mismatch(why, absl::StrCat(meanOfSquare->describe(), " does not read a square"));
      }
      if (!matchSquareOf(square, x, why)) return false;
      m.nodes.push_back(square);
      if (!matchLastAxisMean(meanOfSquare, squareValue, rank, why)) return false;
      ir::Node* squareOfMean = producer->input(1) != nullptr ? producer->input(1)->producer()
                                                              : nullptr;
      if (squareOfMean == nullptr) {
        return mismatch(why, absl::StrCat(producer->describe(),
                                          " does not subtract the square of the mean"));
      }
      if (!matchSquareOf(squareOfMean, mean, why)) return false;
      m.nodes.push_back(squareOfMean);
      for (const ir::Value* value : {squareValue, meanOfSquare->output(), squareOfMean->output()}) {
        if (!requireSingleUse(value, why)) return false;
      }
      meanUsers->push_back(squareOfMean);
      m.variance = "mean of squares";
      return true;
    }
    return mismatch(why, absl::StrCat("the variance ", describeValue(variance), " is computed by ",
                                      producer != nullptr ? producer->describe() : "no node",
                                      ", not by ReduceMean or Sub"));
  }

  // Accepts a Reciprocal of the standard deviation that only Reshapes read,
  // as ONNX's expansion computes its InvStdDev output.
  bool collectInvStdDevReaders(ir::Value* stdDev, LayerNormMatch& m,
                               std::vector<const ir::Node*>* stdDevUsers, MatchFailure* why) {
    for (const ir::Use& use : stdDev->uses()) {
      if (!use.user->is("Reciprocal")) continue;
      ir::Value* inverse = use.user->output();
      if (inverse == nullptr || inverse->isGraphOutput()) continue;
      bool onlyReshapes = true;
      for (const ir::Use& inverseUse : inverse->uses()) {
        onlyReshapes = onlyReshapes && inverseUse.user->is("Reshape") && inverseUse.inputIndex == 0;
      }
      if (!onlyReshapes) continue;
      for (const ir::Use& inverseUse : inverse->uses()) m.invStdDevReaders.push_back(inverseUse.user);
      m.nodes.push_back(use.user);
      stdDevUsers->push_back(use.user);
    }
    return true;
  }

  // Resolves the input the fused node normalizes: x itself, or X when x is
  // Cast(Flatten(X)) and the anchor is reshaped back to X's shape.
  bool matchInput(ir::Value* x, LayerNormMatch& m, MatchFailure* why) {
    m.input = x;
    m.result = m.anchor->output();
    ir::Node* inputCast = nullptr;
    ir::Value* uncast = skipFloatCast(x, &inputCast);
    ir::Node* flatten = uncast != nullptr ? uncast->producer() : nullptr;
    if (flatten != nullptr && flatten->is("Flatten")) {
      ir::Value* original = flatten->input(0);
      absl::StatusOr<int64_t> axis = flatten->intAttribute("axis", 1);
      std::optional<int64_t> rank = rankOf(original);
      if (!axis.ok() || !isLastAxis(*axis, rank)) {
        return mismatch(
            why, absl::StrCat(flatten->describe(), " flattens ", describeValue(original),
                              " from axis ", axis.value_or(1),
                              rank ? absl::StrCat(" of rank ", *rank) : std::string(" of unknown rank"),
                              ", so the pattern does not normalize over the last axis alone"));
      }
      ir::Node* reshape = m.anchor->output()->singleUser();
      if (reshape != nullptr && reshape->is("Reshape") && reshape->input(0) == m.anchor->output() &&
          isShapeOf(reshape->input(1), original)) {
        m.input = original;
        m.result = reshape->output();
        m.nodes.push_back(reshape);
        return checkInputType(m.input, why);
      }
    }
    // Without the Reshape back, normalize the (possibly cast) 2-D value.
    if (inputCast != nullptr && uncast != nullptr && uncast->elemType() == ir::DataType::kFloat) {
      m.input = uncast;
    }
    return checkInputType(m.input, why);
  }

  // True when `shape` is Shape(value) or a constant equal to value's dims.
  static bool isShapeOf(const ir::Value* shape, const ir::Value* value) {
    const ir::Node* producer = shape != nullptr ? shape->producer() : nullptr;
    if (producer != nullptr && producer->is("Shape") && producer->input(0) == value &&
        !producer->hasAttribute("start") && !producer->hasAttribute("end")) {
      return true;
    }
    std::shared_ptr<ir::Tensor> constant = ir::constantOf(shape);
    std::optional<std::vector<int64_t>> dims = value->staticShape();
    if (constant == nullptr || !dims) return false;
    std::optional<std::vector<int64_t>> values = constant->toInt64Vector();
    return values.has_value() && *values == *dims;
  }

  static bool checkInputType(const ir::Value* input, MatchFailure* why) {
    if (input->elemType() != ir::DataType::kFloat) {
      return mismatch(why, absl::StrCat("the input ", describeValue(input),
                                        input->elemType() == ir::DataType::kUndefined
                                            ? " has an unknown element type (run infer-shapes first)"
                                            : " is not float"));
    }
    return true;
  }

  // Checks gamma and beta against the normalized dim D.
  bool matchAffine(LayerNormMatch& m, MatchFailure* why) {
    std::optional<int64_t> dim = lastDim(m.input);
    if (!dim) {
      return mismatch(why, absl::StrCat("the last dim of the input ", describeValue(m.input),
                                        " is unknown (run infer-shapes first)"));
    }
    if (!resolveVector(&m.gamma, &m.gammaAsVector, *dim, "gamma", why)) return false;
    return resolveVector(&m.beta, &m.betaAsVector, *dim, "beta", why);
  }

  // Accepts a value of shape [dim], Flatten(axis=0) of one, or a constant of
  // shape [1, ..., 1, dim] (replaced by a [dim] tensor sharing its bytes).
  static bool resolveVector(ir::Value** value, std::shared_ptr<ir::Tensor>* asVector, int64_t dim,
                            std::string_view role, MatchFailure* why) {
    ir::Node* producer = (*value)->producer();
    if (producer != nullptr && producer->is("Flatten")) {
      absl::StatusOr<int64_t> axis = producer->intAttribute("axis", 1);
      ir::Value* flattened = producer->input(0);
      if (axis.ok() && *axis == 0 && flattened->staticShape() == std::vector<int64_t>{dim} &&
          flattened->elemType() == ir::DataType::kFloat) {
        *value = flattened;
        return true;
      }
    }
    if (std::shared_ptr<ir::Tensor> constant = ir::constantOf(*value)) {
      const std::vector<int64_t>& dims = constant->dims();
      bool leadingOnes = !dims.empty() && dims.back() == dim;
      for (size_t i = 0; i + 1 < dims.size(); ++i) leadingOnes = leadingOnes && dims[i] == 1;
      if (leadingOnes && constant->dataType() == ir::DataType::kFloat) {
        if (dims.size() > 1) {
          *asVector = std::make_shared<ir::Tensor>(constant->dataType(), std::vector<int64_t>{dim},
                                                   constant->buffer());
        }
        return true;
      }
      return mismatch(why, absl::StrCat(std::string(role), " ", describeValue(*value),
                                        " is not a float constant of shape [", dim, "]"));
    }
    std::optional<std::vector<int64_t>> shape = (*value)->staticShape();
    if (shape != std::vector<int64_t>{dim} || (*value)->elemType() != ir::DataType::kFloat) {
      return mismatch(why, absl::StrCat(std::string(role), " ", describeValue(*value),
                                        " does not have a known float shape [", dim, "]"));
    }
    return true;
  }
};

// The shape of the Mean and InvStdDev outputs: the input's with the last dim 1.
std::optional<std::vector<int64_t>> statisticsShape(const ir::Value* input) {
  std::optional<std::vector<int64_t>> dims = input->staticShape();
  if (!dims || dims->empty()) return std::nullopt;
  dims->back() = 1;
  return dims;
}

// Points `readers` (Reshapes of a statistic) at `statistic`; a Reshape whose
// output already has the statistic's static shape is removed instead.
void redirectReaders(ir::Graph& graph, const std::vector<ir::Node*>& readers,
                     ir::Value* statistic, const std::optional<std::vector<int64_t>>& shape,
                     std::vector<ir::Node*>* removed) {
  for (ir::Node* reshape : readers) {
    if (shape.has_value() && reshape->output()->staticShape() == shape) {
      graph.replaceAllUsesWith(reshape->output(), statistic);
      removed->push_back(reshape);
    } else {
      reshape->setInput(0, statistic);
    }
  }
}

class FuseLayerNormPass final : public Pass {
 public:
  FuseLayerNormPass() {
    declareOption("upgrade-opset",
                  "Convert a model that imports an ONNX opset below 17 to opset 17 so that "
                  "LayerNormalization can be emitted; when false such models are left unfused",
                  &upgradeOpset_);
  }

  std::string_view name() const override { return "fuse-layernorm"; }
  std::string_view summary() const override {
    return "Fuse layer normalization subgraphs over the last axis into LayerNormalization";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    std::optional<int64_t> opset = model.opsetVersion("");
    if (!opset.has_value() || *opset < kLayerNormOpset) {
      // Convert only when something would fuse, so unrelated models keep their opset.
      if (!anyMatch(model.graph())) {
        reportMisses(model.graph(), context, "");
        return false;
      }
      if (!upgradeOpset_) {
        reportMisses(model.graph(), context,
                     absl::StrCat("matches, but the model imports opset ", opset.value_or(0),
                                  " and LayerNormalization needs 17 (upgrade-opset=false)"));
        return false;
      }
      if (absl::Status status = upgradeOnnxOpset(model, kLayerNormOpset); !status.ok()) {
        reportMisses(model.graph(), context,
                     absl::StrCat("matches, but the model imports opset ", opset.value_or(0),
                                  " and raising it to 17 failed: ", status.message()));
        return false;
      }
      context.count("models converted to opset 17");
    }
    return fuseAll(model.graph(), context);
  }

 private:
  // An Add fed by Mul(n, gamma) with n from Div, Mul(Reciprocal) or Cast:
  // the nodes worth a missed remark when they do not match.
  static bool isCandidate(const ir::Node& node) {
    if (!node.is("Add") || node.inputCount() != 2) return false;
    for (const ir::Value* input : node.inputs()) {
      const ir::Node* scale = input != nullptr ? input->producer() : nullptr;
      if (scale == nullptr || !scale->is("Mul")) continue;
      for (const ir::Value* factor : scale->inputs()) {
        const ir::Node* producer = factor != nullptr ? factor->producer() : nullptr;
        if (producer == nullptr) continue;
        if (producer->is("Div") || producer->is("Cast")) return true;
        if (producer->is("Mul")) {
          for (const ir::Value* operand : producer->inputs()) {
            if (operand != nullptr && operand->producer() != nullptr &&
                operand->producer()->is("Reciprocal")) {
              return true;
            }
          }
        }
      }
    }
    return false;
  }

  static std::vector<ir::Node*> candidates(const ir::Graph& graph) {
    std::vector<ir::Node*> out;
    for (const auto& node : graph.nodes()) {
      if (isCandidate(*node)) out.push_back(node.get());
    }
    return out;
  }

  static bool anyMatch(const ir::Graph& graph) {
    LayerNormMatcher matcher;
    for (ir::Node* anchor : candidates(graph)) {
      if (matcher.match(anchor, nullptr)) return true;
    }
    return false;
  }

  // Reports every candidate: with `matchedReason` for those that match
  // (they are not fused for that reason), and with their own reason otherwise.
  static void reportMisses(const ir::Graph& graph, PassContext& context,
                           std::string_view matchedReason) {
    if (!context.remarksEnabled()) return;
    LayerNormMatcher matcher;
    for (ir::Node* anchor : candidates(graph)) {
      MatchFailure why;
      if (matcher.match(anchor, &why)) {
        if (!matchedReason.empty()) context.remarkMissed(*anchor, matchedReason);
      } else {
        context.remarkMissed(*anchor, why.reason);
      }
    }
  }

  static absl::StatusOr<bool> fuseAll(ir::Graph& graph, PassContext& context) {
    LayerNormMatcher matcher;
    std::unordered_set<const ir::Node*> removed;
    bool changed = false;
    for (ir::Node* anchor : candidates(graph)) {
      if (removed.count(anchor) > 0) continue;
      MatchFailure why;
      std::optional<LayerNormMatch> match = matcher.match(anchor, &why);
      if (!match) {
        context.remarkMissed(*anchor, why.reason);
        continue;
      }
      for (const ir::Node* node : match->nodes) removed.insert(node);
      rewrite(graph, *match);
      context.count("layer normalizations fused");
      context.count(absl::StrCat("with ", match->variance, " variance"));
      changed = true;
    }
    if (changed) {
      // Readers of the statistics may precede the fused node.
      if (absl::Status status = graph.topoSort(); !status.ok()) return status;
    }
    return changed;
  }

  static void rewrite(ir::Graph& graph, LayerNormMatch& m) {
    ir::Value* gamma = m.gamma;
    if (m.gammaAsVector) gamma = graph.addInitializer(m.gamma->name() + "_vector", m.gammaAsVector);
    ir::Value* beta = m.beta;
    if (m.betaAsVector) beta = graph.addInitializer(m.beta->name() + "_vector", m.betaAsVector);

    std::string base = m.anchor->name().empty() ? m.result->name() : m.anchor->name();
    std::vector<std::string> outputs = {
        m.result->name() + "_layernorm",
        m.meanReaders.empty() ? "" : base + "/Mean",
        m.invStdDevReaders.empty() ? "" : base + "/InvStdDev",
    };
    while (!outputs.empty() && outputs.back().empty()) outputs.pop_back();
    ir::Node* fused = graph.createNode("LayerNormalization", "", {m.input, gamma, beta}, outputs,
                                       m.anchor,
                                       graph.uniqueNodeName(base + "/LayerNormalization"));
    fused->setIntAttribute("axis", -1);
    fused->setFloatAttribute("epsilon", static_cast<float>(m.epsilon));
    fused->output(0)->setType(m.input->type());

    std::optional<std::vector<int64_t>> statShape = statisticsShape(m.input);
    for (size_t i = 1; i < fused->outputCount(); ++i) {
      if (fused->output(i) != nullptr && statShape) {
        fused->output(i)->setTensorType(ir::DataType::kFloat, *statShape);
      }
    }
    if (fused->outputCount() > 1 && fused->output(1) != nullptr) {
      redirectReaders(graph, m.meanReaders, fused->output(1), statShape, &m.nodes);
    }
    if (fused->outputCount() > 2 && fused->output(2) != nullptr) {
      redirectReaders(graph, m.invStdDevReaders, fused->output(2), statShape, &m.nodes);
    }
    graph.replaceAllUsesWith(m.result, fused->output(0));
    eraseUnusedNodes(graph, m.nodes);
  }

  bool upgradeOpset_ = true;
};

}  // namespace

std::unique_ptr<Pass> createFuseLayerNormPass() { return std::make_unique<FuseLayerNormPass>(); }

}  // namespace roformer::passes
