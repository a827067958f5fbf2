// Writing a ModelProto whose initializer bytes stay in the IR's tensors.
//
// Exporting a model copies every weight into its TensorProto's raw_data, so
// saving through ModelProto::SerializeToFileDescriptor keeps two copies of
// the weights in memory. The writer here takes a proto exported without initializer
// data and writes each weight from its tensor's buffer while serializing,
// producing the same bytes as serializing the complete proto.
#pragma once

#include <span>

#include "absl/status/status.h"
#include "ir/Tensor.h"
#include "onnx/onnx_pb.h"

namespace roformer::ir {

// Writes `proto` to `fd` in protobuf's binary encoding. `initializerData` has
// one entry per graph initializer: when not null, its bytes become that
// initializer's raw_data, which the proto must leave unset. Fields are written
// in protobuf's canonical order (by field number, unknown fields last), so the
// output equals SerializeToFileDescriptor's on the complete proto. `proto`'s
// graph is moved out and restored before returning.
absl::Status writeModelWithInitializerData(int fd, onnx::ModelProto& proto,
                                           std::span<const Tensor* const> initializerData);

}  // namespace roformer::ir
