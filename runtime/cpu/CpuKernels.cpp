#include "runtime/cpu/CpuKernels.h"

#include <cblas.h>

#include "runtime/cpu/Registration.h"

namespace roformer::runtime {

const KernelRegistry& cpuKernelRegistry() {
  static const KernelRegistry* registry = [] {
    auto* result = new KernelRegistry();
    cpu::registerElementwiseKernels(*result);
    cpu::registerShapeKernels(*result);
    cpu::registerDataMovementKernels(*result);
    cpu::registerReduceKernels(*result);
    cpu::registerNormalizationKernels(*result);
    cpu::registerMatMulKernels(*result);
    cpu::registerContribKernels(*result);
    cpu::registerAttentionKernels(*result);
    return result;
  }();
  return *registry;
}

void setBlasThreads(int threads) {
  if (threads > 0) openblas_set_num_threads(threads);
}

}  // namespace roformer::runtime
