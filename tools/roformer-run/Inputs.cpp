#include "tools/roformer-run/Inputs.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/Npy.h"

namespace roformer::run {

using runtime::DataType;
using runtime::Shape;

namespace {

// [CLS] and [SEP] in the BERT vocabularies of the Chinese RoFormer checkpoints.
constexpr int64_t kClsId = 101;
constexpr int64_t kSepId = 102;
// Synthetic ids are built in memory as int64. Past 2^31 tokens (16 GiB of ids
// alone) the model's activations would not fit in memory either, so larger
// requests are rejected up front instead of failing in an allocation.
constexpr int64_t kMaxSyntheticTokens = int64_t{1} << 31;

std::string typeName(DataType type) { return std::string(ir::dataTypeName(type)); }

float halfToFloat(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  uint32_t exponent = (bits >> 10) & 0x1f;
  uint32_t mantissa = bits & 0x3ff;
  uint32_t result;
  if (exponent == 0x1f) {
    result = sign | 0x7f800000 | (mantissa << 13);
  } else if (exponent != 0) {
    result = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    result = sign;
  } else {
    int shift = 0;
    while ((mantissa & 0x400) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    result = sign | (static_cast<uint32_t>(113 - shift) << 23) | ((mantissa & 0x3ff) << 13);
  }
  float value;
  std::memcpy(&value, &result, sizeof(value));
  return value;
}

// Rounds to the nearest half-precision value, ties to even.
uint16_t floatToHalf(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  uint32_t magnitude = bits & 0x7fffffff;
  if (magnitude >= 0x7f800000) {  // inf or NaN
    return sign | 0x7c00 | (magnitude > 0x7f800000 ? 0x200 : 0);
  }
  if (magnitude >= 0x477ff000) return sign | 0x7c00;  // rounds above the largest half
  if (magnitude < 0x38800000) {                        // subnormal or zero in half
    float scaled = std::fabs(value) * 16777216.0f;     // 2^24: units of the smallest subnormal
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  uint32_t half = magnitude - 0x38000000;  // rebias the exponent from 127 to 15
  uint32_t rounded = (half + 0xfff + ((half >> 13) & 1)) >> 13;
  return sign | static_cast<uint16_t>(rounded);
}

float bfloat16ToFloat(uint16_t bits) {
  uint32_t widened = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &widened, sizeof(value));
  return value;
}

uint16_t floatToBfloat16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((bits >> 16) | 0x40);
  return static_cast<uint16_t>((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
}

template <typename T>
void storeAll(const std::vector<double>& values, void* data) {
  T* out = static_cast<T*>(data);
  for (size_t i = 0; i < values.size(); ++i) out[i] = static_cast<T>(values[i]);
}

// Largest magnitude an integer of `type` can hold, as double.
std::pair<double, double> integerRange(DataType type) {
  switch (type) {
    case DataType::kInt8:
      return {-128.0, 127.0};
    case DataType::kUint8:
      return {0.0, 255.0};
    case DataType::kInt16:
      return {-32768.0, 32767.0};
    case DataType::kUint16:
      return {0.0, 65535.0};
    case DataType::kInt32:
      return {-2147483648.0, 2147483647.0};
    case DataType::kUint32:
      return {0.0, 4294967295.0};
    case DataType::kInt64:
      return {-9223372036854775808.0, 9223372036854774784.0};
    case DataType::kUint64:
      return {0.0, 18446744073709549568.0};
    default:
      return {0.0, 0.0};
  }
}

absl::StatusOr<HostTensor> tensorFromDoubles(DataType type, const Shape& shape,
                                             const std::vector<double>& values,
                                             const std::string& inputName) {
  if (ir::isInteger(type)) {
    auto [low, high] = integerRange(type);
    for (size_t i = 0; i < values.size(); ++i) {
      double v = values[i];
      if (!std::isfinite(v) || v != std::floor(v) || v < low || v > high) {
        return absl::InvalidArgumentError(absl::StrCat(
            "input '", inputName, "': element ", i, " is ", v, ", which ", typeName(type),
            " cannot hold; the model declares ", typeName(type)));
      }
    }
  }
  HostTensor tensor(type, shape);
  void* data = tensor.rawData();
  switch (type) {
    case DataType::kFloat:
      storeAll<float>(values, data);
      break;
    case DataType::kDouble:
      storeAll<double>(values, data);
      break;
    case DataType::kInt8:
      storeAll<int8_t>(values, data);
      break;
    case DataType::kUint8:
      storeAll<uint8_t>(values, data);
      break;
    case DataType::kInt16:
      storeAll<int16_t>(values, data);
      break;
    case DataType::kUint16:
      storeAll<uint16_t>(values, data);
      break;
    case DataType::kInt32:
      storeAll<int32_t>(values, data);
      break;
    case DataType::kUint32:
      storeAll<uint32_t>(values, data);
      break;
    case DataType::kInt64:
      storeAll<int64_t>(values, data);
      break;
    case DataType::kUint64:
      storeAll<uint64_t>(values, data);
      break;
    case DataType::kBool: {
      bool* out = static_cast<bool*>(data);
      for (size_t i = 0; i < values.size(); ++i) out[i] = values[i] != 0;
      break;
    }
    case DataType::kFloat16: {
      auto* out = static_cast<uint16_t*>(data);
      for (size_t i = 0; i < values.size(); ++i) out[i] = floatToHalf(static_cast<float>(values[i]));
      break;
    }
    case DataType::kBfloat16: {
      auto* out = static_cast<uint16_t*>(data);
      for (size_t i = 0; i < values.size(); ++i) {
        out[i] = floatToBfloat16(static_cast<float>(values[i]));
      }
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("input '", inputName, "' has type ",
                                                     typeName(type),
                                                     ", which roformer-run cannot fill"));
  }
  return tensor;
}

bool nameContains(const std::string& name, std::string_view word) {
  return absl::StrContains(absl::AsciiStrToLower(name), std::string(word));
}

}  // namespace

std::optional<int64_t> fixedDim(const TensorInfo& info, size_t index) {
  if (!info.dims || index >= info.dims->size()) return std::nullopt;
  return (*info.dims)[index].value;
}

absl::StatusOr<std::vector<double>> tensorToDoubles(const HostTensor& tensor) {
  std::vector<double> values(static_cast<size_t>(tensor.elementCount()));
  const void* data = tensor.rawData();
  auto load = [&](auto* typed) {
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<double>(typed[i]);
  };
  switch (tensor.type()) {
    case DataType::kFloat:
      load(static_cast<const float*>(data));
      break;
    case DataType::kDouble:
      load(static_cast<const double*>(data));
      break;
    case DataType::kInt8:
      load(static_cast<const int8_t*>(data));
      break;
    case DataType::kUint8:
      load(static_cast<const uint8_t*>(data));
      break;
    case DataType::kInt16:
      load(static_cast<const int16_t*>(data));
      break;
    case DataType::kUint16:
      load(static_cast<const uint16_t*>(data));
      break;
    case DataType::kInt32:
      load(static_cast<const int32_t*>(data));
      break;
    case DataType::kUint32:
      load(static_cast<const uint32_t*>(data));
      break;
    case DataType::kInt64:
      load(static_cast<const int64_t*>(data));
      break;
    case DataType::kUint64:
      load(static_cast<const uint64_t*>(data));
      break;
    case DataType::kBool:
      load(static_cast<const bool*>(data));
      break;
    case DataType::kFloat16: {
      auto* bits = static_cast<const uint16_t*>(data);
      for (size_t i = 0; i < values.size(); ++i) values[i] = halfToFloat(bits[i]);
      break;
    }
    case DataType::kBfloat16: {
      auto* bits = static_cast<const uint16_t*>(data);
      for (size_t i = 0; i < values.size(); ++i) values[i] = bfloat16ToFloat(bits[i]);
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("a ", typeName(tensor.type()), " tensor has no numeric values"));
  }
  return values;
}

absl::StatusOr<HostTensor> convertTensor(const HostTensor& tensor, DataType type,
                                         const std::string& inputName) {
  if (tensor.type() == type) return tensor;
  absl::StatusOr<std::vector<double>> values = tensorToDoubles(tensor);
  if (!values.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("input '", inputName, "': ", values.status().message()));
  }
  return tensorFromDoubles(type, tensor.shape(), *values, inputName);
}

absl::StatusOr<HostTensor> tensorFromIds(DataType type, const Shape& shape,
                                         const std::vector<int64_t>& values,
                                         const std::string& inputName) {
  if (type == DataType::kInt64) return HostTensor::fromVector<int64_t>(shape, values);
  std::vector<double> asDoubles(values.begin(), values.end());
  if (type == DataType::kFloat16 || type == DataType::kBfloat16) {
    int64_t exactLimit = type == DataType::kFloat16 ? 2048 : 256;
    for (int64_t v : values) {
      if (std::abs(v) > exactLimit) {
        return absl::InvalidArgumentError(absl::StrCat(
            "input '", inputName, "' is ", typeName(type), ", which cannot hold id ", v,
            " exactly"));
      }
    }
  }
  return tensorFromDoubles(type, shape, asDoubles, inputName);
}

IdInputs findIdInputs(const Session& session, std::optional<int64_t> vocabOverride) {
  IdInputs ids;
  const std::vector<TensorInfo>& inputs = session.inputs();
  // The token input indexes the largest table; the segment input another one.
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].idUse || !inputs[i].idUse->tableRows) continue;
    int64_t rows = *inputs[i].idUse->tableRows;
    if (ids.tokenInput < 0 || rows > *inputs[ids.tokenInput].idUse->tableRows) {
      ids.tokenInput = static_cast<int>(i);
    }
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (static_cast<int>(i) == ids.tokenInput || !inputs[i].idUse) continue;
    if (ids.segmentInput < 0) ids.segmentInput = static_cast<int>(i);
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    int index = static_cast<int>(i);
    if (ids.tokenInput < 0 && nameContains(inputs[i].name, "token") && index != ids.segmentInput) {
      ids.tokenInput = index;
    }
    if (ids.segmentInput < 0 && nameContains(inputs[i].name, "segment") &&
        index != ids.tokenInput) {
      ids.segmentInput = index;
    }
  }
  if (ids.tokenInput >= 0 && inputs[ids.tokenInput].idUse) {
    ids.vocab = inputs[ids.tokenInput].idUse->tableRows;
  }
  if (vocabOverride) ids.vocab = vocabOverride;
  if (ids.segmentInput >= 0 && inputs[ids.segmentInput].idUse) {
    ids.segmentRows = inputs[ids.segmentInput].idUse->tableRows;
  }
  return ids;
}

namespace {

std::string alphanumericName(const std::string& name) {
  std::string kept;
  for (char c : name) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
      kept.push_back(c);
    }
  }
  return kept;
}

}  // namespace

absl::StatusOr<std::map<std::string, HostTensor>> adaptInputs(
    const Session& target, const std::map<std::string, HostTensor>& inputs) {
  std::map<std::string, HostTensor> adapted;
  for (const TensorInfo& info : target.inputs()) {
    auto it = inputs.find(info.name);
    if (it == inputs.end()) {
      it = std::find_if(inputs.begin(), inputs.end(), [&](const auto& entry) {
        return alphanumericName(entry.first) == alphanumericName(info.name);
      });
    }
    if (it == inputs.end()) {
      std::vector<std::string> names;
      for (const auto& [name, tensor] : inputs) names.push_back("'" + name + "'");
      return absl::InvalidArgumentError(
          absl::StrCat("no input matches the reference model's input '", info.name,
                       "' by name; the inputs are ", absl::StrJoin(names, ", ")));
    }
    HostTensor tensor = it->second;
    if (info.type != DataType::kUndefined && tensor.type() != info.type) {
      absl::StatusOr<HostTensor> converted = convertTensor(tensor, info.type, info.name);
      if (!converted.ok()) return converted.status();
      tensor = std::move(*converted);
    }
    adapted.emplace(info.name, std::move(tensor));
  }
  return adapted;
}

absl::StatusOr<std::map<std::string, HostTensor>> readInputFiles(
    const Session& session, const std::vector<std::string>& specs) {
  std::map<std::string, HostTensor> inputs;
  auto declaredType = [&](const std::string& name) -> std::optional<DataType> {
    for (const TensorInfo& info : session.inputs()) {
      if (info.name == name) return info.type;
    }
    return std::nullopt;
  };
  auto checkName = [&](const std::string& name, const std::string& file) -> absl::Status {
    if (!declaredType(name)) {
      std::vector<std::string> names;
      for (const TensorInfo& info : session.inputs()) names.push_back("'" + info.name + "'");
      return absl::InvalidArgumentError(absl::StrCat("'", name, "' from ", file,
                                                     " is not an input of the model; its "
                                                     "inputs are ",
                                                     absl::StrJoin(names, ", ")));
    }
    if (inputs.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("input '", name, "' is given twice"));
    }
    return absl::OkStatus();
  };
  auto add = [&](const std::string& name, HostTensor tensor,
                 const std::string& file) -> absl::Status {
    if (absl::Status valid = checkName(name, file); !valid.ok()) return valid;
    std::optional<DataType> type = declaredType(name);
    if (*type != DataType::kUndefined && tensor.type() != *type) {
      absl::StatusOr<HostTensor> converted = convertTensor(tensor, *type, name);
      if (!converted.ok()) return converted.status();
      tensor = std::move(*converted);
    }
    inputs.emplace(name, std::move(tensor));
    return absl::OkStatus();
  };

  for (const std::string& spec : specs) {
    size_t equals = spec.find('=');
    if (equals == std::string::npos) {
      if (!absl::EndsWith(spec, ".npz")) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--input '", spec, "' is neither NAME=FILE.npy nor an .npz file of named inputs"));
      }
      absl::StatusOr<runtime::NamedTensors> members = runtime::readNpz(spec);
      if (!members.ok()) return members.status();
      for (auto& [name, tensor] : *members) {
        if (absl::Status added = add(name, std::move(tensor), spec); !added.ok()) return added;
      }
      continue;
    }
    std::string name = spec.substr(0, equals);
    std::string file = spec.substr(equals + 1);
    if (absl::Status valid = checkName(name, file); !valid.ok()) return valid;
    absl::StatusOr<HostTensor> tensor = runtime::readNpy(file);
    if (!tensor.ok()) return tensor.status();
    if (absl::Status added = add(name, std::move(*tensor), file); !added.ok()) return added;
  }
  return inputs;
}

absl::Status addSyntheticInputs(const Session& session, const IdInputs& ids,
                                const SyntheticOptions& options,
                                std::map<std::string, HostTensor>& inputs) {
  const std::vector<TensorInfo>& infos = session.inputs();
  std::mt19937_64 random(options.seed);
  Shape shape{options.batch, options.seqLen};
  const int64_t batch = options.batch;
  const int64_t length = options.seqLen;
  int64_t tokenCount = 0;
  if (__builtin_mul_overflow(batch, length, &tokenCount) || tokenCount > kMaxSyntheticTokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--batch ", batch, " x --seq-len ", length, " is more than ", kMaxSyntheticTokens,
        " tokens; choose a smaller batch or sequence length"));
  }

  std::vector<int64_t> tokens(static_cast<size_t>(tokenCount));
  std::vector<int64_t> segments(tokens.size(), 0);
  if (ids.tokenInput >= 0 && !inputs.count(infos[ids.tokenInput].name)) {
    if (!ids.vocab) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot find the vocabulary size of input '", infos[ids.tokenInput].name,
          "' (no Gather on a constant table uses it); pass --vocab"));
    }
    int64_t vocab = *ids.vocab;
    if (vocab < 2) {
      return absl::InvalidArgumentError(absl::StrCat("the vocabulary has ", vocab,
                                                     " ids; synthetic ids need at least 2"));
    }
  }
  int64_t vocab = ids.vocab.value_or(2);
  int64_t cls = vocab > kSepId ? kClsId : 1;
  int64_t sep = vocab > kSepId ? kSepId : std::min<int64_t>(2, vocab - 1);
  std::uniform_int_distribution<int64_t> textId(1, vocab - 1);
  bool twoSegments = !ids.segmentRows || *ids.segmentRows >= 2;
  for (int64_t row = 0; row < batch; ++row) {
    int64_t* rowTokens = tokens.data() + row * length;
    int64_t* rowSegments = segments.data() + row * length;
    for (int64_t i = 0; i < length; ++i) rowTokens[i] = textId(random);
    if (length < 3) continue;
    // [CLS] first text [SEP] second text [SEP]
    int64_t firstSep = 1 + (length - 3) / 2;
    rowTokens[0] = cls;
    rowTokens[firstSep] = sep;
    rowTokens[length - 1] = sep;
    if (twoSegments) {
      for (int64_t i = firstSep + 1; i < length; ++i) rowSegments[i] = 1;
    }
  }

  for (size_t i = 0; i < infos.size(); ++i) {
    const TensorInfo& info = infos[i];
    if (inputs.count(info.name)) continue;
    const std::vector<int64_t>* values = nullptr;
    if (static_cast<int>(i) == ids.tokenInput) values = &tokens;
    if (static_cast<int>(i) == ids.segmentInput) values = &segments;
    if (values == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot synthesize input '", info.name, "' (it is neither the token nor the segment "
          "ids); pass it with --input '", info.name, "=FILE.npy'"));
    }
    if (info.dims && info.dims->size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", info.name, "' has rank ", info.dims->size(),
          "; synthetic ids are [batch, seq-len]; pass it with --input"));
    }
    DataType type = info.type == DataType::kUndefined ? DataType::kInt64 : info.type;
    absl::StatusOr<HostTensor> tensor = tensorFromIds(type, shape, *values, info.name);
    if (!tensor.ok()) return tensor.status();
    inputs.emplace(info.name, std::move(*tensor));
  }
  return absl::OkStatus();
}

}  // namespace roformer::run
