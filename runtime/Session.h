// Sessions: a model prepared to run on one backend.
//
//   auto session = Session::createFromFile("model.onnx", {.device = "cpu", .threads = 4});
//   if (!session.ok()) return session.status();
//   auto outputs = (*session)->run({{"input_token:0", tokens}, {"input_segment:0", segments}});
//
// Creating a session builds the schedule (topological order, one kernel per
// node, constant weights read in place from the model) and fails for any
// node the backend cannot run. Each run validates the inputs before any kernel
// runs, then executes with the memory plan cached for its input shapes. The
// first run of a shape signature allocates each intermediate on its own and
// records the shapes, and later runs place them in one arena. Every step checks
// the kernel's inferred output shapes against the plan and falls back to
// separate buffers (and a new plan) when they differ, as they can when shapes
// depend on input values.
//
// On a backend that records runs (the CUDA backend, as CUDA graphs), the
// first planned run of a signature in an execution context is recorded, and
// later runs of that signature replay it. A replay copies the inputs to the
// same addresses and calls no kernel, not even for shapes. A signature whose
// run needs the host between steps (a CPU fallback on device data, a device
// value read back to compute a shape) cannot be recorded. It runs step by
// step, and stats() gives the reason.
//
// run() may be called from several threads at once: each call takes its own
// execution context (arena, thread pool, tensor views) from a pool, and the
// plan cache is guarded by a mutex. Kernels are shared between calls, so
// they must keep no per-call state in compute().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/Graph.h"
#include "runtime/Backend.h"
#include "runtime/Planner.h"
#include "runtime/Tensor.h"

namespace roformer::runtime {

struct SessionOptions {
  // A backend name: "cpu", or "cuda" in builds with the CUDA backend.
  std::string device = "cpu";
  // Threads for kernels and matrix products; 0 uses every hardware thread.
  int threads = 0;
  Precision precision = Precision::kFp32;
  // Largest first dimension accepted for inputs whose declared first dim is
  // not a fixed number; 0 accepts any.
  int64_t maxBatch = 0;
  // Check that inputs used as Gather indices (token and segment ids) are
  // finite integers inside the table before running.
  bool validateIds = true;
  // Memory plans kept for distinct input-shape signatures; the least recently
  // used one is dropped beyond this.
  size_t maxCachedPlans = 16;
  // Time every step of every run (see Session::profile()). Profiled runs
  // are never recorded.
  bool profile = false;
  // On backends that record runs (CUDA graphs): record the first planned
  // run of each input-shape signature (its second run) and replay it for
  // later runs of that signature, so they skip every step's host work.
  bool recordRuns = true;
  // Runs on this backend instead of creating one for `device`.
  std::shared_ptr<Backend> backend;
};

// Counters for tests and reports.
struct SessionStats {
  size_t runs = 0;
  // Memory plans built, including replacements after a shape mismatch.
  size_t plansBuilt = 0;
  // Runs that found a cached plan whose shapes turned out not to match.
  size_t planMismatches = 0;
  size_t cachedPlans = 0;
  // Arena size of the most recently built plan, and what its buffers would
  // take without sharing.
  size_t arenaBytes = 0;
  size_t unsharedBytes = 0;
  size_t inPlaceSteps = 0;
  // Runs recorded for replay, and runs that replayed one.
  size_t recordedRuns = 0;
  size_t replayedRuns = 0;
  // Signatures that cannot be recorded, and the reason for the latest one
  // ("Einsum 'x': reads input 0 on the host, which cannot be recorded in a
  // CUDA graph").
  size_t unrecordable = 0;
  std::string unrecordableReason;
};

// Time spent in one step, averaged over the profiled runs.
struct StepProfile {
  std::string node;    // "OpType 'name'"
  std::string opType;  // "OpType" or "domain.OpType"
  double meanMilliseconds = 0;
};

class Session {
 public:
  // Prepares `model`. The session shares ownership of the constant tensors it
  // reads and keeps no pointer into the graph, so `model` may be destroyed
  // once this returns, provided the backend's kernels copy what they need
  // from their node (the CPU kernels do).
  static absl::StatusOr<std::unique_ptr<Session>> create(const ir::Model& model,
                                                         const SessionOptions& options);
  // Prepares `model` and keeps it alive for the session's lifetime.
  static absl::StatusOr<std::unique_ptr<Session>> create(std::shared_ptr<const ir::Model> model,
                                                         const SessionOptions& options);
  // Loads an .onnx (or text-format) file and prepares it.
  static absl::StatusOr<std::unique_ptr<Session>> createFromFile(const std::string& path,
                                                                 const SessionOptions& options);
  ~Session();

  // Graph inputs the caller provides (initializers listed as inputs are not
  // among them) and graph outputs, in graph order.
  const std::vector<TensorInfo>& inputs() const { return schedule_->inputInfo(); }
  const std::vector<TensorInfo>& outputs() const { return schedule_->outputInfo(); }
  const Backend& backend() const { return *backend_; }
  // Nodes the session runs (those some output depends on).
  size_t stepCount() const { return schedule_->steps().size(); }

  // Runs with inputs keyed by name; returns every graph output keyed by name.
  absl::StatusOr<std::map<std::string, HostTensor>> run(
      const std::map<std::string, HostTensor>& inputs) const;
  // Runs with inputs in the order of inputs(); returns outputs in the order of
  // outputs().
  absl::StatusOr<std::vector<HostTensor>> runOrdered(const std::vector<HostTensor>& inputs) const;

  SessionStats stats() const;

  // Per-step times (inferOutputs and compute) averaged over the runs since
  // creation or the last resetProfile(), in schedule order. Empty when
  // SessionOptions::profile is off or no run has finished since.
  std::vector<StepProfile> profile() const;
  size_t profiledRuns() const;
  void resetProfile() const;

 private:
  struct ExecutionContext;
  struct PlanEntry {
    std::shared_ptr<const MemoryPlan> plan;
    uint64_t lastUsed = 0;
  };

  Session() = default;
  absl::Status validateInputs(const std::vector<const HostTensor*>& inputs) const;
  absl::StatusOr<std::vector<HostTensor>> execute(const std::vector<const HostTensor*>& inputs)
      const;
  std::shared_ptr<const MemoryPlan> findPlan(const std::vector<int64_t>& signature) const;
  void storePlan(const std::vector<int64_t>& signature,
                 std::shared_ptr<const MemoryPlan> plan) const;
  std::unique_ptr<ExecutionContext> acquireContext() const;
  void releaseContext(std::unique_ptr<ExecutionContext> context) const;

  SessionOptions options_;
  std::shared_ptr<const ir::Model> ownedModel_;
  std::shared_ptr<Backend> backend_;
  std::unique_ptr<Schedule> schedule_;

  mutable std::mutex mutex_;
  mutable std::map<std::vector<int64_t>, PlanEntry> plans_;
  mutable uint64_t planClock_ = 0;
  mutable std::vector<std::unique_ptr<ExecutionContext>> idleContexts_;
  mutable SessionStats stats_;
  mutable std::vector<int64_t> profileNanoseconds_;
  mutable size_t profiledRuns_ = 0;
};

}  // namespace roformer::runtime
