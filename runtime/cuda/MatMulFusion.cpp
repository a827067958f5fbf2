#include "runtime/cuda/MatMulFusion.h"

namespace roformer::runtime::cuda {

namespace {

// The (`opType`, `domain`) node that reads the product of `matMul` as its
// input 0 and a constant float bias [N] as its input 1, or null. It must be
// the product's only reader, and W must be a constant float [K, N].
const ir::Node* biasUser(const ir::Node& matMul, std::string_view opType,
                         std::string_view domain) {
  if (!matMul.is("MatMul") || matMul.inputCount() != 2 || matMul.outputCount() != 1) return nullptr;
  const ir::Value* product = matMul.output(0);
  if (product == nullptr || product->isGraphOutput() || product->uses().size() != 1) return nullptr;
  const ir::Use& use = product->uses().front();
  const ir::Node* user = use.user;
  if (!user->is(opType, domain) || use.inputIndex != 0 || user->inputCount() != 2) return nullptr;

  std::shared_ptr<ir::Tensor> weight = ir::constantOf(matMul.input(1));
  std::shared_ptr<ir::Tensor> bias = ir::constantOf(user->input(1));
  if (weight == nullptr || bias == nullptr) return nullptr;
  if (weight->dataType() != ir::DataType::kFloat ||
      bias->dataType() != ir::DataType::kFloat) {
    return nullptr;
  }
  if (weight->rank() != 2 || bias->rank() != 1 || bias->dims()[0] != weight->dims()[1]) {
    return nullptr;
  }
  return user;
}

}  // namespace

const ir::Node* fusedBiasAdd(const ir::Node& matMul) { return biasUser(matMul, "Add", ""); }

bool isBiasAddFusedIntoMatMul(const ir::Node& add) {
  if (!add.is("Add") || add.inputCount() != 2 || add.input(0) == nullptr) return false;
  const ir::Node* producer = add.input(0)->producer();
  return producer != nullptr && fusedBiasAdd(*producer) == &add;
}

const ir::Node* fusedBiasGelu(const ir::Node& matMul, bool epilogueIsErf) {
  if (!epilogueIsErf) return nullptr;
  return biasUser(matMul, "BiasGelu", "com.microsoft");
}

bool isBiasGeluFusedIntoMatMul(const ir::Node& biasGelu, bool epilogueIsErf) {
  if (!biasGelu.is("BiasGelu", "com.microsoft") || biasGelu.inputCount() != 2 ||
      biasGelu.input(0) == nullptr) {
    return false;
  }
  const ir::Node* producer = biasGelu.input(0)->producer();
  return producer != nullptr && fusedBiasGelu(*producer, epilogueIsErf) == &biasGelu;
}

}  // namespace roformer::runtime::cuda
