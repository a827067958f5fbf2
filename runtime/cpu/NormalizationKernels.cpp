// Softmax, LogSoftmax, LayerNormalization (ONNX opset 17) and
// com.microsoft SkipLayerNormalization.
#include <cmath>

#include "runtime/cpu/KernelUtils.h"
#include "runtime/cpu/Registration.h"
#include "runtime/cpu/VectorMath.h"

namespace roformer::runtime::cpu {
namespace {

// ---- Softmax and LogSoftmax ----

// Softmax of one contiguous row. The row maximum is subtracted first, so
// every exponent is at most 0 and exp cannot overflow.
template <typename T>
void softmaxRow(const T* x, T* y, int64_t n, bool logarithm) {
  if constexpr (std::is_same_v<T, float>) {
    const float max = maxOf(x, n);
    if (logarithm) {
      float sum = 0.0f;
      for (int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - max);
      // (x - max) - log(sum), in that order: x - (max + log(sum)) would round
      // the small log(sum) away against a large max.
      const float logSum = std::log(sum);
      for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - max) - logSum;
      return;
    }
    const float sum = expShiftedSum(x, max, y, n);
    scaleInPlace(y, 1.0f / sum, n);
  } else {
    T max = x[0];
    for (int64_t i = 1; i < n; ++i) max = max < x[i] ? x[i] : max;
    T sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - max);
    for (int64_t i = 0; i < n; ++i) {
      y[i] = logarithm ? (x[i] - max) - std::log(sum) : std::exp(x[i] - max) / sum;
    }
  }
}

// Softmax along the middle dim of [outer, n, inner] for one outer index;
// the loops run over the inner dim so that they vectorize.
template <typename T>
void softmaxColumns(const T* x, T* y, int64_t n, int64_t inner, bool logarithm) {
  std::vector<T> max(x, x + inner);
  for (int64_t k = 1; k < n; ++k) {
    const T* row = x + k * inner;
    for (int64_t i = 0; i < inner; ++i) max[i] = max[i] < row[i] ? row[i] : max[i];
  }
  // The log form leaves y untouched until the last loop, so that it also
  // works in place (y == x).
  std::vector<T> sum(inner, T(0));
  for (int64_t k = 0; k < n; ++k) {
    const T* row = x + k * inner;
    T* out = y + k * inner;
    for (int64_t i = 0; i < inner; ++i) {
      const T e = std::exp(row[i] - max[i]);
      sum[i] += e;
      if (!logarithm) out[i] = e;
    }
  }
  for (int64_t k = 0; k < n; ++k) {
    const T* row = x + k * inner;
    T* out = y + k * inner;
    for (int64_t i = 0; i < inner; ++i) {
      out[i] = logarithm ? (row[i] - max[i]) - std::log(sum[i]) : out[i] / sum[i];
    }
  }
}

class SoftmaxKernel : public CpuKernel {
 public:
  // Before opset 13 the input is coerced to a 2-D matrix at `axis`, and each
  // row of that matrix is normalized. From opset 13 only the `axis` dim is.
  SoftmaxKernel(const ir::Node& node, int64_t axis, bool coerceTo2D, bool logarithm)
      : CpuKernel(node), axis_(axis), coerceTo2D_(coerceTo2D), logarithm_(logarithm) {}
  bool canRunInPlace() const override { return true; }

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "input"); !status.ok()) return status;
    const TensorView& input = context.inputs[0];
    if (input.type != DataType::kFloat && input.type != DataType::kDouble) {
      return unsupportedType("input", input.type);
    }
    absl::StatusOr<int64_t> axis = normalizeAxis(
        name(), axis_, std::max<int64_t>(1, input.shape.size()), "attribute axis");
    if (!axis.ok()) return axis.status();
    context.outputs[0].type = input.type;
    context.outputs[0].shape = input.shape;
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& input = context.inputs[0];
    const Shape& shape = input.shape;
    const int64_t rank = static_cast<int64_t>(shape.size());
    const int64_t axis = axis_ < 0 ? axis_ + std::max<int64_t>(1, rank) : axis_;
    int64_t outer = 1;
    int64_t n = 1;
    int64_t inner = 1;
    for (int64_t d = 0; d < rank; ++d) {
      if (d < axis) {
        outer *= shape[d];
      } else if (d == axis || coerceTo2D_) {
        n *= shape[d];
      } else {
        inner *= shape[d];
      }
    }
    if (outer * n * inner == 0) return absl::OkStatus();

    visitType(FloatTypes{}, input.type, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* x = input.as<const T>();
      T* y = context.outputs[0].as<T>();
      parallelFor(context.threads, outer, n * inner * 4, [&](int64_t begin, int64_t end) {
        for (int64_t o = begin; o < end; ++o) {
          if (inner == 1) {
            softmaxRow(x + o * n, y + o * n, n, logarithm_);
          } else {
            softmaxColumns(x + o * n * inner, y + o * n * inner, n, inner, logarithm_);
          }
        }
      });
    });
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
  bool coerceTo2D_;
  bool logarithm_;
};

// ---- LayerNormalization ----

// Expands a scale or bias tensor to `normalizedShape` when it broadcasts to
// it with fewer elements; returns an empty vector when it already has them.
absl::StatusOr<std::vector<float>> expandToRow(const CpuKernel& kernel, const TensorView& view,
                                               const Shape& normalizedShape,
                                               absl::string_view what) {
  const int64_t size = shapeElementCount(normalizedShape);
  absl::StatusOr<Shape> broadcast = broadcastShapes(kernel.name(), {normalizedShape, view.shape});
  if (!broadcast.ok() || *broadcast != normalizedShape) {
    return absl::InvalidArgumentError(absl::StrCat(
        kernel.name(), ": input ", what, " of shape ", shapeToString(view.shape),
        " does not broadcast to the normalized shape ", shapeToString(normalizedShape)));
  }
  if (view.elementCount() == size) return std::vector<float>();
  std::vector<float> row(static_cast<size_t>(size));
  const size_t offset = normalizedShape.size() - view.shape.size();
  std::vector<int64_t> strides = contiguousStrides(view.shape);
  std::vector<int64_t> sourceStrides(normalizedShape.size(), 0);
  for (size_t d = 0; d < view.shape.size(); ++d) {
    sourceStrides[offset + d] = view.shape[d] == 1 ? 0 : strides[d];
  }
  copyStrided(view.data, 0, sourceStrides, normalizedShape, row.data(), sizeof(float), nullptr);
  return row;
}

class LayerNormalizationKernel : public CpuKernel {
 public:
  LayerNormalizationKernel(const ir::Node& node, int64_t axis, float epsilon)
      : CpuKernel(node), axis_(axis), epsilon_(epsilon) {}

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "X"); !status.ok()) return status;
    if (absl::Status status = requireInput(context, 1, "Scale"); !status.ok()) return status;
    const TensorView& x = context.inputs[0];
    if (x.type != DataType::kFloat) return unsupportedType("input X", x.type);
    for (size_t i = 1; i <= 2; ++i) {
      if (hasInput(context, i) && context.inputs[i].type != DataType::kFloat) {
        return unsupportedType(i == 1 ? "input Scale" : "input B", context.inputs[i].type);
      }
    }
    const int64_t rank = static_cast<int64_t>(x.shape.size());
    absl::StatusOr<int64_t> axis = normalizeAxis(name(), axis_, rank, "attribute axis");
    if (!axis.ok()) return axis.status();

    context.outputs[0].type = x.type;
    context.outputs[0].shape = x.shape;
    Shape statsShape(x.shape.begin(), x.shape.begin() + *axis);
    statsShape.resize(rank, 1);
    for (size_t i = 1; i < context.outputs.size() && i < 3; ++i) {
      context.outputs[i].type = DataType::kFloat;
      context.outputs[i].shape = statsShape;
    }
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& x = context.inputs[0];
    const int64_t rank = static_cast<int64_t>(x.shape.size());
    const int64_t axis = axis_ < 0 ? axis_ + rank : axis_;
    const Shape normalizedShape(x.shape.begin() + axis, x.shape.end());
    const int64_t size = shapeElementCount(normalizedShape);
    const int64_t rows = size == 0 ? 0 : x.elementCount() / size;

    absl::StatusOr<std::vector<float>> expandedScale =
        expandToRow(*this, context.inputs[1], normalizedShape, "Scale");
    if (!expandedScale.ok()) return expandedScale.status();
    const float* scale =
        expandedScale->empty() ? context.inputs[1].as<const float>() : expandedScale->data();
    std::vector<float> expandedBias;
    const float* bias = nullptr;
    if (hasInput(context, 2)) {
      absl::StatusOr<std::vector<float>> expanded =
          expandToRow(*this, context.inputs[2], normalizedShape, "B");
      if (!expanded.ok()) return expanded.status();
      expandedBias = *std::move(expanded);
      bias = expandedBias.empty() ? context.inputs[2].as<const float>() : expandedBias.data();
    }

    const float* input = x.as<const float>();
    float* output = context.outputs[0].as<float>();
    float* means = wantsOutput(context, 1) ? context.outputs[1].as<float>() : nullptr;
    float* invStdDevs = wantsOutput(context, 2) ? context.outputs[2].as<float>() : nullptr;
    const float epsilon = epsilon_;
    parallelFor(context.threads, rows, size * 4, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* row = input + r * size;
        // Two passes over a row that stays in cache: the mean, then the
        // squared deviations, which avoids the cancellation of E[x^2] - E[x]^2.
        const float mean = sumOf(row, size) / static_cast<float>(size);
        const float variance = sumSquaredDeviation(row, mean, size) / static_cast<float>(size);
        const float invStdDev = 1.0f / std::sqrt(variance + epsilon);
        normalizeRow(row, mean, invStdDev, scale, bias, output + r * size, size);
        if (means != nullptr) means[r] = mean;
        if (invStdDevs != nullptr) invStdDevs[r] = invStdDev;
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
  float epsilon_;
};

// ---- SkipLayerNormalization (com.microsoft) ----

// Inputs: input, skip, gamma, beta (optional), bias (optional). Outputs:
// output, mean (optional), inv_std_var (optional), input_skip_bias_sum
// (optional). The sum input + skip + bias is normalized over the last axis.
// As in ONNX Runtime, skip may also have the shape of one batch entry
// ([1, seq, hidden] or [seq, hidden]) and is then added to every entry.
class SkipLayerNormalizationKernel : public CpuKernel {
 public:
  SkipLayerNormalizationKernel(const ir::Node& node, float epsilon)
      : CpuKernel(node), epsilon_(epsilon) {}

  absl::Status inferOutputs(KernelContext& context) override {
    const char* names[] = {"input", "skip", "gamma", "beta", "bias"};
    for (size_t i = 0; i < 3; ++i) {
      if (absl::Status status = requireInput(context, i, names[i]); !status.ok()) return status;
    }
    for (size_t i = 0; i < 5; ++i) {
      if (hasInput(context, i) && context.inputs[i].type != DataType::kFloat) {
        return unsupportedType(absl::StrCat("input ", names[i]), context.inputs[i].type);
      }
    }
    const TensorView& input = context.inputs[0];
    if (input.shape.empty()) return invalidArgument("input must have at least one dim");
    const int64_t hidden = input.shape.back();
    const TensorView& skip = context.inputs[1];
    if (skip.shape.empty() || skip.shape.back() != hidden || skip.elementCount() == 0 ||
        input.elementCount() % skip.elementCount() != 0) {
      return invalidArgument("input skip of shape ", shapeToString(skip.shape),
                             " must match input ", shapeToString(input.shape),
                             " or one batch entry of it");
    }
    for (size_t i = 2; i < 5; ++i) {
      if (hasInput(context, i) && context.inputs[i].elementCount() != hidden) {
        return invalidArgument("input ", names[i], " must have ", hidden, " elements (the hidden size), got shape ",
                               shapeToString(context.inputs[i].shape));
      }
    }

    context.outputs[0].type = DataType::kFloat;
    context.outputs[0].shape = input.shape;
    Shape statsShape = input.shape;
    statsShape.back() = 1;
    for (size_t i = 1; i < context.outputs.size() && i < 3; ++i) {
      context.outputs[i].type = DataType::kFloat;
      context.outputs[i].shape = statsShape;
    }
    if (context.outputs.size() > 3) {
      context.outputs[3].type = DataType::kFloat;
      context.outputs[3].shape = input.shape;
    }
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& input = context.inputs[0];
    const int64_t hidden = input.shape.back();
    const int64_t rows = hidden == 0 ? 0 : input.elementCount() / hidden;
    const int64_t skipRows = hidden == 0 ? 1 : context.inputs[1].elementCount() / hidden;
    const float* x = input.as<const float>();
    const float* skip = context.inputs[1].as<const float>();
    const float* gamma = context.inputs[2].as<const float>();
    const float* beta = hasInput(context, 3) ? context.inputs[3].as<const float>() : nullptr;
    const float* bias = hasInput(context, 4) ? context.inputs[4].as<const float>() : nullptr;
    float* output = context.outputs[0].as<float>();
    float* means = wantsOutput(context, 1) ? context.outputs[1].as<float>() : nullptr;
    float* invStdDevs = wantsOutput(context, 2) ? context.outputs[2].as<float>() : nullptr;
    float* sums = wantsOutput(context, 3) ? context.outputs[3].as<float>() : nullptr;
    const float epsilon = epsilon_;

    parallelFor(context.threads, rows, hidden * 5, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        // The sum goes to the input_skip_bias_sum output when requested,
        // otherwise to the output row, which is then normalized in place.
        float* sum = sums != nullptr ? sums + r * hidden : output + r * hidden;
        addRows(x + r * hidden, skip + (r % skipRows) * hidden, bias, sum, hidden);
        const float mean = sumOf(sum, hidden) / static_cast<float>(hidden);
        const float variance = sumSquaredDeviation(sum, mean, hidden) / static_cast<float>(hidden);
        const float invStdDev = 1.0f / std::sqrt(variance + epsilon);
        normalizeRow(sum, mean, invStdDev, gamma, beta, output + r * hidden, hidden);
        if (means != nullptr) means[r] = mean;
        if (invStdDevs != nullptr) invStdDevs[r] = invStdDev;
      }
    });
    return absl::OkStatus();
  }

 private:
  float epsilon_;
};

// ---- Factories ----

KernelFactory softmaxFactory(bool coerceTo2D, bool logarithm) {
  return [coerceTo2D, logarithm](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    absl::StatusOr<int64_t> axis = node.intAttribute("axis", coerceTo2D ? 1 : -1);
    if (!axis.ok()) return axis.status();
    return std::make_unique<SoftmaxKernel>(node, *axis, coerceTo2D, logarithm);
  };
}

absl::StatusOr<std::unique_ptr<Kernel>> createLayerNormalization(const ir::Node& node) {
  absl::StatusOr<int64_t> axis = node.intAttribute("axis", -1);
  if (!axis.ok()) return axis.status();
  absl::StatusOr<float> epsilon = node.floatAttribute("epsilon", 1e-5f);
  if (!epsilon.ok()) return epsilon.status();
  absl::StatusOr<int64_t> stashType = node.intAttribute("stash_type", 1);
  if (!stashType.ok()) return stashType.status();
  if (*stashType != static_cast<int64_t>(DataType::kFloat)) {
    return absl::InvalidArgumentError(absl::StrCat(
        node.describe(), ": stash_type ", *stashType,
        " is not supported; the CPU kernel computes statistics in float (stash_type=1)"));
  }
  return std::make_unique<LayerNormalizationKernel>(node, *axis, *epsilon);
}

absl::StatusOr<std::unique_ptr<Kernel>> createSkipLayerNormalization(const ir::Node& node) {
  // ONNX Runtime's schema default for epsilon.
  absl::StatusOr<float> epsilon = node.floatAttribute("epsilon", 1e-12f);
  if (!epsilon.ok()) return epsilon.status();
  return std::make_unique<SkipLayerNormalizationKernel>(node, *epsilon);
}

}  // namespace

void registerNormalizationKernels(KernelRegistry& registry) {
  registry.add("", "Softmax", softmaxFactory(true, false), 1, 12);
  registry.add("", "Softmax", softmaxFactory(false, false), 13);
  registry.add("", "LogSoftmax", softmaxFactory(true, true), 1, 12);
  registry.add("", "LogSoftmax", softmaxFactory(false, true), 13);
  registry.add("", "LayerNormalization", createLayerNormalization, 17);
  registry.add("com.microsoft", "SkipLayerNormalization", createSkipLayerNormalization);
}

}  // namespace roformer::runtime::cpu
