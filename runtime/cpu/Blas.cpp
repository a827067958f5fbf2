#include "runtime/cpu/Blas.h"

#include <cblas.h>

#include <algorithm>

#include "runtime/cpu/KernelUtils.h"

namespace roformer::runtime::cpu {

namespace {

template <typename T>
void scaleMatrix(T* c, int64_t m, int64_t n, int64_t ldc, T beta) {
  for (int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    if (beta == T(0)) {
      std::fill_n(row, n, T(0));
    } else {
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
  }
}

}  // namespace

void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    scaleMatrix(c, m, n, ldc, beta);
    return;
  }
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(std::max<int64_t>(1, lda)), b,
              static_cast<blasint>(std::max<int64_t>(1, ldb)), beta, c,
              static_cast<blasint>(std::max<int64_t>(1, ldc)));
}

void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    scaleMatrix(c, m, n, ldc, beta);
    return;
  }
  cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(std::max<int64_t>(1, lda)), b,
              static_cast<blasint>(std::max<int64_t>(1, ldb)), beta, c,
              static_cast<blasint>(std::max<int64_t>(1, ldc)));
}

namespace {

// Elements per block edge: 16 floats are one 64-byte cache line.
constexpr int64_t kBlockAlignment = 16;

template <typename T>
void splitGemm(ThreadPool* threads, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
               T alpha, const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c,
               int64_t ldc) {
  const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const int parts = threads == nullptr ? 1 : threads->size();
  if (parts <= 1 || work <= kBlasSingleThreadWork * parts) {
    gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // Each block packs the whole of the operand it does not cut: cutting the
  // rows of C repacks B (K x N), cutting the columns repacks A (M x K).
  const bool cutRows = m > n;
  const int64_t extent = cutRows ? m : n;
  int64_t block = (extent + parts - 1) / parts;
  block = (block + kBlockAlignment - 1) / kBlockAlignment * kBlockAlignment;
  const int64_t blocks = (extent + block - 1) / block;
  threads->parallelFor(blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t first = i * block;
      const int64_t size = std::min(block, extent - first);
      if (cutRows) {
        const T* rowsOfA = transA ? a + first : a + first * lda;
        gemm(transA, transB, size, n, k, alpha, rowsOfA, lda, b, ldb, beta, c + first * ldc, ldc);
      } else {
        const T* columnsOfB = transB ? b + first * ldb : b + first;
        gemm(transA, transB, m, size, k, alpha, a, lda, columnsOfB, ldb, beta, c + first, ldc);
      }
    }
  });
}

}  // namespace

void gemm(ThreadPool* threads, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
          float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
          float* c, int64_t ldc) {
  splitGemm(threads, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm(ThreadPool* threads, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
          double alpha, const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
          double* c, int64_t ldc) {
  splitGemm(threads, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <typename T>
void batchedGemm(int64_t count, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
                 const T* a, const int64_t* offsetsA, int64_t lda, const T* b,
                 const int64_t* offsetsB, int64_t ldb, T* c, int64_t strideC, ThreadPool* threads) {
  const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  if (work <= kBlasSingleThreadWork && count > 1) {
    parallelFor(threads, count, static_cast<int64_t>(work), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        gemm(transA, transB, m, n, k, T(1), a + offsetsA[i], lda, b + offsetsB[i], ldb, T(0),
             c + i * strideC, n);
      }
    });
    return;
  }
  for (int64_t i = 0; i < count; ++i) {
    gemm(threads, transA, transB, m, n, k, T(1), a + offsetsA[i], lda, b + offsetsB[i], ldb,
         T(0), c + i * strideC, n);
  }
}

template void batchedGemm<float>(int64_t, bool, bool, int64_t, int64_t, int64_t, const float*,
                                 const int64_t*, int64_t, const float*, const int64_t*, int64_t,
                                 float*, int64_t, ThreadPool*);
template void batchedGemm<double>(int64_t, bool, bool, int64_t, int64_t, int64_t, const double*,
                                  const int64_t*, int64_t, const double*, const int64_t*, int64_t,
                                  double*, int64_t, ThreadPool*);

}  // namespace roformer::runtime::cpu
