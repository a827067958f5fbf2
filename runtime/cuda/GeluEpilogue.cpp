#include "runtime/cuda/GeluEpilogue.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"

namespace roformer::runtime::cuda {
namespace {

constexpr int kProbeCount = 64;

double erfGelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

double tanhGelu(double x) {
  const double inner = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
  return 0.5 * x * (1.0 + std::tanh(inner));
}

}  // namespace

const char* geluFormName(GeluForm form) {
  switch (form) {
    case GeluForm::kErf:
      return "erf";
    case GeluForm::kTanh:
      return "tanh";
    case GeluForm::kUnknown:
      break;
  }
  return "unknown";
}

GeluForm classifyGelu(const float* inputs, const float* values, int count) {
  double erfError = 0.0;
  double tanhError = 0.0;
  for (int i = 0; i < count; ++i) {
    erfError = std::max(erfError, std::fabs(values[i] - erfGelu(inputs[i])));
    tanhError = std::max(tanhError, std::fabs(values[i] - tanhGelu(inputs[i])));
  }
  // The two forms differ by up to 4.7e-4 between -5 and 5.
  constexpr double kMatch = 2e-5;
  if (erfError < kMatch && erfError * 10 < tanhError) return GeluForm::kErf;
  if (tanhError < kMatch && tanhError * 10 < erfError) return GeluForm::kTanh;
  return GeluForm::kUnknown;
}

GeluForm probeGeluEpilogue(const CublasLtApi& lt, cublasLtHandle_t handle, cudaStream_t stream,
                           std::string& detail) {
  // D[64 x 1] = GELU(A[64 x 1] B[1 x 1] + bias[64]) with B = 1 and bias 0,
  // in cuBLASLt's column-major terms. One allocation: A, B, bias, D.
  std::vector<float> host(3 * kProbeCount + 1, 0.0f);
  float* inputs = host.data();
  for (int i = 0; i < kProbeCount; ++i) inputs[i] = -5.0f + 10.0f * i / (kProbeCount - 1);
  host[kProbeCount] = 1.0f;
  float* device = nullptr;
  if (cudaError_t error = cudaMalloc(&device, host.size() * sizeof(float)); error != cudaSuccess) {
    detail = absl::StrCat("cudaMalloc failed: ", cudaGetErrorString(error));
    return GeluForm::kUnknown;
  }
  float* a = device;
  float* b = device + kProbeCount;
  float* bias = b + 1;
  float* d = bias + kProbeCount;

  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t layoutA = nullptr;
  cublasLtMatrixLayout_t layoutB = nullptr;
  cublasLtMatrixLayout_t layoutD = nullptr;
  cublasLtMatmulPreference_t preference = nullptr;
  GeluForm form = GeluForm::kUnknown;
  auto run = [&]() -> bool {
    if (cudaMemcpy(device, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice) !=
        cudaSuccess) {
      detail = "copying the probe inputs failed";
      return false;
    }
    cublasStatus_t status = lt.matmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_GELU_BIAS;
    const void* biasPointer = bias;
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = lt.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                         sizeof(epilogue));
    }
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = lt.matmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &biasPointer,
                                         sizeof(biasPointer));
    }
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = lt.matrixLayoutCreate(&layoutA, CUDA_R_32F, kProbeCount, 1, kProbeCount);
    }
    if (status == CUBLAS_STATUS_SUCCESS) status = lt.matrixLayoutCreate(&layoutB, CUDA_R_32F, 1, 1, 1);
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = lt.matrixLayoutCreate(&layoutD, CUDA_R_32F, kProbeCount, 1, kProbeCount);
    }
    if (status == CUBLAS_STATUS_SUCCESS) status = lt.preferenceCreate(&preference);
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = lt.algoGetHeuristic(handle, desc, layoutA, layoutB, layoutD, layoutD, preference, 1,
                                   &result, &found);
    }
    if (status == CUBLAS_STATUS_SUCCESS && found == 0) status = CUBLAS_STATUS_NOT_SUPPORTED;
    const float alpha = 1.0f;
    const float beta = 0.0f;
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = lt.matmul(handle, desc, &alpha, a, layoutA, b, layoutB, &beta, d, layoutD, d,
                         layoutD, &result.algo, nullptr, 0, stream);
    }
    if (status != CUBLAS_STATUS_SUCCESS) {
      detail = absl::StrCat("cuBLASLt declined the GELU and bias epilogue: ",
                            cublasStatusName(status));
      return false;
    }
    std::vector<float> values(kProbeCount);
    if (cudaMemcpyAsync(values.data(), d, kProbeCount * sizeof(float), cudaMemcpyDeviceToHost,
                        stream) != cudaSuccess ||
        cudaStreamSynchronize(stream) != cudaSuccess) {
      detail = "running the probe product failed";
      return false;
    }
    form = classifyGelu(inputs, values.data(), kProbeCount);
    if (form == GeluForm::kUnknown) detail = "the epilogue's values match neither GELU form";
    return true;
  };
  run();
  if (preference != nullptr) lt.preferenceDestroy(preference);
  if (layoutD != nullptr) lt.matrixLayoutDestroy(layoutD);
  if (layoutB != nullptr) lt.matrixLayoutDestroy(layoutB);
  if (layoutA != nullptr) lt.matrixLayoutDestroy(layoutA);
  if (desc != nullptr) lt.matmulDescDestroy(desc);
  cudaFree(device);
  // Leave no launch error behind for the next CUDA call to report.
  cudaGetLastError();
  return form;
}

}  // namespace roformer::runtime::cuda
