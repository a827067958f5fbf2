#include "runtime/Planner.h"

#include <algorithm>
#include <deque>
#include <numeric>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace roformer::runtime {
namespace {

// Most unsupported nodes listed in one load error; the rest are counted.
constexpr size_t kMaxListedNodeErrors = 20;

size_t alignUp(size_t bytes) {
  return (bytes + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment;
}

std::string domainName(const std::string& domain) {
  return domain.empty() ? "ai.onnx" : domain;
}

// Ops through which a graph input keeps its values (only their arrangement
// changes), so ids stay ids on the other side.
bool preservesValues(const ir::Node& node) {
  static const char* const kOps[] = {"Identity", "Reshape", "Squeeze",  "Unsqueeze",
                                     "Flatten",  "Transpose", "Expand"};
  if (!node.domain().empty()) return false;
  return std::any_of(std::begin(kOps), std::end(kOps),
                     [&](const char* op) { return node.opType() == op; });
}

// Follows `input` through value-preserving ops and Casts to the Gathers that
// use it as indices.
std::optional<IdUse> findIdUse(const ir::Value* input) {
  bool inputIsFloat = ir::isFloatingPoint(input->elemType());
  struct Item {
    const ir::Value* value;
    bool castToInteger;
  };
  std::deque<Item> queue{{input, false}};
  std::unordered_set<const ir::Value*> visited{input};
  std::optional<IdUse> found;

  while (!queue.empty()) {
    Item item = queue.front();
    queue.pop_front();
    for (const ir::Use& use : item.value->uses()) {
      const ir::Node* node = use.user;
      const ir::Value* next = nullptr;
      bool castToInteger = item.castToInteger;
      if (node->is("Gather") && use.inputIndex == 1) {
        if (inputIsFloat && !item.castToInteger) continue;
        if (!found) found = IdUse{inputIsFloat, std::nullopt, node->name()};
        std::shared_ptr<ir::Tensor> table = ir::constantOf(node->input(0));
        absl::StatusOr<int64_t> axis = node->intAttribute("axis", 0);
        if (table && axis.ok() && table->rank() > 0) {
          int64_t normalized = *axis < 0 ? *axis + table->rank() : *axis;
          if (normalized >= 0 && normalized < table->rank()) {
            int64_t rows = table->dims()[normalized];
            if (!found->tableRows || rows < *found->tableRows) {
              found->tableRows = rows;
              found->gatherNode = node->name();
            }
          }
        }
        continue;
      }
      if (node->is("Cast") && use.inputIndex == 0) {
        absl::StatusOr<int64_t> to = node->intAttribute("to", 0);
        if (!to.ok() || !ir::isInteger(static_cast<DataType>(*to))) continue;
        castToInteger = true;
        next = node->output(0);
      } else if (use.inputIndex == 0 && preservesValues(*node)) {
        next = node->output(0);
      }
      if (next != nullptr && visited.insert(next).second) queue.push_back({next, castToInteger});
    }
  }
  return found;
}

TensorInfo describeValue(const ir::Value* value) {
  return TensorInfo{value->name(), value->elemType(), value->shape(), std::nullopt};
}

}  // namespace

std::string describeDims(const std::optional<std::vector<ir::Dim>>& dims) {
  if (!dims) return "[unknown rank]";
  std::vector<std::string> parts;
  for (const ir::Dim& dim : *dims) {
    if (dim.value) {
      parts.push_back(std::to_string(*dim.value));
    } else if (!dim.symbol.empty()) {
      parts.push_back(dim.symbol);
    } else {
      parts.push_back("?");
    }
  }
  return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
}

absl::StatusOr<std::unique_ptr<Schedule>> Schedule::build(const ir::Model& model,
                                                          Backend& backend) {
  const ir::Graph& graph = model.graph();
  auto schedule = std::unique_ptr<Schedule>(new Schedule);

  // ---- Nodes that some graph output depends on ----
  auto isConstant = [](const ir::Value* value) { return ir::constantOf(value) != nullptr; };
  std::unordered_map<const ir::Node*, size_t> nodeOrder;
  for (const auto& node : graph.nodes()) nodeOrder.emplace(node.get(), nodeOrder.size());

  std::unordered_set<const ir::Node*> needed;
  std::vector<const ir::Node*> stack;
  auto require = [&](const ir::Value* value) {
    if (value == nullptr || isConstant(value)) return;
    const ir::Node* producer = value->producer();
    if (producer != nullptr && needed.insert(producer).second) stack.push_back(producer);
  };
  for (const ir::Value* output : graph.outputs()) require(output);
  while (!stack.empty()) {
    const ir::Node* node = stack.back();
    stack.pop_back();
    for (const ir::Value* input : node->inputs()) require(input);
    for (const ir::Value* input : node->implicitInputs()) require(input);
  }

  // ---- Topological order, keeping the file order among ready nodes ----
  std::unordered_map<const ir::Node*, int> pendingProducers;
  std::unordered_map<const ir::Node*, std::vector<const ir::Node*>> consumers;
  for (const ir::Node* node : needed) {
    std::unordered_set<const ir::Node*> producers;
    auto addProducer = [&](const ir::Value* value) {
      if (value == nullptr || isConstant(value) || value->producer() == nullptr) return;
      if (producers.insert(value->producer()).second) consumers[value->producer()].push_back(node);
    };
    for (const ir::Value* input : node->inputs()) addProducer(input);
    for (const ir::Value* input : node->implicitInputs()) addProducer(input);
    pendingProducers[node] = static_cast<int>(producers.size());
  }
  auto later = [&](const ir::Node* a, const ir::Node* b) { return nodeOrder[a] > nodeOrder[b]; };
  std::priority_queue<const ir::Node*, std::vector<const ir::Node*>, decltype(later)> ready(later);
  for (const ir::Node* node : needed) {
    if (pendingProducers[node] == 0) ready.push(node);
  }
  std::vector<const ir::Node*> order;
  while (!ready.empty()) {
    const ir::Node* node = ready.top();
    ready.pop();
    order.push_back(node);
    for (const ir::Node* consumer : consumers[node]) {
      if (--pendingProducers[consumer] == 0) ready.push(consumer);
    }
  }
  if (order.size() != needed.size()) {
    for (const ir::Node* node : needed) {
      if (pendingProducers[node] > 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("the graph has a cycle through node ", node->describe()));
      }
    }
  }

  // ---- Slots ----
  std::unordered_map<const ir::Value*, int> slotOf;
  int omittedSlot = -1;
  auto newSlot = [&](std::string name, SlotKind kind) {
    Slot slot;
    slot.name = std::move(name);
    slot.kind = kind;
    schedule->slots_.push_back(std::move(slot));
    return static_cast<int>(schedule->slots_.size() - 1);
  };
  for (const ir::Value* input : graph.inputs()) {
    if (input->isInitializer()) continue;  // a constant with a default, not a caller input
    int slot = newSlot(input->name(), SlotKind::kGraphInput);
    schedule->slots_[slot].inputIndex = static_cast<int>(schedule->inputSlots_.size());
    schedule->inputSlots_.push_back(slot);
    slotOf[input] = slot;
    TensorInfo info = describeValue(input);
    info.idUse = findIdUse(input);
    schedule->inputInfo_.push_back(std::move(info));
  }

  auto constantSlot = [&](const ir::Value* value) -> absl::StatusOr<int> {
    std::shared_ptr<ir::Tensor> tensor = ir::constantOf(value);
    if (tensor->dataType() == DataType::kString) {
      return absl::UnimplementedError(
          absl::StrCat("constant '", value->name(), "' is a string tensor, which the runtime "
                                                    "does not support"));
    }
    absl::StatusOr<DeviceBuffer> placed = backend.placeConstant(tensor);
    if (!placed.ok()) {
      return absl::Status(placed.status().code(),
                          absl::StrCat("failed to place constant '", value->name(),
                                       "' on the ", backend.name(), " device: ",
                                       placed.status().message()));
    }
    int slot = newSlot(value->name(), SlotKind::kConstant);
    Slot& constant = schedule->slots_[slot];
    constant.constantBuffer = *placed;
    constant.constantView = TensorView{tensor->dataType(), tensor->dims(), placed->data};
    slotOf[value] = slot;
    return slot;
  };

  auto slotForRead = [&](const ir::Value* value, const ir::Node* reader) -> absl::StatusOr<int> {
    if (value == nullptr || value->name().empty()) {
      if (omittedSlot < 0) omittedSlot = newSlot("", SlotKind::kOmitted);
      return omittedSlot;
    }
    if (auto it = slotOf.find(value); it != slotOf.end()) return it->second;
    if (isConstant(value)) return constantSlot(value);
    return absl::InvalidArgumentError(absl::StrCat(
        "value '", value->name(), "' read by ",
        reader ? "node " + reader->describe() : std::string("the graph outputs"),
        " is not computed by any node and is neither a graph input nor an initializer"));
  };

  // ---- Steps and kernels ----
  std::vector<std::string> nodeErrors;
  for (const ir::Node* node : order) {
    Step step;
    step.description = node->describe();
    step.opType = node->domain().empty() ? node->opType() : node->domain() + "." + node->opType();
    for (const ir::Value* input : node->inputs()) {
      absl::StatusOr<int> slot = slotForRead(input, node);
      if (!slot.ok()) return slot.status();
      step.inputSlots.push_back(*slot);
    }
    int stepIndex = static_cast<int>(schedule->steps_.size());
    for (const ir::Value* output : node->outputs()) {
      // An omitted optional output gets a slot with no buffer, and the kernel
      // sees null data for it, as in constant folding.
      bool omitted = output == nullptr || output->name().empty();
      int slot = newSlot(omitted ? "" : output->name(),
                         omitted ? SlotKind::kOmitted : SlotKind::kComputed);
      schedule->slots_[slot].producerStep = stepIndex;
      if (output != nullptr) slotOf[output] = slot;
      step.outputSlots.push_back(slot);
    }

    std::optional<int64_t> opset = model.opsetVersion(node->domain());
    if (!opset) {
      nodeErrors.push_back(absl::StrCat("node ", node->describe(), ": the model imports no opset ",
                                        "for domain '", domainName(node->domain()), "'"));
      schedule->steps_.push_back(std::move(step));
      continue;
    }
    const KernelFactory* factory =
        backend.kernels().find(node->domain(), node->opType(), static_cast<int>(*opset));
    if (factory == nullptr) {
      bool otherOpsets = backend.kernels().supports(node->domain(), node->opType());
      nodeErrors.push_back(absl::StrCat(
          "node ", node->describe(), ": no ", backend.name(), " kernel for op '",
          node->opType(), "' (domain '", domainName(node->domain()), "', opset ", *opset, ")",
          otherOpsets ? "; kernels exist only for other opset versions of this op" : ""));
    } else {
      absl::StatusOr<std::unique_ptr<Kernel>> kernel = (*factory)(*node);
      if (!kernel.ok()) {
        nodeErrors.push_back(absl::StrCat("node ", node->describe(), ": ",
                                          kernel.status().message()));
      } else {
        step.kernel = std::move(*kernel);
        step.canRunInPlace = step.kernel->canRunInPlace();
      }
    }
    schedule->steps_.push_back(std::move(step));
  }
  if (!nodeErrors.empty()) {
    size_t listed = std::min(nodeErrors.size(), kMaxListedNodeErrors);
    std::string message = absl::StrCat(
        nodeErrors.size(), " node(s) cannot run on the ", backend.name(), " backend:\n  ",
        absl::StrJoin(nodeErrors.begin(), nodeErrors.begin() + listed, "\n  "));
    if (listed < nodeErrors.size()) {
      absl::StrAppend(&message, "\n  ... and ", nodeErrors.size() - listed, " more");
    }
    return absl::UnimplementedError(message);
  }

  // ---- Graph outputs and lifetimes ----
  int stepCount = static_cast<int>(schedule->steps_.size());
  for (size_t i = 0; i < graph.outputs().size(); ++i) {
    const ir::Value* output = graph.outputs()[i];
    absl::StatusOr<int> slot = slotForRead(output, nullptr);
    if (!slot.ok()) return slot.status();
    schedule->outputSlots_.push_back(*slot);
    schedule->slots_[*slot].outputIndices.push_back(static_cast<int>(i));
    schedule->outputInfo_.push_back(describeValue(output));
  }
  for (int s = 0; s < stepCount; ++s) {
    for (int slot : schedule->steps_[s].inputSlots) schedule->slots_[slot].lastUseStep = s;
  }
  schedule->dyingAfter_.resize(stepCount);
  for (size_t i = 0; i < schedule->slots_.size(); ++i) {
    Slot& slot = schedule->slots_[i];
    if (slot.isGraphOutput()) {
      slot.lastUseStep = stepCount;
    } else if (slot.kind == SlotKind::kComputed) {
      int last = std::max(slot.lastUseStep, slot.producerStep);
      schedule->dyingAfter_[last].push_back(static_cast<int>(i));
    }
  }
  return schedule;
}

std::vector<size_t> assignArenaOffsets(const std::vector<BufferLifetime>& buffers,
                                       size_t& arenaBytes) {
  std::vector<size_t> order(buffers.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (buffers[a].bytes != buffers[b].bytes) return buffers[a].bytes > buffers[b].bytes;
    return buffers[a].firstStep < buffers[b].firstStep;
  });

  struct Placed {
    size_t offset;
    size_t end;
    int firstStep;
    int lastStep;
  };
  std::vector<Placed> placed;
  std::vector<size_t> offsets(buffers.size(), 0);
  arenaBytes = 0;
  for (size_t index : order) {
    const BufferLifetime& buffer = buffers[index];
    size_t bytes = alignUp(buffer.bytes);
    // An empty buffer needs no bytes, and placing it would split the gaps.
    if (bytes == 0) continue;
    std::vector<const Placed*> live;
    for (const Placed& other : placed) {
      if (other.firstStep <= buffer.lastStep && buffer.firstStep <= other.lastStep) {
        live.push_back(&other);
      }
    }
    std::sort(live.begin(), live.end(),
              [](const Placed* a, const Placed* b) { return a->offset < b->offset; });

    // Best fit: the smallest gap below or between live buffers that fits it.
    std::optional<size_t> bestOffset;
    size_t bestGap = 0;
    size_t cursor = 0;
    for (const Placed* other : live) {
      if (other->offset > cursor) {
        size_t gap = other->offset - cursor;
        if (gap >= bytes && (!bestOffset || gap < bestGap)) {
          bestOffset = cursor;
          bestGap = gap;
        }
      }
      cursor = std::max(cursor, other->end);
    }
    size_t offset = bestOffset.value_or(cursor);
    offsets[index] = offset;
    placed.push_back({offset, offset + bytes, buffer.firstStep, buffer.lastStep});
    arenaBytes = std::max(arenaBytes, offset + bytes);
  }
  return offsets;
}

MemoryPlan planMemory(const Schedule& schedule, const std::vector<TensorView>& slotViews,
                      bool hostMemory) {
  const std::vector<Slot>& slots = schedule.slots();
  const int stepCount = static_cast<int>(schedule.steps().size());
  MemoryPlan plan;
  plan.slots.resize(slots.size());

  // Lifetimes of arena-placed slots; buffer groups start as one slot each.
  std::vector<int> group(slots.size(), -1);
  std::vector<BufferLifetime> lifetimes;
  for (size_t i = 0; i < slots.size(); ++i) {
    const Slot& slot = slots[i];
    SlotLayout& layout = plan.slots[i];
    layout.type = slotViews[i].type;
    layout.shape = slotViews[i].shape;
    layout.bytes = layout.type == DataType::kUndefined ? 0 : slotViews[i].byteSize();
    switch (slot.kind) {
      case SlotKind::kOmitted:
        layout.placement = Placement::kNone;
        continue;
      case SlotKind::kConstant:
        layout.placement = Placement::kConstant;
        continue;
      case SlotKind::kGraphInput:
        layout.placement = hostMemory ? Placement::kCaller : Placement::kArena;
        break;
      case SlotKind::kComputed:
        layout.placement =
            hostMemory && slot.isGraphOutput() ? Placement::kOwnBuffer : Placement::kArena;
        break;
    }
    if (layout.placement != Placement::kArena) continue;
    int first = std::max(slot.producerStep, 0);
    int last = std::max(slot.lastUseStep, first);
    if (slot.isGraphOutput()) last = stepCount;
    group[i] = static_cast<int>(lifetimes.size());
    lifetimes.push_back({layout.bytes, first, last});
    plan.unsharedBytes += alignUp(layout.bytes);
  }

  // In place: the first output takes over the first input's buffer when that
  // input dies at this step, is read only once by it, and has the same size.
  for (int s = 0; s < stepCount; ++s) {
    const Step& step = schedule.steps()[s];
    if (!step.canRunInPlace || step.inputSlots.empty() || step.outputSlots.empty()) continue;
    int in = step.inputSlots[0];
    int out = step.outputSlots[0];
    if (group[in] < 0 || group[out] < 0) continue;
    if (slots[in].lastUseStep != s || slots[in].kind != SlotKind::kComputed) continue;
    if (std::count(step.inputSlots.begin(), step.inputSlots.end(), in) != 1) continue;
    if (plan.slots[in].bytes != plan.slots[out].bytes) continue;
    BufferLifetime& merged = lifetimes[group[in]];
    BufferLifetime& absorbed = lifetimes[group[out]];
    merged.lastStep = std::max(merged.lastStep, absorbed.lastStep);
    absorbed.bytes = 0;  // assignArenaOffsets places no empty buffer
    int oldGroup = group[out];
    for (int& g : group) {
      if (g == oldGroup) g = group[in];
    }
    ++plan.inPlaceSteps;
  }

  std::vector<size_t> offsets = assignArenaOffsets(lifetimes, plan.arenaBytes);
  for (size_t i = 0; i < slots.size(); ++i) {
    if (group[i] >= 0) plan.slots[i].offset = offsets[group[i]];
  }
  return plan;
}

}  // namespace roformer::runtime
