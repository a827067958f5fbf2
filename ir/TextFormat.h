// The ONNX textual syntax, printed from and parsed into ModelProto.
//
// The syntax is the one `onnx.printer` and `onnx.parser` use, extended where
// ONNX 1.12's C++ library falls short: quoted names for any string (such as
// `"input_segment:0"`), node domains, node names, initializers with values,
// value_info entries, external and elided tensor data, and metadata_props.
// docs/text-format.md describes the grammar.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "onnx/onnx_pb.h"

namespace roformer::ir {

struct PrintOptions {
  // Print tensors with more elements than this as `elided(...)` (0: never).
  uint64_t elideTensorsAbove = 0;
};

// Prints `model`; fails on content the syntax cannot express (for example
// sparse initializers), naming it.
absl::Status printModelText(const onnx::ModelProto& model, std::ostream& out,
                            const PrintOptions& options = {});
absl::StatusOr<std::string> modelToText(const onnx::ModelProto& model,
                                        const PrintOptions& options = {});

// Parses a whole model. `source` names the input in error messages, which
// carry line and column.
absl::StatusOr<onnx::ModelProto> parseModelText(std::string_view text, std::string_view source);

}  // namespace roformer::ir
