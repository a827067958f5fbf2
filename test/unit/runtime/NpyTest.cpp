#include "runtime/Npy.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace roformer::runtime {
namespace {

// Checks that a status message contains `text`, printing the message if not.
#define EXPECT_MESSAGE_HAS(status, text)                                      \
  EXPECT_NE(std::string((status).message()).find(text), std::string::npos) \
      << "message: " << (status).message()

std::string npyHeader(const std::string& dict, int major = 1) {
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  std::string padded = dict;
  size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + padded.size() + 1) % 64 != 0) padded.push_back(' ');
  padded.push_back('\n');
  uint32_t length = static_cast<uint32_t>(padded.size());
  out.push_back(static_cast<char>(length & 0xff));
  out.push_back(static_cast<char>((length >> 8) & 0xff));
  if (major != 1) {
    out.push_back(static_cast<char>((length >> 16) & 0xff));
    out.push_back(static_cast<char>((length >> 24) & 0xff));
  }
  return out + padded;
}

template <typename T>
std::string rawBytes(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

template <typename T>
std::vector<T> contents(const HostTensor& tensor) {
  return std::vector<T>(tensor.data<T>(), tensor.data<T>() + tensor.elementCount());
}

TEST(NpyTest, RoundTripFloat) {
  HostTensor tensor = HostTensor::fromVector<float>({2, 3}, {1.5f, -2, 3, 4, 5, 6.25f});
  absl::StatusOr<std::string> bytes = encodeNpy(tensor);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<HostTensor> decoded = parseNpy(*bytes, "t.npy");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->type(), DataType::kFloat);
  EXPECT_EQ(decoded->shape(), (Shape{2, 3}));
  EXPECT_EQ(contents<float>(*decoded), contents<float>(tensor));
}

TEST(NpyTest, RoundTripEveryType) {
  std::vector<HostTensor> tensors = {
      HostTensor::fromVector<int64_t>({3}, {-1, 0, int64_t{1} << 40}),
      HostTensor::fromVector<int32_t>({1, 2}, {7, -8}),
      HostTensor::fromVector<uint8_t>({2}, {0, 255}),
      HostTensor::fromVector<int8_t>({2}, {-128, 127}),
      HostTensor::fromVector<bool>({2, 2}, {true, false, false, true}),
      HostTensor::fromVector<double>({}, {3.25}),
      HostTensor::fromVector<uint16_t>({2}, {1, 65535}),
  };
  for (const HostTensor& tensor : tensors) {
    absl::StatusOr<std::string> bytes = encodeNpy(tensor);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    absl::StatusOr<HostTensor> decoded = parseNpy(*bytes, "t.npy");
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->type(), tensor.type());
    EXPECT_EQ(decoded->shape(), tensor.shape());
    ASSERT_EQ(decoded->byteSize(), tensor.byteSize());
    EXPECT_EQ(std::memcmp(decoded->rawData(), tensor.rawData(), tensor.byteSize()), 0);
  }
}

TEST(NpyTest, Float16KeepsRawBits) {
  // 0x3c00 is 1.0 and 0x7e00 a NaN in IEEE half precision.
  HostTensor half(DataType::kFloat16, {3});
  uint16_t bits[] = {0x3c00, 0x7e00, 0x8001};
  std::memcpy(half.rawData(), bits, sizeof(bits));
  absl::StatusOr<std::string> bytes = encodeNpy(half);
  ASSERT_TRUE(bytes.ok());
  EXPECT_NE(bytes->find("'descr': '<f2'"), std::string::npos);
  absl::StatusOr<HostTensor> decoded = parseNpy(*bytes, "h.npy");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->type(), DataType::kFloat16);
  EXPECT_EQ(std::memcmp(decoded->rawData(), bits, sizeof(bits)), 0);
}

TEST(NpyTest, WrittenHeaderMatchesNumpyLayout) {
  HostTensor tensor = HostTensor::fromVector<float>({5}, {1, 2, 3, 4, 5});
  absl::StatusOr<std::string> bytes = encodeNpy(tensor);
  ASSERT_TRUE(bytes.ok());
  size_t headerLength = static_cast<uint8_t>((*bytes)[8]) | (static_cast<uint8_t>((*bytes)[9]) << 8);
  EXPECT_EQ((10 + headerLength) % 64, 0u);
  std::string header = bytes->substr(10, headerLength);
  EXPECT_EQ(header.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", 0), 0u);
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ(bytes->size(), 10 + headerLength + 5 * sizeof(float));
}

TEST(NpyTest, ReadsBigEndianAndVersion2) {
  std::string bytes = npyHeader("{'shape': (2,), 'fortran_order': False, 'descr': '>i4'}", 2);
  bytes += std::string("\x00\x00\x01\x02\xff\xff\xff\xfe", 8);
  absl::StatusOr<HostTensor> decoded = parseNpy(bytes, "be.npy");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(contents<int32_t>(*decoded), (std::vector<int32_t>{0x0102, -2}));
}

TEST(NpyTest, ReadsPython2LongDims) {
  std::string bytes = npyHeader("{'descr': '<i8', 'fortran_order': False, 'shape': (1L, 2L), }");
  bytes += rawBytes<int64_t>({4, 5});
  absl::StatusOr<HostTensor> decoded = parseNpy(bytes, "py2.npy");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->shape(), (Shape{1, 2}));
}

TEST(NpyTest, RejectsBadMagic) {
  absl::StatusOr<HostTensor> decoded = parseNpy("PK\x03\x04 not numpy", "x.npy");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "not a .npy file");
  EXPECT_MESSAGE_HAS(decoded.status(), "x.npy");
}

TEST(NpyTest, RejectsUnknownVersion) {
  std::string bytes = npyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }");
  bytes[6] = 4;
  absl::StatusOr<HostTensor> decoded = parseNpy(bytes + rawBytes<float>({1}), "v.npy");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "version 4");
}

TEST(NpyTest, RejectsFortranOrder) {
  std::string bytes = npyHeader("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }");
  absl::StatusOr<HostTensor> decoded = parseNpy(bytes + rawBytes<float>({1, 2, 3, 4}), "f.npy");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "Fortran-order");
  EXPECT_MESSAGE_HAS(decoded.status(), "ascontiguousarray");
}

TEST(NpyTest, RejectsObjectArrays) {
  std::string bytes = npyHeader("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }");
  absl::StatusOr<HostTensor> decoded = parseNpy(bytes + "\x80\x02pickle", "o.npy");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "object array");
}

TEST(NpyTest, RejectsStructuredDtype) {
  std::string bytes =
      npyHeader("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }");
  absl::StatusOr<HostTensor> decoded = parseNpy(bytes + rawBytes<float>({1}), "s.npy");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "structured");
}

TEST(NpyTest, RejectsMissingKey) {
  std::string bytes = npyHeader("{'descr': '<f4', 'shape': (1,), }");
  absl::StatusOr<HostTensor> decoded = parseNpy(bytes + rawBytes<float>({1}), "k.npy");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "fortran_order");
}

TEST(NpyTest, RejectsMalformedShape) {
  std::string bytes = npyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }");
  absl::StatusOr<HostTensor> decoded = parseNpy(bytes, "m.npy");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "'shape'");
}

TEST(NpyTest, RejectsTruncatedHeader) {
  std::string bytes = npyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }");
  absl::StatusOr<HostTensor> decoded = parseNpy(bytes.substr(0, 30), "h.npy");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "truncated .npy header");
}

TEST(NpyTest, RejectsTruncatedData) {
  std::string bytes = npyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
  absl::StatusOr<HostTensor> decoded = parseNpy(bytes + rawBytes<float>({1, 2, 3}), "d.npy");
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_MESSAGE_HAS(decoded.status(), "needs 24 bytes");
}

TEST(NpyTest, RejectsTrailingBytes) {
  std::string bytes = npyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }");
  absl::StatusOr<HostTensor> decoded = parseNpy(bytes + rawBytes<float>({1, 2}), "t.npy");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "unexpected bytes");
}

TEST(NpyTest, RejectsWritingBfloat16) {
  HostTensor tensor(DataType::kBfloat16, {2});
  absl::StatusOr<std::string> bytes = encodeNpy(tensor);
  ASSERT_FALSE(bytes.ok());
  EXPECT_MESSAGE_HAS(bytes.status(), "bfloat16");
}

TEST(NpyTest, FileRoundTrip) {
  std::filesystem::path dir = std::filesystem::path(testing::TempDir()) / "npy-file-round-trip";
  std::filesystem::create_directories(dir);
  HostTensor tensor = HostTensor::fromVector<int64_t>({2, 2}, {1, 2, 3, 4});
  ASSERT_TRUE(writeNpy(dir / "a.npy", tensor).ok());
  absl::StatusOr<HostTensor> decoded = readNpy(dir / "a.npy");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(contents<int64_t>(*decoded), (std::vector<int64_t>{1, 2, 3, 4}));

  absl::StatusOr<HostTensor> missing = readNpy(dir / "missing.npy");
  ASSERT_FALSE(missing.ok());
  EXPECT_MESSAGE_HAS(missing.status(), "missing.npy");
  std::filesystem::remove_all(dir);
}

// ---- .npz ----

TEST(NpzTest, RoundTripKeepsOrderAndNames) {
  NamedTensors tensors = {
      {"token_ids", HostTensor::fromVector<int64_t>({1, 3}, {101, 7, 102})},
      {"scores", HostTensor::fromVector<float>({2}, {0.25f, 0.75f})},
  };
  absl::StatusOr<std::string> bytes = encodeNpz(tensors);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<NamedTensors> decoded = parseNpz(*bytes, "a.npz");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->size(), 2u);
  EXPECT_EQ((*decoded)[0].first, "token_ids");
  EXPECT_EQ((*decoded)[1].first, "scores");
  EXPECT_EQ(contents<int64_t>((*decoded)[0].second), (std::vector<int64_t>{101, 7, 102}));
  EXPECT_EQ(contents<float>((*decoded)[1].second), (std::vector<float>{0.25f, 0.75f}));
}

TEST(NpzTest, EveryTruncationFails) {
  NamedTensors tensors = {
      {"a", HostTensor::fromVector<int64_t>({2, 2}, {1, 2, 3, 4})},
      {"b", HostTensor::fromVector<float>({3}, {1, 2, 3})},
  };
  absl::StatusOr<std::string> bytes = encodeNpz(tensors);
  ASSERT_TRUE(bytes.ok());
  for (size_t length = 0; length < bytes->size(); ++length) {
    absl::StatusOr<NamedTensors> decoded = parseNpz(bytes->substr(0, length), "cut.npz");
    EXPECT_FALSE(decoded.ok()) << "a prefix of " << length << " bytes was accepted";
  }
  absl::StatusOr<std::string> npy = encodeNpy(tensors[0].second);
  ASSERT_TRUE(npy.ok());
  for (size_t length = 0; length < npy->size(); ++length) {
    absl::StatusOr<HostTensor> decoded = parseNpy(npy->substr(0, length), "cut.npy");
    EXPECT_FALSE(decoded.ok()) << "a prefix of " << length << " bytes was accepted";
  }
}

TEST(NpzTest, CorruptedBytesNeverCrash) {
  NamedTensors tensors = {{"a", HostTensor::fromVector<int64_t>({2, 2}, {1, 2, 3, 4})}};
  absl::StatusOr<std::string> bytes = encodeNpz(tensors);
  ASSERT_TRUE(bytes.ok());
  // Every byte set to 0xff in turn: size and offset fields become huge, which
  // must be caught before any read. Only the outcome's safety is checked,
  // because some bytes (the DOS time, say) do not matter.
  int rejected = 0;
  for (size_t i = 0; i < bytes->size(); ++i) {
    std::string corrupted = *bytes;
    corrupted[i] = static_cast<char>(0xff);
    rejected += parseNpz(corrupted, "corrupted.npz").ok() ? 0 : 1;
  }
  EXPECT_GT(rejected, 0);
}

TEST(NpzTest, RejectsDuplicateNames) {
  NamedTensors tensors = {{"x", HostTensor::fromVector<float>({1}, {1})},
                          {"x", HostTensor::fromVector<float>({1}, {2})}};
  absl::StatusOr<std::string> bytes = encodeNpz(tensors);
  ASSERT_FALSE(bytes.ok());
  EXPECT_MESSAGE_HAS(bytes.status(), "duplicate");
}

TEST(NpzTest, DetectsCorruptedMember) {
  NamedTensors tensors = {{"x", HostTensor::fromVector<float>({4}, {1, 2, 3, 4})}};
  absl::StatusOr<std::string> bytes = encodeNpz(tensors);
  ASSERT_TRUE(bytes.ok());
  // The last float's bytes sit just before the central directory.
  size_t central = bytes->find("PK\x01\x02");
  ASSERT_NE(central, std::string::npos);
  (*bytes)[central - 1] ^= 0x40;
  absl::StatusOr<NamedTensors> decoded = parseNpz(*bytes, "c.npz");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "CRC-32");
}

TEST(NpzTest, RejectsTruncatedArchive) {
  NamedTensors tensors = {{"x", HostTensor::fromVector<float>({4}, {1, 2, 3, 4})}};
  absl::StatusOr<std::string> bytes = encodeNpz(tensors);
  ASSERT_TRUE(bytes.ok());
  absl::StatusOr<NamedTensors> decoded = parseNpz(bytes->substr(0, bytes->size() - 30), "t.npz");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "t.npz");
}

// Builds a one-member zip by hand: `method` 0 stores `data`, 8 deflates it.
// With `zip64`, the central directory gives sizes and offset as 0xffffffff and
// the real values in a zip64 extra field, as writers do for large members.
std::string handMadeZip(const std::string& name, const std::string& data, int method,
                        bool zip64) {
  std::string stored = data;
  if (method == 8) {
    z_stream stream{};
    deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    stored.resize(deflateBound(&stream, data.size()));
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    stream.avail_in = static_cast<uInt>(data.size());
    stream.next_out = reinterpret_cast<Bytef*>(stored.data());
    stream.avail_out = static_cast<uInt>(stored.size());
    EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
    stored.resize(stream.total_out);
    deflateEnd(&stream);
  }
  uint32_t crc = static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
  auto u16 = [](std::string& s, uint32_t v) {
    s.push_back(static_cast<char>(v & 0xff));
    s.push_back(static_cast<char>((v >> 8) & 0xff));
  };
  auto u32 = [&](std::string& s, uint32_t v) {
    u16(s, v & 0xffff);
    u16(s, v >> 16);
  };
  auto u64 = [&](std::string& s, uint64_t v) {
    u32(s, static_cast<uint32_t>(v));
    u32(s, static_cast<uint32_t>(v >> 32));
  };
  std::string zip;
  u32(zip, 0x04034b50);
  u16(zip, 45);
  u16(zip, 0);
  u16(zip, method);
  u16(zip, 0);
  u16(zip, 0x21);
  u32(zip, crc);
  u32(zip, static_cast<uint32_t>(stored.size()));
  u32(zip, static_cast<uint32_t>(data.size()));
  u16(zip, static_cast<uint32_t>(name.size()));
  u16(zip, 0);
  zip += name + stored;

  std::string extra;
  if (zip64) {
    u16(extra, 0x0001);
    u16(extra, 24);
    u64(extra, data.size());
    u64(extra, stored.size());
    u64(extra, 0);
  }
  uint32_t centralOffset = static_cast<uint32_t>(zip.size());
  std::string central;
  u32(central, 0x02014b50);
  u16(central, 45);
  u16(central, 45);
  u16(central, 0);
  u16(central, method);
  u16(central, 0);
  u16(central, 0x21);
  u32(central, crc);
  u32(central, zip64 ? 0xffffffff : static_cast<uint32_t>(stored.size()));
  u32(central, zip64 ? 0xffffffff : static_cast<uint32_t>(data.size()));
  u16(central, static_cast<uint32_t>(name.size()));
  u16(central, static_cast<uint32_t>(extra.size()));
  u16(central, 0);
  u16(central, 0);
  u16(central, 0);
  u32(central, 0);
  u32(central, zip64 ? 0xffffffff : 0);
  central += name + extra;
  zip += central;
  u32(zip, 0x06054b50);
  u16(zip, 0);
  u16(zip, 0);
  u16(zip, 1);
  u16(zip, 1);
  u32(zip, static_cast<uint32_t>(central.size()));
  u32(zip, centralOffset);
  u16(zip, 0);
  return zip;
}

TEST(NpzTest, ReadsDeflatedMember) {
  absl::StatusOr<std::string> npy =
      encodeNpy(HostTensor::fromVector<int64_t>({6}, {0, 0, 0, 0, 0, 9}));
  ASSERT_TRUE(npy.ok());
  absl::StatusOr<NamedTensors> decoded = parseNpz(handMadeZip("ids.npy", *npy, 8, false), "d.npz");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->size(), 1u);
  EXPECT_EQ((*decoded)[0].first, "ids");
  EXPECT_EQ(contents<int64_t>((*decoded)[0].second), (std::vector<int64_t>{0, 0, 0, 0, 0, 9}));
}

TEST(NpzTest, ReadsZip64ExtraField) {
  absl::StatusOr<std::string> npy = encodeNpy(HostTensor::fromVector<float>({2}, {1.5f, 2.5f}));
  ASSERT_TRUE(npy.ok());
  absl::StatusOr<NamedTensors> decoded = parseNpz(handMadeZip("x.npy", *npy, 0, true), "z.npz");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->size(), 1u);
  EXPECT_EQ(contents<float>((*decoded)[0].second), (std::vector<float>{1.5f, 2.5f}));
}

TEST(NpzTest, RejectsUnknownCompression) {
  absl::StatusOr<std::string> npy = encodeNpy(HostTensor::fromVector<float>({1}, {1}));
  ASSERT_TRUE(npy.ok());
  std::string zip = handMadeZip("x.npy", *npy, 0, false);
  // Method 12 (bzip2) in the central directory entry.
  size_t central = zip.find("PK\x01\x02");
  zip[central + 10] = 12;
  absl::StatusOr<NamedTensors> decoded = parseNpz(zip, "b.npz");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "compression method 12");
}

TEST(NpzTest, RejectsNonNpyMember) {
  std::string zip = handMadeZip("notes.txt", "hello", 0, false);
  absl::StatusOr<NamedTensors> decoded = parseNpz(zip, "n.npz");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "notes.txt");
}

TEST(NpzTest, RejectsNonZipBytes) {
  absl::StatusOr<NamedTensors> decoded = parseNpz("definitely not a zip archive", "x.npz");
  ASSERT_FALSE(decoded.ok());
  EXPECT_MESSAGE_HAS(decoded.status(), "end-of-central-directory");
}

}  // namespace
}  // namespace roformer::runtime
