// The CPU backend's kernels.
#pragma once

#include "runtime/Kernel.h"

namespace roformer::runtime {

// The registry with every CPU kernel, built on first use (thread-safe).
const KernelRegistry& cpuKernelRegistry();

// Sets the number of threads OpenBLAS uses for one matrix product. OpenBLAS
// keeps this in process-wide state, so a session calls it once from its
// options; threads <= 0 leaves OpenBLAS's default (its thread count is then
// the number of cores, or OPENBLAS_NUM_THREADS when set).
void setBlasThreads(int threads);

}  // namespace roformer::runtime
