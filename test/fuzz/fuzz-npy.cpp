// Fuzzes the NumPy readers that roformer-run uses for input files: .npy
// (header dict, dtype, shape, byte order) and .npz (zip directory, zip64,
// deflate). A tensor that decodes is encoded again.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "runtime/Npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace roformer;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (auto tensor = runtime::parseNpy(bytes, "fuzz.npy"); tensor.ok()) {
    (void)runtime::encodeNpy(*tensor);
  }
  if (auto tensors = runtime::parseNpz(bytes, "fuzz.npz"); tensors.ok()) {
    (void)runtime::encodeNpz(*tensors);
  }
  return 0;
}
