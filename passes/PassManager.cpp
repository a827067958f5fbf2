#include "passes/PassManager.h"

#include <iomanip>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ir/ModelIO.h"
#include "ir/TextFormat.h"
#include "ir/Verifier.h"

namespace roformer::passes {
namespace {

// A recursive-descent reader of the pipeline syntax.
class PipelineParser {
 public:
  explicit PipelineParser(std::string_view text) : text_(text) {}

  absl::StatusOr<std::vector<PipelineElement>> parseAll() {
    auto elements = parseList();
    if (!elements.ok()) return elements.status();
    skipSpaces();
    if (position_ != text_.size()) return error("unexpected character");
    return elements;
  }

 private:
  absl::StatusOr<std::vector<PipelineElement>> parseList() {
    std::vector<PipelineElement> elements;
    while (true) {
      skipSpaces();
      std::string name = parseName();
      if (name.empty()) return error("expected a pass name");
      skipSpaces();
      PipelineElement element;
      if (name == "fixpoint") {
        if (!consume('(')) return error("expected '(' after fixpoint");
        auto nested = parseList();
        if (!nested.ok()) return nested.status();
        if (!consume(')')) return error("expected ')' to close fixpoint(");
        element.fixpoint = *std::move(nested);
      } else {
        auto pass = createPass(name);
        if (!pass.ok()) return pass.status();
        element.pass = *std::move(pass);
        if (consume('(')) {
          if (auto status = parseOptions(*element.pass); !status.ok()) return status;
        }
      }
      elements.push_back(std::move(element));
      skipSpaces();
      if (!consume(',')) break;
    }
    return elements;
  }

  absl::Status parseOptions(Pass& pass) {
    skipSpaces();
    if (consume(')')) return absl::OkStatus();
    while (true) {
      skipSpaces();
      std::string key = parseName();
      if (key.empty()) return error("expected an option name");
      skipSpaces();
      std::string value;
      if (consume('=')) {
        skipSpaces();
        auto parsed = parseValue();
        if (!parsed.ok()) return parsed.status();
        value = *parsed;
      }
      if (auto status = pass.setOption(key, value); !status.ok()) return status;
      skipSpaces();
      if (consume(')')) return absl::OkStatus();
      if (!consume(',')) return error("expected ',' or ')' after an option");
    }
  }

  absl::StatusOr<std::string> parseValue() {
    if (position_ < text_.size() && (text_[position_] == '\'' || text_[position_] == '"')) {
      char quote = text_[position_++];
      size_t end = text_.find(quote, position_);
      if (end == std::string_view::npos) return error("unterminated quoted value");
      std::string value(text_.substr(position_, end - position_));
      position_ = end + 1;
      return value;
    }
    size_t begin = position_;
    while (position_ < text_.size() && text_[position_] != ',' && text_[position_] != ')') {
      ++position_;
    }
    return std::string(text_.substr(begin, position_ - begin));
  }

  std::string parseName() {
    size_t begin = position_;
    while (position_ < text_.size() &&
           (std::isalnum(static_cast<unsigned char>(text_[position_])) ||
            text_[position_] == '-' || text_[position_] == '_')) {
      ++position_;
    }
    return std::string(text_.substr(begin, position_ - begin));
  }

  void skipSpaces() {
    while (position_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[position_]))) {
      ++position_;
    }
  }

  bool consume(char c) {
    if (position_ < text_.size() && text_[position_] == c) {
      ++position_;
      return true;
    }
    return false;
  }

  absl::Status error(std::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat("invalid pass pipeline at column ",
                                                   position_ + 1, ": ", std::string(message), " in '",
                                                   std::string(text_), "'"));
  }

  std::string_view text_;
  size_t position_ = 0;
};

void appendPipeline(const std::vector<PipelineElement>& elements, std::string& out) {
  for (size_t i = 0; i < elements.size(); ++i) {
    if (i > 0) out += ",";
    if (elements[i].isFixpoint()) {
      out += "fixpoint(";
      appendPipeline(elements[i].fixpoint, out);
      out += ")";
    } else {
      out += std::string(elements[i].pass->name());
    }
  }
}

absl::StatusOr<int> setOptionEverywhere(std::vector<PipelineElement>& elements,
                                        std::string_view key, std::string_view value) {
  int taken = 0;
  for (auto& element : elements) {
    if (element.isFixpoint()) {
      auto nested = setOptionEverywhere(element.fixpoint, key, value);
      if (!nested.ok()) return nested.status();
      taken += *nested;
    } else if (element.pass->hasOption(key)) {
      if (auto status = element.pass->setOption(key, value); !status.ok()) return status;
      ++taken;
    }
  }
  return taken;
}

}  // namespace

absl::StatusOr<std::vector<PipelineElement>> parsePipeline(std::string_view text) {
  // An empty pipeline runs no pass: the model is only loaded and saved.
  if (text.find_first_not_of(" \t") == std::string_view::npos) {
    return std::vector<PipelineElement>();
  }
  return PipelineParser(text).parseAll();
}

std::string pipelineToString(const std::vector<PipelineElement>& pipeline) {
  std::string out;
  appendPipeline(pipeline, out);
  return out;
}

absl::StatusOr<int> PassManager::setGlobalOption(std::string_view key, std::string_view value) {
  return setOptionEverywhere(pipeline_, key, value);
}

absl::Status PassManager::run(ir::Model& model) {
  auto changed = runElements(pipeline_, model);
  return changed.status();
}

absl::StatusOr<bool> PassManager::runElements(std::vector<PipelineElement>& elements,
                                              ir::Model& model) {
  bool changed = false;
  for (auto& element : elements) {
    if (!element.isFixpoint()) {
      auto passChanged = runPass(*element.pass, model);
      if (!passChanged.ok()) return passChanged.status();
      changed = changed || *passChanged;
      continue;
    }
    int round = 0;
    while (true) {
      auto roundChanged = runElements(element.fixpoint, model);
      if (!roundChanged.ok()) return roundChanged.status();
      if (!*roundChanged) break;
      changed = true;
      if (++round >= options_.maxFixpointRounds) {
        if (options_.diagnostics != nullptr) {
          *options_.diagnostics << "warning: fixpoint(" << pipelineToString(element.fixpoint)
                                << ") still changed the model after " << round
                                << " rounds; continuing with the rest of the pipeline\n";
        }
        break;
      }
    }
  }
  return changed;
}

absl::StatusOr<bool> PassManager::runPass(Pass& pass, ir::Model& model) {
  std::string name(pass.name());
  std::function<void(const std::string&)> sink;
  if (options_.remarksMissed.count(name) > 0 || options_.remarksMissed.count("all") > 0) {
    sink = [this](const std::string& remark) {
      // A fixpoint reruns passes: print each distinct remark once.
      if (options_.diagnostics != nullptr && printedRemarks_.insert(remark).second) {
        *options_.diagnostics << remark << "\n";
      }
    };
  }
  PassContext context(name, &statistics_[name], std::move(sink));

  auto start = std::chrono::steady_clock::now();
  auto changed = pass.run(model, context);
  timing_.emplace_back(name, std::chrono::steady_clock::now() - start);
  if (!changed.ok()) {
    return absl::Status(changed.status().code(),
                        absl::StrCat("pass '", name, "' failed: ", changed.status().message()));
  }

  if (options_.verifyEach) {
    if (auto status = ir::verifyModel(model); !status.ok()) {
      return absl::InternalError(absl::StrCat("the IR is invalid after pass '", name,
                                              "': ", status.message()));
    }
  }
  if (options_.printIrAfterAll || options_.printIrAfter.count(name) > 0) {
    if (options_.diagnostics != nullptr) {
      ir::ExportOptions exportOptions;
      ir::PrintOptions printOptions;
      printOptions.elideTensorsAbove = options_.printElideAbove;
      auto text = ir::modelToText(ir::exportModel(model, exportOptions), printOptions);
      *options_.diagnostics << "// ----- IR after " << name << " -----\n"
                            << (text.ok() ? *text : std::string(text.status().message()))
                            << "\n";
    }
  }
  return *changed;
}

void PassManager::printStatistics(std::ostream& out) const {
  out << "===-------------------------------------------------------------------------===\n"
      << "                          ... Pass statistics report ...\n"
      << "===-------------------------------------------------------------------------===\n";
  for (const auto& [pass, counters] : statistics_) {
    for (const auto& [counter, value] : counters) {
      out << absl::StrFormat("%12d %s - %s\n", value, pass, counter);
    }
  }
}

void PassManager::printTiming(std::ostream& out) const {
  std::map<std::string, std::pair<double, int>> totals;
  double sum = 0;
  for (const auto& [name, duration] : timing_) {
    totals[name].first += duration.count();
    totals[name].second += 1;
    sum += duration.count();
  }
  out << "===-------------------------------------------------------------------------===\n"
      << "                      ... Pass execution timing report ...\n"
      << "===-------------------------------------------------------------------------===\n"
      << absl::StrFormat("  Total Execution Time: %.4f seconds\n\n", sum)
      << "   Wall Time   Runs  Name\n";
  for (const auto& [name, total] : totals) {
    out << absl::StrFormat("  %8.4f s %6d  %s\n", total.first, total.second, name);
  }
}

}  // namespace roformer::passes
