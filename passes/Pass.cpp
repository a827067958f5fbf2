#include "passes/Pass.h"

#include <charconv>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace roformer::passes {

void PassContext::remarkMissed(const ir::Node& anchor, std::string_view reason) {
  remarkMissed(anchor.describe(), reason);
}

void PassContext::remarkMissed(std::string_view subject, std::string_view reason) {
  if (!remarkSink_) return;
  remarkSink_(absl::StrCat("remark: ", passName_, ": ", std::string(subject), ": ",
                          std::string(reason)));
}

absl::Status Pass::setOption(std::string_view key, std::string_view value) {
  auto it = options_.find(std::string(key));
  if (it == options_.end()) {
    std::vector<std::string> known;
    for (const auto& [name, option] : options_) known.push_back(name);
    return absl::InvalidArgumentError(absl::StrCat(
        "pass '", std::string(name()), "' has no option '", std::string(key), "'",
        known.empty() ? std::string("; it takes no options")
                      : absl::StrCat("; its options are: ", absl::StrJoin(known, ", "))));
  }
  if (auto status = it->second.parse(value); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("pass '", std::string(name()), "' option '", std::string(key), "': ",
                                                   status.message()));
  }
  return absl::OkStatus();
}

std::vector<PassOptionInfo> Pass::options() const {
  std::vector<PassOptionInfo> out;
  for (const auto& [name, option] : options_) {
    out.push_back(PassOptionInfo{name, option.description, option.defaultValue});
  }
  return out;
}

void Pass::declareOption(std::string name, std::string description, bool* target) {
  options_[name] = Option{std::move(description), *target ? "true" : "false",
                          [target](std::string_view value) -> absl::Status {
                            std::string lower = absl::AsciiStrToLower(std::string(value));
                            if (lower == "true" || lower == "1" || lower.empty()) {
                              *target = true;
                            } else if (lower == "false" || lower == "0") {
                              *target = false;
                            } else {
                              return absl::InvalidArgumentError(absl::StrCat(
                                  "expected true or false, got '", std::string(value), "'"));
                            }
                            return absl::OkStatus();
                          }};
}

void Pass::declareOption(std::string name, std::string description, int64_t* target) {
  options_[name] = Option{std::move(description), std::to_string(*target),
                          [target](std::string_view value) -> absl::Status {
                            if (!absl::SimpleAtoi(std::string(value), target)) {
                              return absl::InvalidArgumentError(
                                  absl::StrCat("expected an integer, got '", std::string(value), "'"));
                            }
                            return absl::OkStatus();
                          }};
}

void Pass::declareOption(std::string name, std::string description, double* target) {
  options_[name] = Option{std::move(description), absl::StrCat(*target),
                          [target](std::string_view value) -> absl::Status {
                            if (!absl::SimpleAtod(std::string(value), target)) {
                              return absl::InvalidArgumentError(
                                  absl::StrCat("expected a number, got '", std::string(value), "'"));
                            }
                            return absl::OkStatus();
                          }};
}

void Pass::declareOption(std::string name, std::string description, std::string* target) {
  options_[name] = Option{std::move(description), *target,
                          [target](std::string_view value) -> absl::Status {
                            *target = std::string(value);
                            return absl::OkStatus();
                          }};
}

}  // namespace roformer::passes
