// Conversion between ModelProto (binary files) and the IR.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ir/Graph.h"
#include "onnx/onnx_pb.h"

namespace roformer::ir {

// Builds the IR from a ModelProto. External data is resolved against
// `baseDir` and must stay inside it. `source` names the model in messages.
absl::StatusOr<std::unique_ptr<Model>> importModel(onnx::ModelProto proto,
                                                   const std::filesystem::path& baseDir,
                                                   const std::string& source);

struct ExportOptions {
  // Initializers of at least this many bytes go to the external data file
  // when external data is used.
  uint64_t externalThresholdBytes = 1024;
  // Skip the bytes of initializers larger than this (0: never skip). The
  // tensors keep type and dims, and their content hash is recorded in a
  // `roformer.elided` external-data entry; such a proto is for printing only.
  uint64_t elideDataAbove = 0;
  // Declare initializers larger than this (0: none) as typed graph inputs
  // without data, for analyses that need types only.
  uint64_t declareInitializersAbove = 0;
  // Leave out the data of non-string initializers of at least this many
  // bytes (0: none), for writers that store those bytes in an external file.
  uint64_t omitDataFrom = 0;
};

// Builds a ModelProto from the IR. Initializers are written with raw_data.
onnx::ModelProto exportModel(const Model& model, const ExportOptions& options = {});

// Builds a ModelProto for ONNX's checker and shape inference without
// copying weights: initializers above `inlineBytesLimit` become graph inputs
// of the same type, which both treat the same way for typing.
onnx::ModelProto exportForAnalysis(const Model& model, uint64_t inlineBytesLimit = 4096);

// Reads a binary `.onnx` file or, when `path` ends in `.onnxtxt` or the
// content is not binary protobuf, the text format. "-" reads standard input.
absl::StatusOr<std::unique_ptr<Model>> loadModel(const std::string& path);

// Parses bytes already read, auto-detecting binary or text.
absl::StatusOr<std::unique_ptr<Model>> loadModelFromBytes(std::string bytes,
                                                          const std::filesystem::path& baseDir,
                                                          const std::string& source);

enum class ExternalDataMode {
  kAuto,    // external data when the serialized model would exceed 2 GB
  kAlways,  // external data for every initializer above the threshold
  kNever,
};

struct SaveOptions {
  bool text = false;
  ExternalDataMode externalData = ExternalDataMode::kAuto;
  uint64_t externalThresholdBytes = 1024;
  // Text output: print initializers above this many elements in the elided
  // form (0: print every value, which keeps the text parseable).
  uint64_t elideConstantsAbove = 0;
};

// Writes the model to `path` ("-" for standard output). The bytes go to a
// temporary file in the same folder that is renamed over `path` only once
// complete, so a failure never leaves a partial file. External data goes to
// `<file name>.data` beside it, written the same way. Both files are complete
// before the data file is renamed into place, and the model file after it.
absl::Status saveModel(const Model& model, const std::string& path, const SaveOptions& options);

// Writes `bytes` to `path` through a temporary file and rename.
absl::Status writeFileAtomically(const std::filesystem::path& path, std::string_view bytes);
// The same with a writer that fills the open file descriptor; a false return
// or a failed write abandons the temporary file.
absl::Status writeFileAtomically(const std::filesystem::path& path,
                                 const std::function<absl::Status(int fd)>& writer);

}  // namespace roformer::ir
