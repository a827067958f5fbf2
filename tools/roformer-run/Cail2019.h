// The CAIL2019-SCM accuracy mode of roformer-run.
//
// A ByteMLPerf open_cail2019 folder stores token and segment ids as pickled
// object arrays; scripts/cail2019-convert.py turns them into padded int64
// arrays, and this code pads or truncates them to the model's sequence length,
// runs them in batches and scores the pairs: sequences 2i and 2i+1 share a
// case, the first is the similar one, and a pair counts as correct when
// score[2i] > score[2i+1].
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/Session.h"
#include "tools/roformer-run/Inputs.h"
#include "tools/roformer-run/Report.h"

namespace roformer::run {

struct CailData {
  HostTensor tokenIds;    // int64 [N, L]
  HostTensor segmentIds;  // int64 [N, L]
  HostTensor lengths;     // int64 [N]
  HostTensor labels;      // int64 [N]
  int64_t count() const { return tokenIds.shape()[0]; }
};

// Path of scripts/cail2019-convert.py: under $ROFORMER_SOURCE_DIR when set,
// else under the source tree roformer-run was built from.
std::string converterScriptPath();

// Runs the converter on `dir` (with /usr/bin/python3, or $ROFORMER_PYTHON) and
// reads its output.
absl::StatusOr<CailData> loadCail2019(const std::string& dir);

struct CailOptions {
  int64_t batch = 1;
  int64_t seqLen = 1024;
  // Output holding one score per sequence; empty picks the first output of
  // shape [batch] or [batch, 1].
  std::string scoreOutput;
  int warmup = 0;
  // Also runs every batch here and compares the outputs.
  const Session* reference = nullptr;
  // Keep every output (concatenated along dim 0) for --output-dir.
  bool keepOutputs = false;
  bool progressBar = false;
};

struct CailResult {
  int64_t sequences = 0;
  int64_t pairs = 0;
  int64_t correct = 0;
  double accuracy = 0;
  // Sequences longer than the sequence length, cut at its end.
  int64_t truncated = 0;
  std::string scoreOutput;
  std::vector<double> latenciesMs;
  std::vector<std::pair<std::string, HostTensor>> outputs;
  std::map<std::string, OutputComparison> comparisons;
};

absl::StatusOr<CailResult> runCail2019(const Session& session, const IdInputs& ids,
                                       const CailData& data, const CailOptions& options);

// Returns mean(score[2i] > score[2i+1]) over the complete pairs and sets
// `correct` to the count of such pairs.
double pairwiseAccuracy(const std::vector<double>& scores, int64_t& correct);

}  // namespace roformer::run
