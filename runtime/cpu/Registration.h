// Registration functions of the CPU kernel files; CpuKernels.cpp calls each
// once to build the registry.
#pragma once

#include "runtime/Kernel.h"

namespace roformer::runtime::cpu {

void registerElementwiseKernels(KernelRegistry& registry);
void registerShapeKernels(KernelRegistry& registry);
void registerDataMovementKernels(KernelRegistry& registry);
void registerReduceKernels(KernelRegistry& registry);
void registerNormalizationKernels(KernelRegistry& registry);
void registerMatMulKernels(KernelRegistry& registry);
void registerContribKernels(KernelRegistry& registry);
void registerAttentionKernels(KernelRegistry& registry);

}  // namespace roformer::runtime::cpu
