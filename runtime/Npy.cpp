#include "runtime/Npy.h"

#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ir/ModelIO.h"

namespace roformer::runtime {
namespace {

constexpr std::string_view kNpyMagic = "\x93NUMPY";
constexpr size_t kHeaderAlignment = 64;

// ---- Little-endian byte access ----

uint16_t loadU16(const char* p) {
  auto* b = reinterpret_cast<const uint8_t*>(p);
  return static_cast<uint16_t>(b[0] | (b[1] << 8));
}

uint32_t loadU32(const char* p) {
  auto* b = reinterpret_cast<const uint8_t*>(p);
  return static_cast<uint32_t>(b[0]) | (static_cast<uint32_t>(b[1]) << 8) |
         (static_cast<uint32_t>(b[2]) << 16) | (static_cast<uint32_t>(b[3]) << 24);
}

uint64_t loadU64(const char* p) {
  return static_cast<uint64_t>(loadU32(p)) | (static_cast<uint64_t>(loadU32(p + 4)) << 32);
}

void appendU16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>(v >> 8));
}

void appendU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

absl::StatusOr<std::string> readWholeFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open '", path.string(), "': ",
                                            std::strerror(errno)));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("failed to read '", path.string(), "'"));
  }
  return std::move(buffer).str();
}

// Allocates a 64-byte aligned host tensor; HostTensor's own constructor makes
// no alignment promise.
HostTensor allocateAligned(DataType type, Shape shape) {
  size_t bytes = static_cast<size_t>(shapeElementCount(shape)) * ir::dataTypeSize(type);
  size_t rounded = std::max<size_t>(64, (bytes + 63) / 64 * 64);
  void* data = std::aligned_alloc(64, rounded);
  std::shared_ptr<void> owner(data, [](void* p) { std::free(p); });
  return HostTensor(type, std::move(shape), std::move(owner), data);
}

// ---- The header: a Python dict literal ----

struct NpyHeader {
  std::string descr;
  bool fortranOrder = false;
  Shape shape;
};

// Parses the subset of Python literal syntax np.save writes: a dict with
// string keys whose values are strings, True/False or tuples of integers.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& source) : text_(text), source_(source) {}

  absl::StatusOr<NpyHeader> parse() {
    NpyHeader header;
    bool haveDescr = false, haveOrder = false, haveShape = false;
    skipSpace();
    if (!consume('{')) return error("the header does not start with '{'");
    while (true) {
      skipSpace();
      if (consume('}')) break;
      absl::StatusOr<std::string> key = parseString();
      if (!key.ok()) return key.status();
      skipSpace();
      if (!consume(':')) return error(absl::StrCat("missing ':' after key '", *key, "'"));
      skipSpace();
      if (*key == "descr") {
        if (peek() == '[') {
          return error("structured dtypes (a list in 'descr') are not supported; save a plain "
                       "numeric array");
        }
        absl::StatusOr<std::string> descr = parseString();
        if (!descr.ok()) return descr.status();
        header.descr = *descr;
        haveDescr = true;
      } else if (*key == "fortran_order") {
        if (consumeWord("True")) {
          header.fortranOrder = true;
        } else if (consumeWord("False")) {
          header.fortranOrder = false;
        } else {
          return error("'fortran_order' is neither True nor False");
        }
        haveOrder = true;
      } else if (*key == "shape") {
        absl::StatusOr<Shape> shape = parseShape();
        if (!shape.ok()) return shape.status();
        header.shape = *shape;
        haveShape = true;
      } else {
        return error(absl::StrCat("unexpected key '", *key, "'"));
      }
      skipSpace();
      if (consume(',')) continue;
      skipSpace();
      if (consume('}')) break;
      return error("expected ',' or '}' in the header dict");
    }
    if (!haveDescr || !haveOrder || !haveShape) {
      return error("the header lacks one of 'descr', 'fortran_order' and 'shape'");
    }
    return header;
  }

 private:
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool consume(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  bool consumeWord(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }
  void skipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  absl::StatusOr<std::string> parseString() {
    char quote = peek();
    if (quote != '\'' && quote != '"') return error("expected a quoted string");
    ++pos_;
    size_t end = text_.find(quote, pos_);
    if (end == std::string_view::npos) return error("unterminated string");
    std::string value(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return value;
  }

  absl::StatusOr<Shape> parseShape() {
    if (!consume('(')) return error("'shape' is not a tuple");
    Shape shape;
    while (true) {
      skipSpace();
      if (consume(')')) break;
      size_t start = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      if (pos_ == start) return error("'shape' contains something other than integers");
      std::string_view digits = text_.substr(start, pos_ - start);
      if (digits.size() > 18) return error(absl::StrCat("dimension ", std::string(digits), " is too large"));
      int64_t dim = 0;
      for (char c : digits) dim = dim * 10 + (c - '0');
      shape.push_back(dim);
      consume('L');  // Python 2 long literals
      skipSpace();
      if (consume(',')) continue;
      skipSpace();
      if (consume(')')) break;
      return error("expected ',' or ')' in 'shape'");
    }
    return shape;
  }

  absl::Status error(std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": invalid .npy header: ", std::string(what), " (header: ",
                     std::string(text_), ")"));
  }

  std::string_view text_;
  const std::string& source_;
  size_t pos_ = 0;
};

// ---- dtypes ----

struct Dtype {
  DataType type = DataType::kUndefined;
  bool bigEndian = false;
};

absl::StatusOr<Dtype> parseDescr(const std::string& descr, const std::string& source) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": dtype '", descr, "' is not supported: ", std::string(why)));
  };
  if (descr.size() < 2) return invalid("unknown dtype");
  char order = descr[0];
  std::string_view code = std::string_view(descr).substr(1);
  if (order != '<' && order != '>' && order != '|' && order != '=') {
    return invalid("unknown byte order");
  }
  if (code[0] == 'O') {
    return invalid("it is an object array (Python pickles); convert it to a numeric array "
                   "first, for CAIL2019 folders with scripts/cail2019-convert.py");
  }
  if (code[0] == 'U' || code[0] == 'S' || code[0] == 'a') {
    return invalid("string arrays cannot be model inputs");
  }
  static const std::pair<std::string_view, DataType> kCodes[] = {
      {"b1", DataType::kBool},     {"u1", DataType::kUint8},     {"i1", DataType::kInt8},
      {"u2", DataType::kUint16},   {"i2", DataType::kInt16},     {"u4", DataType::kUint32},
      {"i4", DataType::kInt32},    {"u8", DataType::kUint64},    {"i8", DataType::kInt64},
      {"f2", DataType::kFloat16},  {"f4", DataType::kFloat},     {"f8", DataType::kDouble},
      {"c8", DataType::kComplex64}, {"c16", DataType::kComplex128},
  };
  for (const auto& [name, type] : kCodes) {
    if (code == name) return Dtype{type, order == '>'};
  }
  return invalid("expected bool, int8 to int64, uint8 to uint64, float16/32/64 or "
                 "complex64/128");
}

// Reverses the bytes of each `width`-byte word in place.
void swapBytes(uint8_t* data, size_t bytes, size_t width) {
  for (size_t offset = 0; offset + width <= bytes; offset += width) {
    std::reverse(data + offset, data + offset + width);
  }
}

// Byte width of the words to swap for a big-endian element of `type`.
size_t swapWidth(DataType type) {
  if (type == DataType::kComplex64) return 4;
  if (type == DataType::kComplex128) return 8;
  return ir::dataTypeSize(type);
}

std::string shapeTuple(const Shape& shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

// ---- Zip structures (APPNOTE.TXT, sections 4.3 and 4.5.3) ----

constexpr uint32_t kLocalHeaderSignature = 0x04034b50;
constexpr uint32_t kCentralHeaderSignature = 0x02014b50;
constexpr uint32_t kEndOfCentralDirSignature = 0x06054b50;
constexpr uint32_t kZip64EndSignature = 0x06064b50;
constexpr uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr uint16_t kZip64ExtraId = 0x0001;
constexpr size_t kLocalHeaderSize = 30;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kEndOfCentralDirSize = 22;
constexpr uint16_t kMethodStored = 0;
constexpr uint16_t kMethodDeflate = 8;
// 1980-01-01, the earliest date a zip entry can carry.
constexpr uint16_t kDosDate1980 = (0 << 9) | (1 << 5) | 1;

struct ZipEntry {
  std::string name;
  uint16_t method = 0;
  uint16_t flags = 0;
  uint32_t crc = 0;
  uint64_t compressedSize = 0;
  uint64_t uncompressedSize = 0;
  uint64_t localHeaderOffset = 0;
};

absl::Status zipError(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": not a valid .npz (zip) file: ", what));
}

// Finds the central directory: its offset, size and entry count.
struct CentralDirectory {
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t entries = 0;
};

absl::StatusOr<CentralDirectory> findCentralDirectory(std::string_view bytes,
                                                      const std::string& source) {
  if (bytes.size() < kEndOfCentralDirSize) return zipError(source, "too short");
  // The end record is followed by a comment of at most 65535 bytes.
  size_t lowest = bytes.size() > kEndOfCentralDirSize + 65535
                      ? bytes.size() - kEndOfCentralDirSize - 65535
                      : 0;
  std::optional<size_t> end;
  for (size_t pos = bytes.size() - kEndOfCentralDirSize + 1; pos-- > lowest;) {
    if (loadU32(bytes.data() + pos) == kEndOfCentralDirSignature) {
      end = pos;
      break;
    }
  }
  if (!end) return zipError(source, "no end-of-central-directory record");
  const char* record = bytes.data() + *end;
  CentralDirectory directory;
  directory.entries = loadU16(record + 10);
  directory.size = loadU32(record + 12);
  directory.offset = loadU32(record + 16);

  bool needsZip64 = directory.entries == 0xffff || directory.size == 0xffffffff ||
                    directory.offset == 0xffffffff;
  if (needsZip64 && *end >= 20 && loadU32(record - 20) == kZip64LocatorSignature) {
    uint64_t zip64End = loadU64(record - 20 + 8);
    if (zip64End > bytes.size() || bytes.size() - zip64End < 56 ||
        loadU32(bytes.data() + zip64End) != kZip64EndSignature) {
      return zipError(source, "the zip64 end record is missing or truncated");
    }
    const char* zip64 = bytes.data() + zip64End;
    directory.entries = loadU64(zip64 + 32);
    directory.size = loadU64(zip64 + 40);
    directory.offset = loadU64(zip64 + 48);
  }
  if (directory.offset > bytes.size() || directory.size > bytes.size() - directory.offset) {
    return zipError(source, "the central directory lies outside the file (truncated?)");
  }
  return directory;
}

// Applies a zip64 extended-information extra field to `entry`: each field
// stored as 0xffffffff in the header is given there as 8 bytes, in order.
absl::Status applyZip64Extra(std::string_view extra, uint32_t rawUncompressed,
                             uint32_t rawCompressed, uint32_t rawOffset, ZipEntry& entry,
                             const std::string& source) {
  size_t pos = 0;
  while (pos + 4 <= extra.size()) {
    uint16_t id = loadU16(extra.data() + pos);
    uint16_t size = loadU16(extra.data() + pos + 2);
    if (pos + 4 + size > extra.size()) return zipError(source, "truncated extra field");
    if (id == kZip64ExtraId) {
      std::string_view field = extra.substr(pos + 4, size);
      size_t at = 0;
      auto next = [&](uint64_t& target) -> absl::Status {
        if (at + 8 > field.size()) return zipError(source, "truncated zip64 extra field");
        target = loadU64(field.data() + at);
        at += 8;
        return absl::OkStatus();
      };
      if (rawUncompressed == 0xffffffff) {
        if (absl::Status s = next(entry.uncompressedSize); !s.ok()) return s;
      }
      if (rawCompressed == 0xffffffff) {
        if (absl::Status s = next(entry.compressedSize); !s.ok()) return s;
      }
      if (rawOffset == 0xffffffff) {
        if (absl::Status s = next(entry.localHeaderOffset); !s.ok()) return s;
      }
    }
    pos += 4 + size;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ZipEntry>> readCentralDirectory(std::string_view bytes,
                                                           const std::string& source) {
  absl::StatusOr<CentralDirectory> directory = findCentralDirectory(bytes, source);
  if (!directory.ok()) return directory.status();
  std::vector<ZipEntry> entries;
  size_t pos = directory->offset;
  size_t end = directory->offset + directory->size;
  for (uint64_t i = 0; i < directory->entries; ++i) {
    if (pos + kCentralHeaderSize > end || loadU32(bytes.data() + pos) != kCentralHeaderSignature) {
      return zipError(source, absl::StrCat("central directory entry ", i, " is invalid"));
    }
    const char* header = bytes.data() + pos;
    ZipEntry entry;
    entry.flags = loadU16(header + 8);
    entry.method = loadU16(header + 10);
    entry.crc = loadU32(header + 16);
    uint32_t rawCompressed = loadU32(header + 20);
    uint32_t rawUncompressed = loadU32(header + 24);
    uint16_t nameLength = loadU16(header + 28);
    uint16_t extraLength = loadU16(header + 30);
    uint16_t commentLength = loadU16(header + 32);
    uint32_t rawOffset = loadU32(header + 42);
    size_t variable = static_cast<size_t>(nameLength) + extraLength + commentLength;
    if (pos + kCentralHeaderSize + variable > end) {
      return zipError(source, absl::StrCat("central directory entry ", i, " is truncated"));
    }
    entry.name = std::string(bytes.substr(pos + kCentralHeaderSize, nameLength));
    entry.compressedSize = rawCompressed;
    entry.uncompressedSize = rawUncompressed;
    entry.localHeaderOffset = rawOffset;
    std::string_view extra = bytes.substr(pos + kCentralHeaderSize + nameLength, extraLength);
    if (absl::Status s =
            applyZip64Extra(extra, rawUncompressed, rawCompressed, rawOffset, entry, source);
        !s.ok()) {
      return s;
    }
    entries.push_back(std::move(entry));
    pos += kCentralHeaderSize + variable;
  }
  return entries;
}

absl::StatusOr<std::string> extractMember(std::string_view bytes, const ZipEntry& entry,
                                          const std::string& source) {
  std::string where = absl::StrCat(source, ": member '", entry.name, "'");
  if (entry.flags & 0x1) {
    return absl::InvalidArgumentError(absl::StrCat(where, " is encrypted"));
  }
  uint64_t offset = entry.localHeaderOffset;
  if (offset > bytes.size() || bytes.size() - offset < kLocalHeaderSize ||
      loadU32(bytes.data() + offset) != kLocalHeaderSignature) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has no valid local header"));
  }
  uint64_t dataStart =
      offset + kLocalHeaderSize + loadU16(bytes.data() + offset + 26) +
      loadU16(bytes.data() + offset + 28);
  if (dataStart > bytes.size() || bytes.size() - dataStart < entry.compressedSize) {
    return absl::DataLossError(absl::StrCat(where, " is truncated"));
  }
  std::string_view compressed = bytes.substr(dataStart, entry.compressedSize);

  std::string data;
  if (entry.method == kMethodStored) {
    if (entry.compressedSize != entry.uncompressedSize) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " is stored but its sizes differ"));
    }
    data = std::string(compressed);
  } else if (entry.method == kMethodDeflate) {
    if (entry.uncompressedSize > std::numeric_limits<uInt>::max() ||
        compressed.size() > std::numeric_limits<uInt>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " is a deflated member of 4 GiB or more, which is not supported; "
                              "save with np.savez instead of np.savez_compressed"));
    }
    // Deflate expands data at most about 1032 times (258-byte matches coded
    // in 2 bits), so a larger declared size means a corrupt header, and is
    // rejected before that many bytes are allocated.
    if (entry.uncompressedSize > compressed.size() * 1100 + 1024) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, " declares ", entry.uncompressedSize, " uncompressed bytes from ",
          compressed.size(), " compressed bytes, more than deflate can produce; the archive is "
          "corrupt"));
    }
    data.resize(entry.uncompressedSize);
    z_stream stream{};
    // Negative window bits: a raw deflate stream with no zlib header, as in zip.
    if (inflateInit2(&stream, -MAX_WBITS) != Z_OK) {
      return absl::InternalError(absl::StrCat(where, ": zlib inflateInit2 failed"));
    }
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
    stream.avail_in = static_cast<uInt>(compressed.size());
    stream.next_out = reinterpret_cast<Bytef*>(data.data());
    stream.avail_out = static_cast<uInt>(data.size());
    int result = inflate(&stream, Z_FINISH);
    uint64_t produced = stream.total_out;
    inflateEnd(&stream);
    if (result != Z_STREAM_END || produced != entry.uncompressedSize) {
      return absl::DataLossError(
          absl::StrCat(where, " failed to decompress (zlib result ", result, ", ", produced,
                       " of ", entry.uncompressedSize, " bytes)"));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " uses zip compression method ", entry.method,
                     "; only stored (0) and deflate (8) are supported"));
  }

  uLong crc = crc32(0L, Z_NULL, 0);
  // crc32 takes uInt lengths, so feed large members in pieces.
  for (size_t done = 0; done < data.size();) {
    size_t piece = std::min<size_t>(data.size() - done, 1u << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data.data() + done), static_cast<uInt>(piece));
    done += piece;
  }
  if (static_cast<uint32_t>(crc) != entry.crc) {
    return absl::DataLossError(absl::StrCat(where, " fails its CRC-32 check (corrupted file)"));
  }
  return data;
}

uint32_t crc32Of(std::string_view data) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t done = 0; done < data.size();) {
    size_t piece = std::min<size_t>(data.size() - done, 1u << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data.data() + done), static_cast<uInt>(piece));
    done += piece;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace

std::string numpyDtypeOf(DataType type) {
  switch (type) {
    case DataType::kBool:
      return "|b1";
    case DataType::kUint8:
      return "|u1";
    case DataType::kInt8:
      return "|i1";
    case DataType::kUint16:
      return "<u2";
    case DataType::kInt16:
      return "<i2";
    case DataType::kUint32:
      return "<u4";
    case DataType::kInt32:
      return "<i4";
    case DataType::kUint64:
      return "<u8";
    case DataType::kInt64:
      return "<i8";
    case DataType::kFloat16:
      return "<f2";
    case DataType::kFloat:
      return "<f4";
    case DataType::kDouble:
      return "<f8";
    case DataType::kComplex64:
      return "<c8";
    case DataType::kComplex128:
      return "<c16";
    default:
      return "";
  }
}

absl::StatusOr<HostTensor> parseNpy(std::string_view bytes, const std::string& source) {
  if (bytes.size() < 10 || bytes.substr(0, kNpyMagic.size()) != kNpyMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a .npy file (the \\x93NUMPY magic string is missing)"));
  }
  uint8_t major = static_cast<uint8_t>(bytes[6]);
  size_t headerLength = 0;
  size_t headerStart = 0;
  if (major == 1) {
    headerLength = loadU16(bytes.data() + 8);
    headerStart = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": truncated .npy header"));
    }
    headerLength = loadU32(bytes.data() + 8);
    headerStart = 12;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": unsupported .npy format version ", static_cast<int>(major),
        "; versions 1 to 3 are supported"));
  }
  if (bytes.size() - headerStart < headerLength) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": truncated .npy header"));
  }
  std::string_view headerText = bytes.substr(headerStart, headerLength);
  absl::StatusOr<NpyHeader> header = HeaderParser(headerText, source).parse();
  if (!header.ok()) return header.status();
  if (header->fortranOrder) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": Fortran-order arrays are not supported; save a C-order copy "
                             "with np.save(path, np.ascontiguousarray(array))"));
  }
  absl::StatusOr<Dtype> dtype = parseDescr(header->descr, source);
  if (!dtype.ok()) return dtype.status();

  size_t elementSize = ir::dataTypeSize(dtype->type);
  uint64_t elements = 1;
  for (int64_t dim : header->shape) {
    if (dim != 0 && elements > std::numeric_limits<uint64_t>::max() / 16 / dim) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": shape ", shapeTuple(header->shape), " is too large"));
    }
    elements *= static_cast<uint64_t>(dim);
  }
  uint64_t dataBytes = elements * elementSize;
  std::string_view data = bytes.substr(headerStart + headerLength);
  if (data.size() < dataBytes) {
    return absl::DataLossError(absl::StrCat(source, ": truncated data: shape ",
                                            shapeTuple(header->shape), " of ", header->descr,
                                            " needs ", dataBytes, " bytes but the file has ",
                                            data.size()));
  }
  if (data.size() > dataBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", data.size() - dataBytes,
                     " unexpected bytes after the array data (corrupted file?)"));
  }

  HostTensor tensor = allocateAligned(dtype->type, header->shape);
  if (dataBytes > 0) std::memcpy(tensor.rawData(), data.data(), dataBytes);
  if (dtype->bigEndian && swapWidth(dtype->type) > 1) {
    swapBytes(static_cast<uint8_t*>(tensor.rawData()), dataBytes, swapWidth(dtype->type));
  }
  return tensor;
}

absl::StatusOr<HostTensor> readNpy(const std::filesystem::path& path) {
  absl::StatusOr<std::string> bytes = readWholeFile(path);
  if (!bytes.ok()) return bytes.status();
  return parseNpy(*bytes, path.string());
}

absl::StatusOr<std::string> encodeNpy(const HostTensor& tensor) {
  std::string descr = numpyDtypeOf(tensor.type());
  if (descr.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot write a ", std::string(ir::dataTypeName(tensor.type())),
                     " tensor as .npy: NumPy has no such dtype; convert it to float32 first"));
  }
  std::string dict = absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': ",
                                  shapeTuple(tensor.shape()), ", }");
  // Pad with spaces and a final newline so the data starts on a 64-byte
  // boundary, as NumPy does.
  bool version2 = false;
  size_t prefix = kNpyMagic.size() + 2 + 2;
  size_t total = (prefix + dict.size() + 1 + kHeaderAlignment - 1) / kHeaderAlignment *
                 kHeaderAlignment;
  if (total - prefix > 0xffff) {
    version2 = true;
    prefix += 2;
    total = (prefix + dict.size() + 1 + kHeaderAlignment - 1) / kHeaderAlignment *
            kHeaderAlignment;
  }
  size_t headerLength = total - prefix;
  dict.append(headerLength - dict.size() - 1, ' ');
  dict.push_back('\n');

  std::string out(kNpyMagic);
  out.push_back(static_cast<char>(version2 ? 2 : 1));
  out.push_back(0);
  if (version2) {
    appendU32(out, static_cast<uint32_t>(headerLength));
  } else {
    appendU16(out, static_cast<uint16_t>(headerLength));
  }
  out += dict;
  out.append(static_cast<const char*>(tensor.rawData()), tensor.byteSize());
  return out;
}

absl::Status writeNpy(const std::filesystem::path& path, const HostTensor& tensor) {
  absl::StatusOr<std::string> bytes = encodeNpy(tensor);
  if (!bytes.ok()) return bytes.status();
  return ir::writeFileAtomically(path, *bytes);
}

absl::StatusOr<NamedTensors> parseNpz(std::string_view bytes, const std::string& source) {
  absl::StatusOr<std::vector<ZipEntry>> entries = readCentralDirectory(bytes, source);
  if (!entries.ok()) return entries.status();
  NamedTensors tensors;
  for (const ZipEntry& entry : *entries) {
    if (entry.name.ends_with("/")) continue;  // a folder entry
    if (!entry.name.ends_with(".npy")) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": member '", entry.name, "' is not a .npy file; an .npz holds only .npy "
                                           "members"));
    }
    absl::StatusOr<std::string> member = extractMember(bytes, entry, source);
    if (!member.ok()) return member.status();
    std::string memberSource = absl::StrCat(source, ":", entry.name);
    absl::StatusOr<HostTensor> tensor = parseNpy(*member, memberSource);
    if (!tensor.ok()) return tensor.status();
    std::string key = entry.name.substr(0, entry.name.size() - 4);
    tensors.emplace_back(std::move(key), std::move(*tensor));
  }
  return tensors;
}

absl::StatusOr<NamedTensors> readNpz(const std::filesystem::path& path) {
  absl::StatusOr<std::string> bytes = readWholeFile(path);
  if (!bytes.ok()) return bytes.status();
  return parseNpz(*bytes, path.string());
}

absl::StatusOr<std::string> encodeNpz(const NamedTensors& tensors) {
  std::string out;
  std::string central;
  std::set<std::string> seen;
  for (const auto& [key, tensor] : tensors) {
    if (!seen.insert(key).second) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate .npz member name '", key, "'"));
    }
    absl::StatusOr<std::string> npy = encodeNpy(tensor);
    if (!npy.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("member '", key, "': ", npy.status().message()));
    }
    std::string name = key + ".npy";
    if (name.size() > 0xffff || npy->size() >= 0xffffffffu || out.size() >= 0xffffffffu) {
      return absl::InvalidArgumentError(
          absl::StrCat("member '", key, "' needs zip64, which the .npz writer does not "
                                        "produce; split the arrays into several files"));
    }
    uint32_t crc = crc32Of(*npy);
    uint32_t offset = static_cast<uint32_t>(out.size());

    appendU32(out, kLocalHeaderSignature);
    appendU16(out, 20);  // version needed: 2.0
    appendU16(out, 0);   // flags
    appendU16(out, kMethodStored);
    appendU16(out, 0);  // time
    appendU16(out, kDosDate1980);
    appendU32(out, crc);
    appendU32(out, static_cast<uint32_t>(npy->size()));
    appendU32(out, static_cast<uint32_t>(npy->size()));
    appendU16(out, static_cast<uint16_t>(name.size()));
    appendU16(out, 0);  // extra length
    out += name;
    out += *npy;

    appendU32(central, kCentralHeaderSignature);
    appendU16(central, 20);  // version made by
    appendU16(central, 20);  // version needed
    appendU16(central, 0);
    appendU16(central, kMethodStored);
    appendU16(central, 0);
    appendU16(central, kDosDate1980);
    appendU32(central, crc);
    appendU32(central, static_cast<uint32_t>(npy->size()));
    appendU32(central, static_cast<uint32_t>(npy->size()));
    appendU16(central, static_cast<uint16_t>(name.size()));
    appendU16(central, 0);  // extra length
    appendU16(central, 0);  // comment length
    appendU16(central, 0);  // disk number
    appendU16(central, 0);  // internal attributes
    appendU32(central, 0);  // external attributes
    appendU32(central, offset);
    central += name;
  }
  if (tensors.size() > 0xffff || out.size() + central.size() >= 0xffffffffu) {
    return absl::InvalidArgumentError(
        "the archive needs zip64, which the .npz writer does not produce; split the arrays "
        "into several files");
  }
  uint32_t centralOffset = static_cast<uint32_t>(out.size());
  out += central;
  appendU32(out, kEndOfCentralDirSignature);
  appendU16(out, 0);
  appendU16(out, 0);
  appendU16(out, static_cast<uint16_t>(tensors.size()));
  appendU16(out, static_cast<uint16_t>(tensors.size()));
  appendU32(out, static_cast<uint32_t>(central.size()));
  appendU32(out, centralOffset);
  appendU16(out, 0);  // comment length
  return out;
}

absl::Status writeNpz(const std::filesystem::path& path, const NamedTensors& tensors) {
  absl::StatusOr<std::string> bytes = encodeNpz(tensors);
  if (!bytes.ok()) return bytes.status();
  return ir::writeFileAtomically(path, *bytes);
}

}  // namespace roformer::runtime
