// Shared pieces of the fuzz targets.
#pragma once

#include <filesystem>

#include "ir/Graph.h"

namespace roformer::fuzz {

// An empty folder, created on first use and removed at exit, that fuzzed
// models resolve external data against, so that no input can make the loader
// read a file of the machine.
const std::filesystem::path& emptyFolder();

// Runs what roformer-opt does with a model after loading it, short of the
// passes: the verifier with ONNX's checker, ONNX shape inference, export to
// ModelProto, and printing as text followed by parsing that text back.
// Errors of the verifier and shape inference are expected and ignored. The
// printed text must load again: that failing aborts, as crashes, sanitizer
// reports and leaks do.
void exerciseModel(ir::Model& model);

}  // namespace roformer::fuzz
