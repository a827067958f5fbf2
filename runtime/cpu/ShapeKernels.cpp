// Kernels that change only a tensor's shape or produce shapes and constants:
// Reshape, Squeeze, Unsqueeze, Flatten, Identity, Dropout (inference), Shape,
// Size, Constant, ConstantOfShape and Range.
#include <cmath>
#include <limits>

#include "absl/strings/str_join.h"
#include "ir/Tensor.h"
#include "onnx/onnx_pb.h"
#include "runtime/cpu/KernelUtils.h"
#include "runtime/cpu/Registration.h"

namespace roformer::runtime::cpu {
namespace {

// Base of the kernels whose output holds the input's elements unchanged
// under a new shape; subclasses compute the shape.
class ViewKernel : public CpuKernel {
 public:
  using CpuKernel::CpuKernel;
  bool canRunInPlace() const override { return true; }

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "data"); !status.ok()) return status;
    absl::StatusOr<Shape> shape = outputShape(context);
    if (!shape.ok()) return shape.status();
    context.outputs[0].type = context.inputs[0].type;
    context.outputs[0].shape = *std::move(shape);
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& input = context.inputs[0];
    if (ir::dataTypeSize(input.type) == 0) return unsupportedType("input data", input.type);
    copyElements(context.outputs[0].data, input.data, input.elementCount(),
                 ir::dataTypeSize(input.type));
    return absl::OkStatus();
  }

 protected:
  virtual absl::StatusOr<Shape> outputShape(const KernelContext& context) const = 0;
};

class IdentityKernel : public ViewKernel {
 public:
  using ViewKernel::ViewKernel;

 protected:
  absl::StatusOr<Shape> outputShape(const KernelContext& context) const override {
    return context.inputs[0].shape;
  }
};

class ReshapeKernel : public ViewKernel {
 public:
  ReshapeKernel(const ir::Node& node, bool allowZero) : ViewKernel(node), allowZero_(allowZero) {}

 protected:
  absl::StatusOr<Shape> outputShape(const KernelContext& context) const override {
    if (absl::Status status = requireInput(context, 1, "shape"); !status.ok()) return status;
    absl::StatusOr<std::vector<int64_t>> requested =
        readIntegers(name(), context.inputs[1], "input shape");
    if (!requested.ok()) return requested.status();
    const Shape& inputShape = context.inputs[0].shape;

    Shape shape = *requested;
    int64_t inferredAxis = -1;
    int64_t knownProduct = 1;
    bool hasZero = false;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == 0 && !allowZero_) {
        if (i >= inputShape.size()) {
          return invalidArgument("shape ", shapeToString(*requested), " has 0 at position ", i,
                                 " to copy an input dim, but the input ",
                                 shapeToString(inputShape), " has rank ", inputShape.size());
        }
        shape[i] = inputShape[i];
      } else if (shape[i] == -1) {
        if (inferredAxis >= 0) {
          return invalidArgument("shape ", shapeToString(*requested),
                                 " has more than one -1 dim");
        }
        inferredAxis = static_cast<int64_t>(i);
        continue;
      } else if (shape[i] < 0) {
        return invalidArgument("shape ", shapeToString(*requested), " has invalid dim ",
                               shape[i], " at position ", i);
      }
      hasZero = hasZero || shape[i] == 0;
      knownProduct *= shape[i];
    }

    const int64_t count = shapeElementCount(inputShape);
    if (inferredAxis >= 0) {
      if (hasZero && allowZero_) {
        return invalidArgument("shape ", shapeToString(*requested),
                               " has both 0 and -1, which allowzero=1 forbids");
      }
      if (knownProduct == 0 || count % knownProduct != 0) {
        return invalidArgument("cannot reshape ", shapeToString(inputShape), " (", count,
                               " elements) to ", shapeToString(*requested));
      }
      shape[inferredAxis] = count / knownProduct;
    } else if (knownProduct != count) {
      return invalidArgument("cannot reshape ", shapeToString(inputShape), " (", count,
                             " elements) to ", shapeToString(*requested), " (", knownProduct,
                             " elements)");
    }
    return shape;
  }

 private:
  bool allowZero_;
};

// Squeeze and Unsqueeze read their axes from an attribute before opset 13
// and from input 1 from opset 13.
class SqueezeKernel : public ViewKernel {
 public:
  SqueezeKernel(const ir::Node& node, std::optional<std::vector<int64_t>> attributeAxes)
      : ViewKernel(node), attributeAxes_(std::move(attributeAxes)) {}

 protected:
  absl::StatusOr<Shape> outputShape(const KernelContext& context) const override {
    const Shape& inputShape = context.inputs[0].shape;
    const int64_t rank = static_cast<int64_t>(inputShape.size());
    std::optional<std::vector<int64_t>> axes = attributeAxes_;
    if (hasInput(context, 1)) {
      absl::StatusOr<std::vector<int64_t>> values =
          readIntegers(name(), context.inputs[1], "input axes");
      if (!values.ok()) return values.status();
      axes = *values;
    }

    std::vector<bool> removed(rank, false);
    if (!axes.has_value()) {
      for (int64_t d = 0; d < rank; ++d) removed[d] = inputShape[d] == 1;
    } else {
      absl::StatusOr<std::vector<int64_t>> normalized = normalizeAxes(name(), *axes, rank, "axes");
      if (!normalized.ok()) return normalized.status();
      for (int64_t axis : *normalized) {
        if (inputShape[axis] != 1) {
          return invalidArgument("cannot squeeze axis ", axis, " of shape ",
                                 shapeToString(inputShape), " because its size is not 1");
        }
        removed[axis] = true;
      }
    }
    Shape shape;
    for (int64_t d = 0; d < rank; ++d) {
      if (!removed[d]) shape.push_back(inputShape[d]);
    }
    return shape;
  }

 private:
  std::optional<std::vector<int64_t>> attributeAxes_;
};

class UnsqueezeKernel : public ViewKernel {
 public:
  UnsqueezeKernel(const ir::Node& node, std::optional<std::vector<int64_t>> attributeAxes)
      : ViewKernel(node), attributeAxes_(std::move(attributeAxes)) {}

 protected:
  absl::StatusOr<Shape> outputShape(const KernelContext& context) const override {
    std::vector<int64_t> axes;
    if (attributeAxes_.has_value()) {
      axes = *attributeAxes_;
    } else {
      if (absl::Status status = requireInput(context, 1, "axes"); !status.ok()) return status;
      absl::StatusOr<std::vector<int64_t>> values =
          readIntegers(name(), context.inputs[1], "input axes");
      if (!values.ok()) return values.status();
      axes = *values;
    }
    const Shape& inputShape = context.inputs[0].shape;
    const int64_t rank = static_cast<int64_t>(inputShape.size() + axes.size());
    absl::StatusOr<std::vector<int64_t>> normalized = normalizeAxes(name(), axes, rank, "axes");
    if (!normalized.ok()) return normalized.status();

    std::vector<bool> inserted(rank, false);
    for (int64_t axis : *normalized) inserted[axis] = true;
    Shape shape;
    size_t next = 0;
    for (int64_t d = 0; d < rank; ++d) shape.push_back(inserted[d] ? 1 : inputShape[next++]);
    return shape;
  }

 private:
  std::optional<std::vector<int64_t>> attributeAxes_;
};

class FlattenKernel : public ViewKernel {
 public:
  FlattenKernel(const ir::Node& node, int64_t axis) : ViewKernel(node), axis_(axis) {}

 protected:
  absl::StatusOr<Shape> outputShape(const KernelContext& context) const override {
    const Shape& inputShape = context.inputs[0].shape;
    const int64_t rank = static_cast<int64_t>(inputShape.size());
    // Flatten accepts axis == rank (everything in the first dim).
    if (axis_ < -rank || axis_ > rank) {
      return invalidArgument("attribute axis ", axis_, " is outside [", -rank, ", ", rank, "]");
    }
    const int64_t axis = axis_ < 0 ? axis_ + rank : axis_;
    Shape outer(inputShape.begin(), inputShape.begin() + axis);
    Shape inner(inputShape.begin() + axis, inputShape.end());
    return Shape{shapeElementCount(outer), shapeElementCount(inner)};
  }

 private:
  int64_t axis_;
};

// Dropout at inference: the output is the input, and the optional mask is all
// true. Training mode with a nonzero ratio needs random numbers and is
// rejected.
class DropoutKernel : public CpuKernel {
 public:
  DropoutKernel(const ir::Node& node, bool modeAsInput, bool boolMask)
      : CpuKernel(node), modeAsInput_(modeAsInput), boolMask_(boolMask) {}
  bool canRunInPlace() const override { return true; }

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "data"); !status.ok()) return status;
    if (modeAsInput_ && hasInput(context, 2)) {
      absl::StatusOr<double> training = readScalar(name(), context.inputs[2], "input training_mode");
      if (!training.ok()) return training.status();
      double ratio = 0.5;
      if (hasInput(context, 1)) {
        absl::StatusOr<double> value = readScalar(name(), context.inputs[1], "input ratio");
        if (!value.ok()) return value.status();
        ratio = *value;
      }
      if (*training != 0.0 && ratio != 0.0) {
        return unimplemented("training_mode=true with ratio ", ratio,
                             " needs random dropout, which the CPU backend does not do");
      }
    }
    const TensorView& input = context.inputs[0];
    context.outputs[0].type = input.type;
    context.outputs[0].shape = input.shape;
    if (context.outputs.size() > 1) {
      context.outputs[1].type = boolMask_ ? DataType::kBool : input.type;
      context.outputs[1].shape = input.shape;
    }
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& input = context.inputs[0];
    if (ir::dataTypeSize(input.type) == 0) return unsupportedType("input data", input.type);
    copyElements(context.outputs[0].data, input.data, input.elementCount(),
                 ir::dataTypeSize(input.type));
    if (wantsOutput(context, 1)) {
      TensorView& mask = context.outputs[1];
      if (mask.type == DataType::kBool) {
        std::fill_n(mask.as<bool>(), mask.elementCount(), true);
      } else if (!visitType(FloatTypes{}, mask.type, [&](auto tag) {
                   using T = typename decltype(tag)::type;
                   std::fill_n(mask.as<T>(), mask.elementCount(), T(1));
                 })) {
        return unsupportedType("output mask", mask.type);
      }
    }
    return absl::OkStatus();
  }

 private:
  bool modeAsInput_;
  bool boolMask_;
};

// Shape; from opset 15 the optional start and end attributes select a range
// of dims, clamped to the rank like a slice.
class ShapeKernel : public CpuKernel {
 public:
  ShapeKernel(const ir::Node& node, int64_t start, std::optional<int64_t> end)
      : CpuKernel(node), start_(start), end_(end) {}

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "data"); !status.ok()) return status;
    auto [begin, end] = range(context.inputs[0].shape);
    context.outputs[0].type = DataType::kInt64;
    context.outputs[0].shape = {end - begin};
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const Shape& shape = context.inputs[0].shape;
    auto [begin, end] = range(shape);
    std::copy(shape.begin() + begin, shape.begin() + end, context.outputs[0].as<int64_t>());
    return absl::OkStatus();
  }

 private:
  std::pair<int64_t, int64_t> range(const Shape& shape) const {
    const int64_t rank = static_cast<int64_t>(shape.size());
    auto clamp = [rank](int64_t value) {
      if (value < 0) value += rank;
      return std::clamp<int64_t>(value, 0, rank);
    };
    int64_t begin = clamp(start_);
    int64_t end = end_.has_value() ? clamp(*end_) : rank;
    return {begin, std::max(begin, end)};
  }

  int64_t start_;
  std::optional<int64_t> end_;
};

class SizeKernel : public CpuKernel {
 public:
  using CpuKernel::CpuKernel;

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "data"); !status.ok()) return status;
    context.outputs[0].type = DataType::kInt64;
    context.outputs[0].shape = {};
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    *context.outputs[0].as<int64_t>() = context.inputs[0].elementCount();
    return absl::OkStatus();
  }
};

// Constant and ConstantOfShape keep their value as an ir::Tensor.
class ConstantKernel : public CpuKernel {
 public:
  ConstantKernel(const ir::Node& node, std::shared_ptr<ir::Tensor> value)
      : CpuKernel(node), value_(std::move(value)) {}

  absl::Status inferOutputs(KernelContext& context) override {
    context.outputs[0].type = value_->dataType();
    context.outputs[0].shape = value_->dims();
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    if (value_->byteSize() > 0) {
      std::memcpy(context.outputs[0].data, value_->rawData(), value_->byteSize());
    }
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<ir::Tensor> value_;
};

class ConstantOfShapeKernel : public CpuKernel {
 public:
  ConstantOfShapeKernel(const ir::Node& node, std::shared_ptr<ir::Tensor> value)
      : CpuKernel(node), value_(std::move(value)) {}

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "input"); !status.ok()) return status;
    absl::StatusOr<std::vector<int64_t>> shape =
        readIntegers(name(), context.inputs[0], "input shape");
    if (!shape.ok()) return shape.status();
    for (size_t i = 0; i < shape->size(); ++i) {
      if ((*shape)[i] < 0) {
        return invalidArgument("input shape ", shapeToString(*shape), " has negative dim at position ", i);
      }
    }
    context.outputs[0].type = value_->dataType();
    context.outputs[0].shape = *shape;
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    TensorView& out = context.outputs[0];
    const size_t elementSize = ir::dataTypeSize(out.type);
    visitElementSize(elementSize, [&](auto tag) {
      using T = typename decltype(tag)::type;
      T value;
      std::memcpy(&value, value_->rawData(), sizeof(T));
      std::fill_n(out.as<T>(), out.elementCount(), value);
    });
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<ir::Tensor> value_;
};

class RangeKernel : public CpuKernel {
 public:
  using CpuKernel::CpuKernel;

  absl::Status inferOutputs(KernelContext& context) override {
    const char* names[] = {"start", "limit", "delta"};
    for (size_t i = 0; i < 3; ++i) {
      if (absl::Status status = requireInput(context, i, names[i]); !status.ok()) return status;
      const TensorView& input = context.inputs[i];
      if (input.elementCount() != 1 || input.type != context.inputs[0].type) {
        return invalidArgument("input ", names[i], " must be a scalar of the same type as start, got ",
                               typeName(input.type), " ", shapeToString(input.shape));
      }
    }
    absl::StatusOr<int64_t> count = elementCount(context);
    if (!count.ok()) return count.status();
    context.outputs[0].type = context.inputs[0].type;
    context.outputs[0].shape = {*count};
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    TensorView& out = context.outputs[0];
    const int64_t count = out.elementCount();
    using RangeTypes = TypeList<float, double, int16_t, int32_t, int64_t>;
    visitType(RangeTypes{}, out.type, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T start = *context.inputs[0].as<const T>();
      const T delta = *context.inputs[2].as<const T>();
      T* values = out.as<T>();
      // Accumulating, as the ONNX reference does, rather than start + i *
      // delta, so float results match it bit for bit.
      T value = start;
      for (int64_t i = 0; i < count; ++i) {
        values[i] = value;
        value = static_cast<T>(value + delta);
      }
    });
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<int64_t> elementCount(const KernelContext& context) const {
    using RangeTypes = TypeList<float, double, int16_t, int32_t, int64_t>;
    absl::StatusOr<int64_t> result = 0;
    bool handled = visitType(RangeTypes{}, context.inputs[0].type, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T start = *context.inputs[0].as<const T>();
      const T limit = *context.inputs[1].as<const T>();
      const T delta = *context.inputs[2].as<const T>();
      if (delta == T(0)) {
        result = invalidArgument("input delta is 0");
        return;
      }
      double steps = std::ceil((static_cast<double>(limit) - static_cast<double>(start)) /
                               static_cast<double>(delta));
      if (!(steps == steps) || steps > static_cast<double>(std::numeric_limits<int32_t>::max())) {
        result = invalidArgument("start ", static_cast<double>(start), ", limit ",
                                 static_cast<double>(limit), " and delta ",
                                 static_cast<double>(delta),
                                 " give more than 2^31 elements or none that can be counted");
        return;
      }
      result = std::max<int64_t>(0, static_cast<int64_t>(steps));
    });
    if (!handled) return unsupportedType("input start", context.inputs[0].type);
    return result;
  }
};

// ---- Factories ----

template <typename K>
KernelFactory simpleFactory() {
  return [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    return std::make_unique<K>(node);
  };
}

// Reads the `axes` attribute of an opset-12-or-older Squeeze or Unsqueeze;
// nullopt when absent.
absl::StatusOr<std::optional<std::vector<int64_t>>> axesAttribute(const ir::Node& node) {
  if (!node.hasAttribute("axes")) return std::optional<std::vector<int64_t>>();
  absl::StatusOr<std::vector<int64_t>> axes = node.intsAttribute("axes", {});
  if (!axes.ok()) return axes.status();
  return std::optional<std::vector<int64_t>>(*axes);
}

absl::StatusOr<std::unique_ptr<Kernel>> createConstant(const ir::Node& node) {
  std::shared_ptr<ir::Tensor> value = node.constantValue();
  if (value == nullptr) {
    return absl::UnimplementedError(absl::StrCat(
        node.describe(), ": only Constant nodes with a dense numeric value are supported"));
  }
  if (ir::dataTypeSize(value->dataType()) == 0) {
    return absl::UnimplementedError(absl::StrCat(node.describe(), ": constant of element type ",
                                                 typeName(value->dataType()),
                                                 " is not supported by the CPU backend"));
  }
  return std::make_unique<ConstantKernel>(node, std::move(value));
}

absl::StatusOr<std::unique_ptr<Kernel>> createConstantOfShape(const ir::Node& node) {
  std::shared_ptr<ir::Tensor> value;
  if (const onnx::AttributeProto* attribute = node.findAttribute("value")) {
    if (attribute->type() != onnx::AttributeProto::TENSOR) {
      return absl::InvalidArgumentError(
          absl::StrCat(node.describe(), ": attribute 'value' must be a tensor"));
    }
    absl::StatusOr<std::shared_ptr<ir::Tensor>> decoded =
        ir::Tensor::fromProto(attribute->t(), {}, node.describe() + " attribute 'value'");
    if (!decoded.ok()) return decoded.status();
    value = *decoded;
    if (value->elementCount() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(node.describe(), ": attribute 'value' must have exactly one element, got ",
                       value->elementCount()));
    }
    size_t size = ir::dataTypeSize(value->dataType());
    if (size == 0 || size > 8 || value->byteSize() < size) {
      return absl::UnimplementedError(absl::StrCat(node.describe(), ": value of element type ",
                                                   typeName(value->dataType()),
                                                   " is not supported by the CPU backend"));
    }
  } else {
    value = ir::Tensor::scalar<float>(0.0f);
  }
  return std::make_unique<ConstantOfShapeKernel>(node, std::move(value));
}

}  // namespace

void registerShapeKernels(KernelRegistry& registry) {
  registry.add("", "Identity", simpleFactory<IdentityKernel>());
  registry.add("", "Size", simpleFactory<SizeKernel>());
  registry.add("", "Range", simpleFactory<RangeKernel>(), 11);
  registry.add("", "Constant", createConstant);
  registry.add("", "ConstantOfShape", createConstantOfShape, 9);

  registry.add("", "Reshape",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<ReshapeKernel>(node, false);
               },
               5, 13);
  registry.add("", "Reshape",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 absl::StatusOr<int64_t> allowZero = node.intAttribute("allowzero", 0);
                 if (!allowZero.ok()) return allowZero.status();
                 return std::make_unique<ReshapeKernel>(node, *allowZero != 0);
               },
               14);

  registry.add("", "Squeeze",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 auto axes = axesAttribute(node);
                 if (!axes.ok()) return axes.status();
                 return std::make_unique<SqueezeKernel>(node, *axes);
               },
               1, 12);
  registry.add("", "Squeeze",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<SqueezeKernel>(node, std::nullopt);
               },
               13);
  registry.add("", "Unsqueeze",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 auto axes = axesAttribute(node);
                 if (!axes.ok()) return axes.status();
                 if (!axes->has_value()) {
                   return absl::InvalidArgumentError(
                       absl::StrCat(node.describe(), ": missing required attribute 'axes'"));
                 }
                 return std::make_unique<UnsqueezeKernel>(node, *axes);
               },
               1, 12);
  registry.add("", "Unsqueeze",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<UnsqueezeKernel>(node, std::nullopt);
               },
               13);
  registry.add("", "Flatten", [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    absl::StatusOr<int64_t> axis = node.intAttribute("axis", 1);
    if (!axis.ok()) return axis.status();
    return std::make_unique<FlattenKernel>(node, *axis);
  });

  registry.add("", "Shape",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<ShapeKernel>(node, 0, std::nullopt);
               },
               1, 14);
  registry.add("", "Shape",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 absl::StatusOr<int64_t> start = node.intAttribute("start", 0);
                 if (!start.ok()) return start.status();
                 std::optional<int64_t> end;
                 if (node.hasAttribute("end")) {
                   absl::StatusOr<int64_t> value = node.intAttribute("end", 0);
                   if (!value.ok()) return value.status();
                   end = *value;
                 }
                 return std::make_unique<ShapeKernel>(node, *start, end);
               },
               15);

  // Dropout: opsets 7 to 9 return a mask of the input's type, 10 to 11 a bool
  // mask, and from 12 ratio and training_mode are inputs.
  registry.add("", "Dropout",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<DropoutKernel>(node, false, false);
               },
               7, 9);
  registry.add("", "Dropout",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<DropoutKernel>(node, false, true);
               },
               10, 11);
  registry.add("", "Dropout",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<DropoutKernel>(node, true, true);
               },
               12);
}

}  // namespace roformer::runtime::cpu
