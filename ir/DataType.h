// Element types of tensors, numbered as onnx::TensorProto_DataType.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace roformer::ir {

// The numbering is ONNX's, so a DataType converts to and from the `elem_type`
// and `data_type` fields of the protobuf messages with a plain cast.
enum class DataType : int32_t {
  kUndefined = 0,
  kFloat = 1,
  kUint8 = 2,
  kInt8 = 3,
  kUint16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kDouble = 11,
  kUint32 = 12,
  kUint64 = 13,
  kComplex64 = 14,
  kComplex128 = 15,
  kBfloat16 = 16,
};

// Returns the size in bytes of one element, or 0 for kUndefined and kString.
size_t dataTypeSize(DataType type);

// Returns the name used by the ONNX text syntax ("float", "int64", ...), or
// "undefined" for an unknown value.
std::string_view dataTypeName(DataType type);

// Parses a name produced by dataTypeName; returns kUndefined when unknown.
DataType dataTypeFromName(std::string_view name);

// Float32 values of fp16 and bf16 bits, and back with round to nearest even.
// fp16 overflows to infinity, and NaN stays NaN in both formats.
float halfBitsToFloat(uint16_t bits);
float bfloat16BitsToFloat(uint16_t bits);
uint16_t floatToHalfBits(float value);
uint16_t floatToBfloat16Bits(float value);

inline bool isValidDataType(int32_t value) { return value >= 0 && value <= 16; }

inline bool isFloatingPoint(DataType type) {
  return type == DataType::kFloat || type == DataType::kDouble || type == DataType::kFloat16 ||
         type == DataType::kBfloat16;
}

inline bool isInteger(DataType type) {
  switch (type) {
    case DataType::kUint8:
    case DataType::kInt8:
    case DataType::kUint16:
    case DataType::kInt16:
    case DataType::kInt32:
    case DataType::kInt64:
    case DataType::kUint32:
    case DataType::kUint64:
      return true;
    default:
      return false;
  }
}

// Maps a C++ element type to its DataType.
template <typename T>
struct DataTypeOf;
template <>
struct DataTypeOf<float> {
  static constexpr DataType value = DataType::kFloat;
};
template <>
struct DataTypeOf<double> {
  static constexpr DataType value = DataType::kDouble;
};
template <>
struct DataTypeOf<int8_t> {
  static constexpr DataType value = DataType::kInt8;
};
template <>
struct DataTypeOf<uint8_t> {
  static constexpr DataType value = DataType::kUint8;
};
template <>
struct DataTypeOf<int16_t> {
  static constexpr DataType value = DataType::kInt16;
};
template <>
struct DataTypeOf<uint16_t> {
  static constexpr DataType value = DataType::kUint16;
};
template <>
struct DataTypeOf<int32_t> {
  static constexpr DataType value = DataType::kInt32;
};
template <>
struct DataTypeOf<uint32_t> {
  static constexpr DataType value = DataType::kUint32;
};
template <>
struct DataTypeOf<int64_t> {
  static constexpr DataType value = DataType::kInt64;
};
template <>
struct DataTypeOf<uint64_t> {
  static constexpr DataType value = DataType::kUint64;
};
template <>
struct DataTypeOf<bool> {
  static constexpr DataType value = DataType::kBool;
};

}  // namespace roformer::ir
