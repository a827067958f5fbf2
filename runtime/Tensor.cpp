#include "runtime/Tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_join.h"

namespace roformer::runtime {

int64_t shapeElementCount(const Shape& shape) {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

std::string shapeToString(const Shape& shape) { return "[" + absl::StrJoin(shape, ", ") + "]"; }

namespace {

// Host tensors are 64-byte aligned so that vector loads never split a cache
// line at the start of a buffer.
constexpr size_t kHostAlignment = 64;

std::shared_ptr<void> allocateHostBuffer(size_t bytes) {
  size_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
  if (rounded == 0) rounded = kHostAlignment;
  void* data = std::aligned_alloc(kHostAlignment, rounded);
  if (data == nullptr) throw std::bad_alloc();
  std::memset(data, 0, rounded);
  return std::shared_ptr<void>(data, [](void* p) { std::free(p); });
}

}  // namespace

HostTensor::HostTensor(DataType type, Shape shape)
    : type_(type), shape_(std::move(shape)) {
  owner_ = allocateHostBuffer(byteSize());
  data_ = owner_.get();
}

HostTensor::HostTensor(DataType type, Shape shape, std::shared_ptr<void> owner, void* data)
    : type_(type), shape_(std::move(shape)), owner_(std::move(owner)), data_(data) {}

}  // namespace roformer::runtime
