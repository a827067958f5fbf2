#include "ir/DataType.h"

#include <array>

namespace roformer::ir {
namespace {

struct TypeInfo {
  std::string_view name;
  size_t size;
};

// Indexed by the ONNX enum value.
constexpr std::array<TypeInfo, 17> kTypes = {{
    {"undefined", 0},
    {"float", 4},
    {"uint8", 1},
    {"int8", 1},
    {"uint16", 2},
    {"int16", 2},
    {"int32", 4},
    {"int64", 8},
    {"string", 0},
    {"bool", 1},
    {"float16", 2},
    {"double", 8},
    {"uint32", 4},
    {"uint64", 8},
    {"complex64", 8},
    {"complex128", 16},
    {"bfloat16", 2},
}};

}  // namespace

size_t dataTypeSize(DataType type) {
  auto index = static_cast<size_t>(type);
  return index < kTypes.size() ? kTypes[index].size : 0;
}

std::string_view dataTypeName(DataType type) {
  auto index = static_cast<size_t>(type);
  return index < kTypes.size() ? kTypes[index].name : kTypes[0].name;
}

DataType dataTypeFromName(std::string_view name) {
  for (size_t i = 1; i < kTypes.size(); ++i) {
    if (kTypes[i].name == name) return static_cast<DataType>(i);
  }
  return DataType::kUndefined;
}

}  // namespace roformer::ir
