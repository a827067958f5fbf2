// ONNX schemas for the com.microsoft contrib ops the project emits, so that
// ONNX's checker and shape inference accept optimized graphs.
#pragma once

namespace roformer::ir {

inline constexpr const char* kMicrosoftDomain = "com.microsoft";

// Registers the schemas once; later calls do nothing. Thread-safe.
void registerContribSchemas();

}  // namespace roformer::ir
