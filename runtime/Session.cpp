#include "runtime/Session.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/match.h"
#include "ir/ModelIO.h"

namespace roformer::runtime {

// Everything one run writes, reused by later runs once it is back in the pool.
struct Session::ExecutionContext {
  DeviceBuffer arena;
  std::unique_ptr<ThreadPool> threads;
  // Per slot: where its tensor is in this run.
  std::vector<TensorView> views;
  // Per slot: buffers allocated one by one when no plan applies, and graph
  // outputs written straight into tensors the caller receives.
  std::vector<DeviceBuffer> buffers;
  std::vector<HostTensor> ownOutputs;
  // Per step: the views handed to its kernel, kept to reuse their storage.
  std::vector<std::vector<TensorView>> stepInputs;
  std::vector<std::vector<TensorView>> stepOutputs;
  // Per step: nanoseconds of the current run, when profiling.
  std::vector<int64_t> stepNanoseconds;

  // Per input-shape signature: the run recorded in this context (on
  // backends that record runs) and what replaying it needs.
  struct Recording {
    // The plan and arena the recorded work writes to.
    std::shared_ptr<const MemoryPlan> plan;
    const void* arena = nullptr;
    bool unrecordable = false;
    std::shared_ptr<RecordedRun> run;
    // Per graph output: its view at the end of the recorded run.
    std::vector<TensorView> outputViews;
    uint64_t lastUsed = 0;
  };
  std::map<std::vector<int64_t>, Recording> recordings;
  uint64_t recordingClock = 0;
};

namespace {

std::string typeName(DataType type) { return std::string(ir::dataTypeName(type)); }

// Returns the multi-dimensional index of element `flat` of `shape`, "[0, 7]".
std::string elementIndex(int64_t flat, const Shape& shape) {
  std::vector<int64_t> index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] > 0) {
      index[d] = flat % shape[d];
      flat /= shape[d];
    }
  }
  return absl::StrCat("[", absl::StrJoin(index, ", "), "]");
}

// Reads element `i` of a numeric tensor as double; nullopt for other types.
std::optional<double> elementAsDouble(const HostTensor& tensor, int64_t i) {
  const void* data = tensor.rawData();
  switch (tensor.type()) {
    case DataType::kFloat:
      return static_cast<const float*>(data)[i];
    case DataType::kDouble:
      return static_cast<const double*>(data)[i];
    case DataType::kFloat16:
      return ir::halfBitsToFloat(static_cast<const uint16_t*>(data)[i]);
    case DataType::kBfloat16:
      return ir::bfloat16BitsToFloat(static_cast<const uint16_t*>(data)[i]);
    case DataType::kInt8:
      return static_cast<const int8_t*>(data)[i];
    case DataType::kUint8:
      return static_cast<const uint8_t*>(data)[i];
    case DataType::kInt16:
      return static_cast<const int16_t*>(data)[i];
    case DataType::kUint16:
      return static_cast<const uint16_t*>(data)[i];
    case DataType::kInt32:
      return static_cast<const int32_t*>(data)[i];
    case DataType::kUint32:
      return static_cast<const uint32_t*>(data)[i];
    case DataType::kInt64:
      return static_cast<double>(static_cast<const int64_t*>(data)[i]);
    case DataType::kUint64:
      return static_cast<double>(static_cast<const uint64_t*>(data)[i]);
    default:
      return std::nullopt;
  }
}

// Checks that every element of an id input is a non-negative integer inside
// the table it indexes. Integers wider than 53 bits compare exactly through
// the int64 path.
absl::Status checkIds(const TensorInfo& info, const HostTensor& tensor) {
  const IdUse& use = *info.idUse;
  std::string tableNote =
      use.tableRows ? absl::StrCat(", outside the table of ", *use.tableRows,
                                   " rows that Gather '", use.gatherNode, "' reads; ids must be "
                                   "in [0, ", *use.tableRows, ")")
                    : "";
  auto failure = [&](int64_t i, std::string value, const std::string& problem) {
    return absl::InvalidArgumentError(absl::StrCat("input '", info.name, "': element ",
                                                   elementIndex(i, tensor.shape()), " is ",
                                                   value, problem));
  };
  const int64_t count = tensor.elementCount();
  if (tensor.type() == DataType::kInt64 || tensor.type() == DataType::kUint64) {
    bool isUnsigned = tensor.type() == DataType::kUint64;
    for (int64_t i = 0; i < count; ++i) {
      if (isUnsigned) {
        uint64_t id = tensor.data<uint64_t>()[i];
        if (use.tableRows && id >= static_cast<uint64_t>(*use.tableRows)) {
          return failure(i, std::to_string(id), tableNote);
        }
        continue;
      }
      int64_t id = tensor.data<int64_t>()[i];
      if (id < 0) return failure(i, std::to_string(id), ", a negative id");
      if (use.tableRows && id >= *use.tableRows) return failure(i, std::to_string(id), tableNote);
    }
    return absl::OkStatus();
  }
  for (int64_t i = 0; i < count; ++i) {
    std::optional<double> value = elementAsDouble(tensor, i);
    if (!value) {
      return absl::InvalidArgumentError(absl::StrCat("input '", info.name, "' has type ",
                                                     typeName(tensor.type()),
                                                     ", which cannot hold ids"));
    }
    double id = *value;
    if (!std::isfinite(id)) {
      return failure(i, absl::StrCat(id), "; ids must be finite integers");
    }
    if (id != std::floor(id)) {
      return failure(i, absl::StrCat(id), ", not an integer; ids must be whole numbers");
    }
    if (id < 0) return failure(i, absl::StrCat(id), ", a negative id");
    if (use.tableRows && id >= static_cast<double>(*use.tableRows)) {
      return failure(i, absl::StrCat(id), tableNote);
    }
  }
  return absl::OkStatus();
}

// Allocates a 64-byte aligned host tensor.
HostTensor allocateHostTensor(DataType type, const Shape& shape) {
  size_t bytes = static_cast<size_t>(shapeElementCount(shape)) * ir::dataTypeSize(type);
  size_t rounded = std::max<size_t>(
      kBufferAlignment, (bytes + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment);
  void* data = std::aligned_alloc(kBufferAlignment, rounded);
  if (data == nullptr) return HostTensor();
  return HostTensor(type, shape, std::shared_ptr<void>(data, [](void* p) { std::free(p); }), data);
}

absl::Status annotate(const Step& step, const absl::Status& status) {
  if (absl::StartsWith(status.message(), step.description)) return status;
  return absl::Status(status.code(), absl::StrCat(step.description, ": ", status.message()));
}

std::vector<int64_t> signatureOf(const std::vector<const HostTensor*>& inputs) {
  std::vector<int64_t> signature;
  for (const HostTensor* input : inputs) {
    signature.push_back(static_cast<int64_t>(input->type()));
    signature.push_back(static_cast<int64_t>(input->shape().size()));
    signature.insert(signature.end(), input->shape().begin(), input->shape().end());
  }
  return signature;
}

std::string describeInput(const TensorInfo& info) {
  return absl::StrCat("'", info.name, "' (", typeName(info.type), " ", describeDims(info.dims),
                      ")");
}

}  // namespace

Session::~Session() = default;

absl::StatusOr<std::unique_ptr<Session>> Session::create(const ir::Model& model,
                                                         const SessionOptions& options) {
  auto session = std::unique_ptr<Session>(new Session);
  session->options_ = options;
  if (options.backend) {
    session->backend_ = options.backend;
  } else {
    BackendOptions backendOptions;
    backendOptions.threads = options.threads;
    backendOptions.precision = options.precision;
    absl::StatusOr<std::shared_ptr<Backend>> backend =
        createBackend(options.device, backendOptions);
    if (!backend.ok()) return backend.status();
    session->backend_ = std::move(*backend);
  }
  absl::StatusOr<std::unique_ptr<Schedule>> schedule = Schedule::build(model, *session->backend_);
  if (!schedule.ok()) return schedule.status();
  session->schedule_ = std::move(*schedule);
  return session;
}

absl::StatusOr<std::unique_ptr<Session>> Session::create(std::shared_ptr<const ir::Model> model,
                                                         const SessionOptions& options) {
  absl::StatusOr<std::unique_ptr<Session>> session = create(*model, options);
  if (session.ok()) (*session)->ownedModel_ = std::move(model);
  return session;
}

absl::StatusOr<std::unique_ptr<Session>> Session::createFromFile(const std::string& path,
                                                                 const SessionOptions& options) {
  absl::StatusOr<std::unique_ptr<ir::Model>> model = ir::loadModel(path);
  if (!model.ok()) return model.status();
  return create(std::shared_ptr<const ir::Model>(std::move(*model)), options);
}

SessionStats Session::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  SessionStats stats = stats_;
  stats.cachedPlans = plans_.size();
  return stats;
}

std::vector<StepProfile> Session::profile() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<StepProfile> steps;
  if (profiledRuns_ == 0) return steps;
  for (size_t s = 0; s < profileNanoseconds_.size(); ++s) {
    const Step& step = schedule_->steps()[s];
    double mean = static_cast<double>(profileNanoseconds_[s]) / 1e6 /
                  static_cast<double>(profiledRuns_);
    steps.push_back(StepProfile{step.description, step.opType, mean});
  }
  return steps;
}

size_t Session::profiledRuns() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return profiledRuns_;
}

void Session::resetProfile() const {
  std::lock_guard<std::mutex> lock(mutex_);
  profileNanoseconds_.clear();
  profiledRuns_ = 0;
}

absl::StatusOr<std::map<std::string, HostTensor>> Session::run(
    const std::map<std::string, HostTensor>& inputs) const {
  const std::vector<TensorInfo>& infos = this->inputs();
  std::vector<const HostTensor*> ordered(infos.size(), nullptr);
  for (const auto& [name, tensor] : inputs) {
    auto it = std::find_if(infos.begin(), infos.end(),
                           [&](const TensorInfo& info) { return info.name == name; });
    if (it == infos.end()) {
      std::vector<std::string> names;
      for (const TensorInfo& info : infos) names.push_back(absl::StrCat("'", info.name, "'"));
      return absl::InvalidArgumentError(absl::StrCat("'", name, "' is not an input of the model; "
                                                     "its inputs are ",
                                                     absl::StrJoin(names, ", ")));
    }
    ordered[it - infos.begin()] = &tensor;
  }
  for (size_t i = 0; i < infos.size(); ++i) {
    if (ordered[i] == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing input ", describeInput(infos[i])));
    }
  }
  absl::Status valid = validateInputs(ordered);
  if (!valid.ok()) return valid;
  absl::StatusOr<std::vector<HostTensor>> outputs = execute(ordered);
  if (!outputs.ok()) return outputs.status();
  std::map<std::string, HostTensor> named;
  for (size_t i = 0; i < outputs->size(); ++i) {
    named.emplace(this->outputs()[i].name, std::move((*outputs)[i]));
  }
  return named;
}

absl::StatusOr<std::vector<HostTensor>> Session::runOrdered(
    const std::vector<HostTensor>& inputs) const {
  const std::vector<TensorInfo>& infos = this->inputs();
  if (inputs.size() != infos.size()) {
    std::vector<std::string> names;
    for (const TensorInfo& info : infos) names.push_back(describeInput(info));
    return absl::InvalidArgumentError(absl::StrCat("expected ", infos.size(), " inputs (",
                                                   absl::StrJoin(names, ", "), "), got ",
                                                   inputs.size()));
  }
  std::vector<const HostTensor*> ordered;
  for (const HostTensor& input : inputs) ordered.push_back(&input);
  absl::Status valid = validateInputs(ordered);
  if (!valid.ok()) return valid;
  return execute(ordered);
}

absl::Status Session::validateInputs(const std::vector<const HostTensor*>& inputs) const {
  // Symbol -> (size, where it was set), so inputs sharing a symbol agree.
  std::map<std::string, std::pair<int64_t, std::string>> symbols;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorInfo& info = this->inputs()[i];
    const HostTensor& tensor = *inputs[i];
    std::string where = absl::StrCat("input '", info.name, "'");
    if (tensor.type() == DataType::kUndefined) {
      return absl::InvalidArgumentError(absl::StrCat(where, " is an empty tensor with no type"));
    }
    if (info.type != DataType::kUndefined && tensor.type() != info.type) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " has type ", typeName(tensor.type()), " but the model declares ",
                       typeName(info.type), "; convert the data to ", typeName(info.type)));
    }
    const Shape& shape = tensor.shape();
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, " has shape ", shapeToString(shape), ": dim ", d, " is ", shape[d],
            ", but every dim must be at least 1"));
      }
    }
    if (tensor.byteSize() > 0 && tensor.rawData() == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(where, " has a shape but no data"));
    }
    if (info.dims) {
      const std::vector<ir::Dim>& dims = *info.dims;
      if (dims.size() != shape.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, " has shape ", shapeToString(shape), " of rank ", shape.size(),
                         " but the model declares rank ", dims.size(), " ",
                         describeDims(info.dims)));
      }
      for (size_t d = 0; d < dims.size(); ++d) {
        if (dims[d].value && *dims[d].value != shape[d]) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, " has shape ", shapeToString(shape), " but the model declares ",
              describeDims(info.dims), ": dim ", d, " must be ", *dims[d].value));
        }
        if (dims[d].value || dims[d].symbol.empty()) continue;
        std::string here = absl::StrCat("dim ", d, " of input '", info.name, "'");
        auto [it, inserted] = symbols.emplace(dims[d].symbol, std::make_pair(shape[d], here));
        if (!inserted && it->second.first != shape[d]) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, " has shape ", shapeToString(shape), ": dim ", d, " ('", dims[d].symbol,
              "') is ", shape[d], " but ", it->second.second, " sets '", dims[d].symbol,
              "' to ", it->second.first));
        }
      }
    }
    bool fixedBatch = info.dims && !info.dims->empty() && (*info.dims)[0].value.has_value();
    if (options_.maxBatch > 0 && !shape.empty() && !fixedBatch && shape[0] > options_.maxBatch) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " has batch size ", shape[0], " (dim 0), more than the session's ",
                       "maximum of ", options_.maxBatch, "; split it into smaller batches"));
    }
    if (options_.validateIds && info.idUse) {
      absl::Status ids = checkIds(info, tensor);
      if (!ids.ok()) return ids;
    }
  }
  return absl::OkStatus();
}

std::shared_ptr<const MemoryPlan> Session::findPlan(const std::vector<int64_t>& signature) const {
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.runs;
  auto it = plans_.find(signature);
  if (it == plans_.end()) return nullptr;
  it->second.lastUsed = ++planClock_;
  return it->second.plan;
}

void Session::storePlan(const std::vector<int64_t>& signature,
                        std::shared_ptr<const MemoryPlan> plan) const {
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.plansBuilt;
  stats_.arenaBytes = plan->arenaBytes;
  stats_.unsharedBytes = plan->unsharedBytes;
  stats_.inPlaceSteps = plan->inPlaceSteps;
  plans_[signature] = PlanEntry{std::move(plan), ++planClock_};
  size_t limit = std::max<size_t>(options_.maxCachedPlans, 1);
  while (plans_.size() > limit) {
    auto oldest = std::min_element(plans_.begin(), plans_.end(), [](const auto& a, const auto& b) {
      return a.second.lastUsed < b.second.lastUsed;
    });
    plans_.erase(oldest);
  }
}

std::unique_ptr<Session::ExecutionContext> Session::acquireContext() const {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!idleContexts_.empty()) {
      std::unique_ptr<ExecutionContext> context = std::move(idleContexts_.back());
      idleContexts_.pop_back();
      return context;
    }
  }
  auto context = std::make_unique<ExecutionContext>();
  const std::vector<Slot>& slots = schedule_->slots();
  context->threads = backend_->createThreadPool();
  context->views.resize(slots.size());
  context->buffers.resize(slots.size());
  context->ownOutputs.resize(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].kind == SlotKind::kConstant) context->views[i] = slots[i].constantView;
  }
  for (const Step& step : schedule_->steps()) {
    context->stepInputs.emplace_back(step.inputSlots.size());
    context->stepOutputs.emplace_back(step.outputSlots.size());
  }
  context->stepNanoseconds.assign(schedule_->steps().size(), 0);
  return context;
}

void Session::releaseContext(std::unique_ptr<ExecutionContext> context) const {
  // Drop this run's separate buffers and output references; keep the arena.
  for (DeviceBuffer& buffer : context->buffers) buffer = DeviceBuffer{};
  for (HostTensor& output : context->ownOutputs) output = HostTensor();
  std::lock_guard<std::mutex> lock(mutex_);
  idleContexts_.push_back(std::move(context));
}

absl::StatusOr<std::vector<HostTensor>> Session::execute(
    const std::vector<const HostTensor*>& inputs) const {
  std::vector<int64_t> signature = signatureOf(inputs);
  std::shared_ptr<const MemoryPlan> plan = findPlan(signature);
  std::unique_ptr<ExecutionContext> context = acquireContext();
  struct Release {
    const Session* session;
    std::unique_ptr<ExecutionContext>& context;
    ~Release() { session->releaseContext(std::move(context)); }
  } release{this, context};

  Backend& backend = *backend_;
  const bool hostMemory = backend.usesHostMemory();
  const std::vector<Slot>& slots = schedule_->slots();
  std::vector<TensorView>& views = context->views;

  if (plan && context->arena.size < plan->arenaBytes) {
    // Recorded runs write to the old arena.
    context->recordings.clear();
    context->arena = DeviceBuffer{};
    absl::StatusOr<DeviceBuffer> arena = backend.allocate(plan->arenaBytes);
    if (!arena.ok()) return arena.status();
    context->arena = std::move(*arena);
  }
  auto* arenaBase = static_cast<uint8_t*>(context->arena.data);
  bool planned = plan != nullptr;

  // A separately allocated device buffer for slot `slot`.
  auto allocateSlot = [&](int slot, size_t bytes) -> absl::StatusOr<void*> {
    absl::StatusOr<DeviceBuffer> buffer = backend.allocate(bytes);
    if (!buffer.ok()) return buffer.status();
    context->buffers[slot] = std::move(*buffer);
    return context->buffers[slot].data;
  };

  // ---- Inputs ----
  for (size_t i = 0; i < inputs.size(); ++i) {
    int slot = schedule_->inputSlots()[i];
    const HostTensor& input = *inputs[i];
    TensorView& view = views[slot];
    view.type = input.type();
    view.shape = input.shape();
    if (hostMemory) {
      view.data = input.rawData();
      continue;
    }
    if (planned) {
      view.data = arenaBase + plan->slots[slot].offset;
    } else {
      absl::StatusOr<void*> data = allocateSlot(slot, input.byteSize());
      if (!data.ok()) return data.status();
      view.data = *data;
    }
    absl::Status copied = backend.copyToDevice(view.data, input.rawData(), input.byteSize());
    if (!copied.ok()) return copied;
  }

  // ---- Recording ----
  ExecutionContext::Recording* recording = nullptr;
  if (planned && !hostMemory && options_.recordRuns && !options_.profile && backend.canRecord()) {
    recording = &context->recordings[signature];
    if (recording->plan != plan || recording->arena != arenaBase) {
      *recording = ExecutionContext::Recording{};
      recording->plan = plan;
      recording->arena = arenaBase;
    }
    recording->lastUsed = ++context->recordingClock;
    const size_t limit = std::max<size_t>(options_.maxCachedPlans, 1);
    while (context->recordings.size() > limit) {
      auto oldest = std::min_element(
          context->recordings.begin(), context->recordings.end(),
          [](const auto& a, const auto& b) { return a.second.lastUsed < b.second.lastUsed; });
      context->recordings.erase(oldest);
    }
  }

  // ---- Steps ----
  bool mismatch = false;
  const std::vector<Step>& steps = schedule_->steps();
  // Runs every step. While the backend records, a step whose output shapes
  // differ from the plan ends the run with an error instead, because a
  // recording cannot allocate separate buffers.
  auto runSteps = [&](bool recordingRun) -> absl::Status {
    for (size_t s = 0; s < steps.size(); ++s) {
      const Step& step = steps[s];
      std::vector<TensorView>& stepInputs = context->stepInputs[s];
      std::vector<TensorView>& stepOutputs = context->stepOutputs[s];
      for (size_t j = 0; j < step.inputSlots.size(); ++j) stepInputs[j] = views[step.inputSlots[j]];
      for (TensorView& output : stepOutputs) {
        output.type = DataType::kUndefined;
        output.shape.clear();
        output.data = nullptr;
      }
      KernelContext kernelContext{stepInputs, stepOutputs, context->threads.get()};
      std::chrono::steady_clock::time_point stepStart;
      if (options_.profile) stepStart = std::chrono::steady_clock::now();
      if (absl::Status inferred = step.kernel->inferOutputs(kernelContext); !inferred.ok()) {
        return annotate(step, inferred);
      }

      if (planned) {
        for (size_t j = 0; j < stepOutputs.size(); ++j) {
          const SlotLayout& layout = plan->slots[step.outputSlots[j]];
          if (stepOutputs[j].type != layout.type || stepOutputs[j].shape != layout.shape) {
            if (recordingRun) {
              return absl::FailedPreconditionError(
                  absl::StrCat(step.description, ": output ", j,
                               " has a shape that depends on input values"));
            }
            // Shapes here depend on input values, not only input shapes:
            // finish this run with separate buffers and replace the plan
            // afterwards.
            planned = false;
            mismatch = true;
            break;
          }
        }
      }

      for (size_t j = 0; j < stepOutputs.size(); ++j) {
        int slot = step.outputSlots[j];
        TensorView& output = stepOutputs[j];
        for (int64_t dim : output.shape) {
          if (dim < 0) {
            return absl::InternalError(absl::StrCat(step.description,
                                                    ": the kernel inferred shape ",
                                                    shapeToString(output.shape), " for output ", j));
          }
        }
        std::optional<int64_t> checkedBytes = ir::checkedByteSize(output.type, output.shape);
        if (!checkedBytes) {
          return absl::ResourceExhaustedError(
              absl::StrCat(step.description, ": output ", j, " would have shape ",
                           shapeToString(output.shape), ", whose size does not fit in 64 bits"));
        }
        size_t bytes = static_cast<size_t>(*checkedBytes);
        if (slots[slot].kind == SlotKind::kOmitted) {
          output.data = nullptr;
        } else if (hostMemory && slots[slot].isGraphOutput()) {
          HostTensor tensor = allocateHostTensor(output.type, output.shape);
          if (tensor.empty() && output.type != DataType::kUndefined) {
            return absl::ResourceExhaustedError(absl::StrCat(
                "failed to allocate ", bytes, " bytes for output '", slots[slot].name, "'"));
          }
          output.data = tensor.rawData();
          context->ownOutputs[slot] = std::move(tensor);
        } else if (planned) {
          output.data = arenaBase + plan->slots[slot].offset;
        } else {
          absl::StatusOr<void*> data = allocateSlot(slot, bytes);
          if (!data.ok()) return data.status();
          output.data = *data;
        }
      }

      if (absl::Status computed = step.kernel->compute(kernelContext); !computed.ok()) {
        return annotate(step, computed);
      }
      if (options_.profile) {
        context->stepNanoseconds[s] = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now() - stepStart)
                                          .count();
      }
      for (size_t j = 0; j < stepOutputs.size(); ++j) views[step.outputSlots[j]] = stepOutputs[j];
      for (int dead : schedule_->slotsDyingAfter(s)) context->buffers[dead] = DeviceBuffer{};
    }
    return absl::OkStatus();
  };

  const std::vector<int>& outputSlots = schedule_->outputSlots();
  bool done = false;
  if (recording != nullptr && recording->run != nullptr) {
    absl::StatusOr<bool> replayed = backend.replay(*recording->run);
    if (!replayed.ok()) return replayed.status();
    if (*replayed) {
      for (size_t i = 0; i < outputSlots.size(); ++i) {
        views[outputSlots[i]] = recording->outputViews[i];
      }
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.replayedRuns;
      done = true;
    } else {
      // Recorded from another thread: record again from this one.
      recording->run.reset();
    }
  }

  if (!done && recording != nullptr && !recording->unrecordable) {
    // Record this run, then run what was recorded.
    absl::Status status = backend.beginRecording();
    if (status.ok()) {
      status = runSteps(/*recordingRun=*/true);
      if (status.ok()) {
        std::vector<TensorView> outputViews;
        for (int slot : outputSlots) outputViews.push_back(views[slot]);
        absl::StatusOr<std::shared_ptr<RecordedRun>> run = backend.endRecording(outputViews);
        status = run.status();
        if (run.ok()) {
          absl::StatusOr<bool> replayed = backend.replay(**run);
          if (!replayed.ok()) return replayed.status();
          if (*replayed) {
            recording->run = std::move(*run);
            recording->outputViews = std::move(outputViews);
            std::lock_guard<std::mutex> lock(mutex_);
            ++stats_.recordedRuns;
            done = true;
          } else {
            status = absl::InternalError("the backend declined to replay the run it recorded");
          }
        }
      } else {
        backend.abandonRecording();
      }
    }
    if (!done) {
      // Nothing recorded has run: run the steps one by one. When that works,
      // the failure was the recording's, so do not record this signature
      // again in this context.
      planned = true;
      mismatch = false;
      if (absl::Status eager = runSteps(/*recordingRun=*/false); !eager.ok()) return eager;
      recording->unrecordable = true;
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.unrecordable;
      stats_.unrecordableReason = std::string(status.message());
      done = true;
    }
  }

  if (!done) {
    if (absl::Status status = runSteps(/*recordingRun=*/false); !status.ok()) return status;
  }

  if (absl::Status synchronized = backend.synchronize(); !synchronized.ok()) return synchronized;
  if (options_.profile) {
    std::lock_guard<std::mutex> lock(mutex_);
    profileNanoseconds_.resize(steps.size(), 0);
    for (size_t s = 0; s < steps.size(); ++s) profileNanoseconds_[s] += context->stepNanoseconds[s];
    ++profiledRuns_;
  }

  if (!planned) {
    auto newPlan = std::make_shared<const MemoryPlan>(planMemory(*schedule_, views, hostMemory));
    storePlan(signature, std::move(newPlan));
    if (mismatch) {
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.planMismatches;
    }
  }

  // ---- Outputs ----
  std::vector<HostTensor> outputs;
  for (int slot : outputSlots) {
    const TensorView& view = views[slot];
    if (hostMemory && slots[slot].kind == SlotKind::kComputed) {
      outputs.push_back(context->ownOutputs[slot]);
      continue;
    }
    // Inputs and constants are copied, so the caller may modify the result.
    HostTensor copy;
    const size_t bytes = view.byteSize();
    if (std::shared_ptr<void> memory = backend.allocateHostMemory(bytes)) {
      void* data = memory.get();
      copy = HostTensor(view.type, view.shape, std::move(memory), data);
    } else {
      copy = allocateHostTensor(view.type, view.shape);
    }
    if (copy.empty()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("failed to allocate output '", slots[slot].name, "'"));
    }
    absl::Status copied = backend.copyToHost(copy.rawData(), view.data, bytes);
    if (!copied.ok()) return copied;
    outputs.push_back(std::move(copy));
  }
  return outputs;
}

}  // namespace roformer::runtime
