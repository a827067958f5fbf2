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
  absl::StatusOr<DeviceBuffer> allocate(size_t bytes) override;
  absl::Status copyToDevice(void* deviceDst, const void* hostSrc, size_t bytes) override;
  absl::Status copyToHost(void* hostDst, const void* deviceSrc, size_t bytes) override;
  // Waits for the calling thread's kernels, then reports an error any of
  // them raised on the device (an id outside a table) as InvalidArgument.
  // TODO: replay planned runs as CUDA graphs, one per input shape. That needs
  // the executor to mark where a run starts and to skip compute() on replay.
  absl::Status synchronize() override;
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
};

// OK when a CUDA device can run the backend; FailedPrecondition with the
// reason otherwise. Tests skip on it.
absl::Status cudaDeviceStatus();

// Registers the backend as "cuda" (runtime/cuda/CudaRegistration.cpp calls
// it when the program starts).
void registerCudaBackend();

}  // namespace roformer::runtime::cuda
