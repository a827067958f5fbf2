// fuse-skip-layernorm: folds the residual Add in front of a LayerNormalization
// (post-LN, as BERT and RoFormer place it), and the dense layer's bias Add in
// front of that, into one com.microsoft.SkipLayerNormalization.
//
//     m    bias (constant [D])          optional: folded only when the
//      \   /                            bias Add has no other user
//       Add = b      a
//          \        /
//           Add = s  ─────────────► other users of s read output 3
//            │
//    LayerNormalization(s, gamma, beta, axis = -1)        anchor
//            │
//            y
//
// becomes
//
//    SkipLayerNormalization(input = m, skip = a, gamma, beta, bias)
//      -> y, -, -, s (output 3 only when s has users besides the anchor)
//
// Without a bias Add the residual Add's operands keep their order as input
// and skip. ONNX Runtime's kernel computes (input + skip) + bias, while the
// graph computed a + (m + bias), so the sum can differ by float32 rounding.
//
// Rejected, with a missed remark:
// - a LayerNormalization over any axis but the last, with stash_type other
//   than 1, or with its Mean or InvStdDev output used;
// - gamma or beta without the known shape [D];
// - a residual Add whose operands are not provably of one shape of rank 2 or
//   3, because the fused op is not used here to broadcast them. Dims count as
//   equal when they are the same known size or named symbol, or when both
//   operands derive from one common value through ops that keep all dims but
//   the last (MatMul by a matrix, elementwise ops with a vector constant,
//   normalizations, GELU, RotaryEmbedding, MultiHeadAttention). The second
//   rule covers batch dims that shape inference named differently;
// - an element type other than float.
#include <algorithm>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "ir/Schemas.h"
#include "passes/Match.h"
#include "passes/Passes.h"

namespace roformer::passes {
namespace {

struct SkipLayerNormMatch {
  ir::Node* layerNorm = nullptr;
  ir::Node* residual = nullptr;
  ir::Node* biasAdd = nullptr;
  ir::Value* input = nullptr;
  ir::Value* skip = nullptr;
  ir::Value* bias = nullptr;
  ir::Value* gamma = nullptr;
  ir::Value* beta = nullptr;
  float epsilon = 1e-5f;
};

bool sameDim(const ir::Dim& a, const ir::Dim& b) {
  if (a.isKnown() && b.isKnown()) return *a.value == *b.value;
  return !a.isKnown() && !b.isKnown() && !a.symbol.empty() && a.symbol == b.symbol;
}

// The rank of a constant or of a value with a known shape.
std::optional<int64_t> knownRank(const ir::Value* value) {
  if (std::shared_ptr<ir::Tensor> constant = ir::constantOf(value)) return constant->rank();
  return rankOf(value);
}

// Returns the input of `node` whose dims, all but the last, output 0 of
// `node` shares, with the same rank; null when `node` is not known to keep
// them. Used to prove two values have the same shape when shape inference
// gave their batch dims different symbols.
const ir::Value* leadingDimsSource(const ir::Node& node) {
  if (node.is("MatMul")) {
    // [..., K] x [K, N] -> [..., N] when the right operand is a matrix.
    return knownRank(node.input(1)) == 2 && knownRank(node.input(0)).value_or(0) >= 2
               ? node.input(0)
               : nullptr;
  }
  if (node.is("Add") || node.is("Sub") || node.is("Mul") || node.is("Div")) {
    // Broadcasting a constant of rank 0 or 1 changes at most the last dim.
    for (int side : {1, 0}) {
      const ir::Value* other = node.input(1 - side);
      if (ir::constantOf(node.input(side)) != nullptr && knownRank(node.input(side)) <= 1 &&
          other != nullptr && ir::constantOf(other) == nullptr) {
        return other;
      }
    }
    return nullptr;
  }
  static const char* const kShapeKeeping[] = {"Relu", "Erf", "Tanh", "Sigmoid", "Neg", "Sqrt",
                                              "Cast", "Identity", "LayerNormalization"};
  for (const char* op : kShapeKeeping) {
    if (node.is(op)) return node.input(0);
  }
  static const char* const kContribShapeKeeping[] = {"Gelu", "BiasGelu", "FastGelu",
                                                     "RotaryEmbedding", "SkipLayerNormalization"};
  for (const char* op : kContribShapeKeeping) {
    if (node.is(op, ir::kMicrosoftDomain)) return node.input(0);
  }
  if (node.is("MultiHeadAttention", ir::kMicrosoftDomain)) {
    // A 3-D query [batch, sequence, hidden] gives [batch, sequence, v_hidden].
    return rankOf(node.input(0)) == 3 ? node.input(0) : nullptr;
  }
  return nullptr;
}

// `value` and the values it derives from through leadingDimsSource.
std::vector<const ir::Value*> leadingDimsChain(const ir::Value* value) {
  // Bounds the walk; a transformer layer is far shorter.
  constexpr int kMaxSteps = 256;
  std::vector<const ir::Value*> chain;
  for (int step = 0; value != nullptr && step < kMaxSteps; ++step) {
    chain.push_back(value);
    const ir::Node* producer = value->producer();
    // Only output 0 of the ops above has the shape described there.
    if (producer == nullptr || value->producerOutputIndex() != 0) break;
    value = leadingDimsSource(*producer);
  }
  return chain;
}

// True when `a` and `b` provably have the same shape: the same rank and last
// dim, and each other dim either the same known size or named symbol, or
// shared because both values derive from one common value through ops that
// keep those dims. Unknown dims never compare equal otherwise.
bool provablySameShape(const ir::Value* a, const ir::Value* b) {
  std::optional<std::vector<ir::Dim>> shapeA = a->shape();
  std::optional<std::vector<ir::Dim>> shapeB = b->shape();
  if (!shapeA || !shapeB || shapeA->size() != shapeB->size() || shapeA->empty()) return false;
  if (!shapeA->back().isKnown() || !sameDim(shapeA->back(), shapeB->back())) return false;

  bool leadingDimsEqual = true;
  for (size_t i = 0; i + 1 < shapeA->size(); ++i) {
    leadingDimsEqual = leadingDimsEqual && sameDim((*shapeA)[i], (*shapeB)[i]);
  }
  if (leadingDimsEqual) return true;

  std::vector<const ir::Value*> chainA = leadingDimsChain(a);
  for (const ir::Value* value : leadingDimsChain(b)) {
    if (std::find(chainA.begin(), chainA.end(), value) != chainA.end()) return true;
  }
  return false;
}

std::string shapeText(const ir::Value* value) {
  std::optional<std::vector<ir::Dim>> shape = value->shape();
  if (!shape) return "unknown";
  std::string text = "[";
  for (size_t i = 0; i < shape->size(); ++i) {
    const ir::Dim& dim = (*shape)[i];
    absl::StrAppend(&text, i > 0 ? ", " : "",
                    dim.isKnown() ? std::to_string(*dim.value)
                                  : (dim.symbol.empty() ? std::string("?") : dim.symbol));
  }
  return text + "]";
}

// The static dims of a value: a constant's dims, or its type's static shape.
std::optional<std::vector<int64_t>> knownDims(const ir::Value* value) {
  if (std::shared_ptr<ir::Tensor> constant = ir::constantOf(value)) return constant->dims();
  return value->staticShape();
}

bool requireVector(const ir::Value* value, int64_t dim, std::string_view role, MatchFailure* why) {
  if (knownDims(value) != std::vector<int64_t>{dim}) {
    return mismatch(why, absl::StrCat(std::string(role), " ", describeValue(value),
                                      " does not have the known shape [", dim, "]"));
  }
  return true;
}

// A constant float [dim] vector, as a dense layer's bias is.
bool isBiasVector(const ir::Value* value, int64_t dim) {
  std::shared_ptr<ir::Tensor> constant = ir::constantOf(value);
  return constant != nullptr && constant->dataType() == ir::DataType::kFloat &&
         constant->dims() == std::vector<int64_t>{dim};
}

class SkipLayerNormMatcher {
 public:
  std::optional<SkipLayerNormMatch> match(ir::Node* layerNorm, MatchFailure* why) {
    SkipLayerNormMatch m;
    m.layerNorm = layerNorm;
    if (!matchLayerNorm(m, why)) return std::nullopt;
    std::optional<int64_t> dim = lastDim(layerNorm->input(0));
    if (!dim) {
      mismatch(why, absl::StrCat("the last dim of ", describeValue(layerNorm->input(0)),
                                 " is unknown (run infer-shapes first)"));
      return std::nullopt;
    }
    if (!requireVector(m.gamma, *dim, "gamma", why)) return std::nullopt;
    if (m.beta != nullptr && !requireVector(m.beta, *dim, "beta", why)) return std::nullopt;
    if (!matchResidual(m, *dim, why)) return std::nullopt;
    return m;
  }

 private:
  static std::optional<int64_t> lastDim(const ir::Value* value) {
    std::optional<std::vector<ir::Dim>> shape = value->shape();
    if (!shape || shape->empty() || !shape->back().isKnown()) return std::nullopt;
    return shape->back().value;
  }

  static bool matchLayerNorm(SkipLayerNormMatch& m, MatchFailure* why) {
    const ir::Node* node = m.layerNorm;
    const ir::Value* input = node->input(0);
    absl::StatusOr<int64_t> axis = node->intAttribute("axis", -1);
    if (!axis.ok() || !isLastAxis(*axis, rankOf(input))) {
      return mismatch(why, absl::StrCat(node->describe(), " normalizes from axis ",
                                        axis.value_or(0), ", not over the last axis alone"));
    }
    absl::StatusOr<int64_t> stashType = node->intAttribute("stash_type", 1);
    if (!stashType.ok() || *stashType != 1) {
      return mismatch(why, absl::StrCat(node->describe(), " has stash_type ",
                                        stashType.value_or(0), ", expected 1 (float)"));
    }
    for (size_t i = 1; i < node->outputCount(); ++i) {
      if (node->output(i) != nullptr && node->output(i)->hasUses()) {
        return mismatch(why, absl::StrCat(node->describe(), " output ", i, " (",
                                          describeValue(node->output(i)),
                                          ") is used, and SkipLayerNormalization does not "
                                          "provide the same statistics"));
      }
    }
    if (input == nullptr || input->elemType() != ir::DataType::kFloat) {
      return mismatch(why, absl::StrCat("the input ", describeValue(input), " is not known to be float"));
    }
    absl::StatusOr<float> epsilon = node->floatAttribute("epsilon", 1e-5f);
    if (!epsilon.ok()) return mismatch(why, std::string(epsilon.status().message()));
    m.epsilon = *epsilon;
    m.gamma = node->input(1);
    m.beta = node->input(2);
    return true;
  }

  static bool matchResidual(SkipLayerNormMatch& m, int64_t dim, MatchFailure* why) {
    ir::Node* residual = matchProducer(m.layerNorm->input(0), "Add", why);
    if (residual == nullptr) return false;
    m.residual = residual;
    ir::Value* left = residual->input(0);
    ir::Value* right = residual->input(1);
    if (left == nullptr || right == nullptr) {
      return mismatch(why, absl::StrCat(residual->describe(), " does not have two inputs"));
    }
    if (!left->shape() || !right->shape()) {
      return mismatch(why, absl::StrCat("the operands of ", residual->describe(),
                                        " do not both have a known shape (run infer-shapes first)"));
    }
    if (!provablySameShape(left, right)) {
      return mismatch(why, absl::StrCat("the operands of ", residual->describe(), " have shapes ",
                                        shapeText(left), " and ", shapeText(right),
                                        ", not one shape that is known to match"));
    }
    size_t rank = left->shape()->size();
    if (rank != 2 && rank != 3) {
      return mismatch(why, absl::StrCat("the operands of ", residual->describe(), " have rank ",
                                        rank, ", expected 2 or 3"));
    }
    m.input = left;
    m.skip = right;

    // Fold the bias Add of a dense layer on either side of the residual.
    for (int side : {1, 0}) {
      ir::Node* biasAdd = residual->input(side)->producer();
      if (biasAdd == nullptr || !biasAdd->is("Add") || !isSingleUse(residual->input(side))) {
        continue;
      }
      std::optional<OperandOrder> order = commutativeOperands(
          biasAdd,
          [dim](const ir::Value* value, MatchFailure*) { return isBiasVector(value, dim); },
          nullptr);
      if (!order) continue;
      ir::Value* data = biasAdd->input(order->other);
      if (!provablySameShape(data, residual->input(side))) continue;
      m.biasAdd = biasAdd;
      m.bias = biasAdd->input(order->matched);
      m.input = data;
      m.skip = residual->input(1 - side);
      break;
    }
    return true;
  }
};

class FuseSkipLayerNormPass final : public Pass {
 public:
  std::string_view name() const override { return "fuse-skip-layernorm"; }
  std::string_view summary() const override {
    return "Fuse residual Add (+ bias Add) + LayerNormalization into "
           "com.microsoft.SkipLayerNormalization";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    ir::Graph& graph = model.graph();
    std::vector<ir::Node*> anchors;
    for (const auto& node : graph.nodes()) {
      if (node->is("LayerNormalization")) anchors.push_back(node.get());
    }

    SkipLayerNormMatcher matcher;
    bool changed = false;
    for (ir::Node* anchor : anchors) {
      MatchFailure why;
      std::optional<SkipLayerNormMatch> match = matcher.match(anchor, &why);
      if (!match) {
        context.remarkMissed(*anchor, why.reason);
        continue;
      }
      rewrite(graph, *match, context);
      changed = true;
    }
    if (changed) {
      // Users of a kept sum may precede the fused node, which takes the
      // LayerNormalization's place.
      if (absl::Status status = graph.topoSort(); !status.ok()) return status;
      ir::registerContribSchemas();
      if (!model.opsetVersion(ir::kMicrosoftDomain)) model.setOpsetVersion(ir::kMicrosoftDomain, 1);
    }
    return changed;
  }

 private:
  static void rewrite(ir::Graph& graph, SkipLayerNormMatch& m, PassContext& context) {
    ir::Value* sum = m.residual->output();
    bool sumUsedElsewhere = sum->isGraphOutput() || sum->useCount() > 1;
    ir::Value* output = m.layerNorm->output(0);

    std::vector<ir::Value*> inputs = {m.input, m.skip, m.gamma};
    if (m.beta != nullptr || m.bias != nullptr) inputs.push_back(m.beta);
    if (m.bias != nullptr) inputs.push_back(m.bias);
    std::vector<std::string> outputs = {output->name() + "_skiplayernorm"};
    if (sumUsedElsewhere) outputs.insert(outputs.end(), {"", "", sum->name() + "_sum"});

    std::string base = m.layerNorm->name().empty() ? output->name() : m.layerNorm->name();
    ir::Node* fused = graph.createNode("SkipLayerNormalization", ir::kMicrosoftDomain, inputs,
                                       outputs, m.layerNorm,
                                       graph.uniqueNodeName(base + "/SkipLayerNormalization"));
    fused->setFloatAttribute("epsilon", m.epsilon);
    fused->output(0)->setType(output->type());

    graph.replaceAllUsesWith(output, fused->output(0));
    if (sumUsedElsewhere) {
      fused->output(3)->setType(sum->type());
      // The LayerNormalization still reads the sum until it is erased.
      graph.replaceAllUsesWith(sum, fused->output(3));
    }
    std::vector<ir::Node*> replaced = {m.layerNorm, m.residual};
    if (m.biasAdd != nullptr) replaced.push_back(m.biasAdd);
    eraseUnusedNodes(graph, replaced);

    context.count("skip layer normalizations fused");
    if (m.bias != nullptr) context.count("bias Adds folded");
    if (sumUsedElsewhere) context.count("sums kept as output 3");
  }
};

}  // namespace

std::unique_ptr<Pass> createFuseSkipLayerNormPass() {
  return std::make_unique<FuseSkipLayerNormPass>();
}

}  // namespace roformer::passes
