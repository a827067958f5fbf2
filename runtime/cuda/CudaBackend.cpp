#include "runtime/cuda/CudaBackend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>

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
// Inputs larger than this are copied from the caller's memory directly
// instead of through the thread's pinned staging memory, which grows up to
// this size.
constexpr size_t kStagingLimit = size_t{256} << 20;
constexpr size_t kStagingMinimum = size_t{1} << 20;
// Idle pinned output blocks kept for reuse; blocks given back beyond this
// are freed.
constexpr size_t kPinnedPoolLimit = size_t{1} << 30;

// A recorded run: an instantiated CUDA graph and the pinned copies of host
// data its uploads read.
struct CudaRecordedRun : RecordedRun {
  const CudaContext* context = nullptr;
  uint64_t thread = 0;
  cudaGraphExec_t graph = nullptr;
  std::vector<std::shared_ptr<void>> hostCopies;

  ~CudaRecordedRun() override {
    if (graph != nullptr) cudaGraphExecDestroy(graph);
  }
};

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

class PinnedPool : public std::enable_shared_from_this<PinnedPool> {
 public:
  ~PinnedPool() {
    for (const auto& [bytes, data] : idle_) cudaFreeHost(data);
  }

  // A pinned block of at least `bytes` bytes, or null when pinning fails.
  std::shared_ptr<void> get(size_t bytes) {
    const size_t size = std::max<size_t>(bytes, 1);
    void* data = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = idle_.find(size);
      if (it != idle_.end()) {
        data = it->second;
        idleBytes_ -= size;
        idle_.erase(it);
      }
    }
    if (data == nullptr && cudaMallocHost(&data, size) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    std::shared_ptr<PinnedPool> self = shared_from_this();
    return std::shared_ptr<void>(data, [self, size](void* block) { self->giveBack(block, size); });
  }

 private:
  void giveBack(void* data, size_t size) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (idleBytes_ + size <= kPinnedPoolLimit) {
        idle_.emplace(size, data);
        idleBytes_ += size;
        return;
      }
    }
    cudaFreeHost(data);
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> idle_;
  size_t idleBytes_ = 0;
};

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
  backend->pinnedPool_ = std::make_shared<PinnedPool>();
  return backend;
}

absl::StatusOr<DeviceBuffer> CudaBackend::allocate(size_t bytes) { return context_->allocate(bytes); }

std::shared_ptr<void> CudaBackend::allocateHostMemory(size_t bytes) {
  return pinnedPool_->get(bytes);
}

absl::Status CudaBackend::copyToDevice(void* deviceDst, const void* hostSrc, size_t bytes) {
  absl::StatusOr<ThreadState*> state = context_->thread();
  if (!state.ok()) return state.status();
  ThreadState& thread = **state;
  context_->invalidateMirrors(thread, deviceDst, bytes);
  if (bytes == 0) return absl::OkStatus();
  const char* action = "copying an input to the CUDA device";
  if (thread.recording || bytes > kStagingLimit) {
    return context_->copyHostToDevice(thread, deviceDst, hostSrc, bytes, action);
  }

  // Stage the input in pinned memory. The copies queued since the last
  // synchronization may still read the staging memory, so when it is full,
  // wait for them and start again at its beginning.
  size_t offset = (thread.stagingUsed + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment;
  if (offset + bytes > thread.stagingBytes) {
    if (absl::Status status = cudaStatus(cudaStreamSynchronize(thread.stream), action);
        !status.ok()) {
      return status;
    }
    thread.stagingUsed = 0;
    offset = 0;
    if (bytes > thread.stagingBytes) {
      const size_t size =
          std::min(kStagingLimit, std::max({bytes, 2 * thread.stagingBytes, kStagingMinimum}));
      absl::StatusOr<std::shared_ptr<void>> staging = context_->allocatePinned(size);
      if (!staging.ok()) {
        // Without pinned memory the copy still works, only slower.
        return context_->copyHostToDevice(thread, deviceDst, hostSrc, bytes, action);
      }
      thread.staging = std::move(*staging);
      thread.stagingBytes = size;
    }
  }
  auto* staged = static_cast<uint8_t*>(thread.staging.get()) + offset;
  std::memcpy(staged, hostSrc, bytes);
  thread.stagingUsed = offset + bytes;
  return cudaStatus(
      cudaMemcpyAsync(deviceDst, staged, bytes, cudaMemcpyHostToDevice, thread.stream), action);
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

absl::Status CudaBackend::beginRecording() {
  absl::StatusOr<ThreadState*> state = context_->thread();
  if (!state.ok()) return state.status();
  ThreadState& thread = **state;
  if (thread.recording) {
    return absl::FailedPreconditionError("this thread is already recording a CUDA graph");
  }
  if (absl::Status status = cudaStatus(
          cudaStreamBeginCapture(thread.stream, cudaStreamCaptureModeThreadLocal),
          "starting to record a CUDA graph");
      !status.ok()) {
    // The executor then runs the steps, whose launches must not report this.
    cudaGetLastError();
    return status;
  }
  thread.recording = true;
  thread.recordedHostCopies.clear();
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<RecordedRun>> CudaBackend::endRecording(
    const std::vector<TensorView>& outputs) {
  absl::StatusOr<ThreadState*> state = context_->thread();
  if (!state.ok()) return state.status();
  ThreadState& thread = **state;
  if (!thread.recording) {
    return absl::FailedPreconditionError("this thread is not recording a CUDA graph");
  }
  // An output computed on the host may exist only as a mirror; the graph
  // must write it, because a replay leaves no mirrors.
  absl::Status uploaded = absl::OkStatus();
  for (const TensorView& output : outputs) {
    if (output.data == nullptr) continue;
    uploaded = context_->uploadPending(thread, output.data);
    if (!uploaded.ok()) break;
  }

  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(thread.stream, &graph);
  thread.recording = false;
  auto run = std::make_shared<CudaRecordedRun>();
  run->hostCopies = std::move(thread.recordedHostCopies);
  thread.recordedHostCopies.clear();
  if (!uploaded.ok() || ended != cudaSuccess || graph == nullptr) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    // Clear the error a launch into the invalidated capture left behind.
    cudaGetLastError();
    if (!uploaded.ok()) return uploaded;
    if (ended != cudaSuccess) return cudaStatus(ended, "recording the run as a CUDA graph");
    return absl::InternalError("recording the run as a CUDA graph produced no graph");
  }
  const cudaError_t instantiated = cudaGraphInstantiate(&run->graph, graph, 0);
  cudaGraphDestroy(graph);
  if (instantiated != cudaSuccess) {
    run->graph = nullptr;
    cudaGetLastError();
    return cudaStatus(instantiated, "instantiating the recorded CUDA graph");
  }
  run->context = context_.get();
  run->thread = thread.id;
  return std::shared_ptr<RecordedRun>(std::move(run));
}

void CudaBackend::abandonRecording() {
  absl::StatusOr<ThreadState*> state = context_->thread();
  if (!state.ok() || !(*state)->recording) return;
  ThreadState& thread = **state;
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(thread.stream, &graph);
  if (graph != nullptr) cudaGraphDestroy(graph);
  cudaGetLastError();
  thread.recording = false;
  thread.recordedHostCopies.clear();
}

absl::StatusOr<bool> CudaBackend::replay(const RecordedRun& recorded) {
  const auto* run = dynamic_cast<const CudaRecordedRun*>(&recorded);
  if (run == nullptr || run->context != context_.get()) {
    return absl::InvalidArgumentError("the recorded run belongs to another backend");
  }
  absl::StatusOr<ThreadState*> state = context_->thread();
  if (!state.ok()) return state.status();
  ThreadState& thread = **state;
  if (run->thread != thread.id) return false;
  // The graph writes device memory without updating the mirrors, and the
  // run that replays it reads only the graph's outputs.
  thread.mirrors.clear();
  if (absl::Status status = cudaStatus(cudaGraphLaunch(run->graph, thread.stream),
                                       "launching the recorded CUDA graph");
      !status.ok()) {
    // Keep the failure out of the next run's launch checks.
    cudaGetLastError();
    return status;
  }
  return true;
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
