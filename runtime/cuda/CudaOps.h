// The table of ops with a device implementation, and the registry that
// pairs each of them with the CPU kernel it infers shapes with.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "ir/Graph.h"
#include "runtime/Kernel.h"
#include "runtime/cuda/CudaContext.h"

namespace roformer::runtime::cuda {

// Builds the CUDA kernel of `node` around its CPU kernel. `opset` is the
// first opset of the CPU kernel's range (versions inside one range share
// semantics).
using DeviceBuilder = std::function<absl::StatusOr<std::unique_ptr<Kernel>>(
    const ir::Node& node, std::shared_ptr<CudaContext> context, std::unique_ptr<Kernel> cpuKernel,
    int opset)>;

// Keyed by (domain, op type).
using DeviceOpTable = std::map<std::pair<std::string, std::string>, DeviceBuilder>;

// Elementwise, data movement, shape, reduction and Softmax ops.
void addBasicOps(DeviceOpTable& table);
// MatMul, the normalizations, GELU, RotaryEmbedding and MultiHeadAttention.
void addModelOps(DeviceOpTable& table);

// A registry with a kernel for every op of the CPU registry, at the same
// opset ranges: the device implementation where one exists, the host and
// fallback paths otherwise.
std::unique_ptr<KernelRegistry> buildCudaRegistry(std::shared_ptr<CudaContext> context);

}  // namespace roformer::runtime::cuda
