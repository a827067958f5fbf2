// Matrix products for the CPU kernels, through OpenBLAS.
#pragma once

#include <cstdint>

#include "runtime/Kernel.h"

namespace roformer::runtime::cpu {

// OpenBLAS 0.3.21 (interface/gemm.c) runs a gemm on one thread when
// M * N * K is at most 65536 * OPENBLAS_GEMM_MULTITHREAD_THRESHOLD (4 in
// Debian's build). Kernels that issue many products at most this size
// parallelize over them with the ThreadPool instead; larger products use
// OpenBLAS's own threads.
inline constexpr double kBlasSingleThreadWork = 65536.0 * 4.0;

// Row-major C = alpha * op(A) * op(B) + beta * C, with op(A) of shape M x K
// and op(B) of shape K x N. Handles K == 0 (C = beta * C) and empty results,
// which BLAS rejects through its error handler.
void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc);

// `count` products C_i = op(A_i) * op(B_i) with the given element offsets,
// spread over `threads` when each product is small enough for OpenBLAS to
// run it on one thread, and issued one after another otherwise.
template <typename T>
void batchedGemm(int64_t count, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
                 const T* a, const int64_t* offsetsA, int64_t lda, const T* b,
                 const int64_t* offsetsB, int64_t ldb, T* c, int64_t strideC, ThreadPool* threads);

}  // namespace roformer::runtime::cpu
