// Reading and writing NumPy's .npy and .npz files.
//
// .npy: format versions 1.0 to 3.0, C order, numeric dtypes (bool, int8 to
// int64, uint8 to uint64, float16, float32, float64, complex64, complex128) in
// either byte order. Big-endian data is converted to host order. Fortran-order
// arrays, object arrays (pickles), strings and structured dtypes are rejected
// with an error that says how to convert them. float16 elements are copied as
// raw IEEE half bits.
//
// .npz: a zip archive of .npy members named "<key>.npy", as np.savez (stored)
// and np.savez_compressed (deflate) write them; zip64 archives are read.
// Writing produces stored (uncompressed) members.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/Tensor.h"

namespace roformer::runtime {

// Tensors in file order, keyed by name (an .npz member name without ".npy").
using NamedTensors = std::vector<std::pair<std::string, HostTensor>>;

// Decodes the bytes of a .npy file; `source` names it in error messages.
absl::StatusOr<HostTensor> parseNpy(std::string_view bytes, const std::string& source);
absl::StatusOr<HostTensor> readNpy(const std::filesystem::path& path);

// Encodes a tensor as a version 1.0 .npy file (version 2.0 when the header
// needs more than 65535 bytes). bfloat16 and string tensors have no NumPy
// dtype and are rejected.
absl::StatusOr<std::string> encodeNpy(const HostTensor& tensor);
// Writes `tensor` to `path` through a temporary file and rename.
absl::Status writeNpy(const std::filesystem::path& path, const HostTensor& tensor);

absl::StatusOr<NamedTensors> parseNpz(std::string_view bytes, const std::string& source);
absl::StatusOr<NamedTensors> readNpz(const std::filesystem::path& path);

// Encodes tensors as an .npz archive with stored members; fails when a name
// repeats or the archive would need zip64 (4 GiB or more).
absl::StatusOr<std::string> encodeNpz(const NamedTensors& tensors);
absl::Status writeNpz(const std::filesystem::path& path, const NamedTensors& tensors);

// Returns the NumPy dtype string for `type` ("<f4", "|b1", ...), or an empty
// string when NumPy has no such dtype.
std::string numpyDtypeOf(DataType type);

}  // namespace roformer::runtime
