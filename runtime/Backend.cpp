#include "runtime/Backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/cpu/CpuKernels.h"

namespace roformer::runtime {

const char* precisionName(Precision precision) {
  switch (precision) {
    case Precision::kFp32:
      return "fp32";
    case Precision::kFp16:
      return "fp16";
    case Precision::kBf16:
      return "bf16";
  }
  return "unknown";
}

absl::StatusOr<Precision> parsePrecision(std::string_view name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "fp16") return Precision::kFp16;
  if (name == "bf16") return Precision::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown precision '", std::string(name), "'; expected fp32, fp16 or bf16"));
}

int resolveThreadCount(int threads) {
  if (threads > 0) return threads;
  unsigned hardware = std::thread::hardware_concurrency();
  return hardware == 0 ? 1 : static_cast<int>(hardware);
}

CpuBackend::CpuBackend(const BackendOptions& options)
    : threads_(resolveThreadCount(options.threads)) {
  // The kernels spread matrix products over the session's ThreadPool, so
  // OpenBLAS runs each call on the calling thread (see runtime/cpu/Blas.h).
  // NOTE: the BLAS thread count is process-wide, so this applies to every
  // OpenBLAS call in the process.
  setBlasThreads(1);
}

const KernelRegistry& CpuBackend::kernels() const { return cpuKernelRegistry(); }

absl::StatusOr<DeviceBuffer> CpuBackend::allocate(size_t bytes) {
  // aligned_alloc needs a size that is a multiple of the alignment.
  size_t rounded = std::max<size_t>(
      kBufferAlignment, (bytes + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment);
  void* data = std::aligned_alloc(kBufferAlignment, rounded);
  if (data == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("failed to allocate ", bytes, " bytes of host memory"));
  }
  return DeviceBuffer{data, bytes, std::shared_ptr<void>(data, [](void* p) { std::free(p); })};
}

absl::Status CpuBackend::copyToDevice(void* deviceDst, const void* hostSrc, size_t bytes) {
  if (bytes > 0) std::memcpy(deviceDst, hostSrc, bytes);
  return absl::OkStatus();
}

absl::Status CpuBackend::copyToHost(void* hostDst, const void* deviceSrc, size_t bytes) {
  if (bytes > 0) std::memcpy(hostDst, deviceSrc, bytes);
  return absl::OkStatus();
}

absl::StatusOr<DeviceBuffer> CpuBackend::placeConstant(std::shared_ptr<const ir::Tensor> tensor) {
  // Kernels read the weight's bytes where the model keeps them (an owned
  // string or a read-only file map). The planner runs kernels in place only
  // over arena buffers, so the const is cast away only to fit TensorView.
  void* data = const_cast<uint8_t*>(tensor->rawData());
  size_t size = tensor->byteSize();
  return DeviceBuffer{data, size, std::shared_ptr<void>(tensor, data)};
}

std::unique_ptr<ThreadPool> CpuBackend::createThreadPool() const {
  if (threads_ <= 1) return nullptr;
  return std::make_unique<ThreadPool>(threads_);
}

namespace {

struct BackendTable {
  std::mutex mutex;
  std::map<std::string, BackendFactory, std::less<>> factories;
};

BackendTable& backendTable() {
  static BackendTable* table = [] {
    auto* created = new BackendTable;
    created->factories["cpu"] =
        [](const BackendOptions& options) -> absl::StatusOr<std::shared_ptr<Backend>> {
      if (options.precision != Precision::kFp32) {
        return absl::InvalidArgumentError(
            absl::StrCat("precision ", precisionName(options.precision),
                         " is not supported on the cpu device; use fp32, or --device cuda"));
      }
      return std::make_shared<CpuBackend>(options);
    };
    return created;
  }();
  return *table;
}

}  // namespace

void registerBackend(std::string device, BackendFactory factory) {
  BackendTable& table = backendTable();
  std::lock_guard<std::mutex> lock(table.mutex);
  table.factories[std::move(device)] = std::move(factory);
}

std::vector<std::string> availableBackends() {
  BackendTable& table = backendTable();
  std::lock_guard<std::mutex> lock(table.mutex);
  std::vector<std::string> names;
  for (const auto& [name, factory] : table.factories) names.push_back(name);
  return names;
}

absl::StatusOr<std::shared_ptr<Backend>> createBackend(std::string_view device,
                                                       const BackendOptions& options) {
  BackendFactory factory;
  {
    BackendTable& table = backendTable();
    std::lock_guard<std::mutex> lock(table.mutex);
    auto it = table.factories.find(device);
    if (it != table.factories.end()) factory = it->second;
  }
  if (!factory) {
    return absl::NotFoundError(absl::StrCat("no backend for device '", std::string(device),
                                            "' in this build; available: ",
                                            absl::StrJoin(availableBackends(), ", ")));
  }
  return factory(options);
}

}  // namespace roformer::runtime
