// Fuzzes ir::parseModelText, the parser of the ONNX text syntax, and imports
// what it accepts into the IR.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ir/ModelIO.h"
#include "ir/TextFormat.h"
#include "test/fuzz/FuzzSupport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace roformer;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto proto = ir::parseModelText(text, "fuzz.onnxtxt");
  if (!proto.ok()) return 0;
  auto model = ir::importModel(*std::move(proto), fuzz::emptyFolder(), "fuzz.onnxtxt");
  if (model.ok()) fuzz::exerciseModel(**model);
  return 0;
}
