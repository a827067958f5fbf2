#include "runtime/Evaluator.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/Kernel.h"
#include "runtime/Tensor.h"
#include "runtime/cpu/CpuKernels.h"

namespace roformer::runtime {

namespace {

const KernelFactory* findFactory(const ir::Node& node, int64_t opset) {
  return cpuKernelRegistry().find(node.domain(), node.opType(), static_cast<int>(opset));
}

bool isOmitted(const ir::Value* value) { return value == nullptr || value->name().empty(); }

}  // namespace

bool canEvaluate(const ir::Node& node, int64_t opset) { return findFactory(node, opset) != nullptr; }

absl::StatusOr<std::vector<std::shared_ptr<ir::Tensor>>> evaluateNode(
    const ir::Node& node, const std::vector<std::shared_ptr<ir::Tensor>>& inputs, int64_t opset,
    int64_t maxOutputBytes) {
  const KernelFactory* factory = findFactory(node, opset);
  if (factory == nullptr) {
    return absl::NotFoundError(absl::StrCat(node.describe(), ": the CPU backend has no kernel for ",
                                            node.domain().empty() ? "" : node.domain() + ".",
                                            node.opType(), " at opset ", opset));
  }
  if (inputs.size() > node.inputCount()) {
    return absl::InvalidArgumentError(absl::StrCat(node.describe(), ": got ", inputs.size(),
                                                   " input tensors for ", node.inputCount(),
                                                   " inputs"));
  }
  absl::StatusOr<std::unique_ptr<Kernel>> kernel = (*factory)(node);
  if (!kernel.ok()) return kernel.status();

  // The kernels only read their inputs (evaluation never runs in place), so
  // the constant bytes are viewed without a copy.
  std::vector<TensorView> inputViews(node.inputCount());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::shared_ptr<ir::Tensor>& tensor = inputs[i];
    if (tensor == nullptr) continue;
    if (ir::dataTypeSize(tensor->dataType()) == 0) {
      return absl::UnimplementedError(absl::StrCat(node.describe(), ": input ", i,
                                                   " has element type ",
                                                   std::string(ir::dataTypeName(tensor->dataType())),
                                                   ", which the CPU kernels do not support"));
    }
    inputViews[i] = TensorView{tensor->dataType(), tensor->dims(),
                               const_cast<uint8_t*>(tensor->rawData())};
  }

  std::vector<TensorView> outputViews(node.outputCount());
  KernelContext context{inputViews, outputViews, nullptr};
  if (absl::Status status = (*kernel)->inferOutputs(context); !status.ok()) return status;

  int64_t totalBytes = 0;
  for (size_t i = 0; i < node.outputCount(); ++i) {
    if (isOmitted(node.output(i))) continue;
    const TensorView& view = outputViews[i];
    if (ir::dataTypeSize(view.type) == 0) {
      return absl::InternalError(absl::StrCat(node.describe(), ": the kernel gave output ", i,
                                              " no element type"));
    }
    std::optional<int64_t> bytes = ir::checkedByteSize(view.type, view.shape);
    if (!bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(node.describe(), ": output ", i, " would have shape ",
                       shapeToString(view.shape), ", whose size does not fit in 64 bits"));
    }
    if (__builtin_add_overflow(totalBytes, *bytes, &totalBytes) || totalBytes > maxOutputBytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(node.describe(), ": the outputs would take more than ", maxOutputBytes,
                       " bytes (output ", i, " has shape ", shapeToString(view.shape), ")"));
    }
  }

  // Each output is computed into a string that becomes the tensor's buffer.
  std::vector<std::string> storage(node.outputCount());
  for (size_t i = 0; i < node.outputCount(); ++i) {
    if (isOmitted(node.output(i))) continue;
    TensorView& view = outputViews[i];
    // One spare byte keeps the pointer valid for empty outputs.
    storage[i].assign(view.byteSize() + 1, '\0');
    view.data = storage[i].data();
  }
  if (absl::Status status = (*kernel)->compute(context); !status.ok()) return status;

  std::vector<std::shared_ptr<ir::Tensor>> outputs(node.outputCount());
  for (size_t i = 0; i < node.outputCount(); ++i) {
    if (isOmitted(node.output(i))) continue;
    storage[i].resize(outputViews[i].byteSize());
    outputs[i] = std::make_shared<ir::Tensor>(outputViews[i].type, outputViews[i].shape,
                                              ir::Buffer::fromString(std::move(storage[i])));
  }
  return outputs;
}

}  // namespace roformer::runtime
