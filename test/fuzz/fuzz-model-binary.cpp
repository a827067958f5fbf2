// Fuzzes ir::loadModelFromBytes, the entry point for model files: protobuf
// decoding, the text-format fallback, tensor decoding with external data, and
// the import into the IR (definitions, cycles, duplicate names).
#include <cstddef>
#include <cstdint>
#include <string>

#include "ir/ModelIO.h"
#include "test/fuzz/FuzzSupport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace roformer;
  std::string bytes(reinterpret_cast<const char*>(data), size);
  // The name does not end in .onnxtxt, so the loader detects binary or text
  // from the content, as it does for a file named model.onnx.
  auto model = ir::loadModelFromBytes(std::move(bytes), fuzz::emptyFolder(), "fuzz.onnx");
  if (model.ok()) fuzz::exerciseModel(**model);
  return 0;
}
