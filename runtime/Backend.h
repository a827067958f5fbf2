// Backends: where a session's kernels run and where its buffers live.
//
// A backend supplies the kernel registry the planner picks kernels from,
// allocates device buffers (one arena per run, plus output buffers) and copies
// between host and device memory. The CPU backend is trivial: its device
// memory is host memory, so inputs, outputs and constant weights are used in
// place. A CUDA backend implements the same interface with device memory and
// real copies.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ir/Tensor.h"
#include "runtime/Kernel.h"

namespace roformer::runtime {

// Alignment in bytes of every buffer a backend allocates and of every arena
// offset; 64 bytes is one cache line and one AVX-512 register.
inline constexpr size_t kBufferAlignment = 64;

// Arithmetic precision requested for a session. Only kFp32 runs exactly the
// model's types; the reduced precisions are for GPU backends.
enum class Precision { kFp32, kFp16, kBf16 };

const char* precisionName(Precision precision);
// Parses "fp32", "fp16" or "bf16".
absl::StatusOr<Precision> parsePrecision(std::string_view name);

// The device work of one run, recorded by a backend for replay (a CUDA graph).
class RecordedRun {
 public:
  virtual ~RecordedRun() = default;
};

// A block of device memory, freed when the last copy of `owner` goes away.
struct DeviceBuffer {
  void* data = nullptr;
  size_t size = 0;
  std::shared_ptr<void> owner;
};

struct BackendOptions {
  // Threads for data-parallel kernel loops and matrix products; 0 uses every
  // hardware thread.
  int threads = 0;
  Precision precision = Precision::kFp32;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // The device name that selects this backend ("cpu", "cuda").
  virtual std::string name() const = 0;
  virtual const KernelRegistry& kernels() const = 0;

  // True when device memory is host memory, so the executor may hand host
  // buffers (caller inputs, constant weights, output tensors) to kernels
  // directly instead of copying them.
  virtual bool usesHostMemory() const = 0;

  // Allocates `bytes` of device memory aligned to kBufferAlignment. A request
  // of 0 bytes returns a valid, non-null buffer.
  virtual absl::StatusOr<DeviceBuffer> allocate(size_t bytes) = 0;
  virtual absl::Status copyToDevice(void* deviceDst, const void* hostSrc, size_t bytes) = 0;
  virtual absl::Status copyToHost(void* hostDst, const void* deviceSrc, size_t bytes) = 0;

  // Host memory for the output tensors a run returns, at least
  // kBufferAlignment aligned; null lets the executor use ordinary memory.
  // Device backends return memory their copies to the host are fastest into
  // (pinned memory for CUDA).
  virtual std::shared_ptr<void> allocateHostMemory(size_t bytes) { return nullptr; }

  // Makes a constant weight readable by kernels for the backend's lifetime.
  // Host backends return a view of the tensor's own bytes, which the
  // returned owner keeps alive; device backends upload a copy once.
  virtual absl::StatusOr<DeviceBuffer> placeConstant(std::shared_ptr<const ir::Tensor> tensor) = 0;

  // Makes a thread pool of the configured size for one run; null when the
  // backend runs its kernels on the calling thread.
  virtual std::unique_ptr<ThreadPool> createThreadPool() const = 0;

  // Waits until the work the kernels of the current thread queued is done.
  // The executor calls it after the last step of each run, before copying
  // outputs to the host. Backends whose kernels finish before compute()
  // returns, such as the CPU one, need not override it.
  virtual absl::Status synchronize() { return absl::OkStatus(); }

  // ---- Recorded runs ----
  // A backend that can record the device work a run queues and replay it
  // later saves the host work of every step (shape inference, launches).
  // The executor records a run only when every buffer address is fixed by a
  // memory plan, and replays it only for inputs of the same shapes copied to
  // the same addresses. While recording, kernels queue work but nothing
  // runs. A kernel that needs the host in the middle of the run (a device
  // value read back, a CPU fallback on device data) fails with an error
  // instead.

  // Whether this backend records runs at all.
  virtual bool canRecord() const { return false; }
  // Starts recording the work the calling thread queues.
  virtual absl::Status beginRecording() {
    return absl::UnimplementedError("this backend does not record runs");
  }
  // Ends the recording. `outputs` are the run's graph outputs: the recorded
  // work must leave their values in device memory. Returns the recorded run,
  // which has not run yet, or an error with the reason the run cannot be
  // recorded. Nothing recorded has run either way, so after an error the
  // executor runs the steps again without recording.
  virtual absl::StatusOr<std::shared_ptr<RecordedRun>> endRecording(
      const std::vector<TensorView>& outputs) {
    return absl::UnimplementedError("this backend does not record runs");
  }
  // Ends a recording after a step failed, dropping what was recorded.
  virtual void abandonRecording() {}
  // Queues a recorded run on the calling thread. False when the run cannot
  // be replayed from this thread (then run the steps instead).
  virtual absl::StatusOr<bool> replay(const RecordedRun& run) {
    return absl::UnimplementedError("this backend does not record runs");
  }
};

// The backend that runs the CPU kernels on host memory.
class CpuBackend : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options);

  std::string name() const override { return "cpu"; }
  const KernelRegistry& kernels() const override;
  bool usesHostMemory() const override { return true; }
  absl::StatusOr<DeviceBuffer> allocate(size_t bytes) override;
  absl::Status copyToDevice(void* deviceDst, const void* hostSrc, size_t bytes) override;
  absl::Status copyToHost(void* hostDst, const void* deviceSrc, size_t bytes) override;
  absl::StatusOr<DeviceBuffer> placeConstant(std::shared_ptr<const ir::Tensor> tensor) override;
  std::unique_ptr<ThreadPool> createThreadPool() const override;

  int threads() const { return threads_; }

 private:
  int threads_;
};

using BackendFactory =
    std::function<absl::StatusOr<std::shared_ptr<Backend>>(const BackendOptions& options)>;

// Registers a backend under a device name, replacing an earlier one of the
// same name. "cpu" is built in. Thread-safe.
void registerBackend(std::string device, BackendFactory factory);

// Creates the backend for `device`. Returns NotFound listing the known
// devices when no backend of that name is in this build.
absl::StatusOr<std::shared_ptr<Backend>> createBackend(std::string_view device,
                                                       const BackendOptions& options);

// Device names with a registered backend, sorted.
std::vector<std::string> availableBackends();

// Returns `threads`, or the number of hardware threads when it is 0 or less.
int resolveThreadCount(int threads);

}  // namespace roformer::runtime
