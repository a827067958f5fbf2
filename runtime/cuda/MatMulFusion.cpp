#include "runtime/cuda/MatMulFusion.h"

namespace roformer::runtime::cuda {

const ir::Node* fusedBiasAdd(const ir::Node& matMul) {
  if (!matMul.is("MatMul") || matMul.inputCount() != 2 || matMul.outputCount() != 1) return nullptr;
  const ir::Value* product = matMul.output(0);
  if (product == nullptr || product->isGraphOutput() || product->uses().size() != 1) return nullptr;
  const ir::Use& use = product->uses().front();
  const ir::Node* add = use.user;
  if (!add->is("Add") || use.inputIndex != 0 || add->inputCount() != 2) return nullptr;

  std::shared_ptr<ir::Tensor> weight = ir::constantOf(matMul.input(1));
  std::shared_ptr<ir::Tensor> bias = ir::constantOf(add->input(1));
  if (weight == nullptr || bias == nullptr) return nullptr;
  if (weight->dataType() != ir::DataType::kFloat ||
      bias->dataType() != ir::DataType::kFloat) {
    return nullptr;
  }
  if (weight->rank() != 2 || bias->rank() != 1 || bias->dims()[0] != weight->dims()[1]) {
    return nullptr;
  }
  return add;
}

bool isBiasAddFusedIntoMatMul(const ir::Node& add) {
  if (!add.is("Add") || add.inputCount() != 2 || add.input(0) == nullptr) return false;
  const ir::Node* producer = add.input(0)->producer();
  return producer != nullptr && fusedBiasAdd(*producer) == &add;
}

}  // namespace roformer::runtime::cuda
