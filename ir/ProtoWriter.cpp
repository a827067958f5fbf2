#include "ir/ProtoWriter.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl.h"

namespace roformer::ir {
namespace {

using google::protobuf::io::CodedOutputStream;

// Field numbers in onnx.proto.
constexpr int kModelGraphField = 7;
constexpr int kGraphInitializerField = 5;
constexpr int kTensorRawDataField = 9;

uint32_t lengthDelimitedTag(int field) { return (static_cast<uint32_t>(field) << 3) | 2; }

// The encoded size of a length-delimited field with a payload of `length`
// bytes: tag, length varint, payload.
uint64_t fieldSize(int field, uint64_t length) {
  return CodedOutputStream::VarintSize32(lengthDelimitedTag(field)) +
         CodedOutputStream::VarintSize64(length) + length;
}

// The canonical encoding of `message` split around field `number`: the
// fields numbered below it, and those above it followed by the unknown
// fields. Field `number` itself is in neither part.
struct SplitMessage {
  std::string before;
  std::string after;
};

// The fields are moved into a scratch message to be serialized and moved
// back, so nothing is copied; `message` is unchanged on return.
SplitMessage serializeAround(google::protobuf::Message& message, int number) {
  const google::protobuf::Reflection* reflection = message.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  std::vector<const google::protobuf::FieldDescriptor*> below;
  std::vector<const google::protobuf::FieldDescriptor*> above;
  for (const google::protobuf::FieldDescriptor* field : fields) {
    if (field->number() < number) below.push_back(field);
    if (field->number() > number) above.push_back(field);
  }

  SplitMessage split;
  std::unique_ptr<google::protobuf::Message> part(message.New());
  reflection->SwapFields(&message, part.get(), below);
  split.before = part->SerializeAsString();
  reflection->SwapFields(&message, part.get(), below);

  reflection->SwapFields(&message, part.get(), above);
  reflection->MutableUnknownFields(part.get())->Swap(reflection->MutableUnknownFields(&message));
  split.after = part->SerializeAsString();
  reflection->MutableUnknownFields(part.get())->Swap(reflection->MutableUnknownFields(&message));
  reflection->SwapFields(&message, part.get(), above);
  return split;
}

// One initializer's encoding: the TensorProto's own fields, with the raw
// bytes (if any) spliced in at field 9.
struct InitializerParts {
  SplitMessage fields;
  const Tensor* data = nullptr;

  uint64_t size() const {
    uint64_t size = fields.before.size() + fields.after.size();
    if (data != nullptr) size += fieldSize(kTensorRawDataField, data->byteSize());
    return size;
  }
};

void writeLengthDelimitedHeader(CodedOutputStream& out, int field, uint64_t length) {
  out.WriteVarint32(lengthDelimitedTag(field));
  out.WriteVarint64(length);
}

}  // namespace

absl::Status writeModelWithInitializerData(int fd, onnx::ModelProto& proto,
                                           std::span<const Tensor* const> initializerData) {
  onnx::GraphProto graph = std::move(*proto.mutable_graph());
  proto.clear_graph();
  // Restores the caller's proto on every return.
  struct Restore {
    onnx::ModelProto& proto;
    onnx::GraphProto& graph;
    ~Restore() { *proto.mutable_graph() = std::move(graph); }
  } restore{proto, graph};

  if (static_cast<size_t>(graph.initializer_size()) != initializerData.size()) {
    return absl::InternalError(absl::StrCat("the graph has ", graph.initializer_size(),
                                            " initializers but ", initializerData.size(),
                                            " data entries were given"));
  }
  std::vector<InitializerParts> initializers(initializerData.size());
  uint64_t graphSize = 0;
  for (size_t i = 0; i < initializers.size(); ++i) {
    onnx::TensorProto& tensor = *graph.mutable_initializer(static_cast<int>(i));
    InitializerParts& parts = initializers[i];
    parts.data = initializerData[i];
    if (parts.data != nullptr && tensor.has_raw_data()) {
      return absl::InternalError(absl::StrCat("initializer '", tensor.name(),
                                              "' has raw_data and separate data to write"));
    }
    if (parts.data != nullptr && parts.data->byteSize() > INT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat(
          "initializer '", tensor.name(), "' has ", parts.data->byteSize(),
          " bytes, more than a protobuf message may hold; save with external data"));
    }
    if (parts.data != nullptr) {
      parts.fields = serializeAround(tensor, kTensorRawDataField);
    } else {
      parts.fields.before = tensor.SerializeAsString();
    }
    graphSize += fieldSize(kGraphInitializerField, parts.size());
  }

  SplitMessage graphFields = serializeAround(graph, kGraphInitializerField);
  graphSize += graphFields.before.size() + graphFields.after.size();

  SplitMessage modelFields = serializeAround(proto, kModelGraphField);

  google::protobuf::io::FileOutputStream file(fd);
  {
    CodedOutputStream out(&file);
    out.WriteString(modelFields.before);
    writeLengthDelimitedHeader(out, kModelGraphField, graphSize);
    out.WriteString(graphFields.before);
    for (const InitializerParts& parts : initializers) {
      writeLengthDelimitedHeader(out, kGraphInitializerField, parts.size());
      out.WriteString(parts.fields.before);
      if (parts.data != nullptr) {
        writeLengthDelimitedHeader(out, kTensorRawDataField, parts.data->byteSize());
        out.WriteRaw(parts.data->rawData(), static_cast<int>(parts.data->byteSize()));
      }
      out.WriteString(parts.fields.after);
    }
    out.WriteString(graphFields.after);
    out.WriteString(modelFields.after);
    if (out.HadError()) {
      return absl::InternalError(
          absl::StrCat("writing the model failed (", std::strerror(file.GetErrno()), ")"));
    }
  }
  if (!file.Flush()) {
    return absl::InternalError(
        absl::StrCat("writing the model failed (", std::strerror(file.GetErrno()), ")"));
  }
  return absl::OkStatus();
}

}  // namespace roformer::ir
