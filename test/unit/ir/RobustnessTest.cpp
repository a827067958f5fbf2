// Malformed models: each must give an error naming the file and the node or
// tensor at fault, never a crash. ModelIOTest covers the basic cases: corrupt
// file, undefined input, duplicate definition, short raw data, negative dim,
// cycle, and external data leaving the folder or exceeding the file. The tests
// here cover the rest.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "ir/ModelIO.h"
#include "ir/Tensor.h"
#include "ir/Verifier.h"

namespace roformer::ir {
namespace {

namespace fs = std::filesystem;

#define EXPECT_MESSAGE_HAS(status, text)                                      \
  EXPECT_NE(std::string((status).message()).find(text), std::string::npos) \
      << "message: " << (status).message()

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "roformer-robust-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

onnx::ValueInfoProto floatInfo(const std::string& name, std::vector<int64_t> dims) {
  onnx::ValueInfoProto info;
  info.set_name(name);
  auto* tensor = info.mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  for (int64_t dim : dims) tensor->mutable_shape()->add_dim()->set_dim_value(dim);
  return info;
}

// x -> Relu "relu" -> r -> Add "add" (with initializer w) -> y
onnx::ModelProto makeModel() {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(13);
  auto* graph = model.mutable_graph();
  graph->set_name("g");
  *graph->add_input() = floatInfo("x", {4});
  auto* weights = graph->add_initializer();
  weights->set_name("w");
  weights->set_data_type(onnx::TensorProto::FLOAT);
  weights->add_dims(4);
  std::vector<float> values = {1, 2, 3, 4};
  weights->set_raw_data(values.data(), values.size() * sizeof(float));

  auto* relu = graph->add_node();
  relu->set_name("relu");
  relu->set_op_type("Relu");
  relu->add_input("x");
  relu->add_output("r");
  auto* add = graph->add_node();
  add->set_name("add");
  add->set_op_type("Add");
  add->add_input("r");
  add->add_input("w");
  add->add_output("y");
  *graph->add_output() = floatInfo("y", {4});
  return model;
}

onnx::TensorProto* weights(onnx::ModelProto& model) {
  return model.mutable_graph()->mutable_initializer(0);
}

void setExternal(onnx::TensorProto* tensor, const std::vector<std::pair<std::string, std::string>>&
                                                entries) {
  tensor->clear_raw_data();
  tensor->set_data_location(onnx::TensorProto::EXTERNAL);
  for (const auto& [key, value] : entries) {
    auto* entry = tensor->add_external_data();
    entry->set_key(key);
    entry->set_value(value);
  }
}

absl::Status importStatus(const onnx::ModelProto& model, const fs::path& dir = ".") {
  return importModel(model, dir, "bad.onnx").status();
}

// ---- Graph structure ----

TEST(Robustness, EmptyGraphLoads) {
  // A graph without nodes, inputs or outputs is valid ONNX. The loader
  // accepts it, and it exports unchanged.
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(13);
  model.mutable_graph()->set_name("empty");
  auto loaded = importModel(model, ".", "empty.onnx");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->graph().nodeCount(), 0u);
  EXPECT_TRUE(verifyModel(**loaded).ok()) << verifyModel(**loaded);
  EXPECT_EQ(exportModel(**loaded).graph().node_size(), 0);
}

TEST(Robustness, ModelWithoutGraphRejected) {
  onnx::ModelProto model;
  model.set_ir_version(8);
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "bad.onnx");
  EXPECT_MESSAGE_HAS(status, "has no graph");
}


TEST(Robustness, SelfLoopIsCycle) {
  onnx::ModelProto model = makeModel();
  model.mutable_graph()->mutable_node(0)->set_input(0, "r");
  auto status = importStatus(model);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_MESSAGE_HAS(status, "bad.onnx");
  EXPECT_MESSAGE_HAS(status, "cycle");
  EXPECT_MESSAGE_HAS(status, "'relu'");
}

TEST(Robustness, GraphOutputNothingProduces) {
  onnx::ModelProto model = makeModel();
  model.mutable_graph()->mutable_output(0)->set_name("missing");
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "graph output 'missing'");
  EXPECT_MESSAGE_HAS(status, "not produced");
}

TEST(Robustness, OutputNameOfInitializerRejected) {
  onnx::ModelProto model = makeModel();
  model.mutable_graph()->mutable_node(0)->set_output(0, "w");
  model.mutable_graph()->mutable_node(1)->set_input(0, "w");
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "'w'");
  EXPECT_MESSAGE_HAS(status, "defined more than once");
  EXPECT_MESSAGE_HAS(status, "'relu'");
}

TEST(Robustness, DuplicateInitializerRejected) {
  onnx::ModelProto model = makeModel();
  *model.mutable_graph()->add_initializer() = *weights(model);
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "initializer 'w'");
  EXPECT_MESSAGE_HAS(status, "defined twice");
}


TEST(Robustness, DuplicateAttributeRejected) {
  onnx::ModelProto model = makeModel();
  auto* node = model.mutable_graph()->mutable_node(0);
  for (int i = 0; i < 2; ++i) {
    auto* attribute = node->add_attribute();
    attribute->set_name("alpha");
    attribute->set_type(onnx::AttributeProto::FLOAT);
    attribute->set_f(0.5f + i);
  }
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "bad.onnx");
  EXPECT_MESSAGE_HAS(status, "'relu'");
  EXPECT_MESSAGE_HAS(status, "attribute 'alpha'");
  EXPECT_MESSAGE_HAS(status, "twice");
}

// ---- Opsets and domains ----



TEST(Robustness, DomainWithoutOpsetImportRejected) {
  onnx::ModelProto model = makeModel();
  model.mutable_graph()->mutable_node(0)->set_domain("com.example");
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "bad.onnx");
  EXPECT_MESSAGE_HAS(status, "'relu'");
  EXPECT_MESSAGE_HAS(status, "'com.example'");
  EXPECT_MESSAGE_HAS(status, "opset_import");
}

TEST(Robustness, MissingDefaultOpsetRejected) {
  onnx::ModelProto model = makeModel();
  model.clear_opset_import();
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "'relu'");
  EXPECT_MESSAGE_HAS(status, "ai.onnx");
  EXPECT_MESSAGE_HAS(status, "opset_import");
}

TEST(Robustness, FutureOnnxOpsetRejected) {
  onnx::ModelProto model = makeModel();
  model.mutable_opset_import(0)->set_version(99);
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "bad.onnx");
  EXPECT_MESSAGE_HAS(status, "opset 99");
  EXPECT_MESSAGE_HAS(status, "newer than");
}

TEST(Robustness, InvalidOpsetVersionRejected) {
  onnx::ModelProto model = makeModel();
  model.mutable_opset_import(0)->set_version(0);
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "opset_import");
  EXPECT_MESSAGE_HAS(status, "version 0");
}

TEST(Robustness, DuplicateOpsetDomainRejected) {
  onnx::ModelProto model = makeModel();
  auto* opset = model.add_opset_import();
  opset->set_domain("ai.onnx");
  opset->set_version(13);
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "opset_import lists domain 'ai.onnx' twice");
}

TEST(Robustness, SubgraphDomainWithoutImportRejected) {
  onnx::ModelProto model = makeModel();
  auto* node = model.mutable_graph()->mutable_node(0);
  node->set_op_type("If");
  auto* branch = node->add_attribute();
  branch->set_name("then_branch");
  branch->set_type(onnx::AttributeProto::GRAPH);
  auto* inner = branch->mutable_g()->add_node();
  inner->set_name("inner");
  inner->set_op_type("Gelu");
  inner->set_domain("com.microsoft");
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "node 'inner'");
  EXPECT_MESSAGE_HAS(status, "'com.microsoft'");
}

TEST(Robustness, CustomDomainWithImportLoads) {
  // Ops of a domain that this build has no schemas for stay opaque nodes.
  // Passes leave them alone, and the runtime rejects them for lack of a kernel.
  onnx::ModelProto model = makeModel();
  model.mutable_graph()->mutable_node(0)->set_domain("com.example");
  auto* opset = model.add_opset_import();
  opset->set_domain("com.example");
  opset->set_version(1);
  auto loaded = importModel(model, ".", "custom.onnx");
  EXPECT_TRUE(loaded.ok()) << loaded.status();
}



TEST(Robustness, UnknownOnnxOpRejected) {
  onnx::ModelProto model = makeModel();
  model.mutable_graph()->mutable_node(0)->set_op_type("NoSuchOp");
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "bad.onnx");
  EXPECT_MESSAGE_HAS(status, "node 'relu'");
  EXPECT_MESSAGE_HAS(status, "no operator 'NoSuchOp' at opset 13");
}

TEST(Robustness, OpNewerThanOpsetRejected) {
  // LayerNormalization joined the ONNX domain at opset 17.
  onnx::ModelProto model = makeModel();
  model.mutable_graph()->mutable_node(0)->set_op_type("LayerNormalization");
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "no operator 'LayerNormalization' at opset 13");
}

TEST(Robustness, LocalFunctionNeedsNoSchema) {
  onnx::ModelProto model = makeModel();
  model.mutable_graph()->mutable_node(0)->set_op_type("MyRelu");
  auto* function = model.add_functions();
  function->set_name("MyRelu");
  function->set_domain("");
  function->add_input("a");
  function->add_output("b");
  auto* body = function->add_node();
  body->set_op_type("Relu");
  body->add_input("a");
  body->add_output("b");
  auto loaded = importModel(model, ".", "function.onnx");
  EXPECT_TRUE(loaded.ok()) << loaded.status();
}

onnx::ModelProto withCastTo(onnx::AttributeProto to) {
  onnx::ModelProto model = makeModel();
  auto* node = model.mutable_graph()->mutable_node(0);
  node->set_op_type("Cast");
  to.set_name("to");
  *node->add_attribute() = to;
  return model;
}

TEST(Robustness, WrongAttributeTypeRejected) {
  onnx::AttributeProto to;
  to.set_type(onnx::AttributeProto::FLOAT);
  to.set_f(1.0f);
  auto status = importStatus(withCastTo(to));
  EXPECT_MESSAGE_HAS(status, "bad.onnx");
  EXPECT_MESSAGE_HAS(status, "node 'relu' (Cast)");
  EXPECT_MESSAGE_HAS(status, "attribute 'to' of type FLOAT");
  EXPECT_MESSAGE_HAS(status, "expects INT");
}

TEST(Robustness, AttributeWithoutValueRejected) {
  onnx::AttributeProto to;
  to.set_type(onnx::AttributeProto::INT);
  to.set_f(1.0f);
  auto status = importStatus(withCastTo(to));
  EXPECT_MESSAGE_HAS(status, "attribute 'to' of type INT without a value");
}

TEST(Robustness, CustomOpAttributeTypeCheckedOnRead) {
  // Attributes of ops without a schema are checked by the pass or kernel
  // that reads them, through the typed accessors.
  onnx::ModelProto model = makeModel();
  auto* node = model.mutable_graph()->mutable_node(0);
  node->set_domain("com.example");
  auto* opset = model.add_opset_import();
  opset->set_domain("com.example");
  opset->set_version(1);
  auto* size = node->add_attribute();
  size->set_name("size");
  size->set_type(onnx::AttributeProto::FLOAT);
  size->set_f(1.0f);
  auto loaded = importModel(model, ".", "custom.onnx");
  ASSERT_TRUE(loaded.ok()) << loaded.status();

  const Node& custom = *(*loaded)->graph().nodes().front();
  auto typed = custom.intAttribute("size", 0);
  ASSERT_FALSE(typed.ok());
  EXPECT_MESSAGE_HAS(typed.status(), "'relu'");
  EXPECT_MESSAGE_HAS(typed.status(), "attribute 'size'");
  EXPECT_MESSAGE_HAS(typed.status(), "INT");
}

// ---- Tensors ----

TEST(Robustness, InvalidDataTypeRejected) {
  onnx::ModelProto model = makeModel();
  weights(model)->set_data_type(1000);
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "initializer 'w'");
  EXPECT_MESSAGE_HAS(status, "data_type 1000");
}

TEST(Robustness, RawDataLongerThanShapeRejected) {
  onnx::ModelProto model = makeModel();
  weights(model)->mutable_raw_data()->append(4, '\0');
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "initializer 'w'");
  EXPECT_MESSAGE_HAS(status, "20 bytes");
  EXPECT_MESSAGE_HAS(status, "need 16");
}

TEST(Robustness, TypedFieldCountMismatchRejected) {
  onnx::ModelProto model = makeModel();
  auto* tensor = weights(model);
  tensor->clear_raw_data();
  for (float v : {1.0f, 2.0f, 3.0f}) tensor->add_float_data(v);
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "initializer 'w'");
  EXPECT_MESSAGE_HAS(status, "12 bytes");
  EXPECT_MESSAGE_HAS(status, "need 16");
}

TEST(Robustness, ElementCountOverflowRejected) {
  onnx::ModelProto model = makeModel();
  auto* tensor = weights(model);
  tensor->clear_dims();
  tensor->add_dims(int64_t{1} << 40);
  tensor->add_dims(int64_t{1} << 40);
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "initializer 'w'");
  EXPECT_MESSAGE_HAS(status, "overflows");
}

TEST(Robustness, ByteSizeOverflowRejected) {
  // 2^62 elements fit in int64, but 2^62 floats need 2^64 bytes.
  onnx::ModelProto model = makeModel();
  auto* tensor = weights(model);
  tensor->clear_dims();
  tensor->add_dims(int64_t{1} << 62);
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "initializer 'w'");
  EXPECT_MESSAGE_HAS(status, "overflows");
}

TEST(Robustness, HugeDimsWithoutDataRejectedBeforeAllocation) {
  // 2^40 floats (4 TiB) declared with 16 bytes of data: the size check must
  // fail before anything of that size is allocated.
  onnx::ModelProto model = makeModel();
  auto* tensor = weights(model);
  tensor->clear_dims();
  tensor->add_dims(int64_t{1} << 40);
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "initializer 'w'");
  EXPECT_MESSAGE_HAS(status, "need 4398046511104");
}

TEST(Robustness, NegativeDeclaredDimRejected) {
  onnx::ModelProto model = makeModel();
  model.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()
      ->mutable_shape()->mutable_dim(0)->set_dim_value(-5);
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "bad.onnx: graph input 'x'");
  EXPECT_MESSAGE_HAS(status, "dim 0 is -5");
}

TEST(Robustness, OverflowingInputDimsRejected) {
  // Size(x) of such an input would fold to the wrapped product.
  onnx::ModelProto model = makeModel();
  auto* shape = model.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()
                    ->mutable_shape();
  shape->mutable_dim(0)->set_dim_value(int64_t{1} << 62);
  shape->add_dim()->set_dim_value(int64_t{1} << 62);
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "bad.onnx: graph input 'x'");
  EXPECT_MESSAGE_HAS(status, "64 bits");

  // 2^62 floats count fine but need 2^64 bytes.
  onnx::ModelProto bytes = makeModel();
  *bytes.mutable_graph()->mutable_input(0) = floatInfo("x", {int64_t{1} << 62});
  status = importStatus(bytes);
  EXPECT_MESSAGE_HAS(status, "bad.onnx: graph input 'x'");
  EXPECT_MESSAGE_HAS(status, "64 bits");
}

TEST(Robustness, ImpossibleOutputShapesDropped) {
  // Shapes of outputs and value_info that no tensor can have are dropped,
  // keeping the element type: shape inference writes such shapes itself
  // (Reshape to a huge constant shape), and the output must load again.
  onnx::ModelProto model = makeModel();
  *model.mutable_graph()->mutable_output(0) = floatInfo("y", {int64_t{1} << 62, 1 << 8});
  *model.mutable_graph()->add_value_info() = floatInfo("r", {-3});
  auto loaded = importModel(model, ".", "inferred.onnx");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  for (const char* name : {"y", "r"}) {
    const Value* value = (*loaded)->graph().findValue(name);
    ASSERT_NE(value, nullptr) << name;
    EXPECT_EQ(value->elemType(), DataType::kFloat) << name;
    EXPECT_FALSE(value->shape().has_value()) << name;
  }
}

TEST(Robustness, SymbolicDimsNotCounted) {
  onnx::ModelProto model = makeModel();
  auto* shape = model.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()
                    ->mutable_shape();
  shape->mutable_dim(0)->set_dim_param("batch");
  shape->add_dim()->set_dim_param("sequence");
  auto loaded = importModel(model, ".", "symbolic.onnx");
  EXPECT_TRUE(loaded.ok()) << loaded.status();
}

TEST(Robustness, StringCountMismatchRejected) {
  onnx::ModelProto model = makeModel();
  auto* tensor = weights(model);
  tensor->clear_raw_data();
  tensor->set_data_type(onnx::TensorProto::STRING);
  tensor->add_string_data("only one");
  auto status = importStatus(model);
  EXPECT_MESSAGE_HAS(status, "initializer 'w'");
  EXPECT_MESSAGE_HAS(status, "1 strings");
}

TEST(Robustness, SparseInitializerRejected) {
  onnx::ModelProto model = makeModel();
  auto* sparse = model.mutable_graph()->add_sparse_initializer();
  sparse->mutable_values()->set_name("s");
  auto status = importStatus(model);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_MESSAGE_HAS(status, "sparse initializers");
  EXPECT_MESSAGE_HAS(status, "'s'");
}

// ---- External data ----

class ExternalData : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_.path() / "w.bin", std::ios::binary) << std::string(64, '\x01');
  }
  absl::Status importWith(const std::vector<std::pair<std::string, std::string>>& entries) {
    onnx::ModelProto model = makeModel();
    setExternal(weights(model), entries);
    return importStatus(model, dir_.path());
  }
  TempDir dir_;
};

TEST_F(ExternalData, OffsetPastEndRejected) {
  auto status = importWith({{"location", "w.bin"}, {"offset", "65"}, {"length", "16"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange);
  EXPECT_MESSAGE_HAS(status, "initializer 'w'");
  EXPECT_MESSAGE_HAS(status, "offset 65");
  EXPECT_MESSAGE_HAS(status, "64 bytes");
}

TEST_F(ExternalData, RangePastEndRejected) {
  auto status = importWith({{"location", "w.bin"}, {"offset", "56"}, {"length", "16"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange);
  EXPECT_MESSAGE_HAS(status, "[56, 72)");
  EXPECT_MESSAGE_HAS(status, "exceeds the size");
}

TEST_F(ExternalData, HugeLengthDoesNotWrap) {
  // offset + length wraps around 2^64, so a check that adds them would pass.
  auto status = importWith(
      {{"location", "w.bin"}, {"offset", "8"}, {"length", "18446744073709551615"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange);
  EXPECT_MESSAGE_HAS(status, "exceeds the size");
}

TEST_F(ExternalData, OffsetBeyondInt64Rejected) {
  auto status = importWith({{"location", "w.bin"}, {"offset", "99999999999999999999"}});
  EXPECT_MESSAGE_HAS(status, "offset '99999999999999999999'");
  EXPECT_MESSAGE_HAS(status, "not a valid number");
}

TEST_F(ExternalData, NegativeAndTextOffsetsRejected) {
  for (const std::string value : {"-16", "16 ", "0x10", ""}) {
    auto status = importWith({{"location", "w.bin"}, {"offset", value}, {"length", "16"}});
    EXPECT_MESSAGE_HAS(status, "not a valid number") << "offset '" << value << "'";
  }
}

TEST_F(ExternalData, MissingFileNamed) {
  auto status = importWith({{"location", "absent.bin"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_MESSAGE_HAS(status, "initializer 'w'");
  EXPECT_MESSAGE_HAS(status, "absent.bin");
}

TEST_F(ExternalData, MissingLocationRejected) {
  auto status = importWith({{"offset", "0"}, {"length", "16"}});
  EXPECT_MESSAGE_HAS(status, "initializer 'w'");
  EXPECT_MESSAGE_HAS(status, "empty location");
}

TEST_F(ExternalData, ConstantAttributeResolvedInModelFolder) {
  // A Constant node's tensor may use external data too (onnx.save_model with
  // save_as_external_data moves attribute tensors). It must resolve inside
  // the model's folder, not the working directory.
  onnx::ModelProto model = makeModel();
  auto* constant = model.mutable_graph()->add_node();
  constant->set_name("constant");
  constant->set_op_type("Constant");
  constant->add_output("c");
  auto* value = constant->add_attribute();
  value->set_name("value");
  value->set_type(onnx::AttributeProto::TENSOR);
  auto* tensor = value->mutable_t();
  tensor->set_data_type(onnx::TensorProto::FLOAT);
  tensor->add_dims(4);
  setExternal(tensor, {{"location", "w.bin"}, {"offset", "16"}, {"length", "16"}});
  model.mutable_graph()->mutable_node(1)->set_input(1, "c");

  auto loaded = importModel(model, dir_.path(), "constant.onnx");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto folded = constantOf((*loaded)->graph().findValue("c"));
  ASSERT_NE(folded, nullptr);
  ASSERT_EQ(folded->byteSize(), 16u);
  EXPECT_EQ(folded->rawData()[0], 1);

  // The exported model carries the bytes, so it loads from any folder.
  onnx::ModelProto exported = exportModel(**loaded);
  TempDir elsewhere;
  auto reloaded = importModel(exported, elsewhere.path(), "copy.onnx");
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_NE(constantOf((*reloaded)->graph().findValue("c")), nullptr);

  // Escaping the folder is rejected as for initializers.
  setExternal(tensor, {{"location", "../w.bin"}});
  auto status = importModel(model, dir_.path(), "constant.onnx").status();
  EXPECT_MESSAGE_HAS(status, "'constant'");
  EXPECT_MESSAGE_HAS(status, "'..'");
}

TEST_F(ExternalData, FolderAsLocationRejected) {
  fs::create_directory(dir_.path() / "sub");
  auto status = importWith({{"location", "sub"}, {"length", "16"}});
  EXPECT_MESSAGE_HAS(status, "not a regular file");
}

TEST_F(ExternalData, SymlinkToDeviceRejected) {
  fs::create_symlink("/dev/zero", dir_.path() / "zero.bin");
  auto status = importWith({{"location", "zero.bin"}, {"length", "16"}});
  EXPECT_MESSAGE_HAS(status, "outside the model's folder");
}

TEST_F(ExternalData, SymlinkInsideFolderAccepted) {
  fs::create_directory(dir_.path() / "weights");
  fs::rename(dir_.path() / "w.bin", dir_.path() / "weights" / "w.bin");
  fs::create_symlink("weights/w.bin", dir_.path() / "link.bin");
  auto status = importWith({{"location", "link.bin"}, {"offset", "16"}, {"length", "16"}});
  EXPECT_TRUE(status.ok()) << status;
}


// ---- Bytes that are not a model ----

TEST(Robustness, ForeignFilesRejected) {
  std::string zip("PK\x03\x04\x14\x00\x00\x00\x00\x00", 10);
  std::string png("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", 16);
  std::string elf("\x7f" "ELF\x02\x01\x01\x00", 8);
  std::string npy("\x93NUMPY\x01\x00v\x00{'descr': '<f4', ", 26);
  for (const std::string& bytes : {zip, png, elf, npy}) {
    auto loaded = loadModelFromBytes(bytes, ".", "foreign.onnx");
    ASSERT_FALSE(loaded.ok());
    EXPECT_MESSAGE_HAS(loaded.status(), "foreign.onnx");
  }
}

TEST(Robustness, PlainTextNamedOnnxRejected) {
  // Text that is not a model goes to the text parser, whose message alone
  // would read as a syntax error in a model the user never wrote as text.
  auto loaded = loadModelFromBytes("This is a README.\n", ".", "readme.onnx");
  ASSERT_FALSE(loaded.ok());
  EXPECT_MESSAGE_HAS(loaded.status(), "readme.onnx: not a binary ONNX model");
  EXPECT_MESSAGE_HAS(loaded.status(), "as ONNX text failed: readme.onnx:1:");
}

TEST(Robustness, ProtobufOfAnotherSchemaRejected) {
  // Bytes that decode as protobuf but carry none of ModelProto's fields, as
  // a TensorFlow GraphDef would.
  onnx::TensorProto other;
  other.set_name("not a model");
  other.add_dims(3);
  auto loaded = loadModelFromBytes(other.SerializeAsString(), ".", "graphdef.pb");
  ASSERT_FALSE(loaded.ok());
  EXPECT_MESSAGE_HAS(loaded.status(), "graphdef.pb");
}

TEST(Robustness, EveryTruncationRejected) {
  // Cutting a valid model at any byte gives an error, never a crash.
  std::string bytes = makeModel().SerializeAsString();
  for (size_t size = 1; size < bytes.size(); ++size) {
    auto loaded = loadModelFromBytes(bytes.substr(0, size), ".", "cut.onnx");
    if (loaded.ok()) continue;  // a cut at a field boundary can still be a model
    EXPECT_MESSAGE_HAS(loaded.status(), "cut.onnx") << "cut at " << size;
  }
}

TEST(Robustness, CheckedSizesRefuseOverflow) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(checkedElementCount(std::vector<int64_t>{}), 1);
  EXPECT_EQ(checkedElementCount(std::vector<int64_t>{3, 0, kMax}), 0);
  EXPECT_EQ(checkedElementCount(std::vector<int64_t>{kMax}), kMax);
  EXPECT_EQ(checkedElementCount(std::vector<int64_t>{int64_t{1} << 32, int64_t{1} << 31}),
            std::nullopt);
  EXPECT_EQ(checkedElementCount(std::vector<int64_t>{2, -1}), std::nullopt);

  EXPECT_EQ(checkedByteSize(DataType::kFloat, std::vector<int64_t>{2, 3}), 24);
  // 2^61 elements fit, their 2^63 bytes of float do not.
  EXPECT_EQ(checkedByteSize(DataType::kFloat, std::vector<int64_t>{int64_t{1} << 61}),
            std::nullopt);
  EXPECT_EQ(checkedByteSize(DataType::kUint8, std::vector<int64_t>{int64_t{1} << 61}),
            int64_t{1} << 61);
}

}  // namespace
}  // namespace roformer::ir
