// The ONNX textual syntax, printed from and parsed into ModelProto.
//
// The syntax is the one `onnx.printer` and `onnx.parser` use, extended where
// ONNX 1.12's C++ library falls short. The extensions are quoted names for
// any string (such as `"input_segment:0"`), node domains, node names,
// initializers with values, value_info entries, external and elided tensor
// data, and metadata_props.
// One spelling differs from ONNX 1.12's parser: `float[]` is a scalar and
// `float` a tensor of unknown rank. docs/text-format.md describes the
// grammar and what a round trip through text normalizes.
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
  // The parser rejects elided tensors, so such text is for reading only.
  uint64_t elideTensorsAbove = 0;
};

// Prints `model`; fails on content the syntax cannot express (for example
// sparse initializers), naming it. The stream receives the text in pieces,
// so after a failure it may hold the part printed before it.
absl::Status printModelText(const onnx::ModelProto& model, std::ostream& out,
                            const PrintOptions& options = {});
absl::StatusOr<std::string> modelToText(const onnx::ModelProto& model,
                                        const PrintOptions& options = {});

// Parses a whole model. Errors read `source:line:column: message`, with
// what was expected and what was found.
absl::StatusOr<onnx::ModelProto> parseModelText(std::string_view text, std::string_view source);

}  // namespace roformer::ir
