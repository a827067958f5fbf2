#include "test/fuzz/FuzzSupport.h"

#include <stdlib.h>

#include <cstdio>
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

// The printer's output for a model that loaded must parse and load again,
// so a failure is a finding. ROFORMER_FUZZ_ROUND_TRIP=0 turns the check off
// to look for crashes only.
void reportRoundTripFailure(const std::string& text, const absl::Status& status) {
  static const char* setting = std::getenv("ROFORMER_FUZZ_ROUND_TRIP");
  if (setting != nullptr && std::string(setting) == "0") return;
  std::fprintf(stderr, "printed text does not load again: %s\n---- text ----\n%s\n",
               std::string(status.message()).c_str(), text.c_str());
  std::abort();
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
  if (!reparsed.ok()) {
    reportRoundTripFailure(*text, reparsed.status());
    return;
  }
  auto reimported = ir::importModel(*std::move(reparsed), emptyFolder(), "printed.onnxtxt");
  if (!reimported.ok()) reportRoundTripFailure(*text, reimported.status());
}

}  // namespace roformer::fuzz
