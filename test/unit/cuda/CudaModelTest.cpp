// The whole small fixture model on the GPU against the CPU backend: the
// tf2onnx-style export and the graph roformer-opt makes of it (the default
// pipeline and the attention fusions). float32 must agree within 1e-3; fp16 and bf16 by cosine
// similarity of the outputs (at least 0.9999 and 0.999).
//
// The models are generated on first use into $ROFORMER_CUDA_TEST_DIR (or a
// temporary folder) with the fixture script and roformer-opt, found through
// $ROFORMER_PYTHON, $ROFORMER_FIXTURE_SCRIPT and $ROFORMER_OPT, or else in
// the source and build trees this binary was built from.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "CudaTestSupport.h"
#include "ir/ModelIO.h"

namespace roformer::runtime::cuda {
namespace {

namespace fs = std::filesystem;

// Passes appended to roformer-opt's default pipeline; see prepareModels.
constexpr const char* kAttentionPasses = "fuse-rotary-attention,pack-qkv,dce";

std::string environmentOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0' ? std::string(value) : fallback;
}

// Returns the folder holding raw.onnx and optimized.onnx, generating them
// when missing; an empty path and a failure message otherwise.
std::string prepareModels(std::string& failure) {
  std::string dir = environmentOr("ROFORMER_CUDA_TEST_DIR", "");
  if (dir.empty()) {
    dir = (fs::temp_directory_path() / ("roformer-cuda-test-" + std::to_string(getpid()))).string();
  }
  fs::create_directories(dir);
  const std::string raw = dir + "/roformer-frozen_org.onnx";
  const std::string optimized = dir + "/optimized.onnx";
  if (!fs::exists(raw)) {
    const std::string python = environmentOr("ROFORMER_PYTHON", "/usr/bin/python3");
    const std::string script = environmentOr(
        "ROFORMER_FIXTURE_SCRIPT",
        std::string(ROFORMER_SOURCE_DIR) + "/tools/roformer-fixture/roformer_fixture.py");
    const std::string command = python + " " + script +
                                " --small --encoder-output --no-samples --quiet -o " + dir;
    if (std::system(command.c_str()) != 0 || !fs::exists(raw)) {
      failure = "failed to generate the fixture: " + command;
      return "";
    }
  }
  if (!fs::exists(optimized)) {
    const std::string opt =
        environmentOr("ROFORMER_OPT", std::string(ROFORMER_BINARY_DIR) + "/bin/roformer-opt");
    // The default pipeline, then the attention fusions in case it does not
    // run them yet (a second run of a fusion finds nothing to fuse).
    const std::string pipeline = "\"$(" + opt + " --print-default-pipeline)," + kAttentionPasses + "\"";
    const std::string command = opt + " " + raw + " -o " + optimized +
                                " --max-seq-len 1024 --quiet --pass-pipeline=" + pipeline;
    if (std::system(command.c_str()) != 0 || !fs::exists(optimized)) {
      failure = "failed to optimize the fixture: " + command;
      return "";
    }
  }
  return dir;
}

// Token and segment ids of `batch` rows of `sequence` positions laid out as
// [CLS] text [SEP] text [SEP] and then padding, with row lengths that vary.
// `variant` changes the ids and the row lengths.
testing::Feeds fixtureInputs(const Session& session, int64_t batch, int64_t sequence,
                             int variant = 0) {
  std::vector<float> tokens(static_cast<size_t>(batch * sequence), 0.0f);
  std::vector<float> segments(tokens.size(), 0.0f);
  std::vector<float> random =
      testing::uniformValues(tokens.size(), static_cast<uint32_t>(batch + 1000 * variant));
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t length = std::max<int64_t>(5, sequence - ((b + variant) * 37) % sequence);
    const int64_t split = length / 2;
    for (int64_t s = 0; s < length; ++s) {
      float id = 5.0f + std::floor((random[b * sequence + s] + 1.0f) * 497.0f);
      if (s == 0) id = 101.0f;
      if (s == split || s == length - 1) id = 102.0f;
      tokens[b * sequence + s] = id;
      segments[b * sequence + s] = s > split ? 1.0f : 0.0f;
    }
  }
  testing::Feeds feeds;
  for (const TensorInfo& input : session.inputs()) {
    const bool isToken = input.name.find("token") != std::string::npos;
    feeds.emplace(input.name,
                  HostTensor::fromVector<float>({batch, sequence}, isToken ? tokens : segments));
  }
  return feeds;
}

struct ModelCase {
  std::string file;
  bool optimized;
};

void PrintTo(const ModelCase& model, std::ostream* out) { *out << model.file; }

class CudaModelTest : public ::testing::TestWithParam<ModelCase> {};

TEST_P(CudaModelTest, MatchesCpuBackend) {
  SKIP_WITHOUT_CUDA();
  std::string failure;
  const std::string dir = prepareModels(failure);
  ASSERT_FALSE(dir.empty()) << failure;
  absl::StatusOr<std::unique_ptr<ir::Model>> model = ir::loadModel(dir + "/" + GetParam().file);
  ASSERT_TRUE(model.ok()) << model.status();

  SessionOptions cpuOptions;
  cpuOptions.threads = 2;
  absl::StatusOr<std::unique_ptr<Session>> cpu = Session::create(**model, cpuOptions);
  ASSERT_TRUE(cpu.ok()) << cpu.status();

  for (Precision precision : {Precision::kFp32, Precision::kFp16, Precision::kBf16}) {
    SCOPED_TRACE(precisionName(precision));
    BackendOptions backendOptions;
    backendOptions.precision = precision;
    absl::StatusOr<std::shared_ptr<CudaBackend>> backend = CudaBackend::create(backendOptions);
    ASSERT_TRUE(backend.ok()) << backend.status();
    SessionOptions gpuOptions;
    gpuOptions.backend = *backend;
    gpuOptions.precision = precision;
    absl::StatusOr<std::unique_ptr<Session>> gpu = Session::create(**model, gpuOptions);
    ASSERT_TRUE(gpu.ok()) << gpu.status();

    for (int64_t batch : {1, 2, 3, 64}) {
      SCOPED_TRACE(batch);
      std::vector<testing::Feeds> feeds;
      std::vector<std::map<std::string, HostTensor>> expectedOutputs;
      for (int variant = 0; variant < 2; ++variant) {
        feeds.push_back(fixtureInputs(**cpu, batch, 100, variant));
        absl::StatusOr<std::map<std::string, HostTensor>> expected = (*cpu)->run(feeds.back());
        ASSERT_TRUE(expected.ok()) << expected.status();
        expectedOutputs.push_back(std::move(*expected));
      }
      // The first run plans the arena, the second is recorded as a CUDA
      // graph, and the third and fourth replay it, the fourth with other ids.
      for (int run = 0; run < 4; ++run) {
        SCOPED_TRACE(::testing::Message() << "run " << run);
        const int variant = run == 3 ? 1 : 0;
        absl::StatusOr<std::map<std::string, HostTensor>> actual = (*gpu)->run(feeds[variant]);
        ASSERT_TRUE(actual.ok()) << actual.status();
        for (const auto& [name, tensor] : expectedOutputs[variant]) {
          SCOPED_TRACE(name);
          testing::Comparison comparison = testing::compareTensors(actual->at(name), tensor);
          if (precision == Precision::kFp32) {
            EXPECT_LT(comparison.maxAbsError, 1e-3);
          } else {
            EXPECT_GE(comparison.cosine, precision == Precision::kFp16 ? 0.9999 : 0.999);
          }
        }
      }
    }
    CudaBackendStats stats = (*backend)->stats();
    SessionStats sessionStats = (*gpu)->stats();
    if (GetParam().optimized) {
      // Every op of the optimized graph has a device kernel, and every batch
      // size is recorded once and replayed twice.
      EXPECT_EQ(stats.fallbackSteps, 0u) << "fallback ops: " << ::testing::PrintToString(stats.fallbackOps);
      EXPECT_EQ(sessionStats.recordedRuns, 4u) << sessionStats.unrecordableReason;
      EXPECT_EQ(sessionStats.replayedRuns, 8u);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixture, CudaModelTest,
                         ::testing::Values(ModelCase{"roformer-frozen_org.onnx", false},
                                           ModelCase{"optimized.onnx", true}),
                         [](const ::testing::TestParamInfo<ModelCase>& info) {
                           return info.param.optimized ? std::string("Optimized")
                                                       : std::string("Exported");
                         });

}  // namespace
}  // namespace roformer::runtime::cuda
