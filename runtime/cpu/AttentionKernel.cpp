// com.microsoft MultiHeadAttention, computed without materializing the
// [batch, heads, seq, kv_seq] score tensor.
//
// The work is split into units of (batch, head, block of query rows). A unit
// computes its rows' scores against every key into a per-thread rows x
// kv_seq scratch, applies the masks and the softmax row by row, and
// multiplies by V. The products go tile by tile over the keys, each tile
// small enough for OpenBLAS to run it on one thread, and the units run in
// parallel on the kernel's ThreadPool.
#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/cpu/Blas.h"
#include "runtime/cpu/KernelUtils.h"
#include "runtime/cpu/Registration.h"
#include "runtime/cpu/VectorMath.h"

namespace roformer::runtime::cpu {
namespace {

// Keys per score tile.
constexpr int64_t kKeyTile = 128;

// The layout of a Q, K or V operand: the offset of (batch b, position t,
// head n) from strides. The head_size elements from there are contiguous.
struct HeadView {
  const float* base = nullptr;
  int64_t batchStride = 0;
  int64_t sequenceStride = 0;
  int64_t headStride = 0;

  const float* at(int64_t b, int64_t t, int64_t n) const {
    return base + b * batchStride + t * sequenceStride + n * headStride;
  }
};

class MultiHeadAttentionKernel : public CpuKernel {
 public:
  MultiHeadAttentionKernel(const ir::Node& node, int64_t numHeads, float maskFilterValue,
                           float scale, bool unidirectional)
      : CpuKernel(node), numHeads_(numHeads), maskFilterValue_(maskFilterValue), scale_(scale),
        unidirectional_(unidirectional) {}

  absl::Status inferOutputs(KernelContext& context) override {
    absl::StatusOr<Geometry> geometry = resolve(context);
    if (!geometry.ok()) return geometry.status();
    context.outputs[0].type = DataType::kFloat;
    context.outputs[0].shape = {geometry->batch, geometry->sequence,
                                numHeads_ * geometry->valueHeadSize};
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    absl::StatusOr<Geometry> resolved = resolve(context);
    if (!resolved.ok()) return resolved.status();
    const Geometry& g = *resolved;
    float* output = context.outputs[0].as<float>();
    const int64_t outputRowStride = numHeads_ * g.valueHeadSize;
    if (context.outputs[0].elementCount() == 0) return absl::OkStatus();
    if (g.keySequence == 0) {
      std::fill_n(output, context.outputs[0].elementCount(), 0.0f);
      return absl::OkStatus();
    }

    // With a bias, Q, K and V plus their bias are written to [batch, seq,
    // heads, head_size] buffers first.
    std::vector<float> biased[3];
    HeadView views[3] = {g.query, g.key, g.value};
    if (hasInput(context, 3)) {
      const float* bias = context.inputs[3].as<const float>();
      const int64_t lengths[3] = {g.sequence, g.keySequence, g.keySequence};
      const int64_t sizes[3] = {g.headSize, g.headSize, g.valueHeadSize};
      int64_t biasOffset = 0;
      for (int i = 0; i < 3; ++i) {
        views[i] = addBias(views[i], g.batch, lengths[i],
                           sizes[i], bias + biasOffset, biased[i], context.threads);
        biasOffset += numHeads_ * sizes[i];
      }
    }

    absl::StatusOr<std::vector<float>> keyMask = keyPaddingAdditions(context, g);
    if (!keyMask.ok()) return keyMask.status();
    const float* mask3d = nullptr;
    std::vector<float> mask3dValues;
    if (hasInput(context, 4) && context.inputs[4].shape.size() == 3) {
      mask3dValues = maskAdditions(context.inputs[4]);
      mask3d = mask3dValues.data();
    }
    const float* attentionBias = hasInput(context, 5) ? context.inputs[5].as<const float>() : nullptr;
    const Shape attentionBiasShape = hasInput(context, 5) ? context.inputs[5].shape : Shape{};

    // Per batch entry: the keys the products and the softmax cover, and
    // whether the mask must be added to the scores. Keys the padding mask
    // drops at the end (right padding, as tokenizers write it) are left out
    // entirely, because their probabilities are zero up to fastExp's floor
    // of about 1e-38. Entries without padding skip the mask pass.
    std::vector<int64_t> usedKeys(static_cast<size_t>(g.batch), g.keySequence);
    std::vector<bool> padded(static_cast<size_t>(g.batch), false);
    const bool onlyPaddingMask = mask3d == nullptr && attentionBias == nullptr;
    for (int64_t b = 0; b < g.batch && !keyMask->empty(); ++b) {
      const float* additions = keyMask->data() + b * g.keySequence;
      auto isMasked = [](float addition) { return addition != 0.0f; };
      int64_t keysBeforePadding = g.keySequence;
      while (keysBeforePadding > 0 && isMasked(additions[keysBeforePadding - 1])) {
        --keysBeforePadding;
      }
      const bool holes = std::any_of(additions, additions + keysBeforePadding, isMasked);
      if (onlyPaddingMask && keysBeforePadding > 0 && !holes) {
        usedKeys[b] = keysBeforePadding;
      } else {
        padded[b] = holes || keysBeforePadding < g.keySequence;
      }
    }

    const float scale = scale_ != 0.0f ? scale_ : 1.0f / std::sqrt(static_cast<float>(g.headSize));
    const int64_t rowsPerUnit = std::max<int64_t>(
        1, static_cast<int64_t>(kBlasSingleThreadWork) /
               (kKeyTile * std::max(g.headSize, g.valueHeadSize)));
    const int64_t blocks = (g.sequence + rowsPerUnit - 1) / rowsPerUnit;
    const int64_t units = g.batch * numHeads_ * blocks;
    const int64_t unitCost = rowsPerUnit * g.keySequence * (g.headSize + g.valueHeadSize);

    // K transposed per key tile: tile [key0, key0 + keys) of (batch b, head n)
    // is a row-major [head_size, keys] block at ((b * heads + n) * kv_seq +
    // key0) * head_size. OpenBLAS 0.3.21 runs the tile products about 1.7x
    // faster from this layout than from K rows with a transpose flag
    // (measured on the 2-core AVX-512 development machine, 32 x 128 x 64).
    std::vector<float> keysTransposed(
        static_cast<size_t>(g.batch * numHeads_ * g.keySequence * g.headSize));
    parallelFor(context.threads, g.batch * numHeads_, g.keySequence * g.headSize,
                [&](int64_t begin, int64_t end) {
                  for (int64_t item = begin; item < end; ++item) {
                    const int64_t b = item / numHeads_;
                    const int64_t n = item % numHeads_;
                    float* head = keysTransposed.data() + item * g.keySequence * g.headSize;
                    for (int64_t key0 = 0; key0 < g.keySequence; key0 += kKeyTile) {
                      const int64_t keys = std::min(kKeyTile, g.keySequence - key0);
                      float* tile = head + key0 * g.headSize;
                      for (int64_t j = 0; j < keys; ++j) {
                        const float* key = views[1].at(b, key0 + j, n);
                        for (int64_t d = 0; d < g.headSize; ++d) tile[d * keys + j] = key[d];
                      }
                    }
                  }
                });

    parallelFor(context.threads, units, unitCost, [&](int64_t begin, int64_t end) {
      std::vector<float> scores(static_cast<size_t>(rowsPerUnit * g.keySequence));
      std::vector<float> rowSum(static_cast<size_t>(rowsPerUnit));
      for (int64_t unit = begin; unit < end; ++unit) {
        const int64_t block = unit % blocks;
        const int64_t n = (unit / blocks) % numHeads_;
        const int64_t b = unit / (blocks * numHeads_);
        const int64_t row0 = block * rowsPerUnit;
        const int64_t rows = std::min(rowsPerUnit, g.sequence - row0);
        const int64_t used = usedKeys[b];
        float* out = output + (b * g.sequence + row0) * outputRowStride + n * g.valueHeadSize;

        // scores = scale * Q K^T for the block's rows, one key tile per product.
        for (int64_t key0 = 0; key0 < used; key0 += kKeyTile) {
          const int64_t tileWidth = std::min(kKeyTile, g.keySequence - key0);
          const int64_t keys = std::min(tileWidth, used - key0);
          const float* tile =
              keysTransposed.data() + ((b * numHeads_ + n) * g.keySequence + key0) * g.headSize;
          gemm(false, false, rows, keys, g.headSize, scale, views[0].at(b, row0, n),
               views[0].sequenceStride, tile, tileWidth, 0.0f, scores.data() + key0,
               g.keySequence);
        }

        // Masks, then e^(score - row max). The division by the row sum is
        // left for the output rows, which are shorter.
        for (int64_t r = 0; r < rows; ++r) {
          float* row = scores.data() + r * g.keySequence;
          const int64_t t = row0 + r;
          if (padded[b]) {
            addRows(row, keyMask->data() + b * g.keySequence, nullptr, row, used);
          }
          if (mask3d != nullptr) {
            addRows(row, mask3d + (b * g.sequence + t) * g.keySequence, nullptr, row,
                    g.keySequence);
          }
          if (unidirectional_) {
            // Key j is in the future of query t when j > t + (kv_seq - seq).
            const int64_t lastVisible = t + g.keySequence - g.sequence;
            for (int64_t j = std::max<int64_t>(0, lastVisible + 1); j < used; ++j) {
              row[j] += maskFilterValue_;
            }
          }
          if (attentionBias != nullptr) {
            const int64_t biasBatch = attentionBiasShape[0] == 1 ? 0 : b;
            const int64_t biasHead = attentionBiasShape[1] == 1 ? 0 : n;
            const float* additions =
                attentionBias +
                ((biasBatch * attentionBiasShape[1] + biasHead) * g.sequence + t) * g.keySequence;
            addRows(row, additions, nullptr, row, g.keySequence);
          }
          const float max = maxOf(row, used);
          if (max == -std::numeric_limits<float>::infinity()) {
            // Every score is -inf (only an attention_bias can do that).
            std::fill_n(row, used, 0.0f);
            rowSum[r] = 0.0f;
            continue;
          }
          rowSum[r] = expShiftedSum(row, max, row, used);
        }

        // out = P V, accumulated over the key tiles, then divided by the sums.
        for (int64_t key0 = 0; key0 < used; key0 += kKeyTile) {
          const int64_t keys = std::min(kKeyTile, used - key0);
          gemm(false, false, rows, g.valueHeadSize, keys, 1.0f, scores.data() + key0,
               g.keySequence, views[2].at(b, key0, n), views[2].sequenceStride,
               key0 == 0 ? 0.0f : 1.0f, out, outputRowStride);
        }
        for (int64_t r = 0; r < rows; ++r) {
          const float inverse = rowSum[r] > 0.0f ? 1.0f / rowSum[r] : 0.0f;
          scaleInPlace(out + r * outputRowStride, inverse, g.valueHeadSize);
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  struct Geometry {
    int64_t batch = 0;
    int64_t sequence = 0;
    int64_t keySequence = 0;
    int64_t headSize = 0;
    int64_t valueHeadSize = 0;
    HeadView query, key, value;
  };

  // Recognizes the input layouts. A query [b, s, hidden] takes key and value
  // as [b, kv, hidden] or [b, heads, kv, head_size], or a key packed as [b,
  // kv, heads, 2, head_size] with value omitted. A query packed as [b, s,
  // heads, 3, head_size] takes neither key nor value.
  absl::StatusOr<Geometry> resolve(const KernelContext& context) const {
    if (absl::Status status = requireInput(context, 0, "query"); !status.ok()) return status;
    for (size_t i = 0; i < context.inputs.size() && i < 6; ++i) {
      if (i == 4) continue;
      if (hasInput(context, i) && context.inputs[i].type != DataType::kFloat) {
        return unsupportedType(absl::StrCat("input ", i), context.inputs[i].type);
      }
    }
    for (size_t i = 6; i < context.inputs.size(); ++i) {
      if (hasInput(context, i)) {
        return unimplemented("input ", i,
                             " (past_key, past_value or later) is not supported by the CPU kernel");
      }
    }
    const TensorView& query = context.inputs[0];
    const bool hasKey = hasInput(context, 1);
    const bool hasValue = hasInput(context, 2);
    const int64_t heads = numHeads_;
    Geometry g;
    auto fail = [&](absl::string_view what) {
      return invalidArgument(what, "; got query ", shapeToString(query.shape), ", key ",
                             hasKey ? shapeToString(context.inputs[1].shape) : "(none)",
                             ", value ", hasValue ? shapeToString(context.inputs[2].shape) : "(none)",
                             ", num_heads ", heads);
    };

    if (query.shape.size() == 5) {
      if (hasKey || hasValue || query.shape[2] != heads || query.shape[3] != 3) {
        return fail("packed QKV query must be [batch, seq, num_heads, 3, head_size] with key and "
                    "value omitted");
      }
      g.batch = query.shape[0];
      g.sequence = g.keySequence = query.shape[1];
      g.headSize = g.valueHeadSize = query.shape[4];
      const float* base = query.as<const float>();
      HeadView* packedViews[] = {&g.query, &g.key, &g.value};
      for (int i = 0; i < 3; ++i) {
        HeadView& view = *packedViews[i];
        view.base = base + i * g.headSize;
        view.headStride = 3 * g.headSize;
        view.sequenceStride = heads * 3 * g.headSize;
        view.batchStride = g.sequence * view.sequenceStride;
      }
    } else if (query.shape.size() == 3) {
      if (!hasKey || query.shape[2] % heads != 0) {
        return fail("query [batch, seq, hidden] needs a key, and hidden must be a multiple of num_heads");
      }
      g.batch = query.shape[0];
      g.sequence = query.shape[1];
      g.headSize = query.shape[2] / heads;
      g.query = HeadView{query.as<const float>(), g.sequence * query.shape[2], query.shape[2], g.headSize};
      const TensorView& key = context.inputs[1];
      if (key.shape.size() == 5) {
        if (hasValue || key.shape[0] != g.batch || key.shape[2] != heads || key.shape[3] != 2 ||
            key.shape[4] != g.headSize) {
          return fail("packed KV key must be [batch, kv_seq, num_heads, 2, head_size] with value omitted");
        }
        g.keySequence = key.shape[1];
        g.valueHeadSize = g.headSize;
        const int64_t sequenceStride = heads * 2 * g.headSize;
        g.key = HeadView{key.as<const float>(), g.keySequence * sequenceStride, sequenceStride,
                         2 * g.headSize};
        g.value = g.key;
        g.value.base += g.headSize;
      } else if (key.shape.size() == 3) {
        if (!hasValue || key.shape[0] != g.batch || key.shape[2] != query.shape[2]) {
          return fail("key [batch, kv_seq, hidden] must match the query's batch and hidden size, "
                      "and value is required");
        }
        const TensorView& value = context.inputs[2];
        if (value.shape.size() != 3 || value.shape[0] != g.batch || value.shape[1] != key.shape[1] ||
            value.shape[2] % heads != 0) {
          return fail("value must be [batch, kv_seq, v_hidden] with v_hidden a multiple of num_heads");
        }
        g.keySequence = key.shape[1];
        g.valueHeadSize = value.shape[2] / heads;
        g.key = HeadView{key.as<const float>(), g.keySequence * key.shape[2], key.shape[2], g.headSize};
        g.value = HeadView{value.as<const float>(), g.keySequence * value.shape[2], value.shape[2],
                           g.valueHeadSize};
      } else if (key.shape.size() == 4) {
        const TensorView& value = context.inputs[2];
        if (!hasValue || key.shape[0] != g.batch || key.shape[1] != heads ||
            key.shape[3] != g.headSize || value.shape.size() != 4 || value.shape[0] != g.batch ||
            value.shape[1] != heads || value.shape[2] != key.shape[2]) {
          return fail("key and value [batch, num_heads, kv_seq, head_size] must match the query");
        }
        if (hasInput(context, 3)) {
          return fail("bias is not allowed with key and value in [batch, num_heads, kv_seq, "
                      "head_size] form");
        }
        g.keySequence = key.shape[2];
        g.valueHeadSize = value.shape[3];
        g.key = HeadView{key.as<const float>(), heads * g.keySequence * g.headSize, g.headSize,
                         g.keySequence * g.headSize};
        g.value = HeadView{value.as<const float>(), heads * g.keySequence * g.valueHeadSize,
                           g.valueHeadSize, g.keySequence * g.valueHeadSize};
      } else {
        return fail("key must be 3-D, 4-D or packed 5-D");
      }
    } else {
      return fail("query must be [batch, seq, hidden] or packed [batch, seq, num_heads, 3, head_size]");
    }

    if (hasInput(context, 3)) {
      const int64_t expected = heads * (2 * g.headSize + g.valueHeadSize);
      if (context.inputs[3].elementCount() != expected || context.inputs[3].shape.size() != 1) {
        return invalidArgument("input bias ", shapeToString(context.inputs[3].shape),
                               " must be 1-D with ", expected, " elements (Q, K and V biases)");
      }
    }
    if (hasInput(context, 4)) {
      const TensorView& mask = context.inputs[4];
      if (mask.type != DataType::kInt32 && mask.type != DataType::kInt64) {
        return invalidArgument("input key_padding_mask must be int32, not ", typeName(mask.type));
      }
      const bool valid = mask.shape == Shape{g.batch} ||
                         mask.shape == Shape{g.batch, g.keySequence} ||
                         mask.shape == Shape{g.batch, g.sequence, g.keySequence};
      if (!valid) {
        return invalidArgument("input key_padding_mask ", shapeToString(mask.shape), " must be [",
                               g.batch, "] (valid key counts), [", g.batch, ", ", g.keySequence,
                               "] or [", g.batch, ", ", g.sequence, ", ", g.keySequence, "]");
      }
    }
    if (hasInput(context, 5)) {
      const Shape& shape = context.inputs[5].shape;
      if (shape.size() != 4 || (shape[0] != 1 && shape[0] != g.batch) ||
          (shape[1] != 1 && shape[1] != heads) || shape[2] != g.sequence ||
          shape[3] != g.keySequence) {
        return invalidArgument("input attention_bias ", shapeToString(shape), " must be [",
                               g.batch, " or 1, ", heads, " or 1, ", g.sequence, ", ",
                               g.keySequence, "]");
      }
    }
    return g;
  }

  // Writes view + bias into a dense [batch, length, heads, size] buffer and
  // returns a view of it.
  HeadView addBias(const HeadView& view, int64_t batch, int64_t length, int64_t size,
                   const float* bias, std::vector<float>& storage, ThreadPool* threads) const {
    const int64_t rowStride = numHeads_ * size;
    storage.resize(static_cast<size_t>(batch * length * rowStride));
    parallelFor(threads, batch * length, rowStride, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t b = item / length;
        const int64_t t = item % length;
        for (int64_t n = 0; n < numHeads_; ++n) {
          addRows(view.at(b, t, n), bias + n * size, nullptr,
                  storage.data() + item * rowStride + n * size, size);
        }
      }
    });
    return HeadView{storage.data(), length * rowStride, rowStride, size};
  }

  // Per-key additions of a 1-D or 2-D key_padding_mask, [batch, kv_seq]:
  // 0 for kept keys and mask_filter_value for masked ones (ONNX Runtime adds
  // the mask to the scaled scores). Empty without such a mask.
  absl::StatusOr<std::vector<float>> keyPaddingAdditions(const KernelContext& context,
                                                         const Geometry& g) const {
    if (!hasInput(context, 4) || context.inputs[4].shape.size() == 3) return std::vector<float>();
    const TensorView& mask = context.inputs[4];
    absl::StatusOr<std::vector<int64_t>> values = readIntegers(name(), mask, "input key_padding_mask");
    if (!values.ok()) return values.status();
    std::vector<float> additions(static_cast<size_t>(g.batch * g.keySequence), 0.0f);
    for (int64_t b = 0; b < g.batch; ++b) {
      for (int64_t j = 0; j < g.keySequence; ++j) {
        const bool kept = mask.shape.size() == 1 ? j < (*values)[b]
                                                 : (*values)[b * g.keySequence + j] != 0;
        if (!kept) additions[b * g.keySequence + j] = maskFilterValue_;
      }
    }
    return additions;
  }

  // Additions of a 3-D [batch, seq, kv_seq] mask.
  std::vector<float> maskAdditions(const TensorView& mask) const {
    std::vector<int64_t> values = *readIntegers(name(), mask, "input key_padding_mask");
    std::vector<float> additions(values.size());
    for (size_t i = 0; i < values.size(); ++i) additions[i] = values[i] != 0 ? 0.0f : maskFilterValue_;
    return additions;
  }

  int64_t numHeads_;
  float maskFilterValue_;
  float scale_;
  bool unidirectional_;
};

absl::StatusOr<std::unique_ptr<Kernel>> createMultiHeadAttention(const ir::Node& node) {
  absl::StatusOr<int64_t> numHeads = node.intAttribute("num_heads", 0);
  if (!numHeads.ok()) return numHeads.status();
  if (*numHeads <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        node.describe(), ": attribute num_heads must be given and positive, got ", *numHeads));
  }
  // ONNX Runtime's defaults: masked scores get -10000 added, and scale 0
  // means 1 / sqrt(head_size).
  absl::StatusOr<float> maskFilterValue = node.floatAttribute("mask_filter_value", -10000.0f);
  if (!maskFilterValue.ok()) return maskFilterValue.status();
  absl::StatusOr<float> scale = node.floatAttribute("scale", 0.0f);
  if (!scale.ok()) return scale.status();
  absl::StatusOr<int64_t> unidirectional = node.intAttribute("unidirectional", 0);
  if (!unidirectional.ok()) return unidirectional.status();
  for (size_t i = 1; i < node.outputCount(); ++i) {
    if (nodeHasOutput(node, i)) {
      return absl::UnimplementedError(absl::StrCat(
          node.describe(), ": output ", i,
          " (present_key, present_value or qk) is not supported by the CPU kernel"));
    }
  }
  return std::make_unique<MultiHeadAttentionKernel>(node, *numHeads, *maskFilterValue, *scale,
                                                    *unidirectional != 0);
}

}  // namespace

void registerAttentionKernels(KernelRegistry& registry) {
  registry.add("com.microsoft", "MultiHeadAttention", createMultiHeadAttention);
}

}  // namespace roformer::runtime::cpu
