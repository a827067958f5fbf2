// Elementwise kernels: unary math, numpy-broadcast binary arithmetic and
// comparisons, logic, Where, Clip, the variadic Min/Max/Sum/Mean, and Cast.
#include <cmath>
#include <limits>

#include "runtime/cpu/KernelUtils.h"
#include "runtime/cpu/Registration.h"
#include "runtime/cpu/VectorMath.h"

namespace roformer::runtime::cpu {
namespace {

// Elements per chunk of an elementwise loop handed to one thread (an
// estimate of where a thread hand-off pays off).
constexpr int64_t kElementwiseCost = 1;

// Negation and absolute value that wrap for the most negative integer, as
// two's complement hardware does, instead of overflowing.
template <typename T>
T wrappingNegate(T x) {
  if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(U(0) - static_cast<U>(x));
  } else {
    return -x;
  }
}

// Converts one value. Floats converted to integers saturate at the target's
// range and NaN becomes 0, so that no conversion is undefined behavior.
template <typename To, typename From>
To convertValue(From value) {
  if constexpr (std::is_same_v<To, bool>) {
    return value != From(0);
  } else if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
    if (!(value == value)) return To(0);
    if (value <= static_cast<From>(std::numeric_limits<To>::lowest())) {
      return std::numeric_limits<To>::lowest();
    }
    if (value >= static_cast<From>(std::numeric_limits<To>::max())) {
      return std::numeric_limits<To>::max();
    }
    return static_cast<To>(value);
  } else {
    return static_cast<To>(value);
  }
}

// Runs y[i] = f(x[i]) over n elements, split across threads.
template <typename In, typename Out, typename F>
void mapElements(const In* x, Out* y, int64_t n, ThreadPool* threads, F f) {
  parallelFor(threads, n, kElementwiseCost, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = f(x[i]);
  });
}

// Runs an array function fn(x + begin, y + begin, count) over n elements.
template <typename Fn>
void mapArray(const float* x, float* y, int64_t n, ThreadPool* threads, Fn fn) {
  parallelFor(threads, n, 8, [&](int64_t begin, int64_t end) { fn(x + begin, y + begin, end - begin); });
}

// ---- Unary ----

enum class UnaryOp {
  kNeg, kAbs, kSqrt, kExp, kLog, kSin, kCos, kErf, kSigmoid, kTanh, kRelu, kReciprocal,
  kFloor, kCeil, kNot,
};

class UnaryKernel : public CpuKernel {
 public:
  UnaryKernel(const ir::Node& node, UnaryOp op) : CpuKernel(node), op_(op) {}
  bool canRunInPlace() const override { return true; }

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "X"); !status.ok()) return status;
    context.outputs[0].type = context.inputs[0].type;
    context.outputs[0].shape = context.inputs[0].shape;
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& input = context.inputs[0];
    TensorView& output = context.outputs[0];
    const int64_t n = input.elementCount();
    ThreadPool* threads = context.threads;

    if (input.type == DataType::kFloat) {
      const float* x = input.as<const float>();
      float* y = output.as<float>();
      if (op_ == UnaryOp::kErf) {
        mapArray(x, y, n, threads, erfArray);
        return absl::OkStatus();
      }
      if (op_ == UnaryOp::kSigmoid) {
        mapArray(x, y, n, threads, sigmoidArray);
        return absl::OkStatus();
      }
    }
    if (op_ == UnaryOp::kNot) {
      if (input.type != DataType::kBool) return unsupportedType("input X", input.type);
      mapElements(input.as<const bool>(), output.as<bool>(), n, threads,
                  [](bool v) { return !v; });
      return absl::OkStatus();
    }

    bool integerAllowed = op_ == UnaryOp::kNeg || op_ == UnaryOp::kAbs || op_ == UnaryOp::kRelu;
    absl::Status status = absl::OkStatus();
    bool handled = visitType(NumericTypes{}, input.type, [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (std::is_floating_point_v<T>) {
        status = computeFloat<T>(input.as<const T>(), output.as<T>(), n, threads);
      } else {
        if (!integerAllowed) {
          status = unsupportedType("input X", input.type);
          return;
        }
        computeInteger<T>(input.as<const T>(), output.as<T>(), n, threads);
      }
    });
    if (!handled) return unsupportedType("input X", input.type);
    return status;
  }

 private:
  template <typename T>
  absl::Status computeFloat(const T* x, T* y, int64_t n, ThreadPool* threads) {
    switch (op_) {
      case UnaryOp::kNeg: mapElements(x, y, n, threads, [](T v) { return -v; }); break;
      case UnaryOp::kAbs: mapElements(x, y, n, threads, [](T v) { return std::fabs(v); }); break;
      case UnaryOp::kSqrt: mapElements(x, y, n, threads, [](T v) { return std::sqrt(v); }); break;
      case UnaryOp::kExp: mapElements(x, y, n, threads, [](T v) { return std::exp(v); }); break;
      case UnaryOp::kLog: mapElements(x, y, n, threads, [](T v) { return std::log(v); }); break;
      case UnaryOp::kSin: mapElements(x, y, n, threads, [](T v) { return std::sin(v); }); break;
      case UnaryOp::kCos: mapElements(x, y, n, threads, [](T v) { return std::cos(v); }); break;
      case UnaryOp::kErf: mapElements(x, y, n, threads, [](T v) { return std::erf(v); }); break;
      case UnaryOp::kTanh: mapElements(x, y, n, threads, [](T v) { return std::tanh(v); }); break;
      case UnaryOp::kSigmoid:
        mapElements(x, y, n, threads, [](T v) { return T(1) / (T(1) + std::exp(-v)); });
        break;
      case UnaryOp::kRelu:
        mapElements(x, y, n, threads, [](T v) { return v < T(0) ? T(0) : v; });
        break;
      case UnaryOp::kReciprocal:
        mapElements(x, y, n, threads, [](T v) { return T(1) / v; });
        break;
      case UnaryOp::kFloor: mapElements(x, y, n, threads, [](T v) { return std::floor(v); }); break;
      case UnaryOp::kCeil: mapElements(x, y, n, threads, [](T v) { return std::ceil(v); }); break;
      case UnaryOp::kNot: break;
    }
    return absl::OkStatus();
  }

  template <typename T>
  void computeInteger(const T* x, T* y, int64_t n, ThreadPool* threads) {
    switch (op_) {
      case UnaryOp::kNeg:
        mapElements(x, y, n, threads, [](T v) { return wrappingNegate(v); });
        break;
      case UnaryOp::kAbs:
        mapElements(x, y, n, threads, [](T v) { return v < T(0) ? wrappingNegate(v) : v; });
        break;
      case UnaryOp::kRelu:
        mapElements(x, y, n, threads, [](T v) { return v < T(0) ? T(0) : v; });
        break;
      default:
        break;
    }
  }

  UnaryOp op_;
};

// ---- Broadcast loops ----

// One row of a binary broadcast: each input either advances with the output
// (stride 1) or stays on one element (stride 0). The four cases are separate
// loops so that each one vectorizes.
template <typename A, typename B, typename Out, typename Op>
inline void binaryRow(const A* a, int64_t strideA, const B* b, int64_t strideB, Out* out,
                      int64_t n, Op op) {
  if (strideA != 0 && strideB != 0) {
    for (int64_t i = 0; i < n; ++i) out[i] = op(a[i], b[i]);
  } else if (strideA != 0) {
    const B scalarB = *b;
    for (int64_t i = 0; i < n; ++i) out[i] = op(a[i], scalarB);
  } else if (strideB != 0) {
    const A scalarA = *a;
    for (int64_t i = 0; i < n; ++i) out[i] = op(scalarA, b[i]);
  } else {
    const Out value = op(*a, *b);
    for (int64_t i = 0; i < n; ++i) out[i] = value;
  }
}

// out = op(a, b) with numpy broadcasting, split across threads by rows, or by
// ranges of the single row when the shapes merge into one dim.
template <typename A, typename B, typename Out, typename Op>
void broadcastBinary(const BroadcastPlan& plan, const A* a, const B* b, Out* out,
                     ThreadPool* threads, Op op) {
  const int64_t strideA = plan.strides[0].back();
  const int64_t strideB = plan.strides[1].back();
  const int64_t rows = plan.rowCount();
  const int64_t inner = plan.innerSize();
  if (rows == 1) {
    parallelFor(threads, inner, kElementwiseCost, [&](int64_t begin, int64_t end) {
      binaryRow(a + begin * strideA, strideA, b + begin * strideB, strideB, out + begin,
                end - begin, op);
    });
    return;
  }
  parallelFor(threads, rows, inner, [&](int64_t rowBegin, int64_t rowEnd) {
    forEachBroadcastRow<2>(plan, rowBegin, rowEnd,
                           [&](const std::array<int64_t, 2>& offsets, int64_t outOffset,
                               int64_t count) {
                             binaryRow(a + offsets[0], strideA, b + offsets[1], strideB,
                                       out + outOffset, count, op);
                           });
  });
}

// ---- Binary ----

enum class BinaryOp {
  kAdd, kSub, kMul, kDiv, kPow, kEqual, kLess, kGreater, kLessOrEqual, kGreaterOrEqual,
  kAnd, kOr, kXor,
};

bool isComparison(BinaryOp op) {
  return op == BinaryOp::kEqual || op == BinaryOp::kLess || op == BinaryOp::kGreater ||
         op == BinaryOp::kLessOrEqual || op == BinaryOp::kGreaterOrEqual;
}
bool isLogic(BinaryOp op) {
  return op == BinaryOp::kAnd || op == BinaryOp::kOr || op == BinaryOp::kXor;
}

class BinaryKernel : public CpuKernel {
 public:
  BinaryKernel(const ir::Node& node, BinaryOp op) : CpuKernel(node), op_(op) {}
  bool canRunInPlace() const override { return !isComparison(op_); }

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "A"); !status.ok()) return status;
    if (absl::Status status = requireInput(context, 1, "B"); !status.ok()) return status;
    const TensorView& a = context.inputs[0];
    const TensorView& b = context.inputs[1];
    if (op_ != BinaryOp::kPow && a.type != b.type) {
      return invalidArgument("inputs A and B must have the same element type, got ",
                             typeName(a.type), " and ", typeName(b.type));
    }
    absl::StatusOr<Shape> shape = broadcastShapes(name(), {a.shape, b.shape});
    if (!shape.ok()) return shape.status();
    bool boolOutput = isComparison(op_) || isLogic(op_);
    context.outputs[0].type = boolOutput ? DataType::kBool : a.type;
    context.outputs[0].shape = *shape;
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& a = context.inputs[0];
    const TensorView& b = context.inputs[1];
    TensorView& out = context.outputs[0];
    if (out.elementCount() == 0) return absl::OkStatus();
    BroadcastPlan plan = makeBroadcastPlan(out.shape, {a.shape, b.shape});

    if (isLogic(op_)) return computeLogic(plan, a, b, out, context.threads);
    if (isComparison(op_)) return computeComparison(plan, a, b, out, context.threads);
    if (op_ == BinaryOp::kPow) return computePow(plan, a, b, out, context.threads);

    absl::Status status = absl::OkStatus();
    bool handled = visitType(NumericTypes{}, a.type, [&](auto tag) {
      using T = typename decltype(tag)::type;
      status = computeArithmetic<T>(plan, a.as<const T>(), b.as<const T>(), out.as<T>(),
                                    b.elementCount(), context.threads);
    });
    if (!handled) return unsupportedType("input A", a.type);
    return status;
  }

 private:
  template <typename T>
  absl::Status computeArithmetic(const BroadcastPlan& plan, const T* a, const T* b, T* out,
                                 int64_t divisorCount, ThreadPool* threads) {
    switch (op_) {
      case BinaryOp::kAdd:
        broadcastBinary(plan, a, b, out, threads, [](T x, T y) { return T(x + y); });
        break;
      case BinaryOp::kSub:
        broadcastBinary(plan, a, b, out, threads, [](T x, T y) { return T(x - y); });
        break;
      case BinaryOp::kMul:
        broadcastBinary(plan, a, b, out, threads, [](T x, T y) { return T(x * y); });
        break;
      case BinaryOp::kDiv:
        if constexpr (std::is_integral_v<T>) {
          // Integer division by zero traps on x86, so it is an input error.
          for (int64_t i = 0; i < divisorCount; ++i) {
            if (b[i] == T(0)) {
              return invalidArgument("integer division by zero: input B is 0 at position ", i);
            }
          }
          // x / -1 is written as a negation, because INT_MIN / -1 also traps.
          broadcastBinary(plan, a, b, out, threads, [](T x, T y) {
            if constexpr (std::is_signed_v<T>) {
              if (y == T(-1)) return wrappingNegate(x);
            }
            return T(x / y);
          });
        } else {
          broadcastBinary(plan, a, b, out, threads, [](T x, T y) { return T(x / y); });
        }
        break;
      default:
        break;
    }
    return absl::OkStatus();
  }

  absl::Status computeComparison(const BroadcastPlan& plan, const TensorView& a,
                                 const TensorView& b, TensorView& out, ThreadPool* threads) {
    bool* result = out.as<bool>();
    auto run = [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* x = a.as<const T>();
      const T* y = b.as<const T>();
      switch (op_) {
        case BinaryOp::kEqual:
          broadcastBinary(plan, x, y, result, threads, [](T p, T q) { return p == q; });
          break;
        case BinaryOp::kLess:
          broadcastBinary(plan, x, y, result, threads, [](T p, T q) { return p < q; });
          break;
        case BinaryOp::kGreater:
          broadcastBinary(plan, x, y, result, threads, [](T p, T q) { return p > q; });
          break;
        case BinaryOp::kLessOrEqual:
          broadcastBinary(plan, x, y, result, threads, [](T p, T q) { return p <= q; });
          break;
        case BinaryOp::kGreaterOrEqual:
          broadcastBinary(plan, x, y, result, threads, [](T p, T q) { return p >= q; });
          break;
        default:
          break;
      }
    };
    if (a.type == DataType::kBool) {
      run(TypeTag<bool>{});
      return absl::OkStatus();
    }
    if (!visitType(NumericTypes{}, a.type, run)) return unsupportedType("input A", a.type);
    return absl::OkStatus();
  }

  absl::Status computeLogic(const BroadcastPlan& plan, const TensorView& a, const TensorView& b,
                            TensorView& out, ThreadPool* threads) {
    if (a.type != DataType::kBool) return unsupportedType("input A", a.type);
    const bool* x = a.as<const bool>();
    const bool* y = b.as<const bool>();
    bool* result = out.as<bool>();
    switch (op_) {
      case BinaryOp::kAnd:
        broadcastBinary(plan, x, y, result, threads, [](bool p, bool q) { return p && q; });
        break;
      case BinaryOp::kOr:
        broadcastBinary(plan, x, y, result, threads, [](bool p, bool q) { return p || q; });
        break;
      case BinaryOp::kXor:
        broadcastBinary(plan, x, y, result, threads, [](bool p, bool q) { return p != q; });
        break;
      default:
        break;
    }
    return absl::OkStatus();
  }

  // Pow allows the exponent to have another numeric type than the base; the
  // result has the base's type. Exponents 2 and 3 given as one element use
  // multiplication, which is exact where std::pow rounds once.
  absl::Status computePow(const BroadcastPlan& plan, const TensorView& a, const TensorView& b,
                          TensorView& out, ThreadPool* threads) {
    using PowTypes = TypeList<float, double, int32_t, int64_t>;
    absl::Status status = absl::OkStatus();
    bool baseKnown = visitType(PowTypes{}, a.type, [&](auto baseTag) {
      using T = typename decltype(baseTag)::type;
      bool exponentKnown = visitType(NumericTypes{}, b.type, [&](auto exponentTag) {
        using E = typename decltype(exponentTag)::type;
        const T* x = a.as<const T>();
        const E* y = b.as<const E>();
        T* result = out.as<T>();
        if constexpr (std::is_same_v<T, float>) {
          if (b.elementCount() == 1 && (y[0] == E(2) || y[0] == E(3))) {
            const int64_t n = out.elementCount();
            if (a.elementCount() == n) {
              if (y[0] == E(2)) {
                mapElements(x, result, n, threads, [](float v) { return v * v; });
              } else {
                mapElements(x, result, n, threads, [](float v) { return v * v * v; });
              }
              return;
            }
          }
        }
        broadcastBinary(plan, x, y, result, threads, [](T base, E exponent) {
          if constexpr (std::is_floating_point_v<T>) {
            return static_cast<T>(std::pow(base, static_cast<T>(exponent)));
          } else {
            double value = std::pow(static_cast<double>(base), static_cast<double>(exponent));
            if (!(value == value)) return T(0);
            value = std::min(value, static_cast<double>(std::numeric_limits<T>::max()));
            value = std::max(value, static_cast<double>(std::numeric_limits<T>::lowest()));
            return static_cast<T>(value);
          }
        });
      });
      if (!exponentKnown) status = unsupportedType("input Y", b.type);
    });
    if (!baseKnown) return unsupportedType("input X", a.type);
    return status;
  }

  BinaryOp op_;
};

// ---- Where ----

class WhereKernel : public CpuKernel {
 public:
  explicit WhereKernel(const ir::Node& node) : CpuKernel(node) {}

  absl::Status inferOutputs(KernelContext& context) override {
    const char* names[] = {"condition", "X", "Y"};
    for (size_t i = 0; i < 3; ++i) {
      if (absl::Status status = requireInput(context, i, names[i]); !status.ok()) return status;
    }
    const TensorView& condition = context.inputs[0];
    const TensorView& x = context.inputs[1];
    const TensorView& y = context.inputs[2];
    if (condition.type != DataType::kBool) return unsupportedType("input condition", condition.type);
    if (x.type != y.type) {
      return invalidArgument("inputs X and Y must have the same element type, got ",
                             typeName(x.type), " and ", typeName(y.type));
    }
    if (ir::dataTypeSize(x.type) == 0) return unsupportedType("input X", x.type);
    absl::StatusOr<Shape> shape = broadcastShapes(name(), {condition.shape, x.shape, y.shape});
    if (!shape.ok()) return shape.status();
    context.outputs[0].type = x.type;
    context.outputs[0].shape = *shape;
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& condition = context.inputs[0];
    const TensorView& x = context.inputs[1];
    const TensorView& y = context.inputs[2];
    TensorView& out = context.outputs[0];
    if (out.elementCount() == 0) return absl::OkStatus();
    BroadcastPlan plan = makeBroadcastPlan(out.shape, {condition.shape, x.shape, y.shape});
    const bool* c = condition.as<const bool>();
    visitElementSize(ir::dataTypeSize(x.type), [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* px = x.as<const T>();
      const T* py = y.as<const T>();
      T* result = out.as<T>();
      const int64_t sc = plan.strides[0].back();
      const int64_t sx = plan.strides[1].back();
      const int64_t sy = plan.strides[2].back();
      parallelFor(context.threads, plan.rowCount(), plan.innerSize(),
                  [&](int64_t rowBegin, int64_t rowEnd) {
                    forEachBroadcastRow<3>(
                        plan, rowBegin, rowEnd,
                        [&](const std::array<int64_t, 3>& offsets, int64_t outOffset,
                            int64_t count) {
                          const bool* rowC = c + offsets[0];
                          const T* rowX = px + offsets[1];
                          const T* rowY = py + offsets[2];
                          T* rowOut = result + outOffset;
                          for (int64_t i = 0; i < count; ++i) {
                            rowOut[i] = rowC[i * sc] ? rowX[i * sx] : rowY[i * sy];
                          }
                        });
                  });
    });
    return absl::OkStatus();
  }
};

// ---- Clip ----

class ClipKernel : public CpuKernel {
 public:
  // Opsets 6 to 10 take the bounds as attributes, later ones as inputs.
  ClipKernel(const ir::Node& node, bool boundsAsInputs, float minAttribute, float maxAttribute)
      : CpuKernel(node), boundsAsInputs_(boundsAsInputs), minAttribute_(minAttribute),
        maxAttribute_(maxAttribute) {}
  bool canRunInPlace() const override { return true; }

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "input"); !status.ok()) return status;
    context.outputs[0].type = context.inputs[0].type;
    context.outputs[0].shape = context.inputs[0].shape;
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& input = context.inputs[0];
    const int64_t n = input.elementCount();
    absl::Status status = absl::OkStatus();
    bool handled = visitType(NumericTypes{}, input.type, [&](auto tag) {
      using T = typename decltype(tag)::type;
      T low = std::numeric_limits<T>::lowest();
      T high = std::numeric_limits<T>::max();
      if (!boundsAsInputs_) {
        low = convertValue<T>(minAttribute_);
        high = convertValue<T>(maxAttribute_);
      } else {
        for (size_t i = 1; i <= 2; ++i) {
          if (!hasInput(context, i)) continue;
          const TensorView& bound = context.inputs[i];
          if (bound.type != input.type || bound.elementCount() != 1) {
            status = invalidArgument("input ", i == 1 ? "min" : "max",
                                     " must be a one-element tensor of the input's type, got ",
                                     typeName(bound.type), " ", shapeToString(bound.shape));
            return;
          }
          (i == 1 ? low : high) = *bound.as<const T>();
        }
      }
      mapElements(input.as<const T>(), context.outputs[0].as<T>(), n, context.threads,
                  [low, high](T v) {
                    T raised = v < low ? low : v;
                    return high < raised ? high : raised;
                  });
    });
    if (!handled) return unsupportedType("input", input.type);
    return status;
  }

 private:
  bool boundsAsInputs_;
  float minAttribute_;
  float maxAttribute_;
};

// ---- Min, Max, Sum, Mean ----

enum class VariadicOp { kMin, kMax, kSum, kMean };

class VariadicKernel : public CpuKernel {
 public:
  VariadicKernel(const ir::Node& node, VariadicOp op) : CpuKernel(node), op_(op) {}

  absl::Status inferOutputs(KernelContext& context) override {
    if (context.inputs.empty()) return invalidArgument("needs at least one input");
    std::vector<Shape> shapes;
    for (size_t i = 0; i < context.inputs.size(); ++i) {
      if (absl::Status status = requireInput(context, i, "data"); !status.ok()) return status;
      if (context.inputs[i].type != context.inputs[0].type) {
        return invalidArgument("input ", i, " has element type ",
                               typeName(context.inputs[i].type), " but input 0 has ",
                               typeName(context.inputs[0].type));
      }
      shapes.push_back(context.inputs[i].shape);
    }
    absl::StatusOr<Shape> shape = broadcastShapes(name(), shapes);
    if (!shape.ok()) return shape.status();
    context.outputs[0].type = context.inputs[0].type;
    context.outputs[0].shape = *shape;
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    TensorView& out = context.outputs[0];
    if (out.elementCount() == 0) return absl::OkStatus();
    bool handled = visitType(NumericTypes{}, out.type, [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* result = out.as<T>();
      // result = input 0 broadcast to the output shape, then folded with
      // each further input.
      const TensorView& first = context.inputs[0];
      BroadcastPlan copyPlan = makeBroadcastPlan(out.shape, {first.shape, first.shape});
      broadcastBinary(copyPlan, first.as<const T>(), first.as<const T>(), result,
                      context.threads, [](T x, T) { return x; });
      for (size_t i = 1; i < context.inputs.size(); ++i) {
        const TensorView& next = context.inputs[i];
        BroadcastPlan plan = makeBroadcastPlan(out.shape, {out.shape, next.shape});
        const T* y = next.as<const T>();
        switch (op_) {
          case VariadicOp::kMin:
            // NaN in either operand propagates, as in numpy.minimum.
            broadcastBinary(plan, static_cast<const T*>(result), y, result, context.threads,
                            [](T p, T q) { return (q < p || q != q) ? q : p; });
            break;
          case VariadicOp::kMax:
            broadcastBinary(plan, static_cast<const T*>(result), y, result, context.threads,
                            [](T p, T q) { return (p < q || q != q) ? q : p; });
            break;
          case VariadicOp::kSum:
          case VariadicOp::kMean:
            broadcastBinary(plan, static_cast<const T*>(result), y, result, context.threads,
                            [](T p, T q) { return T(p + q); });
            break;
        }
      }
      if (op_ == VariadicOp::kMean) {
        const T count = static_cast<T>(context.inputs.size());
        mapElements(static_cast<const T*>(result), result, out.elementCount(), context.threads,
                    [count](T v) { return T(v / count); });
      }
    });
    if (!handled) return unsupportedType("input 0", out.type);
    return absl::OkStatus();
  }

 private:
  VariadicOp op_;
};

// ---- Cast ----

using CastTypes = TypeList<float, double, int8_t, uint8_t, int16_t, uint16_t, int32_t, uint32_t,
                           int64_t, uint64_t, bool>;

// Cast, and CastLike (opset 15), which takes the target type from input 1.
class CastKernel : public CpuKernel {
 public:
  CastKernel(const ir::Node& node, std::optional<DataType> to) : CpuKernel(node), to_(to) {}

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "input"); !status.ok()) return status;
    DataType to = DataType::kUndefined;
    if (to_.has_value()) {
      to = *to_;
    } else {
      if (absl::Status status = requireInput(context, 1, "target_type"); !status.ok()) return status;
      to = context.inputs[1].type;
    }
    if (!visitType(CastTypes{}, context.inputs[0].type, [](auto) {})) {
      return unsupportedType("input", context.inputs[0].type);
    }
    if (!visitType(CastTypes{}, to, [](auto) {})) {
      return unsupportedType(to_.has_value() ? "attribute 'to'" : "input target_type", to);
    }
    context.outputs[0].type = to;
    context.outputs[0].shape = context.inputs[0].shape;
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& input = context.inputs[0];
    TensorView& output = context.outputs[0];
    const int64_t n = input.elementCount();
    bool outputKnown = false;
    bool inputKnown = visitType(CastTypes{}, input.type, [&](auto fromTag) {
      using From = typename decltype(fromTag)::type;
      outputKnown = visitType(CastTypes{}, output.type, [&](auto toTag) {
        using To = typename decltype(toTag)::type;
        mapElements(input.as<const From>(), output.as<To>(), n, context.threads,
                    [](From v) { return convertValue<To>(v); });
      });
    });
    if (!inputKnown) return unsupportedType("input", input.type);
    if (!outputKnown) return unsupportedType("output", output.type);
    return absl::OkStatus();
  }

 private:
  std::optional<DataType> to_;
};

// ---- Factories ----

KernelFactory unaryFactory(UnaryOp op) {
  return [op](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    return std::make_unique<UnaryKernel>(node, op);
  };
}

KernelFactory binaryFactory(BinaryOp op) {
  return [op](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    return std::make_unique<BinaryKernel>(node, op);
  };
}

KernelFactory variadicFactory(VariadicOp op) {
  return [op](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    return std::make_unique<VariadicKernel>(node, op);
  };
}

absl::StatusOr<std::unique_ptr<Kernel>> createClip(const ir::Node& node, bool boundsAsInputs) {
  float low = std::numeric_limits<float>::lowest();
  float high = std::numeric_limits<float>::max();
  if (!boundsAsInputs) {
    absl::StatusOr<float> minValue = node.floatAttribute("min", low);
    if (!minValue.ok()) return minValue.status();
    absl::StatusOr<float> maxValue = node.floatAttribute("max", high);
    if (!maxValue.ok()) return maxValue.status();
    low = *minValue;
    high = *maxValue;
  }
  return std::make_unique<ClipKernel>(node, boundsAsInputs, low, high);
}

absl::StatusOr<std::unique_ptr<Kernel>> createCast(const ir::Node& node) {
  absl::StatusOr<int64_t> to = node.intAttribute("to", 0);
  if (!to.ok()) return to.status();
  if (!node.hasAttribute("to") || !ir::isValidDataType(static_cast<int32_t>(*to)) ||
      *to == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(node.describe(), ": attribute 'to' is missing or not an ONNX data type (",
                     *to, ")"));
  }
  return std::make_unique<CastKernel>(node, static_cast<DataType>(*to));
}

}  // namespace

void registerElementwiseKernels(KernelRegistry& registry) {
  const std::pair<const char*, UnaryOp> unaryOps[] = {
      {"Neg", UnaryOp::kNeg},         {"Abs", UnaryOp::kAbs},
      {"Sqrt", UnaryOp::kSqrt},       {"Exp", UnaryOp::kExp},
      {"Log", UnaryOp::kLog},         {"Sin", UnaryOp::kSin},
      {"Cos", UnaryOp::kCos},         {"Erf", UnaryOp::kErf},
      {"Sigmoid", UnaryOp::kSigmoid}, {"Tanh", UnaryOp::kTanh},
      {"Relu", UnaryOp::kRelu},       {"Reciprocal", UnaryOp::kReciprocal},
      {"Floor", UnaryOp::kFloor},     {"Ceil", UnaryOp::kCeil},
      {"Not", UnaryOp::kNot},
  };
  for (const auto& [opType, op] : unaryOps) registry.add("", opType, unaryFactory(op));

  // Opsets before 7 used the legacy `broadcast`/`axis` attributes instead of
  // numpy broadcasting; they are not registered.
  const std::pair<const char*, BinaryOp> binaryOps[] = {
      {"Add", BinaryOp::kAdd},     {"Sub", BinaryOp::kSub},         {"Mul", BinaryOp::kMul},
      {"Div", BinaryOp::kDiv},     {"Pow", BinaryOp::kPow},         {"Equal", BinaryOp::kEqual},
      {"Less", BinaryOp::kLess},   {"Greater", BinaryOp::kGreater}, {"And", BinaryOp::kAnd},
      {"Or", BinaryOp::kOr},       {"Xor", BinaryOp::kXor},
  };
  for (const auto& [opType, op] : binaryOps) registry.add("", opType, binaryFactory(op), 7);
  registry.add("", "LessOrEqual", binaryFactory(BinaryOp::kLessOrEqual), 12);
  registry.add("", "GreaterOrEqual", binaryFactory(BinaryOp::kGreaterOrEqual), 12);

  registry.add("", "Min", variadicFactory(VariadicOp::kMin), 6);
  registry.add("", "Max", variadicFactory(VariadicOp::kMax), 6);
  registry.add("", "Sum", variadicFactory(VariadicOp::kSum), 6);
  registry.add("", "Mean", variadicFactory(VariadicOp::kMean), 6);

  registry.add("", "Where",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<WhereKernel>(node);
               },
               9);
  registry.add("", "Clip", [](const ir::Node& node) { return createClip(node, false); }, 6, 10);
  registry.add("", "Clip", [](const ir::Node& node) { return createClip(node, true); }, 11);
  registry.add("", "Cast", createCast, 6);
  registry.add("", "CastLike",
               [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
                 return std::make_unique<CastKernel>(node, std::nullopt);
               },
               15);
}

}  // namespace roformer::runtime::cpu
