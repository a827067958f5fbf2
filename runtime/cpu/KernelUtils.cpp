#include "runtime/cpu/KernelUtils.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_join.h"

namespace roformer::runtime::cpu {

absl::Status CpuKernel::unsupportedType(absl::string_view what, DataType type) const {
  return unimplemented(what, " has element type ", typeName(type),
                       ", which the CPU kernel does not support");
}

absl::Status CpuKernel::requireInput(const KernelContext& context, size_t index,
                                     absl::string_view what) const {
  if (hasInput(context, index)) return absl::OkStatus();
  return invalidArgument("missing required input ", index, " (", what, ")");
}

bool nodeHasOutput(const ir::Node& node, size_t index) {
  const ir::Value* value = node.output(index);
  return value != nullptr && !value->name().empty();
}

absl::StatusOr<int64_t> normalizeAxis(const std::string& node, int64_t axis, int64_t rank,
                                      absl::string_view what) {
  if (axis < -rank || axis >= rank) {
    return absl::InvalidArgumentError(absl::StrCat(node, ": ", what, " ", axis,
                                                   " is outside [", -rank, ", ", rank,
                                                   ") for an input of rank ", rank));
  }
  return axis < 0 ? axis + rank : axis;
}

absl::StatusOr<std::vector<int64_t>> normalizeAxes(const std::string& node,
                                                   const std::vector<int64_t>& axes, int64_t rank,
                                                   absl::string_view what) {
  std::vector<int64_t> result;
  std::set<int64_t> seen;
  for (int64_t axis : axes) {
    absl::StatusOr<int64_t> normalized = normalizeAxis(node, axis, rank, what);
    if (!normalized.ok()) return normalized.status();
    if (!seen.insert(*normalized).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(node, ": ", what, " [", absl::StrJoin(axes, ", "), "] repeats axis ",
                       *normalized));
    }
    result.push_back(*normalized);
  }
  return result;
}

absl::StatusOr<std::vector<int64_t>> readIntegers(const std::string& node, const TensorView& view,
                                                  absl::string_view what) {
  int64_t count = view.elementCount();
  std::vector<int64_t> values(static_cast<size_t>(count));
  if (view.type == DataType::kInt64) {
    std::copy_n(view.as<const int64_t>(), count, values.begin());
  } else if (view.type == DataType::kInt32) {
    std::copy_n(view.as<const int32_t>(), count, values.begin());
  } else {
    return absl::InvalidArgumentError(absl::StrCat(node, ": ", what, " must be int32 or int64, not ",
                                                   typeName(view.type)));
  }
  return values;
}

absl::StatusOr<double> readScalar(const std::string& node, const TensorView& view,
                                  absl::string_view what) {
  if (view.elementCount() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(node, ": ", what,
                                                   " must have exactly one element, got shape ",
                                                   shapeToString(view.shape)));
  }
  double value = 0;
  bool known = visitType(NumericTypes{}, view.type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    value = static_cast<double>(*view.as<const T>());
  });
  if (view.type == DataType::kBool) {
    value = *view.as<const bool>() ? 1.0 : 0.0;
    known = true;
  }
  if (!known) {
    return absl::UnimplementedError(absl::StrCat(node, ": ", what, " has element type ",
                                                 typeName(view.type),
                                                 ", which the CPU kernel does not support"));
  }
  return value;
}

absl::StatusOr<Shape> broadcastShapes(const std::string& node, const std::vector<Shape>& shapes) {
  size_t rank = 0;
  for (const Shape& shape : shapes) rank = std::max(rank, shape.size());
  Shape result(rank, 1);
  for (const Shape& shape : shapes) {
    size_t offset = rank - shape.size();
    for (size_t d = 0; d < shape.size(); ++d) {
      int64_t dim = shape[d];
      int64_t& target = result[offset + d];
      if (dim == target || dim == 1) continue;
      if (target == 1) {
        target = dim;
        continue;
      }
      std::vector<std::string> described;
      for (const Shape& s : shapes) described.push_back(shapeToString(s));
      return absl::InvalidArgumentError(absl::StrCat(
          node, ": input shapes ", absl::StrJoin(described, ", "),
          " are not broadcastable (numpy rules: each dim must be equal or 1)"));
    }
  }
  return result;
}

int64_t BroadcastPlan::rowCount() const {
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < dims.size(); ++d) rows *= dims[d];
  return rows;
}

BroadcastPlan makeBroadcastPlan(const Shape& output, const std::vector<Shape>& inputs) {
  const size_t rank = output.size();
  const size_t inputCount = inputs.size();

  // Per input: its dim aligned to each output dim (1 where it has none).
  std::vector<std::vector<int64_t>> aligned(inputCount, std::vector<int64_t>(rank, 1));
  for (size_t k = 0; k < inputCount; ++k) {
    size_t offset = rank - inputs[k].size();
    for (size_t d = 0; d < inputs[k].size(); ++d) aligned[k][offset + d] = inputs[k][d];
  }

  // Merge dims. Output dims of size 1 carry no iteration and are dropped.
  BroadcastPlan plan;
  std::vector<std::vector<bool>> spans(inputCount);
  for (size_t d = 0; d < rank; ++d) {
    if (output[d] == 1) continue;
    bool canMerge = !plan.dims.empty();
    for (size_t k = 0; k < inputCount && canMerge; ++k) {
      canMerge = spans[k].back() == (aligned[k][d] != 1);
    }
    if (canMerge) {
      plan.dims.back() *= output[d];
      continue;
    }
    plan.dims.push_back(output[d]);
    for (size_t k = 0; k < inputCount; ++k) spans[k].push_back(aligned[k][d] != 1);
  }
  if (plan.dims.empty()) {
    plan.dims.push_back(1);
    for (size_t k = 0; k < inputCount; ++k) spans[k].push_back(false);
  }

  // Element strides over the merged dims, innermost first.
  const size_t merged = plan.dims.size();
  plan.strides.assign(inputCount, std::vector<int64_t>(merged, 0));
  for (size_t k = 0; k < inputCount; ++k) {
    int64_t stride = 1;
    for (size_t d = merged; d-- > 0;) {
      if (spans[k][d]) {
        plan.strides[k][d] = stride;
        stride *= plan.dims[d];
      }
    }
  }
  return plan;
}

void parallelFor(ThreadPool* threads, int64_t count, int64_t costPerItem,
                 const std::function<void(int64_t, int64_t)>& fn) {
  // Below about this many element operations a chunk is not worth a thread
  // hand-off (an estimate: a wake-up costs a few microseconds).
  constexpr int64_t kMinCostPerChunk = 32768;
  if (threads == nullptr || threads->size() <= 1 || count <= 1) {
    fn(0, count);
    return;
  }
  int64_t grain = std::max<int64_t>(1, kMinCostPerChunk / std::max<int64_t>(1, costPerItem));
  threads->parallelFor(count, grain, fn);
}

}  // namespace roformer::runtime::cpu

namespace roformer::runtime::cpu {

std::vector<int64_t> contiguousStrides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
  return strides;
}

namespace {

template <typename T>
void copyStridedTyped(const T* source, const std::vector<int64_t>& strides,
                      const std::vector<int64_t>& dims, T* destination, ThreadPool* threads) {
  const size_t rank = dims.size();
  const int64_t inner = dims.back();
  const int64_t innerStride = strides.back();
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < rank; ++d) rows *= dims[d];

  parallelFor(threads, rows, inner, [&](int64_t rowBegin, int64_t rowEnd) {
    std::vector<int64_t> index(rank, 0);
    int64_t remaining = rowBegin;
    int64_t offset = 0;
    for (size_t d = rank - 1; d-- > 0;) {
      index[d] = remaining % dims[d];
      remaining /= dims[d];
      offset += index[d] * strides[d];
    }
    for (int64_t row = rowBegin; row < rowEnd; ++row) {
      const T* in = source + offset;
      T* out = destination + row * inner;
      if (innerStride == 1) {
        std::memcpy(out, in, static_cast<size_t>(inner) * sizeof(T));
      } else if (innerStride == 0) {
        std::fill(out, out + inner, *in);
      } else {
        for (int64_t i = 0; i < inner; ++i) out[i] = in[i * innerStride];
      }
      for (size_t d = rank - 1; d-- > 0;) {
        ++index[d];
        offset += strides[d];
        if (index[d] < dims[d]) break;
        offset -= strides[d] * dims[d];
        index[d] = 0;
      }
    }
  });
}

}  // namespace

void copyStrided(const void* source, int64_t sourceOffset, std::vector<int64_t> sourceStrides,
                 std::vector<int64_t> outputDims, void* destination, size_t elementSize,
                 ThreadPool* threads) {
  for (int64_t dim : outputDims) {
    if (dim == 0) return;
  }
  // Drop dims of size 1 and merge a dim into the next one when the source
  // walks them as one run, so the innermost loop is as long as possible.
  std::vector<int64_t> dims;
  std::vector<int64_t> strides;
  for (size_t d = 0; d < outputDims.size(); ++d) {
    if (outputDims[d] == 1) continue;
    if (!dims.empty() && strides.back() == sourceStrides[d] * outputDims[d]) {
      dims.back() *= outputDims[d];
      strides.back() = sourceStrides[d];
      continue;
    }
    dims.push_back(outputDims[d]);
    strides.push_back(sourceStrides[d]);
  }
  if (dims.empty()) {
    dims.push_back(1);
    strides.push_back(1);
  }

  const auto* base = static_cast<const uint8_t*>(source) + sourceOffset * static_cast<int64_t>(elementSize);
  bool handled = visitElementSize(elementSize, [&](auto tag) {
    using T = typename decltype(tag)::type;
    copyStridedTyped(reinterpret_cast<const T*>(base), strides, dims, static_cast<T*>(destination),
                     threads);
  });
  if (!handled) {
    // Element sizes other than 1, 2, 4 and 8 (complex128) copy byte-wise:
    // the byte view adds one innermost dim of elementSize bytes.
    for (int64_t& stride : strides) stride *= static_cast<int64_t>(elementSize);
    dims.push_back(static_cast<int64_t>(elementSize));
    strides.push_back(1);
    copyStridedTyped(base, strides, dims, static_cast<uint8_t*>(destination), threads);
  }
}

}  // namespace roformer::runtime::cpu
