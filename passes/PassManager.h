// Runs a pipeline of passes with verification, statistics, timing and IR
// printing, and parses pipelines from their textual form.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ir/Graph.h"
#include "passes/Pass.h"

namespace roformer::passes {

// One element of a pipeline: a pass, or a group repeated until none of its
// passes changes the model (`fixpoint(p1,p2,...)`).
struct PipelineElement {
  std::unique_ptr<Pass> pass;
  std::vector<PipelineElement> fixpoint;
  bool isFixpoint() const { return pass == nullptr; }
};

// Parses `p1,p2(key=value,key2=value2),fixpoint(p3,p4)`. A value may be
// quoted with '...' or "..." to contain commas or parentheses.
absl::StatusOr<std::vector<PipelineElement>> parsePipeline(std::string_view text);

// Prints a pipeline back in the form parsePipeline reads (names only).
std::string pipelineToString(const std::vector<PipelineElement>& pipeline);

// The deployment pipeline `roformer-opt` runs when no --pass-pipeline is given.
std::string defaultPipeline();

struct PassManagerOptions {
  // Verify the IR (and run ONNX's checker) after every pass.
  bool verifyEach = false;
  bool printIrAfterAll = false;
  std::set<std::string> printIrAfter;
  // Text dumps elide initializers with more elements than this.
  uint64_t printElideAbove = 16;
  // Passes whose missed-match remarks are printed ("all" for every pass).
  std::set<std::string> remarksMissed;
  // A fixpoint group stops after this many rounds even if passes still change
  // the model; each round of the default pipeline strictly shrinks the graph,
  // so reaching the limit means a pass keeps undoing another.
  int maxFixpointRounds = 16;
  std::ostream* diagnostics = nullptr;
};

class PassManager {
 public:
  explicit PassManager(PassManagerOptions options) : options_(std::move(options)) {}

  void setPipeline(std::vector<PipelineElement> pipeline) { pipeline_ = std::move(pipeline); }
  // Sets `key=value` on every pass of the pipeline that declares `key`
  // (for tool-wide flags such as --input-shape); returns how many took it.
  absl::StatusOr<int> setGlobalOption(std::string_view key, std::string_view value);

  absl::Status run(ir::Model& model);

  // Counters of every pass run, by pass name.
  const std::map<std::string, std::map<std::string, int64_t>>& statistics() const {
    return statistics_;
  }
  void printStatistics(std::ostream& out) const;
  void printTiming(std::ostream& out) const;

 private:
  absl::StatusOr<bool> runElements(std::vector<PipelineElement>& elements, ir::Model& model);
  absl::StatusOr<bool> runPass(Pass& pass, ir::Model& model);

  PassManagerOptions options_;
  std::vector<PipelineElement> pipeline_;
  std::map<std::string, std::map<std::string, int64_t>> statistics_;
  std::vector<std::pair<std::string, std::chrono::duration<double>>> timing_;
  std::set<std::string> printedRemarks_;
};

}  // namespace roformer::passes
