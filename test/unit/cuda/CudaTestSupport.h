// Helpers for the CUDA backend tests: one-node models, runs on the CPU and
// CUDA backends, and comparisons. Every test that needs a GPU starts with
// SKIP_WITHOUT_CUDA(), so on machines without one the suite reports those
// tests as skipped.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/Graph.h"
#include "runtime/Session.h"
#include "runtime/cuda/CudaBackend.h"
#include "runtime/cuda/CudaContext.h"

namespace roformer::runtime::cuda::testing {

#define SKIP_WITHOUT_CUDA()                                                        \
  do {                                                                             \
    absl::Status cudaStatusForSkip = ::roformer::runtime::cuda::cudaDeviceStatus(); \
    if (!cudaStatusForSkip.ok()) GTEST_SKIP() << cudaStatusForSkip.message();       \
  } while (false)

// One input of the node under test.
struct InputSpec {
  enum class Kind { kFloat, kTyped, kConstant, kOmitted };
  Kind kind = Kind::kFloat;
  std::string name;
  DataType type = DataType::kFloat;  // kTyped
  int rank = 0;
  std::shared_ptr<ir::Tensor> constant;  // kConstant

  // A graph input of the model's float type (float32, or the reduced type
  // of the GPU model).
  static InputSpec floating(std::string name, int rank) {
    return InputSpec{Kind::kFloat, std::move(name), DataType::kFloat, rank, nullptr};
  }
  // A graph input of a fixed type (ids, masks).
  static InputSpec typed(std::string name, DataType type, int rank) {
    return InputSpec{Kind::kTyped, std::move(name), type, rank, nullptr};
  }
  static InputSpec constantTensor(std::string name, std::shared_ptr<ir::Tensor> tensor) {
    return InputSpec{Kind::kConstant, std::move(name), tensor->dataType(),
                     static_cast<int>(tensor->rank()), std::move(tensor)};
  }
  static InputSpec omitted() { return InputSpec{Kind::kOmitted, "", DataType::kUndefined, 0, nullptr}; }
};

// A model with one node of `op`. Each float output passes through an
// Identity before it becomes a graph output, so on the GPU the node itself
// stores the session's reduced type and the Identity widens it.
struct OpSpec {
  std::string op;
  std::string domain;
  std::vector<InputSpec> inputs;
  size_t outputs = 1;
  std::function<void(ir::Node&)> attributes;
  int opset = 17;
};

std::unique_ptr<ir::Model> buildModel(const OpSpec& spec, DataType floatInputType);

// Graph-input values by name, as float32 for float inputs.
using Feeds = std::map<std::string, HostTensor>;

// Converts float32 feeds of the spec's float inputs to `type`, and returns
// in `rounded` the same values widened back, for the CPU reference.
Feeds narrowFeeds(const OpSpec& spec, const Feeds& feeds, DataType type, Feeds& rounded);

struct RunResult {
  std::vector<HostTensor> outputs;
  CudaBackendStats stats;
};

// Runs `model` on a new backend: "cpu", or "cuda" at `precision`.
absl::StatusOr<RunResult> runModel(const ir::Model& model, const std::string& device,
                                   Precision precision, const Feeds& feeds);

// Builds a model of any shape for both backends.
using ModelBuilder = std::function<std::unique_ptr<ir::Model>(DataType floatInputType)>;

struct CpuGpuRuns {
  RunResult cpu;
  RunResult gpu;
};

// Runs `build(float32)` on the CPU and `build(activationTypeOf(precision))`
// on the GPU at `precision`. The float feeds named in `floatInputs` are
// narrowed to the GPU's type, and the CPU gets the same values widened back.
absl::StatusOr<CpuGpuRuns> runOnBoth(const ModelBuilder& build, const OpSpec& floatInputs,
                                     const Feeds& feeds, Precision precision);

// Builds the spec for both backends, runs it, and checks every output of the
// GPU run against the CPU run within atol + rtol * |expected|, and that no
// step took the CPU fallback. Float feeds are rounded to the precision
// first, so only the kernel's own error counts.
void expectMatchesCpu(const OpSpec& spec, const Feeds& feeds, Precision precision, float atol,
                      float rtol);

// Tolerances used across the suite. float32 kernels agree with the CPU up to
// rounding. fp16 keeps 11 significant bits and bf16 8, so their results carry
// a relative error of about 2^-11 and 2^-8 per stored value.
struct Tolerance {
  float atol;
  float rtol;
};
Tolerance toleranceFor(Precision precision);

struct Comparison {
  double maxAbsError = 0;
  double cosine = 1;
  size_t count = 0;
};
Comparison compareTensors(const HostTensor& actual, const HostTensor& expected);

// Deterministic values in [low, high).
std::vector<float> uniformValues(size_t count, uint32_t seed, float low = -1.0f, float high = 1.0f);
HostTensor floatTensor(Shape shape, uint32_t seed, float low = -1.0f, float high = 1.0f);
std::shared_ptr<ir::Tensor> floatConstant(std::vector<int64_t> dims, uint32_t seed,
                                          float low = -1.0f, float high = 1.0f);

}  // namespace roformer::runtime::cuda::testing
