#include "CudaTestSupport.h"

#include <cstring>

namespace roformer::runtime::cuda::testing {

std::unique_ptr<ir::Model> buildModel(const OpSpec& spec, DataType floatInputType) {
  auto model = std::make_unique<ir::Model>();
  model->setOpsetVersion("", spec.opset);
  if (!spec.domain.empty()) model->setOpsetVersion(spec.domain, 1);
  ir::Graph& graph = model->graph();

  std::vector<ir::Value*> inputs;
  for (const InputSpec& input : spec.inputs) {
    switch (input.kind) {
      case InputSpec::Kind::kOmitted:
        inputs.push_back(nullptr);
        break;
      case InputSpec::Kind::kConstant:
        inputs.push_back(graph.addInitializer(input.name, input.constant));
        break;
      case InputSpec::Kind::kFloat:
      case InputSpec::Kind::kTyped: {
        ir::Value* value = graph.getOrCreateValue(input.name);
        const DataType type = input.kind == InputSpec::Kind::kFloat ? floatInputType : input.type;
        value->setTensorType(type, std::vector<ir::Dim>(input.rank, ir::Dim::unknown()));
        graph.addInput(value);
        inputs.push_back(value);
        break;
      }
    }
  }

  std::vector<std::string> outputNames;
  for (size_t i = 0; i < spec.outputs; ++i) outputNames.push_back("result" + std::to_string(i));
  ir::Node* node = graph.createNode(spec.op, spec.domain, inputs, outputNames, nullptr, "tested");
  if (spec.attributes) spec.attributes(*node);

  for (size_t i = 0; i < spec.outputs; ++i) {
    ir::Node* identity = graph.createNode("Identity", "", {node->output(i)},
                                          {"output" + std::to_string(i)}, nullptr,
                                          "widen" + std::to_string(i));
    graph.addOutput(identity->output(0));
  }
  return model;
}

Feeds narrowFeeds(const OpSpec& spec, const Feeds& feeds, DataType type, Feeds& rounded) {
  Feeds narrowed;
  rounded.clear();
  for (const auto& [name, tensor] : feeds) {
    bool isFloatInput = false;
    for (const InputSpec& input : spec.inputs) {
      if (input.name == name && input.kind == InputSpec::Kind::kFloat) isFloatInput = true;
    }
    if (!isFloatInput || type == DataType::kFloat) {
      narrowed.emplace(name, tensor);
      rounded.emplace(name, tensor);
      continue;
    }
    HostTensor narrow(type, tensor.shape());
    HostTensor widened(DataType::kFloat, tensor.shape());
    const float* values = tensor.data<float>();
    for (int64_t i = 0; i < tensor.elementCount(); ++i) {
      const uint16_t bits = type == DataType::kFloat16 ? floatToHalfBits(values[i])
                                                       : floatToBfloat16Bits(values[i]);
      narrow.data<uint16_t>()[i] = bits;
      widened.data<float>()[i] =
          type == DataType::kFloat16 ? halfBitsToFloat(bits) : bfloat16BitsToFloat(bits);
    }
    narrowed.emplace(name, narrow);
    rounded.emplace(name, widened);
  }
  return narrowed;
}

absl::StatusOr<RunResult> runModel(const ir::Model& model, const std::string& device,
                                   Precision precision, const Feeds& feeds) {
  SessionOptions options;
  options.device = device;
  options.threads = 2;
  options.precision = precision;
  std::shared_ptr<CudaBackend> cudaBackend;
  if (device == "cuda") {
    BackendOptions backendOptions;
    backendOptions.precision = precision;
    absl::StatusOr<std::shared_ptr<CudaBackend>> created = CudaBackend::create(backendOptions);
    if (!created.ok()) return created.status();
    cudaBackend = *created;
    options.backend = cudaBackend;
  }
  absl::StatusOr<std::unique_ptr<Session>> session = Session::create(model, options);
  if (!session.ok()) return session.status();
  absl::StatusOr<std::map<std::string, HostTensor>> outputs = (*session)->run(feeds);
  if (!outputs.ok()) return outputs.status();
  RunResult result;
  for (const TensorInfo& info : (*session)->outputs()) result.outputs.push_back(outputs->at(info.name));
  if (cudaBackend) result.stats = cudaBackend->stats();
  return result;
}

absl::StatusOr<CpuGpuRuns> runOnBoth(const ModelBuilder& build, const OpSpec& floatInputs,
                                     const Feeds& feeds, Precision precision) {
  const DataType floatType = activationTypeOf(precision);
  Feeds rounded;
  Feeds narrowed = narrowFeeds(floatInputs, feeds, floatType, rounded);
  absl::StatusOr<RunResult> cpu = runModel(*build(DataType::kFloat), "cpu", Precision::kFp32, rounded);
  if (!cpu.ok()) return cpu.status();
  absl::StatusOr<RunResult> gpu = runModel(*build(floatType), "cuda", precision, narrowed);
  if (!gpu.ok()) return gpu.status();
  return CpuGpuRuns{std::move(*cpu), std::move(*gpu)};
}

Tolerance toleranceFor(Precision precision) {
  switch (precision) {
    case Precision::kFp16:
      return {2e-2f, 1e-2f};
    case Precision::kBf16:
      return {6e-2f, 4e-2f};
    case Precision::kFp32:
      break;
  }
  return {2e-5f, 1e-5f};
}

Comparison compareTensors(const HostTensor& actual, const HostTensor& expected) {
  Comparison comparison;
  comparison.count = static_cast<size_t>(expected.elementCount());
  double dot = 0;
  double actualNorm = 0;
  double expectedNorm = 0;
  for (int64_t i = 0; i < expected.elementCount(); ++i) {
    const double a = actual.data<float>()[i];
    const double e = expected.data<float>()[i];
    comparison.maxAbsError = std::max(comparison.maxAbsError, std::fabs(a - e));
    dot += a * e;
    actualNorm += a * a;
    expectedNorm += e * e;
  }
  if (actualNorm > 0 && expectedNorm > 0) {
    comparison.cosine = dot / std::sqrt(actualNorm * expectedNorm);
  } else {
    comparison.cosine = actualNorm == expectedNorm ? 1.0 : 0.0;
  }
  return comparison;
}

void expectMatchesCpu(const OpSpec& spec, const Feeds& feeds, Precision precision, float atol,
                      float rtol) {
  const DataType floatType = activationTypeOf(precision);
  Feeds rounded;
  Feeds narrowed = narrowFeeds(spec, feeds, floatType, rounded);
  std::unique_ptr<ir::Model> cpuModel = buildModel(spec, DataType::kFloat);
  std::unique_ptr<ir::Model> gpuModel = buildModel(spec, floatType);

  absl::StatusOr<RunResult> expected = runModel(*cpuModel, "cpu", Precision::kFp32, rounded);
  ASSERT_TRUE(expected.ok()) << expected.status();
  absl::StatusOr<RunResult> actual = runModel(*gpuModel, "cuda", precision, narrowed);
  ASSERT_TRUE(actual.ok()) << actual.status();
  EXPECT_EQ(actual->stats.fallbackSteps, 0u) << "a step ran the CPU fallback";

  ASSERT_EQ(actual->outputs.size(), expected->outputs.size());
  for (size_t i = 0; i < expected->outputs.size(); ++i) {
    const HostTensor& a = actual->outputs[i];
    const HostTensor& e = expected->outputs[i];
    ASSERT_EQ(a.type(), e.type()) << "output " << i;
    ASSERT_EQ(a.shape(), e.shape()) << "output " << i;
    if (e.type() != DataType::kFloat) {
      ASSERT_EQ(std::memcmp(a.rawData(), e.rawData(), e.byteSize()), 0) << "output " << i;
      continue;
    }
    int reported = 0;
    for (int64_t k = 0; k < e.elementCount(); ++k) {
      const float av = a.data<float>()[k];
      const float ev = e.data<float>()[k];
      if (std::fabs(av - ev) <= atol + rtol * std::fabs(ev)) continue;
      ADD_FAILURE() << "output " << i << " element " << k << ": GPU " << av << ", CPU " << ev;
      if (++reported == 5) break;
    }
  }
}

std::vector<float> uniformValues(size_t count, uint32_t seed, float low, float high) {
  std::vector<float> values(count);
  uint32_t state = seed * 2654435761u + 12345u;
  for (float& value : values) {
    state = state * 1664525u + 1013904223u;
    const float unit = static_cast<float>(state >> 8) / static_cast<float>(1u << 24);
    value = low + (high - low) * unit;
  }
  return values;
}

HostTensor floatTensor(Shape shape, uint32_t seed, float low, float high) {
  std::vector<float> values = uniformValues(static_cast<size_t>(shapeElementCount(shape)), seed, low, high);
  return HostTensor::fromVector<float>(std::move(shape), values);
}

std::shared_ptr<ir::Tensor> floatConstant(std::vector<int64_t> dims, uint32_t seed, float low,
                                          float high) {
  int64_t count = 1;
  for (int64_t dim : dims) count *= dim;
  return ir::Tensor::create<float>(std::move(dims),
                                   uniformValues(static_cast<size_t>(count), seed, low, high));
}

}  // namespace roformer::runtime::cuda::testing
