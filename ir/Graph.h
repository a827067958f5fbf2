// The mutable graph IR that passes rewrite: Graph, Node and Value with
// use-def chains.
//
// A Value is one named tensor of the graph. It is produced by at most one
// node output; graph inputs and initializers have no producer. Every node
// input that refers to a value is recorded in the value's use list, so passes
// find all consumers without scanning the graph. Subgraph attributes (If, Loop,
// Scan) stay as protobuf messages; the outer values they read by name are
// recorded as implicit uses of the node that owns them, so no pass removes or
// renames a value that a subgraph still needs.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ir/DataType.h"
#include "ir/Tensor.h"
#include "onnx/onnx_pb.h"

namespace roformer::ir {

class Graph;
class Node;

// One reference from a node to a value. `inputIndex` is the position in the
// node's inputs, or kImplicitUse for a name read inside a subgraph attribute.
struct Use {
  static constexpr int kImplicitUse = -1;
  Node* user = nullptr;
  int inputIndex = 0;
  bool operator==(const Use&) const = default;
};

// A dimension of a tensor shape: a known size, a symbolic name, or unknown.
struct Dim {
  std::optional<int64_t> value;
  std::string symbol;

  static Dim known(int64_t v) { return Dim{v, {}}; }
  static Dim symbolic(std::string name) { return Dim{std::nullopt, std::move(name)}; }
  static Dim unknown() { return Dim{}; }
  bool isKnown() const { return value.has_value(); }
  bool operator==(const Dim&) const = default;
};

class Value {
 public:
  const std::string& name() const { return name_; }
  Graph* graph() const { return graph_; }

  // The node that computes this value, or null for graph inputs, initializers
  // and values nothing defines.
  Node* producer() const { return producer_; }
  int producerOutputIndex() const { return producerOutputIndex_; }

  const std::vector<Use>& uses() const { return uses_; }
  bool hasUses() const { return !uses_.empty() || graphOutputCount_ > 0; }
  // Number of node inputs and graph outputs that refer to this value.
  size_t useCount() const { return uses_.size() + graphOutputCount_; }
  bool isGraphInput() const { return isGraphInput_; }
  bool isGraphOutput() const { return graphOutputCount_ > 0; }

  // Initializer data, when this value is an initializer.
  bool isInitializer() const { return initializer_ != nullptr; }
  const std::shared_ptr<Tensor>& initializer() const { return initializer_; }

  // The type as ONNX describes it; empty (value_case() not set) when unknown.
  const onnx::TypeProto& type() const { return type_; }
  onnx::TypeProto& mutableType() { return type_; }
  void setType(const onnx::TypeProto& type) { type_ = type; }
  // Element type of a tensor-typed value, or kUndefined.
  DataType elemType() const;
  // Dims of a tensor-typed value with a known rank, or nullopt.
  std::optional<std::vector<Dim>> shape() const;
  // Sets a tensor type with the given element type and dims.
  void setTensorType(DataType elemType, const std::vector<Dim>& dims);
  void setTensorType(DataType elemType, const std::vector<int64_t>& dims);
  // Known static dims, or nullopt when the rank or any dim is not known.
  std::optional<std::vector<int64_t>> staticShape() const;

  const std::string& docString() const { return docString_; }
  void setDocString(std::string doc) { docString_ = std::move(doc); }

  // True when some node uses this value as its `index`-th input (or any input
  // when index is negative).
  bool isUsedBy(const Node* node) const;
  // The single node user when exactly one node input refers to this value and
  // it is not a graph output; otherwise null.
  Node* singleUser() const;

 private:
  friend class Graph;
  friend class Node;
  Value(Graph* graph, std::string name) : graph_(graph), name_(std::move(name)) {}

  Graph* graph_;
  std::string name_;
  Node* producer_ = nullptr;
  int producerOutputIndex_ = 0;
  std::vector<Use> uses_;
  int graphOutputCount_ = 0;
  bool isGraphInput_ = false;
  std::shared_ptr<Tensor> initializer_;
  onnx::TypeProto type_;
  std::string docString_;
};

class Node {
 public:
  const std::string& name() const { return name_; }
  void setName(std::string name) { name_ = std::move(name); }
  const std::string& opType() const { return opType_; }
  // "" for the default ONNX domain; "ai.onnx" is normalized to "" on import.
  const std::string& domain() const { return domain_; }
  void setDomain(std::string domain) { domain_ = std::move(domain); }
  Graph* graph() const { return graph_; }
  // True when the node is `opType` in `domain`.
  bool is(std::string_view opType, std::string_view domain = "") const {
    return opType_ == opType && domain_ == domain;
  }
  // "OpType 'name'" or "domain.OpType 'name'", for messages.
  std::string describe() const;

  // Inputs, in order; an omitted optional input is null.
  const std::vector<Value*>& inputs() const { return inputs_; }
  size_t inputCount() const { return inputs_.size(); }
  Value* input(size_t i) const { return i < inputs_.size() ? inputs_[i] : nullptr; }
  void setInput(size_t i, Value* value);
  void addInput(Value* value);
  // Removes inputs from `begin` to the end.
  void truncateInputs(size_t begin);

  const std::vector<Value*>& outputs() const { return outputs_; }
  size_t outputCount() const { return outputs_.size(); }
  Value* output(size_t i = 0) const { return i < outputs_.size() ? outputs_[i] : nullptr; }

  // Values read by name inside this node's subgraph attributes.
  const std::vector<Value*>& implicitInputs() const { return implicitInputs_; }
  void setImplicitInputs(std::vector<Value*> values);

  // Attributes, kept as protobuf messages so that every type, subgraphs
  // included, survives a round trip.
  const std::vector<onnx::AttributeProto>& attributes() const { return attributes_; }
  const onnx::AttributeProto* findAttribute(std::string_view name) const;
  bool hasAttribute(std::string_view name) const { return findAttribute(name) != nullptr; }
  void setAttribute(onnx::AttributeProto attribute);
  void removeAttribute(std::string_view name);
  // Typed accessors; each returns the fallback when the attribute is absent
  // and an InvalidArgument error naming the node when it has another type.
  absl::StatusOr<int64_t> intAttribute(std::string_view name, int64_t fallback) const;
  absl::StatusOr<float> floatAttribute(std::string_view name, float fallback) const;
  absl::StatusOr<std::string> stringAttribute(std::string_view name, std::string fallback) const;
  absl::StatusOr<std::vector<int64_t>> intsAttribute(std::string_view name,
                                                      std::vector<int64_t> fallback) const;
  absl::StatusOr<std::vector<float>> floatsAttribute(std::string_view name,
                                                      std::vector<float> fallback) const;
  void setIntAttribute(std::string_view name, int64_t value);
  void setFloatAttribute(std::string_view name, float value);
  void setStringAttribute(std::string_view name, std::string_view value);
  void setIntsAttribute(std::string_view name, const std::vector<int64_t>& values);
  bool hasSubgraphs() const;

  const std::string& docString() const { return docString_; }
  void setDocString(std::string doc) { docString_ = std::move(doc); }

  // For a Constant node, its value as a tensor (built once from the `value`,
  // `value_float(s)` or `value_int(s)` attribute); null for other nodes or
  // Constant forms without a tensor equivalent (sparse, strings lists).
  std::shared_ptr<Tensor> constantValue() const;

 private:
  friend class Graph;
  Node(Graph* graph, std::string opType, std::string domain, std::string name)
      : graph_(graph), opType_(std::move(opType)), domain_(std::move(domain)),
        name_(std::move(name)) {}

  Graph* graph_;
  std::string opType_;
  std::string domain_;
  std::string name_;
  std::string docString_;
  std::vector<Value*> inputs_;
  std::vector<Value*> outputs_;
  std::vector<Value*> implicitInputs_;
  std::vector<onnx::AttributeProto> attributes_;
  std::list<std::unique_ptr<Node>>::iterator position_;
  mutable std::shared_ptr<Tensor> constantCache_;
};

// Returns the constant tensor behind `value`: its initializer, or the value of
// the Constant node that produces it; null when it is not a known constant.
std::shared_ptr<Tensor> constantOf(const Value* value);

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  const std::string& name() const { return name_; }
  void setName(std::string name) { name_ = std::move(name); }

  // ---- Values ----
  Value* findValue(std::string_view name) const;
  // Returns the value named `name`, creating an unattached one if needed.
  Value* getOrCreateValue(std::string_view name);
  // Returns a new value with a name derived from `hint` that no value uses yet.
  Value* createValue(std::string_view hint);
  // Returns a name derived from `hint` that no value uses yet.
  std::string uniqueValueName(std::string_view hint) const;
  // Renames a value; fails when another value already has `newName` or when
  // a subgraph reads the value by name.
  absl::Status renameValue(Value* value, std::string newName);
  size_t valueCount() const { return values_.size(); }
  // All values in creation order; includes values with no uses.
  std::vector<Value*> values() const;

  // ---- Initializers ----
  Value* addInitializer(std::string_view nameHint, std::shared_ptr<Tensor> tensor);
  // Makes `value` (which must have no producer) an initializer holding `tensor`.
  void setInitializer(Value* value, std::shared_ptr<Tensor> tensor);
  void removeInitializer(Value* value);
  // Initializers in file order.
  const std::vector<Value*>& initializers() const { return initializers_; }

  // ---- Graph inputs and outputs ----
  const std::vector<Value*>& inputs() const { return inputs_; }
  const std::vector<Value*>& outputs() const { return outputs_; }
  void addInput(Value* value);
  void removeInput(Value* value);
  void addOutput(Value* value);
  void setOutput(size_t i, Value* value);

  // ---- Nodes ----
  // Nodes in their current order (topological after import and topoSort()).
  const std::list<std::unique_ptr<Node>>& nodes() const { return nodes_; }
  size_t nodeCount() const { return nodes_.size(); }
  // Creates a node at the end of the list, or before `before` when given.
  // Outputs get fresh values named after `outputNames` (made unique).
  Node* createNode(std::string_view opType, std::string_view domain,
                   const std::vector<Value*>& inputs, const std::vector<std::string>& outputNames,
                   Node* before = nullptr, std::string_view name = "");
  // Creates a node whose outputs are the given existing, producer-less values.
  Node* createNodeWithOutputs(std::string_view opType, std::string_view domain,
                              const std::vector<Value*>& inputs,
                              const std::vector<Value*>& outputs, Node* before = nullptr,
                              std::string_view name = "");
  // Moves `node` to just before `before`.
  void moveBefore(Node* node, Node* before);
  // Removes a node whose outputs have no uses; fails (and changes nothing)
  // when an output is still used or is a graph output.
  absl::Status eraseNode(Node* node);
  // Returns a node name derived from `hint` that no node uses yet.
  std::string uniqueNodeName(std::string_view hint) const;

  // Redirects every use of `from` (node inputs, implicit uses and graph
  // outputs) to `to`. When `from` is a graph output, `to` takes over its name
  // so the graph's interface is unchanged, and `from` gets a fresh name.
  void replaceAllUsesWith(Value* from, Value* to);

  // Sorts the node list so every node follows the producers of its inputs,
  // keeping the current order where it already is. Fails on a cycle, naming
  // one node on it.
  absl::Status topoSort();

  // Removes values that have no producer, no uses and are neither inputs
  // nor initializers. Returns the count removed.
  size_t pruneUnusedValues();

  // Extra GraphProto fields the IR does not model (doc_string,
  // quantization_annotation, sparse_initializer), written back on export.
  onnx::GraphProto& extraFields() { return extra_; }
  const onnx::GraphProto& extraFields() const { return extra_; }

 private:
  friend class Node;
  void addUse(Value* value, Node* user, int index);
  void removeUse(Value* value, Node* user, int index);

  std::string name_;
  std::list<std::unique_ptr<Node>> nodes_;
  std::list<std::unique_ptr<Value>> valueStorage_;
  std::unordered_map<std::string, Value*> values_;
  std::vector<Value*> inputs_;
  std::vector<Value*> outputs_;
  std::vector<Value*> initializers_;
  std::unordered_map<std::string, int> nodeNames_;
  onnx::GraphProto extra_;
};

// A model: the graph plus the ModelProto fields around it.
class Model {
 public:
  Model();
  Graph& graph() { return *graph_; }
  const Graph& graph() const { return *graph_; }

  // ModelProto without its graph: ir_version, opset_import, producer,
  // metadata_props, functions, ...
  onnx::ModelProto& header() { return header_; }
  const onnx::ModelProto& header() const { return header_; }

  // The opset version imported for `domain` ("" is the ONNX domain), or
  // nullopt when the model does not import it.
  std::optional<int64_t> opsetVersion(std::string_view domain) const;
  void setOpsetVersion(std::string_view domain, int64_t version);

  // The folder external data locations are resolved against.
  const std::filesystem::path& baseDir() const { return baseDir_; }
  void setBaseDir(std::filesystem::path dir) { baseDir_ = std::move(dir); }

 private:
  std::unique_ptr<Graph> graph_;
  onnx::ModelProto header_;
  std::filesystem::path baseDir_;
};

}  // namespace roformer::ir
