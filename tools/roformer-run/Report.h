// Reports of roformer-run: latency statistics, output comparisons, output
// files and the --json document.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "runtime/Tensor.h"

namespace roformer::run {

struct LatencyStats {
  size_t count = 0;
  double meanMs = 0;
  double minMs = 0;
  double maxMs = 0;
  double p50Ms = 0;
  double p90Ms = 0;
  double p99Ms = 0;
  double totalSeconds = 0;
};

// Summarizes per-iteration latencies; percentiles use the nearest-rank method.
LatencyStats summarizeLatencies(std::vector<double> milliseconds);

// Running comparison of one output against a reference over one or more runs.
class OutputComparison {
 public:
  // Compares `actual` with `reference`; a shape or type mismatch is recorded
  // and later batches are then ignored.
  void add(const runtime::HostTensor& actual, const runtime::HostTensor& reference);

  bool shapeMismatch() const { return !mismatch_.empty(); }
  const std::string& mismatch() const { return mismatch_; }
  double maxAbsError() const { return maxAbs_; }
  // max |actual - reference| / max(|reference|, kRelativeErrorFloor)
  double maxRelError() const { return maxRel_; }
  double cosineSimilarity() const;
  // Elements where exactly one side is NaN or infinite, or both are but differ.
  int64_t nonFiniteMismatches() const { return nonFinite_; }
  int64_t elements() const { return elements_; }

  // Smallest reference magnitude the relative error divides by, so that
  // elements near zero do not dominate it.
  static constexpr double kRelativeErrorFloor = 1e-6;

 private:
  std::string mismatch_;
  double maxAbs_ = 0;
  double maxRel_ = 0;
  double dot_ = 0;
  double actualNorm_ = 0;
  double referenceNorm_ = 0;
  int64_t nonFinite_ = 0;
  int64_t elements_ = 0;
};

// Replaces characters outside [A-Za-z0-9_.-] by '_', as file names of outputs.
std::string sanitizeFileName(const std::string& name);

// Writes each tensor as DIR/<sanitized name>.npy (a numeric suffix keeps two
// names that sanitize alike apart) and DIR/<indexFile>, a JSON object mapping
// each tensor name to its file.
absl::Status writeTensorFolder(
    const std::string& dir, const std::vector<std::pair<std::string, runtime::HostTensor>>& tensors,
    const std::string& indexFile);

// A minimal JSON writer for the --json report: objects, arrays, numbers,
// strings and booleans, pretty-printed with two-space indents.
class JsonWriter {
 public:
  void beginObject(const std::string& key = "");
  void endObject();
  void beginArray(const std::string& key = "");
  void endArray();
  void number(const std::string& key, double value);
  void integer(const std::string& key, int64_t value);
  void string(const std::string& key, const std::string& value);
  void boolean(const std::string& key, bool value);
  const std::string& text() const { return text_; }

 private:
  void prefix(const std::string& key);
  std::string text_;
  std::vector<bool> first_;
};

std::string jsonQuote(const std::string& text);

}  // namespace roformer::run
