// sanitize-names: renames values so that every character of their names is in
// a chosen alphabet.
//
// By default only graph inputs are renamed and only `:` is removed, exactly
// as the input-renaming script of the original deployment did
// (`input_segment:0` -> `input_segment0`), because deployed configs name the
// inputs that way. Options widen the set of values (`outputs`, `all`) and
// narrow the alphabet. A name that is already taken gets a numeric suffix.
//
// Rejected: a value that a subgraph (If, Loop, Scan) reads by name, because the
// subgraph would still refer to the old name. Such values keep their names and
// are reported as missed remarks.
//
// --stats prints the old-to-new mapping of graph inputs and outputs.
// `name-map=FILE` writes the whole mapping: JSON for a `.json` file, else one
// tab-separated `old<TAB>new` line per rename.
#include <array>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ir/ModelIO.h"
#include "passes/Passes.h"

namespace roformer::passes {
namespace {

// The set of bytes a sanitized name may contain.
using Alphabet = std::array<bool, 256>;

Alphabet defaultAlphabet() {
  Alphabet allowed;
  allowed.fill(true);
  allowed[static_cast<unsigned char>(':')] = false;
  return allowed;
}

// Parses `A-Za-z0-9_.` style specs: single bytes, and `a-b` ranges. A `-`
// first or last is a literal dash.
absl::StatusOr<Alphabet> parseAlphabet(std::string_view spec) {
  Alphabet allowed{};
  for (size_t i = 0; i < spec.size(); ++i) {
    auto low = static_cast<unsigned char>(spec[i]);
    if (i + 2 < spec.size() && spec[i + 1] == '-') {
      auto high = static_cast<unsigned char>(spec[i + 2]);
      if (high < low) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "invalid range '%c-%c' in alphabet '%s': the first character must not come after "
            "the second",
            low, high, std::string(spec)));
      }
      for (unsigned c = low; c <= high; ++c) allowed[c] = true;
      i += 2;
      continue;
    }
    allowed[low] = true;
  }
  return allowed;
}

bool isClean(std::string_view name, const Alphabet& allowed) {
  for (char c : name) {
    if (!allowed[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

// Escapes a name for one field of the tab-separated map.
std::string escapeTsv(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\\': out += "\\\\"; break;
      default: out += c;
    }
  }
  return out;
}

std::string quoteJson(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20) {
      out += absl::StrFormat("\\u%04x", byte);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

struct Rename {
  std::string from;
  std::string to;
};

class SanitizeNamesPass final : public Pass {
 public:
  SanitizeNamesPass() {
    declareOption("outputs", "Also rename graph outputs", &renameOutputs_);
    declareOption("all", "Rename every value: inputs, outputs, initializers and node outputs",
                  &renameAll_);
    declareOption("alphabet",
                  "Bytes a name may keep, as single characters and ranges such as 'A-Za-z0-9_'; "
                  "empty keeps every byte except ':'",
                  &alphabetSpec_);
    declareOption("replacement",
                  "Text written in place of each byte outside the alphabet; empty removes the "
                  "byte",
                  &replacement_);
    declareOption("name-map",
                  "Write the old-to-new mapping to this file: JSON when it ends in .json, else "
                  "tab-separated lines",
                  &nameMapPath_);
  }

  std::string_view name() const override { return "sanitize-names"; }
  std::string_view summary() const override {
    return "Rename graph inputs (optionally outputs or all values) to a safe alphabet";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    Alphabet allowed = defaultAlphabet();
    if (!alphabetSpec_.empty()) {
      auto parsed = parseAlphabet(alphabetSpec_);
      if (!parsed.ok()) return parsed.status();
      allowed = *parsed;
    }
    if (!isClean(replacement_, allowed)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the replacement '", replacement_,
          "' contains characters outside the alphabet; choose one made of allowed characters"));
    }

    ir::Graph& graph = model.graph();
    std::vector<Rename> renames;
    for (ir::Value* value : candidates(graph)) {
      if (isClean(value->name(), allowed)) continue;
      std::string base = sanitize(value->name(), allowed);
      if (base.empty()) {
        context.count("values skipped (no allowed character)");
        context.remarkMissed(absl::StrCat("value '", value->name(), "'"),
                             "no character of the name is in the alphabet");
        continue;
      }
      std::string target = freeName(graph, base, allowed);
      if (target != base) context.count("renames given a suffix (name taken)");

      std::string old = value->name();
      if (auto status = graph.renameValue(value, target); !status.ok()) {
        context.count("values skipped (read by a subgraph)");
        context.remarkMissed(absl::StrCat("value '", old, "'"), std::string(status.message()));
        continue;
      }
      countRename(*value, old, context);
      renames.push_back(Rename{old, target});
    }
    renameInAnnotations(graph, renames);

    if (!nameMapPath_.empty()) {
      if (auto status = writeNameMap(renames); !status.ok()) return status;
    }
    return !renames.empty();
  }

 private:
  // Values to consider, in a fixed order: inputs, outputs, initializers,
  // then node outputs in node order.
  std::vector<ir::Value*> candidates(const ir::Graph& graph) const {
    std::vector<ir::Value*> out(graph.inputs().begin(), graph.inputs().end());
    if (renameOutputs_ || renameAll_) {
      out.insert(out.end(), graph.outputs().begin(), graph.outputs().end());
    }
    if (renameAll_) {
      out.insert(out.end(), graph.initializers().begin(), graph.initializers().end());
      for (const auto& node : graph.nodes()) {
        for (ir::Value* output : node->outputs()) {
          if (output != nullptr) out.push_back(output);
        }
      }
    }
    return out;
  }

  std::string sanitize(std::string_view name, const Alphabet& allowed) const {
    std::string out;
    for (char c : name) {
      if (allowed[static_cast<unsigned char>(c)]) {
        out += c;
      } else {
        out += replacement_;
      }
    }
    return out;
  }

  // Returns `base`, or `base_N` (`baseN` when `_` is not allowed) with the
  // smallest N >= 1 that no value uses.
  static std::string freeName(const ir::Graph& graph, const std::string& base,
                              const Alphabet& allowed) {
    if (graph.findValue(base) == nullptr) return base;
    std::string separator = allowed[static_cast<unsigned char>('_')] ? "_" : "";
    for (int suffix = 1;; ++suffix) {
      std::string candidate = absl::StrCat(base, separator, suffix);
      if (graph.findValue(candidate) == nullptr) return candidate;
    }
  }

  static void countRename(const ir::Value& value, const std::string& old, PassContext& context) {
    if (value.isGraphInput()) {
      context.count("inputs renamed");
      context.count(absl::StrCat("input '", old, "' renamed to '", value.name(), "'"));
    } else if (value.isGraphOutput()) {
      context.count("outputs renamed");
      context.count(absl::StrCat("output '", old, "' renamed to '", value.name(), "'"));
    } else {
      context.count("other values renamed");
    }
  }

  // quantization_annotation refers to values by name and is kept outside the
  // IR, so its names are updated here.
  static void renameInAnnotations(ir::Graph& graph, const std::vector<Rename>& renames) {
    if (renames.empty()) return;
    std::unordered_map<std::string, std::string> byOldName;
    for (const Rename& rename : renames) byOldName[rename.from] = rename.to;
    for (auto& annotation : *graph.extraFields().mutable_quantization_annotation()) {
      auto it = byOldName.find(annotation.tensor_name());
      if (it != byOldName.end()) annotation.set_tensor_name(it->second);
    }
  }

  absl::Status writeNameMap(const std::vector<Rename>& renames) const {
    std::string text;
    if (absl::EndsWith(nameMapPath_, ".json")) {
      text = "{";
      for (size_t i = 0; i < renames.size(); ++i) {
        absl::StrAppend(&text, i == 0 ? "\n  " : ",\n  ", quoteJson(renames[i].from), ": ",
                        quoteJson(renames[i].to));
      }
      text += renames.empty() ? "}\n" : "\n}\n";
    } else {
      for (const Rename& rename : renames) {
        absl::StrAppend(&text, escapeTsv(rename.from), "\t", escapeTsv(rename.to), "\n");
      }
    }
    if (auto status = ir::writeFileAtomically(nameMapPath_, text); !status.ok()) {
      return absl::Status(status.code(), absl::StrCat("writing the name map '", nameMapPath_,
                                                      "' failed: ", status.message()));
    }
    return absl::OkStatus();
  }

  bool renameOutputs_ = false;
  bool renameAll_ = false;
  std::string alphabetSpec_;
  std::string replacement_;
  std::string nameMapPath_;
};

}  // namespace

std::unique_ptr<Pass> createSanitizeNamesPass() { return std::make_unique<SanitizeNamesPass>(); }

}  // namespace roformer::passes
