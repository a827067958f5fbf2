#include "tools/roformer-run/Report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ir/ModelIO.h"
#include "runtime/Npy.h"
#include "tools/roformer-run/Inputs.h"

namespace roformer::run {

LatencyStats summarizeLatencies(std::vector<double> milliseconds) {
  LatencyStats stats;
  stats.count = milliseconds.size();
  if (milliseconds.empty()) return stats;
  std::sort(milliseconds.begin(), milliseconds.end());
  double total = std::accumulate(milliseconds.begin(), milliseconds.end(), 0.0);
  stats.totalSeconds = total / 1000.0;
  stats.meanMs = total / static_cast<double>(milliseconds.size());
  stats.minMs = milliseconds.front();
  stats.maxMs = milliseconds.back();
  auto percentile = [&](double q) {
    // Nearest rank: the smallest value with at least q of the samples at or below it.
    size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(milliseconds.size())));
    return milliseconds[std::clamp<size_t>(rank, 1, milliseconds.size()) - 1];
  };
  stats.p50Ms = percentile(0.50);
  stats.p90Ms = percentile(0.90);
  stats.p99Ms = percentile(0.99);
  return stats;
}

void OutputComparison::add(const runtime::HostTensor& actual,
                           const runtime::HostTensor& reference) {
  if (!mismatch_.empty()) return;
  if (actual.shape() != reference.shape()) {
    mismatch_ = absl::StrCat("shape ", runtime::shapeToString(actual.shape()), " vs reference ",
                             runtime::shapeToString(reference.shape()));
    return;
  }
  absl::StatusOr<std::vector<double>> a = tensorToDoubles(actual);
  absl::StatusOr<std::vector<double>> b = tensorToDoubles(reference);
  if (!a.ok() || !b.ok()) {
    mismatch_ = absl::StrCat("type ", std::string(ir::dataTypeName(actual.type())),
                             " vs reference ", std::string(ir::dataTypeName(reference.type())),
                             " cannot be compared");
    return;
  }
  for (size_t i = 0; i < a->size(); ++i) {
    double x = (*a)[i];
    double y = (*b)[i];
    ++elements_;
    if (!std::isfinite(x) || !std::isfinite(y)) {
      bool same = (std::isnan(x) && std::isnan(y)) || x == y;
      if (!same) ++nonFinite_;
      continue;
    }
    double error = std::fabs(x - y);
    maxAbs_ = std::max(maxAbs_, error);
    maxRel_ = std::max(maxRel_, error / std::max(std::fabs(y), kRelativeErrorFloor));
    dot_ += x * y;
    actualNorm_ += x * x;
    referenceNorm_ += y * y;
  }
}

double OutputComparison::cosineSimilarity() const {
  if (actualNorm_ == 0 && referenceNorm_ == 0) return 1.0;
  if (actualNorm_ == 0 || referenceNorm_ == 0) return 0.0;
  return dot_ / (std::sqrt(actualNorm_) * std::sqrt(referenceNorm_));
}

std::string sanitizeFileName(const std::string& name) {
  std::string out = name;
  for (char& c : out) {
    bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '.' || c == '-';
    if (!keep) c = '_';
  }
  if (out.empty() || out == "." || out == "..") out = "_" + out;
  return out;
}

absl::Status writeTensorFolder(
    const std::string& dir, const std::vector<std::pair<std::string, runtime::HostTensor>>& tensors,
    const std::string& indexFile) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create output folder '", dir, "': ", error.message()));
  }
  std::set<std::string> used;
  JsonWriter json;
  json.beginObject();
  for (const auto& [name, tensor] : tensors) {
    std::string base = sanitizeFileName(name);
    std::string file = base + ".npy";
    for (int suffix = 1; used.count(file) || file == indexFile; ++suffix) {
      file = absl::StrCat(base, "_", suffix, ".npy");
    }
    used.insert(file);
    absl::Status written = runtime::writeNpy(std::filesystem::path(dir) / file, tensor);
    if (!written.ok()) {
      return absl::Status(written.code(), absl::StrCat("'", name, "': ", written.message()));
    }
    json.string(name, file);
  }
  json.endObject();
  return ir::writeFileAtomically(std::filesystem::path(dir) / indexFile, json.text() + "\n");
}

std::string jsonQuote(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out + "\"";
}

void JsonWriter::prefix(const std::string& key) {
  if (!first_.empty()) {
    if (!first_.back()) text_ += ",";
    first_.back() = false;
    text_ += "\n" + std::string(2 * first_.size(), ' ');
  }
  if (!key.empty()) text_ += jsonQuote(key) + ": ";
}

void JsonWriter::beginObject(const std::string& key) {
  prefix(key);
  text_ += "{";
  first_.push_back(true);
}

void JsonWriter::endObject() {
  bool empty = first_.back();
  first_.pop_back();
  if (!empty) text_ += "\n" + std::string(2 * first_.size(), ' ');
  text_ += "}";
}

void JsonWriter::beginArray(const std::string& key) {
  prefix(key);
  text_ += "[";
  first_.push_back(true);
}

void JsonWriter::endArray() {
  bool empty = first_.back();
  first_.pop_back();
  if (!empty) text_ += "\n" + std::string(2 * first_.size(), ' ');
  text_ += "]";
}

void JsonWriter::number(const std::string& key, double value) {
  prefix(key);
  // JSON has no NaN or infinity.
  text_ += std::isfinite(value) ? absl::StrFormat("%.9g", value) : std::string("null");
}

void JsonWriter::integer(const std::string& key, int64_t value) {
  prefix(key);
  text_ += std::to_string(value);
}

void JsonWriter::string(const std::string& key, const std::string& value) {
  prefix(key);
  text_ += jsonQuote(value);
}

void JsonWriter::boolean(const std::string& key, bool value) {
  prefix(key);
  text_ += value ? "true" : "false";
}

}  // namespace roformer::run
