// Helpers shared by the CPU kernels: the kernel base class, element type
// dispatch, axis and integer-input handling, and numpy broadcasting.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "ir/Graph.h"
#include "runtime/Kernel.h"
#include "runtime/Tensor.h"

namespace roformer::runtime::cpu {

// The ONNX text name of an element type ("float", "int64"), as a std::string
// because absl::StrCat in Debian's Abseil does not take std::string_view.
inline std::string typeName(DataType type) { return std::string(ir::dataTypeName(type)); }

// A CPU kernel remembers its node's description ("OpType 'name'") for
// messages, because the node may not outlive the kernel.
class CpuKernel : public Kernel {
 public:
  explicit CpuKernel(const ir::Node& node) : name_(node.describe()) {}
  const std::string& name() const { return name_; }

 protected:
  template <typename... Args>
  absl::Status invalidArgument(const Args&... parts) const {
    return absl::InvalidArgumentError(absl::StrCat(name_, ": ", parts...));
  }
  template <typename... Args>
  absl::Status unimplemented(const Args&... parts) const {
    return absl::UnimplementedError(absl::StrCat(name_, ": ", parts...));
  }
  // Unimplemented error for an input element type the kernel does not handle.
  absl::Status unsupportedType(absl::string_view what, DataType type) const;
  // Checks that input `index` is present; `what` names it in the message.
  absl::Status requireInput(const KernelContext& context, size_t index, absl::string_view what) const;

 private:
  std::string name_;
};

// True when optional input `index` is present.
inline bool hasInput(const KernelContext& context, size_t index) {
  return index < context.inputs.size() && context.inputs[index].type != DataType::kUndefined;
}
// True when output `index` exists and the caller wants its value computed.
inline bool wantsOutput(const KernelContext& context, size_t index) {
  return index < context.outputs.size() && context.outputs[index].data != nullptr;
}
// True when the node has output `index` with a name (ONNX omits an optional
// output by leaving its name empty).
bool nodeHasOutput(const ir::Node& node, size_t index);

// ---- Element type dispatch ----

template <typename... Ts>
struct TypeList {};
template <typename T>
struct TypeTag {
  using type = T;
};

using FloatTypes = TypeList<float, double>;
using SignedTypes = TypeList<float, double, int8_t, int16_t, int32_t, int64_t>;
using NumericTypes =
    TypeList<float, double, int8_t, uint8_t, int16_t, uint16_t, int32_t, uint32_t, int64_t, uint64_t>;
using IndexTypes = TypeList<int32_t, int64_t>;

// Calls f(TypeTag<T>{}) for the T in the list whose DataType is `type`.
// Returns false when the list has no such T.
template <typename... Ts, typename F>
bool visitType(TypeList<Ts...>, DataType type, F&& f) {
  return ((type == ir::DataTypeOf<Ts>::value ? (f(TypeTag<Ts>{}), true) : false) || ...);
}

// Calls f with an unsigned integer type of `byteSize` bytes (1, 2, 4 or 8),
// for kernels that only move elements. Returns false for other sizes.
template <typename F>
bool visitElementSize(size_t byteSize, F&& f) {
  switch (byteSize) {
    case 1:
      f(TypeTag<uint8_t>{});
      return true;
    case 2:
      f(TypeTag<uint16_t>{});
      return true;
    case 4:
      f(TypeTag<uint32_t>{});
      return true;
    case 8:
      f(TypeTag<uint64_t>{});
      return true;
    default:
      return false;
  }
}

// ---- Axes and integer inputs ----

// Maps `axis` in [-rank, rank) to [0, rank); `what` names the attribute or
// input in the message.
absl::StatusOr<int64_t> normalizeAxis(const std::string& node, int64_t axis, int64_t rank,
                                      absl::string_view what);
// Normalizes every axis and rejects duplicates.
absl::StatusOr<std::vector<int64_t>> normalizeAxes(const std::string& node,
                                                   const std::vector<int64_t>& axes, int64_t rank,
                                                   absl::string_view what);

// Reads an int32 or int64 tensor as int64 values.
absl::StatusOr<std::vector<int64_t>> readIntegers(const std::string& node, const TensorView& view,
                                                  absl::string_view what);
// Reads a one-element tensor of any numeric type as double.
absl::StatusOr<double> readScalar(const std::string& node, const TensorView& view,
                                  absl::string_view what);

// ---- Broadcasting ----

// The numpy broadcast of `shapes`, or InvalidArgument naming the node.
absl::StatusOr<Shape> broadcastShapes(const std::string& node, const std::vector<Shape>& shapes);

// A broadcast loop nest. Adjacent output dims are merged where every input
// either spans both or broadcasts both, so a same-shape operation becomes one
// dim and a bias add over the last axis becomes two.
struct BroadcastPlan {
  // Merged output dims; at least one.
  std::vector<int64_t> dims;
  // strides[input][d]: element stride of the input along merged dim d, 0
  // where the input is broadcast.
  std::vector<std::vector<int64_t>> strides;

  int64_t innerSize() const { return dims.back(); }
  // Product of all merged dims but the last.
  int64_t rowCount() const;
};

BroadcastPlan makeBroadcastPlan(const Shape& output, const std::vector<Shape>& inputs);

// Calls body(offsets, outputOffset, count) for rows [rowBegin, rowEnd) of the
// plan. offsets[k] is input k's element offset at the row start; along the
// row, input k advances by plan.strides[k].back() and the output by 1.
template <size_t N, typename Body>
void forEachBroadcastRow(const BroadcastPlan& plan, int64_t rowBegin, int64_t rowEnd, Body&& body) {
  const size_t rank = plan.dims.size();
  const int64_t inner = plan.dims.back();
  std::vector<int64_t> index(rank, 0);
  std::array<int64_t, N> offsets{};
  // Decompose rowBegin into an index over the outer dims.
  int64_t remaining = rowBegin;
  for (size_t d = rank - 1; d-- > 0;) {
    index[d] = remaining % plan.dims[d];
    remaining /= plan.dims[d];
  }
  for (size_t k = 0; k < N; ++k) {
    for (size_t d = 0; d + 1 < rank; ++d) offsets[k] += index[d] * plan.strides[k][d];
  }
  for (int64_t row = rowBegin; row < rowEnd; ++row) {
    body(offsets, row * inner, inner);
    // Advance the outer index by one, carrying into higher dims.
    for (size_t d = rank - 1; d-- > 0;) {
      ++index[d];
      for (size_t k = 0; k < N; ++k) offsets[k] += plan.strides[k][d];
      if (index[d] < plan.dims[d]) break;
      for (size_t k = 0; k < N; ++k) offsets[k] -= plan.strides[k][d] * plan.dims[d];
      index[d] = 0;
    }
  }
}

// Runs fn(begin, end) over [0, count), on `threads` when given and the work is
// large enough. `costPerItem` is a rough count of element operations per item.
void parallelFor(ThreadPool* threads, int64_t count, int64_t costPerItem,
                 const std::function<void(int64_t, int64_t)>& fn);

// Copies `count` elements of `elementSize` bytes; a no-op when the buffers
// are the same (kernels running in place).
inline void copyElements(void* destination, const void* source, int64_t count,
                         size_t elementSize) {
  if (destination == source || count <= 0) return;
  std::memmove(destination, source, static_cast<size_t>(count) * elementSize);
}

}  // namespace roformer::runtime::cpu

namespace roformer::runtime::cpu {

// Copies an affine view of `source` into the dense tensor `destination`:
// element (i0, ..., ik) of the output, whose dims are `outputDims`, is read
// from source[sourceOffset + sum(i_d * sourceStrides[d])] (offsets and
// strides in elements, strides may be 0 or negative). Transpose, Slice,
// Expand and Tile are all such views.
void copyStrided(const void* source, int64_t sourceOffset, std::vector<int64_t> sourceStrides,
                 std::vector<int64_t> outputDims, void* destination, size_t elementSize,
                 ThreadPool* threads);

// Row-major element strides of `shape`.
std::vector<int64_t> contiguousStrides(const Shape& shape);

}  // namespace roformer::runtime::cpu
