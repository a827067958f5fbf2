// Helpers for the CPU kernel tests: build a one-node graph, run its kernel
// on host tensors, and compare results.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/Graph.h"
#include "runtime/Kernel.h"
#include "runtime/Tensor.h"
#include "runtime/cpu/CpuKernels.h"

namespace roformer::runtime::testing {

template <typename T>
HostTensor makeTensor(Shape shape, const std::vector<T>& values) {
  EXPECT_EQ(shapeElementCount(shape), static_cast<int64_t>(values.size()))
      << "test data does not fill shape " << shapeToString(shape);
  return HostTensor::fromVector<T>(std::move(shape), values);
}

template <typename T>
std::vector<T> valuesOf(const HostTensor& tensor) {
  EXPECT_EQ(tensor.type(), ir::DataTypeOf<T>::value) << "unexpected element type";
  return std::vector<T>(tensor.data<T>(), tensor.data<T>() + tensor.elementCount());
}

// A graph with one node whose inputs are graph values named in0, in1, ...
// (null for the positions listed in `omittedInputs`) and outputs out0, ...
// (null for `omittedOutputs`).
class OneNodeGraph {
 public:
  OneNodeGraph(const std::string& opType, size_t inputCount, size_t outputCount,
               const std::string& domain = "", std::vector<size_t> omittedInputs = {},
               std::vector<size_t> omittedOutputs = {}) {
    std::vector<ir::Value*> inputs;
    for (size_t i = 0; i < inputCount; ++i) {
      bool omitted = std::find(omittedInputs.begin(), omittedInputs.end(), i) != omittedInputs.end();
      inputs.push_back(omitted ? nullptr : graph_.getOrCreateValue("in" + std::to_string(i)));
    }
    std::vector<std::string> outputs;
    for (size_t i = 0; i < outputCount; ++i) {
      bool omitted =
          std::find(omittedOutputs.begin(), omittedOutputs.end(), i) != omittedOutputs.end();
      outputs.push_back(omitted ? "" : "out" + std::to_string(i));
    }
    node_ = graph_.createNode(opType, domain, inputs, outputs, nullptr, "node");
  }

  ir::Node& node() { return *node_; }
  ir::Graph& graph() { return graph_; }

 private:
  ir::Graph graph_;
  ir::Node* node_ = nullptr;
};

// Builds the node's CPU kernel at `opset` and runs it. Inputs of kUndefined
// type are omitted inputs. Outputs the node omits come back empty.
inline absl::StatusOr<std::vector<HostTensor>> runKernel(const ir::Node& node, int opset,
                                                        const std::vector<HostTensor>& inputs,
                                                        ThreadPool* threads = nullptr) {
  const KernelFactory* factory =
      cpuKernelRegistry().find(node.domain(), node.opType(), opset);
  if (factory == nullptr) {
    return absl::NotFoundError("no CPU kernel for " + node.opType() + " at opset " +
                               std::to_string(opset));
  }
  absl::StatusOr<std::unique_ptr<Kernel>> kernel = (*factory)(node);
  if (!kernel.ok()) return kernel.status();

  std::vector<TensorView> inputViews;
  for (const HostTensor& input : inputs) inputViews.push_back(input.view());
  std::vector<TensorView> outputViews(node.outputCount());
  KernelContext context{inputViews, outputViews, threads};
  if (absl::Status status = (*kernel)->inferOutputs(context); !status.ok()) return status;

  std::vector<HostTensor> outputs(node.outputCount());
  for (size_t i = 0; i < node.outputCount(); ++i) {
    if (node.output(i) == nullptr) continue;
    outputs[i] = HostTensor(outputViews[i].type, outputViews[i].shape);
    outputViews[i].data = outputs[i].rawData();
  }
  if (absl::Status status = (*kernel)->compute(context); !status.ok()) return status;
  return outputs;
}

// Runs the kernel and returns its first output, failing the test on error.
inline HostTensor runSingle(const ir::Node& node, int opset, const std::vector<HostTensor>& inputs,
                            ThreadPool* threads = nullptr) {
  absl::StatusOr<std::vector<HostTensor>> outputs = runKernel(node, opset, inputs, threads);
  EXPECT_TRUE(outputs.ok()) << outputs.status();
  if (!outputs.ok()) return HostTensor();
  return (*outputs)[0];
}

inline void expectNear(const std::vector<float>& actual, const std::vector<float>& expected,
                       float tolerance) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], tolerance) << "at index " << i;
  }
}

// A deterministic pseudo-random sequence in [-1, 1) (a linear congruential
// generator), so tests need no seeds from the environment.
inline std::vector<float> pseudoRandom(size_t count, uint32_t seed) {
  std::vector<float> values(count);
  uint32_t state = seed * 2654435761u + 1;
  for (float& value : values) {
    state = state * 1664525u + 1013904223u;
    value = static_cast<float>(state >> 8) / static_cast<float>(1 << 23) - 1.0f;
  }
  return values;
}

}  // namespace roformer::runtime::testing
