// roformer-opt: reads an ONNX model, runs a pass pipeline over it and writes
// the result, in the manner of LLVM's opt and mlir-opt.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <new>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "ir/ModelIO.h"
#include "ir/Schemas.h"
#include "ir/Verifier.h"
#include "llvm/ADT/Statistic.h"
#include "llvm/Support/CommandLine.h"
#include "passes/PassManager.h"

namespace cl = llvm::cl;
using namespace roformer;

namespace {

cl::OptionCategory category("roformer-opt options");

cl::opt<std::string> inputPath(cl::Positional, cl::desc("<input .onnx, .onnxtxt or - for stdin>"),
                               cl::init("-"), cl::cat(category));
cl::opt<std::string> outputPath("o", cl::desc("Output file, - for standard output"),
                                cl::value_desc("file"), cl::init("-"), cl::cat(category));
cl::opt<bool> emitText("S", cl::desc("Write the ONNX text format instead of binary"),
                       cl::cat(category));
cl::opt<std::string> passPipeline(
    "pass-pipeline",
    cl::desc("Passes to run, e.g. 'dce,fold-constants(max-growth=4)'; default: the RoFormer "
             "deployment pipeline"),
    cl::cat(category));
cl::opt<bool> listPasses("list-passes", cl::desc("List the registered passes and exit"),
                         cl::cat(category));
cl::opt<bool> printDefaultPipeline("print-default-pipeline",
                                   cl::desc("Print the default pipeline and exit"),
                                   cl::cat(category));
cl::opt<bool> printIrAfterAll("print-ir-after-all",
                              cl::desc("Print the IR to stderr after every pass"),
                              cl::cat(category));
cl::list<std::string> printIrAfter("print-ir-after",
                                   cl::desc("Print the IR to stderr after the named pass"),
                                   cl::value_desc("pass"), cl::CommaSeparated, cl::cat(category));
cl::opt<bool> timePasses("time-passes", cl::desc("Print the time taken by each pass"),
                         cl::cat(category));
cl::opt<bool> verifyEach("verify-each",
                         cl::desc("Verify the IR and run ONNX's checker after every pass"),
                         cl::cat(category));
cl::list<std::string> remarksMissed(
    "remarks-missed",
    cl::desc("Print why candidate patterns of the named passes did not match ('all' for every "
             "pass)"),
    cl::value_desc("pass"), cl::CommaSeparated, cl::cat(category));
cl::opt<bool> quiet("quiet", cl::desc("Do not print the before/after summary"),
                    cl::cat(category));
cl::opt<std::string> inputShape(
    "input-shape",
    cl::desc("Fix input dims, e.g. 'input_token:0=Bx1024,input_segment:0=Bx1024' (names and "
             "symbols keep their dims symbolic)"),
    cl::cat(category));
cl::opt<std::string> nameMap("name-map",
                             cl::desc("Write the old-to-new name mapping of sanitize-names here"),
                             cl::value_desc("file"), cl::cat(category));
cl::opt<int64_t> maxSeqLen("max-seq-len",
                           cl::desc("Maximum sequence length the rotary caches cover (0: the "
                                    "fixed input dim)"),
                           cl::init(0), cl::cat(category));
cl::opt<bool> externalData("external-data",
                           cl::desc("Store initializers in a separate '<output>.data' file "
                                    "(automatic above 2 GB)"),
                           cl::cat(category));
cl::opt<uint64_t> externalDataThreshold(
    "external-data-threshold",
    cl::desc("With external data, initializers of at least this many bytes go to the data file"),
    cl::init(1024), cl::cat(category));
cl::opt<uint64_t> elideConstantsAbove(
    "elide-constants-above",
    cl::desc("With -S, print initializers with more elements than this in elided form (the "
             "text is then not parseable); 0 prints all"),
    cl::init(0), cl::cat(category));
cl::opt<bool> inPlace("in-place", cl::desc("Allow the output to replace the input file"),
                      cl::cat(category));

int fail(const absl::Status& status) {
  std::cerr << "roformer-opt: error: " << status.message() << "\n";
  return 1;
}

std::map<std::string, int> opHistogram(const ir::Model& model) {
  std::map<std::string, int> counts;
  for (const auto& node : model.graph().nodes()) {
    std::string key =
        node->domain().empty() ? node->opType() : node->domain() + "." + node->opType();
    ++counts[key];
  }
  return counts;
}

uint64_t initializerBytes(const ir::Model& model) {
  uint64_t total = 0;
  for (const ir::Value* value : model.graph().initializers()) {
    total += value->initializer()->byteSize();
  }
  return total;
}

void printSummary(const std::map<std::string, int>& before, const std::map<std::string, int>& after,
                  uint64_t bytesBefore, uint64_t bytesAfter, double seconds) {
  std::map<std::string, std::pair<int, int>> rows;
  for (const auto& [op, count] : before) rows[op].first = count;
  for (const auto& [op, count] : after) rows[op].second = count;
  int totalBefore = 0;
  int totalAfter = 0;
  std::cerr << absl::StrFormat("%-40s %10s %10s\n", "op", "before", "after");
  for (const auto& [op, counts] : rows) {
    std::cerr << absl::StrFormat("%-40s %10d %10d\n", op, counts.first, counts.second);
    totalBefore += counts.first;
    totalAfter += counts.second;
  }
  std::cerr << absl::StrFormat("%-40s %10d %10d\n", "total nodes", totalBefore, totalAfter);
  std::cerr << absl::StrFormat("%-40s %10.2f %10.2f\n", "initializers (MiB)",
                               bytesBefore / 1048576.0, bytesAfter / 1048576.0);
  std::cerr << absl::StrFormat("optimized in %.2f s\n", seconds);
}

bool sameFile(const std::string& a, const std::string& b) {
  std::error_code error;
  return std::filesystem::exists(b, error) && std::filesystem::equivalent(a, b, error);
}

// Returns an external data file of the input model that writing `outputPath`
// would replace (the output itself or its `<output>.data`), if any.
std::optional<std::string> inputDataFileAt(const ir::Model& model, const std::string& outputPath) {
  std::set<std::string> checked;
  for (const ir::Value* value : model.graph().initializers()) {
    const auto& origin = value->initializer()->externalOrigin();
    if (!origin) continue;
    std::string dataPath = (model.baseDir() / origin->location).string();
    if (!checked.insert(dataPath).second) continue;
    if (sameFile(dataPath, outputPath) || sameFile(dataPath, outputPath + ".data")) {
      return dataPath;
    }
  }
  return std::nullopt;
}

}  // namespace

int runTool(int argc, char** argv) {
  // LLVM's Support library registers -stats itself (llvm::AreStatisticsEnabled
  // reads it), so the tool reuses that option instead of defining a second one.
  if (auto it = cl::getRegisteredOptions().find("stats"); it != cl::getRegisteredOptions().end()) {
    it->second->setDescription("Print the passes' counters at the end");
    it->second->addCategory(category);
    it->second->setHiddenFlag(cl::NotHidden);
  }
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(argc, argv,
                              "roformer-opt: optimize an exported RoFormer ONNX model\n");
  ir::registerContribSchemas();

  if (listPasses) {
    for (const auto& entry : passes::registeredPasses()) {
      std::cout << absl::StrFormat("  %-24s %s\n", entry.name, entry.summary);
      auto pass = entry.factory();
      for (const auto& option : pass->options()) {
        std::cout << absl::StrFormat("      %-20s %s (default: %s)\n", option.name,
                                     option.description, option.defaultValue);
      }
    }
    return 0;
  }
  if (printDefaultPipeline) {
    std::cout << passes::defaultPipeline() << "\n";
    return 0;
  }

  if (inputPath != "-" && outputPath != "-" && sameFile(inputPath, outputPath) && !inPlace) {
    return fail(absl::InvalidArgumentError(absl::StrFormat(
        "the output '%s' is the input file; pass --in-place to replace it, or choose another -o",
        outputPath)));
  }
  if (outputPath != "-") {
    std::error_code error;
    if (absl::EndsWith(std::string(outputPath), "/") ||
        std::filesystem::is_directory(std::string(outputPath), error)) {
      return fail(absl::InvalidArgumentError(absl::StrFormat(
          "the output '%s' is a folder; -o must name a file, such as '%s'", outputPath,
          (std::filesystem::path(std::string(outputPath)) / "model.onnx").lexically_normal()
              .string())));
    }
  }
  if (outputPath == "-" && !emitText && isatty(STDOUT_FILENO)) {
    return fail(absl::InvalidArgumentError(
        "refusing to write a binary model to a terminal; use -S for text or -o FILE"));
  }

  auto start = std::chrono::steady_clock::now();
  auto model = ir::loadModel(inputPath);
  if (!model.ok()) return fail(model.status());
  if (outputPath != "-" && !inPlace) {
    if (auto dataFile = inputDataFileAt(**model, outputPath)) {
      return fail(absl::InvalidArgumentError(absl::StrFormat(
          "writing '%s' would replace '%s', which contains weights of the input model; pass "
          "--in-place to allow it, or choose another -o",
          outputPath, *dataFile)));
    }
  }
  // Under --verify-each, an input that fails verification is reported as
  // such, not as a fault of the first pass.
  if (verifyEach) {
    if (auto status = ir::verifyModel(**model); !status.ok()) {
      return fail(absl::InvalidArgumentError(
          absl::StrCat(inputPath == "-" ? std::string("<stdin>") : std::string(inputPath),
                       ": the input model is invalid: ", status.message())));
    }
  }

  std::string pipelineText = passPipeline.getNumOccurrences() > 0
                                 ? std::string(passPipeline)
                                 : passes::defaultPipeline();
  auto pipeline = passes::parsePipeline(pipelineText);
  if (!pipeline.ok()) return fail(pipeline.status());

  // A misspelled pass name would otherwise select nothing and print nothing.
  for (const auto& [flag, names] :
       {std::pair{"remarks-missed", &remarksMissed}, std::pair{"print-ir-after", &printIrAfter}}) {
    for (const std::string& name : *names) {
      if (name == "all" && names == &remarksMissed) continue;
      if (auto known = passes::createPass(name); !known.ok()) {
        return fail(absl::InvalidArgumentError(
            absl::StrCat("--", flag, "=", name, ": ", known.status().message())));
      }
    }
  }

  passes::PassManagerOptions options;
  options.verifyEach = verifyEach;
  options.printIrAfterAll = printIrAfterAll;
  options.printIrAfter.insert(printIrAfter.begin(), printIrAfter.end());
  options.remarksMissed.insert(remarksMissed.begin(), remarksMissed.end());
  options.diagnostics = &std::cerr;
  passes::PassManager manager(options);
  manager.setPipeline(*std::move(pipeline));

  // Tool-wide flags go to every pass that declares an option of that name.
  std::vector<std::pair<std::string, std::string>> globals;
  if (inputShape.getNumOccurrences() > 0) globals.emplace_back("input-shape", inputShape);
  if (nameMap.getNumOccurrences() > 0) globals.emplace_back("name-map", nameMap);
  if (maxSeqLen.getNumOccurrences() > 0) {
    globals.emplace_back("max-seq-len", std::to_string(maxSeqLen));
  }
  for (const auto& [key, value] : globals) {
    auto taken = manager.setGlobalOption(key, value);
    if (!taken.ok()) return fail(taken.status());
    if (*taken == 0) {
      std::cerr << "roformer-opt: warning: --" << key
                << " has no effect: no pass in the pipeline takes it\n";
    }
  }

  auto histogramBefore = opHistogram(**model);
  uint64_t bytesBefore = initializerBytes(**model);
  if (auto status = manager.run(**model); !status.ok()) return fail(status);
  if (auto status = ir::verifyModel(**model, ir::VerifyOptions{/*runOnnxChecker=*/false});
      !status.ok()) {
    return fail(absl::InternalError(
        absl::StrCat("the optimized model is invalid: ", status.message())));
  }

  ir::SaveOptions saveOptions;
  saveOptions.text = emitText;
  saveOptions.externalData =
      externalData ? ir::ExternalDataMode::kAlways : ir::ExternalDataMode::kAuto;
  saveOptions.externalThresholdBytes = externalDataThreshold;
  saveOptions.elideConstantsAbove = elideConstantsAbove;
  if (auto status = ir::saveModel(**model, outputPath, saveOptions); !status.ok()) {
    return fail(status);
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (llvm::AreStatisticsEnabled()) manager.printStatistics(std::cerr);
  if (timePasses) manager.printTiming(std::cerr);
  if (!quiet) {
    std::map<std::string, int> histogramAfter = opHistogram(**model);
    printSummary(histogramBefore, histogramAfter, bytesBefore, initializerBytes(**model),
                 seconds);
    // The usual reason is a sequence length that is not fixed, which only
    // --remarks-missed would otherwise reveal.
    bool attentionPassRan = absl::StrContains(pipelineText, "fuse-rotary-attention");
    if (attentionPassRan && histogramAfter["Softmax"] > 0 &&
        histogramAfter["com.microsoft.MultiHeadAttention"] == 0) {
      std::cerr << "roformer-opt: note: attention was not fused (" << histogramAfter["Softmax"]
                << " Softmax nodes remain); run with --remarks-missed=fuse-rotary-attention to "
                   "see why. A sequence length that is not fixed is the usual cause: pass "
                   "--input-shape or --max-seq-len\n";
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  // A model or a computed tensor larger than memory ends with a message and
  // exit code 1, not an abort. The output is renamed into place only after a
  // complete write, so the unwinding leaves no partial file behind.
  try {
    return runTool(argc, argv);
  } catch (const std::bad_alloc&) {
    std::cerr << "roformer-opt: error: out of memory; the model (or a tensor computed from it) "
                 "does not fit in this machine's memory\n";
    return 1;
  }
}
