#include "runtime/cuda/CudaBackend.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/CpuKernels.h"
#include "runtime/cuda/CudaContext.h"
#include "runtime/cuda/CudaKernel.h"
#include "runtime/cuda/CudaOps.h"
#include "runtime/cuda/DeviceKernels.h"

namespace roformer::runtime::cuda {
namespace {

// The highest opset the registry probes when it copies the CPU registry's
// opset ranges; a CPU kernel registered up to its open end keeps it.
constexpr int kHighestProbedOpset = 30;
constexpr int kOpenOpsetEnd = 1000;
constexpr float kHalfMax = 65504.0f;

std::pair<std::string, std::string> splitQualifiedOp(const std::string& qualified) {
  const size_t dot = qualified.rfind('.');
  if (dot == std::string::npos) return {"", qualified};
  return {qualified.substr(0, dot), qualified.substr(dot + 1)};
}

KernelFactory wrapCpuFactory(KernelFactory cpuFactory, const DeviceBuilder* builder,
                             std::shared_ptr<CudaContext> context, int opset) {
  DeviceBuilder device = builder != nullptr ? *builder : DeviceBuilder();
  return [cpuFactory = std::move(cpuFactory), device = std::move(device),
          context = std::move(context),
          opset](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    absl::StatusOr<std::unique_ptr<Kernel>> cpu = cpuFactory(node);
    if (!cpu.ok()) return cpu.status();
    if (device) return device(node, context, std::move(*cpu), opset);
    return std::make_unique<HostOnlyKernel>(node, context, std::move(*cpu), OpKernel::Options{});
  };
}

// Whether every finite value fits fp16, whose largest finite value is 65504.
bool fitsHalf(const ir::Tensor& tensor) {
  const float* values = reinterpret_cast<const float*>(tensor.rawData());
  const int64_t count = tensor.elementCount();
  for (int64_t i = 0; i < count; ++i) {
    if (std::isfinite(values[i]) && std::fabs(values[i]) > kHalfMax) return false;
  }
  return true;
}

}  // namespace

std::unique_ptr<KernelRegistry> buildCudaRegistry(std::shared_ptr<CudaContext> context) {
  DeviceOpTable table;
  addBasicOps(table);
  addModelOps(table);

  const KernelRegistry& cpu = cpuKernelRegistry();
  auto registry = std::make_unique<KernelRegistry>();
  for (const std::string& qualified : cpu.listOps()) {
    const auto [domain, opType] = splitQualifiedOp(qualified);
    auto device = table.find({domain, opType});
    const DeviceBuilder* builder = device == table.end() ? nullptr : &device->second;

    // Copy the CPU kernel's opset ranges: consecutive opsets that find the
    // same factory form one range.
    const KernelFactory* current = nullptr;
    int rangeStart = 0;
    for (int opset = 1; opset <= kHighestProbedOpset + 1; ++opset) {
      const KernelFactory* found =
          opset <= kHighestProbedOpset ? cpu.find(domain, opType, opset) : nullptr;
      if (found == current) continue;
      if (current != nullptr) {
        const int rangeEnd = opset > kHighestProbedOpset ? kOpenOpsetEnd : opset - 1;
        registry->add(domain, opType, wrapCpuFactory(*current, builder, context, rangeStart),
                      rangeStart, rangeEnd);
      }
      current = found;
      rangeStart = opset;
    }
  }
  return registry;
}

absl::Status cudaDeviceStatus() {
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    return absl::FailedPreconditionError(
        absl::StrCat("no CUDA device is available: ", cudaErrorText(error)));
  }
  if (count == 0) return absl::FailedPreconditionError("no CUDA device is available: 0 devices");
  return absl::OkStatus();
}

CudaBackend::CudaBackend(std::shared_ptr<CudaContext> context) : context_(std::move(context)) {}

CudaBackend::~CudaBackend() = default;

absl::StatusOr<std::shared_ptr<CudaBackend>> CudaBackend::create(const BackendOptions& options) {
  absl::StatusOr<std::shared_ptr<CudaContext>> context = CudaContext::create(options);
  if (!context.ok()) return context.status();
  auto backend = std::shared_ptr<CudaBackend>(new CudaBackend(*context));
  backend->registry_ = buildCudaRegistry(*context);
  return backend;
}

absl::StatusOr<DeviceBuffer> CudaBackend::allocate(size_t bytes) { return context_->allocate(bytes); }

absl::Status CudaBackend::copyToDevice(void* deviceDst, const void* hostSrc, size_t bytes) {
  absl::StatusOr<ThreadState*> state = context_->thread();
  if (!state.ok()) return state.status();
  context_->invalidateMirrors(**state, deviceDst, bytes);
  if (bytes == 0) return absl::OkStatus();
  return cudaStatus(
      cudaMemcpyAsync(deviceDst, hostSrc, bytes, cudaMemcpyHostToDevice, (*state)->stream),
      "copying an input to the CUDA device");
}

absl::Status CudaBackend::copyToHost(void* hostDst, const void* deviceSrc, size_t bytes) {
  absl::StatusOr<ThreadState*> state = context_->thread();
  if (!state.ok()) return state.status();
  ThreadState& thread = **state;

  // A graph output that is a converted weight goes back to float32 first.
  DeviceBuffer widened;
  const DataType stored = context_->convertedConstantType(deviceSrc);
  if (stored != DataType::kUndefined) {
    const int64_t count = static_cast<int64_t>(bytes / sizeof(float));
    absl::StatusOr<DeviceBuffer> buffer = context_->allocate(bytes);
    if (!buffer.ok()) return buffer.status();
    widened = *buffer;
    if (absl::Status status = cudaStatus(
            launchConvert(deviceSrc, static_cast<int>(stored), widened.data, kF32, count,
                          thread.stream),
            "converting a weight back to float32");
        !status.ok()) {
      return status;
    }
    deviceSrc = widened.data;
  }

  if (bytes > 0 && !context_->copyPendingToHost(thread, deviceSrc, hostDst, bytes)) {
    if (absl::Status status = cudaStatus(cudaMemcpyAsync(hostDst, deviceSrc, bytes,
                                                         cudaMemcpyDeviceToHost, thread.stream),
                                         "copying an output from the CUDA device");
        !status.ok()) {
      return status;
    }
  }
  return context_->synchronizeAndCheck(thread);
}

absl::Status CudaBackend::synchronize() {
  absl::StatusOr<ThreadState*> state = context_->thread();
  if (!state.ok()) return state.status();
  return context_->synchronizeAndCheck(**state);
}

absl::StatusOr<DeviceBuffer> CudaBackend::placeConstant(std::shared_ptr<const ir::Tensor> tensor) {
  const DataType type = tensor->dataType();
  const int64_t count = tensor->elementCount();
  const size_t bytes = tensor->byteSize();
  const DataType activation = context_->activationType();

  const bool convert = activation != DataType::kFloat && type == DataType::kFloat &&
                       count > kMirrorElementLimit &&
                       (activation == DataType::kBfloat16 || fitsHalf(*tensor));
  if (convert) {
    const size_t convertedBytes = static_cast<size_t>(count) * ir::dataTypeSize(activation);
    absl::StatusOr<DeviceBuffer> buffer = context_->allocatePermanent(convertedBytes);
    if (!buffer.ok()) return buffer.status();
    absl::StatusOr<ThreadState*> state = context_->thread();
    if (!state.ok()) return state.status();
    void* staging = nullptr;
    if (absl::Status status = cudaStatus(cudaMalloc(&staging, bytes), "allocating upload memory");
        !status.ok()) {
      return status;
    }
    absl::Status status =
        cudaStatus(cudaMemcpy(staging, tensor->rawData(), bytes, cudaMemcpyHostToDevice),
                   "uploading a weight");
    if (status.ok()) {
      status = cudaStatus(launchConvert(staging, kF32, buffer->data, static_cast<int>(activation),
                                        count, (*state)->stream),
                          "converting a weight");
    }
    if (status.ok()) {
      status = cudaStatus(cudaStreamSynchronize((*state)->stream), "converting a weight");
    }
    cudaFree(staging);
    if (!status.ok()) return status;
    context_->recordConvertedConstant(buffer->data, activation);
    // The session's view keeps the tensor's float32 size; kernels correct
    // the type (CudaKernel), and copyToHost widens the weight back.
    buffer->size = bytes;
    return buffer;
  }

  absl::StatusOr<DeviceBuffer> buffer = context_->allocatePermanent(bytes);
  if (!buffer.ok()) return buffer.status();
  if (bytes > 0) {
    if (absl::Status status = cudaStatus(
            cudaMemcpy(buffer->data, tensor->rawData(), bytes, cudaMemcpyHostToDevice),
            "uploading a weight");
        !status.ok()) {
      return status;
    }
  }
  if (count <= kMirrorElementLimit) {
    auto mirror = std::make_shared<HostMirror>();
    mirror->type = type;
    mirror->shape = tensor->dims();
    mirror->data = tensor->rawData();
    mirror->owner = tensor;
    context_->recordConstantMirror(buffer->data, std::move(mirror));
  }
  return buffer;
}

CudaBackendStats CudaBackend::stats() const {
  CudaBackendStats stats;
  stats.hostSteps = context_->stats().hostSteps.load();
  stats.fallbackSteps = context_->stats().fallbackSteps.load();
  stats.shapeReads = context_->stats().shapeReads.load();
  stats.fallbackOps = context_->fallbackOps();
  return stats;
}

std::string CudaBackend::deviceDescription() const {
  return absl::StrCat(context_->deviceName(), " (compute capability ",
                      context_->computeCapability() / 10, ".", context_->computeCapability() % 10,
                      ")");
}

void registerCudaBackend() {
  registerBackend("cuda",
                  [](const BackendOptions& options) -> absl::StatusOr<std::shared_ptr<Backend>> {
                    absl::StatusOr<std::shared_ptr<CudaBackend>> backend =
                        CudaBackend::create(options);
                    if (!backend.ok()) return backend.status();
                    return std::shared_ptr<Backend>(*backend);
                  });
}

}  // namespace roformer::runtime::cuda
