// Tests of the fused kernels: GELU variants, RotaryEmbedding and
// MultiHeadAttention, each against a direct reference formula.
#include <cmath>

#include "test/unit/runtime/KernelTestHelpers.h"

namespace roformer::runtime::testing {
namespace {

double geluReference(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }

TEST(KernelGelu, ErfFormsMatchReference) {
  std::vector<float> x = pseudoRandom(64, 1);
  for (float& v : x) v *= 5;
  std::vector<float> bias = pseudoRandom(16, 2);

  OneNodeGraph gelu("Gelu", 1, 1, "com.microsoft");
  std::vector<float> plain = valuesOf<float>(runSingle(gelu.node(), 1, {makeTensor<float>({4, 16}, x)}));
  OneNodeGraph biasGelu("BiasGelu", 2, 1, "com.microsoft");
  std::vector<float> biased = valuesOf<float>(
      runSingle(biasGelu.node(), 1, {makeTensor<float>({4, 16}, x), makeTensor<float>({16}, bias)}));
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(plain[i], geluReference(x[i]), 1e-6 * (1 + std::fabs(x[i]))) << x[i];
    EXPECT_NEAR(biased[i], geluReference(x[i] + bias[i % 16]), 1e-6 * (1 + std::fabs(x[i])));
  }
}

TEST(KernelGelu, FastGeluUsesTanhApproximation) {
  std::vector<float> x = {-3, -0.5f, 0, 0.5f, 3};
  OneNodeGraph g("FastGelu", 1, 1, "com.microsoft");
  std::vector<float> out = valuesOf<float>(runSingle(g.node(), 1, {makeTensor<float>({5}, x)}));
  for (size_t i = 0; i < x.size(); ++i) {
    double v = x[i];
    double expected = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    EXPECT_NEAR(out[i], expected, 1e-6) << v;
  }
}

TEST(KernelGelu, BiasGeluRejectsWrongBias) {
  OneNodeGraph g("BiasGelu", 2, 1, "com.microsoft");
  auto result = runKernel(g.node(), 1, {makeTensor<float>({2, 3}, std::vector<float>(6)),
                                        makeTensor<float>({2}, {1, 2})});
  EXPECT_FALSE(result.ok());
}

// ---- RotaryEmbedding ----

// out for one head vector `x` at position `p`, written from the rotation
// formulas with pairs (2i, 2i + 1) or (i, i + half).
std::vector<float> rotateReference(const float* x, int headSize, int rotaryDim,
                                   const std::vector<float>& cosCache,
                                   const std::vector<float>& sinCache, int64_t p, bool interleaved) {
  const int half = rotaryDim / 2;
  std::vector<float> y(x, x + headSize);
  for (int i = 0; i < half; ++i) {
    const int a = interleaved ? 2 * i : i;
    const int b = interleaved ? 2 * i + 1 : i + half;
    const double c = cosCache[p * half + i];
    const double s = sinCache[p * half + i];
    y[a] = static_cast<float>(x[a] * c - x[b] * s);
    y[b] = static_cast<float>(x[b] * c + x[a] * s);
  }
  return y;
}

struct RotaryCase {
  int batch = 2, sequence = 3, heads = 2, headSize = 8, maxPositions = 10;
  std::vector<float> cosCache, sinCache;
  RotaryCase(int rotaryDim) {
    for (int p = 0; p < maxPositions; ++p) {
      for (int i = 0; i < rotaryDim / 2; ++i) {
        double angle = p * std::pow(10000.0, -2.0 * i / rotaryDim);
        cosCache.push_back(static_cast<float>(std::cos(angle)));
        sinCache.push_back(static_cast<float>(std::sin(angle)));
      }
    }
  }
};

TEST(KernelRotary, InterleavedAndHalvesOn3DInput) {
  RotaryCase c(8);
  std::vector<float> x = pseudoRandom(c.batch * c.sequence * c.heads * c.headSize, 3);
  std::vector<int64_t> positions = {0, 1, 2, 5, 7, 9};
  for (int interleaved = 0; interleaved <= 1; ++interleaved) {
    OneNodeGraph g("RotaryEmbedding", 4, 1, "com.microsoft");
    g.node().setIntAttribute("interleaved", interleaved);
    std::vector<float> out = valuesOf<float>(runSingle(
        g.node(), 1,
        {makeTensor<float>({c.batch, c.sequence, c.heads * c.headSize}, x),
         makeTensor<int64_t>({c.batch, c.sequence}, positions),
         makeTensor<float>({c.maxPositions, 4}, c.cosCache), makeTensor<float>({c.maxPositions, 4}, c.sinCache)}));
    for (int b = 0; b < c.batch; ++b) {
      for (int s = 0; s < c.sequence; ++s) {
        for (int n = 0; n < c.heads; ++n) {
          const int offset = ((b * c.sequence + s) * c.heads + n) * c.headSize;
          std::vector<float> expected = rotateReference(x.data() + offset, c.headSize, 8, c.cosCache,
                                                        c.sinCache, positions[b * c.sequence + s],
                                                        interleaved == 1);
          for (int i = 0; i < c.headSize; ++i) {
            EXPECT_NEAR(out[offset + i], expected[i], 1e-6)
                << "interleaved=" << interleaved << " b=" << b << " s=" << s << " i=" << i;
          }
        }
      }
    }
  }
}

TEST(KernelRotary, InterleavedDiffersFromHalves) {
  // Guards against a kernel that ignores the attribute.
  RotaryCase c(8);
  std::vector<float> x = pseudoRandom(8, 4);
  std::vector<float> results[2];
  for (int interleaved = 0; interleaved <= 1; ++interleaved) {
    OneNodeGraph g("RotaryEmbedding", 4, 1, "com.microsoft");
    g.node().setIntAttribute("interleaved", interleaved);
    results[interleaved] = valuesOf<float>(runSingle(
        g.node(), 1,
        {makeTensor<float>({1, 1, 8}, x), makeTensor<int64_t>({1, 1}, {3}),
         makeTensor<float>({c.maxPositions, 4}, c.cosCache), makeTensor<float>({c.maxPositions, 4}, c.sinCache)}));
  }
  float difference = 0;
  for (int i = 0; i < 8; ++i) difference += std::fabs(results[0][i] - results[1][i]);
  EXPECT_GT(difference, 0.1f);
}

TEST(KernelRotary, FourDimInputOffsetPositionAndPartialRotation) {
  // [batch, heads, seq, head] input, positions given as one offset, and only
  // the first 4 of 8 elements of each head rotated.
  RotaryCase c(4);
  std::vector<float> x = pseudoRandom(c.batch * c.heads * c.sequence * c.headSize, 5);
  OneNodeGraph g("RotaryEmbedding", 4, 1, "com.microsoft");
  g.node().setIntAttribute("interleaved", 1);
  g.node().setIntAttribute("num_heads", c.heads);
  g.node().setIntAttribute("rotary_embedding_dim", 4);
  std::vector<float> out = valuesOf<float>(runSingle(
      g.node(), 1,
      {makeTensor<float>({c.batch, c.heads, c.sequence, c.headSize}, x), makeTensor<int64_t>({1}, {2}),
       makeTensor<float>({c.maxPositions, 2}, c.cosCache), makeTensor<float>({c.maxPositions, 2}, c.sinCache)}));
  for (int b = 0; b < c.batch; ++b) {
    for (int n = 0; n < c.heads; ++n) {
      for (int s = 0; s < c.sequence; ++s) {
        const int offset = ((b * c.heads + n) * c.sequence + s) * c.headSize;
        std::vector<float> expected =
            rotateReference(x.data() + offset, c.headSize, 4, c.cosCache, c.sinCache, 2 + s, true);
        for (int i = 0; i < c.headSize; ++i) EXPECT_NEAR(out[offset + i], expected[i], 1e-6) << i;
      }
    }
  }
}

TEST(KernelRotary, RejectsPositionOutsideCache) {
  RotaryCase c(8);
  OneNodeGraph g("RotaryEmbedding", 4, 1, "com.microsoft");
  auto result = runKernel(g.node(), 1,
                          {makeTensor<float>({1, 2, 8}, std::vector<float>(16)),
                           makeTensor<int64_t>({1, 2}, {3, 10}),
                           makeTensor<float>({c.maxPositions, 4}, c.cosCache),
                           makeTensor<float>({c.maxPositions, 4}, c.sinCache)});
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("position 10"), std::string::npos) << result.status();
}

TEST(KernelRotary, RejectsPackedBatching) {
  OneNodeGraph g("RotaryEmbedding", 4, 1, "com.microsoft");
  g.node().setIntAttribute("is_packed_batching", 1);
  auto result = runKernel(g.node(), 1, {});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- MultiHeadAttention ----

// Attention computed the direct way, materializing every score:
// softmax(scale * q k^T + mask) v per (batch, head), with masked keys
// getting `maskFilter` added.
std::vector<float> attentionReference(const std::vector<float>& q, const std::vector<float>& k,
                                      const std::vector<float>& v, int batch, int sequence,
                                      int keySequence, int heads, int headSize,
                                      const std::vector<int32_t>& keyMask, float scale,
                                      float maskFilter, bool causal) {
  const int hidden = heads * headSize;
  std::vector<float> out(static_cast<size_t>(batch * sequence * hidden));
  std::vector<double> scores(keySequence);
  for (int b = 0; b < batch; ++b) {
    for (int n = 0; n < heads; ++n) {
      for (int t = 0; t < sequence; ++t) {
        double max = -1e300;
        for (int j = 0; j < keySequence; ++j) {
          double dot = 0;
          for (int d = 0; d < headSize; ++d) {
            dot += double(q[(b * sequence + t) * hidden + n * headSize + d]) *
                   k[(b * keySequence + j) * hidden + n * headSize + d];
          }
          scores[j] = dot * scale;
          if (!keyMask.empty() && keyMask[b * keySequence + j] == 0) scores[j] += maskFilter;
          if (causal && j > t) scores[j] += maskFilter;
          max = std::max(max, scores[j]);
        }
        double sum = 0;
        for (int j = 0; j < keySequence; ++j) sum += scores[j] = std::exp(scores[j] - max);
        for (int d = 0; d < headSize; ++d) {
          double value = 0;
          for (int j = 0; j < keySequence; ++j) {
            value += scores[j] / sum * v[(b * keySequence + j) * hidden + n * headSize + d];
          }
          out[(b * sequence + t) * hidden + n * headSize + d] = static_cast<float>(value);
        }
      }
    }
  }
  return out;
}

void expectClose(const std::vector<float>& actual, const std::vector<float>& expected, float tolerance) {
  ASSERT_EQ(actual.size(), expected.size());
  float worst = 0;
  size_t worstIndex = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    float error = std::fabs(actual[i] - expected[i]);
    if (!(error <= worst)) {
      worst = error;
      worstIndex = i;
    }
  }
  EXPECT_LE(worst, tolerance) << "worst error at index " << worstIndex;
}

TEST(KernelAttention, PaddedKeysMatchNaiveReference) {
  // 300 keys: three key tiles, the last partial; several query-row blocks.
  const int batch = 2, sequence = 300, heads = 2, headSize = 16;
  const int hidden = heads * headSize;
  std::vector<float> q = pseudoRandom(batch * sequence * hidden, 6);
  std::vector<float> k = pseudoRandom(batch * sequence * hidden, 7);
  std::vector<float> v = pseudoRandom(batch * sequence * hidden, 8);
  for (float& value : q) value *= 3;  // sharper attention than uniform
  std::vector<int32_t> mask(batch * sequence, 1);
  for (int j = 250; j < sequence; ++j) mask[1 * sequence + j] = 0;  // batch 1 padded
  for (int j = 0; j < 7; ++j) mask[j] = 0;                          // batch 0 masked at the start

  OneNodeGraph g("MultiHeadAttention", 5, 1, "com.microsoft", {3});
  g.node().setIntAttribute("num_heads", heads);
  ThreadPool pool(2);
  std::vector<float> out = valuesOf<float>(runSingle(
      g.node(), 1,
      {makeTensor<float>({batch, sequence, hidden}, q), makeTensor<float>({batch, sequence, hidden}, k),
       makeTensor<float>({batch, sequence, hidden}, v), HostTensor(),
       makeTensor<int32_t>({batch, sequence}, mask)},
      &pool));
  std::vector<float> expected = attentionReference(q, k, v, batch, sequence, sequence, heads, headSize,
                                                   mask, 1.0f / std::sqrt(float(headSize)), -10000.0f,
                                                   false);
  expectClose(out, expected, 2e-5f);

  // The mask must matter: without it the padded batch differs.
  std::vector<float> unmasked = attentionReference(q, k, v, batch, sequence, sequence, heads, headSize,
                                                   {}, 1.0f / std::sqrt(float(headSize)), -10000.0f, false);
  float difference = 0;
  for (size_t i = sequence * hidden; i < out.size(); ++i) difference = std::max(difference, std::fabs(out[i] - unmasked[i]));
  EXPECT_GT(difference, 1e-3f);
}

TEST(KernelAttention, RightPaddingCausalAndFullyMasked) {
  // Entry 0 has no padding. Entry 1 is right-padded inside the second key
  // tile, so its padded keys are left out of the products. Entry 2 masks
  // every key, which must behave as no mask at all, as in the reference.
  const int batch = 3, sequence = 140, heads = 2, headSize = 8;
  const int hidden = heads * headSize;
  std::vector<float> q = pseudoRandom(batch * sequence * hidden, 21);
  std::vector<float> k = pseudoRandom(batch * sequence * hidden, 22);
  std::vector<float> v = pseudoRandom(batch * sequence * hidden, 23);
  for (float& value : q) value *= 3;
  std::vector<int32_t> mask(batch * sequence, 1);
  for (int j = 130; j < sequence; ++j) mask[1 * sequence + j] = 0;
  for (int j = 0; j < sequence; ++j) mask[2 * sequence + j] = 0;

  for (bool causal : {false, true}) {
    OneNodeGraph g("MultiHeadAttention", 5, 1, "com.microsoft", {3});
    g.node().setIntAttribute("num_heads", heads);
    if (causal) g.node().setIntAttribute("unidirectional", 1);
    ThreadPool pool(2);
    std::vector<float> out = valuesOf<float>(runSingle(
        g.node(), 1,
        {makeTensor<float>({batch, sequence, hidden}, q),
         makeTensor<float>({batch, sequence, hidden}, k),
         makeTensor<float>({batch, sequence, hidden}, v), HostTensor(),
         makeTensor<int32_t>({batch, sequence}, mask)},
        &pool));
    SCOPED_TRACE(causal ? "causal" : "bidirectional");
    std::vector<float> expected =
        attentionReference(q, k, v, batch, sequence, sequence, heads, headSize, mask,
                           1.0f / std::sqrt(float(headSize)), -10000.0f, causal);
    const size_t entry = static_cast<size_t>(sequence * hidden);
    expectClose(std::vector<float>(out.begin(), out.begin() + 2 * entry),
                std::vector<float>(expected.begin(), expected.begin() + 2 * entry), 2e-5f);
    // Scores shifted by -10000 keep only about 3 decimal digits in float32,
    // while the reference computes in double.
    expectClose(std::vector<float>(out.begin() + 2 * entry, out.end()),
                std::vector<float>(expected.begin() + 2 * entry, expected.end()), 1e-3f);
  }
}

TEST(KernelAttention, KeyLengthsScaleAndCrossAttention) {
  // 1-D mask of valid key counts, explicit scale, and 5 queries over 9 keys.
  const int batch = 2, sequence = 5, keySequence = 9, heads = 3, headSize = 4;
  const int hidden = heads * headSize;
  std::vector<float> q = pseudoRandom(batch * sequence * hidden, 9);
  std::vector<float> k = pseudoRandom(batch * keySequence * hidden, 10);
  std::vector<float> v = pseudoRandom(batch * keySequence * hidden, 11);
  OneNodeGraph g("MultiHeadAttention", 5, 1, "com.microsoft", {3});
  g.node().setIntAttribute("num_heads", heads);
  g.node().setFloatAttribute("scale", 0.7f);
  g.node().setFloatAttribute("mask_filter_value", -1e4f);
  std::vector<float> out = valuesOf<float>(runSingle(
      g.node(), 1,
      {makeTensor<float>({batch, sequence, hidden}, q), makeTensor<float>({batch, keySequence, hidden}, k),
       makeTensor<float>({batch, keySequence, hidden}, v), HostTensor(),
       makeTensor<int32_t>({batch}, {9, 4})}));
  std::vector<int32_t> mask(batch * keySequence, 1);
  for (int j = 4; j < keySequence; ++j) mask[keySequence + j] = 0;
  expectClose(out, attentionReference(q, k, v, batch, sequence, keySequence, heads, headSize, mask,
                                      0.7f, -1e4f, false),
              2e-6f);
}

TEST(KernelAttention, PackedQkvWithBiasAndCausalMask) {
  const int batch = 1, sequence = 6, heads = 2, headSize = 4;
  const int hidden = heads * headSize;
  std::vector<float> packed = pseudoRandom(batch * sequence * heads * 3 * headSize, 12);
  std::vector<float> bias = pseudoRandom(3 * hidden, 13);
  // Unpack into [b, s, hidden] Q, K, V with the bias added, for the reference.
  std::vector<float> q(batch * sequence * hidden), k(q.size()), v(q.size());
  for (int t = 0; t < sequence; ++t) {
    for (int n = 0; n < heads; ++n) {
      for (int d = 0; d < headSize; ++d) {
        const int source = ((t * heads + n) * 3) * headSize + d;
        const int target = t * hidden + n * headSize + d;
        q[target] = packed[source] + bias[n * headSize + d];
        k[target] = packed[source + headSize] + bias[hidden + n * headSize + d];
        v[target] = packed[source + 2 * headSize] + bias[2 * hidden + n * headSize + d];
      }
    }
  }
  OneNodeGraph g("MultiHeadAttention", 4, 1, "com.microsoft", {1, 2});
  g.node().setIntAttribute("num_heads", heads);
  g.node().setIntAttribute("unidirectional", 1);
  std::vector<float> out = valuesOf<float>(runSingle(
      g.node(), 1,
      {makeTensor<float>({batch, sequence, heads, 3, headSize}, packed), HostTensor(), HostTensor(),
       makeTensor<float>({3 * hidden}, bias)}));
  expectClose(out, attentionReference(q, k, v, batch, sequence, sequence, heads, headSize, {},
                                      1.0f / 2.0f, -10000.0f, true),
              2e-6f);
}

TEST(KernelAttention, RejectsBadShapesAndPresentOutputs) {
  OneNodeGraph g("MultiHeadAttention", 3, 1, "com.microsoft");
  g.node().setIntAttribute("num_heads", 3);
  auto result = runKernel(g.node(), 1,
                          {makeTensor<float>({1, 2, 8}, std::vector<float>(16)),
                           makeTensor<float>({1, 2, 8}, std::vector<float>(16)),
                           makeTensor<float>({1, 2, 8}, std::vector<float>(16))});
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("multiple of num_heads"), std::string::npos)
      << result.status();

  OneNodeGraph present("MultiHeadAttention", 3, 2, "com.microsoft");
  present.node().setIntAttribute("num_heads", 2);
  auto unsupported = runKernel(present.node(), 1, {});
  ASSERT_FALSE(unsupported.ok());
  EXPECT_EQ(unsupported.status().code(), absl::StatusCode::kUnimplemented);

  OneNodeGraph noHeads("MultiHeadAttention", 3, 1, "com.microsoft");
  EXPECT_FALSE(runKernel(noHeads.node(), 1, {}).ok());
}

}  // namespace
}  // namespace roformer::runtime::testing
