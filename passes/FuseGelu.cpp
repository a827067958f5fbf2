// fuse-gelu: replaces the exact (erf) GELU, 0.5 * x * (1 + erf(x / sqrt(2))),
// with com.microsoft.Gelu, or with com.microsoft.BiasGelu when x is a dense
// layer's output plus a constant bias vector.
//
//      m    bias (constant [N], optional)
//       \   /
//        Add = x ──────────────┬──────────────┐
//                              │              │
//             Div(x, sqrt(2)) or Mul(x, 1/sqrt(2))
//                              │              │
//                             Erf             │
//                              │              │
//                          Add(1, ·) = a      │
//                              │              │
//        the three factors 0.5, x and a, multiplied by two Muls in any
//        grouping and operand order, for example
//        Mul(Mul(0.5, x), a) (tf2onnx), Mul(Mul(x, a), 0.5) (PyTorch)
//                              │
//                             Mul                               anchor
//
// It becomes BiasGelu(m, bias) when three things hold: the bias Add exists,
// only the pattern reads its output, and `bias` is a float constant of shape
// [N] with N the known last dim of m. Otherwise it becomes Gelu(x).
//
// Rejected, with a missed remark:
// - any constant further than kConstantTolerance from 0.5, 1, sqrt(2) or
//   1/sqrt(2);
// - Tanh in place of Erf. The tanh approximation is a different function,
//   and this pass never emits FastGelu for it;
// - an intermediate value with a user outside the pattern;
// - an Erf argument computed from another value than the one multiplied.
#include <array>
#include <cmath>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "ir/Schemas.h"
#include "passes/Match.h"
#include "passes/Passes.h"

namespace roformer::passes {
namespace {

// Relative tolerance of the constants 0.5, 1, sqrt(2) and 1/sqrt(2). 0.5 and
// 1 are exact in float32, and float32 rounding moves sqrt(2) and 1/sqrt(2) by
// at most 2^-24 (6e-8) relative. 1e-6 leaves room for a constant folded from
// several float32 operations, while a truncated literal such as 0.7071 (1e-5
// away) or 1.414 (1.5e-4 away) is rejected, because it computes another
// function.
constexpr double kConstantTolerance = 1e-6;

const double kSqrt2 = std::sqrt(2.0);

struct GeluMatch {
  ir::Node* anchor = nullptr;
  ir::Value* x = nullptr;
  // Nodes the fused node replaces.
  std::vector<ir::Node*> nodes;
  // The nodes of the pattern that read x.
  std::vector<const ir::Node*> xReaders;
  ir::Node* biasAdd = nullptr;
  ir::Value* biasInput = nullptr;
  ir::Value* bias = nullptr;
};

// Checks that `value` is x / sqrt(2) or x * (1/sqrt(2)) and returns the node.
ir::Node* matchScaledInput(const ir::Value* value, const ir::Value* x, MatchFailure* why) {
  ir::Node* producer = value != nullptr ? value->producer() : nullptr;
  if (producer != nullptr && producer->is("Div")) {
    if (producer->input(0) != x) {
      mismatch(why, absl::StrCat(producer->describe(), " divides ",
                                 describeValue(producer->input(0)), ", not the GELU input ",
                                 describeValue(x)));
      return nullptr;
    }
    if (!matchScalarConstant(producer->input(1), kSqrt2, kConstantTolerance,
                             "the divisor of " + producer->describe(), why)) {
      return nullptr;
    }
    return producer;
  }
  if (producer != nullptr && producer->is("Mul")) {
    std::optional<OperandOrder> order = commutativeOperands(
        producer,
        [](const ir::Value* operand, MatchFailure* inner) {
          return matchScalarConstant(operand, 1.0 / kSqrt2, kConstantTolerance,
                                     "the factor 1/sqrt(2)", inner);
        },
        why);
    if (!order) return nullptr;
    if (producer->input(order->other) != x) {
      mismatch(why, absl::StrCat(producer->describe(), " scales ",
                                 describeValue(producer->input(order->other)),
                                 ", not the GELU input ", describeValue(x)));
      return nullptr;
    }
    return producer;
  }
  mismatch(why, absl::StrCat("the Erf argument ", describeValue(value), " is computed by ",
                             producer != nullptr ? producer->describe() : "no node",
                             ", not by Div or Mul"));
  return nullptr;
}

// Checks that `shifted` is Add(1, Erf(x / sqrt(2))), collecting its nodes.
bool matchErfTerm(const ir::Value* shifted, const ir::Value* x, GeluMatch& m, MatchFailure* why) {
  ir::Node* add = matchProducer(shifted, "Add", why);
  if (add == nullptr) return false;
  m.nodes.push_back(add);
  std::optional<OperandOrder> order = commutativeOperands(
      add,
      [](const ir::Value* operand, MatchFailure* inner) {
        return matchScalarConstant(operand, 1.0, kConstantTolerance, "the constant 1", inner);
      },
      why);
  if (!order) return false;
  ir::Node* erf = matchProducer(add->input(order->other), "Erf", why);
  if (erf == nullptr) return false;
  m.nodes.push_back(erf);
  ir::Node* scale = matchScaledInput(erf->input(0), x, why);
  if (scale == nullptr) return false;
  m.nodes.push_back(scale);
  m.xReaders.push_back(scale);
  for (const ir::Value* value : {add->output(), erf->output(), scale->output()}) {
    if (!requireSingleUse(value, why)) return false;
  }
  return true;
}

// One way to read the product tree: `leaves` are the three factors, and
// `readerOf[i]` is the Mul that reads leaf i.
struct ProductTree {
  std::array<ir::Value*, 3> leaves;
  std::array<ir::Node*, 3> readerOf;
  ir::Node* inner;
};

class GeluMatcher {
 public:
  std::optional<GeluMatch> match(ir::Node* anchor, MatchFailure* why) {
    MatchFailure best;
    size_t bestDepth = 0;
    bool anyTree = false;
    for (int side : {0, 1}) {
      ir::Value* operand = anchor->input(side);
      ir::Node* inner = operand != nullptr ? operand->producer() : nullptr;
      if (inner == nullptr || !inner->is("Mul") || inner->inputCount() != 2) continue;
      anyTree = true;
      ProductTree tree{{anchor->input(1 - side), inner->input(0), inner->input(1)},
                       {anchor, inner, inner},
                       inner};
      // Try every assignment of the roles 0.5, x and (1 + erf) to the leaves.
      static constexpr std::array<std::array<int, 3>, 6> kRoles = {
          {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}};
      for (const auto& roles : kRoles) {
        GeluMatch m;
        m.anchor = anchor;
        MatchFailure attempt;
        if (matchAssignment(tree, roles, m, &attempt)) return m;
        if (m.nodes.size() >= bestDepth) {
          bestDepth = m.nodes.size();
          best = attempt;
        }
      }
    }
    if (!anyTree) {
      mismatch(why, absl::StrCat("neither input of ", anchor->describe(),
                                 " is computed by a Mul, so it is not a product of three factors"));
    } else {
      mismatch(why, best.reason);
    }
    return std::nullopt;
  }

 private:
  // roles = {index of the 0.5 leaf, index of x, index of (1 + erf)}.
  static bool matchAssignment(const ProductTree& tree, const std::array<int, 3>& roles,
                              GeluMatch& m, MatchFailure* why) {
    m.nodes = {m.anchor, tree.inner};
    ir::Value* half = tree.leaves[roles[0]];
    ir::Value* x = tree.leaves[roles[1]];
    ir::Value* shifted = tree.leaves[roles[2]];
    if (x == nullptr) return mismatch(why, "the GELU input is omitted");
    // A constant leaf is one of the factors, never the input; rejecting it
    // here keeps remarks to the role assignments that could have matched.
    if (scalarConstant(x)) {
      return mismatch(why, absl::StrCat("the GELU input candidate ", describeValue(x),
                                        " is a constant"));
    }
    if (!requireSingleUse(tree.inner->output(), why)) return false;
    if (!matchErfTerm(shifted, x, m, why)) return false;
    if (!matchScalarConstant(half, 0.5, kConstantTolerance, "the factor 0.5", why)) return false;
    m.x = x;
    m.xReaders.push_back(tree.readerOf[roles[1]]);
    return true;
  }
};

// Folds a bias Add in front of x when BiasGelu can take it.
void matchBias(GeluMatch& m) {
  ir::Node* add = m.x->producer();
  if (add == nullptr || !add->is("Add") || add->inputCount() != 2) return;
  if (!requireUsersWithin(m.x, m.xReaders, nullptr)) return;
  for (int side : {1, 0}) {
    ir::Value* data = add->input(1 - side);
    std::shared_ptr<ir::Tensor> bias = ir::constantOf(add->input(side));
    std::optional<std::vector<ir::Dim>> shape = data != nullptr ? data->shape() : std::nullopt;
    if (bias == nullptr || bias->dataType() != ir::DataType::kFloat || bias->rank() != 1) continue;
    if (!shape || shape->empty() || shape->back().value != bias->dims()[0]) continue;
    m.biasAdd = add;
    m.biasInput = data;
    m.bias = add->input(side);
    return;
  }
}

class FuseGeluPass final : public Pass {
 public:
  std::string_view name() const override { return "fuse-gelu"; }
  std::string_view summary() const override {
    return "Fuse the erf GELU (and a preceding bias Add) into com.microsoft.Gelu or BiasGelu";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    ir::Graph& graph = model.graph();
    std::vector<ir::Node*> anchors;
    for (const auto& node : graph.nodes()) {
      if (isAnchor(*node)) anchors.push_back(node.get());
    }

    GeluMatcher matcher;
    std::unordered_set<const ir::Node*> removed;
    bool changed = false;
    for (ir::Node* anchor : anchors) {
      if (removed.count(anchor) > 0) continue;
      MatchFailure why;
      std::optional<GeluMatch> match = matcher.match(anchor, &why);
      if (!match) {
        context.remarkMissed(*anchor, why.reason);
        continue;
      }
      matchBias(*match);
      for (const ir::Node* node : match->nodes) removed.insert(node);
      rewrite(graph, *match, context);
      changed = true;
    }
    if (changed) {
      ir::registerContribSchemas();
      if (!model.opsetVersion(ir::kMicrosoftDomain)) model.setOpsetVersion(ir::kMicrosoftDomain, 1);
    }
    return changed;
  }

 private:
  // A Mul that reads, directly or through one inner Mul, an Add of an Erf or
  // Tanh output: the exact GELU or its tanh approximation. A Mul whose only
  // user is such a Mul is part of a larger candidate and not an anchor.
  static bool isCandidate(const ir::Node& node) {
    if (!node.is("Mul")) return false;
    auto readsErfTerm = [](const ir::Node& mul) {
      for (const ir::Value* input : mul.inputs()) {
        const ir::Node* add = input != nullptr ? input->producer() : nullptr;
        if (add == nullptr || !add->is("Add")) continue;
        for (const ir::Value* term : add->inputs()) {
          const ir::Node* producer = term != nullptr ? term->producer() : nullptr;
          if (producer != nullptr && (producer->is("Erf") || producer->is("Tanh"))) return true;
        }
      }
      return false;
    };
    if (readsErfTerm(node)) return true;
    for (const ir::Value* input : node.inputs()) {
      const ir::Node* inner = input != nullptr ? input->producer() : nullptr;
      if (inner != nullptr && inner->is("Mul") && readsErfTerm(*inner)) return true;
    }
    return false;
  }

  static bool isAnchor(const ir::Node& node) {
    if (!isCandidate(node)) return false;
    const ir::Node* user = node.output() != nullptr ? node.output()->singleUser() : nullptr;
    return user == nullptr || !isCandidate(*user);
  }

  static void rewrite(ir::Graph& graph, GeluMatch& m, PassContext& context) {
    ir::Value* output = m.anchor->output();
    std::string base = m.anchor->name().empty() ? output->name() : m.anchor->name();
    ir::Node* fused = nullptr;
    if (m.biasAdd != nullptr) {
      fused = graph.createNode("BiasGelu", ir::kMicrosoftDomain, {m.biasInput, m.bias},
                               {output->name() + "_biasgelu"}, m.anchor,
                               graph.uniqueNodeName(base + "/BiasGelu"));
      m.nodes.push_back(m.biasAdd);
      context.count("BiasGelu emitted");
    } else {
      fused = graph.createNode("Gelu", ir::kMicrosoftDomain, {m.x}, {output->name() + "_gelu"},
                               m.anchor, graph.uniqueNodeName(base + "/Gelu"));
      context.count("Gelu emitted");
    }
    fused->output()->setType(output->type());
    graph.replaceAllUsesWith(output, fused->output());
    eraseUnusedNodes(graph, m.nodes);
  }
};

}  // namespace

std::unique_ptr<Pass> createFuseGeluPass() { return std::make_unique<FuseGeluPass>(); }

}  // namespace roformer::passes
