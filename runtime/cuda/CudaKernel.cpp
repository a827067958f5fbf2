#include "runtime/cuda/CudaKernel.h"

#include <cstring>

#include "runtime/cpu/KernelUtils.h"

namespace roformer::runtime::cuda {
namespace {

// The host path runs only while every output stays this small, so that a
// broadcast of a small constant to a large tensor runs on the device.
constexpr int64_t kHostPathElementLimit = 1 << 16;

std::vector<bool> graphOutputFlags(const ir::Node& node) {
  std::vector<bool> flags;
  for (const ir::Value* output : node.outputs()) {
    flags.push_back(output != nullptr && output->isGraphOutput());
  }
  return flags;
}

bool overlaps(const TensorView& a, const TensorView& b) {
  if (a.data == nullptr || b.data == nullptr) return false;
  const auto* aBegin = static_cast<const uint8_t*>(a.data);
  const auto* bBegin = static_cast<const uint8_t*>(b.data);
  return aBegin < bBegin + std::max<size_t>(b.byteSize(), 1) &&
         bBegin < aBegin + std::max<size_t>(a.byteSize(), 1);
}

}  // namespace

CudaKernel::CudaKernel(const ir::Node& node, std::shared_ptr<CudaContext> context)
    : context_(std::move(context)),
      name_(node.describe()),
      opType_(node.opType()),
      graphOutputs_(graphOutputFlags(node)) {}

absl::Status CudaKernel::check(cudaError_t error, const char* action) const {
  if (error == cudaSuccess) return absl::OkStatus();
  return cudaStatus(error, absl::StrCat(name_, ": ", action));
}

absl::Status CudaKernel::inferOutputs(KernelContext& context) {
  absl::StatusOr<ThreadState*> state = context_->thread();
  if (!state.ok()) return state.status();

  std::vector<TensorView> inputs(context.inputs.begin(), context.inputs.end());
  for (TensorView& input : inputs) {
    if (input.type != DataType::kFloat || input.data == nullptr) continue;
    DataType stored = context_->convertedConstantType(input.data);
    if (stored != DataType::kUndefined) input.type = stored;
  }
  KernelContext corrected{inputs, context.outputs, context.threads};
  Call call{corrected, **state, {}, {}};
  call.mirrors.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) call.mirrors[i] = context_->findMirror(**state, inputs[i]);
  return infer(call);
}

absl::Status CudaKernel::compute(KernelContext& context) {
  absl::StatusOr<ThreadState*> state = context_->thread();
  if (!state.ok()) return state.status();
  ThreadState& thread = **state;

  std::vector<TensorView> inputs(context.inputs.begin(), context.inputs.end());
  for (TensorView& input : inputs) {
    if (input.type != DataType::kFloat || input.data == nullptr) continue;
    DataType stored = context_->convertedConstantType(input.data);
    if (stored != DataType::kUndefined) input.type = stored;
  }
  KernelContext corrected{inputs, context.outputs, context.threads};
  Call call{corrected, thread, {}, {}};
  call.mirrors.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) call.mirrors[i] = context_->findMirror(thread, inputs[i]);

  // An input read in place must reach the device before its mirror goes.
  for (const TensorView& input : inputs) {
    for (const TensorView& output : context.outputs) {
      if (!overlaps(input, output)) continue;
      if (absl::Status status = context_->uploadPending(thread, input.data); !status.ok()) {
        return status;
      }
    }
  }
  for (const TensorView& output : context.outputs) {
    if (output.data != nullptr) context_->invalidateMirrors(thread, output.data, output.byteSize());
  }
  return run(call);
}

absl::StatusOr<TensorView> CudaKernel::hostInput(Call& call, size_t i, bool widen) {
  const TensorView& input = call.input(i);
  if (call.mirrors[i] != nullptr) return call.mirrors[i]->view();
  if (input.type == DataType::kUndefined) return input;

  // No mirror: copy from the device, which waits for the stream.
  if (call.thread.recording) {
    return recordingError(absl::StrCat(name_, ": reads input ", i, " on the host"));
  }
  context_->stats().shapeReads.fetch_add(1);
  const size_t bytes = input.byteSize();
  auto storage = std::make_shared<std::vector<uint8_t>>(bytes);
  if (bytes > 0) {
    if (absl::Status status = context_->uploadPending(call.thread, input.data); !status.ok()) {
      return status;
    }
    if (absl::Status status = check(cudaMemcpyAsync(storage->data(), input.data, bytes,
                                                    cudaMemcpyDeviceToHost, call.stream()),
                                    "copying an input to the host");
        !status.ok()) {
      return status;
    }
    if (absl::Status status = check(cudaStreamSynchronize(call.stream()), "running the kernels");
        !status.ok()) {
      return status;
    }
  }
  auto mirror = std::make_shared<HostMirror>();
  mirror->shape = input.shape;
  if (widen && isReducedFloat(input.type)) {
    const int64_t count = input.elementCount();
    auto widened = std::make_shared<std::vector<float>>(static_cast<size_t>(count));
    const auto* bits = reinterpret_cast<const uint16_t*>(storage->data());
    for (int64_t k = 0; k < count; ++k) {
      (*widened)[k] = input.type == DataType::kFloat16 ? halfBitsToFloat(bits[k])
                                                       : bfloat16BitsToFloat(bits[k]);
    }
    mirror->type = DataType::kFloat;
    mirror->data = widened->data();
    mirror->owner = widened;
  } else {
    mirror->type = input.type;
    mirror->data = storage->data();
    mirror->owner = storage;
  }
  call.copies.push_back(mirror);
  return mirror->view();
}

// ---- OpKernel ----

OpKernel::OpKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
                   std::unique_ptr<Kernel> cpuKernel, Options options)
    : CudaKernel(node, std::move(context)),
      cpuKernel_(std::move(cpuKernel)),
      options_(std::move(options)) {}

DataType OpKernel::floatOutputType(const Call& call, size_t output) const {
  const DataType activation = context()->activationType();
  if (isGraphOutput(output) || activation == DataType::kFloat) return DataType::kFloat;
  if (options_.forceActivationType) return activation;
  for (const TensorView& input : call.kernel.inputs) {
    if (isReducedFloat(input.type)) return activation;
  }
  return DataType::kFloat;
}

DataType OpKernel::deviceOutputType(const Call& call, size_t output, DataType cpuType) const {
  return cpuType == DataType::kFloat ? floatOutputType(call, output) : cpuType;
}

OpKernel::Path OpKernel::choosePath(Call& call) {
  if (options_.shapeOnly) return Path::kHost;
  if (options_.hostEvaluable) {
    bool allMirrored = true;
    for (size_t i = 0; i < call.kernel.inputs.size(); ++i) {
      if (call.hasInput(i) && call.mirrors[i] == nullptr) allMirrored = false;
    }
    if (allMirrored) {
      // Infer on the host to see whether the outputs stay small.
      std::vector<TensorView> inputs;
      for (size_t i = 0; i < call.kernel.inputs.size(); ++i) {
        inputs.push_back(call.hasInput(i) ? call.mirrors[i]->view() : call.input(i));
      }
      std::vector<TensorView> outputs(call.kernel.outputs.size());
      KernelContext host{inputs, outputs, nullptr};
      if (cpuKernel_->inferOutputs(host).ok()) {
        bool small = true;
        for (const TensorView& output : outputs) {
          if (output.type != DataType::kUndefined && output.elementCount() > kHostPathElementLimit) {
            small = false;
          }
        }
        if (small) return Path::kHost;
      }
    }
  }
  return deviceSupports(call) ? Path::kDevice : Path::kFallback;
}

absl::StatusOr<std::vector<TensorView>> OpKernel::hostInputs(Call& call, Path path) {
  std::vector<TensorView> inputs(call.kernel.inputs.begin(), call.kernel.inputs.end());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!call.hasInput(i)) continue;
    if (options_.shapeOnly) {
      // Shape and Size read only the input's type and shape.
      inputs[i].data = nullptr;
      if (isReducedFloat(inputs[i].type)) inputs[i].type = DataType::kFloat;
      continue;
    }
    absl::StatusOr<TensorView> host = hostInput(call, i, /*widen=*/path == Path::kFallback);
    if (!host.ok()) return host.status();
    inputs[i] = *host;
  }
  return inputs;
}

absl::Status OpKernel::infer(Call& call) {
  const Path path = choosePath(call);
  if (path == Path::kDevice) return inferOnDevicePath(call);

  absl::StatusOr<std::vector<TensorView>> inputs = hostInputs(call, path);
  if (!inputs.ok()) return inputs.status();
  std::vector<TensorView> outputs(call.kernel.outputs.size());
  KernelContext host{*inputs, outputs, nullptr};
  if (absl::Status status = cpuKernel_->inferOutputs(host); !status.ok()) return status;
  for (size_t j = 0; j < outputs.size(); ++j) {
    call.output(j).type = outputs[j].type;
    call.output(j).shape = outputs[j].shape;
  }
  return absl::OkStatus();
}

absl::Status OpKernel::inferOnDevicePath(Call& call) {
  // The CPU kernel infers the shapes. It receives fp16 and bf16 inputs typed
  // as float32, because it checks types and float32 is its only float type,
  // and the host values of the shape inputs.
  std::vector<TensorView> inputs(call.kernel.inputs.begin(), call.kernel.inputs.end());
  for (TensorView& input : inputs) {
    if (isReducedFloat(input.type)) input.type = DataType::kFloat;
  }
  for (int i : options_.shapeInputs) {
    if (!call.hasInput(static_cast<size_t>(i))) continue;
    absl::StatusOr<TensorView> host = hostInput(call, static_cast<size_t>(i));
    if (!host.ok()) return host.status();
    inputs[i] = *host;
  }
  std::vector<TensorView> outputs(call.kernel.outputs.size());
  KernelContext erased{inputs, outputs, nullptr};
  if (absl::Status status = cpuKernel_->inferOutputs(erased); !status.ok()) return status;
  for (size_t j = 0; j < outputs.size(); ++j) {
    call.output(j).type = deviceOutputType(call, j, outputs[j].type);
    call.output(j).shape = outputs[j].shape;
  }
  return absl::OkStatus();
}

absl::Status OpKernel::run(Call& call) {
  const Path path = choosePath(call);
  if (path == Path::kDevice) {
    for (size_t i = 0; i < call.kernel.inputs.size(); ++i) {
      if (!call.hasInput(i)) continue;
      if (absl::Status status = context()->uploadPending(call.thread, call.input(i).data);
          !status.ok()) {
        return status;
      }
    }
    return runDevice(call);
  }
  if (path == Path::kFallback) {
    context()->stats().fallbackSteps.fetch_add(1);
    context()->noteFallback(opType());
  } else {
    context()->stats().hostSteps.fetch_add(1);
  }
  absl::StatusOr<std::vector<TensorView>> inputs = hostInputs(call, path);
  if (!inputs.ok()) return inputs.status();
  return runOnHost(call, *inputs, path == Path::kHost);
}

absl::Status OpKernel::runOnHost(Call& call, const std::vector<TensorView>& hostInputs,
                                 bool hostPath) {
  std::vector<TensorView> outputs(call.kernel.outputs.size());
  KernelContext host{hostInputs, outputs, nullptr};
  if (absl::Status status = cpuKernel_->inferOutputs(host); !status.ok()) return status;
  std::vector<HostTensor> results(outputs.size());
  for (size_t j = 0; j < outputs.size(); ++j) {
    if (call.output(j).data == nullptr || outputs[j].type == DataType::kUndefined) continue;
    if (outputs[j].type != call.output(j).type || outputs[j].shape != call.output(j).shape) {
      return absl::InternalError(absl::StrCat(
          name(), ": output ", j, " is ", std::string(ir::dataTypeName(outputs[j].type)), " ",
          shapeToString(outputs[j].shape), " on the host but was planned as ",
          std::string(ir::dataTypeName(call.output(j).type)), " ",
          shapeToString(call.output(j).shape)));
    }
    results[j] = HostTensor(outputs[j].type, outputs[j].shape);
    outputs[j].data = results[j].rawData();
  }
  if (absl::Status status = cpuKernel_->compute(host); !status.ok()) return status;

  for (size_t j = 0; j < outputs.size(); ++j) {
    if (results[j].empty()) continue;
    auto mirror = std::make_shared<HostMirror>();
    auto owner = std::make_shared<HostTensor>(results[j]);
    mirror->type = owner->type();
    mirror->shape = owner->shape();
    mirror->data = owner->rawData();
    mirror->owner = owner;
    const bool small = owner->elementCount() <= kMirrorElementLimit;
    if (hostPath && small) {
      // Uploaded when a device kernel or the caller reads it.
      context()->recordMirror(call.thread, call.output(j), mirror, /*pendingUpload=*/true);
      continue;
    }
    if (absl::Status status =
            context()->copyHostToDevice(call.thread, call.output(j).data, owner->rawData(),
                                        owner->byteSize(),
                                        absl::StrCat(name(), ": copying an output to the device"));
        !status.ok()) {
      return status;
    }
    if (small) context()->recordMirror(call.thread, call.output(j), mirror, false);
  }
  return absl::OkStatus();
}

absl::Status HostOnlyKernel::runDevice(Call& call) {
  return unimplemented("no device implementation");
}

bool makeElementwiseLoop(const Shape& output, const std::vector<Shape>& inputs,
                         ElementwiseArgs& args) {
  cpu::BroadcastPlan plan = cpu::makeBroadcastPlan(output, inputs);
  if (plan.dims.size() > static_cast<size_t>(kMaxDims)) return false;
  args.rank = static_cast<int>(plan.dims.size());
  for (size_t d = 0; d < plan.dims.size(); ++d) {
    args.dims[d] = plan.dims[d];
    for (size_t j = 0; j < inputs.size(); ++j) args.strides[j][d] = plan.strides[j][d];
  }
  args.count = shapeElementCount(output);
  return true;
}

}  // namespace roformer::runtime::cuda
