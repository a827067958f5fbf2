// Matrix products for the CPU kernels, through OpenBLAS.
#pragma once

#include <cstdint>

#include "runtime/Kernel.h"

namespace roformer::runtime::cpu {

// OpenBLAS runs on one thread (see setBlasThreads), and the kernels spread
// products over the session's ThreadPool themselves. OpenBLAS's own worker
// threads busy-wait after each product (up to 2^28 cycles by default, per
// THREAD_TIMEOUT in its driver/others/blas_server.c), so every kernel that
// followed a MatMul shared the cores with spinning threads. With them, the
// attention ran 1.7x slower inside the model than alone (436 ms against
// 252 ms in `roformer-run --profile` on the full-size model, 2 cores).
//
// Products of at most this many multiply-adds run on the calling thread;
// a ThreadPool pays off only above it.
inline constexpr double kBlasSingleThreadWork = 65536.0 * 4.0;

// Row-major C = alpha * op(A) * op(B) + beta * C, with op(A) of shape M x K
// and op(B) of shape K x N. Handles K == 0 (C = beta * C) and empty results,
// which BLAS rejects through its error handler.
void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc);

// Computes the same product spread over `threads`. C is cut into one block
// of rows or columns per thread, whichever repeats less packing of the other
// operand, and each block is a single-threaded OpenBLAS call. Small products
// and a null or one-thread pool run on the calling thread.
void gemm(ThreadPool* threads, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
          float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
          float* c, int64_t ldc);
void gemm(ThreadPool* threads, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
          double alpha, const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
          double* c, int64_t ldc);

// Computes `count` products C_i = op(A_i) * op(B_i) with the given element
// offsets. Small products are divided among `threads`, and large ones run
// one after another, each spread over the threads.
template <typename T>
void batchedGemm(int64_t count, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
                 const T* a, const int64_t* offsetsA, int64_t lda, const T* b,
                 const int64_t* offsetsB, int64_t ldb, T* c, int64_t strideC, ThreadPool* threads);

}  // namespace roformer::runtime::cpu
