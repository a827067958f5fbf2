#include "runtime/cuda/RotaryFusion.h"

#include <cstdlib>
#include <cstring>
#include <string>

namespace roformer::runtime::cuda {
namespace {

constexpr const char* kMicrosoft = "com.microsoft";

// The integer attribute `name`, or `fallback` when it is absent or invalid.
int64_t intOr(const ir::Node& node, const char* name, int64_t fallback) {
  absl::StatusOr<int64_t> value = node.intAttribute(name, fallback);
  return value.ok() ? *value : fallback;
}

// The one constant integer of a position_ids input, or nullopt.
std::optional<int64_t> constantOffset(const ir::Value* positions) {
  std::shared_ptr<ir::Tensor> tensor = ir::constantOf(positions);
  if (tensor == nullptr || tensor->elementCount() != 1) return std::nullopt;
  if (tensor->dataType() == ir::DataType::kInt64) {
    int64_t value;
    std::memcpy(&value, tensor->rawData(), sizeof(value));
    return value;
  }
  if (tensor->dataType() == ir::DataType::kInt32) {
    int32_t value;
    std::memcpy(&value, tensor->rawData(), sizeof(value));
    return value;
  }
  return std::nullopt;
}

bool sameTensor(const std::shared_ptr<ir::Tensor>& a, const std::shared_ptr<ir::Tensor>& b) {
  if (a == b) return true;
  return a->dataType() == b->dataType() && a->dims() == b->dims() &&
         std::memcmp(a->rawData(), b->rawData(), a->byteSize()) == 0;
}

// The rotation of the RotaryEmbedding producing input `index` of
// `attention`, when the attention kernel may apply it instead.
std::optional<FusedRotary> absorbableRotary(const ir::Node& attention, size_t index,
                                            int64_t heads) {
  const ir::Value* rotated = attention.input(index);
  if (rotated == nullptr || rotated->isGraphOutput() || rotated->uses().size() != 1) {
    return std::nullopt;
  }
  const ir::Node* rotary = rotated->producer();
  if (rotary == nullptr || !rotary->is("RotaryEmbedding", kMicrosoft) ||
      rotary->inputCount() != 4 || rotary->outputCount() != 1) {
    return std::nullopt;
  }
  // Interleaved pairs over whole heads; the attention kernel loads the
  // pair (2i, 2i + 1) as one 32-bit word.
  if (intOr(*rotary, "interleaved", 0) != 1 || intOr(*rotary, "rotary_embedding_dim", 0) != 0 ||
      intOr(*rotary, "is_packed_batching", 0) != 0) {
    return std::nullopt;
  }
  // The kernel rotates within the attention's heads. Without num_heads, a
  // 3-D input's rotary heads have 2 * cache-columns elements, which can
  // differ from the attention's head size. Such a graph is valid, but an
  // absorbed rotation has no fallback, so the run would fail.
  if (intOr(*rotary, "num_heads", 0) != heads) return std::nullopt;

  FusedRotary fused;
  std::optional<int64_t> offset = constantOffset(rotary->input(1));
  if (!offset || *offset < 0) return std::nullopt;
  fused.offset = *offset;
  fused.cosCache = ir::constantOf(rotary->input(2));
  fused.sinCache = ir::constantOf(rotary->input(3));
  if (fused.cosCache == nullptr || fused.sinCache == nullptr) return std::nullopt;
  for (const std::shared_ptr<ir::Tensor>& cache : {fused.cosCache, fused.sinCache}) {
    if (cache->dataType() != ir::DataType::kFloat || cache->rank() != 2 || cache->dims()[1] < 1) {
      return std::nullopt;
    }
  }
  if (fused.cosCache->dims() != fused.sinCache->dims()) return std::nullopt;
  return fused;
}

}  // namespace

bool rotaryFusionEnabled() {
  const char* setting = std::getenv("ROFORMER_CUDA_FUSE_ROTARY");
  return setting == nullptr || std::string(setting) != "0";
}

std::optional<FusedRotary> fusedRotaryOf(const ir::Node& attention) {
  if (!rotaryFusionEnabled() || !attention.is("MultiHeadAttention", kMicrosoft)) {
    return std::nullopt;
  }
  // Query, key and value must be separate inputs, without past state or an
  // attention bias.
  if (attention.inputCount() < 3 || attention.input(1) == nullptr ||
      attention.input(2) == nullptr || attention.input(0) == attention.input(1)) {
    return std::nullopt;
  }
  for (size_t i = 5; i < attention.inputCount(); ++i) {
    if (attention.input(i) != nullptr) return std::nullopt;
  }
  if (intOr(attention, "unidirectional", 0) != 0) return std::nullopt;
  const int64_t heads = intOr(attention, "num_heads", 0);
  if (heads <= 0) return std::nullopt;

  std::optional<FusedRotary> query = absorbableRotary(attention, 0, heads);
  std::optional<FusedRotary> key = absorbableRotary(attention, 1, heads);
  if (!query || !key || query->offset != key->offset ||
      !sameTensor(query->cosCache, key->cosCache) || !sameTensor(query->sinCache, key->sinCache)) {
    return std::nullopt;
  }
  return query;
}

bool isRotaryFusedIntoAttention(const ir::Node& rotary) {
  if (!rotary.is("RotaryEmbedding", kMicrosoft) || rotary.outputCount() != 1 ||
      rotary.output(0) == nullptr || rotary.output(0)->uses().size() != 1) {
    return false;
  }
  const ir::Use& use = rotary.output(0)->uses().front();
  return (use.inputIndex == 0 || use.inputIndex == 1) && fusedRotaryOf(*use.user).has_value();
}

}  // namespace roformer::runtime::cuda
