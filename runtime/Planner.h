// Planning a session: the schedule built once per model, and the memory plan
// built once per input-shape signature.
//
// The schedule is the model's nodes in topological order (only those some
// graph output depends on), one kernel per node, and one slot per value the
// nodes read or write. Constant slots point at the weights where the model
// keeps them. The memory plan gives every slot its type and shape for one set
// of input shapes, and every intermediate slot an offset in one arena.
// Buffers whose lifetimes do not overlap share bytes (greedy best-fit, see
// assignArenaOffsets). The first output of an in-place kernel takes the
// buffer of its first input when that input dies there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/Graph.h"
#include "runtime/Backend.h"
#include "runtime/Kernel.h"
#include "runtime/Tensor.h"

namespace roformer::runtime {

enum class SlotKind {
  kGraphInput,
  kConstant,
  // Computed by a step; lives in the arena, or in its own output buffer when
  // it is a graph output on a host-memory backend.
  kComputed,
  // An omitted optional node input or output.
  kOmitted,
};

// A graph input's use as Gather indices, found at load time. Token and
// segment ids are such inputs, and the TF export feeds them as float.
struct IdUse {
  // The input is floating point and reaches the Gather through a Cast to an
  // integer type, so each value must be a finite integer.
  bool floatIds = false;
  // Rows of the smallest constant table the ids index, when it is known.
  std::optional<int64_t> tableRows;
  // The Gather node with that table (or the first one found), for messages.
  std::string gatherNode;
};

struct Slot {
  std::string name;
  SlotKind kind = SlotKind::kComputed;
  // kConstant: the weight's type, shape and device-readable bytes.
  TensorView constantView;
  DeviceBuffer constantBuffer;
  // kGraphInput: position among the session's inputs.
  int inputIndex = -1;
  // Positions among the graph outputs (a value may be listed more than once).
  std::vector<int> outputIndices;
  // Step that computes the slot (-1 for inputs and constants) and the last
  // step that reads it: -1 when no step does, the step count for graph
  // outputs, which the caller reads after the last step.
  int producerStep = -1;
  int lastUseStep = -1;
  bool isGraphOutput() const { return !outputIndices.empty(); }
};

struct Step {
  // "OpType 'name'" (with the domain when it is not ONNX's), for messages.
  std::string description;
  // "OpType", or "domain.OpType" outside the ONNX domain.
  std::string opType;
  std::unique_ptr<Kernel> kernel;
  std::vector<int> inputSlots;
  std::vector<int> outputSlots;
  bool canRunInPlace = false;
};

// Declared type of one graph input or output.
struct TensorInfo {
  std::string name;
  DataType type = DataType::kUndefined;
  // Declared dims; nullopt when the model does not give the rank.
  std::optional<std::vector<ir::Dim>> dims;
  // Set for inputs used as Gather indices (token and segment ids).
  std::optional<IdUse> idUse;
};

// "[batch, 128, ?]" for declared dims, "[?]" style for unknown ones.
std::string describeDims(const std::optional<std::vector<ir::Dim>>& dims);

class Schedule {
 public:
  // Builds the schedule and one kernel per node from `backend`'s registry.
  // Fails when a node has no kernel or its kernel rejects the node. The error
  // lists every such node with its op, domain and opset, not just the first.
  static absl::StatusOr<std::unique_ptr<Schedule>> build(const ir::Model& model,
                                                         Backend& backend);

  const std::vector<Step>& steps() const { return steps_; }
  const std::vector<Slot>& slots() const { return slots_; }
  // Slot of each graph input and output, in graph order.
  const std::vector<int>& inputSlots() const { return inputSlots_; }
  const std::vector<int>& outputSlots() const { return outputSlots_; }
  const std::vector<TensorInfo>& inputInfo() const { return inputInfo_; }
  const std::vector<TensorInfo>& outputInfo() const { return outputInfo_; }
  // Slots whose last reader is step `step` and that may be freed after it.
  const std::vector<int>& slotsDyingAfter(size_t step) const { return dyingAfter_[step]; }

 private:
  std::vector<Step> steps_;
  std::vector<Slot> slots_;
  std::vector<int> inputSlots_;
  std::vector<int> outputSlots_;
  std::vector<TensorInfo> inputInfo_;
  std::vector<TensorInfo> outputInfo_;
  std::vector<std::vector<int>> dyingAfter_;
};

// Location of one slot's bytes during a planned run.
enum class Placement {
  kCaller,     // a graph input read from the caller's tensor
  kConstant,   // the weight itself
  kArena,      // at `offset` in the run's arena
  kOwnBuffer,  // a graph output in a buffer of its own that the caller receives
  kNone,       // an omitted input
};

struct SlotLayout {
  DataType type = DataType::kUndefined;
  Shape shape;
  Placement placement = Placement::kNone;
  size_t offset = 0;
  size_t bytes = 0;
};

// Types, shapes and buffer placements of every slot for one input signature.
struct MemoryPlan {
  std::vector<SlotLayout> slots;
  size_t arenaBytes = 0;
  // Sum of the arena-placed buffers' sizes, before any sharing.
  size_t unsharedBytes = 0;
  // Steps whose first output is written over their first input.
  size_t inPlaceSteps = 0;
};

// One buffer to place in the arena: its size and the inclusive range of
// steps during which it must keep its bytes.
struct BufferLifetime {
  size_t bytes = 0;
  int firstStep = 0;
  int lastStep = 0;
};

// Assigns each buffer an offset, a multiple of kBufferAlignment, so that
// buffers with overlapping lifetimes never overlap in memory. Buffers are
// placed largest first, each into the smallest gap between already placed
// overlapping buffers that fits it, or above all of them. Empty buffers get
// offset 0 and take no space. Returns the offsets and sets `arenaBytes` to the
// arena size they need.
std::vector<size_t> assignArenaOffsets(const std::vector<BufferLifetime>& buffers,
                                       size_t& arenaBytes);

// Builds the memory plan from the slot types and shapes one run produced.
// Graph inputs are placed in the arena (copied there) unless the backend
// uses host memory, and so are graph outputs.
MemoryPlan planMemory(const Schedule& schedule, const std::vector<TensorView>& slotViews,
                      bool hostMemory);

}  // namespace roformer::runtime
