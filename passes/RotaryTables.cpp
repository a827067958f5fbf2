#include "passes/RotaryTables.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "passes/AttentionPatterns.h"
#include "passes/ShapeTerms.h"

namespace roformer::passes::attention {

double tableTolerance(int64_t position) { return 1e-6 + static_cast<double>(position) * 0x1p-20; }

namespace {

class RotaryTableMatcher {
 public:
  RotaryTableMatcher(ir::Value* cosPos, ir::Value* sinPos, int64_t headSize, DimContext& dims)
      : cosPos_(cosPos), sinPos_(sinPos), headSize_(headSize), dims_(dims) {}

  const RotaryTable& table() const { return table_; }

  bool verifyTables(MatchFailure* why) {
    auto cosTensor = ir::constantOf(cosPos_);
    auto sinTensor = ir::constantOf(sinPos_);
    if (cosTensor && sinTensor) return verifyFoldedTables(cosTensor, sinTensor, why);
    if (cosTensor || sinTensor) {
      return mismatch(why, "one of cos_pos and sin_pos is a constant and the other is computed");
    }
    return verifyComputedTables(why);
  }

  bool verifyFoldedTables(const std::shared_ptr<ir::Tensor>& cosTensor,
                          const std::shared_ptr<ir::Tensor>& sinTensor, MatchFailure* why) {
    const int64_t d = headSize_;
    for (const auto& [tensor, value] :
         {std::pair{cosTensor, cosPos_}, std::pair{sinTensor, sinPos_}}) {
      const auto& shape = tensor->dims();
      bool rank4 = shape.size() == 4 && shape[0] == 1 && shape[2] == 1 && shape[3] == d;
      bool rank3 = shape.size() == 3 && shape[1] == 1 && shape[2] == d;
      if (tensor->dataType() != ir::DataType::kFloat || !(rank4 || rank3)) {
        return mismatch(why, absl::StrCat("the rotary table ", describeValue(value),
                                          " is not float [1, s, 1, ", d, "]"));
      }
    }
    int64_t rows = cosTensor->dims()[cosTensor->rank() - 3];
    if (sinTensor->dims()[sinTensor->rank() - 3] != rows) {
      return mismatch(why, "the cos and sin tables have different lengths");
    }
    if (auto fixed = dims_.fixedSequence(); fixed && *fixed != rows) {
      return mismatch(why, absl::StrCat("the rotary tables have ", rows,
                                        " rows but the sequence length is ", *fixed));
    }
    if (rows < 2 && !dims_.fixedSequence()) {
      return mismatch(why,
                      "the rotary tables have a single row, so they do not depend on the position");
    }
    if (!checkTableValues(*cosTensor, cosPos_, rows, /*isSine=*/false, why) ||
        !checkTableValues(*sinTensor, sinPos_, rows, /*isSine=*/true, why)) {
      return false;
    }
    table_.folded = true;
    table_.rows = rows;
    table_.cosPos = cosTensor;
    table_.sinPos = sinTensor;
    return true;
  }

  bool checkTableValues(const ir::Tensor& tensor, const ir::Value* value, int64_t rows, bool isSine,
                        MatchFailure* why) {
    const int64_t d = headSize_;
    auto data = tensor.values<float>();
    for (int64_t p = 0; p < rows; ++p) {
      for (int64_t j = 0; j < d; ++j) {
        float element = data[p * d + j];
        if (j % 2 == 1 && element != data[p * d + j - 1]) {
          return mismatch(
              why,
              absl::StrFormat("elements [%d, %d] and [%d, %d] of the rotary table %s differ "
                              "(%.9g, %.9g); the interleaved layout repeats each column pair",
                              p, j - 1, p, j, describeValue(value), data[p * d + j - 1], element));
        }
        double frequency = std::pow(kRopeBase, -2.0 * static_cast<double>(j / 2) / d);
        double angle = static_cast<double>(p) * frequency;
        double expected = isSine ? std::sin(angle) : std::cos(angle);
        if (std::abs(element - expected) > tableTolerance(p)) {
          return mismatch(
              why, absl::StrFormat("element [%d, %d] of the rotary table %s is %.9g, but %s(%d * "
                                   "10000^(-%d/%d)) is %.9g (tolerance %.3g): not the RoPE table",
                                   p, j, describeValue(value), element, isSine ? "sin" : "cos", p,
                                   2 * (j / 2), d, expected, tableTolerance(p)));
        }
      }
    }
    return true;
  }

  bool verifyComputedTables(MatchFailure* why) {
    MatchFailure inner;
    ir::Value* cosTable = matchRepeatedColumns(cosPos_, 1, &inner);
    if (cosTable == nullptr) {
      return mismatch(
          why, absl::StrCat("cos_pos ", describeValue(cosPos_),
                            " is not the odd table columns repeated pairwise: ", inner.reason));
    }
    ir::Value* sinTable = matchRepeatedColumns(sinPos_, 0, &inner);
    if (sinTable == nullptr) {
      return mismatch(
          why, absl::StrCat("sin_pos ", describeValue(sinPos_),
                            " is not the even table columns repeated pairwise: ", inner.reason));
    }
    if (cosTable != sinTable) {
      return mismatch(why, "cos_pos and sin_pos come from different tables");
    }
    return matchSinusoidTable(cosTable, why);
  }

  // Concat_3(p0, p0, p1, p1, ...) with p = Split_3(Unsqueeze_2(table[..., start::2])).
  ir::Value* matchRepeatedColumns(ir::Value* value, int64_t start, MatchFailure* why) {
    const int64_t d = headSize_;
    ir::Node* concat = matchProducer(value, "Concat", why);
    if (concat == nullptr) return nullptr;
    if (!matchIntAttributeAxis(concat, 3, 4, why)) return nullptr;
    if (static_cast<int64_t>(concat->inputCount()) != d) {
      mismatch(why, absl::StrCat(concat->describe(), " joins ", concat->inputCount(),
                                 " pieces, expected ", d, " (each of ", d / 2, " columns twice)"));
      return nullptr;
    }
    ir::Node* split = concat->input(0) ? concat->input(0)->producer() : nullptr;
    if (split == nullptr || !split->is("Split") ||
        static_cast<int64_t>(split->outputCount()) != d / 2) {
      mismatch(why, absl::StrCat("the pieces of ", concat->describe(),
                                 " do not come from a Split into ", d / 2, " columns"));
      return nullptr;
    }
    for (int64_t i = 0; i < d; ++i) {
      const ir::Value* piece = concat->input(i);
      if (piece == nullptr || piece->producer() != split || piece->producerOutputIndex() != i / 2) {
        mismatch(why, absl::StrCat("input ", i, " of ", concat->describe(), " is not output ",
                                   i / 2, " of ", split->describe(),
                                   ": the columns are not repeated pairwise"));
        return nullptr;
      }
    }
    if (!matchIntAttributeAxis(split, 3, 4, why)) return nullptr;
    if (!splitIsEqual(split)) {
      mismatch(why, absl::StrCat(split->describe(), " does not cut single columns"));
      return nullptr;
    }
    auto path = matchParentPath(split, {{"Unsqueeze", 0}, {"Slice", 0}}, why);
    if (!path) return nullptr;
    if (!matchUnsqueezeAxis((*path)[0], 2, 4, why)) return nullptr;
    ir::Node* slice = (*path)[1];
    if (!matchStridedSlice(slice, 2, 3, start, 2, why)) return nullptr;
    if (!sliceReachesEnd(slice, d)) {
      mismatch(why, absl::StrCat(slice->describe(), " stops before the end of the table"));
      return nullptr;
    }
    return slice->input(0);
  }

  // Split without sizes (equal parts), or with every size 1.
  static bool splitIsEqual(const ir::Node* split) {
    if (const auto* attribute = split->findAttribute("split"); attribute != nullptr) {
      for (int64_t size : attribute->ints()) {
        if (size != 1) return false;
      }
      return true;
    }
    if (split->input(1) == nullptr) return true;
    auto sizes = constantIntegers(split->input(1));
    if (!sizes) return false;
    for (int64_t size : *sizes) {
      if (size != 1) return false;
    }
    return true;
  }

  // table = Reshape(Concat_3(Unsqueeze_3(Sin(a)), Unsqueeze_3(Cos(a))), [1, s, d]),
  // a = pos (x) w, pos = Unsqueeze_0(Cast<float>(Range(0, s, 1))).
  bool matchSinusoidTable(ir::Value* table, MatchFailure* why) {
    const int64_t d = headSize_;
    DimContext& dims = dims_;
    auto fail = [&](const std::string& reason) {
      return mismatch(why, absl::StrCat("the rotary table ", describeValue(table), ": ", reason));
    };
    MatchFailure inner;
    ir::Node* reshape = matchProducer(table, "Reshape", &inner);
    if (reshape == nullptr) return fail(inner.reason);
    ir::Node* pairs = matchProducer(reshape->input(0), "Concat", &inner);
    if (pairs == nullptr) return fail(inner.reason);
    if (pairs->inputCount() != 2 || !matchIntAttributeAxis(pairs, 3, 4, &inner)) {
      return fail(
          absl::StrCat(pairs->describe(), " does not stack two tensors along a new last axis"));
    }
    auto sinPath = matchParentPath(pairs, {{"Unsqueeze", 0}, {"Sin", 0}}, &inner);
    if (!sinPath) return fail(absl::StrCat("its even columns are not sines: ", inner.reason));
    auto cosPath = matchParentPath(pairs, {{"Unsqueeze", 1}, {"Cos", 0}}, &inner);
    if (!cosPath) return fail(absl::StrCat("its odd columns are not cosines: ", inner.reason));
    if (!matchUnsqueezeAxis((*sinPath)[0], 3, 4, &inner) ||
        !matchUnsqueezeAxis((*cosPath)[0], 3, 4, &inner)) {
      return fail(inner.reason);
    }
    ir::Value* angles = (*sinPath)[1]->input(0);
    if ((*cosPath)[1]->input(0) != angles)
      return fail("its sines and cosines take different angles");

    ir::Value* positions = nullptr;
    ir::Value* frequencies = nullptr;
    ir::Node* product = angles->producer();
    if (product != nullptr && product->is("Einsum")) {
      if (!matchEinsum(product, "bn,d->bnd", &inner)) return fail(inner.reason);
      positions = product->input(0);
      frequencies = product->input(1);
    } else if (product != nullptr && product->is("Mul")) {
      for (int order = 0; order < 2; ++order) {
        ir::Node* unsqueeze = product->input(order) ? product->input(order)->producer() : nullptr;
        if (unsqueeze != nullptr && unsqueeze->is("Unsqueeze") &&
            matchUnsqueezeAxis(unsqueeze, 2, 3, &inner)) {
          positions = unsqueeze->input(0);
          frequencies = product->input(1 - order);
        }
      }
      if (positions == nullptr)
        return fail(absl::StrCat(product->describe(), " is not pos[:, :, None] * w"));
    } else {
      return fail(absl::StrCat("the angles ", describeValue(angles),
                               " are not an outer product of positions and frequencies"));
    }

    if (!matchPositions(positions, &inner)) return fail(inner.reason);
    if (!matchFrequencies(frequencies, &inner)) return fail(inner.reason);

    // The Range proved pos is [1, s]; now the final Reshape must give [1, s, d].
    const LogicalDim one = LogicalDim::constant(1), sequence = LogicalDim::sequence();
    dims.setLayout(reshape->input(0),
                   {one, sequence, LogicalDim::constant(d / 2), LogicalDim::constant(2)});
    if (!dims.checkReshape(reshape, {one, sequence, LogicalDim::constant(d)}, &inner)) {
      return fail(inner.reason);
    }
    table_.folded = false;
    return true;
  }

  // pos = Unsqueeze_0(Cast<float>(Range(0, s, 1))).
  bool matchPositions(ir::Value* positions, MatchFailure* why) {
    ir::Node* unsqueeze = matchProducer(positions, "Unsqueeze", why);
    if (unsqueeze == nullptr || !matchUnsqueezeAxis(unsqueeze, 0, 2, why)) return false;
    ir::Value* current = unsqueeze->input(0);
    if (current->producer() != nullptr && current->producer()->is("Cast")) {
      if (castTarget(current->producer()) != static_cast<int64_t>(ir::DataType::kFloat)) {
        return mismatch(why, absl::StrCat(current->producer()->describe(),
                                          " does not cast the positions to float"));
      }
      current = current->producer()->input(0);
    }
    ir::Node* range = matchProducer(current, "Range", why);
    if (range == nullptr) return false;
    auto start = scalarConstant(range->input(0));
    auto delta = scalarConstant(range->input(2));
    if (!start || *start != 0 || !delta || *delta != 1) {
      return mismatch(why, absl::StrCat(range->describe(), " does not count from 0 in steps of 1"));
    }
    RankOracle rankOracle = [this](const ir::Value* value) { return dims_.rank(value); };
    auto limit = evaluateShapeTerms(range->input(1), rankOracle, why);
    if (!limit) return false;
    std::optional<LogicalDim> length;
    if (limit->terms.size() == 1) length = dims_.resolve(limit->terms[0]);
    if (!length || !dims_.same(*length, LogicalDim::sequence())) {
      return mismatch(why, absl::StrCat("cannot prove that ", range->describe(),
                                        " counts to the sequence length"));
    }
    return true;
  }

  // w_i = 10000^(-2i/d): a constant, or Pow(10000, e) with constant e_i = -2i/d.
  bool matchFrequencies(ir::Value* frequencies, MatchFailure* why) {
    const int64_t half = headSize_ / 2;
    std::vector<float> values(half);
    if (auto constant = ir::constantOf(frequencies)) {
      if (constant->dataType() != ir::DataType::kFloat || constant->elementCount() != half) {
        return mismatch(why, absl::StrCat("the frequencies ", describeValue(frequencies),
                                          " are not float[", half, "]"));
      }
      auto data = constant->values<float>();
      for (int64_t i = 0; i < half; ++i) {
        double expected = std::pow(kRopeBase, -2.0 * i / headSize_);
        if (std::abs(data[i] - expected) > kConstantTolerance * expected) {
          return mismatch(
              why,
              absl::StrFormat("frequency %d of %s is %.9g, but 10000^(-%d/%d) is %.9g: "
                              "not the RoPE frequencies",
                              i, describeValue(frequencies), data[i], 2 * i, headSize_, expected));
        }
        values[i] = data[i];
      }
    } else {
      ir::Node* pow = matchProducer(frequencies, "Pow", why);
      if (pow == nullptr) return false;
      auto base = scalarConstant(pow->input(0));
      if (!base || std::abs(*base - kRopeBase) > kConstantTolerance * kRopeBase) {
        return mismatch(why,
                        absl::StrCat("the rotary frequency base of ", pow->describe(), " is ",
                                     base ? absl::StrCat(*base) : "not a constant", ", not 10000"));
      }
      auto exponents = ir::constantOf(pow->input(1));
      if (!exponents || exponents->dataType() != ir::DataType::kFloat ||
          exponents->elementCount() != half) {
        return mismatch(why, absl::StrCat("the exponents of ", pow->describe(),
                                          " are not a constant float[", half, "]"));
      }
      auto data = exponents->values<float>();
      for (int64_t i = 0; i < half; ++i) {
        double expected = -2.0 * i / headSize_;
        if (std::abs(data[i] - expected) > kConstantTolerance) {
          return mismatch(why, absl::StrFormat("exponent %d of %s is %.9g, expected -%d/%d", i,
                                               pow->describe(), data[i], 2 * i, headSize_));
        }
        values[i] = static_cast<float>(
            std::pow(static_cast<double>(static_cast<float>(*base)), static_cast<double>(data[i])));
      }
    }
    table_.frequencies = std::move(values);
    return true;
  }

 private:
  ir::Value* cosPos_;
  ir::Value* sinPos_;
  int64_t headSize_;
  DimContext& dims_;
  RotaryTable table_;
};

}  // namespace

std::optional<RotaryTable> verifyRotaryTables(ir::Value* cosPos, ir::Value* sinPos,
                                              int64_t headSize, DimContext& dims,
                                              MatchFailure* why) {
  RotaryTableMatcher matcher(cosPos, sinPos, headSize, dims);
  if (!matcher.verifyTables(why)) return std::nullopt;
  return matcher.table();
}

}  // namespace roformer::passes::attention
