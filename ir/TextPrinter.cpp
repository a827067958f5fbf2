// Prints a ModelProto in the text syntax that docs/text-format.md describes.
#include <xxhash.h>

#include <bit>
#include <charconv>
#include <cstring>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ir/TextFormat.h"
#include "ir/TextSyntax.h"

static_assert(std::endian::native == std::endian::little,
              "raw_data is little-endian; the printer copies it as native values");

namespace roformer::ir {
namespace {

using text::appendName;
using text::appendQuoted;
using text::concat;
using text::ElementType;
using text::ValueKind;

// Tensor bodies with more values than this go on their own lines, wrapped
// at kWrapColumn.
constexpr uint64_t kInlineValueLimit = 16;
constexpr size_t kWrapColumn = 100;
// The printer hands text to the stream in pieces of about this size.
constexpr size_t kFlushBytes = size_t{1} << 20;
// The external_data key under which the IR exporter records the content hash
// of a tensor whose bytes it left out.
constexpr std::string_view kElidedKey = "roformer.elided";

std::string quotedForMessage(std::string_view name) {
  std::string quoted;
  appendQuoted(quoted, name);
  return quoted;
}

absl::Status cannotExpress(std::string_view feature, std::string_view where) {
  return absl::UnimplementedError(concat("cannot print ", feature, " in ", where,
                                         ": the text format cannot express ", feature,
                                         "; keep the model in binary form"));
}

// Returns the number of elements that the dims of `tensor` describe.
absl::StatusOr<uint64_t> countElements(const onnx::TensorProto& tensor, std::string_view label) {
  uint64_t count = 1;
  for (int64_t dim : tensor.dims()) {
    if (dim < 0) {
      return absl::InvalidArgumentError(
          concat(label, " has negative dimension ", dim, "; fix the model's dims"));
    }
    uint64_t next = count * static_cast<uint64_t>(dim);
    if (dim != 0 && next / static_cast<uint64_t>(dim) != count) {
      return absl::InvalidArgumentError(concat(label, " has dims whose product overflows 64 bits"));
    }
    count = next;
  }
  return count;
}

// Copies `values` into `bytes` as little-endian `Target`s, failing when a
// value does not fit (int8 data stored as int32_data 300, for example).
template <typename Target, typename Source>
absl::Status packValues(const Source& values, std::string& bytes, std::string_view field,
                        std::string_view label) {
  bytes.resize(static_cast<size_t>(values.size()) * sizeof(Target));
  char* out = bytes.data();
  for (auto value : values) {
    using SourceValue = decltype(value);
    Target narrowed = static_cast<Target>(value);
    // Same-type copies need no check, which also lets NaN through.
    if (!std::is_same_v<Target, SourceValue> && static_cast<SourceValue>(narrowed) != value) {
      return absl::InvalidArgumentError(
          concat(label, " has ", field, " value ", value, ", which does not fit its element type"));
    }
    std::memcpy(out, &narrowed, sizeof(Target));
    out += sizeof(Target);
  }
  return absl::OkStatus();
}

// Converts the typed value fields of `tensor` (float_data, int32_data, ...)
// to the packed little-endian form of raw_data. ONNX assigns one field to
// each element type, and values in any other field are an error.
absl::StatusOr<std::string> packTypedFields(const onnx::TensorProto& tensor,
                                            const ElementType& type, std::string_view label) {
  std::string bytes;
  std::string_view expectedField;
  absl::Status status;
  switch (type.dataType) {
    case onnx::TensorProto::FLOAT:
    case onnx::TensorProto::COMPLEX64:
      expectedField = "float_data";
      status = packValues<float>(tensor.float_data(), bytes, expectedField, label);
      break;
    case onnx::TensorProto::DOUBLE:
    case onnx::TensorProto::COMPLEX128:
      expectedField = "double_data";
      status = packValues<double>(tensor.double_data(), bytes, expectedField, label);
      break;
    case onnx::TensorProto::INT64:
      expectedField = "int64_data";
      status = packValues<int64_t>(tensor.int64_data(), bytes, expectedField, label);
      break;
    case onnx::TensorProto::UINT32:
      expectedField = "uint64_data";
      status = packValues<uint32_t>(tensor.uint64_data(), bytes, expectedField, label);
      break;
    case onnx::TensorProto::UINT64:
      expectedField = "uint64_data";
      status = packValues<uint64_t>(tensor.uint64_data(), bytes, expectedField, label);
      break;
    case onnx::TensorProto::INT32:
      expectedField = "int32_data";
      status = packValues<int32_t>(tensor.int32_data(), bytes, expectedField, label);
      break;
    case onnx::TensorProto::INT16:
      expectedField = "int32_data";
      status = packValues<int16_t>(tensor.int32_data(), bytes, expectedField, label);
      break;
    case onnx::TensorProto::INT8:
      expectedField = "int32_data";
      status = packValues<int8_t>(tensor.int32_data(), bytes, expectedField, label);
      break;
    case onnx::TensorProto::UINT16:
    case onnx::TensorProto::FLOAT16:
    case onnx::TensorProto::BFLOAT16:
      // 16-bit floats are stored as their bit patterns.
      expectedField = "int32_data";
      status = packValues<uint16_t>(tensor.int32_data(), bytes, expectedField, label);
      break;
    case onnx::TensorProto::UINT8:
    case onnx::TensorProto::BOOL:
      expectedField = "int32_data";
      status = packValues<uint8_t>(tensor.int32_data(), bytes, expectedField, label);
      break;
    default:
      return absl::InternalError(concat("no typed field for element type ", type.name));
  }
  if (!status.ok()) return status;

  const std::pair<std::string_view, int> fieldSizes[] = {
      {"float_data", tensor.float_data_size()},   {"double_data", tensor.double_data_size()},
      {"int32_data", tensor.int32_data_size()},   {"int64_data", tensor.int64_data_size()},
      {"uint64_data", tensor.uint64_data_size()}, {"string_data", tensor.string_data_size()},
  };
  for (const auto& [field, size] : fieldSizes) {
    if (size > 0 && field != expectedField) {
      return absl::InvalidArgumentError(concat(label, " of type ", type.name, " has values in ",
                                               field, ", but ONNX stores ", type.name,
                                               " values in ", expectedField));
    }
  }
  return bytes;
}

bool hasTypedFields(const onnx::TensorProto& tensor) {
  return tensor.float_data_size() > 0 || tensor.double_data_size() > 0 ||
         tensor.int32_data_size() > 0 || tensor.int64_data_size() > 0 ||
         tensor.uint64_data_size() > 0 || tensor.string_data_size() > 0;
}

std::string hashToHex(uint64_t hash) { return absl::StrFormat("%016x", hash); }

// Hashes a tensor's content as Tensor::contentHash does, so that a constant
// elided here and one the IR exporter marked carry the same hash. The hash
// is xxHash3 (64 bits) of the data_type as int32, each dim as int64, then
// the packed little-endian values (for strings, each element's 8-byte
// length and bytes).
uint64_t hashContent(const onnx::TensorProto& tensor, std::string_view packedValues) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  int32_t dataType = tensor.data_type();
  XXH3_64bits_update(state, &dataType, sizeof(dataType));
  for (int64_t dim : tensor.dims()) XXH3_64bits_update(state, &dim, sizeof(dim));
  if (tensor.data_type() == onnx::TensorProto::STRING) {
    for (const std::string& element : tensor.string_data()) {
      uint64_t length = element.size();
      XXH3_64bits_update(state, &length, sizeof(length));
      XXH3_64bits_update(state, element.data(), element.size());
    }
  } else {
    XXH3_64bits_update(state, packedValues.data(), packedValues.size());
  }
  uint64_t hash = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return hash;
}

void appendOpsetImports(
    std::string& out, const google::protobuf::RepeatedPtrField<onnx::OperatorSetIdProto>& opsets) {
  out += '[';
  for (int i = 0; i < opsets.size(); ++i) {
    if (i > 0) out += ", ";
    appendQuoted(out, opsets[i].domain());
    out += concat(" : ", opsets[i].version());
  }
  out += ']';
}

class Printer {
 public:
  Printer(std::ostream* out, const PrintOptions& options) : out_(out), options_(options) {}

  absl::Status printModel(const onnx::ModelProto& model);
  // Returns the text not yet flushed, which is all of it without a stream.
  std::string takeText() { return std::move(text_); }
  // Writes the buffered text to the stream, if there is one.
  absl::Status flush();

 private:
  void newline(int indent);
  size_t column() const { return text_.size() - lineStart_; }

  void printModelHeader(const onnx::ModelProto& model);
  absl::Status printFunction(const onnx::FunctionProto& function);
  absl::Status printGraph(const onnx::GraphProto& graph, int indent, const std::string& where);
  absl::Status printValueInfo(const onnx::ValueInfoProto& info, const std::string& where);
  absl::Status printType(const onnx::TypeProto& type, const std::string& where);
  void printShape(const onnx::TensorShapeProto& shape);
  void printNameList(const google::protobuf::RepeatedPtrField<std::string>& names);
  absl::Status printNode(const onnx::NodeProto& node, int indent, const std::string& where);
  absl::Status printOperator(const onnx::NodeProto& node);
  absl::Status printAttribute(const onnx::AttributeProto& attribute, int indent,
                              const std::string& where);
  absl::Status printAttributeValue(const onnx::AttributeProto& attribute, int indent,
                                   const std::string& where);

  absl::Status printTensorType(const onnx::TensorProto& tensor, const std::string& label);
  // Prints `type [name] value`, the form of tensors inside attributes.
  absl::Status printTensorLiteral(const onnx::TensorProto& tensor, int indent,
                                  const std::string& label);
  // Prints the value of a tensor: `{...}`, `external(...)` or `elided(...)`.
  absl::Status printTensorData(const onnx::TensorProto& tensor, int indent,
                               const std::string& label);
  void printExternal(const onnx::TensorProto& tensor);
  void printElided(std::string_view hash, uint64_t elements);
  void printValues(std::string_view bytes, const ElementType& type, uint64_t count, int indent);
  void printStrings(const onnx::TensorProto& tensor, int indent);
  // Appends `value`, after ", " unless it is the first value. With `wrap`, a
  // line break replaces the space when the line would pass kWrapColumn.
  void appendWrapped(std::string_view value, bool first, bool wrap, int indent);

  // Returns the spelling of a 16-bit float from `cache`, filling the entry
  // on first use: finding the shortest spelling takes several conversions,
  // and large tensors repeat bit patterns.
  static std::string_view spell16(std::vector<std::string>& cache, uint16_t bits,
                                  void (*append)(std::string&, uint16_t)) {
    if (cache.empty()) cache.resize(size_t{1} << 16);
    std::string& spelling = cache[bits];
    if (spelling.empty()) append(spelling, bits);
    return spelling;
  }

  std::ostream* out_;
  const PrintOptions& options_;
  std::vector<std::string> float16Spellings_;
  std::vector<std::string> bfloat16Spellings_;
  std::string text_;
  size_t lineStart_ = 0;
  std::string scratch_;
};

absl::Status Printer::flush() {
  if (out_ == nullptr) return absl::OkStatus();
  out_->write(text_.data(), static_cast<std::streamsize>(text_.size()));
  text_.clear();
  lineStart_ = 0;
  if (!*out_) return absl::DataLossError("writing the model text to the output stream failed");
  return absl::OkStatus();
}

void Printer::newline(int indent) {
  text_ += '\n';
  if (out_ != nullptr && text_.size() >= kFlushBytes) {
    // A failed write is reported by the final flush, since the stream stays failed.
    (void)flush();
  }
  lineStart_ = text_.size();
  text_.append(static_cast<size_t>(indent), ' ');
}

absl::Status Printer::printModel(const onnx::ModelProto& model) {
  if (model.training_info_size() > 0) {
    return cannotExpress("training_info", "the model");
  }
  if (!model.has_graph()) {
    return absl::InvalidArgumentError("the model has no graph; the text format needs one");
  }

  printModelHeader(model);
  absl::Status status =
      printGraph(model.graph(), 0, "graph " + quotedForMessage(model.graph().name()));
  if (!status.ok()) return status;
  for (const onnx::FunctionProto& function : model.functions()) {
    newline(0);
    newline(0);
    status = printFunction(function);
    if (!status.ok()) return status;
  }
  newline(0);
  return absl::OkStatus();
}

void Printer::printModelHeader(const onnx::ModelProto& model) {
  std::vector<std::string> fields;
  if (model.has_ir_version()) fields.push_back(concat("ir_version: ", model.ir_version()));
  if (model.opset_import_size() > 0) {
    std::string field = "opset_import: ";
    appendOpsetImports(field, model.opset_import());
    fields.push_back(std::move(field));
  }
  auto addString = [&](std::string_view key, bool present, const std::string& value) {
    if (!present) return;
    std::string field = concat(key, ": ");
    appendQuoted(field, value);
    fields.push_back(std::move(field));
  };
  addString("producer_name", model.has_producer_name(), model.producer_name());
  addString("producer_version", model.has_producer_version(), model.producer_version());
  addString("domain", model.has_domain(), model.domain());
  if (model.has_model_version()) {
    fields.push_back(concat("model_version: ", model.model_version()));
  }
  addString("doc_string", model.has_doc_string(), model.doc_string());
  if (model.metadata_props_size() > 0) {
    std::string field = "metadata_props: [";
    for (int i = 0; i < model.metadata_props_size(); ++i) {
      if (i > 0) field += ", ";
      appendQuoted(field, model.metadata_props(i).key());
      field += " : ";
      appendQuoted(field, model.metadata_props(i).value());
    }
    field += ']';
    fields.push_back(std::move(field));
  }
  if (fields.empty()) return;

  text_ += '<';
  for (size_t i = 0; i < fields.size(); ++i) {
    newline(2);
    text_ += fields[i];
    if (i + 1 < fields.size()) text_ += ',';
  }
  newline(0);
  text_ += '>';
  newline(0);
}

absl::Status Printer::printFunction(const onnx::FunctionProto& function) {
  std::string where = "function " + quotedForMessage(function.name());
  bool header =
      function.has_domain() || function.opset_import_size() > 0 || function.has_doc_string();
  if (header) {
    text_ += '<';
    bool first = true;
    auto startField = [&] {
      if (!first) text_ += ',';
      first = false;
      newline(2);
    };
    if (function.has_domain()) {
      startField();
      text_ += "domain: ";
      appendQuoted(text_, function.domain());
    }
    if (function.opset_import_size() > 0) {
      startField();
      text_ += "opset_import: ";
      appendOpsetImports(text_, function.opset_import());
    }
    if (function.has_doc_string()) {
      startField();
      text_ += "doc_string: ";
      appendQuoted(text_, function.doc_string());
    }
    newline(0);
    text_ += '>';
    newline(0);
  }

  appendName(text_, function.name());
  if (function.attribute_size() > 0) {
    text_ += " <";
    for (int i = 0; i < function.attribute_size(); ++i) {
      if (i > 0) text_ += ", ";
      appendName(text_, function.attribute(i));
    }
    text_ += '>';
  }
  text_ += ' ';
  printNameList(function.input());
  text_ += " => ";
  printNameList(function.output());
  text_ += " {";
  for (const onnx::NodeProto& node : function.node()) {
    newline(2);
    absl::Status status = printNode(node, 2, where);
    if (!status.ok()) return status;
  }
  newline(0);
  text_ += '}';
  return absl::OkStatus();
}

void Printer::printNameList(const google::protobuf::RepeatedPtrField<std::string>& names) {
  text_ += '(';
  for (int i = 0; i < names.size(); ++i) {
    if (i > 0) text_ += ", ";
    appendName(text_, names[i]);
  }
  text_ += ')';
}

absl::Status Printer::printGraph(const onnx::GraphProto& graph, int indent,
                                 const std::string& where) {
  if (graph.sparse_initializer_size() > 0) {
    return cannotExpress(concat("sparse initializers (",
                                quotedForMessage(graph.sparse_initializer(0).values().name()), ")"),
                         where);
  }
  if (graph.quantization_annotation_size() > 0) {
    return cannotExpress("quantization_annotation", where);
  }

  appendName(text_, graph.name());
  text_ += " (";
  for (int i = 0; i < graph.input_size(); ++i) {
    if (i > 0) text_ += ", ";
    absl::Status status = printValueInfo(graph.input(i), where);
    if (!status.ok()) return status;
  }
  text_ += ") => (";
  for (int i = 0; i < graph.output_size(); ++i) {
    if (i > 0) text_ += ", ";
    absl::Status status = printValueInfo(graph.output(i), where);
    if (!status.ok()) return status;
  }
  text_ += ')';

  if (graph.initializer_size() > 0 || graph.value_info_size() > 0) {
    text_ += " <";
    int entries = graph.initializer_size() + graph.value_info_size();
    int printed = 0;
    for (const onnx::TensorProto& initializer : graph.initializer()) {
      newline(indent + 2);
      std::string label =
          concat("initializer ", quotedForMessage(initializer.name()), " of ", where);
      absl::Status status = printTensorType(initializer, label);
      if (!status.ok()) return status;
      text_ += ' ';
      appendName(text_, initializer.name());
      text_ += " = ";
      status = printTensorData(initializer, indent + 2, label);
      if (!status.ok()) return status;
      if (++printed < entries) text_ += ',';
    }
    for (const onnx::ValueInfoProto& info : graph.value_info()) {
      newline(indent + 2);
      absl::Status status = printValueInfo(info, where);
      if (!status.ok()) return status;
      if (++printed < entries) text_ += ',';
    }
    newline(indent);
    text_ += '>';
  }

  text_ += " {";
  for (const onnx::NodeProto& node : graph.node()) {
    newline(indent + 2);
    absl::Status status = printNode(node, indent + 2, where);
    if (!status.ok()) return status;
  }
  newline(indent);
  text_ += '}';
  return absl::OkStatus();
}

absl::Status Printer::printValueInfo(const onnx::ValueInfoProto& info, const std::string& where) {
  // A TypeProto with no type set carries no information, so it prints like
  // a missing type.
  if (info.has_type() && info.type().value_case() != onnx::TypeProto::VALUE_NOT_SET) {
    absl::Status status =
        printType(info.type(), concat("value ", quotedForMessage(info.name()), " of ", where));
    if (!status.ok()) return status;
    text_ += ' ';
  }
  appendName(text_, info.name());
  return absl::OkStatus();
}

absl::Status Printer::printType(const onnx::TypeProto& type, const std::string& where) {
  auto elementName = [&](int32_t dataType) -> absl::StatusOr<std::string_view> {
    const ElementType* element = text::findElementType(dataType);
    if (element == nullptr) {
      return absl::InvalidArgumentError(
          concat("the type of ", where, " has element type ", dataType,
                 ", which is not an ONNX element type the text format can name"));
    }
    return element->name;
  };
  auto missing = [&](std::string_view part) {
    return absl::InvalidArgumentError(
        concat("the type of ", where, " has no ", part, "; complete the type"));
  };

  switch (type.value_case()) {
    case onnx::TypeProto::kTensorType: {
      const auto& tensor = type.tensor_type();
      auto name = elementName(tensor.elem_type());
      if (!name.ok()) return name.status();
      text_ += *name;
      if (tensor.has_shape()) printShape(tensor.shape());
      return absl::OkStatus();
    }
    case onnx::TypeProto::kSparseTensorType: {
      const auto& tensor = type.sparse_tensor_type();
      auto name = elementName(tensor.elem_type());
      if (!name.ok()) return name.status();
      text_ += concat("sparse_tensor(", *name);
      if (tensor.has_shape()) printShape(tensor.shape());
      text_ += ')';
      return absl::OkStatus();
    }
    case onnx::TypeProto::kSequenceType: {
      if (!type.sequence_type().has_elem_type()) return missing("sequence element type");
      text_ += "seq(";
      absl::Status status = printType(type.sequence_type().elem_type(), where);
      if (!status.ok()) return status;
      text_ += ')';
      return absl::OkStatus();
    }
    case onnx::TypeProto::kOptionalType: {
      if (!type.optional_type().has_elem_type()) return missing("optional element type");
      text_ += "optional(";
      absl::Status status = printType(type.optional_type().elem_type(), where);
      if (!status.ok()) return status;
      text_ += ')';
      return absl::OkStatus();
    }
    case onnx::TypeProto::kMapType: {
      const auto& map = type.map_type();
      if (!map.has_value_type()) return missing("map value type");
      auto key = elementName(map.key_type());
      if (!key.ok()) return key.status();
      text_ += concat("map(", *key, ", ");
      absl::Status status = printType(map.value_type(), where);
      if (!status.ok()) return status;
      text_ += ')';
      return absl::OkStatus();
    }
    case onnx::TypeProto::kOpaqueType:
      return cannotExpress("opaque types", where);
    case onnx::TypeProto::VALUE_NOT_SET:
      return missing("type kind");
  }
  return missing("type kind");
}

// Prints the dims in brackets, so a scalar prints `[]`. A type without a
// shape (unknown rank) prints no brackets at all.
void Printer::printShape(const onnx::TensorShapeProto& shape) {
  text_ += '[';
  for (int i = 0; i < shape.dim_size(); ++i) {
    if (i > 0) text_ += ", ";
    const auto& dim = shape.dim(i);
    if (dim.has_dim_value()) {
      text_ += concat(dim.dim_value());
    } else if (dim.has_dim_param()) {
      appendName(text_, dim.dim_param());
    } else {
      text_ += '?';
    }
  }
  text_ += ']';
}

absl::Status Printer::printNode(const onnx::NodeProto& node, int indent, const std::string& where) {
  std::string label =
      concat("node ", quotedForMessage(node.name()), " (", node.op_type(), ") in ", where);
  if (node.has_name()) {
    text_ += '[';
    appendName(text_, node.name());
    text_ += "] ";
  }
  for (int i = 0; i < node.output_size(); ++i) {
    if (i > 0) text_ += ", ";
    appendName(text_, node.output(i));
  }
  text_ += node.output_size() > 0 ? " = " : "= ";
  absl::Status status = printOperator(node);
  if (!status.ok()) return status;

  if (node.attribute_size() > 0) {
    text_ += " <";
    for (int i = 0; i < node.attribute_size(); ++i) {
      if (i > 0) text_ += ", ";
      status = printAttribute(node.attribute(i), indent, label);
      if (!status.ok()) return status;
    }
    text_ += '>';
  }
  text_ += ' ';
  printNameList(node.input());
  return absl::OkStatus();
}

absl::Status Printer::printOperator(const onnx::NodeProto& node) {
  const std::string& domain = node.domain();
  if (!domain.empty()) {
    bool dotted = true;
    size_t start = 0;
    while (dotted) {
      size_t dot = domain.find('.', start);
      std::string_view segment = std::string_view(domain).substr(
          start, dot == std::string::npos ? std::string::npos : dot - start);
      dotted = text::isIdentifier(segment);
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    if (dotted) {
      text_ += domain;
    } else {
      appendQuoted(text_, domain);
    }
    text_ += '.';
  }
  // The operator position gives identifiers no keyword meaning, so only
  // non-identifiers are quoted.
  if (text::isIdentifier(node.op_type())) {
    text_ += node.op_type();
  } else {
    appendQuoted(text_, node.op_type());
  }
  return absl::OkStatus();
}

std::string_view attributeTypeName(onnx::AttributeProto::AttributeType type) {
  switch (type) {
    case onnx::AttributeProto::FLOAT:
      return "float";
    case onnx::AttributeProto::INT:
      return "int";
    case onnx::AttributeProto::STRING:
      return "string";
    case onnx::AttributeProto::TENSOR:
      return "tensor";
    case onnx::AttributeProto::GRAPH:
      return "graph";
    case onnx::AttributeProto::SPARSE_TENSOR:
      return "sparse_tensor";
    case onnx::AttributeProto::TYPE_PROTO:
      return "type_proto";
    case onnx::AttributeProto::FLOATS:
      return "floats";
    case onnx::AttributeProto::INTS:
      return "ints";
    case onnx::AttributeProto::STRINGS:
      return "strings";
    case onnx::AttributeProto::TENSORS:
      return "tensors";
    case onnx::AttributeProto::GRAPHS:
      return "graphs";
    case onnx::AttributeProto::SPARSE_TENSORS:
      return "sparse_tensors";
    case onnx::AttributeProto::TYPE_PROTOS:
      return "type_protos";
    default:
      return "";
  }
}

// Returns the number of values of a list attribute, or -1 for single values.
int listSize(const onnx::AttributeProto& attribute) {
  switch (attribute.type()) {
    case onnx::AttributeProto::FLOATS:
      return attribute.floats_size();
    case onnx::AttributeProto::INTS:
      return attribute.ints_size();
    case onnx::AttributeProto::STRINGS:
      return attribute.strings_size();
    case onnx::AttributeProto::TENSORS:
      return attribute.tensors_size();
    case onnx::AttributeProto::GRAPHS:
      return attribute.graphs_size();
    case onnx::AttributeProto::TYPE_PROTOS:
      return attribute.type_protos_size();
    default:
      return -1;
  }
}

absl::Status Printer::printAttribute(const onnx::AttributeProto& attribute, int indent,
                                     const std::string& where) {
  std::string label = concat("attribute ", quotedForMessage(attribute.name()), " of ", where);
  std::string_view typeName = attributeTypeName(attribute.type());
  if (attribute.type() == onnx::AttributeProto::SPARSE_TENSOR ||
      attribute.type() == onnx::AttributeProto::SPARSE_TENSORS) {
    if (!attribute.has_ref_attr_name()) return cannotExpress("sparse tensor attributes", label);
  }

  appendName(text_, attribute.name());
  if (attribute.has_ref_attr_name()) {
    // A reference may leave the type unset; then it prints untyped.
    if (!typeName.empty()) text_ += concat(": ", typeName);
    text_ += " = @";
    appendName(text_, attribute.ref_attr_name());
    return absl::OkStatus();
  }
  if (typeName.empty()) {
    return absl::InvalidArgumentError(
        concat(label, " has no valid type (type = ", static_cast<int>(attribute.type()),
               "); set AttributeProto.type"));
  }

  // The typed form is needed where the value alone does not show the type.
  bool typed = listSize(attribute) == 0 || attribute.type() == onnx::AttributeProto::TYPE_PROTO ||
               attribute.type() == onnx::AttributeProto::TYPE_PROTOS;
  if (typed) text_ += concat(": ", typeName);
  text_ += " = ";
  return printAttributeValue(attribute, indent, label);
}

absl::Status Printer::printAttributeValue(const onnx::AttributeProto& attribute, int indent,
                                          const std::string& label) {
  auto printList = [&](int size, auto printElement) -> absl::Status {
    text_ += '[';
    for (int i = 0; i < size; ++i) {
      if (i > 0) text_ += ", ";
      absl::Status status = printElement(i);
      if (!status.ok()) return status;
    }
    text_ += ']';
    return absl::OkStatus();
  };

  switch (attribute.type()) {
    case onnx::AttributeProto::FLOAT:
      text::appendFloat(text_, attribute.f());
      return absl::OkStatus();
    case onnx::AttributeProto::INT:
      text_ += concat(attribute.i());
      return absl::OkStatus();
    case onnx::AttributeProto::STRING:
      appendQuoted(text_, attribute.s());
      return absl::OkStatus();
    case onnx::AttributeProto::TENSOR:
      return printTensorLiteral(attribute.t(), indent, label);
    case onnx::AttributeProto::GRAPH:
      return printGraph(attribute.g(), indent, label);
    case onnx::AttributeProto::TYPE_PROTO:
      return printType(attribute.tp(), label);
    case onnx::AttributeProto::FLOATS:
      return printList(attribute.floats_size(), [&](int i) {
        text::appendFloat(text_, attribute.floats(i));
        return absl::OkStatus();
      });
    case onnx::AttributeProto::INTS:
      return printList(attribute.ints_size(), [&](int i) {
        text_ += concat(attribute.ints(i));
        return absl::OkStatus();
      });
    case onnx::AttributeProto::STRINGS:
      return printList(attribute.strings_size(), [&](int i) {
        appendQuoted(text_, attribute.strings(i));
        return absl::OkStatus();
      });
    case onnx::AttributeProto::TENSORS:
      return printList(attribute.tensors_size(), [&](int i) {
        return printTensorLiteral(attribute.tensors(i), indent,
                                  concat("tensor ", i, " of ", label));
      });
    case onnx::AttributeProto::GRAPHS:
      return printList(attribute.graphs_size(), [&](int i) {
        return printGraph(attribute.graphs(i), indent, concat("graph ", i, " of ", label));
      });
    case onnx::AttributeProto::TYPE_PROTOS:
      return printList(attribute.type_protos_size(),
                       [&](int i) { return printType(attribute.type_protos(i), label); });
    default:
      return absl::InternalError(concat("unhandled attribute type in ", label));
  }
}

absl::Status Printer::printTensorType(const onnx::TensorProto& tensor, const std::string& label) {
  const ElementType* type = text::findElementType(tensor.data_type());
  if (type == nullptr) {
    return absl::InvalidArgumentError(
        concat(label, " has data_type ", tensor.data_type(),
               ", which is not an ONNX element type the text format can name"));
  }
  text_ += type->name;
  text_ += '[';
  for (int i = 0; i < tensor.dims_size(); ++i) {
    if (i > 0) text_ += ", ";
    text_ += concat(tensor.dims(i));
  }
  text_ += ']';
  return absl::OkStatus();
}

absl::Status Printer::printTensorLiteral(const onnx::TensorProto& tensor, int indent,
                                         const std::string& label) {
  absl::Status status = printTensorType(tensor, label);
  if (!status.ok()) return status;
  if (tensor.has_name()) {
    text_ += ' ';
    appendName(text_, tensor.name());
  }
  text_ += ' ';
  return printTensorData(tensor, indent, label);
}

absl::Status Printer::printTensorData(const onnx::TensorProto& tensor, int indent,
                                      const std::string& label) {
  auto count = countElements(tensor, label);
  if (!count.ok()) return count.status();

  for (const auto& entry : tensor.external_data()) {
    if (entry.key() == kElidedKey) {
      printElided(entry.value(), *count);
      return absl::OkStatus();
    }
  }
  if (tensor.has_segment()) return cannotExpress("tensor segments", label);
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL) {
    if (tensor.has_raw_data() || hasTypedFields(tensor)) {
      return absl::InvalidArgumentError(
          concat(label, " is stored externally but also holds values; remove one of the two"));
    }
    printExternal(tensor);
    return absl::OkStatus();
  }

  const ElementType* typePointer = text::findElementType(tensor.data_type());
  if (typePointer == nullptr) {
    return absl::InvalidArgumentError(concat(label, " has data_type ", tensor.data_type(),
                                             ", which is not an ONNX element type"));
  }
  const ElementType& type = *typePointer;
  bool elide = options_.elideTensorsAbove > 0 && *count > options_.elideTensorsAbove;
  if (type.kind == ValueKind::kString) {
    if (tensor.has_raw_data()) {
      return absl::InvalidArgumentError(
          concat(label, " is a string tensor with raw_data; ONNX stores strings in string_data"));
    }
    if (static_cast<uint64_t>(tensor.string_data_size()) != *count) {
      return absl::InvalidArgumentError(
          concat(label, " has ", tensor.string_data_size(), " strings but its dims need ", *count));
    }
    if (elide) {
      printElided(hashToHex(hashContent(tensor, {})), *count);
    } else {
      printStrings(tensor, indent);
    }
    return absl::OkStatus();
  }

  std::string packed;
  std::string_view bytes;
  if (tensor.has_raw_data()) {
    if (hasTypedFields(tensor)) {
      return absl::InvalidArgumentError(
          concat(label, " has both raw_data and typed value fields; keep only raw_data"));
    }
    bytes = tensor.raw_data();
  } else {
    auto converted = packTypedFields(tensor, type, label);
    if (!converted.ok()) return converted.status();
    packed = std::move(*converted);
    bytes = packed;
  }
  // count * byteSize cannot overflow when it matches a buffer in memory, so
  // compare by division.
  if (bytes.size() % type.byteSize != 0 || bytes.size() / type.byteSize != *count) {
    return absl::InvalidArgumentError(concat(label, " has ", bytes.size(),
                                             " bytes of data but its dims need ", *count,
                                             " elements of ", type.byteSize, " bytes"));
  }
  if (elide) {
    printElided(hashToHex(hashContent(tensor, bytes)), *count);
  } else {
    printValues(bytes, type, *count, indent);
  }
  return absl::OkStatus();
}

void Printer::printExternal(const onnx::TensorProto& tensor) {
  text_ += "external(";
  for (int i = 0; i < tensor.external_data_size(); ++i) {
    const auto& entry = tensor.external_data(i);
    if (i > 0) text_ += ", ";
    appendName(text_, entry.key());
    text_ += ": ";
    const std::string& value = entry.value();
    bool digits = !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
    if (digits) {
      text_ += value;
    } else {
      appendQuoted(text_, value);
    }
  }
  text_ += ')';
}

void Printer::printElided(std::string_view hash, uint64_t elements) {
  text_ += "elided(xxh3: ";
  appendQuoted(text_, hash);
  text_ += concat(", elements: ", elements, ")");
}

void Printer::appendWrapped(std::string_view value, bool first, bool wrap, int indent) {
  if (!first) {
    text_ += ',';
    if (wrap && column() + 1 + value.size() > kWrapColumn) {
      newline(indent);
    } else {
      text_ += ' ';
    }
  }
  text_ += value;
}

void Printer::printValues(std::string_view bytes, const ElementType& type, uint64_t count,
                          int indent) {
  bool wrap = count > kInlineValueLimit;
  int valueIndent = indent + 2;
  text_ += '{';
  if (wrap) newline(valueIndent);

  const char* data = bytes.data();
  auto load = [&](auto& value, uint64_t index) {
    std::memcpy(&value, data + index * sizeof(value), sizeof(value));
  };
  uint64_t components = count;
  if (type.kind == ValueKind::kComplex64 || type.kind == ValueKind::kComplex128) components *= 2;

  for (uint64_t i = 0; i < components; ++i) {
    scratch_.clear();
    switch (type.kind) {
      case ValueKind::kFloat32:
      case ValueKind::kComplex64: {
        float value;
        load(value, i);
        text::appendFloat(scratch_, value);
        break;
      }
      case ValueKind::kFloat64:
      case ValueKind::kComplex128: {
        double value;
        load(value, i);
        text::appendDouble(scratch_, value);
        break;
      }
      case ValueKind::kFloat16: {
        uint16_t bits;
        load(bits, i);
        scratch_ += spell16(float16Spellings_, bits, text::appendFloat16);
        break;
      }
      case ValueKind::kBFloat16: {
        uint16_t bits;
        load(bits, i);
        scratch_ += spell16(bfloat16Spellings_, bits, text::appendBFloat16);
        break;
      }
      case ValueKind::kBool: {
        uint8_t value;
        load(value, i);
        // Bytes other than 0 and 1 print as numbers so that they survive.
        if (value <= 1) {
          scratch_ += value ? "true" : "false";
        } else {
          scratch_ += concat(value);
        }
        break;
      }
      case ValueKind::kSignedInteger: {
        int64_t value = 0;
        if (type.byteSize == 1) {
          int8_t v;
          load(v, i);
          value = v;
        }
        if (type.byteSize == 2) {
          int16_t v;
          load(v, i);
          value = v;
        }
        if (type.byteSize == 4) {
          int32_t v;
          load(v, i);
          value = v;
        }
        if (type.byteSize == 8) load(value, i);
        scratch_ += concat(value);
        break;
      }
      case ValueKind::kUnsignedInteger: {
        uint64_t value = 0;
        if (type.byteSize == 1) {
          uint8_t v;
          load(v, i);
          value = v;
        }
        if (type.byteSize == 2) {
          uint16_t v;
          load(v, i);
          value = v;
        }
        if (type.byteSize == 4) {
          uint32_t v;
          load(v, i);
          value = v;
        }
        if (type.byteSize == 8) load(value, i);
        scratch_ += concat(value);
        break;
      }
      case ValueKind::kString:
        break;
    }
    appendWrapped(scratch_, i == 0, wrap, valueIndent);
  }

  if (wrap) newline(indent);
  text_ += '}';
}

void Printer::printStrings(const onnx::TensorProto& tensor, int indent) {
  bool wrap = static_cast<uint64_t>(tensor.string_data_size()) > kInlineValueLimit;
  int valueIndent = indent + 2;
  text_ += '{';
  if (wrap) newline(valueIndent);
  for (int i = 0; i < tensor.string_data_size(); ++i) {
    scratch_.clear();
    appendQuoted(scratch_, tensor.string_data(i));
    appendWrapped(scratch_, i == 0, wrap, valueIndent);
  }
  if (wrap) newline(indent);
  text_ += '}';
}

}  // namespace

absl::Status printModelText(const onnx::ModelProto& model, std::ostream& out,
                            const PrintOptions& options) {
  Printer printer(&out, options);
  absl::Status status = printer.printModel(model);
  if (!status.ok()) return status;
  return printer.flush();
}

absl::StatusOr<std::string> modelToText(const onnx::ModelProto& model,
                                        const PrintOptions& options) {
  Printer printer(nullptr, options);
  absl::Status status = printer.printModel(model);
  if (!status.ok()) return status;
  return printer.takeText();
}

}  // namespace roformer::ir
