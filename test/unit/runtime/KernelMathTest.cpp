// Tests of the CPU matrix product, softmax and normalization kernels.
#include <cmath>
#include <numeric>
#include <tuple>

#include "test/unit/runtime/KernelTestHelpers.h"

namespace roformer::runtime::testing {
namespace {

// Naive batched product of row-major [batch, m, k] x [batch, k, n].
std::vector<float> naiveMatMul(const std::vector<float>& a, const std::vector<float>& b,
                               int batch, int m, int k, int n) {
  std::vector<float> c(static_cast<size_t>(batch * m * n), 0.0f);
  for (int t = 0; t < batch; ++t) {
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < n; ++j) {
        double sum = 0;
        for (int p = 0; p < k; ++p) sum += double(a[(t * m + i) * k + p]) * b[(t * k + p) * n + j];
        c[(t * m + i) * n + j] = static_cast<float>(sum);
      }
    }
  }
  return c;
}

TEST(KernelMatMul, TwoByTwo) {
  OneNodeGraph g("MatMul", 2, 1);
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<float>({2, 3}, {1, 2, 3, 4, 5, 6}),
                              makeTensor<float>({3, 2}, {7, 8, 9, 10, 11, 12})});
  EXPECT_EQ(out.shape(), (Shape{2, 2}));
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{58, 64, 139, 154}));
}

TEST(KernelMatMul, BatchTimesSharedWeights) {
  std::vector<float> a = pseudoRandom(3 * 4 * 5, 1);
  std::vector<float> b = pseudoRandom(5 * 6, 2);
  OneNodeGraph g("MatMul", 2, 1);
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<float>({3, 4, 5}, a), makeTensor<float>({5, 6}, b)});
  EXPECT_EQ(out.shape(), (Shape{3, 4, 6}));
  std::vector<float> shared;
  for (int t = 0; t < 3; ++t) shared.insert(shared.end(), b.begin(), b.end());
  expectNear(valuesOf<float>(out), naiveMatMul(a, shared, 3, 4, 5, 6), 1e-5f);
}

TEST(KernelMatMul, BroadcastBatchDims) {
  // [2, 1, 3, 4] x [3, 4, 2] -> [2, 3, 3, 2]; A broadcasts over B's batch
  // and B over A's.
  std::vector<float> a = pseudoRandom(2 * 3 * 4, 3);
  std::vector<float> b = pseudoRandom(3 * 4 * 2, 4);
  OneNodeGraph g("MatMul", 2, 1);
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<float>({2, 1, 3, 4}, a), makeTensor<float>({3, 4, 2}, b)});
  ASSERT_EQ(out.shape(), (Shape{2, 3, 3, 2}));
  std::vector<float> values = valuesOf<float>(out);
  for (int x = 0; x < 2; ++x) {
    for (int y = 0; y < 3; ++y) {
      std::vector<float> matrixA(a.begin() + x * 12, a.begin() + x * 12 + 12);
      std::vector<float> matrixB(b.begin() + y * 8, b.begin() + y * 8 + 8);
      std::vector<float> expected = naiveMatMul(matrixA, matrixB, 1, 3, 4, 2);
      for (int i = 0; i < 6; ++i) {
        EXPECT_NEAR(values[(x * 3 + y) * 6 + i], expected[i], 1e-5f) << x << " " << y << " " << i;
      }
    }
  }
}

TEST(KernelMatMul, VectorOperands) {
  OneNodeGraph g("MatMul", 2, 1);
  HostTensor rowTimesMatrix = runSingle(g.node(), 13,
                                        {makeTensor<float>({2}, {1, 2}),
                                         makeTensor<float>({2, 3}, {1, 2, 3, 4, 5, 6})});
  EXPECT_EQ(rowTimesMatrix.shape(), (Shape{3}));
  EXPECT_EQ(valuesOf<float>(rowTimesMatrix), (std::vector<float>{9, 12, 15}));
  HostTensor dot = runSingle(g.node(), 13,
                             {makeTensor<float>({3}, {1, 2, 3}), makeTensor<float>({3}, {4, 5, 6})});
  EXPECT_EQ(dot.shape(), Shape{});
  EXPECT_EQ(valuesOf<float>(dot), (std::vector<float>{32}));
}

TEST(KernelMatMul, IntegersAndInnerDimMismatch) {
  OneNodeGraph g("MatMul", 2, 1);
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<int64_t>({1, 2}, {2, 3}), makeTensor<int64_t>({2, 1}, {4, 5})});
  EXPECT_EQ(valuesOf<int64_t>(out), (std::vector<int64_t>{23}));
  auto bad = runKernel(g.node(), 13,
                       {makeTensor<float>({2, 3}, std::vector<float>(6)),
                        makeTensor<float>({2, 3}, std::vector<float>(6))});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("inner dims differ"), std::string::npos);
}

TEST(KernelMatMul, ManySmallProductsOnThreads) {
  // 48 products of 16 x 16 x 16, each under OpenBLAS's single-thread size,
  // spread over the pool.
  std::vector<float> a = pseudoRandom(48 * 256, 5);
  std::vector<float> b = pseudoRandom(48 * 256, 6);
  OneNodeGraph g("MatMul", 2, 1);
  ThreadPool pool(2);
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<float>({48, 16, 16}, a), makeTensor<float>({48, 16, 16}, b)},
                             &pool);
  expectNear(valuesOf<float>(out), naiveMatMul(a, b, 48, 16, 16, 16), 1e-5f);
}

TEST(KernelMatMul, LargeProductSplitOverThreads) {
  // Above the single-thread size the product is cut into blocks of C, by
  // rows when M > N and by columns otherwise; 3 threads and sizes that are
  // not multiples of the 16-element block leave a short last block.
  ThreadPool pool(3);
  for (auto [m, k, n] : {std::tuple{301, 700, 37}, std::tuple{37, 700, 301}}) {
    std::vector<float> a = pseudoRandom(m * k, 7);
    std::vector<float> b = pseudoRandom(k * n, 8);
    OneNodeGraph g("MatMul", 2, 1);
    HostTensor out = runSingle(g.node(), 13,
                               {makeTensor<float>({m, k}, a), makeTensor<float>({k, n}, b)}, &pool);
    SCOPED_TRACE(::testing::Message() << m << " x " << k << " x " << n);
    expectNear(valuesOf<float>(out), naiveMatMul(a, b, 1, m, k, n), 1e-4f);
  }
}

TEST(KernelGemm, TransposedOperandsSplitOverThreads) {
  // Gemm with both operands transposed and large enough to be split, once
  // cut by rows (M > N) and once by columns. A is stored [K, M] and B [N, K].
  ThreadPool pool(2);
  for (auto [m, k, n] : {std::tuple{200, 900, 90}, std::tuple{90, 900, 200}}) {
    std::vector<float> a = pseudoRandom(m * k, 9);
    std::vector<float> b = pseudoRandom(k * n, 10);
    std::vector<float> aStored(a.size()), bStored(b.size());
    for (int i = 0; i < m; ++i) {
      for (int p = 0; p < k; ++p) aStored[p * m + i] = a[i * k + p];
    }
    for (int p = 0; p < k; ++p) {
      for (int j = 0; j < n; ++j) bStored[j * k + p] = b[p * n + j];
    }
    OneNodeGraph g("Gemm", 2, 1);
    g.node().setIntAttribute("transA", 1);
    g.node().setIntAttribute("transB", 1);
    HostTensor out = runSingle(
        g.node(), 13, {makeTensor<float>({k, m}, aStored), makeTensor<float>({n, k}, bStored)},
        &pool);
    SCOPED_TRACE(::testing::Message() << m << " x " << k << " x " << n);
    expectNear(valuesOf<float>(out), naiveMatMul(a, b, 1, m, k, n), 1e-4f);
  }
}

TEST(KernelGemm, TransposesAndBroadcastsC) {
  OneNodeGraph g("Gemm", 3, 1);
  g.node().setIntAttribute("transA", 1);
  g.node().setIntAttribute("transB", 1);
  g.node().setFloatAttribute("alpha", 2.0f);
  g.node().setFloatAttribute("beta", 0.5f);
  // A^T = [[1, 2], [3, 4]], B^T = [[1, 0], [0, 1]]: alpha A^T B^T = 2 A^T.
  HostTensor out = runSingle(g.node(), 13,
                             {makeTensor<float>({2, 2}, {1, 3, 2, 4}), makeTensor<float>({2, 2}, {1, 0, 0, 1}),
                              makeTensor<float>({2}, {10, 20})});
  EXPECT_EQ(valuesOf<float>(out), (std::vector<float>{2 + 5, 4 + 10, 6 + 5, 8 + 10}));

  OneNodeGraph noC("Gemm", 2, 1);
  HostTensor plain = runSingle(noC.node(), 13,
                               {makeTensor<float>({1, 2}, {1, 2}), makeTensor<float>({2, 1}, {3, 4})});
  EXPECT_EQ(valuesOf<float>(plain), (std::vector<float>{11}));
}

// Einsum against a direct evaluation of the two attention contractions.
TEST(KernelEinsum, AttentionScoresContraction) {
  const int b = 2, j = 3, k = 4, h = 2, d = 5;
  std::vector<float> q = pseudoRandom(b * j * h * d, 7);
  std::vector<float> kk = pseudoRandom(b * k * h * d, 8);
  OneNodeGraph g("Einsum", 2, 1);
  g.node().setStringAttribute("equation", "bjhd,bkhd->bhjk");
  HostTensor out = runSingle(g.node(), 12,
                             {makeTensor<float>({b, j, h, d}, q), makeTensor<float>({b, k, h, d}, kk)});
  ASSERT_EQ(out.shape(), (Shape{b, h, j, k}));
  std::vector<float> values = valuesOf<float>(out);
  for (int ib = 0; ib < b; ++ib) {
    for (int ih = 0; ih < h; ++ih) {
      for (int ij = 0; ij < j; ++ij) {
        for (int ik = 0; ik < k; ++ik) {
          double sum = 0;
          for (int id = 0; id < d; ++id) {
            sum += double(q[((ib * j + ij) * h + ih) * d + id]) * kk[((ib * k + ik) * h + ih) * d + id];
          }
          EXPECT_NEAR(values[((ib * h + ih) * j + ij) * k + ik], sum, 1e-5);
        }
      }
    }
  }
}

TEST(KernelEinsum, AttentionContextContraction) {
  const int b = 2, h = 3, j = 4, k = 5, d = 2;
  std::vector<float> p = pseudoRandom(b * h * j * k, 9);
  std::vector<float> v = pseudoRandom(b * k * h * d, 10);
  OneNodeGraph g("Einsum", 2, 1);
  g.node().setStringAttribute("equation", "bhjk,bkhd->bjhd");
  HostTensor out = runSingle(g.node(), 12,
                             {makeTensor<float>({b, h, j, k}, p), makeTensor<float>({b, k, h, d}, v)});
  ASSERT_EQ(out.shape(), (Shape{b, j, h, d}));
  std::vector<float> values = valuesOf<float>(out);
  for (int ib = 0; ib < b; ++ib) {
    for (int ij = 0; ij < j; ++ij) {
      for (int ih = 0; ih < h; ++ih) {
        for (int id = 0; id < d; ++id) {
          double sum = 0;
          for (int ik = 0; ik < k; ++ik) {
            sum += double(p[((ib * h + ih) * j + ij) * k + ik]) * v[((ib * k + ik) * h + ih) * d + id];
          }
          EXPECT_NEAR(values[((ib * j + ij) * h + ih) * d + id], sum, 1e-5);
        }
      }
    }
  }
}

TEST(KernelEinsum, ImplicitOutputTransposeAndSum) {
  OneNodeGraph matmul("Einsum", 2, 1);
  matmul.node().setStringAttribute("equation", "ij,jk");
  EXPECT_EQ(valuesOf<float>(runSingle(matmul.node(), 12,
                                      {makeTensor<float>({1, 2}, {1, 2}),
                                       makeTensor<float>({2, 2}, {1, 2, 3, 4})})),
            (std::vector<float>{7, 10}));
  OneNodeGraph transpose("Einsum", 1, 1);
  transpose.node().setStringAttribute("equation", "ij->ji");
  EXPECT_EQ(valuesOf<float>(runSingle(transpose.node(), 12,
                                      {makeTensor<float>({2, 3}, {1, 2, 3, 4, 5, 6})})),
            (std::vector<float>{1, 4, 2, 5, 3, 6}));
  OneNodeGraph rowSum("Einsum", 1, 1);
  rowSum.node().setStringAttribute("equation", "ij->i");
  EXPECT_EQ(valuesOf<float>(runSingle(rowSum.node(), 12,
                                      {makeTensor<float>({2, 3}, {1, 2, 3, 4, 5, 6})})),
            (std::vector<float>{6, 15}));
  OneNodeGraph ellipsis("Einsum", 2, 1);
  ellipsis.node().setStringAttribute("equation", "...ij,...jk->...ik");
  HostTensor batched = runSingle(ellipsis.node(), 12,
                                 {makeTensor<float>({2, 1, 1}, {2, 3}), makeTensor<float>({2, 1, 1}, {4, 5})});
  EXPECT_EQ(batched.shape(), (Shape{2, 1, 1}));
  EXPECT_EQ(valuesOf<float>(batched), (std::vector<float>{8, 15}));
}

TEST(KernelEinsum, DiagonalIsUnimplemented) {
  OneNodeGraph g("Einsum", 1, 1);
  g.node().setStringAttribute("equation", "ii->i");
  auto result = runKernel(g.node(), 12, {makeTensor<float>({2, 2}, {1, 2, 3, 4})});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(result.status().message().find("'ii->i'"), std::string::npos) << result.status();
}

// ---- Softmax ----

TEST(KernelSoftmax, Opset13NormalizesOneAxis) {
  OneNodeGraph g("Softmax", 1, 1);
  g.node().setIntAttribute("axis", 0);
  std::vector<float> out = valuesOf<float>(
      runSingle(g.node(), 13, {makeTensor<float>({2, 2}, {0, 1, 0, 3})}));
  // Columns are normalized: column 0 is (0, 0), column 1 is (1, 3).
  const float e = 1.0f / (1.0f + std::exp(2.0f));
  expectNear(out, {0.5f, e, 0.5f, 1 - e}, 1e-6f);
}

TEST(KernelSoftmax, BeforeOpset13CoercesTo2D) {
  OneNodeGraph g("Softmax", 1, 1);
  // Axis 1 of [1, 2, 2]: all four values form one row.
  std::vector<float> out = valuesOf<float>(
      runSingle(g.node(), 11, {makeTensor<float>({1, 2, 2}, {0, 0, 0, 0})}));
  expectNear(out, {0.25f, 0.25f, 0.25f, 0.25f}, 1e-6f);
  OneNodeGraph current("Softmax", 1, 1);
  current.node().setIntAttribute("axis", 1);
  std::vector<float> perAxis = valuesOf<float>(
      runSingle(current.node(), 13, {makeTensor<float>({1, 2, 2}, {0, 0, 0, 0})}));
  expectNear(perAxis, {0.5f, 0.5f, 0.5f, 0.5f}, 1e-6f);
}

TEST(KernelSoftmax, LargeValuesDoNotOverflow) {
  OneNodeGraph g("Softmax", 1, 1);
  std::vector<float> out = valuesOf<float>(
      runSingle(g.node(), 13, {makeTensor<float>({3}, {1000, 1000, -1e30f})}));
  expectNear(out, {0.5f, 0.5f, 0.0f}, 1e-6f);
  OneNodeGraph logSoftmax("LogSoftmax", 1, 1);
  std::vector<float> logs = valuesOf<float>(
      runSingle(logSoftmax.node(), 13, {makeTensor<float>({2}, {1000, 1000})}));
  expectNear(logs, {-std::log(2.0f), -std::log(2.0f)}, 1e-6f);
}

// ---- LayerNormalization and SkipLayerNormalization ----

std::vector<float> referenceLayerNorm(const std::vector<float>& x, int rows, int size,
                                      const std::vector<float>& scale,
                                      const std::vector<float>& bias, float epsilon) {
  std::vector<float> y(x.size());
  for (int r = 0; r < rows; ++r) {
    double mean = 0, variance = 0;
    for (int i = 0; i < size; ++i) mean += x[r * size + i];
    mean /= size;
    for (int i = 0; i < size; ++i) variance += (x[r * size + i] - mean) * (x[r * size + i] - mean);
    variance /= size;
    for (int i = 0; i < size; ++i) {
      y[r * size + i] = static_cast<float>((x[r * size + i] - mean) / std::sqrt(variance + epsilon) *
                                               scale[i] + (bias.empty() ? 0.0 : bias[i]));
    }
  }
  return y;
}

TEST(KernelLayerNorm, LastAxisWithStatistics) {
  std::vector<float> x = pseudoRandom(3 * 40, 11);
  for (float& v : x) v = v * 3 + 100;  // a large mean tests the two-pass variance
  std::vector<float> scale = pseudoRandom(40, 12);
  std::vector<float> bias = pseudoRandom(40, 13);
  OneNodeGraph g("LayerNormalization", 3, 3);
  g.node().setFloatAttribute("epsilon", 1e-5f);
  auto outputs = runKernel(g.node(), 17,
                           {makeTensor<float>({3, 40}, x), makeTensor<float>({40}, scale),
                            makeTensor<float>({40}, bias)});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  expectNear(valuesOf<float>((*outputs)[0]), referenceLayerNorm(x, 3, 40, scale, bias, 1e-5f), 1e-4f);
  EXPECT_EQ((*outputs)[1].shape(), (Shape{3, 1}));
  EXPECT_NEAR(valuesOf<float>((*outputs)[1])[0],
              std::accumulate(x.begin(), x.begin() + 40, 0.0) / 40, 1e-3);
  EXPECT_EQ((*outputs)[2].shape(), (Shape{3, 1}));
}

TEST(KernelLayerNorm, AxisCoversTwoDimsWithBroadcastScale) {
  // axis 1 of [2, 2, 3]: rows of 6 elements; scale [3] broadcasts to [2, 3].
  std::vector<float> x = pseudoRandom(12, 14);
  std::vector<float> scale = {1, 2, 3};
  OneNodeGraph g("LayerNormalization", 2, 1);
  g.node().setIntAttribute("axis", 1);
  HostTensor out = runSingle(g.node(), 17,
                             {makeTensor<float>({2, 2, 3}, x), makeTensor<float>({3}, scale)});
  std::vector<float> expandedScale = {1, 2, 3, 1, 2, 3};
  expectNear(valuesOf<float>(out), referenceLayerNorm(x, 2, 6, expandedScale, {}, 1e-5f), 1e-5f);
}

TEST(KernelLayerNorm, RejectsDoubleStashType) {
  OneNodeGraph g("LayerNormalization", 2, 1);
  g.node().setIntAttribute("stash_type", 11);
  auto result = runKernel(g.node(), 17, {makeTensor<float>({1, 2}, {1, 2}), makeTensor<float>({2}, {1, 1})});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KernelSkipLayerNorm, AllOutputs) {
  const int rows = 4, hidden = 24;
  std::vector<float> input = pseudoRandom(rows * hidden, 15);
  std::vector<float> skip = pseudoRandom(rows * hidden, 16);
  std::vector<float> gamma = pseudoRandom(hidden, 17);
  std::vector<float> beta = pseudoRandom(hidden, 18);
  std::vector<float> bias = pseudoRandom(hidden, 19);
  OneNodeGraph g("SkipLayerNormalization", 5, 4, "com.microsoft");
  g.node().setFloatAttribute("epsilon", 1e-6f);
  auto outputs = runKernel(g.node(), 1,
                           {makeTensor<float>({2, 2, hidden}, input), makeTensor<float>({2, 2, hidden}, skip),
                            makeTensor<float>({hidden}, gamma), makeTensor<float>({hidden}, beta),
                            makeTensor<float>({hidden}, bias)});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  std::vector<float> sum(input.size());
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = input[i] + skip[i] + bias[i % hidden];
  expectNear(valuesOf<float>((*outputs)[0]), referenceLayerNorm(sum, rows, hidden, gamma, beta, 1e-6f),
             1e-5f);
  EXPECT_EQ((*outputs)[1].shape(), (Shape{2, 2, 1}));
  EXPECT_EQ((*outputs)[2].shape(), (Shape{2, 2, 1}));
  expectNear(valuesOf<float>((*outputs)[3]), sum, 1e-6f);
}

TEST(KernelSkipLayerNorm, SkipBroadcastsOverBatchAndOutputsOmitted) {
  const int hidden = 8;
  std::vector<float> input = pseudoRandom(2 * 3 * hidden, 20);
  std::vector<float> skip = pseudoRandom(3 * hidden, 21);
  std::vector<float> gamma(hidden, 1.0f);
  OneNodeGraph g("SkipLayerNormalization", 3, 4, "com.microsoft", {}, {1, 2, 3});
  HostTensor out = runSingle(g.node(), 1,
                             {makeTensor<float>({2, 3, hidden}, input), makeTensor<float>({3, hidden}, skip),
                              makeTensor<float>({hidden}, gamma)});
  std::vector<float> sum(input.size());
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = input[i] + skip[i % (3 * hidden)];
  // The default epsilon is ONNX Runtime's 1e-12.
  expectNear(valuesOf<float>(out), referenceLayerNorm(sum, 6, hidden, gamma, {}, 1e-12f), 1e-5f);
}

TEST(KernelSkipLayerNorm, RejectsWrongGammaSize) {
  OneNodeGraph g("SkipLayerNormalization", 3, 1, "com.microsoft");
  auto result = runKernel(g.node(), 1,
                          {makeTensor<float>({1, 4}, {1, 2, 3, 4}), makeTensor<float>({1, 4}, {1, 2, 3, 4}),
                           makeTensor<float>({3}, {1, 1, 1})});
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("gamma"), std::string::npos) << result.status();
}

}  // namespace
}  // namespace roformer::runtime::testing
