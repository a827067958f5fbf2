// Inputs that once failed fuzz-model-binary or fuzz-model-text
// (test/fuzz/regressions/), run through the same steps as the fuzz targets:
// load, shape inference, export, print as text, and load the text again.
// Under scripts/check --sanitize, the sanitizers also check each step.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ir/ModelIO.h"
#include "ir/ShapeInference.h"
#include "ir/TextFormat.h"
#include "ir/Verifier.h"

namespace roformer::ir {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> regressionInputs(const std::string& target) {
  fs::path folder = fs::path(ROFORMER_SOURCE_DIR) / "test/fuzz/regressions" / target;
  std::vector<fs::path> inputs;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder, error)) inputs.push_back(entry.path());
  return inputs;
}

std::string readBytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// Loads `bytes` through the entry point of fuzz-model-text or
// fuzz-model-binary.
absl::StatusOr<std::unique_ptr<Model>> loadInput(const std::string& bytes, bool text) {
  if (!text) return loadModelFromBytes(bytes, fs::temp_directory_path(), "regression.onnx");
  auto proto = parseModelText(bytes, "regression.onnxtxt");
  if (!proto.ok()) return proto.status();
  return importModel(*std::move(proto), fs::temp_directory_path(), "regression.onnxtxt");
}

// A model that loads must survive the rest of the steps, and its printed
// text must load again. Inputs that do not load only must not crash.
void checkInput(const fs::path& path, bool text) {
  SCOPED_TRACE(path.filename().string());
  auto model = loadInput(readBytes(path), text);
  if (!model.ok()) return;

  (void)verifyModel(**model);
  (void)inferShapes(**model);
  auto printed = modelToText(exportModel(**model));
  ASSERT_TRUE(printed.ok()) << printed.status();
  auto reparsed = parseModelText(*printed, "printed.onnxtxt");
  ASSERT_TRUE(reparsed.ok()) << reparsed.status() << "\n" << *printed;
  auto reloaded = importModel(*std::move(reparsed), fs::temp_directory_path(), "printed.onnxtxt");
  EXPECT_TRUE(reloaded.ok()) << reloaded.status() << "\n" << *printed;
}

TEST(FuzzRegression, BinaryModelInputs) {
  std::vector<fs::path> inputs = regressionInputs("fuzz-model-binary");
  ASSERT_FALSE(inputs.empty()) << "no inputs in test/fuzz/regressions/fuzz-model-binary";
  for (const auto& path : inputs) checkInput(path, /*text=*/false);
}

TEST(FuzzRegression, TextModelInputs) {
  for (const auto& path : regressionInputs("fuzz-model-text")) checkInput(path, /*text=*/true);
}

}  // namespace
}  // namespace roformer::ir
