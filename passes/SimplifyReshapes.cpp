// simplify-reshapes: removes the reshape plumbing of TF's tensordot and
// replaces computed Reshape shapes with constants.
//
// 1. tensordot. Keras Dense layers on rank-3 inputs export as
//
//        x [d0, .., dk, K]
//        |  Reshape(s1)        s1 = [anything, K]
//        a [M, K]
//        |  MatMul(a, W)       W of rank 2, [K, N]
//        m [M, N]
//        |  Reshape(s2)        s2 = [d0, .., dk, N]
//        y
//
//    which is MatMul(x, W) by ONNX's broadcasting of a rank-2 right operand.
//    The MatMul node is kept (with its name) and takes x directly. The outer
//    Reshape goes, and the inner one goes once its last user is rewritten
//    (CSE may have merged the Q, K and V flattens into one). Required:
//    - `m` has no other user and is not a graph output;
//    - s1 has two entries, the second provably equal to x's last dim;
//    - s2 has one entry per dim of x, provably x's leading dims and N, except
//      for at most one entry, which the element count then forces.
//
// 2. Computed shapes. A Reshape whose shape input is computed (Shape, Gather,
//    Slice, Concat, Cast, Unsqueeze, ... of other values) gets a constant
//    shape instead: an entry known to be a number stays that number, an entry
//    provably equal to the input dim at the same index becomes 0 (copy), and
//    at most one other entry becomes -1 (inferred from the element count). So
//    with a symbolic batch `[b, s, 12, 64]` from Shape plumbing becomes
//    `[0, 0, 12, 64]` and the batch stays dynamic.
//
// 3. Constant prefix. bert4keras keeps position 0 of the padding mask
//    unmasked with
//
//        Concat(ConstantOfShape(Shape(Slice(m, 0, k, axis)), value=v),
//               Slice(m, k, end, axis), axis)
//
//    (with integer Casts allowed between Shape and ConstantOfShape),
//    whose Shape reads the batch dim. When m's dim n on `axis` is known, this
//    is Where(prefix, v, m) with `prefix` a boolean constant that is true at
//    positions below k, of m's rank with n on `axis` and 1 elsewhere, so no
//    shape is computed. For a boolean m it is Or(m, prefix) when v is true and
//    And(m, not prefix) when v is false. Required: both Slices read the same m with constant
//    bounds, unit steps, 0 < k < n, the second one reaching the end, v of m's
//    element type, and opset 9 or later for Where.
//
// "Provably equal" means: the same value and axis, both dims known and
// equal, or both symbolic with the same name in the inferred shapes (ONNX
// shape inference gives one name to dims it has proven equal).
//
// Rejected (with a remark): Reshape with allowzero=1 when a 0 would be needed,
// shapes with two or more entries that cannot be proven, and rewrites that
// would rename a graph output. NOTE: a -1 replacing an entry is wrong only
// for tensors with a zero-size dim, where Reshape rejects -1; the original
// shape would have worked there.
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "passes/Passes.h"
#include "passes/RewriteHelpers.h"
#include "passes/ShapeTrace.h"

namespace roformer::passes {
namespace {

class SimplifyReshapesPass final : public Pass {
 public:
  std::string_view name() const override { return "simplify-reshapes"; }
  std::string_view summary() const override {
    return "Turn tensordot Reshape-MatMul-Reshape into one MatMul; make computed Reshape "
           "shapes and constant-filled prefixes constant";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    ir::Graph& graph = model.graph();
    // Last to first, so that a tensordot's outer Reshape is visited before the
    // inner one, which its rewrite erases; erased nodes are skipped by address.
    std::vector<ir::Node*> reshapes;
    for (auto it = graph.nodes().rbegin(); it != graph.nodes().rend(); ++it) {
      if ((*it)->is("Reshape") && (*it)->inputCount() >= 2) reshapes.push_back(it->get());
    }
    std::unordered_set<const ir::Node*> erased;
    bool changed = false;
    for (ir::Node* reshape : reshapes) {
      if (erased.count(reshape) > 0) continue;
      if (ir::Node* first = rewriteTensordot(graph, reshape, context)) {
        erased.insert(reshape);
        if (eraseIfDead(graph, first)) erased.insert(first);
        context.count("tensordot Reshape-MatMul-Reshape chains simplified");
        changed = true;
        continue;
      }
      if (makeShapeConstant(graph, *reshape, context)) {
        context.count("computed Reshape shapes made constant");
        changed = true;
      }
    }

    if (defaultOpset(model) >= 9) {
      std::vector<ir::Node*> concats;
      for (const auto& node : graph.nodes()) {
        if (node->is("Concat") && node->inputCount() == 2) concats.push_back(node.get());
      }
      for (ir::Node* concat : concats) {
        if (rewriteConstantPrefix(graph, concat, context)) {
          context.count("constant-filled prefixes made constant");
          changed = true;
        }
      }
    }
    return changed;
  }

 private:
  // Applies rewrite 1 anchored on the outer Reshape `back`. Returns the inner
  // Reshape (for the caller to erase when dead), or null when it did not
  // match.
  static ir::Node* rewriteTensordot(ir::Graph& graph, ir::Node* back, PassContext& context) {
    ir::Value* product = back->input(0);
    ir::Node* matmul = product->producer();
    if (matmul == nullptr || !matmul->is("MatMul")) return nullptr;
    ir::Node* flatten = matmul->input(0)->producer();
    if (flatten == nullptr || !flatten->is("Reshape") || flatten->inputCount() < 2) {
      return nullptr;
    }
    // From here on the shape is the tensordot's: explain refusals.
    auto reject = [&](std::string_view reason) -> ir::Node* {
      context.remarkMissed(*back, absl::StrCat("tensordot not simplified: ", std::string(reason)));
      return nullptr;
    };
    if (product->singleUser() != back) {
      return reject(absl::StrCat("the MatMul result '", product->name(), "' has other users"));
    }

    ir::Value* x = flatten->input(0);
    ir::Value* weight = matmul->input(1);
    auto xDims = x->shape();
    auto weightDims = weight->shape();
    if (!xDims || xDims->size() < 2) return reject("the rank of the input is unknown or below 2");
    if (!weightDims || weightDims->size() != 2) return reject("the weight is not of rank 2");
    auto rank = static_cast<int64_t>(xDims->size());

    auto flatShape = traceEntries(flatten->input(1));
    if (!flatShape || flatShape->size() != 2) {
      return reject("the first Reshape does not flatten to rank 2");
    }
    ShapeEntry inner = (*flatShape)[1];
    bool innerIsLastDim = entryEqualsDim(inner, x, rank - 1, xDims) ||
                          (inner.kind == ShapeEntry::Kind::kConstant && inner.constant == 0 &&
                           rank == 2 && !hasAllowZero(*flatten));
    if (!innerIsLastDim) {
      return reject(absl::StrCat("the first Reshape's shape ", describeEntries(*flatShape),
                                 " does not keep the last dim of '", x->name(), "'"));
    }

    auto backShape = traceEntries(back->input(1));
    if (!backShape || static_cast<int64_t>(backShape->size()) != rank) {
      return reject(absl::StrCat("the second Reshape does not restore the rank ", rank, " of '",
                                 x->name(), "'"));
    }
    int unproven = 0;
    for (int64_t i = 0; i + 1 < rank; ++i) {
      const ShapeEntry& entry = (*backShape)[i];
      bool proven = entryEqualsDim(entry, x, i, xDims) ||
                    (rank == 2 && entry.kind == ShapeEntry::Kind::kConstant &&
                     entry.constant == 0 && !hasAllowZero(*back));
      if (!proven) ++unproven;
    }
    const ShapeEntry& last = backShape->back();
    bool lastProven = entryEqualsDim(last, weight, 1, weightDims) ||
                      entryEqualsDim(last, product, 1, product->shape()) ||
                      (last.kind == ShapeEntry::Kind::kConstant && last.constant == 0 &&
                       rank == 2 && !hasAllowZero(*back));
    if (!lastProven) ++unproven;
    if (unproven > 1) {
      return reject(absl::StrCat("the second Reshape's shape ", describeEntries(*backShape),
                                 " is not provably the leading dims of '", x->name(),
                                 "' and the weight's last dim"));
    }

    ir::Value* result = back->output();
    std::string blocker = replacementBlocker(result, product);
    if (!blocker.empty()) return reject(blocker);

    matmul->setInput(0, x);
    product->setType(result->type());
    graph.replaceAllUsesWith(result, product);
    (void)graph.eraseNode(back);
    return flatten;
  }

  // The start and end of a Slice along `axis` of a rank-`rank` input, when
  // its bounds are constants with a unit step on that axis alone.
  static std::optional<std::pair<int64_t, int64_t>> sliceBounds(const ir::Node& slice,
                                                                int64_t rank, int64_t axis) {
    if (slice.inputCount() < 3) return std::nullopt;
    auto starts = constantInts(slice.input(1));
    auto ends = constantInts(slice.input(2));
    if (!starts || !ends || starts->size() != 1 || ends->size() != 1) return std::nullopt;
    if (slice.input(3) != nullptr) {
      auto axes = constantInts(slice.input(3));
      if (!axes || axes->size() != 1 || normalizeAxis((*axes)[0], rank) != axis) {
        return std::nullopt;
      }
    } else if (axis != 0) {
      return std::nullopt;
    }
    if (slice.input(4) != nullptr) {
      auto steps = constantInts(slice.input(4));
      if (!steps || steps->size() != 1 || (*steps)[0] != 1) return std::nullopt;
    }
    return std::make_pair((*starts)[0], (*ends)[0]);
  }

  // Applies rewrite 3 anchored on `concat`; returns whether it did.
  static bool rewriteConstantPrefix(ir::Graph& graph, ir::Node* concat, PassContext& context) {
    const ir::Node* fill = concat->input(0)->producer();
    const ir::Node* rest = concat->input(1)->producer();
    if (fill == nullptr || !fill->is("ConstantOfShape") || rest == nullptr || !rest->is("Slice")) {
      return false;
    }
    // tf2onnx puts an int32 round trip (two Casts) between Shape and
    // ConstantOfShape, which keeps dims below 2^31 unchanged.
    const ir::Node* shape = fill->input(0)->producer();
    while (shape != nullptr && shape->is("Cast")) shape = shape->input(0)->producer();
    if (shape == nullptr || !shape->is("Shape") || shape->hasAttribute("start") ||
        shape->hasAttribute("end")) {
      return false;
    }
    const ir::Node* head = shape->input(0)->producer();
    if (head == nullptr || !head->is("Slice") || head->input(0) != rest->input(0)) return false;

    auto reject = [&](std::string_view reason) {
      context.remarkMissed(*concat, absl::StrCat("constant prefix not replaced: ",
                                                 std::string(reason)));
      return false;
    };
    ir::Value* mask = rest->input(0);
    auto dims = mask->shape();
    auto axisAttribute = concat->intAttribute("axis", 0);
    if (!dims || !axisAttribute.ok()) return reject("the rank of the sliced value is unknown");
    auto rank = static_cast<int64_t>(dims->size());
    auto axis = normalizeAxis(*axisAttribute, rank);
    if (!axis) return false;
    const ir::Dim& length = (*dims)[*axis];
    if (!length.isKnown()) {
      return reject(absl::StrCat("dim ", *axis, " of '", mask->name(), "' is not known"));
    }
    int64_t n = *length.value;
    auto headBounds = sliceBounds(*head, rank, *axis);
    auto restBounds = sliceBounds(*rest, rank, *axis);
    if (!headBounds || !restBounds) return reject("a Slice has other bounds, axes or steps");
    int64_t k = restBounds->first;
    if (headBounds->first != 0 || headBounds->second != k || k <= 0 || k >= n ||
        restBounds->second < n) {
      return reject("the two Slices do not split the axis at one position");
    }

    std::shared_ptr<ir::Tensor> value;
    if (const auto* attribute = fill->findAttribute("value")) {
      auto parsed = ir::Tensor::fromProto(attribute->t(), {}, fill->describe());
      if (!parsed.ok()) return false;
      value = *parsed;
    } else {
      value = ir::Tensor::scalar<float>(0.0f);
    }
    if (value->elementCount() != 1 || value->dataType() != mask->elemType()) {
      return reject("the fill value is not one element of the sliced value's type");
    }
    for (const ir::Use& use : concat->output()->uses()) {
      if (use.inputIndex == ir::Use::kImplicitUse) {
        return reject(absl::StrCat("the subgraph of ", use.user->describe(), " reads '",
                                   concat->output()->name(), "' by name"));
      }
    }

    // A boolean m takes Or (v true) or And with the complement (v false):
    // ONNX Runtime 1.30's CPU Where has no bool kernel.
    bool isBool = value->dataType() == ir::DataType::kBool;
    bool fillTrue = isBool && value->rawData()[0] != 0;
    std::vector<int64_t> prefixDims(static_cast<size_t>(rank), 1);
    prefixDims[*axis] = n;
    std::vector<uint8_t> prefix(static_cast<size_t>(n), 0);
    for (int64_t i = 0; i < n; ++i) prefix[i] = (i < k) != (isBool && !fillTrue) ? 1 : 0;
    auto prefixTensor = std::make_shared<ir::Tensor>(
        ir::DataType::kBool, prefixDims, ir::Buffer::fromBytes(prefix.data(), prefix.size()));

    ir::Value* output = concat->output();
    ir::Value* prefixValue = graph.addInitializer(absl::StrCat(output->name(), "_prefix"),
                                                  std::move(prefixTensor));
    std::string nodeName = graph.uniqueNodeName(concat->name());
    std::vector<std::string> outputName = {absl::StrCat(output->name(), "_prefixed")};
    ir::Node* where = nullptr;
    if (isBool) {
      where = graph.createNode(fillTrue ? "Or" : "And", "", {mask, prefixValue}, outputName,
                               concat, nodeName);
    } else {
      auto scalar = std::make_shared<ir::Tensor>(value->dataType(), std::vector<int64_t>{},
                                                 value->buffer());
      ir::Value* fillValue = graph.addInitializer(absl::StrCat(output->name(), "_fill"),
                                                  std::move(scalar));
      where = graph.createNode("Where", "", {prefixValue, fillValue, mask}, outputName, concat,
                               nodeName);
    }
    forwardValue(graph, output, where->output());
    return eraseIfDead(graph, concat);
  }

  static bool hasAllowZero(const ir::Node& reshape) {
    auto allowZero = reshape.intAttribute("allowzero", 0);
    return !allowZero.ok() || *allowZero != 0;
  }

  // Applies rewrite 2; returns whether the shape input was replaced.
  static bool makeShapeConstant(ir::Graph& graph, ir::Node& reshape, PassContext& context) {
    if (ir::constantOf(reshape.input(1)) != nullptr) return false;
    auto entries = traceEntries(reshape.input(1));
    if (!entries) {
      context.remarkMissed(reshape, "the length of the computed shape is unknown");
      return false;
    }
    const ir::Value* x = reshape.input(0);
    auto xDims = x->shape();
    bool allowZero = hasAllowZero(reshape);

    std::vector<int64_t> shape;
    std::vector<size_t> unresolved;
    for (size_t i = 0; i < entries->size(); ++i) {
      const ShapeEntry& entry = (*entries)[i];
      if (entry.kind == ShapeEntry::Kind::kConstant) {
        if (entry.constant < -1) return false;  // Invalid; the runtime reports it.
        if (entry.constant == -1) unresolved.push_back(i);
        shape.push_back(entry.constant);
        continue;
      }
      std::optional<ir::Dim> dim = dimOfEntry(entry);
      if (dim && dim->isKnown()) {
        shape.push_back(*dim->value);
        continue;
      }
      if (!allowZero && entryEqualsDim(entry, x, static_cast<int64_t>(i), xDims)) {
        shape.push_back(0);
        continue;
      }
      unresolved.push_back(i);
      shape.push_back(-1);
    }
    if (unresolved.size() > 1) {
      context.remarkMissed(
          reshape, absl::StrCat("the computed shape ", describeEntries(*entries), " has ",
                                unresolved.size(),
                                " entries that are neither known nor a dim of the input at the "
                                "same index",
                                allowZero ? " (allowzero=1 forbids copying dims with 0)" : ""));
      return false;
    }
    auto tensor = ir::Tensor::create<int64_t>({static_cast<int64_t>(shape.size())}, shape);
    ir::Value* constant = graph.addInitializer(absl::StrCat(reshape.input(1)->name(), "_const"),
                                               std::move(tensor));
    reshape.setInput(1, constant);
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> createSimplifyReshapesPass() {
  return std::make_unique<SimplifyReshapesPass>();
}

}  // namespace roformer::passes
