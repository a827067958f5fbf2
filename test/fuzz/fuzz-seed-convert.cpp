// Converts model files to the binary ONNX form for the seed corpus of
// fuzz-model-binary: fuzz-seed-convert IN OUT. Inputs may be text or binary.
#include <fstream>
#include <iostream>

#include "ir/ModelIO.h"

int main(int argc, char** argv) {
  using namespace roformer;
  if (argc != 3) {
    std::cerr << "usage: fuzz-seed-convert IN OUT\n";
    return 1;
  }
  auto model = ir::loadModel(argv[1]);
  if (!model.ok()) {
    std::cerr << "fuzz-seed-convert: " << model.status().message() << "\n";
    return 1;
  }
  std::string bytes = ir::exportModel(**model).SerializeAsString();
  std::ofstream out(argv[2], std::ios::binary);
  out << bytes;
  return out ? 0 : 1;
}
