// The pass interface: a named rewrite of an ir::Model with options,
// statistics and missed-match remarks.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ir/Graph.h"

namespace roformer::passes {

// Services the pass manager gives a running pass.
class PassContext {
 public:
  PassContext(std::string passName, std::map<std::string, int64_t>* counters,
              std::function<void(const std::string&)> remarkSink)
      : passName_(std::move(passName)), counters_(counters), remarkSink_(std::move(remarkSink)) {}

  const std::string& passName() const { return passName_; }

  // Adds `delta` to the pass's counter `name` (shown by --stats).
  void count(std::string_view name, int64_t delta = 1) {
    if (counters_ != nullptr) (*counters_)[std::string(name)] += delta;
  }

  // True when --remarks-missed selected this pass; callers may skip building
  // expensive messages otherwise.
  bool remarksEnabled() const { return static_cast<bool>(remarkSink_); }

  // Reports why the pattern anchored at `anchor` did not match.
  void remarkMissed(const ir::Node& anchor, std::string_view reason);
  void remarkMissed(std::string_view subject, std::string_view reason);

 private:
  std::string passName_;
  std::map<std::string, int64_t>* counters_;
  std::function<void(const std::string&)> remarkSink_;
};

// Description of one pass option, for --list-passes.
struct PassOptionInfo {
  std::string name;
  std::string description;
  std::string defaultValue;
};

class Pass {
 public:
  virtual ~Pass() = default;

  // The flag name used in --pass-pipeline, such as "fold-constants".
  virtual std::string_view name() const = 0;
  // One line for --list-passes.
  virtual std::string_view summary() const = 0;
  // Runs the pass; returns whether the model changed.
  virtual absl::StatusOr<bool> run(ir::Model& model, PassContext& context) = 0;

  // Sets an option from `name(key=value)`; InvalidArgument for unknown keys
  // or values that do not parse.
  absl::Status setOption(std::string_view key, std::string_view value);
  bool hasOption(std::string_view key) const { return options_.count(std::string(key)) > 0; }
  std::vector<PassOptionInfo> options() const;

 protected:
  // Declares an option bound to a member; call from the constructor.
  void declareOption(std::string name, std::string description, bool* target);
  void declareOption(std::string name, std::string description, int64_t* target);
  void declareOption(std::string name, std::string description, double* target);
  void declareOption(std::string name, std::string description, std::string* target);

 private:
  struct Option {
    std::string description;
    std::string defaultValue;
    std::function<absl::Status(std::string_view)> parse;
  };
  std::map<std::string, Option> options_;
};

using PassFactory = std::function<std::unique_ptr<Pass>()>;

struct RegisteredPass {
  std::string name;
  std::string summary;
  PassFactory factory;
};

// Every pass the project ships, sorted by name.
const std::vector<RegisteredPass>& registeredPasses();
// Creates the pass registered as `name`; NotFound lists the known names.
absl::StatusOr<std::unique_ptr<Pass>> createPass(std::string_view name);

}  // namespace roformer::passes
