// The CUDA backend: runs a session's kernels on an NVIDIA GPU.
//
// Selected with SessionOptions::device = "cuda" (roformer-run --device cuda)
// in builds that link runtime/cuda, which registers it under that name.
// Weights are uploaded once when the session is created. With fp16 or bf16
// precision, float32 weights of more than kMirrorElementLimit elements are
// converted on upload, except that a weight with finite values beyond fp16's
// range stays float32. Kernels compute in float32 (accumulators, softmax,
// normalization statistics) and store activations in the session's
// precision, and graph outputs stay float32. docs/gpu.md describes the design.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/Backend.h"

namespace roformer::runtime::cuda {

class CudaContext;
class PinnedPool;

// Counters of one backend, for tests and reports.
struct CudaBackendStats {
  uint64_t hostSteps = 0;
  uint64_t fallbackSteps = 0;
  uint64_t shapeReads = 0;
  // Op types that ran through the CPU fallback at least once.
  std::vector<std::string> fallbackOps;
};

class CudaBackend : public Backend {
 public:
  // FailedPrecondition when no CUDA device or driver is usable, with the
  // CUDA error; a build without a GPU reports this for every session.
  static absl::StatusOr<std::shared_ptr<CudaBackend>> create(const BackendOptions& options);
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  const KernelRegistry& kernels() const override { return *registry_; }
  bool usesHostMemory() const override { return false; }
  // Inputs go through pinned staging memory, so the device reads them by DMA
  // and the caller's buffer may be reused as soon as this returns.
  // Outputs are copied into the pinned memory allocateHostMemory returns.
  absl::StatusOr<DeviceBuffer> allocate(size_t bytes) override;
  absl::Status copyToDevice(void* deviceDst, const void* hostSrc, size_t bytes) override;
  absl::Status copyToHost(void* hostDst, const void* deviceSrc, size_t bytes) override;
  // Pinned blocks from a pool: a block comes back when the caller drops the
  // tensor, and a later request of the same size reuses it.
  std::shared_ptr<void> allocateHostMemory(size_t bytes) override;
  // Waits for the calling thread's kernels, then reports an error any of
  // them raised on the device (an id outside a table) as InvalidArgument.
  absl::Status synchronize() override;

  // Recorded runs are CUDA graphs captured from the calling thread's
  // stream. A graph replays only on the thread that recorded it, because
  // its kernels use that thread's cuBLASLt workspace and error flag.
  bool canRecord() const override { return true; }
  absl::Status beginRecording() override;
  absl::StatusOr<std::shared_ptr<RecordedRun>> endRecording(
      const std::vector<TensorView>& outputs) override;
  void abandonRecording() override;
  absl::StatusOr<bool> replay(const RecordedRun& run) override;
  absl::StatusOr<DeviceBuffer> placeConstant(std::shared_ptr<const ir::Tensor> tensor) override;
  // Kernels run on the calling thread's CUDA stream; no host thread pool.
  std::unique_ptr<ThreadPool> createThreadPool() const override { return nullptr; }

  CudaBackendStats stats() const;
  // "NVIDIA H200 (compute capability 9.0)".
  std::string deviceDescription() const;

 private:
  explicit CudaBackend(std::shared_ptr<CudaContext> context);

  std::shared_ptr<CudaContext> context_;
  std::unique_ptr<KernelRegistry> registry_;
  std::shared_ptr<PinnedPool> pinnedPool_;
};

// OK when a CUDA device can run the backend; FailedPrecondition with the
// reason otherwise. Tests skip on it.
absl::Status cudaDeviceStatus();

// Registers the backend as "cuda" (runtime/cuda/CudaRegistration.cpp calls
// it when the program starts).
void registerCudaBackend();

}  // namespace roformer::runtime::cuda
