// convert-fp16: rewrites a float32 model to compute in float16 while its
// interface stays float32, as ONNX Runtime's float16 converter does with
// keep_io_types:
//
//   x (float) -> Cast(to=float16) -> ... fp16 nodes ... -> Cast(to=float) -> y (float)
//
// What changes:
// - float32 initializers and Constant/ConstantOfShape values become float16.
//   Finite values beyond float16's range (65504) are clamped to +-65504, so a
//   mask constant such as -1e12 stays finite (it would become -inf, and
//   -inf * 0 is NaN); nonzero values below float16's smallest subnormal (2^-24)
//   become +-2^-24 instead of 0, so an epsilon stays positive.
// - every float32 value computed inside the graph is retyped float16, and
//   Cast(to=float) inside the graph becomes Cast(to=float16);
// - with keep-io-types (the default), float32 graph inputs get a Cast to
//   float16 after them and float32 graph outputs a Cast back before them.
//
// What stays float32:
// - ids. The TF export feeds token ids as float32 and casts them to int32
//   for Gather. float16 represents every integer only up to 2048, so id 50000
//   would read row 49984. A float graph input keeps float32 along
//   value-preserving ops (Identity, Reshape, Squeeze, Unsqueeze, Flatten,
//   Transpose, Slice, Expand) into any Cast to a non-float type; only its
//   other readers get the float16 Cast.
// - nodes whose op type is listed in keep-fp32-ops: Casts to float32 before
//   and to float16 after them.
//
// Normalization statistics need no special case: LayerNormalization
// computes them in float32 by its stash_type=1 default, and ONNX Runtime's
// SkipLayerNormalization converts each float16 row to float32 before taking
// the mean and variance (contrib_ops/cpu/skip_layer_norm.cc).
//
// The pass runs infer-shapes first, so that every value has a known type.
// NOTE: ops whose output type comes from an attribute other than Cast's
// `to` (EyeLike, RandomNormal dtype) are not rewritten; the RoFormer graphs
// contain none.
#include <cmath>
#include <map>
#include <set>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "onnx/onnx_pb.h"
#include "passes/Passes.h"

namespace roformer::passes {
namespace {

constexpr float kHalfMax = 65504.0f;
// 2^-24, the smallest positive float16 (a subnormal).
constexpr float kHalfMinPositive = 5.9604645e-8f;

// Float32 to float16 bits, round to nearest even, after the clamping the
// header describes.
uint16_t toHalfBits(float value) {
  if (std::isfinite(value)) {
    if (std::fabs(value) > kHalfMax) value = std::copysign(kHalfMax, value);
    if (value != 0.0f && std::fabs(value) < kHalfMinPositive) {
      value = std::copysign(kHalfMinPositive, value);
    }
  }
  return ir::floatToHalfBits(value);
}

std::shared_ptr<ir::Tensor> toHalfTensor(const ir::Tensor& tensor) {
  std::span<const float> values = tensor.values<float>();
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) bits[i] = toHalfBits(values[i]);
  return std::make_shared<ir::Tensor>(
      ir::DataType::kFloat16, tensor.dims(),
      ir::Buffer::fromBytes(bits.data(), bits.size() * sizeof(uint16_t)));
}

bool isFloat32(const ir::Value* value) {
  return value != nullptr && value->elemType() == ir::DataType::kFloat;
}

// Ops that pass their input 0's values through unchanged, only rearranged.
bool preservesValues(const ir::Node& node) {
  static const char* const kOps[] = {"Identity",  "Reshape", "Squeeze", "Unsqueeze",
                                     "Flatten",   "Transpose", "Slice", "Expand"};
  if (!node.domain().empty()) return false;
  for (const char* op : kOps) {
    if (node.opType() == op) return true;
  }
  return false;
}

// A Cast to a type that is not floating point (ids, masks).
bool castsToNonFloat(const ir::Node& node) {
  if (!node.is("Cast")) return false;
  absl::StatusOr<int64_t> to = node.intAttribute("to", 0);
  return to.ok() && !ir::isFloatingPoint(static_cast<ir::DataType>(*to));
}

class ConvertFp16Pass final : public Pass {
 public:
  ConvertFp16Pass() {
    declareOption("keep-io-types",
                  "keep float32 graph inputs and outputs, with Casts at the boundary; when "
                  "false they become float16 (and float ids lose precision above 2048)",
                  &keepIoTypes_);
    declareOption("keep-fp32-ops",
                  "op types to keep in float32 with Casts around them, separated by ';' "
                  "(quote the value: keep-fp32-ops='Softmax;Einsum')",
                  &keepFp32Ops_);
  }

  std::string_view name() const override { return "convert-fp16"; }
  std::string_view summary() const override {
    return "Compute in float16, keeping float32 graph inputs and outputs (keep_io_types)";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    // Types of every value first: infer-shapes fills in what the file lacks.
    std::unique_ptr<Pass> inferShapes = createInferShapesPass();
    PassContext inferContext(std::string(inferShapes->name()), nullptr, nullptr);
    if (absl::StatusOr<bool> inferred = inferShapes->run(model, inferContext); !inferred.ok()) {
      return inferred.status();
    }

    ir::Graph& graph = model.graph();
    std::set<std::string> keptOps;
    for (absl::string_view op : absl::StrSplit(keepFp32Ops_, ';', absl::SkipEmpty())) {
      keptOps.insert(std::string(op));
    }
    auto isKept = [&](const ir::Node& node) { return keptOps.count(node.opType()) > 0; };

    std::unordered_set<const ir::Value*> fp32Values = findFloat32Values(graph, isKept);
    bool changed = false;

    // ---- Constants ----
    for (ir::Value* value : graph.initializers()) {
      if (!isFloat32(value) || value->isGraphInput() || fp32Values.count(value) > 0) continue;
      graph.setInitializer(value, toHalfTensor(*value->initializer()));
      value->mutableType().mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT16);
      context.count("initializers converted");
      changed = true;
    }

    // ---- Node outputs and attributes ----
    std::vector<ir::Node*> nodes;
    for (const auto& node : graph.nodes()) nodes.push_back(node.get());
    for (ir::Node* node : nodes) {
      for (ir::Value* output : node->outputs()) {
        if (!isFloat32(output) || fp32Values.count(output) > 0) continue;
        // A graph output too: with keep-io-types, a Cast back to float32
        // takes over its name below.
        output->mutableType().mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT16);
        context.count("values retyped");
        changed = true;
      }
      if (fp32Values.count(node->output(0)) > 0 || isKept(*node)) continue;
      if (node->is("Cast")) {
        absl::StatusOr<int64_t> to = node->intAttribute("to", 0);
        if (to.ok() && *to == onnx::TensorProto::FLOAT) {
          node->setIntAttribute("to", onnx::TensorProto::FLOAT16);
          context.count("casts retargeted");
        }
      } else if (node->is("ConstantOfShape") || node->is("Constant")) {
        if (absl::Status status = convertConstantAttribute(*node, context); !status.ok()) {
          return status;
        }
      }
    }

    // ---- Readers that need the other precision ----
    std::map<std::pair<const ir::Value*, int>, ir::Value*> casts;
    auto castOf = [&](ir::Value* value, int to) {
      auto key = std::make_pair(static_cast<const ir::Value*>(value), to);
      auto it = casts.find(key);
      if (it != casts.end()) return it->second;
      const std::string suffix = to == onnx::TensorProto::FLOAT16 ? "_fp16" : "_fp32";
      ir::Node* cast = graph.createNode("Cast", "", {value}, {value->name() + suffix}, nullptr,
                                        graph.uniqueNodeName(value->name() + suffix + "_cast"));
      cast->setIntAttribute("to", to);
      ir::Value* result = cast->output(0);
      if (std::optional<std::vector<ir::Dim>> dims = value->shape()) {
        result->setTensorType(static_cast<ir::DataType>(to), *dims);
      } else {
        result->mutableType().mutable_tensor_type()->set_elem_type(to);
      }
      context.count("casts inserted");
      casts.emplace(key, result);
      return result;
    };
    for (ir::Node* node : nodes) {
      for (size_t i = 0; i < node->inputCount(); ++i) {
        ir::Value* input = node->input(i);
        if (input == nullptr) continue;
        const bool isFp32 = fp32Values.count(input) > 0 ||
                            (input->isGraphInput() && keepIoTypes_ && isFloat32(input));
        const bool isFp16 = input->elemType() == ir::DataType::kFloat16 && !isFp32;
        if (!isFp32 && !isFp16) continue;
        const bool wantsFp32 = isKept(*node) ||
                               (isFp32 && castsToNonFloat(*node)) ||
                               (isFp32 && i == 0 && preservesValues(*node) &&
                                fp32Values.count(node->output(0)) > 0);
        if (wantsFp32 && isFp16) {
          node->setInput(i, castOf(input, onnx::TensorProto::FLOAT));
          changed = true;
        } else if (!wantsFp32 && isFp32) {
          node->setInput(i, castOf(input, onnx::TensorProto::FLOAT16));
          changed = true;
        }
      }
    }

    // ---- Graph inputs and outputs ----
    for (size_t i = 0; i < graph.outputs().size(); ++i) {
      ir::Value* output = graph.outputs()[i];
      if (output->elemType() != ir::DataType::kFloat16 || fp32Values.count(output) > 0) continue;
      if (!keepIoTypes_) continue;
      const std::string name = output->name();
      if (absl::Status status = graph.renameValue(output, graph.uniqueValueName(name + "_fp16"));
          !status.ok()) {
        return status;
      }
      ir::Node* cast = graph.createNode("Cast", "", {output}, {name + "_output"}, nullptr,
                                        graph.uniqueNodeName(name + "_output_cast"));
      cast->setIntAttribute("to", onnx::TensorProto::FLOAT);
      ir::Value* widened = cast->output(0);
      graph.setOutput(i, widened);
      if (absl::Status status = graph.renameValue(widened, name); !status.ok()) return status;
      if (std::optional<std::vector<ir::Dim>> dims = output->shape()) {
        widened->setTensorType(ir::DataType::kFloat, *dims);
      } else {
        widened->mutableType().mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
      }
      context.count("casts inserted");
      changed = true;
    }
    if (!keepIoTypes_) {
      for (ir::Value* input : graph.inputs()) {
        if (!isFloat32(input) || input->isInitializer()) continue;
        input->mutableType().mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT16);
        changed = true;
      }
    }

    if (absl::Status status = graph.topoSort(); !status.ok()) return status;
    return changed;
  }

 private:
  // Values that keep float32: float graph inputs (with keep-io-types) along
  // value-preserving ops that lead to a Cast to a non-float type, outputs of
  // kept nodes, and initializers only kept nodes read.
  template <typename IsKept>
  std::unordered_set<const ir::Value*> findFloat32Values(const ir::Graph& graph,
                                                         const IsKept& isKept) const {
    std::unordered_set<const ir::Value*> values;
    // A value is on an id path when some chain of value-preserving readers
    // from it ends in a Cast to a non-float type.
    std::function<bool(const ir::Value*)> leadsToIntegerCast = [&](const ir::Value* value) {
      for (const ir::Use& use : value->uses()) {
        if (castsToNonFloat(*use.user)) return true;
        if (use.inputIndex == 0 && preservesValues(*use.user) &&
            leadsToIntegerCast(use.user->output(0))) {
          return true;
        }
      }
      return false;
    };
    std::function<void(const ir::Value*)> markPath = [&](const ir::Value* value) {
      values.insert(value);
      for (const ir::Use& use : value->uses()) {
        if (use.inputIndex == 0 && preservesValues(*use.user) &&
            leadsToIntegerCast(use.user->output(0))) {
          markPath(use.user->output(0));
        }
      }
    };
    if (keepIoTypes_) {
      for (const ir::Value* input : graph.inputs()) {
        if (isFloat32(input) && !input->isInitializer()) markPath(input);
      }
    }
    for (const auto& node : graph.nodes()) {
      if (!isKept(*node)) continue;
      for (const ir::Value* output : node->outputs()) {
        if (isFloat32(output)) values.insert(output);
      }
    }
    for (const ir::Value* value : graph.initializers()) {
      if (!isFloat32(value) || value->uses().empty()) continue;
      bool onlyKeptReaders = true;
      for (const ir::Use& use : value->uses()) onlyKeptReaders = onlyKeptReaders && isKept(*use.user);
      if (onlyKeptReaders) values.insert(value);
    }
    return values;
  }

  // Converts a float32 `value` tensor attribute (ConstantOfShape, Constant)
  // or Constant's value_float(s) to a float16 `value` tensor.
  absl::Status convertConstantAttribute(ir::Node& node, PassContext& context) {
    std::shared_ptr<ir::Tensor> converted;
    if (const onnx::AttributeProto* attribute = node.findAttribute("value")) {
      if (!attribute->has_t() || attribute->t().data_type() != onnx::TensorProto::FLOAT) {
        return absl::OkStatus();
      }
      absl::StatusOr<std::shared_ptr<ir::Tensor>> tensor =
          ir::Tensor::fromProto(attribute->t(), {}, node.describe());
      if (!tensor.ok()) return tensor.status();
      converted = toHalfTensor(**tensor);
    } else if (node.is("Constant") && node.hasAttribute("value_float")) {
      absl::StatusOr<float> value = node.floatAttribute("value_float", 0.0f);
      if (!value.ok()) return value.status();
      converted = toHalfTensor(*ir::Tensor::create<float>({}, {*value}));
      node.removeAttribute("value_float");
    } else if (node.is("Constant") && node.hasAttribute("value_floats")) {
      absl::StatusOr<std::vector<float>> values = node.floatsAttribute("value_floats", {});
      if (!values.ok()) return values.status();
      converted = toHalfTensor(
          *ir::Tensor::create<float>({static_cast<int64_t>(values->size())}, *values));
      node.removeAttribute("value_floats");
    }
    if (converted == nullptr) return absl::OkStatus();
    onnx::AttributeProto attribute;
    attribute.set_name("value");
    attribute.set_type(onnx::AttributeProto::TENSOR);
    converted->toProto(attribute.mutable_t());
    node.setAttribute(std::move(attribute));
    context.count("constants converted");
    return absl::OkStatus();
  }

  bool keepIoTypes_ = true;
  std::string keepFp32Ops_;
};

}  // namespace

std::unique_ptr<Pass> createConvertFp16Pass() { return std::make_unique<ConvertFp16Pass>(); }

}  // namespace roformer::passes
