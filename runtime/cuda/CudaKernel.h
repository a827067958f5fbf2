// Base classes of the CUDA kernels.
//
// CudaKernel does what every CUDA kernel needs around inferOutputs and
// compute: it corrects the element type of converted weights in the input
// views, takes the calling thread's stream, and drops the host mirrors its
// outputs overwrite.
//
// OpKernel runs one ONNX node on one of three paths, chosen per call from
// the inputs (the same choice in inferOutputs and compute):
//   - host: every input has a host mirror (shape arithmetic such as Shape ->
//     Gather -> Concat): the CPU kernel computes on the mirrors, the result
//     is uploaded and mirrored in turn. No kernel launch, no synchronization.
//   - device: a CUDA implementation (runDevice). Output shapes come from the
//     node's CPU kernel, given the input shapes and the host values of the
//     inputs listed as shape inputs, so each shape rule is written once.
//   - fallback: no device implementation takes these inputs: the inputs are
//     copied to the host, the CPU kernel runs, and the outputs are copied
//     back. Correct but slow; CudaStats counts it.
//
// Output float types on the device path: float outputs are in the session's
// reduced type (fp16 or bf16) when some float input is, or when the kernel
// always computes in it (MatMul); graph outputs keep their declared float32.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "ir/Graph.h"
#include "runtime/Kernel.h"
#include "runtime/cuda/CudaContext.h"
#include "runtime/cuda/DeviceKernels.h"

namespace roformer::runtime::cuda {

// The ElementType code of a DataType.
inline int elementTypeOf(DataType type) { return static_cast<int>(type); }
inline bool isReducedFloat(DataType type) {
  return type == DataType::kFloat16 || type == DataType::kBfloat16;
}

class CudaKernel : public Kernel {
 public:
  CudaKernel(const ir::Node& node, std::shared_ptr<CudaContext> context);

  absl::Status inferOutputs(KernelContext& context) final;
  absl::Status compute(KernelContext& context) final;

  const std::string& name() const { return name_; }

 protected:
  // One inferOutputs or compute call.
  struct Call {
    KernelContext& kernel;  // input views with corrected types
    ThreadState& thread;
    // Per input: its host mirror, or null.
    std::vector<std::shared_ptr<const HostMirror>> mirrors;
    // Host copies made during this call, kept alive until it returns.
    std::vector<std::shared_ptr<const HostMirror>> copies;

    const TensorView& input(size_t i) const { return kernel.inputs[i]; }
    TensorView& output(size_t i) { return kernel.outputs[i]; }
    bool hasInput(size_t i) const {
      return i < kernel.inputs.size() && kernel.inputs[i].type != DataType::kUndefined;
    }
    cudaStream_t stream() const { return thread.stream; }
  };

  virtual absl::Status infer(Call& call) = 0;
  virtual absl::Status run(Call& call) = 0;

  // Host values of input i: its mirror, or a synchronous copy from the
  // device (fp16 and bf16 widened to float32 when `widen`).
  absl::StatusOr<TensorView> hostInput(Call& call, size_t i, bool widen = false);

  template <typename... Args>
  absl::Status invalidArgument(const Args&... parts) const {
    return absl::InvalidArgumentError(absl::StrCat(name_, ": ", parts...));
  }
  template <typename... Args>
  absl::Status unimplemented(const Args&... parts) const {
    return absl::UnimplementedError(absl::StrCat(name_, ": ", parts...));
  }
  // OK, or an error naming this node and `action`.
  absl::Status check(cudaError_t error, const char* action) const;

  const std::shared_ptr<CudaContext>& context() const { return context_; }
  bool isGraphOutput(size_t i) const { return i < graphOutputs_.size() && graphOutputs_[i]; }
  const std::string& opType() const { return opType_; }

 private:
  std::shared_ptr<CudaContext> context_;
  std::string name_;
  std::string opType_;
  std::vector<bool> graphOutputs_;
};

class OpKernel : public CudaKernel {
 public:
  struct Options {
    // Inputs whose values the CPU kernel's inferOutputs reads.
    std::vector<int> shapeInputs;
    // Whether the host path may run when every input is mirrored.
    bool hostEvaluable = true;
    // Whether the host path may run on input shapes alone (Shape, Size).
    bool shapeOnly = false;
    // Float outputs take the activation type even from float32 inputs.
    bool forceActivationType = false;
    bool canRunInPlace = false;
  };

  OpKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
           std::unique_ptr<Kernel> cpuKernel, Options options);

  bool canRunInPlace() const override { return options_.canRunInPlace; }

 protected:
  enum class Path { kHost, kDevice, kFallback };

  // Whether runDevice takes these inputs; fallback otherwise.
  virtual bool deviceSupports(Call& call) { return true; }
  virtual absl::Status runDevice(Call& call) = 0;
  // The float type of device-path outputs.
  DataType floatOutputType(const Call& call, size_t output) const;
  // The type of device-path output `output` when the CPU kernel infers
  // `cpuType`: floatOutputType for float32, `cpuType` otherwise. Kernels
  // whose outputs are float32 statistics override it.
  virtual DataType deviceOutputType(const Call& call, size_t output, DataType cpuType) const;

  absl::Status infer(Call& call) final;
  absl::Status run(Call& call) final;

 private:
  Path choosePath(Call& call);
  absl::Status inferOnDevicePath(Call& call);
  // Runs the CPU kernel on host views of the inputs and uploads its outputs.
  absl::Status runOnHost(Call& call, const std::vector<TensorView>& hostInputs, bool mirrorAll);
  absl::StatusOr<std::vector<TensorView>> hostInputs(Call& call, Path path);

  std::unique_ptr<Kernel> cpuKernel_;
  Options options_;
};

// An op with no device implementation: every call takes the host or the
// fallback path.
class HostOnlyKernel : public OpKernel {
 public:
  using OpKernel::OpKernel;

 protected:
  bool deviceSupports(Call& call) override { return false; }
  absl::Status runDevice(Call& call) override;
};

// Merged dims and strides of a broadcast from `inputs` to `output`;
// false when it needs more than kMaxDims dims.
bool makeElementwiseLoop(const Shape& output, const std::vector<Shape>& inputs,
                         ElementwiseArgs& args);

}  // namespace roformer::runtime::cuda
