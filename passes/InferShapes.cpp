// infer-shapes: runs ONNX's type and shape inference (with the project's
// contrib-op schemas) and folds shape computations whose result the inferred
// shapes already determine.
//
// Inference starts afresh on every run: the types of values that nodes
// compute are cleared first. ONNX keeps an existing symbolic dim rather than
// the one it infers, so a name invented before a rewrite (such as `unk__69`
// behind a computed Reshape) would otherwise never become the input's `B`. A value that inference cannot type (an op without a
// schema) gets its previous type back. Graph outputs keep their declared
// types, merged with what inference adds.
//
// ONNX 1.12 gives a Reshape whose shape input is computed (not a constant)
// no rank at all, and everything after it stays untyped. So after the
// whole-graph inference a second sweep visits, in topological order, each
// node whose outputs still lack a shape: a Reshape gets its shape from the
// traced shape entries (ShapeTrace.h: constants, dims of other values, 0 and
// -1 resolved against the input), any other op runs ONNX's own inference
// function for that one node with the types found so far. One sweep types
// the whole graph, where repeating the whole-graph inference would gain one
// Reshape per chain and run.
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
#include <exception>
#include <limits>
#include <memory>
#include <set>
#include <unordered_map>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ir/ShapeInference.h"
#include "onnx/defs/schema.h"
#include "onnx/shape_inference/implementation.h"
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
    if (auto status = inferAfresh(model, context); !status.ok()) return status;

    ir::Graph& graph = model.graph();
    // Last to first, so that the last node of a shape computation folds and
    // the nodes that fed only it are erased with it.
    std::vector<ir::Node*> nodes;
    for (auto it = graph.nodes().rbegin(); it != graph.nodes().rend(); ++it) {
      nodes.push_back(it->get());
    }
    std::unordered_set<const ir::Node*> erased;
    bool changed = false;
    for (ir::Node* node : nodes) {
      if (erased.count(node) > 0) continue;
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
      eraseDeadChain(graph, node, erased);
      context.count(counter);
      changed = true;
    }
    return changed;
  }

 private:
  static absl::Status inferAfresh(ir::Model& model, PassContext& context) {
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
    if (status.ok()) completeTypes(model, context);
    for (auto& [value, type] : previous) {
      if (value->type().value_case() == onnx::TypeProto::VALUE_NOT_SET) {
        value->setType(std::move(type));
      }
    }
    return status;
  }

  static bool hasShape(const ir::Value* value) {
    return value->type().value_case() == onnx::TypeProto::kTensorType &&
           value->type().tensor_type().has_shape();
  }

  // The sweep described in the header. A node is visited when an output
  // lacks a shape, when it is a Reshape (its traced dims may name symbols
  // that ONNX replaced with fresh ones), or when the sweep changed the type
  // of one of its inputs.
  static void completeTypes(ir::Model& model, PassContext& context) {
    std::unordered_set<const ir::Value*> refreshed;
    for (const auto& node : model.graph().nodes()) {
      if (node->hasSubgraphs()) continue;
      bool visit = node->is("Reshape");
      for (const ir::Value* output : node->outputs()) {
        visit = visit || (output != nullptr && !hasShape(output));
      }
      for (const ir::Value* input : node->inputs()) {
        visit = visit || refreshed.count(input) > 0;
      }
      if (!visit) continue;

      std::vector<std::optional<onnx::TypeProto>> fresh =
          node->is("Reshape") ? reshapeType(*node) : inferNode(model, *node);
      for (size_t i = 0; i < fresh.size() && i < node->outputCount(); ++i) {
        ir::Value* output = node->output(i);
        if (output == nullptr || !fresh[i] || !mergeType(*output, *fresh[i])) continue;
        refreshed.insert(output);
        context.count("value types refined after ONNX inference");
      }
    }
  }

  // Merges a type found by the sweep into `value`'s: a missing shape is
  // taken whole, and within equal ranks a dim is taken when it is known, or
  // symbolic where the current dim is not known. Known dims that whole-graph
  // inference found are never lost. Returns whether the type changed.
  static bool mergeType(ir::Value& value, const onnx::TypeProto& fresh) {
    if (fresh.value_case() != onnx::TypeProto::kTensorType || !fresh.tensor_type().has_shape()) {
      return false;
    }
    if (!hasShape(&value)) {
      value.setType(fresh);
      return true;
    }
    auto* shape = value.mutableType().mutable_tensor_type()->mutable_shape();
    const auto& freshShape = fresh.tensor_type().shape();
    if (shape->dim_size() != freshShape.dim_size()) return false;
    bool changed = false;
    for (int i = 0; i < shape->dim_size(); ++i) {
      auto* dim = shape->mutable_dim(i);
      const auto& freshDim = freshShape.dim(i);
      bool take = freshDim.has_dim_value()
                      ? !dim->has_dim_value() || dim->dim_value() != freshDim.dim_value()
                      : freshDim.has_dim_param() && !dim->has_dim_value() &&
                            dim->dim_param() != freshDim.dim_param();
      if (take) {
        *dim = freshDim;
        changed = true;
      }
    }
    return changed;
  }

  // The output type of a Reshape from its traced shape entries.
  static std::vector<std::optional<onnx::TypeProto>> reshapeType(const ir::Node& reshape) {
    const ir::Value* input = reshape.input(0);
    if (input == nullptr || input->elemType() == ir::DataType::kUndefined) return {};
    auto entries = traceEntries(reshape.input(1));
    if (!entries) return {};
    auto inputDims = input->shape();
    auto allowZero = reshape.intAttribute("allowzero", 0);
    if (!allowZero.ok()) return {};

    std::vector<ir::Dim> dims;
    std::optional<size_t> inferred;
    for (size_t i = 0; i < entries->size(); ++i) {
      const ShapeEntry& entry = (*entries)[i];
      std::optional<int64_t> value = knownEntryValue(entry);
      if (value && *value == -1) {
        inferred = i;
        dims.push_back(ir::Dim::unknown());
      } else if (value && *value == 0 && *allowZero == 0) {
        bool copyable = inputDims && i < inputDims->size();
        dims.push_back(copyable ? (*inputDims)[i] : ir::Dim::unknown());
      } else if (value) {
        dims.push_back(ir::Dim::known(*value));
      } else if (std::optional<ir::Dim> dim = dimOfEntry(entry)) {
        dims.push_back(*dim);
      } else {
        dims.push_back(ir::Dim::unknown());
      }
    }
    if (inferred && inputDims) {
      dims[*inferred] = inferredDim(*inputDims, dims, *inferred);
    }
    onnx::TypeProto type;
    auto* tensor = type.mutable_tensor_type();
    tensor->set_elem_type(static_cast<int32_t>(input->elemType()));
    for (const ir::Dim& dim : dims) {
      auto* out = tensor->mutable_shape()->add_dim();
      if (dim.isKnown()) {
        out->set_dim_value(*dim.value);
      } else if (!dim.symbol.empty()) {
        out->set_dim_param(dim.symbol);
      }
    }
    return {type};
  }

  // Resolves the -1 entry of a Reshape at `index` from the element count:
  // input dims over the other output dims, where symbolic dims cancel by
  // name. The result is a number, or a symbol when exactly one input symbol
  // remains with nothing else left over; otherwise unknown.
  static ir::Dim inferredDim(const std::vector<ir::Dim>& input, const std::vector<ir::Dim>& output,
                             size_t index) {
    int64_t inputProduct = 1;
    std::multiset<std::string> symbols;
    for (const ir::Dim& dim : input) {
      if (dim.isKnown()) {
        inputProduct *= *dim.value;
      } else if (!dim.symbol.empty()) {
        symbols.insert(dim.symbol);
      } else {
        return ir::Dim::unknown();
      }
    }
    int64_t otherProduct = 1;
    for (size_t i = 0; i < output.size(); ++i) {
      if (i == index) continue;
      const ir::Dim& dim = output[i];
      if (dim.isKnown()) {
        otherProduct *= *dim.value;
        continue;
      }
      auto match = dim.symbol.empty() ? symbols.end() : symbols.find(dim.symbol);
      if (match == symbols.end()) return ir::Dim::unknown();
      symbols.erase(match);
    }
    if (otherProduct <= 0 || inputProduct % otherProduct != 0) return ir::Dim::unknown();
    int64_t quotient = inputProduct / otherProduct;
    if (symbols.empty()) return ir::Dim::known(quotient);
    if (symbols.size() == 1 && quotient == 1) return ir::Dim::symbolic(*symbols.begin());
    return ir::Dim::unknown();
  }

  // Runs ONNX's inference function of `node` alone and returns its output
  // types; small constant inputs are passed as data, as whole-graph
  // inference does.
  static std::vector<std::optional<onnx::TypeProto>> inferNode(const ir::Model& model,
                                                              const ir::Node& node) {
    std::optional<int64_t> opset = model.opsetVersion(node.domain());
    if (!opset) return {};
    const onnx::OpSchema* schema = onnx::OpSchemaRegistry::Schema(
        node.opType(), static_cast<int>(*opset), node.domain());
    if (schema == nullptr || !schema->has_type_and_shape_inference_function()) return {};

    onnx::NodeProto proto;
    proto.set_op_type(node.opType());
    proto.set_domain(node.domain());
    std::unordered_map<std::string, onnx::TypeProto*> inputTypesByName;
    std::unordered_map<std::string, const onnx::TensorProto*> data;
    std::vector<std::unique_ptr<onnx::TensorProto>> tensors;
    std::vector<onnx::TypeProto> inputTypes;
    inputTypes.reserve(node.inputCount());
    for (const ir::Value* input : node.inputs()) {
      proto.add_input(input != nullptr ? input->name() : std::string());
      if (input == nullptr) continue;
      if (input->type().value_case() != onnx::TypeProto::VALUE_NOT_SET) {
        inputTypes.push_back(input->type());
        inputTypesByName[input->name()] = &inputTypes.back();
      }
      std::shared_ptr<ir::Tensor> constant = ir::constantOf(input);
      if (constant != nullptr && constant->byteSize() <= kInlineDataBytes) {
        tensors.push_back(std::make_unique<onnx::TensorProto>());
        constant->toProto(tensors.back().get());
        tensors.back()->set_name(input->name());
        data[input->name()] = tensors.back().get();
      }
    }
    for (const ir::Value* output : node.outputs()) {
      proto.add_output(output != nullptr ? output->name() : std::string());
    }
    for (const auto& attribute : node.attributes()) *proto.add_attribute() = attribute;

    onnx::shape_inference::InferenceContextImpl inference(proto, inputTypesByName, data, {});
    try {
      schema->GetTypeAndShapeInferenceFunction()(inference);
    } catch (const std::exception&) {
      return {};  // Inconsistent types: leave the node's types as they are.
    }
    std::vector<std::optional<onnx::TypeProto>> outputTypes;
    for (size_t i = 0; i < node.outputCount(); ++i) {
      outputTypes.emplace_back(*inference.getOutputType(i));
    }
    return outputTypes;
  }

  // Constant inputs up to this size reach the inference functions as data,
  // like the whole-graph inference's (exportForAnalysis inlines 4 KiB).
  static constexpr size_t kInlineDataBytes = 4096;

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
      if (__builtin_mul_overflow(size, *(*dims)[i].value, &size)) {
        context.remarkMissed(node, "the input's element count does not fit in 64 bits");
        return nullptr;
      }
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
