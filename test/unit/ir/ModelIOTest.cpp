#include "ir/ModelIO.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "google/protobuf/util/message_differencer.h"
#include "ir/Verifier.h"

namespace roformer::ir {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "roformer-io-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

onnx::ValueInfoProto tensorInfo(const std::string& name, int elemType,
                                const std::vector<std::string>& dims) {
  onnx::ValueInfoProto info;
  info.set_name(name);
  auto* tensor = info.mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(elemType);
  tensor->mutable_shape();
  for (const auto& dim : dims) {
    auto* d = tensor->mutable_shape()->add_dim();
    if (std::isdigit(static_cast<unsigned char>(dim[0]))) {
      d->set_dim_value(std::stoll(dim));
    } else {
      d->set_dim_param(dim);
    }
  }
  return info;
}

// A tf2onnx-like model: names with ':', metadata, doc strings, value_info and
// an If node whose branch reads an outer value.
onnx::ModelProto makeModel() {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.set_producer_name("tf2onnx");
  model.set_producer_version("1.9.3");
  model.set_doc_string("test model");
  auto* opset = model.add_opset_import();
  opset->set_version(13);
  auto* meta = model.add_metadata_props();
  meta->set_key("origin");
  meta->set_value("unit test");

  auto* graph = model.mutable_graph();
  graph->set_name("tf2onnx");
  *graph->add_input() = tensorInfo("input_token:0", 1, {"unk__B", "unk__S"});
  *graph->add_input() = tensorInfo("flag:0", 9, {});

  auto* weights = graph->add_initializer();
  weights->set_name("Embedding-Token/embeddings:0");
  weights->set_data_type(1);
  weights->add_dims(4);
  weights->add_dims(3);
  std::vector<float> values(12);
  for (int i = 0; i < 12; ++i) values[i] = 0.5f * i;
  weights->set_raw_data(values.data(), values.size() * sizeof(float));

  auto* typed = graph->add_initializer();
  typed->set_name("typed:0");
  typed->set_data_type(7);
  typed->add_dims(2);
  typed->add_int64_data(-1);
  typed->add_int64_data(3);

  auto* cast = graph->add_node();
  cast->set_name("model/Cast");
  cast->set_op_type("Cast");
  cast->add_input("input_token:0");
  cast->add_output("model/Cast:0");
  auto* to = cast->add_attribute();
  to->set_name("to");
  to->set_type(onnx::AttributeProto::INT);
  to->set_i(6);
  cast->set_doc_string("cast doc");

  auto* gather = graph->add_node();
  gather->set_name("model/Gather");
  gather->set_op_type("Gather");
  gather->add_input("Embedding-Token/embeddings:0");
  gather->add_input("model/Cast:0");
  gather->add_output("model/Gather:0");

  auto* branch = graph->add_node();
  branch->set_name("model/If");
  branch->set_op_type("If");
  branch->add_input("flag:0");
  branch->add_output("Identity:0");
  for (const char* name : {"then_branch", "else_branch"}) {
    auto* attribute = branch->add_attribute();
    attribute->set_name(name);
    attribute->set_type(onnx::AttributeProto::GRAPH);
    auto* body = attribute->mutable_g();
    body->set_name(name);
    auto* identity = body->add_node();
    identity->set_op_type("Identity");
    identity->add_input("model/Gather:0");
    identity->add_output(std::string(name) + "_out");
    *body->add_output() = tensorInfo(std::string(name) + "_out", 1, {"unk__B", "unk__S", "3"});
  }

  *graph->add_value_info() = tensorInfo("model/Cast:0", 6, {"unk__B", "unk__S"});
  *graph->add_output() = tensorInfo("Identity:0", 1, {"unk__B", "unk__S", "3"});
  return model;
}

TEST(ModelIO, ImportBuildsUseListsAndImplicitInputs) {
  auto model = importModel(makeModel(), ".", "test");
  ASSERT_TRUE(model.ok()) << model.status();
  Graph& graph = (*model)->graph();
  EXPECT_EQ(graph.nodeCount(), 3u);
  Value* gathered = graph.findValue("model/Gather:0");
  ASSERT_NE(gathered, nullptr);
  ASSERT_EQ(gathered->uses().size(), 1u);
  EXPECT_EQ(gathered->uses()[0].inputIndex, Use::kImplicitUse);
  EXPECT_TRUE(verifyModel(**model).ok()) << verifyModel(**model);
  // The typed-field initializer is packed as raw little-endian data.
  auto typed = constantOf(graph.findValue("typed:0"));
  ASSERT_NE(typed, nullptr);
  EXPECT_EQ(typed->toInt64Vector(), (std::vector<int64_t>{-1, 3}));
}

TEST(ModelIO, ExportRoundTripsUntouchedModel) {
  onnx::ModelProto original = makeModel();
  auto model = importModel(original, ".", "test");
  ASSERT_TRUE(model.ok()) << model.status();
  onnx::ModelProto exported = exportModel(**model);

  // Typed fields become raw_data on import; normalize the original the same way.
  auto* typed = original.mutable_graph()->mutable_initializer(1);
  std::vector<int64_t> values(typed->int64_data().begin(), typed->int64_data().end());
  typed->clear_int64_data();
  typed->set_raw_data(values.data(), values.size() * sizeof(int64_t));

  std::string differences;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&differences);
  EXPECT_TRUE(differencer.Compare(original, exported)) << differences;
}

TEST(ModelIO, ExternalDataRoundTrip) {
  TempDir dir;
  auto model = importModel(makeModel(), ".", "test");
  ASSERT_TRUE(model.ok());
  SaveOptions options;
  options.externalData = ExternalDataMode::kAlways;
  options.externalThresholdBytes = 16;
  fs::path path = dir.path() / "model.onnx";
  ASSERT_TRUE(saveModel(**model, path.string(), options).ok());
  ASSERT_TRUE(fs::exists(dir.path() / "model.onnx.data"));

  auto reloaded = loadModel(path.string());
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  auto tensor = constantOf((*reloaded)->graph().findValue("Embedding-Token/embeddings:0"));
  ASSERT_NE(tensor, nullptr);
  ASSERT_TRUE(tensor->externalOrigin().has_value());
  EXPECT_EQ(tensor->externalOrigin()->location, "model.onnx.data");
  EXPECT_EQ(tensor->values<float>()[11], 5.5f);

  // Saving the reloaded model inline gives back the same bytes.
  fs::path inlinePath = dir.path() / "inline.onnx";
  SaveOptions inlineOptions;
  inlineOptions.externalData = ExternalDataMode::kNever;
  ASSERT_TRUE(saveModel(**reloaded, inlinePath.string(), inlineOptions).ok());
  auto inlined = loadModel(inlinePath.string());
  ASSERT_TRUE(inlined.ok());
  auto again = constantOf((*inlined)->graph().findValue("Embedding-Token/embeddings:0"));
  EXPECT_TRUE(again->contentEquals(*tensor));
  EXPECT_FALSE(again->externalOrigin().has_value());
}

TEST(ModelIO, SavedBytesEqualProtobufSerialization) {
  // The saver writes initializer bytes from the tensors while serializing;
  // the file must equal protobuf's own encoding of the exported model.
  onnx::ModelProto proto = makeModel();
  auto* graph = proto.mutable_graph();
  graph->set_doc_string("graph doc");
  auto* empty = graph->add_initializer();
  empty->set_name("empty:0");
  empty->set_data_type(1);
  empty->add_dims(0);
  auto* strings = graph->add_initializer();
  strings->set_name("strings:0");
  strings->set_data_type(8);
  strings->add_dims(2);
  strings->add_string_data("a");
  strings->add_string_data("bc");
  // Fields this ONNX version does not know are kept and written last.
  proto.GetReflection()->MutableUnknownFields(&proto)->AddVarint(1000, 7);
  graph->GetReflection()->MutableUnknownFields(graph)->AddLengthDelimited(999, "future");

  auto model = importModel(proto, ".", "test");
  ASSERT_TRUE(model.ok()) << model.status();
  TempDir dir;
  fs::path path = dir.path() / "model.onnx";
  SaveOptions options;
  options.externalData = ExternalDataMode::kNever;
  ASSERT_TRUE(saveModel(**model, path.string(), options).ok());

  std::ifstream in(path, std::ios::binary);
  std::string written((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string expected = exportModel(**model).SerializeAsString();
  EXPECT_EQ(written.size(), expected.size());
  EXPECT_TRUE(written == expected) << "the saved file differs from SerializeAsString's bytes";

  auto reloaded = loadModel(path.string());
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  auto weights = constantOf((*reloaded)->graph().findValue("Embedding-Token/embeddings:0"));
  ASSERT_NE(weights, nullptr);
  EXPECT_EQ(weights->values<float>()[11], 5.5f);
}

onnx::ModelProto withExternalLocation(const std::string& location, int64_t length) {
  onnx::ModelProto model = makeModel();
  auto* weights = model.mutable_graph()->mutable_initializer(0);
  weights->clear_raw_data();
  weights->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* entry = weights->add_external_data();
  entry->set_key("location");
  entry->set_value(location);
  if (length >= 0) {
    auto* size = weights->add_external_data();
    size->set_key("length");
    size->set_value(std::to_string(length));
  }
  return model;
}

TEST(ModelIO, ExternalDataMustStayInsideModelFolder) {
  TempDir dir;
  fs::create_directory(dir.path() / "model");
  std::ofstream(dir.path() / "outside.data") << std::string(48, 'x');
  fs::create_symlink(dir.path() / "outside.data", dir.path() / "model" / "link.data");

  for (const std::string& location :
       {std::string("../outside.data"), (dir.path() / "outside.data").string(),
        std::string("link.data")}) {
    auto model = importModel(withExternalLocation(location, 48), dir.path() / "model", "m.onnx");
    ASSERT_FALSE(model.ok()) << location;
    EXPECT_NE(model.status().message().find("m.onnx: initializer"), std::string::npos)
        << model.status();
    EXPECT_NE(model.status().message().find("outside"), std::string::npos) << model.status();
  }
}

TEST(ModelIO, ExternalDataLengthChecked) {
  TempDir dir;
  std::ofstream(dir.path() / "w.data") << std::string(40, 'x');
  auto tooLong = importModel(withExternalLocation("w.data", 48), dir.path(), "m.onnx");
  ASSERT_FALSE(tooLong.ok());
  EXPECT_NE(tooLong.status().message().find("exceeds the size"), std::string::npos)
      << tooLong.status();

  auto wrongSize = importModel(withExternalLocation("w.data", 40), dir.path(), "m.onnx");
  ASSERT_FALSE(wrongSize.ok());
  EXPECT_NE(wrongSize.status().message().find("need 48"), std::string::npos)
      << wrongSize.status();
}

TEST(ModelIO, RejectsMalformedModels) {
  onnx::ModelProto undefined = makeModel();
  undefined.mutable_graph()->mutable_node(1)->set_input(1, "nowhere:0");
  auto status = importModel(undefined, ".", "m.onnx").status();
  EXPECT_NE(status.message().find("'nowhere:0'"), std::string::npos) << status;
  EXPECT_NE(status.message().find("model/Gather"), std::string::npos) << status;

  onnx::ModelProto twice = makeModel();
  twice.mutable_graph()->mutable_node(1)->set_output(0, "model/Cast:0");
  status = importModel(twice, ".", "m.onnx").status();
  EXPECT_NE(status.message().find("defined more than once"), std::string::npos) << status;

  onnx::ModelProto truncated = makeModel();
  truncated.mutable_graph()->mutable_initializer(0)->mutable_raw_data()->resize(20);
  status = importModel(truncated, ".", "m.onnx").status();
  EXPECT_NE(status.message().find("Embedding-Token/embeddings:0"), std::string::npos) << status;
  EXPECT_NE(status.message().find("truncated"), std::string::npos) << status;

  onnx::ModelProto negative = makeModel();
  negative.mutable_graph()->mutable_initializer(0)->set_dims(0, -4);
  status = importModel(negative, ".", "m.onnx").status();
  EXPECT_NE(status.message().find("negative"), std::string::npos) << status;

  onnx::ModelProto cycle = makeModel();
  cycle.mutable_graph()->mutable_node(0)->set_input(0, "model/Gather:0");
  status = importModel(cycle, ".", "m.onnx").status();
  EXPECT_NE(status.message().find("cycle"), std::string::npos) << status;
}

TEST(ModelIO, LoadReportsCorruptFile) {
  TempDir dir;
  onnx::ModelProto model = makeModel();
  std::string bytes = model.SerializeAsString();
  fs::path path = dir.path() / "cut.onnx";
  std::ofstream(path, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  auto loaded = loadModel(path.string());
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("cut.onnx"), std::string::npos) << loaded.status();
  EXPECT_NE(loaded.status().message().find("truncated or corrupt"), std::string::npos)
      << loaded.status();

  auto missing = loadModel((dir.path() / "absent.onnx").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(ModelIO, SaveLeavesNoTemporaryFiles) {
  TempDir dir;
  auto model = importModel(makeModel(), ".", "test");
  ASSERT_TRUE(model.ok());
  fs::path path = dir.path() / "out.onnx";
  ASSERT_TRUE(saveModel(**model, path.string(), SaveOptions{}).ok());
  int files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1);

  // A folder that does not exist fails cleanly and creates nothing.
  auto status = saveModel(**model, (dir.path() / "missing" / "out.onnx").string(), SaveOptions{});
  EXPECT_FALSE(status.ok());
}

}  // namespace
}  // namespace roformer::ir
