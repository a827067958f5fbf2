// Lexical rules and number spellings shared by ir/TextPrinter.cpp and
// ir/TextParser.cpp.
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <system_error>

#include "ir/TextSyntax.h"
#include "onnx/onnx_pb.h"

namespace roformer::ir::text {
namespace {

using onnx::TensorProto;

constexpr std::array<ElementType, 16> kElementTypes = {{
    {TensorProto::FLOAT, "float", ValueKind::kFloat32, 4},
    {TensorProto::UINT8, "uint8", ValueKind::kUnsignedInteger, 1},
    {TensorProto::INT8, "int8", ValueKind::kSignedInteger, 1},
    {TensorProto::UINT16, "uint16", ValueKind::kUnsignedInteger, 2},
    {TensorProto::INT16, "int16", ValueKind::kSignedInteger, 2},
    {TensorProto::INT32, "int32", ValueKind::kSignedInteger, 4},
    {TensorProto::INT64, "int64", ValueKind::kSignedInteger, 8},
    {TensorProto::STRING, "string", ValueKind::kString, 0},
    {TensorProto::BOOL, "bool", ValueKind::kBool, 1},
    {TensorProto::FLOAT16, "float16", ValueKind::kFloat16, 2},
    {TensorProto::DOUBLE, "double", ValueKind::kFloat64, 8},
    {TensorProto::UINT32, "uint32", ValueKind::kUnsignedInteger, 4},
    {TensorProto::UINT64, "uint64", ValueKind::kUnsignedInteger, 8},
    {TensorProto::COMPLEX64, "complex64", ValueKind::kComplex64, 8},
    {TensorProto::COMPLEX128, "complex128", ValueKind::kComplex128, 16},
    {TensorProto::BFLOAT16, "bfloat16", ValueKind::kBFloat16, 2},
}};

constexpr std::array<std::string_view, 10> kOtherReservedWords = {
    "seq", "map", "optional", "sparse_tensor", "nan", "inf", "true", "false", "external", "elided"};

bool isIdentifierStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

bool isIdentifierChar(char c) { return isIdentifierStart(c) || (c >= '0' && c <= '9'); }

// Returns the length of the valid UTF-8 sequence starting at `text[i]`, or 0
// when the bytes there are not one (overlong forms and surrogates included).
size_t utf8SequenceLength(std::string_view text, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char lead = byte(i);
  size_t length = 0;
  unsigned char secondMin = 0x80;
  unsigned char secondMax = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) secondMin = 0xA0;
    if (lead == 0xED) secondMax = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) secondMin = 0x90;
    if (lead == 0xF4) secondMax = 0x8F;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  if (byte(i + 1) < secondMin || byte(i + 1) > secondMax) return 0;
  for (size_t k = 2; k < length; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return length;
}

void appendHexByte(std::string& out, unsigned char byte) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  out += "\\x";
  out += kDigits[byte >> 4];
  out += kDigits[byte & 0xF];
}

// Appends ".0" unless `spelling` already marks the number as floating point.
void appendFloatingSpelling(std::string& out, std::string_view spelling) {
  out += spelling;
  if (spelling.find_first_of(".eE") == std::string_view::npos) out += ".0";
}

template <typename T>
bool appendNonFinite(std::string& out, T value) {
  if (std::isnan(value)) {
    out += std::signbit(value) ? "-nan" : "nan";
    return true;
  }
  if (std::isinf(value)) {
    out += value < 0 ? "-inf" : "inf";
    return true;
  }
  return false;
}

template <typename T>
void appendShortest(std::string& out, T value) {
  if (appendNonFinite(out, value)) return;
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  appendFloatingSpelling(out, std::string_view(buffer, result.ptr - buffer));
}

// Appends the shortest spelling of a 16-bit float: find the fewest
// significant digits whose float32 parse converts back to `bits`, then print
// that float32 in its own shortest form, which has no more digits.
void appendShortest16(std::string& out, uint16_t bits, float (*toFloat)(uint16_t),
                      uint16_t (*fromFloat)(float)) {
  float value = toFloat(bits);
  if (appendNonFinite(out, value)) return;
  char buffer[64];
  for (int precision = 1; precision <= 9; ++precision) {
    auto result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::general,
                                precision);
    float parsed = 0;
    std::string_view spelling(buffer, result.ptr - buffer);
    if (parseFloatLiteral(spelling, parsed) == NumberStatus::kOk && fromFloat(parsed) == bits) {
      appendShortest(out, parsed);
      return;
    }
  }
  // Nine significant digits identify every float32, so the loop returns.
  appendShortest(out, value);
}

template <typename T>
NumberStatus parseFloating(std::string_view text, T& value) {
  bool negative = !text.empty() && text.front() == '-';
  std::string_view magnitude = negative ? text.substr(1) : text;
  if (magnitude == "nan" || magnitude == "inf") {
    T special = magnitude == "nan" ? std::numeric_limits<T>::quiet_NaN()
                                   : std::numeric_limits<T>::infinity();
    value = negative ? -special : special;
    return NumberStatus::kOk;
  }
  // std::from_chars also accepts "infinity" and "nan(...)"; the grammar does not.
  if (magnitude.empty() || magnitude.front() < '0' || magnitude.front() > '9') {
    return NumberStatus::kInvalid;
  }
  const char* end = text.data() + text.size();
  auto result = std::from_chars(text.data(), end, value);
  if (result.ec == std::errc::result_out_of_range) return NumberStatus::kOutOfRange;
  if (result.ec != std::errc() || result.ptr != end) return NumberStatus::kInvalid;
  return NumberStatus::kOk;
}

}  // namespace

const ElementType* findElementType(std::string_view name) {
  for (const ElementType& type : kElementTypes) {
    if (type.name == name) return &type;
  }
  return nullptr;
}

const ElementType* findElementType(int32_t dataType) {
  for (const ElementType& type : kElementTypes) {
    if (type.dataType == dataType) return &type;
  }
  return nullptr;
}

bool isIdentifier(std::string_view text) {
  if (text.empty() || !isIdentifierStart(text.front())) return false;
  for (char c : text) {
    if (!isIdentifierChar(c)) return false;
  }
  return true;
}

bool isTypeKeyword(std::string_view word) {
  return findElementType(word) != nullptr || word == "seq" || word == "map" || word == "optional" ||
         word == "sparse_tensor";
}

bool isReservedWord(std::string_view word) {
  if (findElementType(word) != nullptr) return true;
  for (std::string_view reserved : kOtherReservedWords) {
    if (reserved == word) return true;
  }
  return false;
}

void appendName(std::string& out, std::string_view name) {
  if (isIdentifier(name) && !isReservedWord(name)) {
    out += name;
  } else {
    appendQuoted(out, name);
  }
}

void appendQuoted(std::string& out, std::string_view bytes) {
  out += '"';
  size_t i = 0;
  while (i < bytes.size()) {
    unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      appendHexByte(out, c);
    } else if (c >= 0x80) {
      size_t length = utf8SequenceLength(bytes, i);
      if (length == 0) {
        appendHexByte(out, c);
      } else {
        out += bytes.substr(i, length);
        i += length;
        continue;
      }
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  out += '"';
}

void appendFloat(std::string& out, float value) { appendShortest(out, value); }

void appendDouble(std::string& out, double value) { appendShortest(out, value); }

void appendFloat16(std::string& out, uint16_t bits) {
  appendShortest16(out, bits, float16ToFloat, floatToFloat16);
}

void appendBFloat16(std::string& out, uint16_t bits) {
  appendShortest16(out, bits, bfloat16ToFloat, floatToBFloat16);
}

float float16ToFloat(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  uint32_t exponent = (bits >> 10) & 0x1F;
  uint32_t mantissa = bits & 0x3FF;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 0x1F) {
    return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  }
  return std::bit_cast<float>(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13));
}

float bfloat16ToFloat(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

uint16_t floatToFloat16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  uint32_t magnitude = bits & 0x7FFFFFFF;
  if (magnitude > 0x7F800000) {
    // NaN: keep the top payload bits and force the quiet bit so that the
    // result cannot turn into infinity.
    return sign | 0x7E00 | static_cast<uint16_t>((magnitude >> 13) & 0x1FF);
  }
  // 65520 (0x477FF000) and above round to infinity.
  if (magnitude >= 0x477FF000) return sign | 0x7C00;
  if (magnitude < 0x38800000) {
    // Below 2^-14 the result is subnormal: count units of 2^-24, rounding
    // to nearest even. Scaling by a power of two is exact here.
    float scaled = std::bit_cast<float>(magnitude) * 16777216.0f;
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  // Rebias the exponent from 127 to 15 and round the 13 dropped mantissa
  // bits to nearest even. A carry out of the mantissa increments the
  // exponent, which is the correct result.
  uint32_t odd = (magnitude >> 13) & 1;
  magnitude += 0xC8000FFFu + odd;
  return sign | static_cast<uint16_t>(magnitude >> 13);
}

uint16_t floatToBFloat16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7FFFFFFF) > 0x7F800000) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040);
  }
  bits += 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

NumberStatus parseFloatLiteral(std::string_view text, float& value) {
  return parseFloating(text, value);
}

NumberStatus parseDoubleLiteral(std::string_view text, double& value) {
  return parseFloating(text, value);
}

}  // namespace roformer::ir::text
