// ReduceSum, ReduceMean, ReduceProd, ReduceMax and ReduceMin.
//
// The axes are an attribute up to opset 12 for ReduceSum and up to opset 17
// for the others, and input 1 afterwards, where noop_with_empty_axes also
// appears. Empty or absent axes reduce every axis unless that flag is set.
#include <limits>

#include "absl/strings/str_join.h"
#include "runtime/cpu/KernelUtils.h"
#include "runtime/cpu/Registration.h"
#include "runtime/cpu/VectorMath.h"

namespace roformer::runtime::cpu {
namespace {

enum class ReduceOp { kSum, kMean, kProd, kMax, kMin };

template <typename T>
struct Reducer {
  ReduceOp op;

  T initial() const {
    switch (op) {
      case ReduceOp::kProd: return T(1);
      case ReduceOp::kMax:
        return std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                    : std::numeric_limits<T>::lowest();
      case ReduceOp::kMin:
        return std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity()
                                                    : std::numeric_limits<T>::max();
      default: return T(0);
    }
  }
  T combine(T accumulator, T value) const {
    switch (op) {
      case ReduceOp::kProd: return T(accumulator * value);
      case ReduceOp::kMax: return accumulator < value ? value : accumulator;
      case ReduceOp::kMin: return value < accumulator ? value : accumulator;
      default: return T(accumulator + value);
    }
  }
  // Applies the mean's division; `count` is the number of reduced elements.
  T finish(T accumulator, int64_t count) const {
    if (op != ReduceOp::kMean) return accumulator;
    if constexpr (std::is_floating_point_v<T>) {
      return accumulator / static_cast<T>(count);
    } else {
      return count == 0 ? T(0) : T(accumulator / static_cast<T>(count));
    }
  }
};

class ReduceKernel : public CpuKernel {
 public:
  ReduceKernel(const ir::Node& node, ReduceOp op, bool keepDims,
               std::optional<std::vector<int64_t>> attributeAxes, bool noopWithEmptyAxes)
      : CpuKernel(node), op_(op), keepDims_(keepDims), attributeAxes_(std::move(attributeAxes)),
        noopWithEmptyAxes_(noopWithEmptyAxes) {}

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "data"); !status.ok()) return status;
    absl::StatusOr<std::vector<bool>> reduced = reducedAxes(context);
    if (!reduced.ok()) return reduced.status();
    const Shape& shape = context.inputs[0].shape;
    Shape outShape;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (!(*reduced)[d]) {
        outShape.push_back(shape[d]);
      } else if (keepDims_) {
        outShape.push_back(1);
      }
    }
    context.outputs[0].type = context.inputs[0].type;
    context.outputs[0].shape = std::move(outShape);
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& input = context.inputs[0];
    absl::StatusOr<std::vector<bool>> reduced = reducedAxes(context);
    if (!reduced.ok()) return reduced.status();
    bool handled = visitType(NumericTypes{}, input.type, [&](auto tag) {
      using T = typename decltype(tag)::type;
      reduce<T>(input.as<const T>(), input.shape, *reduced, context.outputs[0].as<T>(),
                context.threads);
    });
    if (!handled) return unsupportedType("input data", input.type);
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<std::vector<bool>> reducedAxes(const KernelContext& context) const {
    const int64_t rank = static_cast<int64_t>(context.inputs[0].shape.size());
    std::vector<int64_t> axes;
    if (attributeAxes_.has_value()) {
      axes = *attributeAxes_;
    } else if (hasInput(context, 1)) {
      absl::StatusOr<std::vector<int64_t>> values =
          readIntegers(name(), context.inputs[1], "input axes");
      if (!values.ok()) return values.status();
      axes = *values;
    }
    std::vector<bool> reduced(rank, false);
    if (axes.empty()) {
      if (!noopWithEmptyAxes_) reduced.assign(rank, true);
      return reduced;
    }
    absl::StatusOr<std::vector<int64_t>> normalized = normalizeAxes(name(), axes, rank, "axes");
    if (!normalized.ok()) return normalized.status();
    for (int64_t axis : *normalized) reduced[axis] = true;
    return reduced;
  }

  template <typename T>
  void reduce(const T* x, const Shape& shape, const std::vector<bool>& reduced, T* out,
              ThreadPool* threads) const {
    const Reducer<T> reducer{op_};

    // Merge adjacent dims with the same role; dims of size 1 play no role.
    std::vector<int64_t> dims;
    std::vector<bool> isReduced;
    int64_t reduceCount = 1;
    int64_t outputCount = 1;
    bool empty = false;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (reduced[d]) reduceCount *= shape[d];
      if (!reduced[d]) outputCount *= shape[d];
      empty = empty || shape[d] == 0;
      if (shape[d] == 1) continue;
      if (!dims.empty() && isReduced.back() == reduced[d]) {
        dims.back() *= shape[d];
      } else {
        dims.push_back(shape[d]);
        isReduced.push_back(reduced[d]);
      }
    }
    if (outputCount == 0) return;
    if (empty || dims.empty()) {
      // Nothing to combine (an empty reduction) or nothing reduced (all dims
      // of size 1): every output is the finished initial value or the input.
      for (int64_t o = 0; o < outputCount; ++o) {
        T value = empty ? reducer.initial() : reducer.combine(reducer.initial(), x[o]);
        out[o] = reducer.finish(value, empty ? 0 : reduceCount);
      }
      return;
    }

    // [kept..., reduced]: each output reduces one contiguous run.
    if (isReduced.back() && (dims.size() == 1 || (dims.size() == 2 && !isReduced[0]))) {
      const int64_t run = dims.back();
      parallelFor(threads, outputCount, run, [&](int64_t begin, int64_t end) {
        for (int64_t o = begin; o < end; ++o) {
          const T* row = x + o * run;
          T accumulator;
          if constexpr (std::is_same_v<T, float>) {
            if (op_ == ReduceOp::kSum || op_ == ReduceOp::kMean) {
              out[o] = reducer.finish(sumOf(row, run), run);
              continue;
            }
          }
          accumulator = reducer.initial();
          for (int64_t i = 0; i < run; ++i) accumulator = reducer.combine(accumulator, row[i]);
          out[o] = reducer.finish(accumulator, run);
        }
      });
      return;
    }

    // [kept, reduced, kept] or [reduced, kept]: accumulate whole rows of the
    // inner kept dim, which vectorizes over that dim.
    if (!isReduced.back() && (dims.size() == 2 || (dims.size() == 3 && !isReduced[0]))) {
      const int64_t inner = dims.back();
      const int64_t middle = dims[dims.size() - 2];
      const int64_t outer = dims.size() == 3 ? dims[0] : 1;
      parallelFor(threads, outer, middle * inner, [&](int64_t begin, int64_t end) {
        for (int64_t o = begin; o < end; ++o) {
          T* accumulator = out + o * inner;
          std::fill_n(accumulator, inner, reducer.initial());
          for (int64_t m = 0; m < middle; ++m) {
            const T* row = x + (o * middle + m) * inner;
            for (int64_t i = 0; i < inner; ++i) accumulator[i] = reducer.combine(accumulator[i], row[i]);
          }
          for (int64_t i = 0; i < inner; ++i) accumulator[i] = reducer.finish(accumulator[i], middle);
        }
      });
      return;
    }

    // Any other pattern: walk the input once, sending each element to its
    // output through strides that are 0 along reduced dims.
    const size_t rank = dims.size();
    std::vector<int64_t> outStrides(rank, 0);
    int64_t stride = 1;
    for (size_t d = rank; d-- > 0;) {
      if (!isReduced[d]) {
        outStrides[d] = stride;
        stride *= dims[d];
      }
    }
    std::fill_n(out, outputCount, reducer.initial());
    std::vector<int64_t> index(rank, 0);
    int64_t outOffset = 0;
    const int64_t total = shapeElementCount(dims);
    for (int64_t i = 0; i < total; ++i) {
      out[outOffset] = reducer.combine(out[outOffset], x[i]);
      for (size_t d = rank; d-- > 0;) {
        ++index[d];
        outOffset += outStrides[d];
        if (index[d] < dims[d]) break;
        outOffset -= outStrides[d] * dims[d];
        index[d] = 0;
      }
    }
    for (int64_t o = 0; o < outputCount; ++o) out[o] = reducer.finish(out[o], reduceCount);
  }

  ReduceOp op_;
  bool keepDims_;
  std::optional<std::vector<int64_t>> attributeAxes_;
  bool noopWithEmptyAxes_;
};

KernelFactory reduceFactory(ReduceOp op, bool axesAsInput) {
  return [op, axesAsInput](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    absl::StatusOr<int64_t> keepDims = node.intAttribute("keepdims", 1);
    if (!keepDims.ok()) return keepDims.status();
    std::optional<std::vector<int64_t>> axes;
    bool noop = false;
    if (axesAsInput) {
      absl::StatusOr<int64_t> value = node.intAttribute("noop_with_empty_axes", 0);
      if (!value.ok()) return value.status();
      noop = *value != 0;
    } else if (node.hasAttribute("axes")) {
      absl::StatusOr<std::vector<int64_t>> values = node.intsAttribute("axes", {});
      if (!values.ok()) return values.status();
      axes = *values;
    }
    return std::make_unique<ReduceKernel>(node, op, *keepDims != 0, axes, noop);
  };
}

}  // namespace

void registerReduceKernels(KernelRegistry& registry) {
  registry.add("", "ReduceSum", reduceFactory(ReduceOp::kSum, false), 1, 12);
  registry.add("", "ReduceSum", reduceFactory(ReduceOp::kSum, true), 13);
  const std::pair<const char*, ReduceOp> others[] = {
      {"ReduceMean", ReduceOp::kMean},
      {"ReduceProd", ReduceOp::kProd},
      {"ReduceMax", ReduceOp::kMax},
      {"ReduceMin", ReduceOp::kMin},
  };
  for (const auto& [opType, op] : others) {
    registry.add("", opType, reduceFactory(op, false), 1, 17);
    registry.add("", opType, reduceFactory(op, true), 18);
  }
}

}  // namespace roformer::runtime::cpu
