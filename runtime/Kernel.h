// The interface between the executor and the kernels of a backend.
//
// A kernel is built once per node when a session is created: it reads the
// node's attributes and constant inputs then, so that running it parses
// nothing. Each run first asks the kernel for its output types and shapes
// (from the input shapes and, for shape-carrying inputs such as Reshape's,
// their values), then the executor provides output buffers and calls
// compute().
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ir/Graph.h"
#include "runtime/Tensor.h"

namespace roformer::runtime {

class ThreadPool;

// What a kernel sees of its node when it runs.
struct KernelContext {
  // One view per node input; an omitted optional input has type kUndefined
  // and null data.
  std::span<const TensorView> inputs;
  // One view per node output. In inferOutputs() the kernel sets type and
  // shape; in compute() data points to a buffer of that size. The CPU
  // kernels skip optional outputs whose data is null in compute(), so an
  // executor need not allocate outputs the node omits.
  std::span<TensorView> outputs;
  // Threads the kernel may use; null means run on the calling thread.
  ThreadPool* threads = nullptr;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  // Sets the type and shape of each output from the inputs. Input data is
  // readable here (host backends), because some output shapes depend on it.
  virtual absl::Status inferOutputs(KernelContext& context) = 0;
  virtual absl::Status compute(KernelContext& context) = 0;
  // True for kernels that may write output i into input i's buffer when the
  // two have the same element type and size.
  virtual bool canRunInPlace() const { return false; }
};

// Builds a kernel for `node`; constant inputs are available through
// ir::constantOf(node.input(i)). Returns InvalidArgument naming the node for
// attribute values the kernel does not support.
using KernelFactory = std::function<absl::StatusOr<std::unique_ptr<Kernel>>(const ir::Node& node)>;

// Kernels of one backend keyed by (domain, op type), with the opset range
// each supports.
class KernelRegistry {
 public:
  void add(std::string_view domain, std::string_view opType, KernelFactory factory,
           int minOpset = 1, int maxOpset = 1000);
  // Returns the factory for `node` at `opset`, or null when none is registered.
  const KernelFactory* find(std::string_view domain, std::string_view opType, int opset) const;
  bool supports(std::string_view domain, std::string_view opType) const;
  // "domain.OpType" strings of every registered op, sorted.
  std::vector<std::string> listOps() const;

 private:
  struct Entry {
    std::string domain;
    std::string opType;
    int minOpset;
    int maxOpset;
    KernelFactory factory;
  };
  std::vector<Entry> entries_;
};

// A fixed-size pool for data-parallel loops inside kernels.
class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  int size() const { return size_; }
  // Runs fn(begin, end) over [0, count) split into at most size() contiguous
  // chunks of at least `grain` items, and waits for all of them.
  void parallelFor(int64_t count, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int size_;
};

}  // namespace roformer::runtime
