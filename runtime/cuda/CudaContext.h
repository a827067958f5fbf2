// State one CUDA backend shares with its kernels: the device, a stream and
// scratch per host thread, host mirrors of small tensors, the table of
// device-side error codes, converted constants and cuBLASLt.
//
// Streams. Every host thread that runs kernels gets its own non-blocking
// stream, so concurrent Session::run calls do not serialize on one stream,
// and a run's kernels, copies and frees are ordered on the stream of the
// thread that runs it. copyToHost synchronizes that stream.
//
// Host mirrors. Some kernels need the values of small integer tensors on
// the host to infer their output shapes (Reshape's target, Unsqueeze's
// axes), and the Shape, Gather, Concat, ... chains that compute such values
// from input shapes are cheaper on the host than as kernel launches. So a
// tensor that was computed on the host (or is a small constant) keeps a host
// copy, its mirror, keyed by its device address, and kernels that read such
// values look there before copying from the device. Every write to device
// memory through this backend (kernel outputs, copyToDevice) first drops
// the mirrors it overlaps, so a mirror is never stale. Mirrors of computed
// tensors are per thread, because the thread that writes a run's tensor is
// the one that reads it.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ir/Tensor.h"
#include "runtime/Backend.h"
#include "runtime/Tensor.h"
#include "runtime/cuda/CublasLt.h"
#include "runtime/cuda/GeluEpilogue.h"

namespace roformer::runtime::cuda {

// Tensors of at most this many elements keep a host mirror: constants and
// results computed on the host. Larger float constants are the weights that
// reduced precision converts.
inline constexpr int64_t kMirrorElementLimit = 4096;

// A host copy of a device tensor.
struct HostMirror {
  DataType type = DataType::kUndefined;
  Shape shape;
  std::shared_ptr<const void> owner;
  const void* data = nullptr;

  TensorView view() const { return TensorView{type, shape, const_cast<void*>(data)}; }
  size_t byteSize() const { return static_cast<size_t>(shapeElementCount(shape)) * ir::dataTypeSize(type); }
};

// Per host thread: the stream and what the kernels launched from it use.
struct ThreadState {
  // Distinct for every ThreadState of the process, so that a recorded run
  // can tell the thread it was recorded on.
  uint64_t id = 0;
  cudaStream_t stream = nullptr;
  // cuBLASLt workspace.
  void* workspace = nullptr;
  size_t workspaceBytes = 0;
  // Device-side error code of the current run (0: none), and a pinned word
  // to read it back.
  int* errorFlag = nullptr;
  int* errorHost = nullptr;
  // Mirrors of tensors this thread computed, by device address.
  // `pendingUpload` marks a tensor computed on the host whose device buffer
  // has not been written yet: it is uploaded when a device kernel or the
  // caller first reads it, so shape arithmetic that only host code reads
  // costs no copies.
  struct MirrorEntry {
    std::shared_ptr<const HostMirror> mirror;
    bool pendingUpload = false;
  };
  std::map<uintptr_t, MirrorEntry> mirrors;

  // True while the stream is captured into a CUDA graph. Then nothing runs:
  // host-to-device copies read pinned copies of their source, which belong
  // to the recorded run once the capture ends, and a kernel that needs a
  // device value on the host fails instead (see recordingError).
  bool recording = false;
  std::vector<std::shared_ptr<void>> recordedHostCopies;

  // Pinned memory that copyToDevice stages inputs in, and how much of it the
  // copies queued since the stream was last synchronized use.
  std::shared_ptr<void> staging;
  size_t stagingBytes = 0;
  size_t stagingUsed = 0;
};

struct CudaStats {
  // Steps computed on the host from mirrored inputs (shape arithmetic).
  std::atomic<uint64_t> hostSteps{0};
  // Steps that had no device kernel for their inputs and ran the CPU kernel
  // on copies (slow: each one synchronizes the stream).
  std::atomic<uint64_t> fallbackSteps{0};
  // Shape-carrying inputs copied from the device because no mirror had them
  // (each one synchronizes the stream).
  std::atomic<uint64_t> shapeReads{0};
};

class CudaContext : public std::enable_shared_from_this<CudaContext> {
 public:
  // Selects device 0 (CUDA_VISIBLE_DEVICES picks which one that is) and loads
  // cuBLASLt. FailedPrecondition when no device can be used.
  static absl::StatusOr<std::shared_ptr<CudaContext>> create(const BackendOptions& options);
  ~CudaContext();

  Precision precision() const { return precision_; }
  // The float type reduced-precision kernels compute in: kFloat, kFloat16
  // or kBfloat16.
  DataType activationType() const;
  int device() const { return device_; }
  const std::string& deviceName() const { return deviceName_; }
  int computeCapability() const { return computeCapability_; }
  // False when ROFORMER_CUDA_ATTENTION=simt selects the SIMT attention kernel.
  bool tensorCoreAttention() const { return tensorCoreAttention_; }
  // The GELU form of cuBLASLt's GELU and bias epilogue, probed when the
  // first context of the process is created (GeluEpilogue.h); kUnknown with
  // ROFORMER_CUDA_GELU_EPILOGUE=0. The detail gives the reason when it is
  // unknown.
  GeluForm geluEpilogueForm() const { return geluEpilogueForm_; }
  const std::string& geluEpilogueDetail() const { return geluEpilogueDetail_; }

  // The calling thread's state, created on first use.
  absl::StatusOr<ThreadState*> thread();

  // Stream-ordered device memory on the calling thread's stream; the buffer
  // is freed on the stream of the thread that drops the last reference.
  absl::StatusOr<DeviceBuffer> allocate(size_t bytes);
  // Device memory for the backend's lifetime (weights), synchronous.
  absl::StatusOr<DeviceBuffer> allocatePermanent(size_t bytes);

  // ---- Constants ----
  // Records that `data` contains `type` elements although the session's
  // view has another type (a weight converted to fp16 or bf16).
  void recordConvertedConstant(const void* data, DataType type);
  void forgetConvertedConstant(const void* data);
  // The stored type of a converted constant, or kUndefined.
  DataType convertedConstantType(const void* data) const;
  void recordConstantMirror(const void* data, std::shared_ptr<const HostMirror> mirror);
  void forgetConstantMirror(const void* data);

  // ---- Mirrors ----
  // The mirror of `view`, when one with its type and shape exists.
  std::shared_ptr<const HostMirror> findMirror(ThreadState& state, const TensorView& view) const;
  void recordMirror(ThreadState& state, const TensorView& view,
                    std::shared_ptr<const HostMirror> mirror, bool pendingUpload);
  // Writes a pending mirror at `data` to the device (an asynchronous copy on
  // the thread's stream); a no-op for anything else.
  absl::Status uploadPending(ThreadState& state, const void* data);
  // True when some pending mirror overlaps [data, data + bytes).
  bool hasPendingUpload(const ThreadState& state, const void* data, size_t bytes) const;
  // Copies a pending mirror at `data` of exactly `bytes` bytes to `host`;
  // false when there is none.
  bool copyPendingToHost(const ThreadState& state, const void* data, void* host, size_t bytes) const;
  // Drops the calling thread's mirrors that overlap [data, data + bytes).
  void invalidateMirrors(ThreadState& state, const void* data, size_t bytes);

  // ---- Host memory ----
  // Page-locked host memory, freed with cudaFreeHost when the last reference
  // goes. Allowed while the thread records.
  absl::StatusOr<std::shared_ptr<void>> allocatePinned(size_t bytes);
  // Queues a host-to-device copy on the thread's stream. While recording,
  // the bytes are first copied to pinned memory that the recorded run keeps,
  // because the graph reads its source every time it runs.
  absl::Status copyHostToDevice(ThreadState& state, void* dst, const void* src, size_t bytes,
                                const std::string& action);

  // ---- Device-side errors ----
  // Registers what a kernel reports; returns its nonzero code.
  int registerErrorSource(std::string message);
  // Reads and clears the calling thread's error flag after synchronizing its
  // stream; returns the registered message as InvalidArgument.
  absl::Status synchronizeAndCheck(ThreadState& state);

  // ---- cuBLASLt ----
  const CublasLtApi& lt() const { return *lt_; }
  cublasLtHandle_t ltHandle() const { return ltHandle_; }

  CudaStats& stats() { return stats_; }
  // Op types that ran through the CPU fallback, for reports.
  void noteFallback(const std::string& opType);
  std::vector<std::string> fallbackOps() const;

 private:
  CudaContext() = default;
  absl::StatusOr<std::unique_ptr<ThreadState>> createThreadState();

  Precision precision_ = Precision::kFp32;
  int device_ = 0;
  std::string deviceName_;
  int computeCapability_ = 0;
  bool memoryPools_ = false;
  bool tensorCoreAttention_ = true;
  GeluForm geluEpilogueForm_ = GeluForm::kUnknown;
  std::string geluEpilogueDetail_;
  uint64_t generation_ = 0;
  const CublasLtApi* lt_ = nullptr;
  cublasLtHandle_t ltHandle_ = nullptr;

  mutable std::mutex mutex_;
  std::unordered_map<std::thread::id, std::unique_ptr<ThreadState>> threads_;
  std::unordered_map<const void*, DataType> convertedConstants_;
  std::unordered_map<const void*, std::shared_ptr<const HostMirror>> constantMirrors_;
  std::vector<std::string> errorMessages_;
  std::set<std::string> fallbackOps_;
  CudaStats stats_;
};

// The float type kernels store activations in at `precision`: kFloat,
// kFloat16 or kBfloat16.
DataType activationTypeOf(Precision precision);

// The error of a kernel that cannot run while its stream is captured into
// a CUDA graph, because it needs the host in the middle of the run. The
// executor then runs the steps again without recording.
absl::Status recordingError(const std::string& operation);

// "cudaErrorNoDevice: no CUDA-capable device is detected" for messages.
std::string cudaErrorText(cudaError_t error);
// OK, or Internal "<action> failed: <cuda error>" (ResourceExhausted for
// out-of-memory).
absl::Status cudaStatus(cudaError_t error, const std::string& action);

// The host-side fp16 and bf16 conversions live in ir/DataType.h.
using ir::bfloat16BitsToFloat;
using ir::floatToBfloat16Bits;
using ir::floatToHalfBits;
using ir::halfBitsToFloat;

}  // namespace roformer::runtime::cuda
