#include "passes/AttentionDims.h"

#include <tuple>

#include "absl/strings/str_cat.h"

namespace roformer::passes::attention {

std::string dimName(const LogicalDim& dim) {
  switch (dim.kind) {
    case LogicalDim::Kind::kBatch:
      return "batch";
    case LogicalDim::Kind::kSequence:
      return "sequence";
    case LogicalDim::Kind::kBatchTimesSequence:
      return "batch*sequence";
    case LogicalDim::Kind::kConstant:
      return std::to_string(dim.size);
  }
  return "?";
}

DimContext::DimContext(const ir::Value* x, DimProvenance& provenance) : provenance_(provenance) {
  if (auto shape = x->shape(); shape && shape->size() == 3) {
    batch_ = (*shape)[0];
    sequence_ = (*shape)[1];
  }
  batchOrigin_ = provenance.origin(x, 0);
  sequenceOrigin_ = provenance.origin(x, 1);
  // Tracing may find a size that shape inference missed.
  if (!batch_.value && batchOrigin_ && batchOrigin_->size) batch_.value = batchOrigin_->size;
  if (!sequence_.value && sequenceOrigin_ && sequenceOrigin_->size) {
    sequence_.value = sequenceOrigin_->size;
  }
}

std::optional<int64_t> DimContext::rank(const ir::Value* value) const {
  if (const Layout* known = layout(value)) return static_cast<int64_t>(known->size());
  return provenance_.rank(value);
}

LogicalDim DimContext::canonical(LogicalDim dim) const {
  if (dim.kind == LogicalDim::Kind::kBatch && batch_.value) {
    return LogicalDim::constant(*batch_.value);
  }
  if (dim.kind == LogicalDim::Kind::kSequence && sequence_.value) {
    return LogicalDim::constant(*sequence_.value);
  }
  if (dim.kind == LogicalDim::Kind::kBatchTimesSequence && batch_.value && sequence_.value) {
    return LogicalDim::constant(*batch_.value * *sequence_.value);
  }
  return dim;
}

std::optional<LogicalDim> DimContext::resolve(const ir::Value* value, int64_t axis) const {
  if (const Layout* known = layout(value)) {
    if (axis < 0 || axis >= static_cast<int64_t>(known->size())) return std::nullopt;
    return canonical((*known)[axis]);
  }
  if (axis < 0) return std::nullopt;
  auto shape = value->shape();
  if (shape && axis < static_cast<int64_t>(shape->size())) {
    const ir::Dim& dim = (*shape)[axis];
    if (dim.value) return LogicalDim::constant(*dim.value);
    if (!dim.symbol.empty() && dim.symbol == batch_.symbol) return canonical(LogicalDim::batch());
    if (!dim.symbol.empty() && dim.symbol == sequence_.symbol) {
      return canonical(LogicalDim::sequence());
    }
  }
  auto origin = provenance_.origin(value, axis);
  if (!origin) return std::nullopt;
  if (origin->size) return canonical(LogicalDim::constant(*origin->size));
  if (origin == batchOrigin_) return canonical(LogicalDim::batch());
  if (origin == sequenceOrigin_) return canonical(LogicalDim::sequence());
  return std::nullopt;
}

std::optional<LogicalDim> DimContext::resolve(const DimTerm& term) const {
  if (term.kind == DimTerm::Kind::kConstant) return canonical(LogicalDim::constant(term.constant));
  if (term.kind == DimTerm::Kind::kDimOf) return resolve(term.value, term.axis);
  return std::nullopt;
}

bool DimContext::checkReshape(const ir::Node* reshape, const Layout& expected,
                              MatchFailure* why) const {
  const Layout* input = layout(reshape->input(0));
  if (input == nullptr) {
    return mismatch(
        why, absl::StrCat("the layout of the input of ", reshape->describe(), " is not known"));
  }
  RankOracle rankOracle = [this](const ir::Value* value) { return rank(value); };
  MatchFailure inner;
  auto target = evaluateShapeTerms(reshape->input(1), rankOracle, &inner);
  if (!target) {
    return mismatch(why, absl::StrCat("cannot read the target shape of ", reshape->describe(), ": ",
                                      inner.reason));
  }
  if (target->scalar || target->terms.size() != expected.size()) {
    return mismatch(why, absl::StrCat(reshape->describe(), " produces rank ", target->terms.size(),
                                      ", expected ", expected.size()));
  }
  auto allowZero = reshape->intAttribute("allowzero", 0);
  if (!allowZero.ok()) return mismatch(why, std::string(allowZero.status().message()));

  int inferred = -1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const DimTerm& term = target->terms[i];
    std::optional<LogicalDim> dim;
    if (term.kind == DimTerm::Kind::kConstant && term.constant == -1) {
      if (inferred >= 0) {
        return mismatch(why, absl::StrCat(reshape->describe(), " has two -1 dims in its target"));
      }
      inferred = static_cast<int>(i);
      continue;
    }
    if (term.kind == DimTerm::Kind::kConstant && term.constant == 0 && *allowZero == 0) {
      if (i >= input->size()) {
        return mismatch(why, absl::StrCat(reshape->describe(), " copies dim ", i,
                                          ", which its input does not have"));
      }
      dim = canonical((*input)[i]);
    } else {
      dim = resolve(term);
    }
    if (!dim) {
      return mismatch(why, absl::StrCat("cannot prove that dim ", i, " of the target of ",
                                        reshape->describe(), " is ", dimName(expected[i])));
    }
    if (!same(*dim, expected[i])) {
      return mismatch(why, absl::StrCat(reshape->describe(), " sets dim ", i, " to ", dimName(*dim),
                                        ", expected ", dimName(expected[i])));
    }
  }
  if (inferred >= 0 && !sameElementCount(*input, expected)) {
    return mismatch(why, absl::StrCat("cannot prove that the -1 dim of ", reshape->describe(),
                                      " is ", dimName(expected[inferred])));
  }
  return true;
}

bool DimContext::sameElementCount(const Layout& a, const Layout& b) const {
  auto count = [this](const Layout& layout) {
    int batchPower = 0, sequencePower = 0;
    int64_t product = 1;
    std::vector<LogicalDim> factors;
    for (const LogicalDim& dim : layout) {
      if (dim.kind == LogicalDim::Kind::kBatchTimesSequence) {
        factors.push_back(LogicalDim::batch());
        factors.push_back(LogicalDim::sequence());
      } else {
        factors.push_back(dim);
      }
    }
    for (const LogicalDim& factor : factors) {
      LogicalDim dim = canonical(factor);
      if (dim.kind == LogicalDim::Kind::kBatch) ++batchPower;
      if (dim.kind == LogicalDim::Kind::kSequence) ++sequencePower;
      if (dim.kind == LogicalDim::Kind::kConstant) product *= dim.size;
    }
    return std::make_tuple(batchPower, sequencePower, product);
  };
  return count(a) == count(b);
}

}  // namespace roformer::passes::attention
