#include "runtime/cpu/VectorMath.h"

// Each function below is compiled three times (baseline x86-64, AVX2 + FMA,
// AVX-512) and the dynamic loader picks the copy for the running CPU.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ROFORMER_CLONES \
  __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define ROFORMER_CLONES
#endif

namespace roformer::runtime::cpu {

namespace {
// Reductions keep this many partial results so that the vectorizer can use
// one lane per partial result without reassociating float additions.
constexpr int kLanes = 16;
}  // namespace

ROFORMER_CLONES float sumOf(const float* x, int64_t n) {
  float partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) partial[j] += x[i + j];
  }
  float total = 0.0f;
  for (int j = 0; j < kLanes; ++j) total += partial[j];
  for (; i < n; ++i) total += x[i];
  return total;
}

ROFORMER_CLONES float maxOf(const float* x, int64_t n) {
  float best = -INFINITY;
  int64_t i = 0;
  if (n >= kLanes) {
    float partial[kLanes];
    for (int j = 0; j < kLanes; ++j) partial[j] = x[j];
    for (i = kLanes; i + kLanes <= n; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) partial[j] = partial[j] < x[i + j] ? x[i + j] : partial[j];
    }
    for (int j = 0; j < kLanes; ++j) best = best < partial[j] ? partial[j] : best;
  }
  for (; i < n; ++i) best = best < x[i] ? x[i] : best;
  return best;
}

ROFORMER_CLONES float expShiftedSum(const float* x, float shift, float* y, int64_t n) {
  float partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      float e = fastExp(x[i + j] - shift);
      y[i + j] = e;
      partial[j] += e;
    }
  }
  float total = 0.0f;
  for (int j = 0; j < kLanes; ++j) total += partial[j];
  for (; i < n; ++i) {
    float e = fastExp(x[i] - shift);
    y[i] = e;
    total += e;
  }
  return total;
}

ROFORMER_CLONES void scaleInPlace(float* y, float factor, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= factor;
}

ROFORMER_CLONES float sumSquaredDeviation(const float* x, float mean, int64_t n) {
  float partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      float deviation = x[i + j] - mean;
      partial[j] += deviation * deviation;
    }
  }
  float total = 0.0f;
  for (int j = 0; j < kLanes; ++j) total += partial[j];
  for (; i < n; ++i) total += (x[i] - mean) * (x[i] - mean);
  return total;
}

ROFORMER_CLONES void normalizeRow(const float* x, float mean, float invStdDev, const float* scale,
                                  const float* bias, float* y, int64_t n) {
  if (bias != nullptr) {
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * invStdDev * scale[i] + bias[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * invStdDev * scale[i];
  }
}

ROFORMER_CLONES void addRows(const float* a, const float* b, const float* bias, float* y,
                             int64_t n) {
  if (bias != nullptr) {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i] + bias[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
  }
}

ROFORMER_CLONES void erfArray(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fastErf(x[i]);
}

ROFORMER_CLONES void sigmoidArray(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = sigmoid(x[i]);
}

ROFORMER_CLONES void geluErfArray(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = geluErf(x[i]);
}

ROFORMER_CLONES void geluTanhArray(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = geluTanh(x[i]);
}

ROFORMER_CLONES void biasGeluErfArray(const float* x, const float* bias, int64_t biasLength,
                                      float* y, int64_t n) {
  for (int64_t row = 0; row < n; row += biasLength) {
    const float* in = x + row;
    float* out = y + row;
    for (int64_t i = 0; i < biasLength; ++i) out[i] = geluErf(in[i] + bias[i]);
  }
}

ROFORMER_CLONES void biasGeluTanhArray(const float* x, const float* bias, int64_t biasLength,
                                       float* y, int64_t n) {
  for (int64_t row = 0; row < n; row += biasLength) {
    const float* in = x + row;
    float* out = y + row;
    for (int64_t i = 0; i < biasLength; ++i) out[i] = geluTanh(in[i] + bias[i]);
  }
}

}  // namespace roformer::runtime::cpu
