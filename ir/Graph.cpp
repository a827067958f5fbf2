#include "ir/Graph.h"

#include <algorithm>
#include <unordered_set>

#include "absl/strings/str_cat.h"

namespace roformer::ir {

// ---- Value ----

DataType Value::elemType() const {
  if (type_.value_case() != onnx::TypeProto::kTensorType) return DataType::kUndefined;
  return static_cast<DataType>(type_.tensor_type().elem_type());
}

std::optional<std::vector<Dim>> Value::shape() const {
  if (type_.value_case() != onnx::TypeProto::kTensorType || !type_.tensor_type().has_shape()) {
    return std::nullopt;
  }
  std::vector<Dim> dims;
  for (const auto& dim : type_.tensor_type().shape().dim()) {
    if (dim.has_dim_value()) {
      dims.push_back(Dim::known(dim.dim_value()));
    } else if (dim.has_dim_param()) {
      dims.push_back(Dim::symbolic(dim.dim_param()));
    } else {
      dims.push_back(Dim::unknown());
    }
  }
  return dims;
}

std::optional<std::vector<int64_t>> Value::staticShape() const {
  auto dims = shape();
  if (!dims) return std::nullopt;
  std::vector<int64_t> out;
  for (const Dim& dim : *dims) {
    if (!dim.isKnown()) return std::nullopt;
    out.push_back(*dim.value);
  }
  return out;
}

void Value::setTensorType(DataType elemType, const std::vector<Dim>& dims) {
  type_.Clear();
  auto* tensor = type_.mutable_tensor_type();
  tensor->set_elem_type(static_cast<int32_t>(elemType));
  auto* shape = tensor->mutable_shape();
  for (const Dim& dim : dims) {
    auto* out = shape->add_dim();
    if (dim.value) {
      out->set_dim_value(*dim.value);
    } else if (!dim.symbol.empty()) {
      out->set_dim_param(dim.symbol);
    }
  }
}

void Value::setTensorType(DataType elemType, const std::vector<int64_t>& dims) {
  std::vector<Dim> converted;
  for (int64_t dim : dims) converted.push_back(Dim::known(dim));
  setTensorType(elemType, converted);
}

bool Value::isUsedBy(const Node* node) const {
  return std::any_of(uses_.begin(), uses_.end(), [&](const Use& use) { return use.user == node; });
}

Node* Value::singleUser() const {
  if (uses_.size() != 1 || graphOutputCount_ > 0) return nullptr;
  if (uses_[0].inputIndex == Use::kImplicitUse) return nullptr;
  return uses_[0].user;
}

// ---- Node ----

std::string Node::describe() const {
  std::string op = domain_.empty() ? opType_ : absl::StrCat(domain_, ".", opType_);
  if (name_.empty()) {
    if (outputs_.empty() || outputs_[0] == nullptr) return absl::StrCat(op, " (unnamed)");
    return absl::StrCat(op, " producing '", outputs_[0]->name(), "'");
  }
  return absl::StrCat(op, " '", name_, "'");
}

void Node::setInput(size_t i, Value* value) {
  if (i >= inputs_.size()) inputs_.resize(i + 1, nullptr);
  if (inputs_[i] != nullptr) graph_->removeUse(inputs_[i], this, static_cast<int>(i));
  inputs_[i] = value;
  if (value != nullptr) graph_->addUse(value, this, static_cast<int>(i));
}

void Node::addInput(Value* value) { setInput(inputs_.size(), value); }

void Node::truncateInputs(size_t begin) {
  for (size_t i = begin; i < inputs_.size(); ++i) {
    if (inputs_[i] != nullptr) graph_->removeUse(inputs_[i], this, static_cast<int>(i));
  }
  if (begin < inputs_.size()) inputs_.resize(begin);
}

void Node::setImplicitInputs(std::vector<Value*> values) {
  for (Value* value : implicitInputs_) graph_->removeUse(value, this, Use::kImplicitUse);
  implicitInputs_ = std::move(values);
  for (Value* value : implicitInputs_) graph_->addUse(value, this, Use::kImplicitUse);
}

const onnx::AttributeProto* Node::findAttribute(std::string_view name) const {
  for (const auto& attribute : attributes_) {
    if (attribute.name() == name) return &attribute;
  }
  return nullptr;
}

void Node::setAttribute(onnx::AttributeProto attribute) {
  constantCache_.reset();
  for (auto& existing : attributes_) {
    if (existing.name() == attribute.name()) {
      existing = std::move(attribute);
      return;
    }
  }
  attributes_.push_back(std::move(attribute));
}

void Node::removeAttribute(std::string_view name) {
  constantCache_.reset();
  attributes_.erase(std::remove_if(attributes_.begin(), attributes_.end(),
                                   [&](const auto& a) { return a.name() == name; }),
                    attributes_.end());
}

namespace {

absl::Status wrongAttributeType(const Node& node, std::string_view name, std::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(node.describe(), ": attribute '",
                                                 std::string(name), "' must be of type ",
                                                 std::string(expected)));
}

}  // namespace

absl::StatusOr<int64_t> Node::intAttribute(std::string_view name, int64_t fallback) const {
  const auto* attribute = findAttribute(name);
  if (attribute == nullptr) return fallback;
  if (attribute->type() != onnx::AttributeProto::INT) return wrongAttributeType(*this, name, "INT");
  return attribute->i();
}

absl::StatusOr<float> Node::floatAttribute(std::string_view name, float fallback) const {
  const auto* attribute = findAttribute(name);
  if (attribute == nullptr) return fallback;
  if (attribute->type() != onnx::AttributeProto::FLOAT) {
    return wrongAttributeType(*this, name, "FLOAT");
  }
  return attribute->f();
}

absl::StatusOr<std::string> Node::stringAttribute(std::string_view name,
                                                  std::string fallback) const {
  const auto* attribute = findAttribute(name);
  if (attribute == nullptr) return fallback;
  if (attribute->type() != onnx::AttributeProto::STRING) {
    return wrongAttributeType(*this, name, "STRING");
  }
  return attribute->s();
}

absl::StatusOr<std::vector<int64_t>> Node::intsAttribute(std::string_view name,
                                                         std::vector<int64_t> fallback) const {
  const auto* attribute = findAttribute(name);
  if (attribute == nullptr) return fallback;
  if (attribute->type() != onnx::AttributeProto::INTS) {
    return wrongAttributeType(*this, name, "INTS");
  }
  return std::vector<int64_t>(attribute->ints().begin(), attribute->ints().end());
}

absl::StatusOr<std::vector<float>> Node::floatsAttribute(std::string_view name,
                                                         std::vector<float> fallback) const {
  const auto* attribute = findAttribute(name);
  if (attribute == nullptr) return fallback;
  if (attribute->type() != onnx::AttributeProto::FLOATS) {
    return wrongAttributeType(*this, name, "FLOATS");
  }
  return std::vector<float>(attribute->floats().begin(), attribute->floats().end());
}

void Node::setIntAttribute(std::string_view name, int64_t value) {
  onnx::AttributeProto attribute;
  attribute.set_name(std::string(name));
  attribute.set_type(onnx::AttributeProto::INT);
  attribute.set_i(value);
  setAttribute(std::move(attribute));
}

void Node::setFloatAttribute(std::string_view name, float value) {
  onnx::AttributeProto attribute;
  attribute.set_name(std::string(name));
  attribute.set_type(onnx::AttributeProto::FLOAT);
  attribute.set_f(value);
  setAttribute(std::move(attribute));
}

void Node::setStringAttribute(std::string_view name, std::string_view value) {
  onnx::AttributeProto attribute;
  attribute.set_name(std::string(name));
  attribute.set_type(onnx::AttributeProto::STRING);
  attribute.set_s(std::string(value));
  setAttribute(std::move(attribute));
}

void Node::setIntsAttribute(std::string_view name, const std::vector<int64_t>& values) {
  onnx::AttributeProto attribute;
  attribute.set_name(std::string(name));
  attribute.set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) attribute.add_ints(v);
  setAttribute(std::move(attribute));
}

bool Node::hasSubgraphs() const {
  return std::any_of(attributes_.begin(), attributes_.end(), [](const auto& a) {
    return a.type() == onnx::AttributeProto::GRAPH || a.type() == onnx::AttributeProto::GRAPHS;
  });
}

std::shared_ptr<Tensor> Node::constantValue() const {
  if (opType_ != "Constant" || !domain_.empty() || attributes_.size() != 1) return nullptr;
  if (constantCache_) return constantCache_;
  const auto& attribute = attributes_[0];
  const std::string& name = attribute.name();
  if (name == "value" && attribute.type() == onnx::AttributeProto::TENSOR) {
    auto tensor = Tensor::fromProto(attribute.t(), graph_ ? std::filesystem::path() : "",
                                    describe());
    if (tensor.ok()) constantCache_ = *tensor;
  } else if (name == "value_float" && attribute.type() == onnx::AttributeProto::FLOAT) {
    constantCache_ = Tensor::scalar<float>(attribute.f());
  } else if (name == "value_int" && attribute.type() == onnx::AttributeProto::INT) {
    constantCache_ = Tensor::scalar<int64_t>(attribute.i());
  } else if (name == "value_floats" && attribute.type() == onnx::AttributeProto::FLOATS) {
    std::vector<float> values(attribute.floats().begin(), attribute.floats().end());
    constantCache_ = Tensor::create<float>({static_cast<int64_t>(values.size())}, values);
  } else if (name == "value_ints" && attribute.type() == onnx::AttributeProto::INTS) {
    std::vector<int64_t> values(attribute.ints().begin(), attribute.ints().end());
    constantCache_ = Tensor::create<int64_t>({static_cast<int64_t>(values.size())}, values);
  }
  return constantCache_;
}

std::shared_ptr<Tensor> constantOf(const Value* value) {
  if (value == nullptr) return nullptr;
  if (value->isInitializer() && !value->isGraphInput()) return value->initializer();
  if (value->producer() != nullptr) return value->producer()->constantValue();
  return nullptr;
}

// ---- Graph ----

void Graph::addUse(Value* value, Node* user, int index) { value->uses_.push_back(Use{user, index}); }

void Graph::removeUse(Value* value, Node* user, int index) {
  auto& uses = value->uses_;
  auto it = std::find(uses.begin(), uses.end(), Use{user, index});
  if (it != uses.end()) uses.erase(it);
}

Value* Graph::findValue(std::string_view name) const {
  auto it = values_.find(std::string(name));
  return it == values_.end() ? nullptr : it->second;
}

Value* Graph::getOrCreateValue(std::string_view name) {
  if (Value* existing = findValue(name)) return existing;
  auto value = std::unique_ptr<Value>(new Value(this, std::string(name)));
  Value* raw = value.get();
  valueStorage_.push_back(std::move(value));
  values_.emplace(raw->name_, raw);
  return raw;
}

std::string Graph::uniqueValueName(std::string_view hint) const {
  std::string base(hint.empty() ? "v" : hint);
  if (values_.find(base) == values_.end()) return base;
  for (int suffix = 1;; ++suffix) {
    std::string candidate = absl::StrCat(base, "_", suffix);
    if (values_.find(candidate) == values_.end()) return candidate;
  }
}

Value* Graph::createValue(std::string_view hint) { return getOrCreateValue(uniqueValueName(hint)); }

absl::Status Graph::renameValue(Value* value, std::string newName) {
  if (value->name_ == newName) return absl::OkStatus();
  if (findValue(newName) != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat("cannot rename '", value->name_, "' to '",
                                                 newName, "': a value with that name exists"));
  }
  for (const Use& use : value->uses_) {
    if (use.inputIndex == Use::kImplicitUse) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot rename '", value->name_, "': the subgraph of ",
                       use.user->describe(), " reads it by name"));
    }
  }
  values_.erase(value->name_);
  value->name_ = std::move(newName);
  values_.emplace(value->name_, value);
  return absl::OkStatus();
}

std::vector<Value*> Graph::values() const {
  std::vector<Value*> out;
  out.reserve(valueStorage_.size());
  for (const auto& value : valueStorage_) out.push_back(value.get());
  return out;
}

Value* Graph::addInitializer(std::string_view nameHint, std::shared_ptr<Tensor> tensor) {
  Value* value = createValue(nameHint);
  setInitializer(value, std::move(tensor));
  return value;
}

void Graph::setInitializer(Value* value, std::shared_ptr<Tensor> tensor) {
  if (!value->isInitializer()) initializers_.push_back(value);
  value->setTensorType(tensor->dataType(), tensor->dims());
  value->initializer_ = std::move(tensor);
}

void Graph::removeInitializer(Value* value) {
  if (!value->isInitializer()) return;
  value->initializer_.reset();
  initializers_.erase(std::remove(initializers_.begin(), initializers_.end(), value),
                      initializers_.end());
}

void Graph::addInput(Value* value) {
  value->isGraphInput_ = true;
  inputs_.push_back(value);
}

void Graph::removeInput(Value* value) {
  value->isGraphInput_ = false;
  inputs_.erase(std::remove(inputs_.begin(), inputs_.end(), value), inputs_.end());
}

void Graph::addOutput(Value* value) {
  ++value->graphOutputCount_;
  outputs_.push_back(value);
}

void Graph::setOutput(size_t i, Value* value) {
  --outputs_[i]->graphOutputCount_;
  outputs_[i] = value;
  ++value->graphOutputCount_;
}

std::string Graph::uniqueNodeName(std::string_view hint) const {
  std::string base(hint.empty() ? "node" : hint);
  if (nodeNames_.find(base) == nodeNames_.end()) return base;
  for (int suffix = 1;; ++suffix) {
    std::string candidate = absl::StrCat(base, "_", suffix);
    if (nodeNames_.find(candidate) == nodeNames_.end()) return candidate;
  }
}

Node* Graph::createNode(std::string_view opType, std::string_view domain,
                        const std::vector<Value*>& inputs,
                        const std::vector<std::string>& outputNames, Node* before,
                        std::string_view name) {
  std::vector<Value*> outputs;
  for (const auto& outputName : outputNames) {
    outputs.push_back(outputName.empty() ? nullptr : createValue(outputName));
  }
  return createNodeWithOutputs(opType, domain, inputs, outputs, before, name);
}

Node* Graph::createNodeWithOutputs(std::string_view opType, std::string_view domain,
                                   const std::vector<Value*>& inputs,
                                   const std::vector<Value*>& outputs, Node* before,
                                   std::string_view name) {
  auto node = std::unique_ptr<Node>(
      new Node(this, std::string(opType), std::string(domain), std::string(name)));
  Node* raw = node.get();
  auto position = before != nullptr ? before->position_ : nodes_.end();
  raw->position_ = nodes_.insert(position, std::move(node));
  if (!raw->name_.empty()) ++nodeNames_[raw->name_];
  for (Value* input : inputs) raw->addInput(input);
  for (size_t i = 0; i < outputs.size(); ++i) {
    Value* output = outputs[i];
    raw->outputs_.push_back(output);
    if (output == nullptr) continue;
    output->producer_ = raw;
    output->producerOutputIndex_ = static_cast<int>(i);
  }
  return raw;
}

void Graph::moveBefore(Node* node, Node* before) {
  if (node == before) return;
  nodes_.splice(before->position_, nodes_, node->position_);
}

absl::Status Graph::eraseNode(Node* node) {
  for (Value* output : node->outputs_) {
    if (output != nullptr && output->hasUses()) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot erase ", node->describe(), ": its output '", output->name(),
                       "' still has ", output->useCount(), " use(s)"));
    }
  }
  node->truncateInputs(0);
  node->setImplicitInputs({});
  for (Value* output : node->outputs_) {
    if (output == nullptr) continue;
    output->producer_ = nullptr;
    output->producerOutputIndex_ = 0;
  }
  if (!node->name_.empty()) {
    auto it = nodeNames_.find(node->name_);
    if (it != nodeNames_.end() && --it->second == 0) nodeNames_.erase(it);
  }
  nodes_.erase(node->position_);
  return absl::OkStatus();
}

void Graph::replaceAllUsesWith(Value* from, Value* to) {
  if (from == to) return;
  std::vector<Use> uses = from->uses_;
  for (const Use& use : uses) {
    if (use.inputIndex == Use::kImplicitUse) {
      auto implicit = use.user->implicitInputs_;
      std::replace(implicit.begin(), implicit.end(), from, to);
      use.user->setImplicitInputs(std::move(implicit));
    } else {
      use.user->setInput(static_cast<size_t>(use.inputIndex), to);
    }
  }
  if (from->isGraphOutput()) {
    for (size_t i = 0; i < outputs_.size(); ++i) {
      if (outputs_[i] == from) setOutput(i, to);
    }
    // The graph's interface keeps its names: `to` takes over `from`'s name.
    if (!to->isGraphInput() && !to->isInitializer()) {
      std::string name = from->name_;
      values_.erase(from->name_);
      from->name_ = uniqueValueName(absl::StrCat(name, "_replaced"));
      values_.emplace(from->name_, from);
      values_.erase(to->name_);
      to->name_ = name;
      values_.emplace(to->name_, to);
    }
  }
}

absl::Status Graph::topoSort() {
  // Kahn's algorithm, taking ready nodes in their current order so that an
  // already sorted list is left as it is.
  std::unordered_map<const Node*, int> pending;
  std::vector<Node*> order;
  order.reserve(nodes_.size());
  for (const auto& node : nodes_) {
    int count = 0;
    // A node that reads its own output counts itself, so it never becomes
    // ready and is reported as a cycle.
    auto countInput = [&](const Value* input) {
      if (input != nullptr && input->producer_ != nullptr) ++count;
    };
    for (const Value* input : node->inputs_) countInput(input);
    for (const Value* input : node->implicitInputs_) countInput(input);
    pending[node.get()] = count;
  }
  std::vector<Node*> ready;
  for (const auto& node : nodes_) {
    if (pending[node.get()] == 0) ready.push_back(node.get());
  }
  std::reverse(ready.begin(), ready.end());
  // Lower list positions first: keep a stack ordered by original position.
  std::unordered_map<const Node*, size_t> position;
  size_t index = 0;
  for (const auto& node : nodes_) position[node.get()] = index++;
  auto byPosition = [&](Node* a, Node* b) { return position[a] > position[b]; };
  std::make_heap(ready.begin(), ready.end(), byPosition);
  while (!ready.empty()) {
    std::pop_heap(ready.begin(), ready.end(), byPosition);
    Node* node = ready.back();
    ready.pop_back();
    order.push_back(node);
    for (Value* output : node->outputs_) {
      if (output == nullptr) continue;
      for (const Use& use : output->uses_) {
        if (use.user == node) continue;
        if (--pending[use.user] == 0) {
          ready.push_back(use.user);
          std::push_heap(ready.begin(), ready.end(), byPosition);
        }
      }
    }
  }
  if (order.size() != nodes_.size()) {
    for (const auto& node : nodes_) {
      if (pending[node.get()] > 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the graph has a cycle through ", node->describe(),
            "; ONNX graphs must be acyclic (loops belong in a Loop node's subgraph)"));
      }
    }
  }
  for (Node* node : order) nodes_.splice(nodes_.end(), nodes_, node->position_);
  return absl::OkStatus();
}

size_t Graph::pruneUnusedValues() {
  size_t removed = 0;
  for (auto it = valueStorage_.begin(); it != valueStorage_.end();) {
    Value* value = it->get();
    if (value->producer_ == nullptr && value->uses_.empty() && value->graphOutputCount_ == 0 &&
        !value->isGraphInput_ && !value->isInitializer()) {
      values_.erase(value->name_);
      it = valueStorage_.erase(it);
      ++removed;
    } else {
      ++it;
    }
  }
  return removed;
}

// ---- Model ----

Model::Model() : graph_(std::make_unique<Graph>()) {}

std::optional<int64_t> Model::opsetVersion(std::string_view domain) const {
  for (const auto& opset : header_.opset_import()) {
    std::string_view name = opset.domain();
    if (name == domain || (domain.empty() && name == "ai.onnx")) return opset.version();
  }
  return std::nullopt;
}

void Model::setOpsetVersion(std::string_view domain, int64_t version) {
  for (auto& opset : *header_.mutable_opset_import()) {
    if (opset.domain() == domain || (domain.empty() && opset.domain() == "ai.onnx")) {
      opset.set_version(version);
      return;
    }
  }
  auto* opset = header_.add_opset_import();
  opset->set_domain(std::string(domain));
  opset->set_version(version);
}

}  // namespace roformer::ir
