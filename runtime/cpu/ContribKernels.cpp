// GELU variants (com.microsoft Gelu, BiasGelu and FastGelu, ONNX Gelu from
// opset 20) and com.microsoft RotaryEmbedding.
#include <cmath>

#include "runtime/cpu/KernelUtils.h"
#include "runtime/cpu/Registration.h"
#include "runtime/cpu/VectorMath.h"

namespace roformer::runtime::cpu {
namespace {

// ---- GELU ----

// Computes gelu(X + bias) over the last axis. Gelu has no bias input;
// BiasGelu requires one and FastGelu takes an optional one. `tanhForm`
// selects 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) instead of the
// erf form x/2 (1 + erf(x / sqrt 2)).
class GeluKernel : public CpuKernel {
 public:
  GeluKernel(const ir::Node& node, bool tanhForm, bool biasRequired)
      : CpuKernel(node), tanhForm_(tanhForm), biasRequired_(biasRequired) {}
  bool canRunInPlace() const override { return true; }

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "X"); !status.ok()) return status;
    if (biasRequired_) {
      if (absl::Status status = requireInput(context, 1, "bias"); !status.ok()) return status;
    }
    const TensorView& x = context.inputs[0];
    if (x.type != DataType::kFloat) return unsupportedType("input X", x.type);
    if (hasInput(context, 1)) {
      const TensorView& bias = context.inputs[1];
      if (bias.type != DataType::kFloat) return unsupportedType("input bias", bias.type);
      if (x.shape.empty() || bias.shape.size() != 1 || bias.shape[0] != x.shape.back()) {
        return invalidArgument("input bias of shape ", shapeToString(bias.shape),
                               " must be 1-D with the size of the last dim of X ",
                               shapeToString(x.shape));
      }
    }
    context.outputs[0].type = x.type;
    context.outputs[0].shape = x.shape;
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& x = context.inputs[0];
    const float* input = x.as<const float>();
    float* output = context.outputs[0].as<float>();
    const int64_t n = x.elementCount();
    if (n == 0) return absl::OkStatus();
    if (hasInput(context, 1)) {
      const float* bias = context.inputs[1].as<const float>();
      const int64_t width = x.shape.back();
      const int64_t rows = n / width;
      parallelFor(context.threads, rows, width * 16, [&](int64_t begin, int64_t end) {
        const int64_t offset = begin * width;
        const int64_t count = (end - begin) * width;
        if (tanhForm_) {
          biasGeluTanhArray(input + offset, bias, width, output + offset, count);
        } else {
          biasGeluErfArray(input + offset, bias, width, output + offset, count);
        }
      });
      return absl::OkStatus();
    }
    parallelFor(context.threads, n, 16, [&](int64_t begin, int64_t end) {
      if (tanhForm_) {
        geluTanhArray(input + begin, output + begin, end - begin);
      } else {
        geluErfArray(input + begin, output + begin, end - begin);
      }
    });
    return absl::OkStatus();
  }

 private:
  bool tanhForm_;
  bool biasRequired_;
};

// ---- RotaryEmbedding ----

// com.microsoft RotaryEmbedding as ONNX Runtime 1.30's CPU kernel computes
// it. Inputs: input [batch, seq, hidden] or [batch, heads, seq, head_size],
// position_ids [batch, seq] (or one element: an offset added to each
// position), cos_cache and sin_cache [max_positions, rotary_dim / 2].
// In each head the first rotary_dim elements are rotated in pairs: (2i,
// 2i + 1) when interleaved, (i, i + rotary_dim / 2) otherwise, as
//   out[a] = x[a] cos[i] - x[b] sin[i],  out[b] = x[b] cos[i] + x[a] sin[i],
// and the remaining elements are copied.
class RotaryEmbeddingKernel : public CpuKernel {
 public:
  RotaryEmbeddingKernel(const ir::Node& node, bool interleaved, int64_t numHeads,
                        int64_t rotaryDim)
      : CpuKernel(node), interleaved_(interleaved), numHeads_(numHeads), rotaryDim_(rotaryDim) {}
  bool canRunInPlace() const override { return true; }

  absl::Status inferOutputs(KernelContext& context) override {
    absl::StatusOr<Geometry> geometry = resolve(context);
    if (!geometry.ok()) return geometry.status();
    context.outputs[0].type = DataType::kFloat;
    context.outputs[0].shape = context.inputs[0].shape;
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    absl::StatusOr<Geometry> resolved = resolve(context);
    if (!resolved.ok()) return resolved.status();
    const Geometry g = *resolved;

    // Read and check every position before touching the caches.
    const TensorView& positionView = context.inputs[1];
    absl::StatusOr<std::vector<int64_t>> positionIds =
        readIntegers(name(), positionView, "input position_ids");
    if (!positionIds.ok()) return positionIds.status();
    const bool offsetForm = positionView.elementCount() == 1;
    std::vector<int64_t> positions(static_cast<size_t>(g.batch * g.sequence));
    for (int64_t b = 0; b < g.batch; ++b) {
      for (int64_t s = 0; s < g.sequence; ++s) {
        const int64_t index = b * g.sequence + s;
        const int64_t position = offsetForm ? (*positionIds)[0] + s : (*positionIds)[index];
        if (position < 0 || position >= g.maxPositions) {
          return invalidArgument("position ", position, " (input position_ids, ",
                                 offsetForm ? "offset " : "at position ",
                                 offsetForm ? (*positionIds)[0] : index, ") is outside the cos/sin cache rows [0, ",
                                 g.maxPositions, ")");
        }
        positions[index] = position;
      }
    }

    const float* input = context.inputs[0].as<const float>();
    const float* cosCache = context.inputs[2].as<const float>();
    const float* sinCache = context.inputs[3].as<const float>();
    float* output = context.outputs[0].as<float>();
    const int64_t half = g.rotaryDim / 2;
    const bool interleaved = interleaved_;
    parallelFor(context.threads, g.batch * g.sequence * g.heads, g.headSize * 4,
                [&](int64_t begin, int64_t end) {
                  for (int64_t item = begin; item < end; ++item) {
                    const int64_t head = item % g.heads;
                    const int64_t s = (item / g.heads) % g.sequence;
                    const int64_t b = item / (g.heads * g.sequence);
                    const int64_t offset = b * g.batchStride + s * g.sequenceStride + head * g.headStride;
                    const float* x = input + offset;
                    float* y = output + offset;
                    const float* cosRow = cosCache + positions[b * g.sequence + s] * half;
                    const float* sinRow = sinCache + positions[b * g.sequence + s] * half;
                    if (interleaved) {
                      for (int64_t i = 0; i < half; ++i) {
                        const float first = x[2 * i];
                        const float second = x[2 * i + 1];
                        y[2 * i] = first * cosRow[i] - second * sinRow[i];
                        y[2 * i + 1] = second * cosRow[i] + first * sinRow[i];
                      }
                    } else {
                      for (int64_t i = 0; i < half; ++i) {
                        const float first = x[i];
                        const float second = x[i + half];
                        y[i] = first * cosRow[i] - second * sinRow[i];
                        y[i + half] = second * cosRow[i] + first * sinRow[i];
                      }
                    }
                    if (x != y) {
                      std::copy(x + g.rotaryDim, x + g.headSize, y + g.rotaryDim);
                    }
                  }
                });
    return absl::OkStatus();
  }

 private:
  struct Geometry {
    int64_t batch, sequence, heads, headSize, rotaryDim, maxPositions;
    int64_t batchStride, sequenceStride, headStride;
  };

  absl::StatusOr<Geometry> resolve(const KernelContext& context) const {
    const char* names[] = {"input", "position_ids", "cos_cache", "sin_cache"};
    for (size_t i = 0; i < 4; ++i) {
      if (absl::Status status = requireInput(context, i, names[i]); !status.ok()) return status;
    }
    const TensorView& input = context.inputs[0];
    const TensorView& positions = context.inputs[1];
    const TensorView& cosCache = context.inputs[2];
    const TensorView& sinCache = context.inputs[3];
    if (input.type != DataType::kFloat) return unsupportedType("input", input.type);
    if (cosCache.type != DataType::kFloat) return unsupportedType("input cos_cache", cosCache.type);
    if (sinCache.type != DataType::kFloat) return unsupportedType("input sin_cache", sinCache.type);
    if (cosCache.shape.size() != 2 || cosCache.shape != sinCache.shape) {
      return invalidArgument("inputs cos_cache ", shapeToString(cosCache.shape), " and sin_cache ",
                             shapeToString(sinCache.shape), " must be 2-D with the same shape");
    }

    Geometry g{};
    g.maxPositions = cosCache.shape[0];
    if (input.shape.size() == 3) {
      g.batch = input.shape[0];
      g.sequence = input.shape[1];
      const int64_t hidden = input.shape[2];
      g.headSize = rotaryDim_ == 0 ? cosCache.shape[1] * 2
                                   : (numHeads_ > 0 ? hidden / numHeads_ : 0);
      if (g.headSize <= 0 || hidden % g.headSize != 0) {
        return invalidArgument("hidden size ", hidden, " of input ", shapeToString(input.shape),
                               " is not a multiple of the head size ", g.headSize,
                               " (from num_heads or cos_cache)");
      }
      g.heads = hidden / g.headSize;
      if (numHeads_ > 0 && numHeads_ != g.heads) {
        return invalidArgument("attribute num_heads is ", numHeads_, " but input ",
                               shapeToString(input.shape), " with cos_cache ",
                               shapeToString(cosCache.shape), " has ", g.heads, " heads");
      }
      g.headStride = g.headSize;
      g.sequenceStride = hidden;
      g.batchStride = g.sequence * hidden;
    } else if (input.shape.size() == 4) {
      g.batch = input.shape[0];
      g.heads = input.shape[1];
      g.sequence = input.shape[2];
      g.headSize = input.shape[3];
      if (numHeads_ > 0 && numHeads_ != g.heads) {
        return invalidArgument("attribute num_heads is ", numHeads_, " but input ",
                               shapeToString(input.shape), " has ", g.heads, " heads");
      }
      g.sequenceStride = g.headSize;
      g.headStride = g.sequence * g.headSize;
      g.batchStride = g.heads * g.headStride;
    } else {
      return invalidArgument("input must be 3-D [batch, seq, hidden] or 4-D [batch, heads, seq, "
                             "head_size], got ", shapeToString(input.shape));
    }
    g.rotaryDim = rotaryDim_ > 0 ? rotaryDim_ : g.headSize;
    if (g.rotaryDim > g.headSize || g.rotaryDim % 2 != 0) {
      return invalidArgument("rotary_embedding_dim ", g.rotaryDim,
                             " must be even and at most the head size ", g.headSize);
    }
    if (cosCache.shape[1] * 2 != g.rotaryDim) {
      return invalidArgument("cos_cache ", shapeToString(cosCache.shape), " must have ",
                             g.rotaryDim / 2, " columns (rotary_embedding_dim / 2)");
    }

    if (positions.type != DataType::kInt64 && positions.type != DataType::kInt32) {
      return invalidArgument("input position_ids must be int64 or int32, not ", typeName(positions.type));
    }
    const bool offsetForm = positions.elementCount() == 1 && positions.shape.size() <= 1;
    if (!offsetForm && positions.shape != Shape{g.batch, g.sequence}) {
      return invalidArgument("input position_ids ", shapeToString(positions.shape),
                             " must be [batch, seq] = ", shapeToString({g.batch, g.sequence}),
                             " or hold one offset");
    }
    return g;
  }

  bool interleaved_;
  int64_t numHeads_;
  int64_t rotaryDim_;
};

// ---- Factories ----

absl::StatusOr<std::unique_ptr<Kernel>> createRotaryEmbedding(const ir::Node& node) {
  absl::StatusOr<int64_t> interleaved = node.intAttribute("interleaved", 0);
  if (!interleaved.ok()) return interleaved.status();
  absl::StatusOr<int64_t> numHeads = node.intAttribute("num_heads", 0);
  if (!numHeads.ok()) return numHeads.status();
  absl::StatusOr<int64_t> rotaryDim = node.intAttribute("rotary_embedding_dim", 0);
  if (!rotaryDim.ok()) return rotaryDim.status();
  absl::StatusOr<int64_t> packed = node.intAttribute("is_packed_batching", 0);
  if (!packed.ok()) return packed.status();
  // ONNX Runtime reads `scale` but its CPU kernel does not use it, so any
  // value is accepted and ignored here too.
  absl::StatusOr<float> scale = node.floatAttribute("scale", 1.0f);
  if (!scale.ok()) return scale.status();
  if (*packed != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        node.describe(), ": is_packed_batching=1 (ragged batches) is not supported"));
  }
  if (*interleaved != 0 && *interleaved != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(node.describe(), ": attribute interleaved must be 0 or 1, got ", *interleaved));
  }
  if (*rotaryDim > 0 && *numHeads <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        node.describe(), ": num_heads must be given when rotary_embedding_dim is"));
  }
  if (*numHeads < 0 || *rotaryDim < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        node.describe(), ": num_heads and rotary_embedding_dim must not be negative"));
  }
  return std::make_unique<RotaryEmbeddingKernel>(node, *interleaved == 1, *numHeads, *rotaryDim);
}

absl::StatusOr<std::unique_ptr<Kernel>> createOnnxGelu(const ir::Node& node) {
  absl::StatusOr<std::string> approximate = node.stringAttribute("approximate", "none");
  if (!approximate.ok()) return approximate.status();
  if (*approximate != "none" && *approximate != "tanh") {
    return absl::InvalidArgumentError(absl::StrCat(
        node.describe(), ": attribute approximate must be \"none\" or \"tanh\", got \"",
        *approximate, "\""));
  }
  return std::make_unique<GeluKernel>(node, *approximate == "tanh", false);
}

}  // namespace

void registerContribKernels(KernelRegistry& registry) {
  registry.add("com.microsoft", "Gelu",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<GeluKernel>(node, false, false);
               });
  registry.add("com.microsoft", "BiasGelu",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<GeluKernel>(node, false, true);
               });
  registry.add("com.microsoft", "FastGelu",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<GeluKernel>(node, true, false);
               });
  registry.add("", "Gelu", createOnnxGelu, 20);
  registry.add("com.microsoft", "RotaryEmbedding", createRotaryEmbedding);
}

}  // namespace roformer::runtime::cpu
