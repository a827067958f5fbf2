// Inputs that once crashed fuzz-npy (test/fuzz/regressions/fuzz-npy/), read
// through the same entry points. Under scripts/check --sanitize, AddressSanitizer
// also checks the memory accesses.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "runtime/Npy.h"

namespace roformer::runtime {
namespace {

std::string readRegression(const std::string& name) {
  std::filesystem::path path =
      std::filesystem::path(ROFORMER_SOURCE_DIR) / "test/fuzz/regressions/fuzz-npy" / name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

TEST(NpyFuzzRegression, DescrParsedWithoutDanglingView) {
  // parseDescr kept a view of a temporary substring of the dtype.
  auto tensor = parseNpy(readRegression("descr-substr-dangling"), "regression.npy");
  ASSERT_TRUE(tensor.ok()) << tensor.status();
  EXPECT_EQ(tensor->type(), DataType::kFloat);
  EXPECT_EQ(tensor->shape(), (Shape{0, 4}));
}

TEST(NpyFuzzRegression, DeclaredDeflateSizeChecked) {
  // A 300-byte archive whose deflated member declares 4 GiB uncompressed:
  // the reader allocated the declared size before inflating.
  auto tensors = parseNpz(readRegression("npz-declared-size-4gib"), "regression.npz");
  ASSERT_FALSE(tensors.ok());
  EXPECT_NE(std::string(tensors.status().message()).find("more than deflate can produce"),
            std::string::npos)
      << tensors.status();
}

}  // namespace
}  // namespace roformer::runtime
