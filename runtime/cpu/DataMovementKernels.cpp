// Kernels that move elements without arithmetic: Gather, Concat, Slice,
// Split, Transpose, Expand and Tile.
#include <limits>
#include <numeric>

#include "absl/strings/str_join.h"
#include "runtime/cpu/KernelUtils.h"
#include "runtime/cpu/Registration.h"

namespace roformer::runtime::cpu {
namespace {

// Product of shape[begin, end).
int64_t dimProduct(const Shape& shape, size_t begin, size_t end) {
  int64_t product = 1;
  for (size_t d = begin; d < end; ++d) product *= shape[d];
  return product;
}

absl::Status checkCopyableType(const CpuKernel& kernel, DataType type, absl::string_view what) {
  if (ir::dataTypeSize(type) != 0) return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat(kernel.name(), ": ", what, " has element type ",
                                               typeName(type),
                                               ", which the CPU kernel does not support"));
}

// ---- Gather ----

class GatherKernel : public CpuKernel {
 public:
  GatherKernel(const ir::Node& node, int64_t axis) : CpuKernel(node), axis_(axis) {}

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "data"); !status.ok()) return status;
    if (absl::Status status = requireInput(context, 1, "indices"); !status.ok()) return status;
    const TensorView& data = context.inputs[0];
    const TensorView& indices = context.inputs[1];
    if (absl::Status status = checkCopyableType(*this, data.type, "input data"); !status.ok()) {
      return status;
    }
    if (indices.type != DataType::kInt32 && indices.type != DataType::kInt64) {
      return invalidArgument("input indices must be int32 or int64, not ", typeName(indices.type));
    }
    absl::StatusOr<int64_t> axis =
        normalizeAxis(name(), axis_, static_cast<int64_t>(data.shape.size()), "attribute axis");
    if (!axis.ok()) return axis.status();

    Shape shape(data.shape.begin(), data.shape.begin() + *axis);
    shape.insert(shape.end(), indices.shape.begin(), indices.shape.end());
    shape.insert(shape.end(), data.shape.begin() + *axis + 1, data.shape.end());
    context.outputs[0].type = data.type;
    context.outputs[0].shape = std::move(shape);
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& data = context.inputs[0];
    const TensorView& indices = context.inputs[1];
    const int64_t axis = axis_ < 0 ? axis_ + static_cast<int64_t>(data.shape.size()) : axis_;
    const int64_t axisDim = data.shape[axis];
    const int64_t outer = dimProduct(data.shape, 0, axis);
    const int64_t inner = dimProduct(data.shape, axis + 1, data.shape.size());
    const int64_t indexCount = indices.elementCount();
    const size_t blockBytes = static_cast<size_t>(inner) * ir::dataTypeSize(data.type);

    // Validate and normalize every index before reading any data.
    absl::StatusOr<std::vector<int64_t>> positions = readIntegers(name(), indices, "input indices");
    if (!positions.ok()) return positions.status();
    for (int64_t i = 0; i < indexCount; ++i) {
      int64_t& index = (*positions)[i];
      if (index < -axisDim || index >= axisDim) {
        return invalidArgument("index ", index, " at position ", i, " is outside [", -axisDim,
                               ", ", axisDim, ")");
      }
      if (index < 0) index += axisDim;
    }

    const auto* source = static_cast<const uint8_t*>(data.data);
    auto* destination = static_cast<uint8_t*>(context.outputs[0].data);
    parallelFor(context.threads, outer * indexCount, inner,
                [&](int64_t begin, int64_t end) {
                  for (int64_t item = begin; item < end; ++item) {
                    const int64_t o = item / indexCount;
                    const int64_t i = item % indexCount;
                    std::memcpy(destination + item * blockBytes,
                                source + (o * axisDim + (*positions)[i]) * blockBytes, blockBytes);
                  }
                });
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
};

// ---- Concat ----

class ConcatKernel : public CpuKernel {
 public:
  ConcatKernel(const ir::Node& node, int64_t axis) : CpuKernel(node), axis_(axis) {}

  absl::Status inferOutputs(KernelContext& context) override {
    if (context.inputs.empty()) return invalidArgument("needs at least one input");
    const TensorView& first = context.inputs[0];
    if (absl::Status status = checkCopyableType(*this, first.type, "input 0"); !status.ok()) {
      return status;
    }
    const int64_t rank = static_cast<int64_t>(first.shape.size());
    absl::StatusOr<int64_t> axis = normalizeAxis(name(), axis_, rank, "attribute axis");
    if (!axis.ok()) return axis.status();

    Shape shape = first.shape;
    shape[*axis] = 0;
    for (size_t i = 0; i < context.inputs.size(); ++i) {
      if (absl::Status status = requireInput(context, i, "inputs"); !status.ok()) return status;
      const TensorView& input = context.inputs[i];
      if (input.type != first.type) {
        return invalidArgument("input ", i, " has element type ", typeName(input.type),
                               " but input 0 has ", typeName(first.type));
      }
      bool compatible = static_cast<int64_t>(input.shape.size()) == rank;
      for (int64_t d = 0; compatible && d < rank; ++d) {
        compatible = d == *axis || input.shape[d] == first.shape[d];
      }
      if (!compatible) {
        return invalidArgument("input ", i, " has shape ", shapeToString(input.shape),
                               ", which does not match input 0 ", shapeToString(first.shape),
                               " outside axis ", *axis);
      }
      shape[*axis] += input.shape[*axis];
    }
    context.outputs[0].type = first.type;
    context.outputs[0].shape = std::move(shape);
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& out = context.outputs[0];
    const int64_t axis = axis_ < 0 ? axis_ + static_cast<int64_t>(out.shape.size()) : axis_;
    const size_t elementSize = ir::dataTypeSize(out.type);
    const int64_t outer = dimProduct(out.shape, 0, axis);
    const int64_t inner = dimProduct(out.shape, axis + 1, out.shape.size());
    const size_t outRowBytes = static_cast<size_t>(out.shape[axis] * inner) * elementSize;

    auto* destination = static_cast<uint8_t*>(out.data);
    size_t columnOffset = 0;
    for (const TensorView& input : context.inputs) {
      const size_t rowBytes = static_cast<size_t>(input.shape[axis] * inner) * elementSize;
      const auto* source = static_cast<const uint8_t*>(input.data);
      if (rowBytes > 0) {
        parallelFor(context.threads, outer, static_cast<int64_t>(rowBytes / 4),
                    [&](int64_t begin, int64_t end) {
                      for (int64_t o = begin; o < end; ++o) {
                        std::memcpy(destination + o * outRowBytes + columnOffset,
                                    source + o * rowBytes, rowBytes);
                      }
                    });
      }
      columnOffset += rowBytes;
    }
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
};

// ---- Slice ----

// One sliced axis: the first element, the step and the element count.
struct SliceAxis {
  int64_t start = 0;
  int64_t step = 1;
  int64_t count = 0;
};

// Clamps start and end the way ONNX Slice does and counts the elements.
SliceAxis resolveSlice(int64_t start, int64_t end, int64_t step, int64_t dim) {
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  SliceAxis axis;
  axis.step = step;
  if (dim == 0) return axis;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    axis.count = end > start ? (end - start + step - 1) / step : 0;
  } else {
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    axis.count = start > end ? (start - end - step - 1) / -step : 0;
  }
  axis.start = start;
  return axis;
}

class SliceKernel : public CpuKernel {
 public:
  // Before opset 10 starts, ends and axes are attributes; from 10 they are
  // inputs 1 to 3, with steps as input 4.
  struct Attributes {
    std::vector<int64_t> starts;
    std::vector<int64_t> ends;
    std::optional<std::vector<int64_t>> axes;
  };
  SliceKernel(const ir::Node& node, std::optional<Attributes> attributes)
      : CpuKernel(node), attributes_(std::move(attributes)) {}

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "data"); !status.ok()) return status;
    const TensorView& data = context.inputs[0];
    if (absl::Status status = checkCopyableType(*this, data.type, "input data"); !status.ok()) {
      return status;
    }
    absl::StatusOr<std::vector<SliceAxis>> axes = resolve(context);
    if (!axes.ok()) return axes.status();
    Shape shape;
    for (const SliceAxis& axis : *axes) shape.push_back(axis.count);
    context.outputs[0].type = data.type;
    context.outputs[0].shape = std::move(shape);
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& data = context.inputs[0];
    absl::StatusOr<std::vector<SliceAxis>> axes = resolve(context);
    if (!axes.ok()) return axes.status();
    std::vector<int64_t> strides = contiguousStrides(data.shape);
    std::vector<int64_t> sourceStrides;
    std::vector<int64_t> dims;
    int64_t offset = 0;
    for (size_t d = 0; d < axes->size(); ++d) {
      const SliceAxis& axis = (*axes)[d];
      offset += axis.start * strides[d];
      sourceStrides.push_back(axis.step * strides[d]);
      dims.push_back(axis.count);
    }
    if (dims.empty()) {
      copyElements(context.outputs[0].data, data.data, 1, ir::dataTypeSize(data.type));
      return absl::OkStatus();
    }
    copyStrided(data.data, offset, sourceStrides, dims, context.outputs[0].data,
                ir::dataTypeSize(data.type), context.threads);
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<std::vector<SliceAxis>> resolve(const KernelContext& context) const {
    const Shape& shape = context.inputs[0].shape;
    const int64_t rank = static_cast<int64_t>(shape.size());
    std::vector<int64_t> starts;
    std::vector<int64_t> ends;
    std::optional<std::vector<int64_t>> axes;
    std::optional<std::vector<int64_t>> steps;
    if (attributes_.has_value()) {
      starts = attributes_->starts;
      ends = attributes_->ends;
      axes = attributes_->axes;
    } else {
      const char* names[] = {"starts", "ends", "axes", "steps"};
      std::vector<int64_t> values[4];
      for (size_t i = 1; i <= 4; ++i) {
        if (!hasInput(context, i)) {
          if (i <= 2) return invalidArgument("missing required input ", i, " (", names[i - 1], ")");
          continue;
        }
        absl::StatusOr<std::vector<int64_t>> read =
            readIntegers(name(), context.inputs[i], absl::StrCat("input ", names[i - 1]));
        if (!read.ok()) return read.status();
        values[i - 1] = *read;
        if (i == 3) axes = *read;
        if (i == 4) steps = *read;
      }
      starts = values[0];
      ends = values[1];
    }

    const size_t count = starts.size();
    if (ends.size() != count || (axes && axes->size() != count) ||
        (steps && steps->size() != count)) {
      return invalidArgument("starts, ends, axes and steps must have the same length, got ",
                             starts.size(), ", ", ends.size(), ", ", axes ? axes->size() : count,
                             " and ", steps ? steps->size() : count);
    }
    std::vector<int64_t> axisList(count);
    if (axes.has_value()) {
      absl::StatusOr<std::vector<int64_t>> normalized = normalizeAxes(name(), *axes, rank, "axes");
      if (!normalized.ok()) return normalized.status();
      axisList = *normalized;
    } else {
      if (static_cast<int64_t>(count) > rank) {
        return invalidArgument("starts has ", count, " values for an input of rank ", rank);
      }
      std::iota(axisList.begin(), axisList.end(), 0);
    }

    std::vector<SliceAxis> result(rank);
    for (int64_t d = 0; d < rank; ++d) result[d] = SliceAxis{0, 1, shape[d]};
    for (size_t i = 0; i < count; ++i) {
      const int64_t step = steps ? (*steps)[i] : 1;
      if (step == 0) return invalidArgument("steps has 0 at position ", i);
      result[axisList[i]] = resolveSlice(starts[i], ends[i], step, shape[axisList[i]]);
    }
    return result;
  }

  std::optional<Attributes> attributes_;
};

// ---- Split ----

class SplitKernel : public CpuKernel {
 public:
  // `splitAttribute` is the `split` attribute of opsets before 13; from 13 the
  // sizes come from input 1. `numOutputs` is opset 18's num_outputs.
  SplitKernel(const ir::Node& node, int64_t axis, std::optional<std::vector<int64_t>> splitAttribute,
              std::optional<int64_t> numOutputs)
      : CpuKernel(node), axis_(axis), splitAttribute_(std::move(splitAttribute)),
        numOutputs_(numOutputs) {}

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "input"); !status.ok()) return status;
    const TensorView& input = context.inputs[0];
    if (absl::Status status = checkCopyableType(*this, input.type, "input"); !status.ok()) {
      return status;
    }
    absl::StatusOr<std::vector<int64_t>> sizes = splitSizes(context);
    if (!sizes.ok()) return sizes.status();
    const int64_t axis = *normalizeAxis(name(), axis_, static_cast<int64_t>(input.shape.size()), "axis");
    for (size_t i = 0; i < context.outputs.size(); ++i) {
      context.outputs[i].type = input.type;
      context.outputs[i].shape = input.shape;
      context.outputs[i].shape[axis] = (*sizes)[i];
    }
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& input = context.inputs[0];
    const int64_t axis = axis_ < 0 ? axis_ + static_cast<int64_t>(input.shape.size()) : axis_;
    const size_t elementSize = ir::dataTypeSize(input.type);
    const int64_t outer = dimProduct(input.shape, 0, axis);
    const int64_t inner = dimProduct(input.shape, axis + 1, input.shape.size());
    const size_t inRowBytes = static_cast<size_t>(input.shape[axis] * inner) * elementSize;
    const auto* source = static_cast<const uint8_t*>(input.data);

    size_t columnOffset = 0;
    for (size_t i = 0; i < context.outputs.size(); ++i) {
      const TensorView& out = context.outputs[i];
      const size_t rowBytes = static_cast<size_t>(out.shape[axis] * inner) * elementSize;
      if (out.data != nullptr && rowBytes > 0) {
        auto* destination = static_cast<uint8_t*>(out.data);
        for (int64_t o = 0; o < outer; ++o) {
          std::memcpy(destination + o * rowBytes, source + o * inRowBytes + columnOffset, rowBytes);
        }
      }
      columnOffset += rowBytes;
    }
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<std::vector<int64_t>> splitSizes(const KernelContext& context) const {
    const Shape& shape = context.inputs[0].shape;
    absl::StatusOr<int64_t> axis =
        normalizeAxis(name(), axis_, static_cast<int64_t>(shape.size()), "attribute axis");
    if (!axis.ok()) return axis.status();
    const int64_t dim = shape[*axis];
    const int64_t outputs = static_cast<int64_t>(context.outputs.size());

    std::optional<std::vector<int64_t>> sizes = splitAttribute_;
    if (hasInput(context, 1)) {
      absl::StatusOr<std::vector<int64_t>> values = readIntegers(name(), context.inputs[1], "input split");
      if (!values.ok()) return values.status();
      sizes = *values;
    }
    if (sizes.has_value()) {
      if (static_cast<int64_t>(sizes->size()) != outputs) {
        return invalidArgument("split has ", sizes->size(), " sizes for ", outputs, " outputs");
      }
      int64_t total = 0;
      for (int64_t size : *sizes) {
        if (size < 0) return invalidArgument("split has negative size ", size);
        total += size;
      }
      if (total != dim) {
        return invalidArgument("split sizes [", absl::StrJoin(*sizes, ", "), "] add up to ", total,
                               " but axis ", *axis, " has size ", dim);
      }
      return *sizes;
    }

    // Without sizes: equal parts. num_outputs (opset 18) allows a smaller
    // last part; older opsets need the dim to divide evenly.
    std::vector<int64_t> result;
    if (numOutputs_.has_value()) {
      if (*numOutputs_ != outputs) {
        return invalidArgument("num_outputs is ", *numOutputs_, " but the node has ", outputs,
                               " outputs");
      }
      const int64_t part = (dim + outputs - 1) / outputs;
      for (int64_t i = 0; i < outputs; ++i) {
        result.push_back(std::clamp<int64_t>(dim - i * part, 0, part));
      }
      return result;
    }
    if (outputs == 0 || dim % outputs != 0) {
      return invalidArgument("axis ", *axis, " of size ", dim, " does not split evenly into ",
                             outputs, " outputs");
    }
    result.assign(outputs, dim / outputs);
    return result;
  }

  int64_t axis_;
  std::optional<std::vector<int64_t>> splitAttribute_;
  std::optional<int64_t> numOutputs_;
};

// ---- Transpose ----

class TransposeKernel : public CpuKernel {
 public:
  TransposeKernel(const ir::Node& node, std::optional<std::vector<int64_t>> perm)
      : CpuKernel(node), perm_(std::move(perm)) {}

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "data"); !status.ok()) return status;
    const TensorView& data = context.inputs[0];
    if (absl::Status status = checkCopyableType(*this, data.type, "input data"); !status.ok()) {
      return status;
    }
    absl::StatusOr<std::vector<int64_t>> perm = permutation(data.shape.size());
    if (!perm.ok()) return perm.status();
    Shape shape;
    for (int64_t axis : *perm) shape.push_back(data.shape[axis]);
    context.outputs[0].type = data.type;
    context.outputs[0].shape = std::move(shape);
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& data = context.inputs[0];
    std::vector<int64_t> perm = *permutation(data.shape.size());
    std::vector<int64_t> strides = contiguousStrides(data.shape);
    std::vector<int64_t> sourceStrides;
    for (int64_t axis : perm) sourceStrides.push_back(strides[axis]);
    if (perm.empty()) {
      copyElements(context.outputs[0].data, data.data, 1, ir::dataTypeSize(data.type));
      return absl::OkStatus();
    }
    copyStrided(data.data, 0, sourceStrides, context.outputs[0].shape, context.outputs[0].data,
                ir::dataTypeSize(data.type), context.threads);
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<std::vector<int64_t>> permutation(size_t rank) const {
    if (!perm_.has_value()) {
      std::vector<int64_t> reversed(rank);
      for (size_t d = 0; d < rank; ++d) reversed[d] = static_cast<int64_t>(rank - 1 - d);
      return reversed;
    }
    if (perm_->size() != rank) {
      return invalidArgument("attribute perm [", absl::StrJoin(*perm_, ", "), "] has ",
                             perm_->size(), " entries for an input of rank ", rank);
    }
    return normalizeAxes(name(), *perm_, static_cast<int64_t>(rank), "attribute perm");
  }

  std::optional<std::vector<int64_t>> perm_;
};

// ---- Expand and Tile ----

class ExpandKernel : public CpuKernel {
 public:
  using CpuKernel::CpuKernel;

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "input"); !status.ok()) return status;
    if (absl::Status status = requireInput(context, 1, "shape"); !status.ok()) return status;
    const TensorView& input = context.inputs[0];
    if (absl::Status status = checkCopyableType(*this, input.type, "input"); !status.ok()) {
      return status;
    }
    absl::StatusOr<std::vector<int64_t>> requested =
        readIntegers(name(), context.inputs[1], "input shape");
    if (!requested.ok()) return requested.status();
    for (int64_t dim : *requested) {
      if (dim < 0) return invalidArgument("input shape ", shapeToString(*requested), " has a negative dim");
    }
    absl::StatusOr<Shape> shape = broadcastShapes(name(), {input.shape, *requested});
    if (!shape.ok()) return shape.status();
    context.outputs[0].type = input.type;
    context.outputs[0].shape = *shape;
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& input = context.inputs[0];
    const TensorView& out = context.outputs[0];
    const size_t rank = out.shape.size();
    const size_t offset = rank - input.shape.size();
    std::vector<int64_t> inputStrides = contiguousStrides(input.shape);
    std::vector<int64_t> sourceStrides(rank, 0);
    for (size_t d = 0; d < input.shape.size(); ++d) {
      sourceStrides[offset + d] = input.shape[d] == 1 ? 0 : inputStrides[d];
    }
    if (rank == 0) {
      copyElements(out.data, input.data, 1, ir::dataTypeSize(input.type));
      return absl::OkStatus();
    }
    copyStrided(input.data, 0, sourceStrides, out.shape, out.data, ir::dataTypeSize(input.type),
                context.threads);
    return absl::OkStatus();
  }
};

class TileKernel : public CpuKernel {
 public:
  using CpuKernel::CpuKernel;

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "input"); !status.ok()) return status;
    if (absl::Status status = requireInput(context, 1, "repeats"); !status.ok()) return status;
    const TensorView& input = context.inputs[0];
    if (absl::Status status = checkCopyableType(*this, input.type, "input"); !status.ok()) {
      return status;
    }
    absl::StatusOr<std::vector<int64_t>> repeats = readRepeats(context);
    if (!repeats.ok()) return repeats.status();
    Shape shape = input.shape;
    for (size_t d = 0; d < shape.size(); ++d) shape[d] *= (*repeats)[d];
    context.outputs[0].type = input.type;
    context.outputs[0].shape = std::move(shape);
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& input = context.inputs[0];
    std::vector<int64_t> repeats = *readRepeats(context);
    if (input.shape.empty()) {
      copyElements(context.outputs[0].data, input.data, 1, ir::dataTypeSize(input.type));
      return absl::OkStatus();
    }
    // View the output as [repeats_0, dim_0, repeats_1, dim_1, ...]; the
    // repeat dims read the input with stride 0.
    std::vector<int64_t> strides = contiguousStrides(input.shape);
    std::vector<int64_t> dims;
    std::vector<int64_t> sourceStrides;
    for (size_t d = 0; d < input.shape.size(); ++d) {
      dims.push_back(repeats[d]);
      sourceStrides.push_back(0);
      dims.push_back(input.shape[d]);
      sourceStrides.push_back(strides[d]);
    }
    copyStrided(input.data, 0, sourceStrides, dims, context.outputs[0].data,
                ir::dataTypeSize(input.type), context.threads);
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<std::vector<int64_t>> readRepeats(const KernelContext& context) const {
    absl::StatusOr<std::vector<int64_t>> repeats =
        readIntegers(name(), context.inputs[1], "input repeats");
    if (!repeats.ok()) return repeats.status();
    if (repeats->size() != context.inputs[0].shape.size()) {
      return invalidArgument("input repeats has ", repeats->size(),
                             " values for an input of rank ", context.inputs[0].shape.size());
    }
    for (int64_t repeat : *repeats) {
      if (repeat < 0) return invalidArgument("input repeats has negative value ", repeat);
    }
    return repeats;
  }
};

// ---- Factories ----

absl::StatusOr<std::unique_ptr<Kernel>> createGather(const ir::Node& node) {
  absl::StatusOr<int64_t> axis = node.intAttribute("axis", 0);
  if (!axis.ok()) return axis.status();
  return std::make_unique<GatherKernel>(node, *axis);
}

absl::StatusOr<std::unique_ptr<Kernel>> createConcat(const ir::Node& node) {
  if (!node.hasAttribute("axis")) {
    return absl::InvalidArgumentError(
        absl::StrCat(node.describe(), ": missing required attribute 'axis'"));
  }
  absl::StatusOr<int64_t> axis = node.intAttribute("axis", 0);
  if (!axis.ok()) return axis.status();
  return std::make_unique<ConcatKernel>(node, *axis);
}

absl::StatusOr<std::unique_ptr<Kernel>> createSliceWithAttributes(const ir::Node& node) {
  SliceKernel::Attributes attributes;
  absl::StatusOr<std::vector<int64_t>> starts = node.intsAttribute("starts", {});
  absl::StatusOr<std::vector<int64_t>> ends = node.intsAttribute("ends", {});
  if (!starts.ok()) return starts.status();
  if (!ends.ok()) return ends.status();
  attributes.starts = *starts;
  attributes.ends = *ends;
  if (node.hasAttribute("axes")) {
    absl::StatusOr<std::vector<int64_t>> axes = node.intsAttribute("axes", {});
    if (!axes.ok()) return axes.status();
    attributes.axes = *axes;
  }
  return std::make_unique<SliceKernel>(node, std::move(attributes));
}

absl::StatusOr<std::unique_ptr<Kernel>> createSplit(const ir::Node& node, bool sizesAsInput) {
  absl::StatusOr<int64_t> axis = node.intAttribute("axis", 0);
  if (!axis.ok()) return axis.status();
  std::optional<std::vector<int64_t>> split;
  if (!sizesAsInput && node.hasAttribute("split")) {
    absl::StatusOr<std::vector<int64_t>> values = node.intsAttribute("split", {});
    if (!values.ok()) return values.status();
    split = *values;
  }
  std::optional<int64_t> numOutputs;
  if (node.hasAttribute("num_outputs")) {
    absl::StatusOr<int64_t> value = node.intAttribute("num_outputs", 0);
    if (!value.ok()) return value.status();
    numOutputs = *value;
  }
  return std::make_unique<SplitKernel>(node, *axis, split, numOutputs);
}

absl::StatusOr<std::unique_ptr<Kernel>> createTranspose(const ir::Node& node) {
  std::optional<std::vector<int64_t>> perm;
  if (node.hasAttribute("perm")) {
    absl::StatusOr<std::vector<int64_t>> values = node.intsAttribute("perm", {});
    if (!values.ok()) return values.status();
    perm = *values;
  }
  return std::make_unique<TransposeKernel>(node, perm);
}

}  // namespace

void registerDataMovementKernels(KernelRegistry& registry) {
  registry.add("", "Gather", createGather);
  registry.add("", "Concat", createConcat, 4);
  registry.add("", "Slice", createSliceWithAttributes, 1, 9);
  registry.add("", "Slice",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<SliceKernel>(node, std::nullopt);
               },
               10);
  registry.add("", "Split", [](const ir::Node& node) { return createSplit(node, false); }, 2, 12);
  registry.add("", "Split", [](const ir::Node& node) { return createSplit(node, true); }, 13);
  registry.add("", "Transpose", createTranspose);
  registry.add("", "Expand",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<ExpandKernel>(node);
               },
               8);
  registry.add("", "Tile",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<TileKernel>(node);
               },
               6);
}

}  // namespace roformer::runtime::cpu
