#include "ir/Tensor.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "onnx/onnx_pb.h"

namespace roformer::ir {
namespace {

class StringBuffer final : public Buffer {
 public:
  explicit StringBuffer(std::string bytes) : bytes_(std::move(bytes)) {}
  const uint8_t* data() const override { return reinterpret_cast<const uint8_t*>(bytes_.data()); }
  size_t size() const override { return bytes_.size(); }

 private:
  std::string bytes_;
};

class MappedBuffer final : public Buffer {
 public:
  MappedBuffer(void* mapping, size_t mappingSize, const uint8_t* data, size_t size)
      : mapping_(mapping), mappingSize_(mappingSize), data_(data), size_(size) {}
  ~MappedBuffer() override {
    if (mapping_ != nullptr) munmap(mapping_, mappingSize_);
  }
  const uint8_t* data() const override { return data_; }
  size_t size() const override { return size_; }

 private:
  void* mapping_;
  size_t mappingSize_;
  const uint8_t* data_;
  size_t size_;
};

// Returns the element count of `dims`, or an error when a dim is negative or
// the product overflows.
absl::StatusOr<int64_t> validatedElementCount(const std::vector<int64_t>& dims,
                                              const std::string& what) {
  for (int64_t dim : dims) {
    if (dim < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": dimension ", dim, " is negative; tensor dims must be >= 0"));
    }
  }
  std::optional<int64_t> count = checkedElementCount(dims);
  if (!count) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": the product of the dims overflows 64 bits"));
  }
  return *count;
}

// Resolves an external-data location inside `baseDir`, rejecting absolute
// paths, `..` components and symlinks that lead outside the folder.
absl::StatusOr<std::filesystem::path> resolveExternalLocation(const std::filesystem::path& baseDir,
                                                              const std::string& location,
                                                              const std::string& what) {
  std::filesystem::path relative(location);
  if (location.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": external data has an empty location"));
  }
  if (relative.is_absolute()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": external data location '", location,
        "' is absolute; locations must be relative to the model's folder"));
  }
  for (const auto& part : relative) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": external data location '", location,
                       "' contains '..'; locations must stay inside the model's folder"));
    }
  }
  std::error_code error;
  std::filesystem::path base = std::filesystem::canonical(baseDir.empty() ? "." : baseDir, error);
  if (error) {
    return absl::NotFoundError(absl::StrCat(what, ": cannot resolve the model folder '",
                                            baseDir.string(), "': ", error.message()));
  }
  std::filesystem::path full = std::filesystem::canonical(base / relative, error);
  if (error) {
    return absl::NotFoundError(absl::StrCat(what, ": external data file '",
                                            (base / relative).string(), "' not found (",
                                            error.message(), ")"));
  }
  auto [baseEnd, fullIt] = std::mismatch(base.begin(), base.end(), full.begin(), full.end());
  if (baseEnd != base.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": external data location '", location, "' resolves to '",
                     full.string(), "', outside the model's folder '", base.string(), "'"));
  }
  return full;
}

absl::StatusOr<std::shared_ptr<const Buffer>> loadExternalData(const onnx::TensorProto& proto,
                                                               const std::filesystem::path& baseDir,
                                                               const std::string& what,
                                                               ExternalDataOrigin* origin) {
  std::optional<uint64_t> offset;
  std::optional<uint64_t> length;
  std::string location;
  for (const auto& entry : proto.external_data()) {
    const std::string& key = entry.key();
    if (key == "location") {
      location = entry.value();
    } else if (key == "offset" || key == "length") {
      char* end = nullptr;
      errno = 0;
      unsigned long long parsed = std::strtoull(entry.value().c_str(), &end, 10);
      if (entry.value().empty() || *end != '\0' || errno != 0 || entry.value()[0] == '-') {
        return absl::InvalidArgumentError(absl::StrCat(what, ": external data ", key, " '",
                                                       entry.value(), "' is not a valid number"));
      }
      (key == "offset" ? offset : length) = parsed;
    }
  }
  auto path = resolveExternalLocation(baseDir, location, what);
  if (!path.ok()) return path.status();

  struct stat info {};
  if (stat(path->c_str(), &info) != 0 || !S_ISREG(info.st_mode)) {
    return absl::NotFoundError(
        absl::StrCat(what, ": external data file '", path->string(), "' is not a regular file"));
  }
  uint64_t fileSize = static_cast<uint64_t>(info.st_size);
  uint64_t begin = offset.value_or(0);
  if (begin > fileSize) {
    return absl::OutOfRangeError(absl::StrCat(what, ": external data offset ", begin,
                                              " is past the end of '", path->string(), "' (",
                                              fileSize, " bytes)"));
  }
  uint64_t size = length.value_or(fileSize - begin);
  if (size > fileSize - begin) {
    return absl::OutOfRangeError(absl::StrCat(what, ": external data range [", begin, ", ",
                                              begin + size, ") exceeds the size of '",
                                              path->string(), "' (", fileSize, " bytes)"));
  }
  *origin = ExternalDataOrigin{location, begin, size};
  return Buffer::mapFile(*path, begin, size);
}

template <typename Field>
std::string packField(const Field& field, DataType type) {
  // Pack each element of a typed repeated field into `type`'s width.
  std::string bytes;
  size_t width = dataTypeSize(type);
  bytes.resize(static_cast<size_t>(field.size()) * width);
  char* out = bytes.data();
  for (auto value : field) {
    switch (type) {
      case DataType::kBool:
      case DataType::kUint8:
      case DataType::kInt8: {
        uint8_t v = static_cast<uint8_t>(value);
        std::memcpy(out, &v, 1);
        break;
      }
      case DataType::kUint16:
      case DataType::kInt16:
      case DataType::kFloat16:
      case DataType::kBfloat16: {
        uint16_t v = static_cast<uint16_t>(value);
        std::memcpy(out, &v, 2);
        break;
      }
      case DataType::kInt32: {
        int32_t v = static_cast<int32_t>(value);
        std::memcpy(out, &v, 4);
        break;
      }
      case DataType::kUint32: {
        uint32_t v = static_cast<uint32_t>(value);
        std::memcpy(out, &v, 4);
        break;
      }
      case DataType::kFloat:
      case DataType::kComplex64: {
        float v = static_cast<float>(value);
        std::memcpy(out, &v, 4);
        break;
      }
      case DataType::kInt64: {
        int64_t v = static_cast<int64_t>(value);
        std::memcpy(out, &v, 8);
        break;
      }
      case DataType::kUint64: {
        uint64_t v = static_cast<uint64_t>(value);
        std::memcpy(out, &v, 8);
        break;
      }
      case DataType::kDouble:
      case DataType::kComplex128: {
        double v = static_cast<double>(value);
        std::memcpy(out, &v, 8);
        break;
      }
      default:
        break;
    }
    out += (type == DataType::kComplex64 || type == DataType::kComplex128) ? width / 2 : width;
  }
  if (type == DataType::kComplex64 || type == DataType::kComplex128) bytes.resize(out - bytes.data());
  return bytes;
}

absl::StatusOr<std::shared_ptr<Tensor>> decodeTensor(const onnx::TensorProto& proto,
                                                     std::string* stealableRaw,
                                                     const std::filesystem::path& baseDir,
                                                     const std::string& what) {
  if (!isValidDataType(proto.data_type()) || proto.data_type() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": data_type ", proto.data_type(), " is not a valid ONNX tensor element type"));
  }
  auto type = static_cast<DataType>(proto.data_type());
  std::vector<int64_t> dims(proto.dims().begin(), proto.dims().end());
  auto count = validatedElementCount(dims, what);
  if (!count.ok()) return count.status();

  if (type == DataType::kString) {
    if (proto.string_data_size() != *count) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": has ", proto.string_data_size(),
                                                     " strings but its dims need ", *count));
    }
    return std::make_shared<Tensor>(
        dims, std::vector<std::string>(proto.string_data().begin(), proto.string_data().end()));
  }

  size_t elementSize = dataTypeSize(type);
  uint64_t expectedBytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(*count), elementSize, &expectedBytes)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": byte size overflows 64 bits"));
  }

  std::shared_ptr<const Buffer> buffer;
  std::optional<ExternalDataOrigin> origin;
  if (proto.data_location() == onnx::TensorProto::EXTERNAL) {
    ExternalDataOrigin found;
    auto mapped = loadExternalData(proto, baseDir, what, &found);
    if (!mapped.ok()) return mapped.status();
    buffer = *std::move(mapped);
    origin = found;
  } else if (proto.has_raw_data()) {
    if (stealableRaw != nullptr) {
      buffer = Buffer::fromString(std::move(*stealableRaw));
    } else {
      buffer = Buffer::fromString(proto.raw_data());
    }
  } else {
    switch (type) {
      case DataType::kFloat:
      case DataType::kComplex64:
        buffer = Buffer::fromString(packField(proto.float_data(), type));
        break;
      case DataType::kDouble:
      case DataType::kComplex128:
        buffer = Buffer::fromString(packField(proto.double_data(), type));
        break;
      case DataType::kInt64:
        buffer = Buffer::fromString(packField(proto.int64_data(), type));
        break;
      case DataType::kUint32:
      case DataType::kUint64:
        buffer = Buffer::fromString(packField(proto.uint64_data(), type));
        break;
      default:
        buffer = Buffer::fromString(packField(proto.int32_data(), type));
        break;
    }
  }

  if (buffer->size() != expectedBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": holds ", buffer->size(), " bytes of data but ", std::string(dataTypeName(type)), " dims [",
        absl::StrJoin(dims, ","), "] need ", expectedBytes,
        "; the tensor is truncated or its dims are wrong"));
  }
  auto tensor = std::make_shared<Tensor>(type, std::move(dims), std::move(buffer));
  if (origin) tensor->setExternalOrigin(*origin);
  return tensor;
}

}  // namespace

std::shared_ptr<const Buffer> Buffer::fromString(std::string bytes) {
  return std::make_shared<StringBuffer>(std::move(bytes));
}

std::shared_ptr<const Buffer> Buffer::fromBytes(const void* data, size_t size) {
  return std::make_shared<StringBuffer>(std::string(static_cast<const char*>(data), size));
}

absl::StatusOr<std::shared_ptr<const Buffer>> Buffer::mapFile(const std::filesystem::path& path,
                                                             uint64_t offset, uint64_t length) {
  if (length == 0) return fromString(std::string());
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open '", path.string(), "': ", std::strerror(errno)));
  }
  long page = sysconf(_SC_PAGESIZE);
  uint64_t alignedOffset = offset - offset % static_cast<uint64_t>(page);
  size_t mappingSize = static_cast<size_t>(length + (offset - alignedOffset));
  void* mapping = mmap(nullptr, mappingSize, PROT_READ, MAP_PRIVATE, fd,
                       static_cast<off_t>(alignedOffset));
  int savedErrno = errno;
  close(fd);
  if (mapping == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot map ", length, " bytes of '",
                                                     path.string(), "': ",
                                                     std::strerror(savedErrno)));
  }
  const uint8_t* data = static_cast<const uint8_t*>(mapping) + (offset - alignedOffset);
  return std::shared_ptr<const Buffer>(
      std::make_shared<MappedBuffer>(mapping, mappingSize, data, static_cast<size_t>(length)));
}

Tensor::Tensor(DataType type, std::vector<int64_t> dims, std::shared_ptr<const Buffer> buffer)
    : type_(type), dims_(std::move(dims)), buffer_(std::move(buffer)) {}

Tensor::Tensor(std::vector<int64_t> dims, std::vector<std::string> strings)
    : type_(DataType::kString), dims_(std::move(dims)), strings_(std::move(strings)) {}

std::optional<int64_t> checkedElementCount(std::span<const int64_t> dims) {
  int64_t count = 1;
  for (int64_t dim : dims) {
    if (dim < 0 || __builtin_mul_overflow(count, dim, &count)) return std::nullopt;
  }
  return count;
}

std::optional<int64_t> checkedByteSize(DataType type, std::span<const int64_t> dims) {
  std::optional<int64_t> count = checkedElementCount(dims);
  int64_t bytes = 0;
  if (!count ||
      __builtin_mul_overflow(*count, static_cast<int64_t>(dataTypeSize(type)), &bytes)) {
    return std::nullopt;
  }
  return bytes;
}

int64_t Tensor::elementCount() const {
  int64_t count = 1;
  for (int64_t dim : dims_) count *= dim;
  return count;
}

std::optional<std::vector<int64_t>> Tensor::toInt64Vector() const {
  int64_t count = elementCount();
  std::vector<int64_t> out(static_cast<size_t>(count));
  const uint8_t* data = rawData();
  for (int64_t i = 0; i < count; ++i) {
    switch (type_) {
      case DataType::kInt64:
        out[i] = reinterpret_cast<const int64_t*>(data)[i];
        break;
      case DataType::kInt32:
        out[i] = reinterpret_cast<const int32_t*>(data)[i];
        break;
      case DataType::kInt16:
        out[i] = reinterpret_cast<const int16_t*>(data)[i];
        break;
      case DataType::kInt8:
        out[i] = reinterpret_cast<const int8_t*>(data)[i];
        break;
      case DataType::kUint8:
      case DataType::kBool:
        out[i] = data[i];
        break;
      case DataType::kUint16:
        out[i] = reinterpret_cast<const uint16_t*>(data)[i];
        break;
      case DataType::kUint32:
        out[i] = reinterpret_cast<const uint32_t*>(data)[i];
        break;
      case DataType::kUint64:
        out[i] = static_cast<int64_t>(reinterpret_cast<const uint64_t*>(data)[i]);
        break;
      default:
        return std::nullopt;
    }
  }
  return out;
}

std::optional<std::vector<double>> Tensor::toDoubleVector() const {
  if (type_ == DataType::kFloat) {
    auto v = values<float>();
    return std::vector<double>(v.begin(), v.end());
  }
  if (type_ == DataType::kDouble) {
    auto v = values<double>();
    return std::vector<double>(v.begin(), v.end());
  }
  auto ints = toInt64Vector();
  if (!ints) return std::nullopt;
  return std::vector<double>(ints->begin(), ints->end());
}

bool Tensor::contentEquals(const Tensor& other) const {
  if (type_ != other.type_ || dims_ != other.dims_) return false;
  if (type_ == DataType::kString) return strings_ == other.strings_;
  if (byteSize() != other.byteSize()) return false;
  return byteSize() == 0 || std::memcmp(rawData(), other.rawData(), byteSize()) == 0;
}

uint64_t Tensor::contentHash() const {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  int32_t type = static_cast<int32_t>(type_);
  XXH3_64bits_update(state, &type, sizeof(type));
  XXH3_64bits_update(state, dims_.data(), dims_.size() * sizeof(int64_t));
  if (type_ == DataType::kString) {
    for (const auto& s : strings_) {
      uint64_t size = s.size();
      XXH3_64bits_update(state, &size, sizeof(size));
      XXH3_64bits_update(state, s.data(), s.size());
    }
  } else if (byteSize() > 0) {
    XXH3_64bits_update(state, rawData(), byteSize());
  }
  uint64_t hash = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return hash;
}

absl::StatusOr<std::shared_ptr<Tensor>> Tensor::fromProto(const onnx::TensorProto& proto,
                                                          const std::filesystem::path& baseDir,
                                                          const std::string& what) {
  return decodeTensor(proto, nullptr, baseDir, what);
}

absl::StatusOr<std::shared_ptr<Tensor>> Tensor::fromProtoTakingData(
    onnx::TensorProto* proto, const std::filesystem::path& baseDir, const std::string& what) {
  std::string* raw = proto->has_raw_data() ? proto->mutable_raw_data() : nullptr;
  return decodeTensor(*proto, raw, baseDir, what);
}

void Tensor::toProto(onnx::TensorProto* proto) const {
  proto->set_data_type(static_cast<int32_t>(type_));
  proto->clear_dims();
  for (int64_t dim : dims_) proto->add_dims(dim);
  if (type_ == DataType::kString) {
    for (const auto& s : strings_) proto->add_string_data(s);
    return;
  }
  proto->set_raw_data(rawData(), byteSize());
}

}  // namespace roformer::ir
