#include "test/fuzz/FuzzSupport.h"

#include <stdlib.h>

#include <cstdlib>
#include <string>

#include "ir/ModelIO.h"
#include "ir/ShapeInference.h"
#include "ir/TextFormat.h"
#include "ir/Verifier.h"

namespace roformer::fuzz {
namespace {

std::filesystem::path* gFolder = nullptr;

void removeFolder() {
  if (gFolder == nullptr) return;
  std::error_code error;
  std::filesystem::remove_all(*gFolder, error);
}

}  // namespace

const std::filesystem::path& emptyFolder() {
  if (gFolder == nullptr) {
    std::string pattern = (std::filesystem::temp_directory_path() / "roformer-fuzz-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    gFolder = new std::filesystem::path(pattern);
    std::atexit(removeFolder);
  }
  return *gFolder;
}

void exerciseModel(ir::Model& model) {
  (void)ir::verifyModel(model, ir::VerifyOptions{/*runOnnxChecker=*/true});
  (void)ir::inferShapes(model);

  onnx::ModelProto proto = ir::exportModel(model);
  auto text = ir::modelToText(proto);
  if (!text.ok()) return;
  auto reparsed = ir::parseModelText(*text, "printed.onnxtxt");
  if (!reparsed.ok()) return;
  (void)ir::importModel(*std::move(reparsed), emptyFolder(), "printed.onnxtxt");
}

}  // namespace roformer::fuzz
