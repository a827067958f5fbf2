// roformer-run: runs an ONNX model with the project's runtime and reports
// latency and throughput like trtexec, CAIL2019-SCM pairwise accuracy, and
// the differences from a reference model.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <new>
#include <map>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ir/ModelIO.h"
#include "ir/Schemas.h"
#include "llvm/Support/CommandLine.h"
#include "runtime/Session.h"
#include "tools/roformer-run/Cail2019.h"
#include "tools/roformer-run/Inputs.h"
#include "tools/roformer-run/Report.h"

namespace cl = llvm::cl;
using namespace roformer;
using runtime::HostTensor;
using runtime::Session;

namespace {

cl::OptionCategory category("roformer-run options");

cl::opt<std::string> modelPath(cl::Positional, cl::desc("<model .onnx>"), cl::cat(category));
cl::list<std::string> inputSpecs(
    "input",
    cl::desc("Feed input NAME from a .npy file (repeat per input), or every input from the "
             "arrays of an .npz file"),
    cl::value_desc("NAME=FILE.npy|FILE.npz"), cl::cat(category));
cl::opt<bool> synthetic("synthetic",
                        cl::desc("Generate the token and segment ids not given with --input"),
                        cl::cat(category));
cl::opt<int64_t> batchSize("batch",
                           cl::desc("Sequences per run (default: the model's fixed batch, or 1)"),
                           cl::init(0), cl::cat(category));
cl::opt<int64_t> seqLen("seq-len",
                        cl::desc("Tokens per sequence (default: the model's fixed sequence "
                                 "length, or 1024)"),
                        cl::init(0), cl::cat(category));
cl::opt<uint64_t> seed("seed", cl::desc("Seed of the synthetic ids (default 0)"), cl::init(0),
                       cl::cat(category));
cl::opt<int64_t> vocab("vocab",
                       cl::desc("Vocabulary size for synthetic ids when no Gather table tells it"),
                       cl::init(0), cl::cat(category));
cl::opt<std::string> device("device", cl::desc("Backend: cpu or cuda (default cpu)"),
                            cl::init("cpu"), cl::cat(category));
cl::opt<int> threads("threads", cl::desc("Threads for kernels and BLAS (default: all cores)"),
                     cl::init(0), cl::cat(category));
cl::opt<std::string> precision("precision",
                               cl::desc("fp32, or fp16/bf16 on the cuda device (default fp32)"),
                               cl::init("fp32"), cl::cat(category));
cl::opt<int> warmup("warmup",
                    cl::desc("Untimed runs before timing (default 1, or 2 on the cuda device, "
                             "where a shape's second run is recorded as a CUDA graph)"),
                    cl::init(1), cl::cat(category));
cl::opt<bool> cudaGraphs(
    "cuda-graphs",
    cl::desc("On the cuda device, record the second run of each input shape as a CUDA graph and "
             "replay it for later runs (default true; --cuda-graphs=false runs every step)"),
    cl::init(true), cl::cat(category));
cl::opt<int> iterations("iterations", cl::desc("Timed runs (default 10)"), cl::init(10),
                        cl::cat(category));
cl::opt<int> concurrency(
    "concurrency",
    cl::desc("Run from this many threads at once, each doing --iterations runs, and check that "
             "all runs give identical outputs (default 1)"),
    cl::init(1), cl::cat(category));
cl::opt<bool> profile("profile",
                      cl::desc("Time every node of the timed runs and print the time per op "
                               "type and the slowest nodes"),
                      cl::cat(category));
cl::opt<std::string> outputDir(
    "output-dir",
    cl::desc("Write each output as DIR/<name>.npy (characters outside [A-Za-z0-9_.-] become _) "
             "and DIR/outputs.json mapping output names to files"),
    cl::value_desc("dir"), cl::cat(category));
cl::opt<std::string> saveInputs(
    "save-inputs",
    cl::desc("Write the inputs of the run (synthetic ones included) as DIR/<name>.npy and "
             "DIR/inputs.json mapping input names to files"),
    cl::value_desc("dir"), cl::cat(category));
cl::opt<std::string> jsonPath("json", cl::desc("Write the report as JSON to this file"),
                              cl::value_desc("file"), cl::cat(category));
cl::opt<std::string> cail2019Dir(
    "cail2019",
    cl::desc("Run a ByteMLPerf open_cail2019 folder in batches and report the pairwise accuracy "
             "mean(score[2i] > score[2i+1])"),
    cl::value_desc("dir"), cl::cat(category));
cl::opt<std::string> scoreOutput(
    "score-output",
    cl::desc("Output with one score per sequence for --cail2019 (default: the first of shape "
             "[batch] or [batch, 1])"),
    cl::cat(category));
cl::opt<std::string> compareTo(
    "compare-to",
    cl::desc("Also run this model on the same inputs and print max abs error, max rel error and "
             "cosine similarity per output"),
    cl::value_desc("reference.onnx"), cl::cat(category));
cl::opt<double> compareTolerance(
    "compare-tolerance",
    cl::desc("With --compare-to, fail (exit 1) when an output's max abs error exceeds this"),
    cl::init(-1.0), cl::cat(category));
cl::opt<bool> listOps("list-ops", cl::desc("List the ops the device's backend runs and exit"),
                      cl::cat(category));

int fail(const absl::Status& status) {
  std::cerr << "roformer-run: error: " << status.message() << "\n";
  return 1;
}

std::string describeTensor(const std::string& name, const HostTensor& tensor) {
  return absl::StrCat(name, " ", std::string(ir::dataTypeName(tensor.type())), " ",
                      runtime::shapeToString(tensor.shape()));
}

double mebibytes(size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

// Chooses a dim from the flag, the model's fixed dim, or the default; fails
// when the flag contradicts a fixed dim.
absl::StatusOr<int64_t> chooseDim(const char* flag, int64_t requested,
                                  std::optional<int64_t> fixed, int64_t fallback) {
  if (requested < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " must be positive"));
  }
  if (requested > 0 && fixed && *fixed != requested) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, " ", requested, " differs from the model's fixed size ", *fixed,
        "; leave out --", flag, ", or optimize the original model again with roformer-opt "
        "--input-shape giving ", requested));
  }
  if (requested > 0) return requested;
  return fixed.value_or(fallback);
}

void printLatency(const run::LatencyStats& stats, int64_t batch, double throughput) {
  std::cout << absl::StrFormat(
      "Latency (ms, %d runs): mean %.3f  min %.3f  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n",
      stats.count, stats.meanMs, stats.minMs, stats.p50Ms, stats.p90Ms, stats.p99Ms,
      stats.maxMs);
  std::cout << absl::StrFormat("Throughput: %.2f sequences/s (batch %d)\n", throughput, batch);
}

void writeLatencyJson(run::JsonWriter& json, const run::LatencyStats& stats, double throughput) {
  json.beginObject("latency_ms");
  json.number("mean", stats.meanMs);
  json.number("min", stats.minMs);
  json.number("p50", stats.p50Ms);
  json.number("p90", stats.p90Ms);
  json.number("p99", stats.p99Ms);
  json.number("max", stats.maxMs);
  json.endObject();
  json.number("throughput_sequences_per_s", throughput);
}

// Prints the mean time per op type and the slowest nodes of the profiled
// runs, and adds the per-op-type times to the report.
void printProfile(const Session& session, run::JsonWriter& json) {
  constexpr size_t kSlowestNodes = 10;
  std::vector<runtime::StepProfile> steps = session.profile();
  double total = 0;
  std::map<std::string, std::pair<double, int>> byOp;
  for (const runtime::StepProfile& step : steps) {
    total += step.meanMilliseconds;
    byOp[step.opType].first += step.meanMilliseconds;
    byOp[step.opType].second += 1;
  }
  std::vector<std::pair<std::string, std::pair<double, int>>> ops(byOp.begin(), byOp.end());
  std::sort(ops.begin(), ops.end(),
            [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  std::cout << absl::StrFormat("Profile (mean of %d runs, %.3f ms in nodes):\n",
                               session.profiledRuns(), total);
  std::cout << absl::StrFormat("  %-40s %6s %12s %7s\n", "op", "nodes", "ms", "share");
  json.beginObject("profile_ms_by_op");
  for (const auto& [op, timing] : ops) {
    std::cout << absl::StrFormat("  %-40s %6d %12.3f %6.1f%%\n", op, timing.second,
                                 timing.first, total > 0 ? 100 * timing.first / total : 0.0);
    json.number(op, timing.first);
  }
  json.endObject();
  std::sort(steps.begin(), steps.end(), [](const auto& a, const auto& b) {
    return a.meanMilliseconds > b.meanMilliseconds;
  });
  std::cout << "  slowest nodes:\n";
  for (size_t i = 0; i < std::min(kSlowestNodes, steps.size()); ++i) {
    std::cout << absl::StrFormat("    %10.3f ms  %s\n", steps[i].meanMilliseconds, steps[i].node);
  }
}

// Prints the comparison table; returns an error when a tolerance is exceeded
// or outputs cannot be compared.
absl::Status reportComparison(const std::map<std::string, run::OutputComparison>& comparisons,
                              const Session& session, const Session& reference,
                              run::JsonWriter& json) {
  std::cout << "Comparison with " << compareTo << ":\n";
  std::cout << absl::StrFormat("  %-32s %14s %14s %14s\n", "output", "max abs err",
                               "max rel err", "cosine sim");
  json.beginObject("compare");
  json.string("reference", std::string(compareTo));
  json.beginObject("outputs");
  std::vector<std::string> failures;
  for (const runtime::TensorInfo& info : session.outputs()) {
    auto it = comparisons.find(info.name);
    if (it == comparisons.end()) {
      std::cout << absl::StrFormat("  %-32s not an output of the reference\n", info.name);
      continue;
    }
    const run::OutputComparison& comparison = it->second;
    json.beginObject(info.name);
    if (comparison.shapeMismatch()) {
      std::cout << absl::StrFormat("  %-32s %s\n", info.name, comparison.mismatch());
      json.string("mismatch", comparison.mismatch());
      failures.push_back(absl::StrCat("output '", info.name, "': ", comparison.mismatch()));
    } else {
      std::cout << absl::StrFormat("  %-32s %14.3e %14.3e %14.8f", info.name,
                                   comparison.maxAbsError(), comparison.maxRelError(),
                                   comparison.cosineSimilarity());
      if (comparison.nonFiniteMismatches() > 0) {
        std::cout << "  (" << comparison.nonFiniteMismatches() << " NaN/inf mismatches)";
      }
      std::cout << "\n";
      json.number("max_abs_error", comparison.maxAbsError());
      json.number("max_rel_error", comparison.maxRelError());
      json.number("cosine_similarity", comparison.cosineSimilarity());
      json.integer("non_finite_mismatches", comparison.nonFiniteMismatches());
      json.integer("elements", comparison.elements());
      if (compareTolerance >= 0 && (comparison.maxAbsError() > compareTolerance ||
                                    comparison.nonFiniteMismatches() > 0)) {
        failures.push_back(absl::StrFormat(
            "output '%s' differs from the reference by %.3e max abs error%s, more than "
            "--compare-tolerance %.3e",
            info.name, comparison.maxAbsError(),
            comparison.nonFiniteMismatches() > 0 ? " and NaN/inf mismatches" : "",
            compareTolerance.getValue()));
      }
    }
    json.endObject();
  }
  for (const runtime::TensorInfo& info : reference.outputs()) {
    if (!comparisons.count(info.name)) {
      std::cout << absl::StrFormat("  %-32s only in the reference\n", info.name);
    }
  }
  json.endObject();
  json.endObject();
  if (!failures.empty()) return absl::FailedPreconditionError(absl::StrJoin(failures, "; "));
  return absl::OkStatus();
}

// State shared by both modes: the sessions, the id inputs and the report.
struct RunContext {
  const Session& session;
  const Session* reference;
  run::IdInputs ids;
  std::optional<int64_t> fixedBatch;
  std::optional<int64_t> fixedSeq;
  run::JsonWriter json;
  // Set when --compare-tolerance is exceeded; reported after --json is written.
  absl::Status compareStatus;
};

absl::Status runCail2019Mode(RunContext& context) {
  absl::StatusOr<int64_t> batch = chooseDim("batch", batchSize, context.fixedBatch, 1);
  if (!batch.ok()) return batch.status();
  absl::StatusOr<int64_t> length = chooseDim("seq-len", seqLen, context.fixedSeq, 1024);
  if (!length.ok()) return length.status();
  absl::StatusOr<run::CailData> data = run::loadCail2019(cail2019Dir);
  if (!data.ok()) return data.status();

  run::CailOptions options;
  options.batch = *batch;
  options.seqLen = *length;
  options.scoreOutput = scoreOutput;
  options.warmup = warmup;
  options.reference = context.reference;
  options.keepOutputs = !outputDir.empty();
  options.progressBar = isatty(STDERR_FILENO) != 0;
  absl::StatusOr<run::CailResult> result =
      run::runCail2019(context.session, context.ids, *data, options);
  if (!result.ok()) return result.status();

  std::cout << absl::StrFormat("CAIL2019: %d sequences, batch %d, sequence length %d\n",
                               result->sequences, *batch, *length);
  if (result->truncated > 0) {
    std::cout << absl::StrFormat("  %d sequences were longer and were cut to %d tokens\n",
                                 result->truncated, *length);
  }
  std::cout << absl::StrFormat("Accuracy: %.6f (%d of %d pairs with score[2i] > score[2i+1], "
                               "scores from %s)\n",
                               result->accuracy, result->correct, result->pairs,
                               result->scoreOutput);
  run::LatencyStats stats = run::summarizeLatencies(result->latenciesMs);
  printLatency(stats, *batch, static_cast<double>(result->sequences) / stats.totalSeconds);

  run::JsonWriter& json = context.json;
  json.integer("batch", *batch);
  json.integer("seq_len", *length);
  json.integer("warmup", warmup);
  json.integer("iterations", static_cast<int64_t>(stats.count));
  writeLatencyJson(json, stats, static_cast<double>(result->sequences) / stats.totalSeconds);
  json.beginObject("cail2019");
  json.string("folder", cail2019Dir);
  json.integer("sequences", result->sequences);
  json.integer("pairs", result->pairs);
  json.integer("correct_pairs", result->correct);
  json.number("accuracy", result->accuracy);
  json.integer("truncated_sequences", result->truncated);
  json.string("score_output", result->scoreOutput);
  json.endObject();

  if (!outputDir.empty()) {
    absl::Status written = run::writeTensorFolder(outputDir, result->outputs, "outputs.json");
    if (!written.ok()) return written;
  }
  if (context.reference != nullptr) {
    context.compareStatus =
        reportComparison(result->comparisons, context.session, *context.reference, json);
  }
  return absl::OkStatus();
}

// Timed runs of one input set, from one thread or from several at once.
struct TimedRuns {
  std::vector<double> latenciesMs;
  double wallSeconds = 0;
  // Processor time of the whole process (every thread, user and system)
  // during the timed runs.
  double cpuSeconds = 0;
  std::map<std::string, HostTensor> outputs;
};

double processCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

bool sameBytes(const std::map<std::string, HostTensor>& a,
               const std::map<std::string, HostTensor>& b) {
  for (const auto& [name, tensor] : a) {
    auto it = b.find(name);
    if (it == b.end() || it->second.shape() != tensor.shape() ||
        it->second.byteSize() != tensor.byteSize() ||
        std::memcmp(it->second.rawData(), tensor.rawData(), tensor.byteSize()) != 0) {
      return false;
    }
  }
  return a.size() == b.size();
}

absl::StatusOr<TimedRuns> timeRuns(const Session& session,
                                   const std::map<std::string, HostTensor>& inputs) {
  TimedRuns timed;
  for (int i = 0; i < warmup; ++i) {
    absl::StatusOr<std::map<std::string, HostTensor>> outputs = session.run(inputs);
    if (!outputs.ok()) return outputs.status();
  }
  session.resetProfile();

  // Each thread checks that all its runs agree, then the threads' first
  // results are compared with each other.
  int threadCount = concurrency;
  std::vector<std::vector<double>> latencies(threadCount);
  std::vector<std::map<std::string, HostTensor>> firstOutputs(threadCount);
  std::vector<absl::Status> errors(threadCount);
  auto worker = [&](int index) {
    for (int i = 0; i < iterations; ++i) {
      auto start = std::chrono::steady_clock::now();
      absl::StatusOr<std::map<std::string, HostTensor>> outputs = session.run(inputs);
      auto stop = std::chrono::steady_clock::now();
      if (!outputs.ok()) {
        errors[index] = outputs.status();
        return;
      }
      latencies[index].push_back(std::chrono::duration<double, std::milli>(stop - start).count());
      if (i == 0) {
        firstOutputs[index] = std::move(*outputs);
      } else if (!sameBytes(*outputs, firstOutputs[index])) {
        errors[index] = absl::InternalError(absl::StrCat(
            "run ", i + 1, " of thread ", index + 1, " gave other outputs than its first run"));
        return;
      }
    }
  };
  double cpuStart = processCpuSeconds();
  auto start = std::chrono::steady_clock::now();
  if (threadCount == 1) {
    worker(0);
  } else {
    std::vector<std::thread> threads;
    for (int i = 0; i < threadCount; ++i) threads.emplace_back(worker, i);
    for (std::thread& thread : threads) thread.join();
  }
  timed.wallSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  timed.cpuSeconds = processCpuSeconds() - cpuStart;

  for (int i = 0; i < threadCount; ++i) {
    if (!errors[i].ok()) return errors[i];
    if (!sameBytes(firstOutputs[i], firstOutputs[0])) {
      return absl::InternalError(absl::StrCat(
          "concurrent runs disagree: thread ", i + 1, " gave other outputs than thread 1"));
    }
    timed.latenciesMs.insert(timed.latenciesMs.end(), latencies[i].begin(), latencies[i].end());
  }
  timed.outputs = std::move(firstOutputs[0]);
  return timed;
}

// Reads --input files and adds --synthetic ids; sets `batch` and, for
// synthetic inputs, `syntheticLength`.
absl::StatusOr<std::map<std::string, HostTensor>> prepareInputs(const RunContext& context,
                                                                int64_t& batch,
                                                                int64_t& syntheticLength) {
  absl::StatusOr<std::map<std::string, HostTensor>> inputs =
      run::readInputFiles(context.session, inputSpecs);
  if (!inputs.ok()) return inputs.status();
  batch = 0;
  syntheticLength = 0;
  if (synthetic) {
    absl::StatusOr<int64_t> chosenBatch = chooseDim("batch", batchSize, context.fixedBatch, 1);
    if (!chosenBatch.ok()) return chosenBatch.status();
    absl::StatusOr<int64_t> length = chooseDim("seq-len", seqLen, context.fixedSeq, 1024);
    if (!length.ok()) return length.status();
    run::SyntheticOptions options{*chosenBatch, *length, seed};
    absl::Status added = run::addSyntheticInputs(context.session, context.ids, options, *inputs);
    if (!added.ok()) return added;
    batch = *chosenBatch;
    syntheticLength = *length;
  } else if (batchSize > 0 || seqLen > 0) {
    return absl::InvalidArgumentError(
        "--batch and --seq-len shape synthetic inputs; with --input the files set the shapes");
  }
  for (const runtime::TensorInfo& info : context.session.inputs()) {
    auto it = inputs->find(info.name);
    if (batch == 0 && it != inputs->end() && !it->second.shape().empty()) {
      batch = it->second.shape()[0];
    }
  }
  if (batch == 0) batch = 1;
  return inputs;
}

// Input or output tensors in the session's graph order.
std::vector<std::pair<std::string, HostTensor>> inGraphOrder(
    const std::vector<runtime::TensorInfo>& infos, const std::map<std::string, HostTensor>& map) {
  std::vector<std::pair<std::string, HostTensor>> ordered;
  for (const runtime::TensorInfo& info : infos) {
    auto it = map.find(info.name);
    if (it != map.end()) ordered.emplace_back(info.name, it->second);
  }
  return ordered;
}

absl::Status runLatencyMode(RunContext& context) {
  const Session& session = context.session;
  int64_t batch = 0;
  int64_t syntheticLength = 0;
  absl::StatusOr<std::map<std::string, HostTensor>> inputs =
      prepareInputs(context, batch, syntheticLength);
  if (!inputs.ok()) return inputs.status();
  std::vector<std::string> described;
  for (const auto& [name, tensor] : inGraphOrder(session.inputs(), *inputs)) {
    described.push_back(describeTensor(name, tensor));
  }
  std::cout << "Inputs: " << absl::StrJoin(described, ", ") << "\n";
  if (!saveInputs.empty()) {
    absl::Status written = run::writeTensorFolder(
        saveInputs, inGraphOrder(session.inputs(), *inputs), "inputs.json");
    if (!written.ok()) return written;
  }

  absl::StatusOr<TimedRuns> timed = timeRuns(session, *inputs);
  if (!timed.ok()) return timed.status();
  run::LatencyStats stats = run::summarizeLatencies(timed->latenciesMs);
  // One thread: sequences per second of run time. Several: per second of
  // wall time, since their runs overlap.
  double sequences = static_cast<double>(batch) * static_cast<double>(stats.count);
  double throughput = concurrency > 1 ? sequences / timed->wallSeconds
                                      : sequences / stats.totalSeconds;
  if (concurrency > 1) {
    std::cout << absl::StrFormat("Concurrency: %d threads, %d runs each, identical outputs\n",
                                 concurrency.getValue(), iterations.getValue());
  }
  printLatency(stats, batch, throughput);
  double cpuMsPerRun = 1000.0 * timed->cpuSeconds / static_cast<double>(stats.count);
  // On a machine shared with other jobs, latency grows with their load but
  // processor time per run much less, so both are shown.
  std::cout << absl::StrFormat("CPU time: %.3f ms per run (all threads, user and system)\n",
                               cpuMsPerRun);
  runtime::SessionStats sessionStats = session.stats();
  std::cout << absl::StrFormat(
      "Arena: %.2f MiB for %.2f MiB of intermediate tensors, %d of %d steps in place\n",
      mebibytes(sessionStats.arenaBytes), mebibytes(sessionStats.unsharedBytes),
      sessionStats.inPlaceSteps, session.stepCount());
  if (sessionStats.recordedRuns > 0 || sessionStats.unrecordable > 0) {
    std::cout << absl::StrFormat("CUDA graphs: %d recorded, %d runs replayed\n",
                                 sessionStats.recordedRuns, sessionStats.replayedRuns);
  }
  if (sessionStats.unrecordable > 0) {
    std::cout << "  not recorded: " << sessionStats.unrecordableReason << "\n";
  }
  std::vector<std::string> outputLines;
  for (const auto& [name, tensor] : inGraphOrder(session.outputs(), timed->outputs)) {
    outputLines.push_back(describeTensor(name, tensor));
  }
  std::cout << "Outputs: " << absl::StrJoin(outputLines, ", ") << "\n";
  if (profile) printProfile(session, context.json);

  run::JsonWriter& json = context.json;
  json.integer("batch", batch);
  if (syntheticLength > 0) json.integer("seq_len", syntheticLength);
  json.integer("warmup", warmup);
  json.integer("iterations", iterations);
  json.integer("concurrency", concurrency);
  writeLatencyJson(json, stats, throughput);
  json.number("cpu_ms_per_run", cpuMsPerRun);
  json.integer("arena_bytes", static_cast<int64_t>(sessionStats.arenaBytes));
  json.integer("unshared_bytes", static_cast<int64_t>(sessionStats.unsharedBytes));
  json.integer("in_place_steps", static_cast<int64_t>(sessionStats.inPlaceSteps));
  json.integer("recorded_runs", static_cast<int64_t>(sessionStats.recordedRuns));
  json.integer("replayed_runs", static_cast<int64_t>(sessionStats.replayedRuns));

  if (!outputDir.empty()) {
    absl::Status written = run::writeTensorFolder(
        outputDir, inGraphOrder(session.outputs(), timed->outputs), "outputs.json");
    if (!written.ok()) return written;
  }
  if (context.reference != nullptr) {
    absl::StatusOr<std::map<std::string, HostTensor>> referenceInputs =
        run::adaptInputs(*context.reference, *inputs);
    if (!referenceInputs.ok()) return referenceInputs.status();
    absl::StatusOr<std::map<std::string, HostTensor>> expected =
        context.reference->run(*referenceInputs);
    if (!expected.ok()) {
      return absl::Status(expected.status().code(),
                          absl::StrCat("reference model: ", expected.status().message()));
    }
    std::map<std::string, run::OutputComparison> comparisons;
    for (const auto& [name, tensor] : timed->outputs) {
      auto it = expected->find(name);
      if (it != expected->end()) comparisons[name].add(tensor, it->second);
    }
    context.compareStatus = reportComparison(comparisons, session, *context.reference, json);
  }
  return absl::OkStatus();
}

absl::Status checkFlags(runtime::Precision precisionValue) {
  if (precisionValue != runtime::Precision::kFp32 && device != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--precision ", std::string(precision), " needs --device cuda; the ",
                     std::string(device), " device computes in fp32"));
  }
  if (threads < 0) return absl::InvalidArgumentError("--threads must be 0 or more");
  if (listOps) return absl::OkStatus();
  if (modelPath.empty()) {
    return absl::InvalidArgumentError("no model given; usage: roformer-run MODEL [options]");
  }
  if (iterations < 1) return absl::InvalidArgumentError("--iterations must be at least 1");
  if (warmup < 0) return absl::InvalidArgumentError("--warmup must be 0 or more");
  // The second run on the cuda device records a CUDA graph, which takes
  // longer than a replay, so it is not timed either.
  if (warmup.getNumOccurrences() == 0 && device == "cuda" && cudaGraphs) warmup = 2;
  if (concurrency < 1) return absl::InvalidArgumentError("--concurrency must be at least 1");
  if (inputSpecs.empty() && !synthetic && cail2019Dir.empty()) {
    return absl::InvalidArgumentError(
        "no inputs: pass --input NAME=FILE.npy, --synthetic or --cail2019 DIR");
  }
  if (!cail2019Dir.empty() && (!inputSpecs.empty() || synthetic)) {
    return absl::InvalidArgumentError(
        "--cail2019 reads its inputs from the folder; drop --input and --synthetic");
  }
  if (!cail2019Dir.empty() && concurrency > 1) {
    return absl::InvalidArgumentError("--concurrency applies to --input and --synthetic runs");
  }
  return absl::OkStatus();
}

int runMain() {
  absl::StatusOr<runtime::Precision> parsedPrecision = runtime::parsePrecision(precision);
  if (!parsedPrecision.ok()) return fail(parsedPrecision.status());
  if (absl::Status valid = checkFlags(*parsedPrecision); !valid.ok()) return fail(valid);

  if (listOps) {
    runtime::BackendOptions backendOptions;
    backendOptions.threads = 1;
    absl::StatusOr<std::shared_ptr<runtime::Backend>> backend =
        runtime::createBackend(device, backendOptions);
    if (!backend.ok()) return fail(backend.status());
    for (const std::string& op : (*backend)->kernels().listOps()) std::cout << op << "\n";
    return 0;
  }

  runtime::SessionOptions options;
  options.device = device;
  options.threads = threads;
  options.precision = *parsedPrecision;
  options.profile = profile;
  options.recordRuns = cudaGraphs;

  auto loadStart = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<ir::Model>> model = ir::loadModel(modelPath);
  if (!model.ok()) return fail(model.status());
  absl::StatusOr<std::unique_ptr<Session>> created =
      Session::create(std::shared_ptr<const ir::Model>(std::move(*model)), options);
  if (!created.ok()) return fail(created.status());
  const Session& session = **created;
  double loadSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - loadStart).count();

  std::unique_ptr<Session> reference;
  if (!compareTo.empty()) {
    absl::StatusOr<std::unique_ptr<Session>> loaded = Session::createFromFile(compareTo, options);
    if (!loaded.ok()) {
      return fail(absl::Status(loaded.status().code(),
                               absl::StrCat("reference model: ", loaded.status().message())));
    }
    reference = std::move(*loaded);
  }

  int resolvedThreads = runtime::resolveThreadCount(threads);
  std::cout << absl::StrFormat("Model: %s (%d nodes to run), loaded in %.2f s\n",
                               std::string(modelPath), session.stepCount(), loadSeconds);
  std::cout << absl::StrFormat("Device: %s, %d threads, %s\n", session.backend().name(),
                               resolvedThreads, runtime::precisionName(*parsedPrecision));

  RunContext context{session, reference.get(), {}, std::nullopt, std::nullopt, {}, {}};
  context.ids =
      run::findIdInputs(session, vocab > 0 ? std::optional<int64_t>(vocab) : std::nullopt);
  if (context.ids.tokenInput >= 0) {
    context.fixedBatch = run::fixedDim(session.inputs()[context.ids.tokenInput], 0);
    context.fixedSeq = run::fixedDim(session.inputs()[context.ids.tokenInput], 1);
  }

  run::JsonWriter& json = context.json;
  json.beginObject();
  json.string("model", modelPath);
  json.string("device", session.backend().name());
  json.integer("threads", resolvedThreads);
  json.string("precision", runtime::precisionName(*parsedPrecision));
  absl::Status ran = cail2019Dir.empty() ? runLatencyMode(context) : runCail2019Mode(context);
  if (!ran.ok()) return fail(ran);
  json.endObject();

  if (!jsonPath.empty()) {
    absl::Status written = ir::writeFileAtomically(std::string(jsonPath), json.text() + "\n");
    if (!written.ok()) return fail(written);
  }
  if (!context.compareStatus.ok()) return fail(context.compareStatus);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "roformer-run: run an ONNX model with the roformer-opt runtime and report latency, "
      "throughput, accuracy and differences from a reference\n");
  ir::registerContribSchemas();
  // An allocation larger than memory (a huge --batch, a model that does not
  // fit) ends with a message and exit code 1, not an abort.
  try {
    return runMain();
  } catch (const std::bad_alloc&) {
    std::cerr << "roformer-run: error: out of memory; try a smaller --batch or --seq-len\n";
    return 1;
  }
}
