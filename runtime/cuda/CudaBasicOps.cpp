// Device implementations of the elementwise, data movement, shape,
// reduction and Softmax ops. Shapes come from the CPU kernels (OpKernel);
// these classes only launch the work.
#include <algorithm>
#include <numeric>

#include "runtime/cpu/KernelUtils.h"
#include "runtime/cuda/CudaKernel.h"
#include "runtime/cuda/CudaOps.h"
#include "runtime/cuda/MatMulFusion.h"

namespace roformer::runtime::cuda {
namespace {

bool isIntegral(DataType type) { return type == DataType::kBool || ir::isInteger(type); }

bool isNumeric(DataType type) { return isIntegral(type) || ir::isFloatingPoint(type); }

std::vector<int64_t> stridesOf(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
  return strides;
}

// Copies `source` to `destination`, converting the element type; nothing
// when they are the same buffer of the same type (the kernel ran in place).
absl::Status copyOrConvert(const TensorView& source, const TensorView& destination,
                           cudaStream_t stream, const std::string& name) {
  if (source.data == destination.data && source.type == destination.type) return absl::OkStatus();
  return cudaStatus(launchConvert(source.data, elementTypeOf(source.type), destination.data,
                                  elementTypeOf(destination.type), destination.elementCount(),
                                  stream),
                    name + ": copying the data");
}

// ---- Elementwise ----

class UnaryKernel : public OpKernel {
 public:
  UnaryKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
              std::unique_ptr<Kernel> cpu, UnaryOp op)
      : OpKernel(node, std::move(context), std::move(cpu), Options{.canRunInPlace = true}),
        op_(op) {}

 protected:
  bool deviceSupports(Call& call) override {
    return isNumeric(call.input(0).type) && call.input(0).shape.size() <= kMaxDims;
  }

  absl::Status runDevice(Call& call) override {
    const TensorView& input = call.input(0);
    TensorView& output = call.output(0);
    ElementwiseArgs args;
    args.op = static_cast<int>(op_);
    args.arity = 1;
    if (!makeElementwiseLoop(output.shape, {input.shape}, args)) {
      return unimplemented("rank ", output.shape.size(), " is above ", kMaxDims);
    }
    args.inputs[0] = input.data;
    args.inputTypes[0] = elementTypeOf(input.type);
    args.output = output.data;
    args.outputType = elementTypeOf(output.type);
    args.integerMath = isIntegral(input.type) && isIntegral(output.type);
    return check(launchUnary(args, call.stream()), "launching the kernel");
  }

 private:
  UnaryOp op_;
};

class BinaryKernel : public OpKernel {
 public:
  BinaryKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
               std::unique_ptr<Kernel> cpu, BinaryOp op, bool biasFusedIntoProducer)
      : OpKernel(node, std::move(context), std::move(cpu),
                 Options{.hostEvaluable = !biasFusedIntoProducer, .canRunInPlace = true}),
        op_(op),
        biasFused_(biasFusedIntoProducer) {}

 protected:
  bool deviceSupports(Call& call) override {
    // The CPU kernel would add a fused bias a second time.
    if (biasFused_) return true;
    const size_t arity = op_ == BinaryOp::kWhere ? 3 : 2;
    if (call.kernel.inputs.size() != arity) return false;
    std::vector<Shape> shapes;
    for (size_t i = 0; i < arity; ++i) {
      if (!call.hasInput(i) || !isNumeric(call.input(i).type)) return false;
      shapes.push_back(call.input(i).shape);
    }
    // The output shape is not set yet when inferOutputs calls this, so it
    // is broadcast from the inputs. Above kMaxDims merged dims, fall back.
    absl::StatusOr<Shape> output = cpu::broadcastShapes(name(), shapes);
    if (!output.ok()) return false;
    ElementwiseArgs loop;
    return makeElementwiseLoop(*output, shapes, loop);
  }

  absl::Status runDevice(Call& call) override {
    TensorView& output = call.output(0);
    if (biasFused_) {
      // The MatMul producing input 0 already added this bias (cuBLASLt's
      // bias epilogue); this node only moves its result.
      return copyOrConvert(call.input(0), output, call.stream(), name());
    }
    const size_t arity = op_ == BinaryOp::kWhere ? 3 : 2;
    ElementwiseArgs args;
    args.op = static_cast<int>(op_);
    args.arity = static_cast<int>(arity);
    std::vector<Shape> shapes;
    for (size_t i = 0; i < arity; ++i) shapes.push_back(call.input(i).shape);
    if (!makeElementwiseLoop(output.shape, shapes, args)) {
      return unimplemented("rank ", output.shape.size(), " is above ", kMaxDims);
    }
    bool integerOperands = true;
    for (size_t i = 0; i < arity; ++i) {
      args.inputs[i] = call.input(i).data;
      args.inputTypes[i] = elementTypeOf(call.input(i).type);
      // Where's condition does not decide the arithmetic.
      if ((op_ != BinaryOp::kWhere || i > 0) && !isIntegral(call.input(i).type)) {
        integerOperands = false;
      }
    }
    args.output = output.data;
    args.outputType = elementTypeOf(output.type);
    args.integerMath = integerOperands && isIntegral(output.type);
    return check(launchBinary(args, call.stream()), "launching the kernel");
  }

 private:
  BinaryOp op_;
  bool biasFused_;
};

// ---- Data movement ----

// Identity, Reshape, Squeeze, Unsqueeze, Flatten: the data is unchanged, so
// a copy (nothing when the planner ran the node in place).
class ViewKernel : public OpKernel {
 public:
  ViewKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
             std::unique_ptr<Kernel> cpu, std::vector<int> shapeInputs)
      : OpKernel(node, std::move(context), std::move(cpu),
                 Options{.shapeInputs = std::move(shapeInputs), .canRunInPlace = true}) {}

 protected:
  absl::Status runDevice(Call& call) override {
    return copyOrConvert(call.input(0), call.output(0), call.stream(), name());
  }
};

class TransposeKernel : public OpKernel {
 public:
  TransposeKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
                  std::unique_ptr<Kernel> cpu, std::vector<int64_t> perm)
      : OpKernel(node, std::move(context), std::move(cpu), Options{}), perm_(std::move(perm)) {}

 protected:
  bool deviceSupports(Call& call) override { return call.input(0).shape.size() <= kMaxDims; }

  absl::Status runDevice(Call& call) override {
    const TensorView& input = call.input(0);
    TensorView& output = call.output(0);
    const size_t rank = input.shape.size();
    std::vector<int64_t> perm = perm_;
    if (perm.empty()) {
      for (size_t d = 0; d < rank; ++d) perm.push_back(static_cast<int64_t>(rank - 1 - d));
    }
    const std::vector<int64_t> inputStrides = stridesOf(input.shape);
    const std::vector<int64_t> outputStrides = stridesOf(output.shape);
    StridedCopyArgs args;
    args.rank = static_cast<int>(std::max<size_t>(rank, 1));
    args.dims[0] = 1;
    for (size_t d = 0; d < rank; ++d) {
      const int64_t axis = perm[d] < 0 ? perm[d] + static_cast<int64_t>(rank) : perm[d];
      args.dims[d] = output.shape[d];
      args.sourceStrides[d] = inputStrides[axis];
      args.destinationStrides[d] = outputStrides[d];
    }
    args.source = input.data;
    args.sourceType = elementTypeOf(input.type);
    args.destination = output.data;
    args.destinationType = elementTypeOf(output.type);
    args.count = output.elementCount();
    return check(launchStridedCopy(args, call.stream()), "launching the copy");
  }

 private:
  std::vector<int64_t> perm_;
};

class SliceKernel : public OpKernel {
 public:
  // Before opset 10, starts, ends and axes are attributes.
  SliceKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
              std::unique_ptr<Kernel> cpu, bool attributeForm, std::vector<int64_t> starts,
              std::vector<int64_t> axes)
      : OpKernel(node, std::move(context), std::move(cpu),
                 Options{.shapeInputs = attributeForm ? std::vector<int>{}
                                                      : std::vector<int>{1, 2, 3, 4}}),
        attributeForm_(attributeForm),
        starts_(std::move(starts)),
        axes_(std::move(axes)) {}

 protected:
  bool deviceSupports(Call& call) override { return call.input(0).shape.size() <= kMaxDims; }

  absl::Status runDevice(Call& call) override {
    const TensorView& input = call.input(0);
    TensorView& output = call.output(0);
    const int64_t rank = static_cast<int64_t>(input.shape.size());
    std::vector<int64_t> starts = starts_;
    std::vector<int64_t> axes = axes_;
    std::vector<int64_t> steps;
    if (!attributeForm_) {
      absl::StatusOr<std::vector<int64_t>> values = integers(call, 1, "starts");
      if (!values.ok()) return values.status();
      starts = *values;
      if (call.hasInput(3)) {
        values = integers(call, 3, "axes");
        if (!values.ok()) return values.status();
        axes = *values;
      }
      if (call.hasInput(4)) {
        values = integers(call, 4, "steps");
        if (!values.ok()) return values.status();
        steps = *values;
      }
    }
    if (axes.empty()) {
      axes.resize(starts.size());
      std::iota(axes.begin(), axes.end(), 0);
    }
    steps.resize(starts.size(), 1);

    // Start index and step per input dim; dims not sliced start at 0.
    std::vector<int64_t> begin(rank, 0);
    std::vector<int64_t> step(rank, 1);
    for (size_t k = 0; k < starts.size() && k < axes.size(); ++k) {
      const int64_t axis = axes[k] < 0 ? axes[k] + rank : axes[k];
      const int64_t dim = input.shape[axis];
      int64_t start = starts[k] < 0 ? starts[k] + dim : starts[k];
      // ONNX clamps starts to [0, dim] for positive steps and to
      // [0, dim - 1] for negative ones.
      start = steps[k] > 0 ? std::clamp<int64_t>(start, 0, dim)
                           : std::clamp<int64_t>(start, 0, std::max<int64_t>(dim - 1, 0));
      begin[axis] = start;
      step[axis] = steps[k];
    }
    const std::vector<int64_t> inputStrides = stridesOf(input.shape);
    const std::vector<int64_t> outputStrides = stridesOf(output.shape);
    StridedCopyArgs args;
    args.rank = static_cast<int>(std::max<int64_t>(rank, 1));
    args.dims[0] = 1;
    for (int64_t d = 0; d < rank; ++d) {
      args.dims[d] = output.shape[d];
      args.sourceOffset += begin[d] * inputStrides[d];
      args.sourceStrides[d] = step[d] * inputStrides[d];
      args.destinationStrides[d] = outputStrides[d];
    }
    args.source = input.data;
    args.sourceType = elementTypeOf(input.type);
    args.destination = output.data;
    args.destinationType = elementTypeOf(output.type);
    args.count = output.elementCount();
    return check(launchStridedCopy(args, call.stream()), "launching the copy");
  }

 private:
  absl::StatusOr<std::vector<int64_t>> integers(Call& call, size_t i, const char* inputName) {
    absl::StatusOr<TensorView> host = hostInput(call, i);
    if (!host.ok()) return host.status();
    return cpu::readIntegers(name(), *host, absl::StrCat("input ", inputName));
  }

  bool attributeForm_;
  std::vector<int64_t> starts_;
  std::vector<int64_t> axes_;
};

class ConcatKernel : public OpKernel {
 public:
  ConcatKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
               std::unique_ptr<Kernel> cpu, int64_t axis)
      : OpKernel(node, std::move(context), std::move(cpu), Options{}), axis_(axis) {}

 protected:
  // Reads the rank from the inputs, because inferOutputs calls this before
  // the output shape is known. Every input has the output's rank.
  bool deviceSupports(Call& call) override {
    return call.hasInput(0) && call.input(0).shape.size() <= kMaxDims;
  }

  absl::Status runDevice(Call& call) override {
    TensorView& output = call.output(0);
    const int64_t rank = static_cast<int64_t>(output.shape.size());
    const int64_t axis = axis_ < 0 ? axis_ + rank : axis_;
    const std::vector<int64_t> outputStrides = stridesOf(output.shape);
    int64_t offset = 0;
    for (size_t i = 0; i < call.kernel.inputs.size(); ++i) {
      const TensorView& input = call.input(i);
      if (!call.hasInput(i)) continue;
      const std::vector<int64_t> inputStrides = stridesOf(input.shape);
      StridedCopyArgs args;
      args.rank = static_cast<int>(rank);
      for (int64_t d = 0; d < rank; ++d) {
        args.dims[d] = input.shape[d];
        args.sourceStrides[d] = inputStrides[d];
        args.destinationStrides[d] = outputStrides[d];
      }
      args.source = input.data;
      args.sourceType = elementTypeOf(input.type);
      args.destination = output.data;
      args.destinationType = elementTypeOf(output.type);
      args.destinationOffset = offset * outputStrides[axis];
      args.count = input.elementCount();
      if (absl::Status status = check(launchStridedCopy(args, call.stream()), "launching the copy");
          !status.ok()) {
        return status;
      }
      offset += input.shape[axis];
    }
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
};

class SplitKernel : public OpKernel {
 public:
  SplitKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
              std::unique_ptr<Kernel> cpu, int64_t axis, bool splitInput)
      : OpKernel(node, std::move(context), std::move(cpu),
                 Options{.shapeInputs = splitInput ? std::vector<int>{1} : std::vector<int>{}}),
        axis_(axis) {}

 protected:
  bool deviceSupports(Call& call) override { return call.input(0).shape.size() <= kMaxDims; }

  absl::Status runDevice(Call& call) override {
    const TensorView& input = call.input(0);
    const int64_t rank = static_cast<int64_t>(input.shape.size());
    const int64_t axis = axis_ < 0 ? axis_ + rank : axis_;
    const std::vector<int64_t> inputStrides = stridesOf(input.shape);
    int64_t offset = 0;
    for (size_t j = 0; j < call.kernel.outputs.size(); ++j) {
      TensorView& output = call.output(j);
      if (output.type == DataType::kUndefined) continue;
      const std::vector<int64_t> outputStrides = stridesOf(output.shape);
      if (output.data != nullptr) {
        StridedCopyArgs args;
        args.rank = static_cast<int>(rank);
        for (int64_t d = 0; d < rank; ++d) {
          args.dims[d] = output.shape[d];
          args.sourceStrides[d] = inputStrides[d];
          args.destinationStrides[d] = outputStrides[d];
        }
        args.source = input.data;
        args.sourceType = elementTypeOf(input.type);
        args.sourceOffset = offset * inputStrides[axis];
        args.destination = output.data;
        args.destinationType = elementTypeOf(output.type);
        args.count = output.elementCount();
        if (absl::Status status =
                check(launchStridedCopy(args, call.stream()), "launching the copy");
            !status.ok()) {
          return status;
        }
      }
      offset += output.shape[axis];
    }
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
};

class ExpandKernel : public OpKernel {
 public:
  ExpandKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
               std::unique_ptr<Kernel> cpu)
      : OpKernel(node, std::move(context), std::move(cpu), Options{.shapeInputs = {1}}) {}

 protected:
  bool deviceSupports(Call& call) override { return call.input(0).shape.size() <= kMaxDims; }

  absl::Status runDevice(Call& call) override {
    const TensorView& input = call.input(0);
    TensorView& output = call.output(0);
    ElementwiseArgs loop;
    if (!makeElementwiseLoop(output.shape, {input.shape}, loop)) {
      return unimplemented("rank ", output.shape.size(), " is above ", kMaxDims);
    }
    StridedCopyArgs args;
    args.rank = loop.rank;
    int64_t stride = 1;
    for (int d = loop.rank - 1; d >= 0; --d) {
      args.dims[d] = loop.dims[d];
      args.sourceStrides[d] = loop.strides[0][d];
      args.destinationStrides[d] = stride;
      stride *= loop.dims[d];
    }
    args.source = input.data;
    args.sourceType = elementTypeOf(input.type);
    args.destination = output.data;
    args.destinationType = elementTypeOf(output.type);
    args.count = output.elementCount();
    return check(launchStridedCopy(args, call.stream()), "launching the copy");
  }
};

class GatherKernel : public OpKernel {
 public:
  GatherKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
               std::unique_ptr<Kernel> cpu, int64_t axis)
      : OpKernel(node, context, std::move(cpu), Options{}), axis_(axis) {
    errorCode_ = context->registerErrorSource(absl::StrCat(
        node.describe(), ": an element of input indices is outside the range of axis ", axis,
        " of input data; ids must be valid rows of the table"));
  }

 protected:
  bool deviceSupports(Call& call) override {
    const DataType indexType = call.input(1).type;
    return indexType == DataType::kInt32 || indexType == DataType::kInt64;
  }

  absl::Status runDevice(Call& call) override {
    const TensorView& data = call.input(0);
    const TensorView& indices = call.input(1);
    const int64_t rank = static_cast<int64_t>(data.shape.size());
    const int64_t axis = axis_ < 0 ? axis_ + rank : axis_;
    GatherArgs args;
    args.data = data.data;
    args.dataType = elementTypeOf(data.type);
    args.indices = indices.data;
    args.indexType = elementTypeOf(indices.type);
    args.output = call.output(0).data;
    args.outputType = elementTypeOf(call.output(0).type);
    args.outer = 1;
    for (int64_t d = 0; d < axis; ++d) args.outer *= data.shape[d];
    args.axisDim = data.shape[axis];
    args.inner = 1;
    for (int64_t d = axis + 1; d < rank; ++d) args.inner *= data.shape[d];
    args.indexCount = indices.elementCount();
    args.error = ErrorSink{call.thread.errorFlag, errorCode_};
    return check(launchGather(args, call.stream()), "launching the kernel");
  }

 private:
  int64_t axis_;
  int errorCode_ = 0;
};

// ---- Reductions and Softmax ----

class ReduceKernel : public OpKernel {
 public:
  ReduceKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
               std::unique_ptr<Kernel> cpu, ReduceOp op, bool axesInput,
               std::vector<int64_t> attributeAxes, bool noopWithEmptyAxes)
      : OpKernel(node, std::move(context), std::move(cpu),
                 Options{.shapeInputs = axesInput ? std::vector<int>{1} : std::vector<int>{}}),
        op_(op),
        axesInput_(axesInput),
        attributeAxes_(std::move(attributeAxes)),
        noopWithEmptyAxes_(noopWithEmptyAxes) {}

 protected:
  bool deviceSupports(Call& call) override {
    return isNumeric(call.input(0).type) && geometry(call).ok();
  }

  absl::Status runDevice(Call& call) override {
    absl::StatusOr<ReduceArgs> args = geometry(call);
    if (!args.ok()) return args.status();
    args->input = call.input(0).data;
    args->inputType = elementTypeOf(call.input(0).type);
    args->output = call.output(0).data;
    args->outputType = elementTypeOf(call.output(0).type);
    args->integerMath = isIntegral(call.input(0).type);
    return check(launchReduce(*args, call.stream()), "launching the kernel");
  }

 private:
  // [outer, reduce, inner] when the reduced axes, ignoring dims of size 1,
  // are one contiguous block; Unimplemented otherwise.
  absl::StatusOr<ReduceArgs> geometry(Call& call) {
    const Shape& shape = call.input(0).shape;
    const int64_t rank = static_cast<int64_t>(shape.size());
    std::vector<int64_t> axes = attributeAxes_;
    if (axesInput_ && call.hasInput(1)) {
      absl::StatusOr<TensorView> host = hostInput(call, 1);
      if (!host.ok()) return host.status();
      absl::StatusOr<std::vector<int64_t>> values = cpu::readIntegers(name(), *host, "input axes");
      if (!values.ok()) return values.status();
      axes = *values;
    }
    std::vector<bool> reduced(rank, axes.empty() && !noopWithEmptyAxes_);
    for (int64_t axis : axes) {
      const int64_t normalized = axis < 0 ? axis + rank : axis;
      if (normalized < 0 || normalized >= rank) return invalidArgument("axis ", axis, " is out of range");
      reduced[normalized] = true;
    }

    // The first and last reduced dims of more than one element bound the block.
    ReduceArgs args;
    int first = -1;
    int last = -1;
    for (int64_t d = 0; d < rank; ++d) {
      if (!reduced[d] || shape[d] == 1) continue;
      if (first < 0) first = static_cast<int>(d);
      last = static_cast<int>(d);
    }

    for (int64_t d = 0; d < rank; ++d) {
      if (first < 0) {
        args.outer *= shape[d];
      } else if (d < first) {
        args.outer *= shape[d];
      } else if (d > last) {
        args.inner *= shape[d];
      } else if (reduced[d] || shape[d] == 1) {
        args.reduce *= shape[d];
      } else {
        return unimplemented("the reduced axes are not contiguous");
      }
    }
    args.op = static_cast<int>(op_);
    return args;
  }

  ReduceOp op_;
  bool axesInput_;
  std::vector<int64_t> attributeAxes_;
  bool noopWithEmptyAxes_;
};

class SoftmaxKernel : public OpKernel {
 public:
  SoftmaxKernel(const ir::Node& node, std::shared_ptr<CudaContext> context,
                std::unique_ptr<Kernel> cpu, int64_t axis, bool logarithm)
      : OpKernel(node, std::move(context), std::move(cpu), Options{}),
        axis_(axis),
        logarithm_(logarithm) {}

 protected:
  bool deviceSupports(Call& call) override {
    const int64_t rank = static_cast<int64_t>(call.input(0).shape.size());
    // Only the last axis. Before opset 13 the input is coerced to 2-D at
    // `axis`, which is the same when axis is the last one.
    return ir::isFloatingPoint(call.input(0).type) && rank > 0 &&
           (axis_ == -1 || axis_ == rank - 1);
  }

  absl::Status runDevice(Call& call) override {
    const TensorView& input = call.input(0);
    SoftmaxArgs args;
    args.input = input.data;
    args.inputType = elementTypeOf(input.type);
    args.output = call.output(0).data;
    args.outputType = elementTypeOf(call.output(0).type);
    args.width = input.shape.back();
    args.rows = args.width == 0 ? 0 : input.elementCount() / args.width;
    args.logarithm = logarithm_;
    return check(launchSoftmax(args, call.stream()), "launching the kernel");
  }

 private:
  int64_t axis_;
  bool logarithm_;
};

// ---- Builders ----

DeviceBuilder unaryBuilder(UnaryOp op) {
  return [op](const ir::Node& node, std::shared_ptr<CudaContext> context,
              std::unique_ptr<Kernel> cpu, int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    return std::make_unique<UnaryKernel>(node, std::move(context), std::move(cpu), op);
  };
}

DeviceBuilder binaryBuilder(BinaryOp op) {
  return [op](const ir::Node& node, std::shared_ptr<CudaContext> context,
              std::unique_ptr<Kernel> cpu, int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    const bool fused = op == BinaryOp::kAdd && isBiasAddFusedIntoMatMul(node);
    return std::make_unique<BinaryKernel>(node, std::move(context), std::move(cpu), op, fused);
  };
}

DeviceBuilder viewBuilder(std::vector<int> shapeInputs) {
  return [shapeInputs](const ir::Node& node, std::shared_ptr<CudaContext> context,
                       std::unique_ptr<Kernel> cpu,
                       int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    return std::make_unique<ViewKernel>(node, std::move(context), std::move(cpu), shapeInputs);
  };
}

DeviceBuilder reduceBuilder(ReduceOp op, int axesInputOpset) {
  return [op, axesInputOpset](const ir::Node& node, std::shared_ptr<CudaContext> context,
                              std::unique_ptr<Kernel> cpu,
                              int opset) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    const bool axesInput = opset >= axesInputOpset;
    absl::StatusOr<std::vector<int64_t>> axes = node.intsAttribute("axes", {});
    if (!axes.ok()) return axes.status();
    absl::StatusOr<int64_t> noop = node.intAttribute("noop_with_empty_axes", 0);
    if (!noop.ok()) return noop.status();
    return std::make_unique<ReduceKernel>(node, std::move(context), std::move(cpu), op, axesInput,
                                          axesInput ? std::vector<int64_t>{} : *axes, *noop != 0);
  };
}

}  // namespace

void addBasicOps(DeviceOpTable& table) {
  const std::pair<const char*, UnaryOp> unaryOps[] = {
      {"Not", UnaryOp::kNot},         {"Neg", UnaryOp::kNeg},
      {"Abs", UnaryOp::kAbs},         {"Sqrt", UnaryOp::kSqrt},
      {"Reciprocal", UnaryOp::kReciprocal}, {"Exp", UnaryOp::kExp},
      {"Log", UnaryOp::kLog},         {"Erf", UnaryOp::kErf},
      {"Sigmoid", UnaryOp::kSigmoid}, {"Tanh", UnaryOp::kTanh},
      {"Relu", UnaryOp::kRelu},       {"Cos", UnaryOp::kCos},
      {"Sin", UnaryOp::kSin},         {"Floor", UnaryOp::kFloor},
      {"Ceil", UnaryOp::kCeil},       {"Cast", UnaryOp::kCast},
  };
  for (const auto& [op, code] : unaryOps) table[{"", op}] = unaryBuilder(code);

  const std::pair<const char*, BinaryOp> binaryOps[] = {
      {"Add", BinaryOp::kAdd},
      {"Sub", BinaryOp::kSub},
      {"Mul", BinaryOp::kMul},
      {"Div", BinaryOp::kDiv},
      {"Pow", BinaryOp::kPow},
      {"Equal", BinaryOp::kEqual},
      {"Less", BinaryOp::kLess},
      {"LessOrEqual", BinaryOp::kLessOrEqual},
      {"Greater", BinaryOp::kGreater},
      {"GreaterOrEqual", BinaryOp::kGreaterOrEqual},
      {"And", BinaryOp::kAnd},
      {"Or", BinaryOp::kOr},
      {"Xor", BinaryOp::kXor},
      {"Max", BinaryOp::kMax},
      {"Min", BinaryOp::kMin},
      {"Where", BinaryOp::kWhere},
  };
  for (const auto& [op, code] : binaryOps) table[{"", op}] = binaryBuilder(code);

  table[{"", "Identity"}] = viewBuilder({});
  table[{"", "Flatten"}] = viewBuilder({});
  table[{"", "Reshape"}] = viewBuilder({1});
  table[{"", "Squeeze"}] = viewBuilder({1});
  table[{"", "Unsqueeze"}] = viewBuilder({1});

  table[{"", "Transpose"}] = [](const ir::Node& node, std::shared_ptr<CudaContext> context,
                                std::unique_ptr<Kernel> cpu,
                                int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    absl::StatusOr<std::vector<int64_t>> perm = node.intsAttribute("perm", {});
    if (!perm.ok()) return perm.status();
    return std::make_unique<TransposeKernel>(node, std::move(context), std::move(cpu), *perm);
  };
  table[{"", "Slice"}] = [](const ir::Node& node, std::shared_ptr<CudaContext> context,
                            std::unique_ptr<Kernel> cpu,
                            int opset) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    const bool attributeForm = opset < 10;
    absl::StatusOr<std::vector<int64_t>> starts = node.intsAttribute("starts", {});
    if (!starts.ok()) return starts.status();
    absl::StatusOr<std::vector<int64_t>> axes = node.intsAttribute("axes", {});
    if (!axes.ok()) return axes.status();
    return std::make_unique<SliceKernel>(node, std::move(context), std::move(cpu), attributeForm,
                                         *starts, *axes);
  };
  table[{"", "Concat"}] = [](const ir::Node& node, std::shared_ptr<CudaContext> context,
                             std::unique_ptr<Kernel> cpu,
                             int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    absl::StatusOr<int64_t> axis = node.intAttribute("axis", 0);
    if (!axis.ok()) return axis.status();
    return std::make_unique<ConcatKernel>(node, std::move(context), std::move(cpu), *axis);
  };
  table[{"", "Split"}] = [](const ir::Node& node, std::shared_ptr<CudaContext> context,
                            std::unique_ptr<Kernel> cpu,
                            int opset) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    absl::StatusOr<int64_t> axis = node.intAttribute("axis", 0);
    if (!axis.ok()) return axis.status();
    return std::make_unique<SplitKernel>(node, std::move(context), std::move(cpu), *axis,
                                         opset >= 13);
  };
  table[{"", "Expand"}] = [](const ir::Node& node, std::shared_ptr<CudaContext> context,
                             std::unique_ptr<Kernel> cpu,
                             int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    return std::make_unique<ExpandKernel>(node, std::move(context), std::move(cpu));
  };
  table[{"", "Gather"}] = [](const ir::Node& node, std::shared_ptr<CudaContext> context,
                             std::unique_ptr<Kernel> cpu,
                             int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    absl::StatusOr<int64_t> axis = node.intAttribute("axis", 0);
    if (!axis.ok()) return axis.status();
    return std::make_unique<GatherKernel>(node, std::move(context), std::move(cpu), *axis);
  };

  // Shape and Size read only their input's shape: always on the host.
  for (const char* op : {"Shape", "Size"}) {
    table[{"", op}] = [](const ir::Node& node, std::shared_ptr<CudaContext> context,
                         std::unique_ptr<Kernel> cpu,
                         int) -> absl::StatusOr<std::unique_ptr<Kernel>> {
      return std::make_unique<HostOnlyKernel>(node, std::move(context), std::move(cpu),
                                              OpKernel::Options{.shapeOnly = true});
    };
  }

  // ReduceSum takes its axes as an input from opset 13, the others from 18.
  table[{"", "ReduceSum"}] = reduceBuilder(ReduceOp::kSum, 13);
  const std::pair<const char*, ReduceOp> reduceOps[] = {
      {"ReduceMean", ReduceOp::kMean},      {"ReduceMax", ReduceOp::kMax},
      {"ReduceMin", ReduceOp::kMin},        {"ReduceProd", ReduceOp::kProd},
      {"ReduceSumSquare", ReduceOp::kSumSquare}, {"ReduceL1", ReduceOp::kL1},
      {"ReduceL2", ReduceOp::kL2},          {"ReduceLogSumExp", ReduceOp::kLogSumExp},
  };
  for (const auto& [op, code] : reduceOps) table[{"", op}] = reduceBuilder(code, 18);

  for (bool logarithm : {false, true}) {
    table[{"", logarithm ? "LogSoftmax" : "Softmax"}] =
        [logarithm](const ir::Node& node, std::shared_ptr<CudaContext> context,
                    std::unique_ptr<Kernel> cpu,
                    int opset) -> absl::StatusOr<std::unique_ptr<Kernel>> {
      absl::StatusOr<int64_t> axis = node.intAttribute("axis", opset < 13 ? 1 : -1);
      if (!axis.ok()) return axis.status();
      return std::make_unique<SoftmaxKernel>(node, std::move(context), std::move(cpu), *axis,
                                             logarithm);
    };
  }
}

}  // namespace roformer::runtime::cuda
