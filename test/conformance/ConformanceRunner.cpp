// Runs ONNX's backend test cases (the folders that onnx.backend.test's
// generate-data writes: model.onnx plus test_data_set_N/input_*.pb and
// output_*.pb) through the CPU kernels and compares with the expected
// outputs.
//
// Usage: conformance-runner DATA_DIR [--known-differences FILE] [--filter TEXT]
//                           [--rtol R] [--atol A]
//
// DATA_DIR is the generate-data output folder; its node/ and simple/
// subfolders are run. Each test prints PASS, FAIL with the first mismatch,
// or SKIP with the reason: an op or element type the CPU backend does not
// support, a non-tensor input, or an entry of the known-differences file.
// The last line counts each. The exit code is 1 when a test failed.
//
// Each node is evaluated in graph order with runtime::evaluateNode, the
// same entry point constant folding uses, so the tests check the kernels
// and not the session planner.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "ir/Graph.h"
#include "ir/ModelIO.h"
#include "ir/Tensor.h"
#include "onnx/onnx_pb.h"
#include "runtime/Evaluator.h"

namespace fs = std::filesystem;
using roformer::ir::DataType;
using roformer::ir::Tensor;

namespace {

// numpy.testing.assert_allclose's test: |actual - expected| <= atol +
// rtol * |expected|. The defaults are the project's conformance tolerances;
// ONNX's own backend runner uses rtol 1e-3 and atol 1e-7, which --atol
// selects.
double relativeTolerance = 1e-3;
double absoluteTolerance = 1e-5;

enum class Outcome { kPass, kFail, kSkip };

struct Result {
  Outcome outcome = Outcome::kPass;
  std::string reason;
};

Result fail(std::string reason) { return Result{Outcome::kFail, std::move(reason)}; }
Result skip(std::string reason) { return Result{Outcome::kSkip, std::move(reason)}; }

// Known differences: "test_name reason..." per line; '#' starts a comment.
std::map<std::string, std::string> readKnownDifferences(const fs::path& path) {
  std::map<std::string, std::string> entries;
  std::ifstream file(path);
  std::string line;
  while (std::getline(file, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream stream(line);
    std::string name;
    stream >> name;
    std::string reason;
    std::getline(stream, reason);
    reason.erase(0, reason.find_first_not_of(' '));
    if (!name.empty()) entries[name] = reason;
  }
  return entries;
}

absl::StatusOr<std::shared_ptr<Tensor>> readTensorFile(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  onnx::TensorProto proto;
  if (!file.good() && !file.eof()) return absl::NotFoundError("cannot read " + path.string());
  if (!proto.ParseFromString(bytes)) {
    return absl::UnimplementedError(path.filename().string() + " is not a TensorProto");
  }
  // A SequenceProto or OptionalProto often parses as a TensorProto with no
  // type; those inputs are outside what the kernels take.
  if (proto.data_type() == 0) {
    return absl::UnimplementedError(path.filename().string() + " is not a tensor (sequence, map or optional)");
  }
  return Tensor::fromProto(proto, path.parent_path(), path.string());
}

std::vector<double> toDoubles(const Tensor& tensor) {
  std::optional<std::vector<double>> values = tensor.toDoubleVector();
  if (values.has_value()) return *values;
  std::vector<double> result;
  if (tensor.dataType() == DataType::kBool) {
    for (uint8_t byte : tensor.values<uint8_t>()) result.push_back(byte != 0 ? 1.0 : 0.0);
  }
  return result;
}

std::string describeTensor(const Tensor& tensor) {
  std::string dims;
  for (size_t i = 0; i < tensor.dims().size(); ++i) {
    dims += (i > 0 ? ", " : "") + std::to_string(tensor.dims()[i]);
  }
  return absl::StrCat(std::string(roformer::ir::dataTypeName(tensor.dataType())), "[", dims, "]");
}

// Returns an empty string when `actual` matches `expected`, else the first
// difference.
std::string compare(const Tensor& actual, const Tensor& expected) {
  if (actual.dataType() != expected.dataType() || actual.dims() != expected.dims()) {
    return absl::StrCat("got ", describeTensor(actual), ", expected ", describeTensor(expected));
  }
  if (expected.dataType() == DataType::kString) {
    return actual.strings() == expected.strings() ? "" : "string values differ";
  }
  std::vector<double> a = toDoubles(actual);
  std::vector<double> e = toDoubles(expected);
  if (a.size() != e.size()) return "element counts differ";
  const bool exact = !roformer::ir::isFloatingPoint(expected.dataType());
  for (size_t i = 0; i < e.size(); ++i) {
    if (std::isnan(e[i]) && std::isnan(a[i])) continue;
    if (std::isinf(e[i]) && a[i] == e[i]) continue;
    const double error = std::fabs(a[i] - e[i]);
    const bool ok = exact ? a[i] == e[i] : error <= absoluteTolerance + relativeTolerance * std::fabs(e[i]);
    if (!ok) {
      return absl::StrCat("element ", i, " is ", a[i], ", expected ", e[i], " (", e.size(),
                          " elements)");
    }
  }
  return "";
}

Result runDataSet(const roformer::ir::Model& model, const fs::path& dataSet) {
  const roformer::ir::Graph& graph = model.graph();
  std::map<std::string, std::shared_ptr<Tensor>> values;
  for (const roformer::ir::Value* initializer : graph.initializers()) {
    values[initializer->name()] = initializer->initializer();
  }

  // input_j feeds the j-th graph input that is not an initializer.
  std::vector<const roformer::ir::Value*> feeds;
  for (const roformer::ir::Value* input : graph.inputs()) {
    if (!input->isInitializer()) feeds.push_back(input);
  }
  for (size_t j = 0;; ++j) {
    fs::path file = dataSet / ("input_" + std::to_string(j) + ".pb");
    if (!fs::exists(file)) break;
    if (j >= feeds.size()) return fail(absl::StrCat(file.string(), " has no graph input"));
    if (feeds[j]->type().value_case() != onnx::TypeProto::kTensorType) {
      return skip(absl::StrCat("graph input '", feeds[j]->name(),
                               "' is a sequence, map or optional, not a tensor"));
    }
    absl::StatusOr<std::shared_ptr<Tensor>> tensor = readTensorFile(file);
    if (!tensor.ok()) {
      return tensor.status().code() == absl::StatusCode::kUnimplemented
                 ? skip(std::string(tensor.status().message()))
                 : fail(std::string(tensor.status().message()));
    }
    // ONNX 1.12 stores bfloat16 test inputs as uint16 tensors holding the
    // bfloat16 bits; give them the type the model declares.
    if ((*tensor)->dataType() == DataType::kUint16 && feeds[j]->elemType() == DataType::kBfloat16) {
      *tensor = std::make_shared<Tensor>(DataType::kBfloat16, (*tensor)->dims(), (*tensor)->buffer());
    }
    values[feeds[j]->name()] = *tensor;
  }

  for (const auto& node : graph.nodes()) {
    const int64_t opset = model.opsetVersion(node->domain()).value_or(1);
    std::vector<std::shared_ptr<Tensor>> inputs;
    for (const roformer::ir::Value* input : node->inputs()) {
      if (input == nullptr || input->name().empty()) {
        inputs.push_back(nullptr);
        continue;
      }
      auto found = values.find(input->name());
      if (found == values.end()) {
        return fail(absl::StrCat(node->describe(), ": input '", input->name(), "' has no value"));
      }
      inputs.push_back(found->second);
    }
    absl::StatusOr<std::vector<std::shared_ptr<Tensor>>> outputs =
        roformer::runtime::evaluateNode(*node, inputs, opset);
    if (!outputs.ok()) {
      std::string message(outputs.status().message());
      return outputs.status().code() == absl::StatusCode::kUnimplemented ? skip(message)
                                                                          : fail(message);
    }
    for (size_t i = 0; i < node->outputCount(); ++i) {
      if (node->output(i) != nullptr) values[node->output(i)->name()] = (*outputs)[i];
    }
  }

  for (size_t j = 0; j < graph.outputs().size(); ++j) {
    fs::path file = dataSet / ("output_" + std::to_string(j) + ".pb");
    if (!fs::exists(file)) continue;
    absl::StatusOr<std::shared_ptr<Tensor>> expected = readTensorFile(file);
    if (!expected.ok()) return skip(std::string(expected.status().message()));
    const std::string& name = graph.outputs()[j]->name();
    auto found = values.find(name);
    if (found == values.end() || found->second == nullptr) {
      return fail(absl::StrCat("output '", name, "' was not computed"));
    }
    std::string difference = compare(*found->second, **expected);
    if (!difference.empty()) {
      return fail(absl::StrCat(dataSet.filename().string(), " output '", name, "': ", difference));
    }
  }
  return Result{};
}

Result runTest(const fs::path& folder, const std::map<std::string, std::string>& knownDifferences) {
  auto known = knownDifferences.find(folder.filename().string());
  if (known != knownDifferences.end()) return skip("known difference: " + known->second);

  absl::StatusOr<std::unique_ptr<roformer::ir::Model>> model =
      roformer::ir::loadModel((folder / "model.onnx").string());
  if (!model.ok()) return fail(absl::StrCat("cannot load: ", model.status().message()));

  // Every op needs a CPU kernel at the model's opset; otherwise the test
  // is outside the backend's op set.
  for (const auto& node : (*model)->graph().nodes()) {
    const int64_t opset = (*model)->opsetVersion(node->domain()).value_or(1);
    if (!roformer::runtime::canEvaluate(*node, opset)) {
      return skip(absl::StrCat("op ", node->domain().empty() ? "" : node->domain() + ".",
                               node->opType(), " at opset ", opset, " has no CPU kernel"));
    }
  }

  std::vector<fs::path> dataSets;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.is_directory() && entry.path().filename().string().rfind("test_data_set_", 0) == 0) {
      dataSets.push_back(entry.path());
    }
  }
  std::sort(dataSets.begin(), dataSets.end());
  if (dataSets.empty()) return skip("no test_data_set folder");
  for (const fs::path& dataSet : dataSets) {
    Result result = runDataSet(**model, dataSet);
    if (result.outcome != Outcome::kPass) return result;
  }
  return Result{};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: conformance-runner DATA_DIR [--known-differences FILE] [--filter TEXT] "
                 "[--rtol R] [--atol A]\n";
    return 1;
  }
  fs::path dataDir = argv[1];
  std::map<std::string, std::string> knownDifferences;
  std::string filter;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--known-differences" && i + 1 < argc) {
      fs::path path = argv[++i];
      if (!fs::exists(path)) {
        std::cerr << "error: known-differences file " << path << " not found\n";
        return 1;
      }
      knownDifferences = readKnownDifferences(path);
    } else if (arg == "--filter" && i + 1 < argc) {
      filter = argv[++i];
    } else if ((arg == "--rtol" || arg == "--atol") && i + 1 < argc) {
      char* end = nullptr;
      const double value = std::strtod(argv[++i], &end);
      if (end == argv[i] || *end != '\0' || !(value >= 0)) {
        std::cerr << "error: " << arg << " needs a non-negative number, got '" << argv[i] << "'\n";
        return 1;
      }
      (arg == "--rtol" ? relativeTolerance : absoluteTolerance) = value;
    } else {
      std::cerr << "error: unknown argument '" << arg << "'\n";
      return 1;
    }
  }

  std::vector<fs::path> folders;
  for (const char* kind : {"node", "simple"}) {
    fs::path root = dataDir / kind;
    if (!fs::is_directory(root)) continue;
    for (const auto& entry : fs::directory_iterator(root)) {
      if (!entry.is_directory()) continue;
      if (!filter.empty() && entry.path().filename().string().find(filter) == std::string::npos) {
        continue;
      }
      folders.push_back(entry.path());
    }
  }
  if (folders.empty()) {
    std::cerr << "error: no test folders under " << dataDir << "/node or /simple\n";
    return 1;
  }
  std::sort(folders.begin(), folders.end());

  int passed = 0, failed = 0, skipped = 0;
  for (const fs::path& folder : folders) {
    Result result = runTest(folder, knownDifferences);
    const std::string name = folder.parent_path().filename().string() + "/" + folder.filename().string();
    switch (result.outcome) {
      case Outcome::kPass:
        ++passed;
        std::cout << "PASS " << name << "\n";
        break;
      case Outcome::kFail:
        ++failed;
        std::cout << "FAIL " << name << ": " << result.reason << "\n";
        break;
      case Outcome::kSkip:
        ++skipped;
        std::cout << "SKIP " << name << ": " << result.reason << "\n";
        break;
    }
  }
  std::cout << passed << " passed, " << failed << " failed, " << skipped << " skipped\n";
  return failed == 0 ? 0 : 1;
}
