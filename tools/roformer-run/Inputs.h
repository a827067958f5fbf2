// Model inputs for roformer-run: read from .npy/.npz files, or synthesized as
// [CLS] text [SEP] text [SEP] token ids with segments 0 and 1.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/Session.h"

namespace roformer::run {

using runtime::HostTensor;
using runtime::Session;
using runtime::TensorInfo;

// The session inputs that carry token and segment ids, and the vocabulary size.
struct IdInputs {
  int tokenInput = -1;
  int segmentInput = -1;
  // Rows of the token embedding table, or the --vocab value.
  std::optional<int64_t> vocab;
  // Rows of the segment embedding table, when known.
  std::optional<int64_t> segmentRows;
};

// Finds the token input (the Gather-index input with the largest table, or
// else the input whose name contains "token") and the segment input (another
// Gather-index input, or else a name containing "segment").
IdInputs findIdInputs(const Session& session, std::optional<int64_t> vocabOverride);

// Reads `NAME=FILE.npy` specs (and bare `FILE.npz` specs, which give every
// member as an input of that name), converting each to the model's declared
// element type when it differs (integral values only, for float-to-integer).
absl::StatusOr<std::map<std::string, HostTensor>> readInputFiles(
    const Session& session, const std::vector<std::string>& specs);

struct SyntheticOptions {
  int64_t batch = 1;
  int64_t seqLen = 1024;
  uint64_t seed = 0;
};

// Fills the token and segment inputs not already in `inputs`: random text ids
// in [1, vocab) laid out as [CLS] a.. [SEP] b.. [SEP], segments 0 up to the
// first [SEP] and 1 after it. Fails naming any other input still missing.
absl::Status addSyntheticInputs(const Session& session, const IdInputs& ids,
                                const SyntheticOptions& options,
                                std::map<std::string, HostTensor>& inputs);

// Builds a tensor of `type` and `shape` from int64 values (ids); fails for
// types that cannot hold them exactly.
absl::StatusOr<HostTensor> tensorFromIds(runtime::DataType type, const runtime::Shape& shape,
                                         const std::vector<int64_t>& values,
                                         const std::string& inputName);

// Converts a numeric tensor to `type`; float to integer only for integral values.
absl::StatusOr<HostTensor> convertTensor(const HostTensor& tensor, runtime::DataType type,
                                         const std::string& inputName);

// Reads every element of a numeric tensor as double (float16 and bfloat16
// included); fails for other types.
absl::StatusOr<std::vector<double>> tensorToDoubles(const HostTensor& tensor);

// Renames and converts `inputs` for another session of the same network,
// such as the original model when `inputs` were made for its optimized form.
// Each target input takes the input of the same name, or else the one whose
// name is equal after dropping characters outside [A-Za-z0-9_] (the optimizer
// renames "input_token:0" to "input_token0"), converted to the declared type.
absl::StatusOr<std::map<std::string, HostTensor>> adaptInputs(
    const Session& target, const std::map<std::string, HostTensor>& inputs);

// The fixed size of dim `index` of a session input, when the model declares one.
std::optional<int64_t> fixedDim(const TensorInfo& info, size_t index);

}  // namespace roformer::run
