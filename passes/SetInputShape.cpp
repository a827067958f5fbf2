// set-input-shape: overwrites the declared dims of graph inputs, like
// onnx-simplifier's --overwrite-input-shape.
//
// The option `input-shape` reads `name=Bx1024,name2=Bx1024`: one entry per
// input, dims separated by `x`. A number fixes that dim; an identifier makes
// it symbolic under that name (so `B` keeps the batch dynamic). Symbolic
// names therefore cannot contain `x`.
//
// An entry's name is matched exactly first. Because sanitize-names runs
// earlier in the default pipeline, a name that matches no input is then
// compared with the inputs by its letters and digits only, so
// `input_token:0` finds the input renamed to `input_token0`. Two inputs
// matching that way are an error.
//
// Rejected with an error: a name that matches no input (the message lists
// the inputs), a rank different from the input's, a dim that is neither a
// non-negative number nor an identifier, and an input that is not a tensor.
//
// Types inferred earlier for other values may contradict the new input
// shape, and ONNX's inference keeps an existing symbolic dim rather than
// replacing it. So when an input changes, the pass clears the types of every
// value that a node computes, and the known dims of graph outputs, whose
// element types, ranks and symbolic dims stay. The next infer-shapes derives
// them again from the new input shapes.
#include <cctype>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "passes/Passes.h"
#include "passes/RewriteHelpers.h"

namespace roformer::passes {
namespace {

struct ShapeEntry {
  std::string name;
  std::vector<ir::Dim> dims;
};

bool isIdentifier(std::string_view text) {
  if (text.empty() || std::isdigit(static_cast<unsigned char>(text[0]))) return false;
  for (char c : text) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

absl::StatusOr<std::vector<ShapeEntry>> parseInputShapes(std::string_view spec) {
  std::vector<ShapeEntry> entries;
  for (absl::string_view rawEntry : absl::StrSplit(absl::string_view(spec.data(), spec.size()),
                                                   ',', absl::SkipWhitespace())) {
    std::string entry(absl::StripAsciiWhitespace(rawEntry));
    size_t equals = entry.rfind('=');
    if (equals == std::string::npos || equals == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid input shape '", entry, "': expected NAME=DIMS such as 'input_token:0=Bx1024'"));
    }
    ShapeEntry parsed;
    parsed.name = entry.substr(0, equals);
    std::string dims = entry.substr(equals + 1);
    if (dims.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid input shape '", entry, "': no dims after '='; give them as 'Bx1024'"));
    }
    for (absl::string_view dim : absl::StrSplit(dims, 'x')) {
      int64_t value = 0;
      if (absl::SimpleAtoi(dim, &value) && value >= 0) {
        parsed.dims.push_back(ir::Dim::known(value));
      } else if (isIdentifier(std::string(dim))) {
        parsed.dims.push_back(ir::Dim::symbolic(std::string(dim)));
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "invalid dim '", std::string(dim), "' in input shape '", entry,
            "': each dim must be a non-negative number or an identifier (letters, digits and "
            "'_', not containing 'x')"));
      }
    }
    for (const ShapeEntry& earlier : entries) {
      if (earlier.name == parsed.name) {
        return absl::InvalidArgumentError(
            absl::StrCat("input '", parsed.name, "' is given twice in the input shapes"));
      }
    }
    entries.push_back(std::move(parsed));
  }
  return entries;
}

std::string lettersAndDigits(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c))) out += c;
  }
  return out;
}

std::string inputList(const ir::Graph& graph) {
  std::vector<std::string> names;
  for (const ir::Value* input : graph.inputs()) {
    if (!input->isInitializer()) names.push_back(absl::StrCat("'", input->name(), "'"));
  }
  return names.empty() ? std::string("none") : absl::StrJoin(names, ", ");
}

absl::StatusOr<ir::Value*> findInput(const ir::Graph& graph, const std::string& name) {
  for (ir::Value* input : graph.inputs()) {
    if (input->name() == name) return input;
  }
  std::string key = lettersAndDigits(name);
  ir::Value* match = nullptr;
  for (ir::Value* input : graph.inputs()) {
    if (key.empty() || lettersAndDigits(input->name()) != key) continue;
    if (match != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input shape name '", name, "' matches both '", match->name(), "' and '",
          input->name(), "' by letters and digits; give the exact input name"));
    }
    match = input;
  }
  if (match == nullptr) {
    return absl::NotFoundError(absl::StrCat("input shape name '", name,
                                            "' matches no graph input; the inputs are ",
                                            inputList(graph),
                                            " (names match by letters and digits, so "
                                            "'input_token:0' also finds 'input_token0')"));
  }
  return match;
}

std::string dimsToString(const std::vector<ir::Dim>& dims) {
  std::vector<std::string> parts;
  for (const ir::Dim& dim : dims) parts.push_back(dimToString(dim));
  return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
}

class SetInputShapePass final : public Pass {
 public:
  SetInputShapePass() {
    declareOption("input-shape",
                  "Dims of graph inputs, e.g. 'input_token:0=Bx1024,input_segment:0=Bx1024' "
                  "(numbers fix a dim, identifiers keep it symbolic)",
                  &spec_);
  }

  std::string_view name() const override { return "set-input-shape"; }
  std::string_view summary() const override {
    return "Fix or rename the dims of graph inputs (--input-shape)";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    if (spec_.empty()) return false;
    auto entries = parseInputShapes(spec_);
    if (!entries.ok()) return entries.status();

    ir::Graph& graph = model.graph();
    bool changed = false;
    for (const ShapeEntry& entry : *entries) {
      auto input = findInput(graph, entry.name);
      if (!input.ok()) return input.status();
      auto applied = apply(**input, entry);
      if (!applied.ok()) return applied.status();
      if (*applied) {
        context.count("inputs reshaped");
        changed = true;
      }
    }
    if (changed) clearDerivedTypes(graph, context);
    return changed;
  }

 private:
  static absl::StatusOr<bool> apply(ir::Value& input, const ShapeEntry& entry) {
    if (input.type().value_case() != onnx::TypeProto::kTensorType) {
      return absl::InvalidArgumentError(absl::StrCat(
          "graph input '", input.name(), "' is not a tensor, so its shape cannot be set"));
    }
    std::optional<std::vector<ir::Dim>> current = input.shape();
    if (current && current->size() != entry.dims.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input shape for '", input.name(), "' has rank ", entry.dims.size(), " (",
          dimsToString(entry.dims), ") but the input has rank ", current->size(), " (",
          dimsToString(*current), "); give one dim per axis"));
    }
    if (current && *current == entry.dims) return false;
    input.setTensorType(input.elemType(), entry.dims);
    return true;
  }

  static void clearDerivedTypes(ir::Graph& graph, PassContext& context) {
    for (const auto& node : graph.nodes()) {
      for (ir::Value* output : node->outputs()) {
        if (output == nullptr) continue;
        if (output->isGraphOutput()) {
          forgetKnownDims(*output);
        } else if (output->type().value_case() != onnx::TypeProto::VALUE_NOT_SET) {
          output->setType(onnx::TypeProto());
          context.count("stale value types cleared");
        }
      }
    }
  }

  static void forgetKnownDims(ir::Value& value) {
    if (value.type().value_case() != onnx::TypeProto::kTensorType) return;
    auto* tensorType = value.mutableType().mutable_tensor_type();
    if (!tensorType->has_shape()) return;
    for (auto& dim : *tensorType->mutable_shape()->mutable_dim()) {
      if (dim.has_dim_value()) dim.clear_dim_value();
    }
  }

  std::string spec_;
};

}  // namespace

std::unique_ptr<Pass> createSetInputShapePass() { return std::make_unique<SetInputShapePass>(); }

}  // namespace roformer::passes
