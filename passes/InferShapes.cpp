// infer-shapes: runs ONNX's type and shape inference (with the project's
// contrib-op schemas) and folds shape computations whose answer the inferred
// shapes already fix.
//
// Inference starts afresh on every run: the types of values that nodes
// compute are cleared first, because ONNX keeps an existing symbolic dim
// rather than the one it infers, so names invented before a rewrite (such as
// `unk__69` behind a computed Reshape) would otherwise never become the
// input's `B` again. A value that inference cannot type (an op without a
// schema) gets its previous type back. Graph outputs keep their declared
// types, merged with what inference adds.
//
// Folded into initializers:
//   Size(x)    when every dim of x is known
//   any Shape, Gather, Slice, Concat, Cast, Squeeze, Unsqueeze, Reshape,
//   Identity or single-entry reduction whose result is a 1-D or scalar
//   integer tensor of dims (see ShapeTrace.h) that are all known. So with the
//   batch symbolic and the sequence fixed, `Gather(Cast(Shape(x)), 1)`
//   becomes 1024 while `Gather(Cast(Shape(x)), 0)` stays, and a Shape of a
//   fully static value becomes a constant.
// Arithmetic on the folded values (Mul, Add, ReduceProd of several entries,
// Range, ...) is fold-constants' job.
//
// Not folded: results that need a symbolic or unknown dim (the remark names
// it), and computations made only of constants (fold-constants evaluates
// those with the runtime's kernels).
//
// The pass reports a change only when it folded something; updated value
// types alone do not count, so a fixpoint group around it terminates.
#include <limits>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ir/ShapeInference.h"
#include "passes/Passes.h"
#include "passes/RewriteHelpers.h"
#include "passes/ShapeTrace.h"

namespace roformer::passes {
namespace {

bool isTracedOp(const ir::Node& node) {
  static const std::unordered_set<std::string> kOps = {
      "Shape",   "Gather",   "Slice",      "Concat",    "Cast",      "Squeeze",  "Unsqueeze",
      "Reshape", "Identity", "ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin"};
  return node.domain().empty() && kOps.count(node.opType()) > 0;
}

class InferShapesPass final : public Pass {
 public:
  std::string_view name() const override { return "infer-shapes"; }
  std::string_view summary() const override {
    return "Infer value types and shapes; fold Shape, Size and shape arithmetic of known dims";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    if (auto status = inferAfresh(model); !status.ok()) return status;

    ir::Graph& graph = model.graph();
    // Last to first, so that the last node of a shape computation folds and
    // the nodes feeding only it are then skipped as unused.
    std::vector<ir::Node*> nodes;
    for (auto it = graph.nodes().rbegin(); it != graph.nodes().rend(); ++it) {
      nodes.push_back(it->get());
    }
    bool changed = false;
    for (ir::Node* node : nodes) {
      if (node->outputCount() != 1 || node->output() == nullptr || !node->output()->hasUses()) {
        continue;
      }
      std::shared_ptr<ir::Tensor> folded;
      std::string counter;
      if (node->is("Size")) {
        folded = foldSize(*node, context);
        counter = "Size nodes folded";
      } else if (isTracedOp(*node)) {
        folded = foldTraced(*node, context);
        counter = node->is("Shape") ? "Shape nodes folded" : "shape computations folded";
      }
      if (folded == nullptr) continue;
      replaceWithConstant(graph, node->output(), std::move(folded));
      eraseIfDead(graph, node);
      context.count(counter);
      changed = true;
    }
    return changed;
  }

 private:
  static absl::Status inferAfresh(ir::Model& model) {
    ir::Graph& graph = model.graph();
    std::vector<std::pair<ir::Value*, onnx::TypeProto>> previous;
    for (const auto& node : graph.nodes()) {
      for (ir::Value* output : node->outputs()) {
        if (output == nullptr || output->isGraphOutput()) continue;
        if (output->type().value_case() == onnx::TypeProto::VALUE_NOT_SET) continue;
        previous.emplace_back(output, output->type());
        output->setType(onnx::TypeProto());
      }
    }
    absl::Status status = ir::inferShapes(model);
    for (auto& [value, type] : previous) {
      if (value->type().value_case() == onnx::TypeProto::VALUE_NOT_SET) {
        value->setType(std::move(type));
      }
    }
    return status;
  }

  static std::shared_ptr<ir::Tensor> foldSize(const ir::Node& node, PassContext& context) {
    auto dims = node.input(0)->shape();
    if (!dims) {
      context.remarkMissed(node, "the rank of the input is unknown");
      return nullptr;
    }
    int64_t size = 1;
    for (size_t i = 0; i < dims->size(); ++i) {
      if (!(*dims)[i].isKnown()) {
        context.remarkMissed(node, absl::StrCat("dim ", i, " of the input is ",
                                                describeDim((*dims)[i])));
        return nullptr;
      }
      size *= *(*dims)[i].value;
    }
    return ir::Tensor::scalar<int64_t>(size);
  }

  static std::string describeDim(const ir::Dim& dim) {
    return dim.symbol.empty() ? std::string("unknown")
                              : absl::StrCat("symbolic ('", dim.symbol, "')");
  }

  static std::shared_ptr<ir::Tensor> foldTraced(const ir::Node& node, PassContext& context) {
    const ir::Value* output = node.output();
    ir::DataType type = output->elemType();
    if (type != ir::DataType::kInt64 && type != ir::DataType::kInt32) return nullptr;
    auto outputDims = output->staticShape();
    if (!outputDims || outputDims->size() > 1) return nullptr;

    auto entries = traceEntries(output);
    if (!entries) return nullptr;
    size_t expected = outputDims->empty() ? 1 : static_cast<size_t>((*outputDims)[0]);
    if (entries->size() != expected) return nullptr;

    // Only computations that read a dim: constant-only ones go to
    // fold-constants.
    bool readsDim = false;
    std::vector<int64_t> values;
    for (size_t i = 0; i < entries->size(); ++i) {
      const ShapeEntry& entry = (*entries)[i];
      readsDim = readsDim || entry.kind == ShapeEntry::Kind::kDimOf;
      std::optional<int64_t> value = knownEntryValue(entry);
      if (!value) {
        if (entry.kind == ShapeEntry::Kind::kDimOf && dimOfEntry(entry)) {
          context.remarkMissed(node, absl::StrCat("entry ", i, " is dim ", entry.axis, " of '",
                                                  entry.of->name(), "', which is ",
                                                  describeDim(*dimOfEntry(entry))));
        }
        return nullptr;
      }
      values.push_back(*value);
    }
    if (!readsDim) return nullptr;

    if (type == ir::DataType::kInt64) return ir::Tensor::create<int64_t>(*outputDims, values);
    std::vector<int32_t> narrow;
    for (int64_t value : values) {
      if (value < std::numeric_limits<int32_t>::min() ||
          value > std::numeric_limits<int32_t>::max()) {
        return nullptr;
      }
      narrow.push_back(static_cast<int32_t>(value));
    }
    return ir::Tensor::create<int32_t>(*outputDims, narrow);
  }
};

}  // namespace

std::unique_ptr<Pass> createInferShapesPass() { return std::make_unique<InferShapesPass>(); }

}  // namespace roformer::passes
