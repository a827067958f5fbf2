#include "tools/roformer-run/Cail2019.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Program.h"
#include "runtime/Npy.h"

namespace roformer::run {

using runtime::DataType;
using runtime::Shape;

namespace {

constexpr const char* kDefaultPython = "/usr/bin/python3";

// Removes a temporary folder when it goes out of scope.
struct TemporaryDir {
  std::filesystem::path path;
  ~TemporaryDir() {
    std::error_code ignored;
    if (!path.empty()) std::filesystem::remove_all(path, ignored);
  }
};

std::string readText(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<HostTensor> member(runtime::NamedTensors& members, const std::string& name,
                                  size_t rank, const std::string& source) {
  for (auto& [key, tensor] : members) {
    if (key != name) continue;
    if (tensor.type() != DataType::kInt64 || tensor.shape().size() != rank) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": '", name,
                                                     "' is not an int64 array of rank ", rank));
    }
    return tensor;
  }
  return absl::InvalidArgumentError(absl::StrCat(source, " has no '", name, "' array"));
}

void drawProgress(int64_t done, int64_t total) {
  constexpr int kWidth = 40;
  int filled = total > 0 ? static_cast<int>(kWidth * done / total) : kWidth;
  std::string bar(filled, '=');
  if (filled < kWidth) bar += '>' + std::string(kWidth - filled - 1, ' ');
  std::cerr << absl::StrFormat("\r[%s] %d/%d sequences", bar, done, total) << std::flush;
}

// Concatenates tensors of equal trailing dims along dim 0.
absl::StatusOr<HostTensor> concatenateRows(const std::vector<HostTensor>& parts,
                                           const std::string& name) {
  Shape shape = parts.front().shape();
  int64_t rows = 0;
  for (const HostTensor& part : parts) {
    if (part.type() != parts.front().type() || part.shape().empty() ||
        !std::equal(part.shape().begin() + 1, part.shape().end(), shape.begin() + 1,
                    shape.end())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "output '", name, "' changes shape between batches (", runtime::shapeToString(shape),
          " then ", runtime::shapeToString(part.shape()), "), so it cannot be written as one "
          "array"));
    }
    rows += part.shape()[0];
  }
  shape[0] = rows;
  HostTensor joined(parts.front().type(), shape);
  auto* out = static_cast<uint8_t*>(joined.rawData());
  for (const HostTensor& part : parts) {
    std::memcpy(out, part.rawData(), part.byteSize());
    out += part.byteSize();
  }
  return joined;
}

// The first `rows` rows of a tensor whose dim 0 is the batch.
HostTensor leadingRows(const HostTensor& tensor, int64_t rows) {
  if (tensor.shape()[0] == rows) return tensor;
  Shape shape = tensor.shape();
  shape[0] = rows;
  HostTensor part(tensor.type(), shape);
  std::memcpy(part.rawData(), tensor.rawData(), part.byteSize());
  return part;
}

}  // namespace

std::string converterScriptPath() {
  std::filesystem::path root;
  if (const char* env = std::getenv("ROFORMER_SOURCE_DIR"); env != nullptr && *env != '\0') {
    root = env;
  } else {
#ifdef ROFORMER_SOURCE_DIR
    root = ROFORMER_SOURCE_DIR;
#endif
  }
  return (root / "scripts" / "cail2019-convert.py").string();
}

absl::StatusOr<CailData> loadCail2019(const std::string& dir) {
  if (!std::filesystem::is_directory(dir)) {
    return absl::NotFoundError(absl::StrCat("--cail2019 folder '", dir, "' not found"));
  }
  std::string script = converterScriptPath();
  if (!std::filesystem::exists(script)) {
    return absl::NotFoundError(absl::StrCat(
        "the CAIL2019 converter '", script, "' was not found; set ROFORMER_SOURCE_DIR to the "
        "roformer-opt source tree"));
  }
  const char* pythonEnv = std::getenv("ROFORMER_PYTHON");
  std::string python = pythonEnv != nullptr && *pythonEnv != '\0' ? pythonEnv : kDefaultPython;

  llvm::SmallString<128> created;
  if (std::error_code error = llvm::sys::fs::createUniqueDirectory("roformer-run", created)) {
    return absl::InternalError(
        absl::StrCat("cannot create a temporary folder: ", error.message()));
  }
  TemporaryDir temporary{std::string(created.str())};
  std::string npz = (temporary.path / "cail2019.npz").string();
  std::string stderrFile = (temporary.path / "converter.stderr").string();

  llvm::StringRef args[] = {python, script, dir, npz};
  llvm::Optional<llvm::StringRef> redirects[] = {llvm::None, llvm::None,
                                                  llvm::StringRef(stderrFile)};
  std::string launchError;
  bool launchFailed = false;
  int exitCode = llvm::sys::ExecuteAndWait(python, args, llvm::None, redirects, 0, 0,
                                           &launchError, &launchFailed);
  if (launchFailed) {
    return absl::InternalError(absl::StrCat("cannot run ", python, ": ", launchError));
  }
  if (exitCode != 0) {
    std::string message(absl::StripAsciiWhitespace(readText(stderrFile)));
    return absl::InvalidArgumentError(absl::StrCat(
        "converting the CAIL2019 folder '", dir, "' failed (", script, ", exit code ", exitCode,
        ")", message.empty() ? "" : ": ", message));
  }

  absl::StatusOr<runtime::NamedTensors> members = runtime::readNpz(npz);
  if (!members.ok()) return members.status();
  CailData data;
  auto take = [&](const char* name, size_t rank, HostTensor& target) -> absl::Status {
    absl::StatusOr<HostTensor> tensor = member(*members, name, rank, npz);
    if (!tensor.ok()) return tensor.status();
    target = std::move(*tensor);
    return absl::OkStatus();
  };
  if (absl::Status s = take("token_ids", 2, data.tokenIds); !s.ok()) return s;
  if (absl::Status s = take("segment_ids", 2, data.segmentIds); !s.ok()) return s;
  if (absl::Status s = take("lengths", 1, data.lengths); !s.ok()) return s;
  if (absl::Status s = take("labels", 1, data.labels); !s.ok()) return s;
  if (data.segmentIds.shape() != data.tokenIds.shape() ||
      data.lengths.shape()[0] != data.tokenIds.shape()[0]) {
    return absl::InvalidArgumentError(absl::StrCat(npz, ": the converted arrays disagree in size"));
  }
  return data;
}

double pairwiseAccuracy(const std::vector<double>& scores, int64_t& correct) {
  correct = 0;
  int64_t pairs = static_cast<int64_t>(scores.size() / 2);
  for (int64_t i = 0; i < pairs; ++i) {
    if (scores[2 * i] > scores[2 * i + 1]) ++correct;
  }
  return pairs > 0 ? static_cast<double>(correct) / static_cast<double>(pairs) : 0.0;
}

absl::StatusOr<CailResult> runCail2019(const Session& session, const IdInputs& ids,
                                       const CailData& data, const CailOptions& options) {
  const std::vector<TensorInfo>& infos = session.inputs();
  if (ids.tokenInput < 0 || ids.segmentInput < 0) {
    return absl::InvalidArgumentError(
        "cannot tell which model inputs take the token and segment ids (no Gather uses them "
        "and no input name contains 'token' and 'segment')");
  }
  if (infos.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--cail2019 feeds token and segment ids only, but the model has ", infos.size(),
        " inputs"));
  }
  const TensorInfo& tokenInfo = infos[ids.tokenInput];
  const TensorInfo& segmentInfo = infos[ids.segmentInput];

  CailResult result;
  result.sequences = data.count();
  const int64_t stored = data.tokenIds.shape()[1];
  const int64_t length = options.seqLen;
  const int64_t* lengths = data.lengths.data<int64_t>();
  for (int64_t i = 0; i < result.sequences; ++i) {
    if (lengths[i] > length) ++result.truncated;
  }

  std::vector<double> scores;
  std::map<std::string, std::vector<HostTensor>> kept;
  auto runBatch = [&](int64_t begin, bool timed) -> absl::Status {
    int64_t real = std::min(options.batch, result.sequences - begin);
    // Rows past the data (for models with a fixed batch) repeat the first row
    // of the batch; their results are dropped.
    std::vector<int64_t> tokens(static_cast<size_t>(options.batch * length), 0);
    std::vector<int64_t> segments(tokens.size(), 0);
    for (int64_t row = 0; row < options.batch; ++row) {
      int64_t source = begin + (row < real ? row : 0);
      int64_t copy = std::min(length, stored);
      std::memcpy(tokens.data() + row * length, data.tokenIds.data<int64_t>() + source * stored,
                  copy * sizeof(int64_t));
      std::memcpy(segments.data() + row * length,
                  data.segmentIds.data<int64_t>() + source * stored, copy * sizeof(int64_t));
    }
    Shape shape{options.batch, length};
    DataType tokenType = tokenInfo.type == DataType::kUndefined ? DataType::kInt64 : tokenInfo.type;
    DataType segmentType =
        segmentInfo.type == DataType::kUndefined ? DataType::kInt64 : segmentInfo.type;
    absl::StatusOr<HostTensor> tokenTensor = tensorFromIds(tokenType, shape, tokens,
                                                           tokenInfo.name);
    if (!tokenTensor.ok()) return tokenTensor.status();
    absl::StatusOr<HostTensor> segmentTensor =
        tensorFromIds(segmentType, shape, segments, segmentInfo.name);
    if (!segmentTensor.ok()) return segmentTensor.status();
    std::map<std::string, HostTensor> inputs{{tokenInfo.name, *tokenTensor},
                                             {segmentInfo.name, *segmentTensor}};

    auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::map<std::string, HostTensor>> outputs = session.run(inputs);
    auto stop = std::chrono::steady_clock::now();
    if (!outputs.ok()) {
      return absl::Status(outputs.status().code(),
                          absl::StrCat("batch starting at sequence ", begin, ": ",
                                       outputs.status().message()));
    }
    if (!timed) return absl::OkStatus();
    result.latenciesMs.push_back(std::chrono::duration<double, std::milli>(stop - start).count());

    if (result.scoreOutput.empty()) {
      for (const TensorInfo& info : session.outputs()) {
        const HostTensor& tensor = outputs->at(info.name);
        if (!options.scoreOutput.empty() ? info.name == options.scoreOutput
                                         : !tensor.shape().empty() &&
                                               tensor.shape()[0] == options.batch &&
                                               tensor.elementCount() == options.batch) {
          result.scoreOutput = info.name;
          break;
        }
      }
      if (result.scoreOutput.empty()) {
        return absl::InvalidArgumentError(
            options.scoreOutput.empty()
                ? "no model output has one score per sequence ([batch] or [batch, 1]); name "
                  "one with --score-output"
                : absl::StrCat("--score-output '", options.scoreOutput,
                               "' is not an output of the model"));
      }
    }
    const HostTensor& scoreTensor = outputs->at(result.scoreOutput);
    if (scoreTensor.elementCount() != options.batch) {
      return absl::InvalidArgumentError(absl::StrCat(
          "output '", result.scoreOutput, "' has shape ",
          runtime::shapeToString(scoreTensor.shape()), ", not one score per sequence"));
    }
    absl::StatusOr<std::vector<double>> batchScores = tensorToDoubles(scoreTensor);
    if (!batchScores.ok()) return batchScores.status();
    scores.insert(scores.end(), batchScores->begin(), batchScores->begin() + real);

    if (options.reference != nullptr || options.keepOutputs) {
      for (auto& [name, tensor] : *outputs) {
        if (tensor.shape().empty() || tensor.shape()[0] != options.batch) {
          return absl::InvalidArgumentError(absl::StrCat(
              "output '", name, "' has shape ", runtime::shapeToString(tensor.shape()),
              " with no batch dim, so it cannot be gathered over the data set"));
        }
        tensor = leadingRows(tensor, real);
      }
    }
    if (options.keepOutputs) {
      for (const auto& [name, tensor] : *outputs) kept[name].push_back(tensor);
    }
    if (options.reference != nullptr) {
      absl::StatusOr<std::map<std::string, HostTensor>> referenceInputs =
          adaptInputs(*options.reference, inputs);
      if (!referenceInputs.ok()) return referenceInputs.status();
      absl::StatusOr<std::map<std::string, HostTensor>> expected =
          options.reference->run(*referenceInputs);
      if (!expected.ok()) {
        return absl::Status(expected.status().code(),
                            absl::StrCat("reference model: ", expected.status().message()));
      }
      for (const auto& [name, tensor] : *outputs) {
        auto it = expected->find(name);
        if (it != expected->end()) {
          result.comparisons[name].add(tensor, leadingRows(it->second, real));
        }
      }
    }
    return absl::OkStatus();
  };

  for (int i = 0; i < options.warmup && result.sequences > 0; ++i) {
    if (absl::Status s = runBatch(0, false); !s.ok()) return s;
  }
  for (int64_t begin = 0; begin < result.sequences; begin += options.batch) {
    if (absl::Status s = runBatch(begin, true); !s.ok()) {
      if (options.progressBar) std::cerr << "\n";
      return s;
    }
    if (options.progressBar) {
      drawProgress(std::min(begin + options.batch, result.sequences), result.sequences);
    }
  }
  if (options.progressBar) std::cerr << "\n";

  result.accuracy = pairwiseAccuracy(scores, result.correct);
  result.pairs = static_cast<int64_t>(scores.size() / 2);
  for (const TensorInfo& info : session.outputs()) {
    auto it = kept.find(info.name);
    if (it == kept.end()) continue;
    absl::StatusOr<HostTensor> joined = concatenateRows(it->second, info.name);
    if (!joined.ok()) return joined.status();
    result.outputs.emplace_back(info.name, std::move(*joined));
  }
  return result;
}

}  // namespace roformer::run
