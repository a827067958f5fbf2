// Float math for the hot loops of the CPU kernels: exp and erf approximations
// written so that GCC vectorizes loops over them without -ffast-math, and row
// operations (sum, max, softmax, GELU) built on them.
//
// The array functions are compiled for several x86-64 levels and the best one
// for the running CPU is chosen at load time, so the library stays portable
// while using AVX2 or AVX-512 where present.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace roformer::runtime::cpu {

// e^x with a maximum relative error of about 2e-7 for x in [-87.3, 88.3].
// Inputs below the range return about 1e-38 instead of a denormal or zero,
// and inputs above it return about 2.4e38 instead of infinity. NaN stays NaN.
// Use std::exp where those ends matter (the Exp op).
inline float fastExp(float x) {
  x = std::min(std::max(x, -87.33f), 88.37f);
  // Round x / ln 2 to the nearest integer n with the 1.5 * 2^23 trick, which
  // vectorizes where std::nearbyint may not.
  constexpr float kRoundingShift = 12582912.0f;
  float shifted = x * 1.44269504088896341f + kRoundingShift;
  float n = shifted - kRoundingShift;
  // r = x - n ln 2, with ln 2 split in two parts so the product is exact.
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  // Minimax polynomial for e^r on [-ln 2 / 2, ln 2 / 2] (the Cephes expf
  // coefficients).
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * (r * r) + r + 1.0f;
  int32_t exponent = static_cast<int32_t>(n) + 127;
  return y * std::bit_cast<float>(exponent << 23);
}

// erf(x) with a maximum absolute error of about 2e-7 (relative 2e-7 near 0).
// Two polynomial fits, computed by this project with numpy on Chebyshev nodes
// against math.erf: erf(x) = x P(x^2) for |x| < 0.921875, and
// erf(x) = 1 - exp(Q(|x|)) above, where Q fits log(erfc(x)) up to 3.925, past
// which erf(x) rounds to 1 in float.
inline float fastErf(float x) {
  float ax = std::min(std::fabs(x), 3.925f);
  float u = ax * ax;
  float small = -6.008919444866478e-4f;
  small = small * u + 4.997054114937782e-3f;
  small = small * u + -2.676953189074993e-2f;
  small = small * u + 1.1281906068325043e-1f;
  small = small * u + -3.761250376701355e-1f;
  small = small * u + 1.1283791065216064f;
  small = small * ax;
  float q = 1.6355552361346781e-6f;
  q = q * ax + -4.599288513418287e-5f;
  q = q * ax + 5.959701957181096e-4f;
  q = q * ax + -4.754332825541496e-3f;
  q = q * ax + 2.640233375132084e-2f;
  q = q * ax + -1.1004021763801575e-1f;
  q = q * ax + -6.318755745887756e-1f;
  q = q * ax + -1.1302002668380737f;
  q = q * ax + 3.109433746431023e-4f;
  float large = 1.0f - fastExp(q);
  float magnitude = ax < 0.921875f ? small : large;
  return std::copysign(magnitude, x);
}

// GELU with erf: x / 2 * (1 + erf(x / sqrt(2))).
inline float geluErf(float x) { return 0.5f * x * (1.0f + fastErf(x * 0.70710678118654752f)); }

// GELU with the tanh approximation, tanh computed as 1 - 2 / (e^(2z) + 1).
inline float geluTanh(float x) {
  float z = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  float tanhZ = 1.0f - 2.0f / (fastExp(2.0f * z) + 1.0f);
  return 0.5f * x * (1.0f + tanhZ);
}

inline float sigmoid(float x) { return 1.0f / (1.0f + fastExp(-x)); }

// Array forms, each over n contiguous floats. `y` may equal `x`.
float sumOf(const float* x, int64_t n);
float maxOf(const float* x, int64_t n);
// Writes y[i] = e^(x[i] - shift) and returns the sum of the y[i].
float expShiftedSum(const float* x, float shift, float* y, int64_t n);
void scaleInPlace(float* y, float factor, int64_t n);
// Returns the sum of (x[i] - mean)^2.
float sumSquaredDeviation(const float* x, float mean, int64_t n);
// y[i] = (x[i] - mean) * invStdDev * scale[i] + bias[i]; bias may be null.
void normalizeRow(const float* x, float mean, float invStdDev, const float* scale,
                  const float* bias, float* y, int64_t n);
// y[i] = a[i] + b[i] + bias[i]; bias may be null.
void addRows(const float* a, const float* b, const float* bias, float* y, int64_t n);
void erfArray(const float* x, float* y, int64_t n);
void sigmoidArray(const float* x, float* y, int64_t n);
void geluErfArray(const float* x, float* y, int64_t n);
void geluTanhArray(const float* x, float* y, int64_t n);
// y[i] = gelu(x[i] + bias[i % biasLength]); n is a multiple of biasLength.
void biasGeluErfArray(const float* x, const float* bias, int64_t biasLength, float* y, int64_t n);
void biasGeluTanhArray(const float* x, const float* bias, int64_t biasLength, float* y,
                       int64_t n);

}  // namespace roformer::runtime::cpu
