// Lexical rules and value spellings shared by the text printer and parser
// (ir/TextPrinter.cpp, ir/TextParser.cpp). Internal to the IR library; users
// include ir/TextFormat.h.
#pragma once

#include <charconv>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

namespace roformer::ir::text {

// Spelling and raw_data layout of the values of an element type.
enum class ValueKind {
  kFloat32,
  kFloat64,
  kFloat16,
  kBFloat16,
  kSignedInteger,
  kUnsignedInteger,
  kBool,
  kString,
  kComplex64,   // two float32 components per element
  kComplex128,  // two float64 components per element
};

struct ElementType {
  int32_t dataType;  // onnx::TensorProto_DataType
  std::string_view name;
  ValueKind kind;
  // Bytes of one element in raw_data (0 for strings).
  uint32_t byteSize;
};

// Returns the element type named `name` ("float", "int64", ...), or nullptr.
const ElementType* findElementType(std::string_view name);
// Returns the element type numbered `dataType`, or nullptr for 0 and unknown numbers.
const ElementType* findElementType(int32_t dataType);

// True for [A-Za-z_][A-Za-z0-9_]*.
bool isIdentifier(std::string_view text);
// True for words that start a type: the element type names, `seq`, `map`,
// `optional` and `sparse_tensor`.
bool isTypeKeyword(std::string_view word);
// True for identifiers that the grammar gives a meaning in some position
// (type keywords, `nan`, `inf`, `true`, `false`, `external`, `elided`). The
// printer quotes names spelled like them.
bool isReservedWord(std::string_view word);

// Appends `name` as a bare identifier when it is one and not reserved, else
// as a quoted string.
void appendName(std::string& out, std::string_view name);
// Appends `bytes` in double quotes. `"`, `\`, newline, tab and carriage
// return get backslash escapes. Other control bytes, and bytes that are not
// part of valid UTF-8, get `\xHH`. Valid UTF-8 is copied.
void appendQuoted(std::string& out, std::string_view bytes);

// Append the shortest decimal spelling that parses back to the same bits
// through parseFloatLiteral and the matching conversion. The spelling always
// contains `.` or an exponent, or is one of nan, -nan, inf, -inf.
void appendFloat(std::string& out, float value);
void appendDouble(std::string& out, double value);
void appendFloat16(std::string& out, uint16_t bits);
void appendBFloat16(std::string& out, uint16_t bits);

float float16ToFloat(uint16_t bits);
float bfloat16ToFloat(uint16_t bits);
// Round to nearest even. NaN stays NaN with its sign, and values too large
// become infinity.
uint16_t floatToFloat16(float value);
uint16_t floatToBFloat16(float value);

// Appends the parts (strings, characters and numbers) to one string. It
// replaces absl::StrCat because Debian's Abseil 20220623 has its own
// absl::string_view, which std::string_view does not convert to.
inline void appendPart(std::string& out, std::string_view part) { out += part; }
inline void appendPart(std::string& out, char part) { out += part; }
template <typename Number>
requires(std::integral<Number> || std::floating_point<Number>) &&
    (!std::same_as<Number, char>)&&(!std::same_as<Number, bool>)void appendPart(std::string& out,
                                                                                Number part) {
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), part);
  out.append(buffer, result.ptr);
}
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::string out;
  (appendPart(out, parts), ...);
  return out;
}

enum class NumberStatus { kOk, kInvalid, kOutOfRange };

// Parse a number literal (integers, decimals, exponents, nan, -nan, inf,
// -inf) into a float or double, rounding to nearest. A finite literal beyond
// the type's range is kOutOfRange.
NumberStatus parseFloatLiteral(std::string_view text, float& value);
NumberStatus parseDoubleLiteral(std::string_view text, double& value);

}  // namespace roformer::ir::text
