// MatMul, Gemm and Einsum. Float and double products go through OpenBLAS;
// integer MatMul uses a plain loop.
#include <map>
#include <set>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "runtime/cpu/Blas.h"
#include "runtime/cpu/KernelUtils.h"
#include "runtime/cpu/Registration.h"

namespace roformer::runtime::cpu {
namespace {

// Element offsets of the matrices that each batch entry of a broadcast
// product reads. Batch shapes are aligned from the right as in numpy.
struct BatchOffsets {
  std::vector<int64_t> a;
  std::vector<int64_t> b;
};

BatchOffsets broadcastBatchOffsets(const Shape& batch, const Shape& batchA, const Shape& batchB,
                                   int64_t matrixA, int64_t matrixB) {
  BatchOffsets offsets;
  const int64_t count = shapeElementCount(batch);
  if (count == 0) return offsets;
  BroadcastPlan plan = makeBroadcastPlan(batch, {batchA, batchB});
  offsets.a.reserve(count);
  offsets.b.reserve(count);
  const int64_t strideA = plan.strides[0].back();
  const int64_t strideB = plan.strides[1].back();
  forEachBroadcastRow<2>(plan, 0, plan.rowCount(),
                         [&](const std::array<int64_t, 2>& start, int64_t, int64_t n) {
                           for (int64_t i = 0; i < n; ++i) {
                             offsets.a.push_back((start[0] + i * strideA) * matrixA);
                             offsets.b.push_back((start[1] + i * strideB) * matrixB);
                           }
                         });
  return offsets;
}

// ---- MatMul ----

class MatMulKernel : public CpuKernel {
 public:
  using CpuKernel::CpuKernel;

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "A"); !status.ok()) return status;
    if (absl::Status status = requireInput(context, 1, "B"); !status.ok()) return status;
    const TensorView& a = context.inputs[0];
    const TensorView& b = context.inputs[1];
    if (a.type != b.type) {
      return invalidArgument("inputs A and B must have the same element type, got ",
                             typeName(a.type), " and ", typeName(b.type));
    }
    if (!visitType(TypeList<float, double, int32_t, int64_t, uint32_t, uint64_t>{}, a.type,
                   [](auto) {})) {
      return unsupportedType("input A", a.type);
    }
    absl::StatusOr<Layout> layout = resolve(a.shape, b.shape);
    if (!layout.ok()) return layout.status();
    context.outputs[0].type = a.type;
    context.outputs[0].shape = layout->output;
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& a = context.inputs[0];
    const TensorView& b = context.inputs[1];
    Layout layout = *resolve(a.shape, b.shape);
    if (context.outputs[0].elementCount() == 0) return absl::OkStatus();

    if (a.type == DataType::kFloat) {
      multiply(layout, a.as<const float>(), b.as<const float>(), context.outputs[0].as<float>(),
               context.threads);
    } else if (a.type == DataType::kDouble) {
      multiply(layout, a.as<const double>(), b.as<const double>(),
               context.outputs[0].as<double>(), context.threads);
    } else {
      visitType(TypeList<int32_t, int64_t, uint32_t, uint64_t>{}, a.type, [&](auto tag) {
        using T = typename decltype(tag)::type;
        multiplyIntegers(layout, a.as<const T>(), b.as<const T>(), context.outputs[0].as<T>());
      });
    }
    return absl::OkStatus();
  }

 private:
  struct Layout {
    int64_t m = 0;
    int64_t n = 0;
    int64_t k = 0;
    Shape batch;
    Shape batchA;
    Shape batchB;
    Shape output;
  };

  // numpy matmul shapes: a 1-D A is a row vector and a 1-D B a column vector,
  // and their unit dim is removed from the output.
  absl::StatusOr<Layout> resolve(const Shape& shapeA, const Shape& shapeB) const {
    if (shapeA.empty() || shapeB.empty()) {
      return invalidArgument("inputs must have rank 1 or more, got ", shapeToString(shapeA),
                             " and ", shapeToString(shapeB));
    }
    Layout layout;
    Shape a = shapeA;
    Shape b = shapeB;
    const bool vectorA = a.size() == 1;
    const bool vectorB = b.size() == 1;
    if (vectorA) a.insert(a.begin(), 1);
    if (vectorB) b.push_back(1);
    layout.m = a[a.size() - 2];
    layout.k = a.back();
    layout.n = b.back();
    if (b[b.size() - 2] != layout.k) {
      return invalidArgument("inner dims differ: A ", shapeToString(shapeA), " and B ",
                             shapeToString(shapeB));
    }
    layout.batchA.assign(a.begin(), a.end() - 2);
    layout.batchB.assign(b.begin(), b.end() - 2);
    absl::StatusOr<Shape> batch = broadcastShapes(name(), {layout.batchA, layout.batchB});
    if (!batch.ok()) return batch.status();
    layout.batch = *batch;
    layout.output = layout.batch;
    if (!vectorA) layout.output.push_back(layout.m);
    if (!vectorB) layout.output.push_back(layout.n);
    return layout;
  }

  template <typename T>
  void multiply(const Layout& layout, const T* a, const T* b, T* out, ThreadPool* threads) const {
    const int64_t count = shapeElementCount(layout.batch);
    // B shared by every batch entry and A complete: one product with the
    // batch folded into M (the usual [batch, seq, hidden] x [hidden, out]).
    if (shapeElementCount(layout.batchB) == 1 && shapeElementCount(layout.batchA) == count) {
      gemm(threads, false, false, count * layout.m, layout.n, layout.k, T(1), a, layout.k, b,
           layout.n, T(0), out, layout.n);
      return;
    }
    BatchOffsets offsets = broadcastBatchOffsets(layout.batch, layout.batchA, layout.batchB,
                                                 layout.m * layout.k, layout.k * layout.n);
    batchedGemm<T>(count, false, false, layout.m, layout.n, layout.k, a, offsets.a.data(),
                   layout.k, b, offsets.b.data(), layout.n, out, layout.m * layout.n, threads);
  }

  template <typename T>
  void multiplyIntegers(const Layout& layout, const T* a, const T* b, T* out) const {
    const int64_t count = shapeElementCount(layout.batch);
    BatchOffsets offsets = broadcastBatchOffsets(layout.batch, layout.batchA, layout.batchB,
                                                 layout.m * layout.k, layout.k * layout.n);
    for (int64_t batch = 0; batch < count; ++batch) {
      const T* matrixA = a + offsets.a[batch];
      const T* matrixB = b + offsets.b[batch];
      T* matrixC = out + batch * layout.m * layout.n;
      std::fill_n(matrixC, layout.m * layout.n, T(0));
      for (int64_t i = 0; i < layout.m; ++i) {
        for (int64_t p = 0; p < layout.k; ++p) {
          const T scale = matrixA[i * layout.k + p];
          const T* rowB = matrixB + p * layout.n;
          T* rowC = matrixC + i * layout.n;
          for (int64_t j = 0; j < layout.n; ++j) rowC[j] = T(rowC[j] + scale * rowB[j]);
        }
      }
    }
  }
};

// ---- Gemm ----

class GemmKernel : public CpuKernel {
 public:
  GemmKernel(const ir::Node& node, float alpha, float beta, bool transA, bool transB)
      : CpuKernel(node), alpha_(alpha), beta_(beta), transA_(transA), transB_(transB) {}

  absl::Status inferOutputs(KernelContext& context) override {
    if (absl::Status status = requireInput(context, 0, "A"); !status.ok()) return status;
    if (absl::Status status = requireInput(context, 1, "B"); !status.ok()) return status;
    const TensorView& a = context.inputs[0];
    const TensorView& b = context.inputs[1];
    if (a.type != DataType::kFloat && a.type != DataType::kDouble) {
      return unsupportedType("input A", a.type);
    }

    for (size_t i = 1; i < 3; ++i) {
      if (hasInput(context, i) && context.inputs[i].type != a.type) {
        return invalidArgument("input ", i, " has element type ", typeName(context.inputs[i].type),
                               " but A has ", typeName(a.type));
      }
    }
    if (a.shape.size() != 2 || b.shape.size() != 2) {
      return invalidArgument("inputs A and B must be 2-D, got ", shapeToString(a.shape), " and ",
                             shapeToString(b.shape));
    }

    const int64_t m = transA_ ? a.shape[1] : a.shape[0];
    const int64_t k = transA_ ? a.shape[0] : a.shape[1];
    const int64_t kB = transB_ ? b.shape[1] : b.shape[0];
    const int64_t n = transB_ ? b.shape[0] : b.shape[1];
    if (k != kB) {
      return invalidArgument("inner dims differ: A ", shapeToString(a.shape), " (transA=", transA_,
                             ") and B ", shapeToString(b.shape), " (transB=", transB_, ")");
    }

    if (hasInput(context, 2)) {
      absl::StatusOr<Shape> shape = broadcastShapes(name(), {{m, n}, context.inputs[2].shape});
      if (!shape.ok() || *shape != Shape{m, n}) {
        return invalidArgument("input C of shape ", shapeToString(context.inputs[2].shape),
                               " does not broadcast to the result shape ",
                               shapeToString({m, n}));
      }
    }

    context.outputs[0].type = a.type;
    context.outputs[0].shape = {m, n};
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    const TensorView& a = context.inputs[0];
    const TensorView& b = context.inputs[1];
    TensorView& out = context.outputs[0];
    const int64_t m = out.shape[0];
    const int64_t n = out.shape[1];
    const int64_t k = transA_ ? a.shape[0] : a.shape[1];
    const bool addC = hasInput(context, 2) && beta_ != 0.0f;
    if (addC) {
      // Broadcast C into the output, then let gemm scale it by beta.
      const TensorView& c = context.inputs[2];
      const size_t offset = 2 - c.shape.size();
      std::vector<int64_t> strides = contiguousStrides(c.shape);
      std::vector<int64_t> sourceStrides(2, 0);
      for (size_t d = 0; d < c.shape.size(); ++d) {
        sourceStrides[offset + d] = c.shape[d] == 1 ? 0 : strides[d];
      }
      copyStrided(c.data, 0, sourceStrides, out.shape, out.data, ir::dataTypeSize(out.type),
                  nullptr);
    }
    visitType(FloatTypes{}, a.type, [&](auto tag) {
      using T = typename decltype(tag)::type;
      gemm(context.threads, transA_, transB_, m, n, k, static_cast<T>(alpha_), a.as<const T>(),
           a.shape[1], b.as<const T>(), b.shape[1], addC ? static_cast<T>(beta_) : T(0),
           out.as<T>(), n);
    });
    return absl::OkStatus();
  }

 private:
  float alpha_;
  float beta_;
  bool transA_;
  bool transB_;
};

// ---- Einsum ----

// A parsed equation. Letters keep their character code as label; the dims
// covered by "..." get labels 256, 257, ... aligned from the right, as numpy
// broadcasting aligns them.
struct EinsumEquation {
  std::vector<std::vector<int>> inputs;
  std::vector<int> output;
};

absl::StatusOr<EinsumEquation> parseEinsum(const std::string& node, const std::string& equation,
                                           const std::vector<size_t>& ranks) {
  auto invalid = [&](absl::string_view reason) {
    return absl::InvalidArgumentError(
        absl::StrCat(node, ": equation '", equation, "' is invalid: ", reason));
  };
  std::string text;
  for (char c : equation) {
    if (c != ' ') text.push_back(c);
  }
  const size_t arrow = text.find("->");
  const std::string left = text.substr(0, arrow);
  std::vector<std::string> terms = absl::StrSplit(left, ',');
  if (terms.size() != ranks.size()) {
    return invalid(absl::StrCat("it has ", terms.size(), " operands but the node has ",
                                ranks.size(), " inputs"));
  }

  constexpr int kEllipsisBase = 256;
  size_t ellipsisRank = 0;
  auto parseTerm = [&](const std::string& term, std::optional<size_t> rank)
      -> absl::StatusOr<std::vector<int>> {
    std::vector<int> labels;
    const size_t dots = term.find("...");
    size_t letters = 0;
    for (char c : term) letters += std::isalpha(static_cast<unsigned char>(c)) ? 1 : 0;
    if (letters + (dots == std::string::npos ? 0 : 3) != term.size()) {
      return invalid(absl::StrCat("term '", term, "' has a character other than letters and ..."));
    }
    size_t covered = 0;
    if (dots != std::string::npos) {
      if (!rank.has_value()) {
        covered = ellipsisRank;
      } else if (*rank >= letters) {
        covered = *rank - letters;
      } else {
        return invalid(absl::StrCat("term '", term, "' has more letters than its input's rank"));
      }
      ellipsisRank = std::max(ellipsisRank, covered);
    } else if (rank.has_value() && *rank != letters) {
      return invalid(absl::StrCat("term '", term, "' has ", letters, " letters for an input of rank ", *rank));
    }
    for (size_t i = 0; i < term.size();) {
      if (i == dots) {
        for (size_t e = 0; e < covered; ++e) {
          labels.push_back(kEllipsisBase + static_cast<int>(ellipsisRank - covered + e));
        }
        i += 3;
        continue;
      }
      labels.push_back(static_cast<unsigned char>(term[i]));
      ++i;
    }
    return labels;
  };

  EinsumEquation parsed;
  for (size_t i = 0; i < terms.size(); ++i) {
    absl::StatusOr<std::vector<int>> labels = parseTerm(terms[i], ranks[i]);
    if (!labels.ok()) return labels.status();
    parsed.inputs.push_back(*labels);
  }
  // Ellipsis labels were numbered against the largest ellipsis seen so far;
  // renumber every term against the final one.
  for (size_t i = 0; i < terms.size(); ++i) {
    absl::StatusOr<std::vector<int>> labels = parseTerm(terms[i], ranks[i]);
    parsed.inputs[i] = *labels;
  }

  if (arrow != std::string::npos) {
    absl::StatusOr<std::vector<int>> labels = parseTerm(text.substr(arrow + 2), std::nullopt);
    if (!labels.ok()) return labels.status();
    parsed.output = *labels;
  } else {
    // Implicit output: the ellipsis dims, then the letters used exactly once,
    // in alphabetical order.
    std::map<int, int> counts;
    for (const auto& labels : parsed.inputs) {
      for (int label : labels) ++counts[label];
    }
    for (size_t e = 0; e < ellipsisRank; ++e) parsed.output.push_back(kEllipsisBase + static_cast<int>(e));
    for (const auto& [label, count] : counts) {
      if (label < kEllipsisBase && count == 1) parsed.output.push_back(label);
    }
  }
  return parsed;
}

class EinsumKernel : public CpuKernel {
 public:
  EinsumKernel(const ir::Node& node, std::string equation)
      : CpuKernel(node), equation_(std::move(equation)) {}

  absl::Status inferOutputs(KernelContext& context) override {
    absl::StatusOr<Plan> plan = makePlan(context);
    if (!plan.ok()) return plan.status();
    context.outputs[0].type = context.inputs[0].type;
    context.outputs[0].shape = plan->outputShape;
    return absl::OkStatus();
  }

  absl::Status compute(KernelContext& context) override {
    absl::StatusOr<Plan> plan = makePlan(context);
    if (!plan.ok()) return plan.status();
    if (context.outputs[0].elementCount() == 0) return absl::OkStatus();
    visitType(FloatTypes{}, context.inputs[0].type, [&](auto tag) {
      using T = typename decltype(tag)::type;
      run<T>(*plan, context);
    });
    return absl::OkStatus();
  }

 private:
  // The equation as a batched product: operand A is arranged as
  // [batch, left, contracted, summedA] and B as [batch, contracted, right,
  // summedB], where summed labels appear in one operand only and are summed
  // before the product. The product is [batch, left, right], which a final
  // transpose turns into the output order. A single operand is the same with
  // no B: [batch(=kept), summed].
  struct Plan {
    std::map<int, int64_t> sizes;
    std::vector<int> batch, left, right, contracted, summedA, summedB;
    std::vector<int> outputLabels;
    Shape outputShape;
  };

  absl::StatusOr<Plan> makePlan(const KernelContext& context) const {
    if (context.inputs.empty() || context.inputs.size() > 2) {
      return unimplemented("equation '", equation_, "' has ", context.inputs.size(),
                           " operands; the CPU kernel supports one or two");
    }
    std::vector<size_t> ranks;
    for (size_t i = 0; i < context.inputs.size(); ++i) {
      if (absl::Status status = requireInput(context, i, "Inputs"); !status.ok()) return status;
      if (context.inputs[i].type != context.inputs[0].type) {
        return invalidArgument("input ", i, " has element type ", typeName(context.inputs[i].type),
                               " but input 0 has ", typeName(context.inputs[0].type));
      }
      ranks.push_back(context.inputs[i].shape.size());
    }
    if (context.inputs[0].type != DataType::kFloat && context.inputs[0].type != DataType::kDouble) {
      return unsupportedType("input 0", context.inputs[0].type);
    }
    absl::StatusOr<EinsumEquation> equation = parseEinsum(name(), equation_, ranks);
    if (!equation.ok()) return equation.status();

    Plan plan;
    std::vector<std::set<int>> present(2);
    for (size_t i = 0; i < equation->inputs.size(); ++i) {
      const std::vector<int>& labels = equation->inputs[i];
      for (size_t d = 0; d < labels.size(); ++d) {
        if (!present[i].insert(labels[d]).second) {
          return unimplemented("equation '", equation_,
                               "' repeats a label within one operand (a diagonal), which the CPU "
                               "kernel does not support");
        }
        const int64_t size = context.inputs[i].shape[d];
        auto [entry, inserted] = plan.sizes.emplace(labels[d], size);
        if (!inserted && entry->second != size) {
          return unimplemented("equation '", equation_, "' gives one label sizes ", entry->second,
                               " and ", size, "; broadcasting a label is not supported");
        }
      }
    }
    std::set<int> outputSet;
    for (int label : equation->output) {
      if (!outputSet.insert(label).second || !plan.sizes.count(label)) {
        return invalidArgument("equation '", equation_, "' has an output label that is repeated or in no input");
      }
      plan.outputShape.push_back(plan.sizes[label]);
    }
    plan.outputLabels = equation->output;

    const bool binary = equation->inputs.size() == 2;
    for (const auto& [label, size] : plan.sizes) {
      const bool inA = present[0].count(label) > 0;
      const bool inB = binary && present[1].count(label) > 0;
      const bool inOut = outputSet.count(label) > 0;
      if (inA && inB) {
        (inOut ? plan.batch : plan.contracted).push_back(label);
      } else if (inA) {
        (inOut ? plan.left : plan.summedA).push_back(label);
      } else {
        (inOut ? plan.right : plan.summedB).push_back(label);
      }
    }
    // Keep batch, left and right in output order so the final transpose is
    // often the identity.
    auto byOutputPosition = [&](std::vector<int>& labels) {
      std::sort(labels.begin(), labels.end(), [&](int x, int y) {
        return std::find(plan.outputLabels.begin(), plan.outputLabels.end(), x) <
               std::find(plan.outputLabels.begin(), plan.outputLabels.end(), y);
      });
    };
    byOutputPosition(plan.batch);
    byOutputPosition(plan.left);
    byOutputPosition(plan.right);
    return plan;
  }

  // An operand arranged for the product: a pointer to its elements, which are
  // either the input's own (when no copy is needed) or `storage`.
  template <typename T>
  struct Arranged {
    const T* data = nullptr;
    std::vector<T> storage;
  };

  // Arranges `view` (whose dims carry `labels`) in the order `order`, then
  // sums the trailing `summedCount` dims away.
  template <typename T>
  Arranged<T> arrange(const TensorView& view, const std::vector<int>& labels,
                      const std::vector<int>& order, size_t summedCount, const Plan& plan) const {
    Arranged<T> result;
    if (order == labels && summedCount == 0) {
      result.data = view.as<const T>();
      return result;
    }
    std::vector<int64_t> strides = contiguousStrides(view.shape);
    std::vector<int64_t> sourceStrides;
    Shape dims;
    for (int label : order) {
      const size_t d = std::find(labels.begin(), labels.end(), label) - labels.begin();
      sourceStrides.push_back(strides[d]);
      dims.push_back(plan.sizes.at(label));
    }
    std::vector<T> arranged(static_cast<size_t>(shapeElementCount(dims)));
    if (dims.empty()) {
      arranged[0] = *view.as<const T>();
    } else if (!arranged.empty()) {
      copyStrided(view.data, 0, sourceStrides, dims, arranged.data(), sizeof(T), nullptr);
    }
    if (summedCount > 0) {
      const Shape kept(dims.begin(), dims.end() - summedCount);
      const int64_t run = shapeElementCount(dims) == 0
                              ? 0
                              : static_cast<int64_t>(arranged.size()) / shapeElementCount(kept);
      std::vector<T> summed(static_cast<size_t>(shapeElementCount(kept)), T(0));
      for (size_t o = 0; o < summed.size(); ++o) {
        T total = 0;
        for (int64_t i = 0; i < run; ++i) total += arranged[o * run + i];
        summed[o] = total;
      }
      arranged = std::move(summed);
    }
    result.storage = std::move(arranged);
    result.data = result.storage.data();
    return result;
  }

  static int64_t product(const Plan& plan, const std::vector<int>& labels) {
    int64_t result = 1;
    for (int label : labels) result *= plan.sizes.at(label);
    return result;
  }

  static std::vector<int> concat(std::initializer_list<const std::vector<int>*> parts) {
    std::vector<int> all;
    for (const auto* part : parts) all.insert(all.end(), part->begin(), part->end());
    return all;
  }

  // Picks the layout of one operand of the product: `plain` (no transpose
  // flag) or `transposed`. A layout that matches the input needs no copy;
  // otherwise one whose innermost dim is the input's innermost copies whole
  // rows. Summed labels force the plain layout, which puts them last.
  static bool chooseTransposed(const std::vector<int>& labels, const std::vector<int>& plain,
                               const std::vector<int>& transposed, bool hasSummed) {
    if (hasSummed || labels == plain) return false;
    if (labels == transposed) return true;
    if (!plain.empty() && plain.back() == labels.back()) return false;
    return !transposed.empty() && transposed.back() == labels.back();
  }

  template <typename T>
  void run(const Plan& plan, KernelContext& context) const {
    const bool binary = context.inputs.size() == 2;
    const std::vector<int> labelsA = *parseLabels(context, 0);
    TensorView& out = context.outputs[0];
    std::vector<int> productLabels;
    std::vector<T> productStorage;
    const T* productValues = nullptr;
    // The product goes straight into the output when no transpose follows.
    std::vector<int> finalLabels = binary ? concat({&plan.batch, &plan.left, &plan.right})
                                          : concat({&plan.batch, &plan.left});
    const bool direct = finalLabels == plan.outputLabels;
    T* productBuffer = nullptr;
    if (direct) {
      productBuffer = out.as<T>();
    } else {
      productStorage.resize(static_cast<size_t>(out.elementCount()));
      productBuffer = productStorage.data();
    }
    productValues = productBuffer;
    productLabels = finalLabels;

    if (!binary) {
      Arranged<T> a = arrange<T>(context.inputs[0], labelsA, concat({&plan.left, &plan.summedA}),
                                 plan.summedA.size(), plan);
      std::copy_n(a.data, out.elementCount(), productBuffer);
    } else {
      const std::vector<int> labelsB = *parseLabels(context, 1);
      const std::vector<int> plainA = concat({&plan.batch, &plan.left, &plan.contracted});
      const std::vector<int> transposedA = concat({&plan.batch, &plan.contracted, &plan.left});
      const bool transA = chooseTransposed(labelsA, plainA, transposedA, !plan.summedA.empty());
      const std::vector<int> plainB = concat({&plan.batch, &plan.contracted, &plan.right});
      const std::vector<int> transposedB = concat({&plan.batch, &plan.right, &plan.contracted});
      const bool transB = chooseTransposed(labelsB, plainB, transposedB, !plan.summedB.empty());
      Arranged<T> a = arrange<T>(context.inputs[0], labelsA,
                                 transA ? transposedA : concat({&plainA, &plan.summedA}),
                                 plan.summedA.size(), plan);
      Arranged<T> b = arrange<T>(context.inputs[1], labelsB,
                                 transB ? transposedB : concat({&plainB, &plan.summedB}),
                                 plan.summedB.size(), plan);
      const int64_t batch = product(plan, plan.batch);
      const int64_t m = product(plan, plan.left);
      const int64_t k = product(plan, plan.contracted);
      const int64_t n = product(plan, plan.right);
      std::vector<int64_t> offsetsA(batch), offsetsB(batch);
      for (int64_t i = 0; i < batch; ++i) {
        offsetsA[i] = i * m * k;
        offsetsB[i] = i * k * n;
      }
      batchedGemm<T>(batch, transA, transB, m, n, k, a.data, offsetsA.data(), transA ? m : k,
                     b.data, offsetsB.data(), transB ? k : n, productBuffer, m * n,
                     context.threads);
    }
    if (direct) return;

    // Transpose the product into the output order.
    Shape productShape;
    for (int label : productLabels) productShape.push_back(plan.sizes.at(label));
    std::vector<int64_t> strides = contiguousStrides(productShape);
    std::vector<int64_t> sourceStrides;
    for (int label : plan.outputLabels) {
      const size_t d = std::find(productLabels.begin(), productLabels.end(), label) -
                       productLabels.begin();
      sourceStrides.push_back(strides[d]);
    }
    copyStrided(productValues, 0, sourceStrides, out.shape, out.data, sizeof(T), context.threads);
  }

  absl::StatusOr<std::vector<int>> parseLabels(const KernelContext& context, size_t index) const {
    std::vector<size_t> ranks;
    for (const TensorView& input : context.inputs) ranks.push_back(input.shape.size());
    absl::StatusOr<EinsumEquation> equation = parseEinsum(name(), equation_, ranks);
    if (!equation.ok()) return equation.status();
    return equation->inputs[index];
  }

  std::string equation_;
};

// ---- Factories ----

absl::StatusOr<std::unique_ptr<Kernel>> createGemm(const ir::Node& node) {
  absl::StatusOr<float> alpha = node.floatAttribute("alpha", 1.0f);
  if (!alpha.ok()) return alpha.status();
  absl::StatusOr<float> beta = node.floatAttribute("beta", 1.0f);
  if (!beta.ok()) return beta.status();
  absl::StatusOr<int64_t> transA = node.intAttribute("transA", 0);
  if (!transA.ok()) return transA.status();
  absl::StatusOr<int64_t> transB = node.intAttribute("transB", 0);
  if (!transB.ok()) return transB.status();
  return std::make_unique<GemmKernel>(node, *alpha, *beta, *transA != 0, *transB != 0);
}

absl::StatusOr<std::unique_ptr<Kernel>> createEinsum(const ir::Node& node) {
  absl::StatusOr<std::string> equation = node.stringAttribute("equation", "");
  if (!equation.ok()) return equation.status();
  if (equation->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(node.describe(), ": missing required attribute 'equation'"));
  }
  return std::make_unique<EinsumKernel>(node, *equation);
}

}  // namespace

void registerMatMulKernels(KernelRegistry& registry) {
  registry.add("", "MatMul", [](const ir::Node& node) -> absl::StatusOr<std::unique_ptr<Kernel>> {
    return std::make_unique<MatMulKernel>(node);
  });
  registry.add("", "Gemm", createGemm, 7);
  registry.add("", "Einsum", createEinsum, 12);
}

}  // namespace roformer::runtime::cpu
