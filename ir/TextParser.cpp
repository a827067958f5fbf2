// Parses the text syntax that docs/text-format.md describes into a ModelProto.
#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "ir/TextFormat.h"
#include "ir/TextSyntax.h"

static_assert(std::endian::native == std::endian::little,
              "raw_data is little-endian; the parser stores native values");

#define TEXT_RETURN_IF_ERROR(expr)               \
  do {                                           \
    absl::Status statusOfExpr = (expr);          \
    if (!statusOfExpr.ok()) return statusOfExpr; \
  } while (false)

#define TEXT_ASSIGN_OR_RETURN(name, expr)                   \
  auto name##OrStatus = (expr);                             \
  if (!name##OrStatus.ok()) return name##OrStatus.status(); \
  auto& name = *name##OrStatus

namespace roformer::ir {
namespace {

using text::concat;
using text::ElementType;
using text::NumberStatus;
using text::ValueKind;

// Graphs inside attributes and types inside types recurse; this bounds the
// stack that hostile input can use.
constexpr int kMaxNesting = 100;

enum class TokenKind { kEnd, kIdentifier, kString, kNumber, kPunct, kArrow, kError };

struct Token {
  TokenKind kind = TokenKind::kEnd;
  // The token as written in the source.
  std::string_view text;
  // The unescaped bytes of a string, or the message of a lexical error.
  std::string value;
  size_t offset = 0;
  // For numbers: written with '.', an exponent, nan or inf.
  bool isFloat = false;
};

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isIdentifierStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool isIdentifierChar(char c) { return isIdentifierStart(c) || isDigit(c); }

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string hexByte(unsigned char byte) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  return {'0', 'x', kDigits[byte >> 4], kDigits[byte & 0xF]};
}

class Lexer {
 public:
  explicit Lexer(std::string_view text) : text_(text) {}

  void next(Token& token) {
    skipSpaceAndComments();
    token.value.clear();
    token.isFloat = false;
    token.offset = pos_;
    if (pos_ >= text_.size()) {
      token.kind = TokenKind::kEnd;
      token.text = {};
      return;
    }
    char c = text_[pos_];
    char following = pos_ + 1 < text_.size() ? text_[pos_ + 1] : '\0';
    if (isIdentifierStart(c)) {
      size_t start = pos_;
      while (pos_ < text_.size() && isIdentifierChar(text_[pos_])) ++pos_;
      token.kind = TokenKind::kIdentifier;
      token.text = text_.substr(start, pos_ - start);
    } else if (isDigit(c) || (c == '-' && (isDigit(following) || isIdentifierStart(following)))) {
      lexNumber(token);
    } else if (c == '"') {
      lexString(token);
    } else if (c == '=' && following == '>') {
      token.kind = TokenKind::kArrow;
      token.text = text_.substr(pos_, 2);
      pos_ += 2;
    } else if (std::string_view("<>()[]{},:=.@?").find(c) != std::string_view::npos) {
      token.kind = TokenKind::kPunct;
      token.text = text_.substr(pos_, 1);
      ++pos_;
    } else {
      unsigned char byte = static_cast<unsigned char>(c);
      fail(token, pos_,
           byte >= 0x21 && byte < 0x7F
               ? concat("unexpected character '", std::string_view(&c, 1), "'")
               : concat("unexpected byte ", hexByte(byte), " outside a string"));
    }
  }

 private:
  void skipSpaceAndComments() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
        ++pos_;
      } else if (c == '#') {
        size_t end = text_.find('\n', pos_);
        pos_ = end == std::string_view::npos ? text_.size() : end;
      } else {
        return;
      }
    }
  }

  void fail(Token& token, size_t offset, std::string message) {
    token.kind = TokenKind::kError;
    token.offset = offset;
    token.text = text_.substr(offset, 1);
    token.value = std::move(message);
  }

  // Numbers: -?digits[.digits][(e|E)[+-]digits], or -?identifier for -inf
  // and -nan (other words fail when converted).
  void lexNumber(Token& token) {
    size_t start = pos_;
    if (text_[pos_] == '-') ++pos_;
    if (isIdentifierStart(text_[pos_])) {
      while (pos_ < text_.size() && isIdentifierChar(text_[pos_])) ++pos_;
      token.isFloat = true;
    } else {
      while (pos_ < text_.size() && isDigit(text_[pos_])) ++pos_;
      if (pos_ < text_.size() && text_[pos_] == '.') {
        token.isFloat = true;
        ++pos_;
        while (pos_ < text_.size() && isDigit(text_[pos_])) ++pos_;
      }
      if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
        token.isFloat = true;
        ++pos_;
        if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
        if (pos_ >= text_.size() || !isDigit(text_[pos_])) {
          fail(token, start, "invalid number: expected digits after the exponent");
          return;
        }
        while (pos_ < text_.size() && isDigit(text_[pos_])) ++pos_;
      }
      if (pos_ < text_.size() && (isIdentifierChar(text_[pos_]) || text_[pos_] == '.')) {
        while (pos_ < text_.size() && (isIdentifierChar(text_[pos_]) || text_[pos_] == '.')) ++pos_;
        fail(token, start, concat("invalid number '", text_.substr(start, pos_ - start), "'"));
        return;
      }
    }
    token.kind = TokenKind::kNumber;
    token.text = text_.substr(start, pos_ - start);
  }

  void lexString(Token& token) {
    size_t start = pos_;
    ++pos_;
    while (true) {
      size_t runStart = pos_;
      while (pos_ < text_.size() && text_[pos_] != '"' && text_[pos_] != '\\' &&
             text_[pos_] != '\n') {
        ++pos_;
      }
      token.value.append(text_.data() + runStart, pos_ - runStart);
      if (pos_ >= text_.size() || text_[pos_] == '\n') {
        fail(token, start,
             "unterminated string: a string must end with '\"' on the line where it starts "
             "(write a line break as \\n)");
        return;
      }
      if (text_[pos_] == '"') {
        ++pos_;
        break;
      }
      // A backslash escape.
      size_t escapeStart = pos_;
      char escaped = pos_ + 1 < text_.size() ? text_[pos_ + 1] : '\0';
      pos_ += 2;
      switch (escaped) {
        case '"':
          token.value += '"';
          break;
        case '\\':
          token.value += '\\';
          break;
        case 'n':
          token.value += '\n';
          break;
        case 't':
          token.value += '\t';
          break;
        case 'r':
          token.value += '\r';
          break;
        case 'x': {
          int high = pos_ < text_.size() ? hexValue(text_[pos_]) : -1;
          int low = pos_ + 1 < text_.size() ? hexValue(text_[pos_ + 1]) : -1;
          if (high < 0 || low < 0) {
            fail(token, escapeStart, "invalid escape sequence: \\x needs two hex digits");
            return;
          }
          token.value += static_cast<char>(high * 16 + low);
          pos_ += 2;
          break;
        }
        default: {
          std::string escapeText =
              escaped == '\0' || static_cast<unsigned char>(escaped) < 0x20
                  ? concat("byte ", hexByte(static_cast<unsigned char>(escaped)))
                  : concat("'\\", std::string_view(&escaped, 1), "'");
          fail(token, escapeStart,
               concat("invalid escape sequence ", escapeText,
                      " in string; use \\\", \\\\, \\n, \\t, \\r or \\xHH"));
          return;
        }
      }
    }
    token.kind = TokenKind::kString;
    token.text = text_.substr(start, pos_ - start);
  }

  std::string_view text_;
  size_t pos_ = 0;
};

onnx::AttributeProto::AttributeType attributeTypeFromName(std::string_view name) {
  static const std::pair<std::string_view, onnx::AttributeProto::AttributeType> kTypes[] = {
      {"float", onnx::AttributeProto::FLOAT},
      {"int", onnx::AttributeProto::INT},
      {"string", onnx::AttributeProto::STRING},
      {"tensor", onnx::AttributeProto::TENSOR},
      {"graph", onnx::AttributeProto::GRAPH},
      {"sparse_tensor", onnx::AttributeProto::SPARSE_TENSOR},
      {"type_proto", onnx::AttributeProto::TYPE_PROTO},
      {"floats", onnx::AttributeProto::FLOATS},
      {"ints", onnx::AttributeProto::INTS},
      {"strings", onnx::AttributeProto::STRINGS},
      {"tensors", onnx::AttributeProto::TENSORS},
      {"graphs", onnx::AttributeProto::GRAPHS},
      {"sparse_tensors", onnx::AttributeProto::SPARSE_TENSORS},
      {"type_protos", onnx::AttributeProto::TYPE_PROTOS},
  };
  for (const auto& [typeName, type] : kTypes) {
    if (typeName == name) return type;
  }
  return onnx::AttributeProto::UNDEFINED;
}

// Returns the single-value type of a list attribute type (INT for INTS).
onnx::AttributeProto::AttributeType elementTypeOfList(onnx::AttributeProto::AttributeType type) {
  switch (type) {
    case onnx::AttributeProto::FLOATS:
      return onnx::AttributeProto::FLOAT;
    case onnx::AttributeProto::INTS:
      return onnx::AttributeProto::INT;
    case onnx::AttributeProto::STRINGS:
      return onnx::AttributeProto::STRING;
    case onnx::AttributeProto::TENSORS:
      return onnx::AttributeProto::TENSOR;
    case onnx::AttributeProto::GRAPHS:
      return onnx::AttributeProto::GRAPH;
    case onnx::AttributeProto::TYPE_PROTOS:
      return onnx::AttributeProto::TYPE_PROTO;
    default:
      return onnx::AttributeProto::UNDEFINED;
  }
}

std::string_view kindName(onnx::AttributeProto::AttributeType type) {
  switch (type) {
    case onnx::AttributeProto::FLOAT:
      return "a float";
    case onnx::AttributeProto::INT:
      return "an int";
    case onnx::AttributeProto::STRING:
      return "a string";
    case onnx::AttributeProto::TENSOR:
      return "a tensor";
    case onnx::AttributeProto::GRAPH:
      return "a graph";
    default:
      return "a value";
  }
}

std::string quoted(std::string_view name) {
  std::string out;
  text::appendQuoted(out, name);
  return out;
}

class Parser {
 public:
  Parser(std::string_view text, std::string_view source)
      : text_(text), source_(source), lexer_(text) {
    advance();
  }

  absl::Status parseModel(onnx::ModelProto& model);

 private:
  class NestingGuard {
   public:
    explicit NestingGuard(int& depth) : depth_(depth) { ++depth_; }
    ~NestingGuard() { --depth_; }
    NestingGuard(const NestingGuard&) = delete;
    NestingGuard& operator=(const NestingGuard&) = delete;

   private:
    int& depth_;
  };

  void advance() { lexer_.next(token_); }
  bool atPunct(char c) const { return token_.kind == TokenKind::kPunct && token_.text[0] == c; }
  bool atIdentifier(std::string_view word) const {
    return token_.kind == TokenKind::kIdentifier && token_.text == word;
  }
  bool consumePunct(char c) {
    if (!atPunct(c)) return false;
    advance();
    return true;
  }
  absl::Status expectPunct(char c, std::string_view context);
  absl::Status expectArrow(std::string_view context);
  absl::Status errorAt(size_t offset, std::string_view message) const;
  // Returns "expected <expected>, found <token>", or the lexer's error.
  absl::Status unexpected(std::string_view expected) const;
  absl::Status checkNesting() const;

  absl::StatusOr<std::string> parseName(std::string_view expected);
  absl::StatusOr<std::string> parseString(std::string_view expected);
  absl::StatusOr<int64_t> parseInteger(std::string_view expected);
  absl::StatusOr<float> parseFloat(std::string_view expected);

  absl::Status parseModelHeader(onnx::ModelProto& model);
  absl::Status parseOpsetImports(
      google::protobuf::RepeatedPtrField<onnx::OperatorSetIdProto>& opsets);
  absl::Status parseFunction(onnx::FunctionProto& function);
  absl::Status parseNameList(google::protobuf::RepeatedPtrField<std::string>& names,
                             std::string_view label);

  absl::Status parseGraph(onnx::GraphProto& graph);
  absl::Status parseGraphAfterName(std::string name, onnx::GraphProto& graph);
  absl::Status parseValueInfo(onnx::ValueInfoProto& info);
  absl::Status parseInitializerValue(const onnx::ValueInfoProto& info, size_t offset,
                                     onnx::TensorProto& tensor);
  absl::Status parseType(onnx::TypeProto& type);
  // Parses `[dims]` when present; sets the shape only then.
  template <typename TensorType>
  absl::Status parseOptionalShape(TensorType& tensorType);
  absl::Status parseShape(onnx::TensorShapeProto& shape);

  absl::Status parseNode(onnx::NodeProto& node);
  absl::Status parseAttributes(onnx::NodeProto& node);
  absl::Status parseAttribute(onnx::AttributeProto& attribute);
  absl::Status parseTypedValue(onnx::AttributeProto& attribute,
                               onnx::AttributeProto::AttributeType type);
  absl::Status parseUntypedValue(onnx::AttributeProto& attribute);
  absl::Status parseUntypedList(onnx::AttributeProto& attribute);
  absl::Status parseUntypedSingleValue(onnx::AttributeProto& attribute);

  // Sets data_type and dims of `tensor` from `type`, which must be a tensor
  // type with numeric dims.
  absl::Status setTensorType(const onnx::TypeProto& type, size_t offset, const std::string& label,
                             onnx::TensorProto& tensor);
  // Parses `type [name] [=] value`, the form of tensors inside attributes.
  absl::Status parseTensorLiteral(onnx::TensorProto& tensor);
  // Parses `{...}` or `external(...)`, and rejects `elided(...)`.
  absl::Status parseTensorData(onnx::TensorProto& tensor, const std::string& label);
  absl::Status parseExternal(onnx::TensorProto& tensor, const std::string& label);
  absl::Status parseValues(onnx::TensorProto& tensor, const std::string& label);
  absl::Status parseValue(const ElementType& type, std::string& bytes, const std::string& label);

  std::string_view text_;
  std::string_view source_;
  Lexer lexer_;
  Token token_;
  int depth_ = 0;
};

absl::Status Parser::errorAt(size_t offset, std::string_view message) const {
  offset = std::min(offset, text_.size());
  size_t line = 1 + static_cast<size_t>(std::count(text_.begin(), text_.begin() + offset, '\n'));
  size_t lineStart = text_.rfind('\n', offset == 0 ? 0 : offset - 1);
  lineStart = (lineStart == std::string_view::npos || offset == 0) ? 0 : lineStart + 1;
  size_t column = offset - lineStart + 1;
  return absl::InvalidArgumentError(concat(source_, ":", line, ":", column, ": ", message));
}

absl::Status Parser::unexpected(std::string_view expected) const {
  if (token_.kind == TokenKind::kError) return errorAt(token_.offset, token_.value);
  std::string found;
  switch (token_.kind) {
    case TokenKind::kEnd:
      found = "end of input";
      break;
    case TokenKind::kIdentifier:
      found = concat("'", token_.text, "'");
      break;
    case TokenKind::kString:
      found = token_.text.size() <= 40 ? concat("string ", token_.text)
                                       : concat("string ", token_.text.substr(0, 40), "...");
      break;
    case TokenKind::kNumber:
      found = concat("number ", token_.text);
      break;
    case TokenKind::kPunct:
    case TokenKind::kArrow:
      found = concat("'", token_.text, "'");
      break;
    case TokenKind::kError:
      break;
  }
  return errorAt(token_.offset, concat("expected ", expected, ", found ", found));
}

absl::Status Parser::expectPunct(char c, std::string_view context) {
  if (consumePunct(c)) return absl::OkStatus();
  return unexpected(concat("'", std::string_view(&c, 1), "' ", context));
}

absl::Status Parser::expectArrow(std::string_view context) {
  if (token_.kind == TokenKind::kArrow) {
    advance();
    return absl::OkStatus();
  }
  return unexpected(concat("'=>' ", context));
}

absl::Status Parser::checkNesting() const {
  if (depth_ <= kMaxNesting) return absl::OkStatus();
  return errorAt(token_.offset, concat("graphs or types nest deeper than ", kMaxNesting,
                                       " levels; the parser rejects such input"));
}

absl::StatusOr<std::string> Parser::parseName(std::string_view expected) {
  std::string name;
  if (token_.kind == TokenKind::kIdentifier) {
    name = std::string(token_.text);
  } else if (token_.kind == TokenKind::kString) {
    name = std::move(token_.value);
  } else {
    return unexpected(expected);
  }
  advance();
  return name;
}

absl::StatusOr<std::string> Parser::parseString(std::string_view expected) {
  if (token_.kind != TokenKind::kString) return unexpected(expected);
  std::string value = std::move(token_.value);
  advance();
  return value;
}

absl::StatusOr<int64_t> Parser::parseInteger(std::string_view expected) {
  if (token_.kind != TokenKind::kNumber || token_.isFloat) return unexpected(expected);
  int64_t value = 0;
  const char* end = token_.text.data() + token_.text.size();
  auto result = std::from_chars(token_.text.data(), end, value);
  if (result.ec != std::errc() || result.ptr != end) {
    return errorAt(token_.offset, concat("integer ", token_.text, " is out of the range of int64"));
  }
  advance();
  return value;
}

absl::StatusOr<float> Parser::parseFloat(std::string_view expected) {
  bool number =
      token_.kind == TokenKind::kNumber ||
      (token_.kind == TokenKind::kIdentifier && (token_.text == "nan" || token_.text == "inf"));
  if (!number) return unexpected(expected);
  float value = 0;
  NumberStatus status = text::parseFloatLiteral(token_.text, value);
  if (status == NumberStatus::kOutOfRange) {
    return errorAt(token_.offset, concat("number ", token_.text, " is out of the range of float"));
  }
  if (status != NumberStatus::kOk) {
    return errorAt(token_.offset, concat("invalid number '", token_.text, "'"));
  }
  advance();
  return value;
}

absl::Status Parser::parseModel(onnx::ModelProto& model) {
  if (consumePunct('<')) TEXT_RETURN_IF_ERROR(parseModelHeader(model));
  TEXT_RETURN_IF_ERROR(parseGraph(*model.mutable_graph()));
  while (token_.kind != TokenKind::kEnd) {
    TEXT_RETURN_IF_ERROR(parseFunction(*model.add_functions()));
  }
  return absl::OkStatus();
}

absl::Status Parser::parseModelHeader(onnx::ModelProto& model) {
  static constexpr std::string_view kKnownFields =
      "ir_version, opset_import, producer_name, producer_version, domain, model_version, "
      "doc_string or metadata_props";
  if (consumePunct('>')) return absl::OkStatus();
  std::set<std::string, std::less<>> seen;
  do {
    if (token_.kind != TokenKind::kIdentifier) {
      return unexpected(concat("a model field (", kKnownFields, ")"));
    }
    std::string key(token_.text);
    size_t keyOffset = token_.offset;
    static const std::set<std::string_view> kFields = {
        "ir_version", "opset_import",  "producer_name", "producer_version",
        "domain",     "model_version", "doc_string",    "metadata_props"};
    if (!kFields.contains(key)) {
      return errorAt(keyOffset, concat("unknown model field '", key, "'; expected ", kKnownFields));
    }
    if (!seen.insert(key).second) {
      return errorAt(keyOffset, concat("model field '", key, "' appears twice"));
    }
    advance();
    TEXT_RETURN_IF_ERROR(expectPunct(':', concat("after model field '", key, "'")));

    if (key == "ir_version" || key == "model_version") {
      TEXT_ASSIGN_OR_RETURN(value, parseInteger(concat("an integer for ", key)));
      if (key == "ir_version") {
        model.set_ir_version(value);
      } else {
        model.set_model_version(value);
      }
    } else if (key == "opset_import") {
      TEXT_RETURN_IF_ERROR(parseOpsetImports(*model.mutable_opset_import()));
    } else if (key == "metadata_props") {
      TEXT_RETURN_IF_ERROR(expectPunct('[', "to open metadata_props"));
      if (!consumePunct(']')) {
        do {
          auto* entry = model.add_metadata_props();
          TEXT_ASSIGN_OR_RETURN(entryKey, parseString("a metadata key string"));
          entry->set_key(std::move(entryKey));
          TEXT_RETURN_IF_ERROR(expectPunct(':', "between a metadata key and its value"));
          TEXT_ASSIGN_OR_RETURN(entryValue, parseString("a metadata value string"));
          entry->set_value(std::move(entryValue));
        } while (consumePunct(','));
        TEXT_RETURN_IF_ERROR(expectPunct(']', "to close metadata_props"));
      }
    } else {
      TEXT_ASSIGN_OR_RETURN(value, parseString(concat("a string for ", key)));
      if (key == "producer_name") model.set_producer_name(std::move(value));
      if (key == "producer_version") model.set_producer_version(std::move(value));
      if (key == "domain") model.set_domain(std::move(value));
      if (key == "doc_string") model.set_doc_string(std::move(value));
    }
  } while (consumePunct(','));
  return expectPunct('>', "to close the model header");
}

absl::Status Parser::parseOpsetImports(
    google::protobuf::RepeatedPtrField<onnx::OperatorSetIdProto>& opsets) {
  TEXT_RETURN_IF_ERROR(expectPunct('[', "to open opset_import"));
  if (consumePunct(']')) return absl::OkStatus();
  do {
    auto* opset = opsets.Add();
    TEXT_ASSIGN_OR_RETURN(domain, parseName("an opset domain string such as \"\""));
    opset->set_domain(std::move(domain));
    TEXT_RETURN_IF_ERROR(expectPunct(':', "between an opset domain and its version"));
    TEXT_ASSIGN_OR_RETURN(version, parseInteger("an opset version"));
    opset->set_version(version);
  } while (consumePunct(','));
  return expectPunct(']', "to close opset_import");
}

absl::Status Parser::parseFunction(onnx::FunctionProto& function) {
  if (consumePunct('<')) {
    std::set<std::string, std::less<>> seen;
    if (!consumePunct('>')) {
      do {
        if (token_.kind != TokenKind::kIdentifier) {
          return unexpected("a function field (domain, opset_import or doc_string)");
        }
        std::string key(token_.text);
        size_t keyOffset = token_.offset;
        if (key != "domain" && key != "opset_import" && key != "doc_string") {
          return errorAt(keyOffset, concat("unknown function field '", key,
                                           "'; expected domain, opset_import or doc_string"));
        }
        if (!seen.insert(key).second) {
          return errorAt(keyOffset, concat("function field '", key, "' appears twice"));
        }
        advance();
        TEXT_RETURN_IF_ERROR(expectPunct(':', concat("after function field '", key, "'")));
        if (key == "opset_import") {
          TEXT_RETURN_IF_ERROR(parseOpsetImports(*function.mutable_opset_import()));
        } else {
          TEXT_ASSIGN_OR_RETURN(value, parseString(concat("a string for ", key)));
          if (key == "domain") {
            function.set_domain(std::move(value));
          } else {
            function.set_doc_string(std::move(value));
          }
        }
      } while (consumePunct(','));
      TEXT_RETURN_IF_ERROR(expectPunct('>', "to close the function header"));
    }
  }

  TEXT_ASSIGN_OR_RETURN(name, parseName("a function, or the end of the model after its graph"));
  function.set_name(name);
  if (consumePunct('<') && !consumePunct('>')) {
    do {
      TEXT_ASSIGN_OR_RETURN(attribute, parseName("an attribute name of the function"));
      function.add_attribute(std::move(attribute));
    } while (consumePunct(','));
    TEXT_RETURN_IF_ERROR(expectPunct('>', "to close the attribute names of the function"));
  }
  std::string label = concat("function ", quoted(name));
  TEXT_RETURN_IF_ERROR(parseNameList(*function.mutable_input(), "inputs of " + label));
  TEXT_RETURN_IF_ERROR(expectArrow("between the inputs and outputs of " + label));
  TEXT_RETURN_IF_ERROR(parseNameList(*function.mutable_output(), "outputs of " + label));
  TEXT_RETURN_IF_ERROR(expectPunct('{', "to open the nodes of " + label));
  while (!consumePunct('}')) {
    TEXT_RETURN_IF_ERROR(parseNode(*function.add_node()));
  }
  return absl::OkStatus();
}

absl::Status Parser::parseNameList(google::protobuf::RepeatedPtrField<std::string>& names,
                                   std::string_view label) {
  TEXT_RETURN_IF_ERROR(expectPunct('(', concat("to open the ", label)));
  if (consumePunct(')')) return absl::OkStatus();
  do {
    TEXT_ASSIGN_OR_RETURN(name, parseName(concat("a name in the ", label)));
    names.Add(std::move(name));
  } while (consumePunct(','));
  return expectPunct(')', concat("to close the ", label));
}

absl::Status Parser::parseGraph(onnx::GraphProto& graph) {
  TEXT_ASSIGN_OR_RETURN(name, parseName("a graph name"));
  return parseGraphAfterName(std::move(name), graph);
}

absl::Status Parser::parseGraphAfterName(std::string name, onnx::GraphProto& graph) {
  NestingGuard guard(depth_);
  TEXT_RETURN_IF_ERROR(checkNesting());
  std::string label = concat("graph ", quoted(name));
  graph.set_name(std::move(name));

  TEXT_RETURN_IF_ERROR(expectPunct('(', "to open the inputs of " + label));
  if (!consumePunct(')')) {
    do {
      size_t offset = token_.offset;
      onnx::ValueInfoProto* input = graph.add_input();
      TEXT_RETURN_IF_ERROR(parseValueInfo(*input));
      // ONNX's form of an input with a default value, which is also an initializer.
      if (consumePunct('=')) {
        TEXT_RETURN_IF_ERROR(parseInitializerValue(*input, offset, *graph.add_initializer()));
      }
    } while (consumePunct(','));
    TEXT_RETURN_IF_ERROR(expectPunct(')', "or ',' in the inputs of " + label));
  }
  TEXT_RETURN_IF_ERROR(expectArrow("between the inputs and outputs of " + label));
  TEXT_RETURN_IF_ERROR(expectPunct('(', "to open the outputs of " + label));
  if (!consumePunct(')')) {
    do {
      TEXT_RETURN_IF_ERROR(parseValueInfo(*graph.add_output()));
    } while (consumePunct(','));
    TEXT_RETURN_IF_ERROR(expectPunct(')', "or ',' in the outputs of " + label));
  }

  if (consumePunct('<') && !consumePunct('>')) {
    do {
      size_t offset = token_.offset;
      onnx::ValueInfoProto info;
      TEXT_RETURN_IF_ERROR(parseValueInfo(info));
      if (consumePunct('=')) {
        TEXT_RETURN_IF_ERROR(parseInitializerValue(info, offset, *graph.add_initializer()));
      } else {
        *graph.add_value_info() = std::move(info);
      }
    } while (consumePunct(','));
    TEXT_RETURN_IF_ERROR(expectPunct('>', "or ',' in the initializers and value_info of " + label));
  }

  TEXT_RETURN_IF_ERROR(expectPunct('{', "to open the nodes of " + label));
  while (!consumePunct('}')) {
    TEXT_RETURN_IF_ERROR(parseNode(*graph.add_node()));
  }
  return absl::OkStatus();
}

absl::Status Parser::parseValueInfo(onnx::ValueInfoProto& info) {
  if (token_.kind == TokenKind::kIdentifier && text::isTypeKeyword(token_.text)) {
    TEXT_RETURN_IF_ERROR(parseType(*info.mutable_type()));
  }
  bool bare = token_.kind == TokenKind::kIdentifier;
  size_t offset = token_.offset;
  std::string_view word = token_.text;
  TEXT_ASSIGN_OR_RETURN(name, parseName("a value name"));
  // `floot[2] x` reads as the value `floot` followed by junk; report the type.
  if (bare && !info.has_type() &&
      (atPunct('[') || atPunct('(') || token_.kind == TokenKind::kIdentifier ||
       token_.kind == TokenKind::kString)) {
    return errorAt(offset, concat("unknown type '", word,
                                  "'; expected an element type (float, int64, ...) or "
                                  "seq, map, optional, sparse_tensor"));
  }
  info.set_name(std::move(name));
  return absl::OkStatus();
}

absl::Status Parser::setTensorType(const onnx::TypeProto& type, size_t offset,
                                   const std::string& label, onnx::TensorProto& tensor) {
  if (!type.has_tensor_type()) {
    return errorAt(offset, concat(label, " needs a tensor type such as float[2, 3]"));
  }
  // A tensor type without brackets (`float {1.0}`, ONNX's spelling of a
  // scalar) has no shape. A tensor value cannot have unknown rank, so it is
  // read as a scalar.
  const auto& tensorType = type.tensor_type();
  tensor.set_data_type(tensorType.elem_type());
  for (const auto& dim : tensorType.shape().dim()) {
    if (!dim.has_dim_value()) {
      return errorAt(offset, concat(label, " needs numeric dims, but a dim is ",
                                    dim.has_dim_param() ? quoted(dim.dim_param()) : "?"));
    }
    if (dim.dim_value() < 0) {
      return errorAt(offset, concat(label, " has negative dim ", dim.dim_value()));
    }
    tensor.add_dims(dim.dim_value());
  }
  return absl::OkStatus();
}

absl::Status Parser::parseInitializerValue(const onnx::ValueInfoProto& info, size_t offset,
                                           onnx::TensorProto& tensor) {
  std::string label = concat("initializer ", quoted(info.name()));
  TEXT_RETURN_IF_ERROR(setTensorType(info.type(), offset, label, tensor));
  tensor.set_name(info.name());
  return parseTensorData(tensor, label);
}

absl::Status Parser::parseType(onnx::TypeProto& type) {
  NestingGuard guard(depth_);
  TEXT_RETURN_IF_ERROR(checkNesting());
  if (token_.kind != TokenKind::kIdentifier) return unexpected("a type");
  std::string_view word = token_.text;
  size_t offset = token_.offset;

  if (const ElementType* element = text::findElementType(word)) {
    advance();
    auto* tensor = type.mutable_tensor_type();
    tensor->set_elem_type(element->dataType);
    return parseOptionalShape(*tensor);
  }
  if (word == "seq" || word == "optional") {
    advance();
    TEXT_RETURN_IF_ERROR(expectPunct('(', concat("after '", word, "'")));
    onnx::TypeProto* element = word == "seq" ? type.mutable_sequence_type()->mutable_elem_type()
                                             : type.mutable_optional_type()->mutable_elem_type();
    TEXT_RETURN_IF_ERROR(parseType(*element));
    return expectPunct(')', concat("to close '", word, "('"));
  }
  if (word == "map") {
    advance();
    TEXT_RETURN_IF_ERROR(expectPunct('(', "after 'map'"));
    const ElementType* key =
        token_.kind == TokenKind::kIdentifier ? text::findElementType(token_.text) : nullptr;
    if (key == nullptr) return unexpected("an element type for the map key");
    advance();
    auto* map = type.mutable_map_type();
    map->set_key_type(key->dataType);
    TEXT_RETURN_IF_ERROR(expectPunct(',', "between the key and value types of a map"));
    TEXT_RETURN_IF_ERROR(parseType(*map->mutable_value_type()));
    return expectPunct(')', "to close 'map('");
  }
  if (word == "sparse_tensor") {
    advance();
    TEXT_RETURN_IF_ERROR(expectPunct('(', "after 'sparse_tensor'"));
    const ElementType* element =
        token_.kind == TokenKind::kIdentifier ? text::findElementType(token_.text) : nullptr;
    if (element == nullptr) return unexpected("an element type for the sparse tensor");
    advance();
    auto* sparse = type.mutable_sparse_tensor_type();
    sparse->set_elem_type(element->dataType);
    TEXT_RETURN_IF_ERROR(parseOptionalShape(*sparse));
    return expectPunct(')', "to close 'sparse_tensor('");
  }
  return errorAt(offset, concat("unknown type '", word,
                                "'; expected an element type (float, int64, ...) or seq, "
                                "map, optional, sparse_tensor"));
}

template <typename TensorType>
absl::Status Parser::parseOptionalShape(TensorType& tensorType) {
  // No brackets: the rank is unknown, so there is no shape.
  if (!consumePunct('[')) return absl::OkStatus();
  auto* shape = tensorType.mutable_shape();
  // `float[]`: a scalar, whose shape has no dims.
  if (consumePunct(']')) return absl::OkStatus();
  TEXT_RETURN_IF_ERROR(parseShape(*shape));
  return expectPunct(']', "or ',' in the dims");
}

absl::Status Parser::parseShape(onnx::TensorShapeProto& shape) {
  do {
    auto* dim = shape.add_dim();
    if (consumePunct('?')) continue;
    if (token_.kind == TokenKind::kNumber) {
      TEXT_ASSIGN_OR_RETURN(value, parseInteger("an integer dim"));
      dim->set_dim_value(value);
    } else if (token_.kind == TokenKind::kIdentifier || token_.kind == TokenKind::kString) {
      TEXT_ASSIGN_OR_RETURN(symbol, parseName("a dim"));
      dim->set_dim_param(std::move(symbol));
    } else {
      return unexpected("a dim (an integer, a symbol or '?')");
    }
  } while (consumePunct(','));
  return absl::OkStatus();
}

absl::Status Parser::parseNode(onnx::NodeProto& node) {
  if (consumePunct('[')) {
    TEXT_ASSIGN_OR_RETURN(name, parseName("a node name"));
    node.set_name(std::move(name));
    TEXT_RETURN_IF_ERROR(expectPunct(']', "to close the node name"));
  }
  if (!atPunct('=')) {
    do {
      TEXT_ASSIGN_OR_RETURN(output, parseName("a node output name, or '}' to end the graph"));
      node.add_output(std::move(output));
    } while (consumePunct(','));
  }
  TEXT_RETURN_IF_ERROR(expectPunct('=', "after the outputs of a node"));

  // `a.b.Op` is operator Op of domain "a.b"; each part may be quoted.
  std::vector<std::string> parts;
  do {
    TEXT_ASSIGN_OR_RETURN(part, parseName("an operator name"));
    parts.push_back(std::move(part));
  } while (consumePunct('.'));
  node.set_op_type(std::move(parts.back()));
  parts.pop_back();
  // `"".Op` names the default domain, which stays unset as when printed bare.
  std::string domain = absl::StrJoin(parts, ".");
  if (!domain.empty()) node.set_domain(std::move(domain));

  bool attributesFirst = atPunct('<');
  if (attributesFirst) TEXT_RETURN_IF_ERROR(parseAttributes(node));
  std::string label = concat("node ", node.op_type());
  TEXT_RETURN_IF_ERROR(expectPunct('(', "to open the inputs of " + label));
  if (!consumePunct(')')) {
    do {
      TEXT_ASSIGN_OR_RETURN(input, parseName("an input name (\"\" for an omitted input)"));
      node.add_input(std::move(input));
    } while (consumePunct(','));
    TEXT_RETURN_IF_ERROR(expectPunct(')', "or ',' in the inputs of " + label));
  }
  // ONNX's syntax also accepts the attributes after the inputs.
  if (!attributesFirst && atPunct('<')) TEXT_RETURN_IF_ERROR(parseAttributes(node));
  return absl::OkStatus();
}

absl::Status Parser::parseAttributes(onnx::NodeProto& node) {
  TEXT_RETURN_IF_ERROR(expectPunct('<', "to open the attributes"));
  if (consumePunct('>')) return absl::OkStatus();
  do {
    TEXT_RETURN_IF_ERROR(parseAttribute(*node.add_attribute()));
  } while (consumePunct(','));
  return expectPunct('>', "or ',' in the attributes of node " + node.op_type());
}

absl::Status Parser::parseAttribute(onnx::AttributeProto& attribute) {
  TEXT_ASSIGN_OR_RETURN(name, parseName("an attribute name"));
  attribute.set_name(name);
  auto declared = onnx::AttributeProto::UNDEFINED;
  size_t typeOffset = token_.offset;
  if (consumePunct(':')) {
    typeOffset = token_.offset;
    if (token_.kind != TokenKind::kIdentifier) {
      return unexpected("an attribute type such as int, floats or tensor");
    }
    declared = attributeTypeFromName(token_.text);
    if (declared == onnx::AttributeProto::UNDEFINED) {
      return errorAt(typeOffset, concat("unknown attribute type '", token_.text,
                                        "'; expected float, int, string, tensor, graph, "
                                        "type_proto or their lists floats, ints, strings, "
                                        "tensors, graphs, type_protos"));
    }
    advance();
  }
  TEXT_RETURN_IF_ERROR(expectPunct('=', concat("after attribute name ", quoted(name))));

  if (consumePunct('@')) {
    TEXT_ASSIGN_OR_RETURN(reference, parseName("the name of the referenced function attribute"));
    attribute.set_ref_attr_name(std::move(reference));
    if (declared != onnx::AttributeProto::UNDEFINED) attribute.set_type(declared);
    return absl::OkStatus();
  }
  if (declared == onnx::AttributeProto::SPARSE_TENSOR ||
      declared == onnx::AttributeProto::SPARSE_TENSORS) {
    return errorAt(typeOffset,
                   "the text format cannot express sparse tensor values; only references "
                   "(@name) to function attributes of that type");
  }
  if (declared != onnx::AttributeProto::UNDEFINED) return parseTypedValue(attribute, declared);
  return parseUntypedValue(attribute);
}

absl::Status Parser::parseTypedValue(onnx::AttributeProto& attribute,
                                     onnx::AttributeProto::AttributeType type) {
  attribute.set_type(type);
  switch (type) {
    case onnx::AttributeProto::FLOAT: {
      TEXT_ASSIGN_OR_RETURN(value, parseFloat("a float"));
      attribute.set_f(value);
      return absl::OkStatus();
    }
    case onnx::AttributeProto::INT: {
      TEXT_ASSIGN_OR_RETURN(value, parseInteger("an integer"));
      attribute.set_i(value);
      return absl::OkStatus();
    }
    case onnx::AttributeProto::STRING: {
      TEXT_ASSIGN_OR_RETURN(value, parseString("a string"));
      attribute.set_s(std::move(value));
      return absl::OkStatus();
    }
    case onnx::AttributeProto::TENSOR:
      return parseTensorLiteral(*attribute.mutable_t());
    case onnx::AttributeProto::GRAPH:
      return parseGraph(*attribute.mutable_g());
    case onnx::AttributeProto::TYPE_PROTO:
      return parseType(*attribute.mutable_tp());
    default:
      break;
  }

  auto elementType = elementTypeOfList(type);
  TEXT_RETURN_IF_ERROR(expectPunct('[', "to open the list value"));
  if (consumePunct(']')) return absl::OkStatus();
  do {
    switch (elementType) {
      case onnx::AttributeProto::FLOAT: {
        TEXT_ASSIGN_OR_RETURN(value, parseFloat("a float"));
        attribute.add_floats(value);
        break;
      }
      case onnx::AttributeProto::INT: {
        TEXT_ASSIGN_OR_RETURN(value, parseInteger("an integer"));
        attribute.add_ints(value);
        break;
      }
      case onnx::AttributeProto::STRING: {
        TEXT_ASSIGN_OR_RETURN(value, parseString("a string"));
        attribute.add_strings(std::move(value));
        break;
      }
      case onnx::AttributeProto::TENSOR:
        TEXT_RETURN_IF_ERROR(parseTensorLiteral(*attribute.add_tensors()));
        break;
      case onnx::AttributeProto::GRAPH:
        TEXT_RETURN_IF_ERROR(parseGraph(*attribute.add_graphs()));
        break;
      case onnx::AttributeProto::TYPE_PROTO:
        TEXT_RETURN_IF_ERROR(parseType(*attribute.add_type_protos()));
        break;
      default:
        return absl::InternalError("unhandled list attribute type");
    }
  } while (consumePunct(','));
  return expectPunct(']', "or ',' in the list value");
}

absl::Status Parser::parseUntypedValue(onnx::AttributeProto& attribute) {
  if (atPunct('[')) return parseUntypedList(attribute);
  return parseUntypedSingleValue(attribute);
}

absl::Status Parser::parseUntypedList(onnx::AttributeProto& attribute) {
  size_t listOffset = token_.offset;
  advance();
  if (atPunct(']')) {
    return errorAt(listOffset, concat("the empty list of attribute ", quoted(attribute.name()),
                                      " needs a type: write ", attribute.name(),
                                      ": ints = [] (or floats, strings, tensors, graphs, "
                                      "type_protos)"));
  }
  std::vector<onnx::AttributeProto> elements;
  std::vector<size_t> offsets;
  do {
    offsets.push_back(token_.offset);
    TEXT_RETURN_IF_ERROR(parseUntypedSingleValue(elements.emplace_back()));
  } while (consumePunct(','));
  TEXT_RETURN_IF_ERROR(expectPunct(']', "or ',' in the list value"));

  // Integers and floats may mix, and then all become floats.
  auto listType = elementTypeOfList(onnx::AttributeProto::INTS);
  bool anyFloat = false;
  auto first = elements.front().type();
  for (size_t i = 0; i < elements.size(); ++i) {
    auto type = elements[i].type();
    bool numeric = type == onnx::AttributeProto::INT || type == onnx::AttributeProto::FLOAT;
    bool firstNumeric = first == onnx::AttributeProto::INT || first == onnx::AttributeProto::FLOAT;
    if (type != first && !(numeric && firstNumeric)) {
      return errorAt(offsets[i], concat("a list value mixes ", kindName(first), " and ",
                                        kindName(type), "; list elements share one type"));
    }
    anyFloat = anyFloat || type == onnx::AttributeProto::FLOAT;
  }
  listType = anyFloat ? onnx::AttributeProto::FLOAT : first;

  for (onnx::AttributeProto& element : elements) {
    switch (listType) {
      case onnx::AttributeProto::FLOAT:
        attribute.set_type(onnx::AttributeProto::FLOATS);
        attribute.add_floats(element.type() == onnx::AttributeProto::INT
                                 ? static_cast<float>(element.i())
                                 : element.f());
        break;
      case onnx::AttributeProto::INT:
        attribute.set_type(onnx::AttributeProto::INTS);
        attribute.add_ints(element.i());
        break;
      case onnx::AttributeProto::STRING:
        attribute.set_type(onnx::AttributeProto::STRINGS);
        attribute.add_strings(std::move(*element.mutable_s()));
        break;
      case onnx::AttributeProto::TENSOR:
        attribute.set_type(onnx::AttributeProto::TENSORS);
        attribute.add_tensors()->Swap(element.mutable_t());
        break;
      case onnx::AttributeProto::GRAPH:
        attribute.set_type(onnx::AttributeProto::GRAPHS);
        attribute.add_graphs()->Swap(element.mutable_g());
        break;
      default:
        return absl::InternalError("unhandled list element type");
    }
  }
  return absl::OkStatus();
}

absl::Status Parser::parseUntypedSingleValue(onnx::AttributeProto& attribute) {
  switch (token_.kind) {
    case TokenKind::kNumber:
      if (token_.isFloat) return parseTypedValue(attribute, onnx::AttributeProto::FLOAT);
      return parseTypedValue(attribute, onnx::AttributeProto::INT);
    case TokenKind::kIdentifier: {
      if (token_.text == "nan" || token_.text == "inf") {
        return parseTypedValue(attribute, onnx::AttributeProto::FLOAT);
      }
      if (text::findElementType(token_.text) != nullptr) {
        return parseTypedValue(attribute, onnx::AttributeProto::TENSOR);
      }
      if (text::isTypeKeyword(token_.text)) {
        return errorAt(token_.offset,
                       concat("a type value needs the typed form: write ", attribute.name(),
                              ": type_proto = ", token_.text, "(...)"));
      }
      return parseTypedValue(attribute, onnx::AttributeProto::GRAPH);
    }
    case TokenKind::kString: {
      std::string value = std::move(token_.value);
      advance();
      // A quoted name followed by the inputs is a graph.
      if (atPunct('(')) {
        attribute.set_type(onnx::AttributeProto::GRAPH);
        return parseGraphAfterName(std::move(value), *attribute.mutable_g());
      }
      attribute.set_type(onnx::AttributeProto::STRING);
      attribute.set_s(std::move(value));
      return absl::OkStatus();
    }
    default:
      return unexpected("an attribute value");
  }
}

absl::Status Parser::parseTensorLiteral(onnx::TensorProto& tensor) {
  size_t offset = token_.offset;
  if (token_.kind != TokenKind::kIdentifier || text::findElementType(token_.text) == nullptr) {
    return unexpected("a tensor type such as float[2]");
  }
  onnx::TypeProto type;
  TEXT_RETURN_IF_ERROR(parseType(type));
  // A bare word other than external or elided is the tensor's name.
  bool named =
      token_.kind == TokenKind::kString || (token_.kind == TokenKind::kIdentifier &&
                                            token_.text != "external" && token_.text != "elided");
  if (named) {
    TEXT_ASSIGN_OR_RETURN(name, parseName("a tensor name"));
    tensor.set_name(std::move(name));
  }
  std::string label = tensor.has_name() ? concat("tensor ", quoted(tensor.name())) : "tensor";
  TEXT_RETURN_IF_ERROR(setTensorType(type, offset, label, tensor));
  consumePunct('=');
  return parseTensorData(tensor, label);
}

absl::Status Parser::parseTensorData(onnx::TensorProto& tensor, const std::string& label) {
  if (atIdentifier("external")) {
    advance();
    return parseExternal(tensor, label);
  }
  if (atIdentifier("elided")) {
    return errorAt(token_.offset,
                   concat("the data of ", label,
                          " was elided when the model was printed, and the text holds only "
                          "its hash, so it cannot be parsed; print the model with full "
                          "constants (PrintOptions::elideTensorsAbove = 0)"));
  }
  if (!atPunct('{')) {
    return unexpected(concat("'{' or external(...) with the values of ", label));
  }
  return parseValues(tensor, label);
}

absl::Status Parser::parseExternal(onnx::TensorProto& tensor, const std::string& label) {
  TEXT_RETURN_IF_ERROR(expectPunct('(', "after 'external'"));
  tensor.set_data_location(onnx::TensorProto::EXTERNAL);
  if (consumePunct(')')) return absl::OkStatus();
  do {
    auto* entry = tensor.add_external_data();
    TEXT_ASSIGN_OR_RETURN(key, parseName("an external data key such as location"));
    entry->set_key(std::move(key));
    TEXT_RETURN_IF_ERROR(expectPunct(':', "after an external data key"));
    if (token_.kind == TokenKind::kString) {
      entry->set_value(std::move(token_.value));
    } else if (token_.kind == TokenKind::kNumber && !token_.isFloat && token_.text[0] != '-') {
      entry->set_value(std::string(token_.text));
    } else {
      return unexpected("a string or a non-negative integer as external data value");
    }
    advance();
  } while (consumePunct(','));
  return expectPunct(')', concat("or ',' in the external data of ", label));
}

absl::Status Parser::parseValues(onnx::TensorProto& tensor, const std::string& label) {
  size_t openOffset = token_.offset;
  advance();
  const ElementType& type = *text::findElementType(tensor.data_type());
  uint64_t count = 1;
  for (int64_t dim : tensor.dims()) {
    if (dim != 0 && count > std::numeric_limits<uint64_t>::max() / 2 / static_cast<uint64_t>(dim)) {
      return errorAt(openOffset, concat(label, " has dims whose product overflows"));
    }
    count *= static_cast<uint64_t>(dim);
  }
  bool complex = type.kind == ValueKind::kComplex64 || type.kind == ValueKind::kComplex128;
  uint64_t expected = complex ? count * 2 : count;

  std::string* bytes = nullptr;
  if (type.kind != ValueKind::kString) {
    bytes = tensor.mutable_raw_data();
    // Each value takes at least two characters, which bounds the reservation
    // for dims that do not match the text.
    uint64_t reserve = std::min<uint64_t>(expected, text_.size() / 2 + 1);
    bytes->reserve(static_cast<size_t>(reserve) * (complex ? type.byteSize / 2 : type.byteSize));
  }

  uint64_t parsed = 0;
  size_t closeOffset = token_.offset;
  if (!consumePunct('}')) {
    do {
      if (parsed == expected) {
        return errorAt(token_.offset, concat(label, " has more values than its dims need (",
                                             expected, complex ? " components" : "", ")"));
      }
      if (type.kind == ValueKind::kString) {
        TEXT_ASSIGN_OR_RETURN(value, parseString(concat("a string value of ", label)));
        tensor.add_string_data(std::move(value));
      } else {
        TEXT_RETURN_IF_ERROR(parseValue(type, *bytes, label));
      }
      ++parsed;
    } while (consumePunct(','));
    closeOffset = token_.offset;
    TEXT_RETURN_IF_ERROR(expectPunct('}', concat("or ',' in the values of ", label)));
  }
  if (parsed != expected) {
    std::string dims = concat("[", absl::StrJoin(tensor.dims(), ", "), "]");
    return errorAt(closeOffset,
                   concat(label, " has ", parsed, " values but its dims ", dims, " need ", expected,
                          complex ? " (two components per complex element)" : ""));
  }
  return absl::OkStatus();
}

absl::Status Parser::parseValue(const ElementType& type, std::string& bytes,
                                const std::string& label) {
  auto append = [&bytes](const auto& value) {
    bytes.append(reinterpret_cast<const char*>(&value), sizeof(value));
  };
  auto outOfRange = [&] {
    return errorAt(token_.offset, concat("value ", token_.text, " is out of the range of ",
                                         type.name, " in ", label));
  };
  bool floatWord =
      token_.kind == TokenKind::kIdentifier && (token_.text == "nan" || token_.text == "inf");

  switch (type.kind) {
    case ValueKind::kFloat32:
    case ValueKind::kComplex64:
    case ValueKind::kFloat16:
    case ValueKind::kBFloat16: {
      if (token_.kind != TokenKind::kNumber && !floatWord) {
        return unexpected(concat("a ", type.name, " value of ", label));
      }
      float value = 0;
      NumberStatus status = text::parseFloatLiteral(token_.text, value);
      if (status == NumberStatus::kOutOfRange) return outOfRange();
      if (status != NumberStatus::kOk) {
        return errorAt(token_.offset, concat("invalid number '", token_.text, "'"));
      }
      if (type.kind == ValueKind::kFloat16 || type.kind == ValueKind::kBFloat16) {
        uint16_t bits = type.kind == ValueKind::kFloat16 ? text::floatToFloat16(value)
                                                         : text::floatToBFloat16(value);
        float converted = type.kind == ValueKind::kFloat16 ? text::float16ToFloat(bits)
                                                           : text::bfloat16ToFloat(bits);
        if (std::isinf(converted) && !std::isinf(value)) return outOfRange();
        append(bits);
      } else {
        append(value);
      }
      break;
    }
    case ValueKind::kFloat64:
    case ValueKind::kComplex128: {
      if (token_.kind != TokenKind::kNumber && !floatWord) {
        return unexpected(concat("a ", type.name, " value of ", label));
      }
      double value = 0;
      NumberStatus status = text::parseDoubleLiteral(token_.text, value);
      if (status == NumberStatus::kOutOfRange) return outOfRange();
      if (status != NumberStatus::kOk) {
        return errorAt(token_.offset, concat("invalid number '", token_.text, "'"));
      }
      append(value);
      break;
    }
    case ValueKind::kBool: {
      if (atIdentifier("true") || atIdentifier("false")) {
        append(static_cast<uint8_t>(token_.text == "true"));
        break;
      }
      if (token_.kind != TokenKind::kNumber || token_.isFloat) {
        return unexpected(concat("true, false or an integer value of ", label));
      }
      unsigned value = 0;
      const char* end = token_.text.data() + token_.text.size();
      auto result = std::from_chars(token_.text.data(), end, value);
      if (result.ec != std::errc() || result.ptr != end || value > 255) return outOfRange();
      append(static_cast<uint8_t>(value));
      break;
    }
    case ValueKind::kSignedInteger: {
      if (token_.kind != TokenKind::kNumber || token_.isFloat) {
        return unexpected(concat("an integer value of ", label));
      }
      int64_t value = 0;
      const char* end = token_.text.data() + token_.text.size();
      auto result = std::from_chars(token_.text.data(), end, value);
      if (result.ec != std::errc() || result.ptr != end) return outOfRange();
      if (type.byteSize == 1) {
        if (value < INT8_MIN || value > INT8_MAX) return outOfRange();
        append(static_cast<int8_t>(value));
      } else if (type.byteSize == 2) {
        if (value < INT16_MIN || value > INT16_MAX) return outOfRange();
        append(static_cast<int16_t>(value));
      } else if (type.byteSize == 4) {
        if (value < INT32_MIN || value > INT32_MAX) return outOfRange();
        append(static_cast<int32_t>(value));
      } else {
        append(value);
      }
      break;
    }
    case ValueKind::kUnsignedInteger: {
      if (token_.kind != TokenKind::kNumber || token_.isFloat) {
        return unexpected(concat("an integer value of ", label));
      }
      uint64_t value = 0;
      const char* end = token_.text.data() + token_.text.size();
      auto result = std::from_chars(token_.text.data(), end, value);
      if (result.ec != std::errc() || result.ptr != end) return outOfRange();
      if (type.byteSize == 1) {
        if (value > UINT8_MAX) return outOfRange();
        append(static_cast<uint8_t>(value));
      } else if (type.byteSize == 2) {
        if (value > UINT16_MAX) return outOfRange();
        append(static_cast<uint16_t>(value));
      } else if (type.byteSize == 4) {
        if (value > UINT32_MAX) return outOfRange();
        append(static_cast<uint32_t>(value));
      } else {
        append(value);
      }
      break;
    }
    case ValueKind::kString:
      return absl::InternalError("string values are parsed by parseValues");
  }
  advance();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<onnx::ModelProto> parseModelText(std::string_view text, std::string_view source) {
  onnx::ModelProto model;
  Parser parser(text, source);
  absl::Status status = parser.parseModel(model);
  if (!status.ok()) return status;
  return model;
}

}  // namespace roformer::ir

#undef TEXT_ASSIGN_OR_RETURN
#undef TEXT_RETURN_IF_ERROR
