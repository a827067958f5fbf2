#include "ir/ModelIO.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "ir/ProtoWriter.h"
#include "ir/TextFormat.h"
#include "onnx/common/constants.h"
#include "onnx/common/version.h"
#include "onnx/defs/schema.h"

namespace roformer::ir {
namespace {

// Serialized protobuf messages are limited to 2 GiB; above this sum of
// initializer bytes, kAuto moves initializers to an external data file.
constexpr uint64_t kExternalDataAutoLimit = (uint64_t{1} << 31) - (uint64_t{64} << 20);
// Tensors in the external data file start at multiples of this.
constexpr uint64_t kExternalDataAlignment = 64;

std::string normalizeDomain(const std::string& domain) {
  return domain == "ai.onnx" ? std::string() : domain;
}

// Collects names a subgraph reads that it does not define itself.
void collectOuterNames(const onnx::GraphProto& graph, std::unordered_set<std::string>& defined,
                       std::set<std::string>& outer) {
  std::unordered_set<std::string> local = defined;
  for (const auto& input : graph.input()) local.insert(input.name());
  for (const auto& init : graph.initializer()) local.insert(init.name());
  for (const auto& node : graph.node()) {
    for (const auto& name : node.input()) {
      if (!name.empty() && local.count(name) == 0) outer.insert(name);
    }
    for (const auto& attribute : node.attribute()) {
      if (attribute.has_g()) collectOuterNames(attribute.g(), local, outer);
      for (const auto& g : attribute.graphs()) collectOuterNames(g, local, outer);
    }
    for (const auto& name : node.output()) local.insert(name);
  }
  for (const auto& output : graph.output()) {
    if (local.count(output.name()) == 0) outer.insert(output.name());
  }
}

// Names a domain for messages; the ONNX domain is written "" in files.
std::string domainForMessage(const std::string& domain) {
  return domain.empty() ? std::string("ai.onnx") : domain;
}

std::string attributeTypeName(onnx::AttributeProto::AttributeType type) {
  return onnx::AttributeProto::AttributeType_Name(type);
}

// True when the attribute has a value in the field its type names. The
// repeated types may be empty, so only the single-value types are checked.
bool attributeHasValue(const onnx::AttributeProto& attribute) {
  switch (attribute.type()) {
    case onnx::AttributeProto::FLOAT:
      return attribute.has_f();
    case onnx::AttributeProto::INT:
      return attribute.has_i();
    case onnx::AttributeProto::STRING:
      return attribute.has_s();
    case onnx::AttributeProto::TENSOR:
      return attribute.has_t();
    case onnx::AttributeProto::GRAPH:
      return attribute.has_g();
    default:
      return true;
  }
}

// Checks a node of an ONNX domain against the operator's schema at the
// model's opset: the operator must exist, and each attribute the schema
// declares must have the declared type and a value. Attributes the schema
// does not declare are left to ONNX's checker (--verify-each).
absl::Status checkNodeSchema(const onnx::NodeProto& node, const std::string& domain,
                             int64_t version, const std::string& source) {
  const onnx::OpSchema* schema =
      onnx::OpSchemaRegistry::Schema(node.op_type(), static_cast<int>(version), domain);
  if (schema == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": node '", node.name(), "': domain '", domainForMessage(domain),
        "' has no operator '", node.op_type(), "' at opset ", version,
        "; check the op type and the model's opset_import"));
  }
  for (const auto& attribute : node.attribute()) {
    auto declared = schema->attributes().find(attribute.name());
    if (declared == schema->attributes().end()) continue;
    onnx::AttributeProto::AttributeType expected = declared->second.type;
    if (attribute.type() != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": node '", node.name(), "' (", node.op_type(), ") has attribute '",
          attribute.name(), "' of type ", attributeTypeName(attribute.type()), ", but ",
          node.op_type(), " at opset ", version, " expects ", attributeTypeName(expected)));
    }
    if (!attributeHasValue(attribute)) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": node '", node.name(), "' (", node.op_type(), ") has attribute '",
          attribute.name(), "' of type ", attributeTypeName(expected), " without a value"));
    }
  }
  return absl::OkStatus();
}

// Checks the nodes of `graph` and of its subgraphs: each must be in a domain
// that `imported` lists, and nodes of the ONNX domains must match their
// schema. `functions` contains "domain/name" of the model's local functions,
// which have no schema.
absl::Status checkNodes(const onnx::GraphProto& graph,
                        const std::unordered_map<std::string, int64_t>& imported,
                        const std::set<std::string>& functions, const std::string& source) {
  for (const auto& node : graph.node()) {
    std::string domain = normalizeDomain(node.domain());
    auto opset = imported.find(domain);
    if (opset == imported.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": node '", node.name(), "' (", node.op_type(), ") is in domain '",
          domainForMessage(domain), "', which the model's opset_import does not list; add an "
          "opset_import entry for that domain with the version the model was exported for"));
    }
    bool isFunction = functions.count(absl::StrCat(domain, "/", node.op_type())) > 0;
    if ((domain.empty() || domain == onnx::AI_ONNX_ML_DOMAIN) && !isFunction) {
      if (auto status = checkNodeSchema(node, domain, opset->second, source); !status.ok()) {
        return status;
      }
    }
    for (const auto& attribute : node.attribute()) {
      if (attribute.has_g()) {
        if (auto status = checkNodes(attribute.g(), imported, functions, source); !status.ok()) {
          return status;
        }
      }
      for (const auto& subgraph : attribute.graphs()) {
        if (auto status = checkNodes(subgraph, imported, functions, source); !status.ok()) {
          return status;
        }
      }
    }
  }
  return absl::OkStatus();
}

// Checks the opset_import list, and every node against it (see checkNodes).
// The ONNX domains may not be newer than the schemas of the linked ONNX
// library, because shape inference and the passes would then apply an older
// opset's semantics without notice. Other domains are not checked further:
// their nodes stay opaque to the passes.
absl::Status checkOpsetImports(const onnx::ModelProto& proto, const std::string& source) {
  std::unordered_map<std::string, int64_t> imported;
  const auto& knownRanges = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
  for (const auto& opset : proto.opset_import()) {
    std::string domain = normalizeDomain(opset.domain());
    if (opset.version() < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": opset_import lists domain '", domainForMessage(domain), "' with version ",
          opset.version(), "; opset versions start at 1"));
    }
    if (!imported.emplace(domain, opset.version()).second) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": opset_import lists domain '",
                                                     domainForMessage(domain), "' twice"));
    }
    if (domain.empty() || domain == onnx::AI_ONNX_ML_DOMAIN) {
      auto range = knownRanges.find(domain);
      if (range != knownRanges.end() && opset.version() > range->second.second) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": the model imports opset ", opset.version(), " of domain '",
            domainForMessage(domain), "', newer than the newest this build knows (",
            range->second.second, ", from ONNX ", onnx::LAST_RELEASE_VERSION,
            "); re-export the model with that opset or lower"));
      }
    }
  }
  std::set<std::string> functions;
  for (const auto& function : proto.functions()) {
    functions.insert(absl::StrCat(normalizeDomain(function.domain()), "/", function.name()));
  }
  if (auto status = checkNodes(proto.graph(), imported, functions, source); !status.ok()) {
    return status;
  }
  // A function body uses the function's own opset_import when it has one.
  for (const auto& function : proto.functions()) {
    std::unordered_map<std::string, int64_t> functionImports;
    for (const auto& opset : function.opset_import()) {
      functionImports[normalizeDomain(opset.domain())] = opset.version();
    }
    onnx::GraphProto body;
    *body.mutable_node() = function.node();
    const auto& bodyImports = functionImports.empty() ? imported : functionImports;
    if (auto status = checkNodes(body, bodyImports, functions, source); !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

// Reads the bytes of a tensor stored as external data into the proto itself.
absl::Status inlineExternalTensor(onnx::TensorProto& tensor, const std::filesystem::path& baseDir,
                                  const std::string& what) {
  if (tensor.data_location() != onnx::TensorProto::EXTERNAL) return absl::OkStatus();
  auto decoded = Tensor::fromProto(tensor, baseDir, what);
  if (!decoded.ok()) return decoded.status();
  std::string name = tensor.name();
  std::string docString = tensor.doc_string();
  tensor.Clear();
  (*decoded)->toProto(&tensor);
  tensor.set_name(name);
  if (!docString.empty()) tensor.set_doc_string(docString);
  return absl::OkStatus();
}

absl::Status inlineExternalTensors(onnx::NodeProto& node, const std::filesystem::path& baseDir,
                                   const std::string& source);

absl::Status inlineExternalTensors(onnx::GraphProto& graph, const std::filesystem::path& baseDir,
                                   const std::string& source) {
  for (auto& initializer : *graph.mutable_initializer()) {
    std::string what = absl::StrCat(source, ": initializer '", initializer.name(),
                                    "' of subgraph '", graph.name(), "'");
    if (auto status = inlineExternalTensor(initializer, baseDir, what); !status.ok()) {
      return status;
    }
  }
  for (auto& node : *graph.mutable_node()) {
    if (auto status = inlineExternalTensors(node, baseDir, source); !status.ok()) return status;
  }
  return absl::OkStatus();
}

// Reads the external data of the tensors in a node's attributes (a Constant's
// value, subgraph initializers) into the attribute protos. The IR keeps
// attributes as protos and has no model folder to resolve locations against
// later, and the exported model then carries the bytes wherever it is saved.
absl::Status inlineExternalTensors(onnx::NodeProto& node, const std::filesystem::path& baseDir,
                                   const std::string& source) {
  for (auto& attribute : *node.mutable_attribute()) {
    std::string what = absl::StrCat(source, ": node '", node.name(), "' (", node.op_type(),
                                    ") attribute '", attribute.name(), "'");
    if (attribute.has_t()) {
      if (auto status = inlineExternalTensor(*attribute.mutable_t(), baseDir, what);
          !status.ok()) {
        return status;
      }
    }
    for (auto& tensor : *attribute.mutable_tensors()) {
      if (auto status = inlineExternalTensor(tensor, baseDir, what); !status.ok()) return status;
    }
    if (attribute.has_g()) {
      if (auto status = inlineExternalTensors(*attribute.mutable_g(), baseDir, source);
          !status.ok()) {
        return status;
      }
    }
    for (auto& subgraph : *attribute.mutable_graphs()) {
      if (auto status = inlineExternalTensors(subgraph, baseDir, source); !status.ok()) {
        return status;
      }
    }
  }
  return absl::OkStatus();
}

// Checks the known dims of a declared type (of a tensor, or of the tensors in
// a sequence, optional or map): none negative, and the element count and
// byte size fit in 64 bits, so passes that compute with them cannot overflow.
absl::Status checkDeclaredType(const onnx::TypeProto& type, const std::string& what) {
  switch (type.value_case()) {
    case onnx::TypeProto::kSequenceType:
      return checkDeclaredType(type.sequence_type().elem_type(), what);
    case onnx::TypeProto::kOptionalType:
      return checkDeclaredType(type.optional_type().elem_type(), what);
    case onnx::TypeProto::kMapType:
      return checkDeclaredType(type.map_type().value_type(), what);
    case onnx::TypeProto::kTensorType:
      break;
    default:
      return absl::OkStatus();
  }
  const auto& tensor = type.tensor_type();
  if (!tensor.has_shape()) return absl::OkStatus();
  std::vector<int64_t> known;
  int64_t count = 1;
  bool overflow = false;
  for (int i = 0; i < tensor.shape().dim_size(); ++i) {
    const auto& dim = tensor.shape().dim(i);
    if (!dim.has_dim_value()) continue;
    if (dim.dim_value() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": dim ", i, " is ", dim.dim_value(),
                                                     "; dims must be >= 0"));
    }
    known.push_back(dim.dim_value());
    overflow = overflow || __builtin_mul_overflow(count, dim.dim_value(), &count);
  }
  uint64_t bytes = 0;
  size_t elementSize = dataTypeSize(static_cast<DataType>(tensor.elem_type()));
  if (overflow || (isValidDataType(tensor.elem_type()) &&
                   __builtin_mul_overflow(static_cast<uint64_t>(count), elementSize, &bytes))) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": dims [", absl::StrJoin(known, ", "),
        "] need more elements or bytes than 64 bits can count"));
  }
  return absl::OkStatus();
}

// Removes the shapes from a type, keeping the element types.
void clearShapes(onnx::TypeProto& type) {
  switch (type.value_case()) {
    case onnx::TypeProto::kSequenceType:
      return clearShapes(*type.mutable_sequence_type()->mutable_elem_type());
    case onnx::TypeProto::kOptionalType:
      return clearShapes(*type.mutable_optional_type()->mutable_elem_type());
    case onnx::TypeProto::kMapType:
      return clearShapes(*type.mutable_map_type()->mutable_value_type());
    case onnx::TypeProto::kTensorType:
      type.mutable_tensor_type()->clear_shape();
      return;
    default:
      return;
  }
}

// The type of a graph output or value_info entry, with the shape dropped
// when checkDeclaredType rejects it. Such shapes describe no tensor that can
// exist, and ONNX shape inference writes them for a Reshape to a constant
// shape of huge dims, so rejecting them would make roformer-opt refuse its
// own output.
onnx::TypeProto typeWithValidShape(const onnx::TypeProto& type) {
  onnx::TypeProto checked = type;
  if (!checkDeclaredType(type, "").ok()) clearShapes(checked);
  return checked;
}

absl::Status importGraph(onnx::GraphProto& proto, Graph& graph, const std::filesystem::path& baseDir,
                         const std::string& source) {
  graph.setName(proto.name());
  if (proto.sparse_initializer_size() > 0) {
    return absl::UnimplementedError(absl::StrCat(
        source, ": sparse initializers (first: '", proto.sparse_initializer(0).values().name(),
        "') are not supported; convert them to dense initializers first"));
  }

  for (const auto& input : proto.input()) {
    if (input.name().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": a graph input has no name"));
    }
    if (graph.findValue(input.name()) != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": graph input '", input.name(), "' is declared twice"));
    }
    if (auto status = checkDeclaredType(
            input.type(), absl::StrCat(source, ": graph input '", input.name(), "'"));
        !status.ok()) {
      return status;
    }
    Value* value = graph.getOrCreateValue(input.name());
    value->setType(input.type());
    value->setDocString(input.doc_string());
    graph.addInput(value);
  }

  for (int i = 0; i < proto.initializer_size(); ++i) {
    onnx::TensorProto* tensorProto = proto.mutable_initializer(i);
    const std::string& name = tensorProto->name();
    std::string what = absl::StrCat(source, ": initializer '", name, "'");
    if (name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": initializer ", i, " has no name"));
    }
    Value* value = graph.getOrCreateValue(name);
    if (value->isInitializer()) {
      return absl::InvalidArgumentError(absl::StrCat(what, " is defined twice"));
    }
    auto tensor = Tensor::fromProtoTakingData(tensorProto, baseDir, what);
    if (!tensor.ok()) return tensor.status();
    onnx::TypeProto declared = value->type();
    graph.setInitializer(value, *std::move(tensor));
    // A graph input that an initializer defaults keeps its declared type.
    if (value->isGraphInput() && declared.value_case() != onnx::TypeProto::VALUE_NOT_SET) {
      value->setType(declared);
    }
  }

  std::vector<std::pair<Node*, const onnx::NodeProto*>> withSubgraphs;
  for (auto& nodeProto : *proto.mutable_node()) {
    if (auto status = inlineExternalTensors(nodeProto, baseDir, source); !status.ok()) {
      return status;
    }
    std::vector<Value*> inputs;
    for (const auto& name : nodeProto.input()) {
      inputs.push_back(name.empty() ? nullptr : graph.getOrCreateValue(name));
    }
    std::vector<Value*> outputs;
    for (const auto& name : nodeProto.output()) {
      if (name.empty()) {
        outputs.push_back(nullptr);
        continue;
      }
      Value* value = graph.getOrCreateValue(name);
      if (value->producer() != nullptr || value->isGraphInput() || value->isInitializer()) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": value '", name, "' is defined more than once (output of node '",
            nodeProto.name(), "' ", nodeProto.op_type(),
            "); every value must have exactly one definition"));
      }
      if (std::find(outputs.begin(), outputs.end(), value) != outputs.end()) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": node '", nodeProto.name(),
                                                       "' lists output '", name, "' twice"));
      }
      outputs.push_back(value);
    }
    Node* node = graph.createNodeWithOutputs(nodeProto.op_type(),
                                             normalizeDomain(nodeProto.domain()), inputs, outputs,
                                             nullptr, nodeProto.name());
    node->setDocString(nodeProto.doc_string());
    bool subgraphs = false;
    for (const auto& attribute : nodeProto.attribute()) {
      if (node->hasAttribute(attribute.name())) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": node '", nodeProto.name(), "' (", nodeProto.op_type(), ") has attribute '",
            attribute.name(), "' twice; attribute names must be unique within a node"));
      }
      node->setAttribute(attribute);
      subgraphs = subgraphs || attribute.has_g() || attribute.graphs_size() > 0;
    }
    if (subgraphs) withSubgraphs.emplace_back(node, &nodeProto);
  }

  for (const auto& info : proto.value_info()) {
    Value* value = graph.getOrCreateValue(info.name());
    value->setType(typeWithValidShape(info.type()));
    value->setDocString(info.doc_string());
  }

  for (const auto& output : proto.output()) {
    Value* value = graph.getOrCreateValue(output.name());
    if (output.has_type()) value->setType(typeWithValidShape(output.type()));
    if (!output.doc_string().empty()) value->setDocString(output.doc_string());
    graph.addOutput(value);
  }

  // Names a subgraph reads from the outer scope become implicit uses.
  for (auto [node, nodeProto] : withSubgraphs) {
    std::set<std::string> outer;
    for (const auto& attribute : nodeProto->attribute()) {
      std::unordered_set<std::string> none;
      if (attribute.has_g()) collectOuterNames(attribute.g(), none, outer);
      for (const auto& g : attribute.graphs()) collectOuterNames(g, none, outer);
    }
    std::vector<Value*> implicit;
    for (const auto& name : outer) {
      if (Value* value = graph.findValue(name)) implicit.push_back(value);
    }
    node->setImplicitInputs(std::move(implicit));
  }

  for (const auto& node : graph.nodes()) {
    for (size_t i = 0; i < node->inputCount(); ++i) {
      const Value* input = node->input(i);
      if (input == nullptr) continue;
      if (input->producer() == nullptr && !input->isGraphInput() && !input->isInitializer()) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": input ", i, " ('", input->name(), "') of node ", node->describe(),
            " is not produced by any node, initializer or graph input"));
      }
    }
  }
  for (const Value* output : graph.outputs()) {
    if (output->producer() == nullptr && !output->isGraphInput() && !output->isInitializer()) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": graph output '", output->name(),
          "' is not produced by any node, initializer or graph input"));
    }
  }

  if (auto status = graph.topoSort(); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", status.message()));
  }

  onnx::GraphProto& extra = graph.extraFields();
  if (proto.has_doc_string()) extra.set_doc_string(proto.doc_string());
  *extra.mutable_quantization_annotation() = proto.quantization_annotation();
  return absl::OkStatus();
}

void exportValueInfo(const Value* value, onnx::ValueInfoProto* info) {
  info->set_name(value->name());
  if (value->type().value_case() != onnx::TypeProto::VALUE_NOT_SET) {
    *info->mutable_type() = value->type();
  }
  if (!value->docString().empty()) info->set_doc_string(value->docString());
}

std::string readAll(std::istream& in) {
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// True when `bytes` starts like the text format and its first 4 KiB have no
// control bytes other than whitespace, which binary protobuf almost always has.
bool looksLikeText(const std::string& bytes) {
  size_t limit = std::min<size_t>(bytes.size(), 4096);
  for (size_t i = 0; i < limit; ++i) {
    unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c < 0x20 && c != '\n' && c != '\t' && c != '\r') return false;
    if (c == 0x7f) return false;
  }
  for (char c : bytes) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') continue;
    return c == '<' || c == '#' || c == '_' || c == '"' || std::isalpha(static_cast<unsigned char>(c));
  }
  return false;
}

// Temporary files being written, removed by a signal handler on SIGINT,
// SIGTERM or SIGHUP so that an interrupted run leaves nothing half-written.
// The handler may run on any thread at any moment, so the registry is a fixed
// array of slots with atomic states and no allocation. A slot's path is
// written while the slot is kClaimed, and the handler reads it only when the
// slot is kRegistered.
constexpr int kPendingSlots = 32;
enum SlotState : int { kFree = 0, kClaimed = 1, kRegistered = 2 };
struct PendingSlot {
  std::atomic<int> state{kFree};
  char path[PATH_MAX] = {};
};
PendingSlot gPendingSlots[kPendingSlots];
std::once_flag gHandlerOnce;

void removePendingFilesOnSignal(int signal) {
  for (auto& slot : gPendingSlots) {
    if (slot.state.load(std::memory_order_acquire) == kRegistered) unlink(slot.path);
  }
  // Die of the same signal, so that the parent's wait status reports it.
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}

// Registers `path` for removal on a signal and returns its slot. Returns -1
// when all slots are taken, and the file is then removed on failures only.
int registerPendingFile(const std::string& path) {
  std::call_once(gHandlerOnce, [] {
    for (int signal : {SIGINT, SIGTERM, SIGHUP}) std::signal(signal, removePendingFilesOnSignal);
  });
  if (path.size() >= PATH_MAX) return -1;
  for (int i = 0; i < kPendingSlots; ++i) {
    int expected = kFree;
    if (gPendingSlots[i].state.compare_exchange_strong(expected, kClaimed)) {
      std::memcpy(gPendingSlots[i].path, path.c_str(), path.size() + 1);
      gPendingSlots[i].state.store(kRegistered, std::memory_order_release);
      return i;
    }
  }
  return -1;
}

void unregisterPendingFile(int slot) {
  if (slot >= 0) gPendingSlots[slot].state.store(kFree, std::memory_order_release);
}

// Six random letters or digits, as mkstemp uses for its XXXXXX.
std::string randomSuffix() {
  static constexpr char kChars[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  unsigned char bytes[6];
  if (getrandom(bytes, sizeof(bytes), 0) != static_cast<ssize_t>(sizeof(bytes))) {
    // getrandom fails only before the kernel's pool is initialized; the
    // clock still makes a collision unlikely, and O_EXCL catches one.
    auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    std::memcpy(bytes, &now, sizeof(bytes));
  }
  std::string suffix;
  for (unsigned char byte : bytes) suffix.push_back(kChars[byte % (sizeof(kChars) - 1)]);
  return suffix;
}

// A temporary file `.<name>.tmp.XXXXXX` in the folder of `target` that
// replaces `target` on commit() and is removed if never committed, including
// when the process gets SIGINT, SIGTERM or SIGHUP. SIGKILL cannot be caught,
// so after one the temporary file stays, and `target` is still untouched.
class PendingFile {
 public:
  static absl::StatusOr<std::unique_ptr<PendingFile>> create(const std::filesystem::path& target) {
    std::filesystem::path dir = target.parent_path();
    if (dir.empty()) dir = ".";
    std::string prefix = (dir / absl::StrCat(".", target.filename().string(), ".tmp.")).string();
    // The name is registered before the file is created, so a signal handled
    // on any thread finds every temporary file that exists. Unlinking a name
    // not created yet does nothing, and the handler ends the process.
    for (int attempt = 0; attempt < 100; ++attempt) {
      std::string path = prefix + randomSuffix();
      int slot = registerPendingFile(path);
      int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd >= 0) return std::unique_ptr<PendingFile>(new PendingFile(target, path, fd, slot));
      int savedErrno = errno;
      unregisterPendingFile(slot);
      if (savedErrno != EEXIST) {
        return absl::PermissionDeniedError(absl::StrCat("cannot create a temporary file in '",
                                                        dir.string(), "': ",
                                                        std::strerror(savedErrno)));
      }
    }
    return absl::AlreadyExistsError(absl::StrCat(
        "cannot create a temporary file in '", dir.string(), "': 100 random names were taken"));
  }

  ~PendingFile() {
    if (fd_ >= 0) close(fd_);
    if (!committed_) unlink(tempPath_.c_str());
    unregisterPendingFile(slot_);
  }

  // Fills the file with `writer`, flushes it to disk and closes it.
  absl::Status write(const std::function<absl::Status(int fd)>& writer) {
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd_, 0666 & ~mask) != 0) return failed(std::strerror(errno));
    if (auto status = writer(fd_); !status.ok()) {
      return absl::Status(status.code(), failedMessage(status.message()));
    }
    if (fsync(fd_) != 0) return failed(std::strerror(errno));
    int result = close(fd_);
    fd_ = -1;
    if (result != 0) return failed(std::strerror(errno));
    return absl::OkStatus();
  }

  // Renames the written file over the target.
  absl::Status commit() {
    if (rename(tempPath_.c_str(), target_.c_str()) != 0) {
      return absl::InternalError(absl::StrCat("cannot rename the temporary file '", tempPath_,
                                              "' to '", target_.string(),
                                              "': ", std::strerror(errno)));
    }
    committed_ = true;
    return absl::OkStatus();
  }

 private:
  PendingFile(std::filesystem::path target, std::string tempPath, int fd, int slot)
      : target_(std::move(target)), tempPath_(std::move(tempPath)), fd_(fd), slot_(slot) {}

  std::string failedMessage(absl::string_view reason) const {
    return absl::StrCat("writing '", target_.string(), "' failed: ", reason,
                        "; the previous file, if any, is unchanged");
  }
  absl::Status failed(absl::string_view reason) const {
    return absl::InternalError(failedMessage(reason));
  }

  std::filesystem::path target_;
  std::string tempPath_;
  int fd_;
  int slot_;
  bool committed_ = false;
};

absl::Status writeAllBytes(int fd, std::string_view bytes) {
  const char* data = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t written = ::write(fd, data, left);
    if (written < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("write failed: ", std::strerror(errno)));
    }
    data += written;
    left -= static_cast<size_t>(written);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> importModel(onnx::ModelProto proto,
                                                   const std::filesystem::path& baseDir,
                                                   const std::string& source) {
  auto model = std::make_unique<Model>();
  if (!proto.has_graph()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": the model has no graph"));
  }
  if (auto status = checkOpsetImports(proto, source); !status.ok()) return status;
  onnx::GraphProto graph = std::move(*proto.mutable_graph());
  proto.clear_graph();
  model->header() = std::move(proto);
  model->setBaseDir(baseDir);
  if (auto status = importGraph(graph, model->graph(), baseDir, source); !status.ok()) {
    return status;
  }
  return model;
}

namespace {

bool omitsData(const Tensor& tensor, const ExportOptions& options) {
  return options.omitDataFrom > 0 && tensor.dataType() != DataType::kString &&
         tensor.byteSize() >= options.omitDataFrom;
}

}  // namespace

onnx::ModelProto exportModel(const Model& model, const ExportOptions& options) {
  onnx::ModelProto proto = model.header();
  onnx::GraphProto* graphProto = proto.mutable_graph();
  const Graph& graph = model.graph();
  graphProto->MergeFrom(graph.extraFields());
  graphProto->set_name(graph.name());

  for (const Value* input : graph.inputs()) exportValueInfo(input, graphProto->add_input());

  for (const Value* value : graph.initializers()) {
    const Tensor& tensor = *value->initializer();
    if (options.declareInitializersAbove > 0 &&
        tensor.byteSize() > options.declareInitializersAbove) {
      if (value->isGraphInput()) continue;
      auto* input = graphProto->add_input();
      input->set_name(value->name());
      auto* tensorType = input->mutable_type()->mutable_tensor_type();
      tensorType->set_elem_type(static_cast<int32_t>(tensor.dataType()));
      auto* shape = tensorType->mutable_shape();
      for (int64_t dim : tensor.dims()) shape->add_dim()->set_dim_value(dim);
      continue;
    }
    onnx::TensorProto* tensorProto = graphProto->add_initializer();
    if (omitsData(tensor, options)) {
      tensorProto->set_data_type(static_cast<int32_t>(tensor.dataType()));
      for (int64_t dim : tensor.dims()) tensorProto->add_dims(dim);
    } else if (options.elideDataAbove > 0 && tensor.byteSize() > options.elideDataAbove) {
      tensorProto->set_data_type(static_cast<int32_t>(tensor.dataType()));
      for (int64_t dim : tensor.dims()) tensorProto->add_dims(dim);
      tensorProto->set_data_location(onnx::TensorProto::EXTERNAL);
      auto* entry = tensorProto->add_external_data();
      entry->set_key("roformer.elided");
      entry->set_value(absl::StrFormat("%016x", tensor.contentHash()));
    } else {
      tensor.toProto(tensorProto);
    }
    tensorProto->set_name(value->name());
  }

  for (const auto& node : graph.nodes()) {
    onnx::NodeProto* nodeProto = graphProto->add_node();
    for (const Value* input : node->inputs()) {
      nodeProto->add_input(input != nullptr ? input->name() : std::string());
    }
    // Trailing omitted inputs are dropped, as ONNX writers do.
    while (nodeProto->input_size() > 0 && nodeProto->input(nodeProto->input_size() - 1).empty()) {
      nodeProto->mutable_input()->RemoveLast();
    }
    for (const Value* output : node->outputs()) {
      nodeProto->add_output(output != nullptr ? output->name() : std::string());
    }
    if (!node->name().empty()) nodeProto->set_name(node->name());
    nodeProto->set_op_type(node->opType());
    if (!node->domain().empty()) nodeProto->set_domain(node->domain());
    for (const auto& attribute : node->attributes()) *nodeProto->add_attribute() = attribute;
    if (!node->docString().empty()) nodeProto->set_doc_string(node->docString());
  }

  for (const Value* value : graph.values()) {
    if (value->isGraphInput() || value->isGraphOutput() || value->isInitializer()) continue;
    if (value->type().value_case() == onnx::TypeProto::VALUE_NOT_SET) continue;
    if (value->producer() == nullptr && !value->hasUses()) continue;
    exportValueInfo(value, graphProto->add_value_info());
  }

  for (const Value* output : graph.outputs()) exportValueInfo(output, graphProto->add_output());
  return proto;
}

absl::StatusOr<std::unique_ptr<Model>> loadModelFromBytes(std::string bytes,
                                                          const std::filesystem::path& baseDir,
                                                          const std::string& source) {
  if (bytes.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": the file is empty; expected a binary ONNX model or its text form"));
  }
  bool text = absl::EndsWith(source, ".onnxtxt");
  bool detectedText = false;
  onnx::ModelProto proto;
  if (!text && bytes.size() > INT32_MAX && !looksLikeText(bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": the file has ", bytes.size(), " bytes, more than the 2 GiB that a protobuf "
        "message may have; models this large keep their weights in external data files"));
  }
  if (!text) {
    google::protobuf::io::ArrayInputStream stream(bytes.data(), static_cast<int>(std::min<size_t>(
                                                                    bytes.size(), INT32_MAX)));
    google::protobuf::io::CodedInputStream coded(&stream);
    coded.SetTotalBytesLimit(INT32_MAX);
    bool parsed = bytes.size() <= INT32_MAX && proto.ParseFromCodedStream(&coded) &&
                  coded.ConsumedEntireMessage();
    if (!parsed) {
      if (!looksLikeText(bytes)) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": not a valid ONNX model (the protobuf data is truncated or corrupt, ",
            bytes.size(), " bytes read); re-export the model or check the file was fully copied"));
      }
      text = true;
      detectedText = true;
    } else if (!proto.has_graph() && looksLikeText(bytes)) {
      text = true;
      detectedText = true;
    }
  }
  if (text) {
    bytes.push_back('\0');
    auto parsed = parseModelText(std::string_view(bytes.data(), bytes.size() - 1), source);
    if (!parsed.ok() && detectedText) {
      // The name promised a binary model, so the message reports both failures.
      return absl::Status(parsed.status().code(),
                          absl::StrCat(source, ": not a binary ONNX model, and reading it as ONNX "
                                       "text failed: ", parsed.status().message()));
    }
    if (!parsed.ok()) return parsed.status();
    proto = *std::move(parsed);
  }
  bytes.clear();
  bytes.shrink_to_fit();
  return importModel(std::move(proto), baseDir, source);
}

namespace {

// Parses a regular file of at most 2 GiB as a binary ModelProto, reading it
// in chunks. Returns nullopt when the file cannot be opened or does not parse.
std::optional<onnx::ModelProto> parseBinaryModelFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct stat status;
  std::optional<onnx::ModelProto> proto;
  if (::fstat(fd, &status) == 0 && S_ISREG(status.st_mode) && status.st_size > 0 &&
      status.st_size <= INT32_MAX) {
    google::protobuf::io::FileInputStream stream(fd);
    google::protobuf::io::CodedInputStream coded(&stream);
    coded.SetTotalBytesLimit(INT32_MAX);
    proto.emplace();
    if (!proto->ParseFromCodedStream(&coded) || !coded.ConsumedEntireMessage() ||
        stream.GetErrno() != 0) {
      proto.reset();
    }
  }
  ::close(fd);
  return proto;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> loadModel(const std::string& path) {
  if (path == "-") {
    return loadModelFromBytes(readAll(std::cin), std::filesystem::current_path(), "<stdin>");
  }
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": is a folder; expected an .onnx or .onnxtxt file"));
  }
  std::filesystem::path baseDir = std::filesystem::path(path).parent_path();
  if (baseDir.empty()) baseDir = ".";
  if (!absl::EndsWith(path, ".onnxtxt")) {
    // A binary model is parsed straight from the file, so its bytes and the
    // parsed weights are never in memory at the same time. Anything that does
    // not parse as a model with a graph takes the whole-file path below,
    // which detects the text form and words the errors.
    std::optional<onnx::ModelProto> proto = parseBinaryModelFile(path);
    if (proto && proto->has_graph()) return importModel(*std::move(proto), baseDir, path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open the file (", std::strerror(errno), ")"));
  }
  std::string bytes = readAll(in);
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat(path, ": read failed (", std::strerror(errno), ")"));
  }
  return loadModelFromBytes(std::move(bytes), baseDir, path);
}

absl::Status writeFileAtomically(const std::filesystem::path& path,
                                 const std::function<absl::Status(int fd)>& writer) {
  auto pending = PendingFile::create(path);
  if (!pending.ok()) return pending.status();
  if (auto status = (*pending)->write(writer); !status.ok()) return status;
  return (*pending)->commit();
}

absl::Status writeFileAtomically(const std::filesystem::path& path, std::string_view bytes) {
  return writeFileAtomically(path, [&](int fd) { return writeAllBytes(fd, bytes); });
}

namespace {

// Writes the initializers of at least `thresholdBytes` bytes (strings stay
// inline) into a pending `dataPath` and points their protos, which
// exportModel left without data, at it.
absl::StatusOr<std::unique_ptr<PendingFile>> writeExternalData(
    const Model& model, onnx::GraphProto& graphProto, const std::filesystem::path& dataPath,
    uint64_t thresholdBytes) {
  std::string dataName = dataPath.filename().string();
  std::vector<const Tensor*> tensors;
  std::vector<onnx::TensorProto*> protos;
  const auto& initializers = model.graph().initializers();
  for (int i = 0; i < graphProto.initializer_size(); ++i) {
    const Tensor* tensor = initializers[static_cast<size_t>(i)]->initializer().get();
    if (tensor->dataType() == DataType::kString) continue;
    if (tensor->byteSize() < thresholdBytes) continue;
    tensors.push_back(tensor);
    protos.push_back(graphProto.mutable_initializer(i));
  }

  auto pending = PendingFile::create(dataPath);
  if (!pending.ok()) return pending.status();
  auto status = (*pending)->write([&](int fd) -> absl::Status {
    uint64_t offset = 0;
    static const char kZeros[kExternalDataAlignment] = {};
    for (size_t i = 0; i < tensors.size(); ++i) {
      uint64_t padding =
          (kExternalDataAlignment - offset % kExternalDataAlignment) % kExternalDataAlignment;
      if (auto s = writeAllBytes(fd, std::string_view(kZeros, padding)); !s.ok()) return s;
      offset += padding;
      std::string_view bytes(reinterpret_cast<const char*>(tensors[i]->rawData()),
                             tensors[i]->byteSize());
      if (auto s = writeAllBytes(fd, bytes); !s.ok()) return s;
      onnx::TensorProto* tensorProto = protos[i];
      tensorProto->clear_raw_data();
      tensorProto->set_data_location(onnx::TensorProto::EXTERNAL);
      auto add = [&](const std::string& key, const std::string& value) {
        auto* entry = tensorProto->add_external_data();
        entry->set_key(key);
        entry->set_value(value);
      };
      add("location", dataName);
      add("offset", std::to_string(offset));
      add("length", std::to_string(bytes.size()));
      offset += bytes.size();
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return pending;
}

}  // namespace

absl::Status saveModel(const Model& model, const std::string& path, const SaveOptions& options) {
  uint64_t initializerBytes = 0;
  for (const Value* value : model.graph().initializers()) {
    initializerBytes += value->initializer()->byteSize();
  }
  bool external = options.externalData == ExternalDataMode::kAlways ||
                  (options.externalData == ExternalDataMode::kAuto &&
                   initializerBytes > kExternalDataAutoLimit);
  if (external && options.text) {
    external = options.externalData == ExternalDataMode::kAlways;
  }
  if (!external && !options.text && initializerBytes > kExternalDataAutoLimit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the model's initializers take ", initializerBytes,
        " bytes, above protobuf's 2 GB message limit; save with external data"));
  }
  if (external && path == "-") {
    return absl::InvalidArgumentError(
        "external data cannot be written to standard output; give an output file with -o");
  }

  // Tensors bound for the data file are exported without their bytes, which
  // are copied from the tensors straight into the file instead. Empty tensors
  // stay inline. A binary model file gets the same treatment for its inline
  // initializers: their bytes go from the tensors into the file as it is
  // serialized, so the weights are never in memory twice.
  bool binaryFile = !options.text && path != "-";
  uint64_t externalFrom = std::max<uint64_t>(options.externalThresholdBytes, 1);
  ExportOptions exportOptions;
  if (external) {
    exportOptions.omitDataFrom = externalFrom;
  } else if (binaryFile) {
    exportOptions.omitDataFrom = 1;
  }
  onnx::ModelProto proto = exportModel(model, exportOptions);
  std::vector<const Tensor*> inlineData;
  for (const Value* value : model.graph().initializers()) {
    const Tensor* tensor = value->initializer().get();
    inlineData.push_back(binaryFile && !external && omitsData(*tensor, exportOptions) ? tensor
                                                                                       : nullptr);
  }

  std::unique_ptr<PendingFile> pendingData;
  if (external) {
    std::filesystem::path target(path);
    auto written = writeExternalData(model, *proto.mutable_graph(),
                                     target.parent_path() / (target.filename().string() + ".data"),
                                     externalFrom);
    if (!written.ok()) return written.status();
    pendingData = *std::move(written);
  }

  std::function<absl::Status(int fd)> writer;
  std::string text;
  if (options.text) {
    PrintOptions printOptions;
    printOptions.elideTensorsAbove = options.elideConstantsAbove;
    auto printed = modelToText(proto, printOptions);
    if (!printed.ok()) return printed.status();
    text = *std::move(printed);
    if (path == "-") {
      std::cout << text;
      std::cout.flush();
      return std::cout ? absl::OkStatus() : absl::InternalError("writing standard output failed");
    }
    writer = [&](int fd) { return writeAllBytes(fd, text); };
  } else {
    if (path == "-") {
      if (!proto.SerializeToOstream(&std::cout)) {
        return absl::InternalError("writing the model to standard output failed");
      }
      std::cout.flush();
      return absl::OkStatus();
    }
    writer = [&](int fd) { return writeModelWithInitializerData(fd, proto, inlineData); };
  }

  auto pendingModel = PendingFile::create(path);
  if (!pendingModel.ok()) return pendingModel.status();
  if (auto status = (*pendingModel)->write(writer); !status.ok()) return status;
  // NOTE: between these two renames a crash leaves the new data file beside
  // the old model file; both writes are complete by then, so that window is
  // two system calls long.
  if (pendingData) {
    if (auto status = pendingData->commit(); !status.ok()) return status;
  }
  return (*pendingModel)->commit();
}

}  // namespace roformer::ir

namespace roformer::ir {

onnx::ModelProto exportForAnalysis(const Model& model, uint64_t inlineBytesLimit) {
  ExportOptions options;
  options.declareInitializersAbove = inlineBytesLimit;
  return exportModel(model, options);
}

}  // namespace roformer::ir
