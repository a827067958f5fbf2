// Runtime tensors: typed, dense, row-major buffers owned by a session's arena
// or by the caller.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ir/DataType.h"

namespace roformer::runtime {

using ir::DataType;
using Shape = std::vector<int64_t>;

// Product of the dims; 1 for a scalar.
int64_t shapeElementCount(const Shape& shape);
std::string shapeToString(const Shape& shape);

// A view of a tensor that someone else owns.
struct TensorView {
  DataType type = DataType::kUndefined;
  Shape shape;
  void* data = nullptr;

  int64_t elementCount() const { return shapeElementCount(shape); }
  size_t byteSize() const { return static_cast<size_t>(elementCount()) * ir::dataTypeSize(type); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  template <typename T>
  std::span<T> span() const {
    return std::span<T>(static_cast<T*>(data), static_cast<size_t>(elementCount()));
  }
};

// A tensor that owns (or shares) its host memory; the type of session inputs
// and outputs.
class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(DataType type, Shape shape);
  // Wraps memory kept alive by `owner`.
  HostTensor(DataType type, Shape shape, std::shared_ptr<void> owner, void* data);

  template <typename T>
  static HostTensor fromVector(Shape shape, const std::vector<T>& values) {
    HostTensor tensor(ir::DataTypeOf<T>::value, std::move(shape));
    std::copy(values.begin(), values.end(), tensor.data<T>());
    return tensor;
  }

  DataType type() const { return type_; }
  const Shape& shape() const { return shape_; }
  int64_t elementCount() const { return shapeElementCount(shape_); }
  size_t byteSize() const { return static_cast<size_t>(elementCount()) * ir::dataTypeSize(type_); }
  void* rawData() const { return data_; }
  template <typename T>
  T* data() const {
    return static_cast<T*>(data_);
  }
  TensorView view() const { return TensorView{type_, shape_, data_}; }
  bool empty() const { return type_ == DataType::kUndefined; }

 private:
  DataType type_ = DataType::kUndefined;
  Shape shape_;
  std::shared_ptr<void> owner_;
  void* data_ = nullptr;
};

}  // namespace roformer::runtime
