// cuBLASLt, loaded with dlopen when the first CUDA backend is created.
//
// libcublasLt.so.13 is 540 MB. Linking it into every binary that contains
// the CUDA backend made each process start 0.33 s slower and 200 MB larger
// in resident memory on a 2-core build machine, which every CPU-only run of
// roformer-run and every test paid. Loading it on first use keeps CPU runs
// free of it, and lets a machine without the library still run on the CPU.
#pragma once

#include <cublasLt.h>

#include "absl/status/statusor.h"

namespace roformer::runtime::cuda {

// The cuBLASLt functions the backend calls.
struct CublasLtApi {
  decltype(&cublasLtCreate) create = nullptr;
  decltype(&cublasLtDestroy) destroy = nullptr;
  decltype(&cublasLtMatmulDescCreate) matmulDescCreate = nullptr;
  decltype(&cublasLtMatmulDescDestroy) matmulDescDestroy = nullptr;
  decltype(&cublasLtMatmulDescSetAttribute) matmulDescSetAttribute = nullptr;
  decltype(&cublasLtMatrixLayoutCreate) matrixLayoutCreate = nullptr;
  decltype(&cublasLtMatrixLayoutDestroy) matrixLayoutDestroy = nullptr;
  decltype(&cublasLtMatrixLayoutSetAttribute) matrixLayoutSetAttribute = nullptr;
  decltype(&cublasLtMatmulPreferenceCreate) preferenceCreate = nullptr;
  decltype(&cublasLtMatmulPreferenceDestroy) preferenceDestroy = nullptr;
  decltype(&cublasLtMatmulPreferenceSetAttribute) preferenceSetAttribute = nullptr;
  decltype(&cublasLtMatmulAlgoGetHeuristic) algoGetHeuristic = nullptr;
  decltype(&cublasLtMatmul) matmul = nullptr;
};

// Loads the library once per process: first by its soname (so that
// LD_LIBRARY_PATH decides), then from the toolkit the build used. Returns
// FailedPrecondition naming both paths when neither loads.
absl::StatusOr<const CublasLtApi*> loadCublasLt();

// The name of a cuBLAS status (CUBLAS_STATUS_NOT_SUPPORTED), for messages.
const char* cublasStatusName(cublasStatus_t status);

}  // namespace roformer::runtime::cuda
