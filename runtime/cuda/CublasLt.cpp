#include "runtime/cuda/CublasLt.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"

#ifndef ROFORMER_CUBLASLT_SONAME
#define ROFORMER_CUBLASLT_SONAME "libcublasLt.so"
#endif
#ifndef ROFORMER_CUBLASLT_PATH
#define ROFORMER_CUBLASLT_PATH ""
#endif

namespace roformer::runtime::cuda {
namespace {

template <typename Function>
bool resolve(void* library, const char* symbol, Function& function, std::string& missing) {
  function = reinterpret_cast<Function>(dlsym(library, symbol));
  if (function == nullptr) absl::StrAppend(&missing, missing.empty() ? "" : ", ", symbol);
  return function != nullptr;
}

absl::StatusOr<const CublasLtApi*> load() {
  std::string errors;
  void* library = nullptr;
  for (const char* path : {ROFORMER_CUBLASLT_SONAME, ROFORMER_CUBLASLT_PATH}) {
    if (path[0] == '\0') continue;
    library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (library != nullptr) break;
    const char* error = dlerror();
    absl::StrAppend(&errors, errors.empty() ? "" : "; ", error != nullptr ? error : path);
  }
  if (library == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cuBLASLt could not be loaded (", errors,
                     "); add the CUDA toolkit's lib64 folder to LD_LIBRARY_PATH"));
  }

  // The library stays loaded for the life of the process.
  static CublasLtApi api;
  std::string missing;
  resolve(library, "cublasLtCreate", api.create, missing);
  resolve(library, "cublasLtDestroy", api.destroy, missing);
  resolve(library, "cublasLtMatmulDescCreate", api.matmulDescCreate, missing);
  resolve(library, "cublasLtMatmulDescDestroy", api.matmulDescDestroy, missing);
  resolve(library, "cublasLtMatmulDescSetAttribute", api.matmulDescSetAttribute, missing);
  resolve(library, "cublasLtMatrixLayoutCreate", api.matrixLayoutCreate, missing);
  resolve(library, "cublasLtMatrixLayoutDestroy", api.matrixLayoutDestroy, missing);
  resolve(library, "cublasLtMatrixLayoutSetAttribute", api.matrixLayoutSetAttribute, missing);
  resolve(library, "cublasLtMatmulPreferenceCreate", api.preferenceCreate, missing);
  resolve(library, "cublasLtMatmulPreferenceDestroy", api.preferenceDestroy, missing);
  resolve(library, "cublasLtMatmulPreferenceSetAttribute", api.preferenceSetAttribute, missing);
  resolve(library, "cublasLtMatmulAlgoGetHeuristic", api.algoGetHeuristic, missing);
  resolve(library, "cublasLtMatmul", api.matmul, missing);
  if (!missing.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the loaded cuBLASLt lacks ", missing, "; it must be the CUDA 13 version the build used"));
  }
  return &api;
}

}  // namespace

absl::StatusOr<const CublasLtApi*> loadCublasLt() {
  static std::once_flag once;
  static absl::StatusOr<const CublasLtApi*>* result = nullptr;
  std::call_once(once, [] { result = new absl::StatusOr<const CublasLtApi*>(load()); });
  return *result;
}

const char* cublasStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
    default:
      return "CUBLAS_STATUS_(unknown)";
  }
}

}  // namespace roformer::runtime::cuda
