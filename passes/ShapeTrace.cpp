#include "passes/ShapeTrace.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "passes/RewriteHelpers.h"

namespace roformer::passes {
namespace {

// Nested shape computations in the exports are a few levels deep, and shape
// tensors have one entry per axis. The limits only keep pathological graphs
// (or large integer weights) from being traced.
constexpr int kMaxTraceDepth = 32;
constexpr int64_t kMaxEntries = 256;

bool isIntegerValue(const ir::Value* value) {
  if (std::shared_ptr<ir::Tensor> constant = ir::constantOf(value)) {
    return ir::isInteger(constant->dataType());
  }
  ir::DataType type = value->elemType();
  return type == ir::DataType::kInt64 || type == ir::DataType::kInt32;
}

std::optional<std::vector<ShapeEntry>> traceEntriesAt(const ir::Value* value, int depth) {
  if (value == nullptr) return std::nullopt;
  if (std::shared_ptr<ir::Tensor> tensor = ir::constantOf(value);
      tensor != nullptr && tensor->elementCount() > kMaxEntries) {
    return std::nullopt;
  }
  if (auto constant = constantInts(value)) {
    std::vector<ShapeEntry> entries;
    for (int64_t element : *constant) entries.push_back(ShapeEntry::known(element));
    return entries;
  }

  auto unknownOfStaticLength = [&]() -> std::optional<std::vector<ShapeEntry>> {
    auto dims = value->staticShape();
    if (!dims || dims->size() > 1) return std::nullopt;
    int64_t length = dims->empty() ? 1 : (*dims)[0];
    if (length > kMaxEntries) return std::nullopt;
    return std::vector<ShapeEntry>(static_cast<size_t>(length), ShapeEntry::unknown());
  };

  const ir::Node* node = value->producer();
  if (node == nullptr || !node->domain().empty() || depth > kMaxTraceDepth) {
    return unknownOfStaticLength();
  }
  const std::string& op = node->opType();
  std::optional<std::vector<ShapeEntry>> traced;

  if (op == "Shape") {
    auto dims = node->input(0)->shape();
    if (dims) {
      auto rank = static_cast<int64_t>(dims->size());
      auto start = node->intAttribute("start", 0);
      auto end = node->intAttribute("end", rank);
      if (start.ok() && end.ok()) {
        auto clamp = [rank](int64_t index) {
          if (index < 0) index += rank;
          return std::clamp<int64_t>(index, 0, rank);
        };
        traced.emplace();
        for (int64_t axis = clamp(*start); axis < clamp(*end); ++axis) {
          traced->push_back(ShapeEntry::dimOf(node->input(0), axis));
        }
      }
    }
  } else if (op == "Cast") {
    // Dims survive a round trip through int32 while they are below 2^31.
    auto to = node->intAttribute("to", 0);
    bool toInteger = to.ok() && (*to == static_cast<int64_t>(ir::DataType::kInt64) ||
                                 *to == static_cast<int64_t>(ir::DataType::kInt32));
    if (toInteger && isIntegerValue(node->input(0))) {
      traced = traceEntriesAt(node->input(0), depth + 1);
    }
  } else if (op == "Concat") {
    auto axis = node->intAttribute("axis", 0);
    if (axis.ok() && (*axis == 0 || *axis == -1)) {
      traced.emplace();
      for (const ir::Value* input : node->inputs()) {
        auto part = traceEntriesAt(input, depth + 1);
        if (!part) {
          traced.reset();
          break;
        }
        traced->insert(traced->end(), part->begin(), part->end());
      }
    }
  } else if (op == "Gather") {
    auto axis = node->intAttribute("axis", 0);
    auto indices = constantInts(node->input(1));
    auto source = traceEntriesAt(node->input(0), depth + 1);
    if (axis.ok() && (*axis == 0 || *axis == -1) && indices && source) {
      traced.emplace();
      for (int64_t index : *indices) {
        auto position = normalizeAxis(index, static_cast<int64_t>(source->size()));
        if (!position) {
          traced.reset();
          break;
        }
        traced->push_back((*source)[*position]);
      }
    }
  } else if (op == "Slice") {
    auto source = traceEntriesAt(node->input(0), depth + 1);
    if (source) {
      auto indices = sliceIndices1D(*node, static_cast<int64_t>(source->size()));
      if (indices) {
        traced.emplace();
        for (int64_t index : *indices) traced->push_back((*source)[index]);
      }
    }
  } else if (op == "Unsqueeze" || op == "Squeeze" || op == "Identity" || op == "Reshape") {
    // Reshapes between a scalar and a 1-element vector keep the entry; a
    // longer 1-D tensor passes through these ops unchanged.
    auto source = traceEntriesAt(node->input(0), depth + 1);
    auto outputDims = value->shape();
    if (source && outputDims && outputDims->size() <= 1 && source->size() == 1) traced = source;
    if (source && op == "Identity") traced = source;
  } else if (op == "ReduceProd" || op == "ReduceSum" || op == "ReduceMax" || op == "ReduceMin") {
    // Reducing a single entry returns it.
    auto source = traceEntriesAt(node->input(0), depth + 1);
    if (source && source->size() == 1) traced = source;
  }
  if (traced) return traced;
  return unknownOfStaticLength();
}

}  // namespace

std::optional<std::vector<ShapeEntry>> traceEntries(const ir::Value* value) {
  return traceEntriesAt(value, 0);
}

std::optional<ir::Dim> dimOfEntry(const ShapeEntry& entry) {
  if (entry.kind != ShapeEntry::Kind::kDimOf) return std::nullopt;
  auto dims = entry.of->shape();
  if (!dims || entry.axis >= static_cast<int64_t>(dims->size())) return std::nullopt;
  return (*dims)[entry.axis];
}

std::optional<int64_t> knownEntryValue(const ShapeEntry& entry) {
  if (entry.kind == ShapeEntry::Kind::kConstant) return entry.constant;
  std::optional<ir::Dim> dim = dimOfEntry(entry);
  if (dim && dim->isKnown()) return *dim->value;
  return std::nullopt;
}

bool entryEqualsDim(const ShapeEntry& entry, const ir::Value* value, int64_t axis,
                    const std::optional<std::vector<ir::Dim>>& dims) {
  std::optional<ir::Dim> target;
  if (dims && axis < static_cast<int64_t>(dims->size())) target = (*dims)[axis];
  if (entry.kind == ShapeEntry::Kind::kConstant) {
    return entry.constant > 0 && target && target->isKnown() && *target->value == entry.constant;
  }
  if (entry.kind != ShapeEntry::Kind::kDimOf) return false;
  if (entry.of == value && entry.axis == axis) return true;
  std::optional<ir::Dim> dim = dimOfEntry(entry);
  return dim && target && sameDim(*dim, *target);
}

std::string describeEntries(const std::vector<ShapeEntry>& entries) {
  std::vector<std::string> parts;
  for (const ShapeEntry& entry : entries) {
    switch (entry.kind) {
      case ShapeEntry::Kind::kConstant:
        parts.push_back(std::to_string(entry.constant));
        break;
      case ShapeEntry::Kind::kDimOf:
        parts.push_back(absl::StrCat("dim ", entry.axis, " of '", entry.of->name(), "'"));
        break;
      case ShapeEntry::Kind::kUnknown:
        parts.push_back("?");
        break;
    }
  }
  return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
}

}  // namespace roformer::passes
