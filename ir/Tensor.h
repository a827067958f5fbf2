// Constant tensors: initializers and the values of Constant nodes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/DataType.h"

namespace onnx {
class TensorProto;
}

namespace roformer::ir {

// Immutable bytes shared by any number of tensors: an owned string, or a
// read-only memory map of an external data file.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual const uint8_t* data() const = 0;
  virtual size_t size() const = 0;

  static std::shared_ptr<const Buffer> fromString(std::string bytes);
  static std::shared_ptr<const Buffer> fromBytes(const void* data, size_t size);
  // Maps `length` bytes at `offset` of `path` read-only.
  static absl::StatusOr<std::shared_ptr<const Buffer>> mapFile(const std::filesystem::path& path,
                                                               uint64_t offset, uint64_t length);
};

// Where an initializer's bytes lived in the file it was loaded from, when they
// were stored with ONNX's external-data form.
struct ExternalDataOrigin {
  std::string location;
  uint64_t offset = 0;
  uint64_t length = 0;
};

// A typed, dense, immutable tensor. Copies share the bytes, so passes can read
// and pass around weights without copying them. Numeric data is little-endian
// and packed as in TensorProto.raw_data; string tensors keep their elements in
// `strings()` instead.
class Tensor {
 public:
  Tensor(DataType type, std::vector<int64_t> dims, std::shared_ptr<const Buffer> buffer);
  Tensor(std::vector<int64_t> dims, std::vector<std::string> strings);

  // Creates a tensor of `dims` holding a copy of `values`.
  template <typename T>
  static std::shared_ptr<Tensor> create(std::vector<int64_t> dims, std::span<const T> values) {
    return std::make_shared<Tensor>(DataTypeOf<T>::value, std::move(dims),
                                    Buffer::fromBytes(values.data(), values.size_bytes()));
  }
  template <typename T>
  static std::shared_ptr<Tensor> create(std::vector<int64_t> dims, const std::vector<T>& values) {
    return create<T>(std::move(dims), std::span<const T>(values));
  }
  template <typename T>
  static std::shared_ptr<Tensor> scalar(T value) {
    return create<T>({}, std::span<const T>(&value, 1));
  }

  DataType dataType() const { return type_; }
  const std::vector<int64_t>& dims() const { return dims_; }
  int64_t rank() const { return static_cast<int64_t>(dims_.size()); }
  int64_t elementCount() const;
  size_t byteSize() const { return buffer_ ? buffer_->size() : 0; }
  const uint8_t* rawData() const { return buffer_ ? buffer_->data() : nullptr; }
  const std::shared_ptr<const Buffer>& buffer() const { return buffer_; }
  const std::vector<std::string>& strings() const { return strings_; }

  // Returns the elements as T. The caller must check dataType() first: a
  // mismatch is a programming error and aborts in debug builds.
  template <typename T>
  std::span<const T> values() const {
    return std::span<const T>(reinterpret_cast<const T*>(rawData()), byteSize() / sizeof(T));
  }

  // Reads the elements of an integer tensor (any width) as int64; returns
  // nullopt for non-integer types.
  std::optional<std::vector<int64_t>> toInt64Vector() const;
  // Reads the elements of a floating-point or integer tensor as double.
  std::optional<std::vector<double>> toDoubleVector() const;

  // True when both tensors have the same type, dims and bytes.
  bool contentEquals(const Tensor& other) const;
  // A 64-bit fingerprint of type, dims and bytes (xxHash3), for merging
  // identical constants and for the elided form of the text printer.
  uint64_t contentHash() const;

  const std::optional<ExternalDataOrigin>& externalOrigin() const { return external_; }
  void setExternalOrigin(ExternalDataOrigin origin) { external_ = std::move(origin); }

  // Decodes a TensorProto, resolving external data relative to `baseDir`.
  // `what` names the tensor in error messages. Typed fields (float_data, ...)
  // are converted to the packed little-endian form.
  static absl::StatusOr<std::shared_ptr<Tensor>> fromProto(const onnx::TensorProto& proto,
                                                           const std::filesystem::path& baseDir,
                                                           const std::string& what);
  // The same, but takes over `proto`'s raw_data instead of copying it.
  static absl::StatusOr<std::shared_ptr<Tensor>> fromProtoTakingData(
      onnx::TensorProto* proto, const std::filesystem::path& baseDir, const std::string& what);
  // Writes type, dims and raw_data (or string_data) into `proto`; the name is
  // left to the caller.
  void toProto(onnx::TensorProto* proto) const;

 private:
  DataType type_;
  std::vector<int64_t> dims_;
  std::shared_ptr<const Buffer> buffer_;
  std::vector<std::string> strings_;
  std::optional<ExternalDataOrigin> external_;
};

// The element count of a dense tensor with `dims`, or nullopt when a dim is
// negative or the product does not fit in int64_t. Shapes computed by passes
// and kernels from constant values can be arbitrarily large, so code that
// sizes a buffer from one checks it here first.
std::optional<int64_t> checkedElementCount(std::span<const int64_t> dims);
// The byte size of a dense tensor of `type` with `dims`, or nullopt as above
// or when the bytes do not fit in int64_t. Types without a fixed element size
// (strings) count as zero bytes.
std::optional<int64_t> checkedByteSize(DataType type, std::span<const int64_t> dims);

}  // namespace roformer::ir
