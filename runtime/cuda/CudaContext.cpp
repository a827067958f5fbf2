#include "runtime/cuda/CudaContext.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace roformer::runtime::cuda {
namespace {

// cuBLASLt workspace per thread. Its heuristics offer faster kernels for
// large products when given workspace. NOTE: 32 MiB is a guess, not tuned.
constexpr size_t kWorkspaceBytes = 32u << 20;

std::atomic<uint64_t> nextGeneration{1};
std::atomic<uint64_t> nextThreadStateId{1};

}  // namespace

std::string cudaErrorText(cudaError_t error) {
  return absl::StrCat(cudaGetErrorName(error), ": ", cudaGetErrorString(error));
}

absl::Status recordingError(const std::string& operation) {
  return absl::FailedPreconditionError(
      absl::StrCat(operation, ", which cannot be recorded in a CUDA graph"));
}

absl::Status cudaStatus(cudaError_t error, const std::string& action) {
  if (error == cudaSuccess) return absl::OkStatus();
  std::string message = absl::StrCat(action, " failed: ", cudaErrorText(error));
  if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

absl::StatusOr<std::shared_ptr<CudaContext>> CudaContext::create(const BackendOptions& options) {
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess || count == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no CUDA device is available (",
        error != cudaSuccess ? cudaErrorText(error) : std::string("the driver reports 0 devices"),
        "); run on a machine with an NVIDIA GPU and driver, or use --device cpu"));
  }

  auto context = std::shared_ptr<CudaContext>(new CudaContext);
  context->precision_ = options.precision;
  context->generation_ = nextGeneration.fetch_add(1);
  if (absl::Status status = cudaStatus(cudaSetDevice(context->device_), "cudaSetDevice(0)");
      !status.ok()) {
    return status;
  }
  cudaDeviceProp properties;
  if (absl::Status status = cudaStatus(cudaGetDeviceProperties(&properties, context->device_),
                                       "cudaGetDeviceProperties");
      !status.ok()) {
    return status;
  }
  context->deviceName_ = properties.name;
  context->computeCapability_ = properties.major * 10 + properties.minor;
  // The attention kernel uses mma.sync with bf16 operands, which needs
  // sm_80. The build carries machine code for sm_80 and sm_90 and PTX for
  // sm_90.
  if (context->computeCapability_ < 80) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA device '", context->deviceName_, "' has compute capability ", properties.major, ".",
        properties.minor, "; the CUDA backend needs 8.0 (Ampere) or later"));
  }

  int pools = 0;
  cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, context->device_);
  context->memoryPools_ = pools != 0;
  if (context->memoryPools_) {
    // Keep freed memory in the pool across synchronizations instead of
    // returning it to the driver, so repeated runs do not reallocate.
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, context->device_) == cudaSuccess) {
      uint64_t threshold = UINT64_MAX;
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold);
    }
  }

  const char* attention = std::getenv("ROFORMER_CUDA_ATTENTION");
  context->tensorCoreAttention_ = attention == nullptr || std::string(attention) != "simt";

  absl::StatusOr<const CublasLtApi*> lt = loadCublasLt();
  if (!lt.ok()) return lt.status();
  context->lt_ = *lt;
  cublasStatus_t status = context->lt_->create(&context->ltHandle_);
  if (status != CUBLAS_STATUS_SUCCESS) {
    return absl::InternalError(
        absl::StrCat("cublasLtCreate failed: ", cublasStatusName(status)));
  }

  const char* epilogue = std::getenv("ROFORMER_CUDA_GELU_EPILOGUE");
  if (epilogue != nullptr && std::string(epilogue) == "0") {
    context->geluEpilogueDetail_ = "ROFORMER_CUDA_GELU_EPILOGUE=0";
  } else {
    // The answer depends only on the loaded cuBLASLt and device 0, so the
    // first context of the process probes for all.
    static std::once_flag probed;
    static GeluForm form = GeluForm::kUnknown;
    static std::string detail;
    std::call_once(probed, [&context] {
      form = probeGeluEpilogue(*context->lt_, context->ltHandle_, /*stream=*/nullptr, detail);
    });
    context->geluEpilogueForm_ = form;
    context->geluEpilogueDetail_ = detail;
  }
  return context;
}

CudaContext::~CudaContext() {
  for (auto& [id, state] : threads_) {
    if (state->stream != nullptr) cudaStreamSynchronize(state->stream);
    if (state->workspace != nullptr) cudaFree(state->workspace);
    if (state->errorFlag != nullptr) cudaFree(state->errorFlag);
    if (state->errorHost != nullptr) cudaFreeHost(state->errorHost);
    if (state->stream != nullptr) cudaStreamDestroy(state->stream);
  }
  if (ltHandle_ != nullptr) lt_->destroy(ltHandle_);
}

DataType activationTypeOf(Precision precision) {
  switch (precision) {
    case Precision::kFp16:
      return DataType::kFloat16;
    case Precision::kBf16:
      return DataType::kBfloat16;
    case Precision::kFp32:
      break;
  }
  return DataType::kFloat;
}

DataType CudaContext::activationType() const { return activationTypeOf(precision_); }

absl::StatusOr<std::unique_ptr<ThreadState>> CudaContext::createThreadState() {
  auto state = std::make_unique<ThreadState>();
  state->id = nextThreadStateId.fetch_add(1);
  if (absl::Status status = cudaStatus(cudaSetDevice(device_), "cudaSetDevice"); !status.ok()) {
    return status;
  }
  if (absl::Status status = cudaStatus(
          cudaStreamCreateWithFlags(&state->stream, cudaStreamNonBlocking), "cudaStreamCreate");
      !status.ok()) {
    return status;
  }
  if (absl::Status status = cudaStatus(cudaMalloc(&state->workspace, kWorkspaceBytes),
                                       "allocating the cuBLASLt workspace");
      !status.ok()) {
    return status;
  }
  state->workspaceBytes = kWorkspaceBytes;
  if (absl::Status status = cudaStatus(cudaMalloc(&state->errorFlag, sizeof(int)),
                                       "allocating the error flag");
      !status.ok()) {
    return status;
  }
  if (absl::Status status =
          cudaStatus(cudaMemset(state->errorFlag, 0, sizeof(int)), "clearing the error flag");
      !status.ok()) {
    return status;
  }
  if (absl::Status status = cudaStatus(cudaMallocHost(&state->errorHost, sizeof(int)),
                                       "allocating pinned host memory");
      !status.ok()) {
    return status;
  }
  return state;
}

absl::StatusOr<ThreadState*> CudaContext::thread() {
  struct Cached {
    uint64_t generation = 0;
    ThreadState* state = nullptr;
  };
  thread_local Cached cached;
  if (cached.generation == generation_ && cached.state != nullptr) return cached.state;

  std::lock_guard<std::mutex> lock(mutex_);
  std::unique_ptr<ThreadState>& slot = threads_[std::this_thread::get_id()];
  if (!slot) {
    absl::StatusOr<std::unique_ptr<ThreadState>> created = createThreadState();
    if (!created.ok()) {
      threads_.erase(std::this_thread::get_id());
      return created.status();
    }
    slot = std::move(*created);
  }
  cached = Cached{generation_, slot.get()};
  return slot.get();
}

absl::StatusOr<DeviceBuffer> CudaContext::allocate(size_t bytes) {
  absl::StatusOr<ThreadState*> state = thread();
  if (!state.ok()) return state.status();
  if ((*state)->recording && !memoryPools_) {
    // cudaMalloc is not captured; cudaMallocAsync becomes a graph node.
    return recordingError("allocating device memory without stream-ordered memory pools");
  }
  // cudaMallocAsync returns 256-byte aligned memory, more than
  // kBufferAlignment; a request of 0 bytes still gets a distinct pointer.
  const size_t size = bytes == 0 ? kBufferAlignment : bytes;
  void* data = nullptr;
  cudaError_t error = memoryPools_ ? cudaMallocAsync(&data, size, (*state)->stream)
                                   : cudaMalloc(&data, size);
  if (error != cudaSuccess) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "failed to allocate ", bytes, " bytes on CUDA device '", deviceName_, "': ",
        cudaErrorText(error)));
  }
  std::shared_ptr<CudaContext> self = shared_from_this();
  const bool pools = memoryPools_;
  auto release = [self, pools](void* pointer) {
    if (pools) {
      absl::StatusOr<ThreadState*> current = self->thread();
      if (current.ok()) {
        cudaFreeAsync(pointer, (*current)->stream);
        return;
      }
    }
    cudaFree(pointer);
  };
  return DeviceBuffer{data, bytes, std::shared_ptr<void>(data, release)};
}

absl::StatusOr<DeviceBuffer> CudaContext::allocatePermanent(size_t bytes) {
  void* data = nullptr;
  cudaError_t error = cudaMalloc(&data, bytes == 0 ? kBufferAlignment : bytes);
  if (error != cudaSuccess) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "failed to allocate ", bytes, " bytes for weights on CUDA device '", deviceName_,
        "': ", cudaErrorText(error)));
  }
  std::shared_ptr<CudaContext> self = shared_from_this();
  auto release = [self](void* pointer) {
    self->forgetConvertedConstant(pointer);
    self->forgetConstantMirror(pointer);
    cudaFree(pointer);
  };
  return DeviceBuffer{data, bytes, std::shared_ptr<void>(data, release)};
}

absl::StatusOr<std::shared_ptr<void>> CudaContext::allocatePinned(size_t bytes) {
  // Stream capture may reject cudaMallocHost on the capturing thread as a
  // potentially unsafe call. It queues nothing, so relax the capture mode
  // for this call.
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  cudaThreadExchangeStreamCaptureMode(&mode);
  void* data = nullptr;
  cudaError_t error = cudaMallocHost(&data, std::max<size_t>(bytes, 1));
  cudaThreadExchangeStreamCaptureMode(&mode);
  if (error != cudaSuccess) {
    // Callers may go on without pinned memory, and every kernel launch
    // reports cudaGetLastError, so clear the failure here.
    cudaGetLastError();
    return absl::ResourceExhaustedError(absl::StrCat("failed to allocate ", bytes,
                                                     " bytes of pinned host memory: ",
                                                     cudaErrorText(error)));
  }
  return std::shared_ptr<void>(data, [](void* pointer) { cudaFreeHost(pointer); });
}

absl::Status CudaContext::copyHostToDevice(ThreadState& state, void* dst, const void* src,
                                           size_t bytes, const std::string& action) {
  if (bytes == 0) return absl::OkStatus();
  if (state.recording) {
    absl::StatusOr<std::shared_ptr<void>> copy = allocatePinned(bytes);
    if (!copy.ok()) return copy.status();
    std::memcpy(copy->get(), src, bytes);
    state.recordedHostCopies.push_back(*copy);
    src = copy->get();
  }
  // From pageable memory, cudaMemcpyAsync returns once the bytes are staged,
  // so the source may go away afterwards.
  return cudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, state.stream), action);
}

void CudaContext::recordConvertedConstant(const void* data, DataType type) {
  std::lock_guard<std::mutex> lock(mutex_);
  convertedConstants_[data] = type;
}

void CudaContext::forgetConvertedConstant(const void* data) {
  std::lock_guard<std::mutex> lock(mutex_);
  convertedConstants_.erase(data);
}

DataType CudaContext::convertedConstantType(const void* data) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = convertedConstants_.find(data);
  return it == convertedConstants_.end() ? DataType::kUndefined : it->second;
}

void CudaContext::recordConstantMirror(const void* data, std::shared_ptr<const HostMirror> mirror) {
  std::lock_guard<std::mutex> lock(mutex_);
  constantMirrors_[data] = std::move(mirror);
}

void CudaContext::forgetConstantMirror(const void* data) {
  std::lock_guard<std::mutex> lock(mutex_);
  constantMirrors_.erase(data);
}

std::shared_ptr<const HostMirror> CudaContext::findMirror(ThreadState& state,
                                                          const TensorView& view) const {
  if (view.data == nullptr) return nullptr;
  std::shared_ptr<const HostMirror> mirror;
  auto it = state.mirrors.find(reinterpret_cast<uintptr_t>(view.data));
  if (it != state.mirrors.end()) {
    mirror = it->second.mirror;
  } else {
    std::lock_guard<std::mutex> lock(mutex_);
    auto constant = constantMirrors_.find(view.data);
    if (constant != constantMirrors_.end()) mirror = constant->second;
  }
  if (mirror == nullptr || mirror->type != view.type || mirror->shape != view.shape) return nullptr;
  return mirror;
}

void CudaContext::recordMirror(ThreadState& state, const TensorView& view,
                               std::shared_ptr<const HostMirror> mirror, bool pendingUpload) {
  if (view.data == nullptr || mirror == nullptr) return;
  state.mirrors[reinterpret_cast<uintptr_t>(view.data)] =
      ThreadState::MirrorEntry{std::move(mirror), pendingUpload};
}

absl::Status CudaContext::uploadPending(ThreadState& state, const void* data) {
  auto it = state.mirrors.find(reinterpret_cast<uintptr_t>(data));
  if (it == state.mirrors.end() || !it->second.pendingUpload) return absl::OkStatus();
  const HostMirror& mirror = *it->second.mirror;
  it->second.pendingUpload = false;
  return copyHostToDevice(state, const_cast<void*>(data), mirror.data, mirror.byteSize(),
                          "copying a host-computed tensor to the device");
}

bool CudaContext::hasPendingUpload(const ThreadState& state, const void* data, size_t bytes) const {
  if (state.mirrors.empty() || data == nullptr) return false;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t end = begin + std::max<size_t>(bytes, 1);
  for (auto it = state.mirrors.begin(); it != state.mirrors.end() && it->first < end; ++it) {
    const uintptr_t entryEnd = it->first + std::max<size_t>(it->second.mirror->byteSize(), 1);
    if (it->second.pendingUpload && entryEnd > begin) return true;
  }
  return false;
}

bool CudaContext::copyPendingToHost(const ThreadState& state, const void* data, void* host,
                                    size_t bytes) const {
  auto it = state.mirrors.find(reinterpret_cast<uintptr_t>(data));
  if (it == state.mirrors.end() || !it->second.pendingUpload) return false;
  if (it->second.mirror->byteSize() != bytes) return false;
  if (bytes > 0) std::memcpy(host, it->second.mirror->data, bytes);
  return true;
}

void CudaContext::invalidateMirrors(ThreadState& state, const void* data, size_t bytes) {
  if (state.mirrors.empty() || data == nullptr) return;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t end = begin + (bytes == 0 ? 1 : bytes);
  auto it = state.mirrors.lower_bound(begin);
  // The entry before `begin` may extend into the range.
  if (it != state.mirrors.begin()) {
    auto previous = std::prev(it);
    if (previous->first + std::max<size_t>(previous->second.mirror->byteSize(), 1) > begin) {
      it = previous;
    }
  }
  while (it != state.mirrors.end() && it->first < end) it = state.mirrors.erase(it);
}

int CudaContext::registerErrorSource(std::string message) {
  std::lock_guard<std::mutex> lock(mutex_);
  errorMessages_.push_back(std::move(message));
  return static_cast<int>(errorMessages_.size());
}

absl::Status CudaContext::synchronizeAndCheck(ThreadState& state) {
  if (absl::Status status = cudaStatus(
          cudaMemcpyAsync(state.errorHost, state.errorFlag, sizeof(int), cudaMemcpyDeviceToHost,
                          state.stream),
          "reading the device error flag");
      !status.ok()) {
    return status;
  }
  if (absl::Status status = cudaStatus(cudaStreamSynchronize(state.stream), "running the kernels");
      !status.ok()) {
    return status;
  }
  // The copies that read the staging memory are done.
  state.stagingUsed = 0;
  const int code = *state.errorHost;
  if (code == 0) return absl::OkStatus();
  *state.errorHost = 0;
  if (absl::Status status = cudaStatus(cudaMemsetAsync(state.errorFlag, 0, sizeof(int), state.stream),
                                       "clearing the device error flag");
      !status.ok()) {
    return status;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (code < 1 || code > static_cast<int>(errorMessages_.size())) {
    return absl::InternalError(absl::StrCat("a CUDA kernel reported unknown error code ", code));
  }
  return absl::InvalidArgumentError(errorMessages_[code - 1]);
}

void CudaContext::noteFallback(const std::string& opType) {
  std::lock_guard<std::mutex> lock(mutex_);
  fallbackOps_.insert(opType);
}

std::vector<std::string> CudaContext::fallbackOps() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::vector<std::string>(fallbackOps_.begin(), fallbackOps_.end());
}

}  // namespace roformer::runtime::cuda
