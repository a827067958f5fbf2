// Tests of the text printer and parser (ir/TextFormat.h): round trips of
// every construct in both directions, the exact spelling of values, the
// errors for input the syntax cannot hold, and parse errors with positions.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "google/protobuf/util/message_differencer.h"
#include "ir/Tensor.h"
#include "ir/TextFormat.h"
#include "onnx/defs/parser.h"

namespace roformer::ir {
namespace {

using onnx::AttributeProto;
using onnx::TensorProto;

constexpr std::string_view kSource = "test.onnxtxt";

absl::StatusOr<onnx::ModelProto> parse(std::string_view text) {
  return parseModelText(text, kSource);
}

// Equal when the serialized bytes match, which also compares NaN bits; the
// failure message lists the fields that differ.
testing::AssertionResult protosEqual(const google::protobuf::Message& expected,
                                     const google::protobuf::Message& actual) {
  if (expected.SerializeAsString() == actual.SerializeAsString()) {
    return testing::AssertionSuccess();
  }
  google::protobuf::util::MessageDifferencer differencer;
  std::string report;
  differencer.ReportDifferencesToString(&report);
  differencer.Compare(expected, actual);
  constexpr size_t kMaxReport = 4000;
  if (report.size() > kMaxReport) report = report.substr(0, kMaxReport) + "...";
  return testing::AssertionFailure() << "protos differ:\n" << report;
}

std::string printOrFail(const onnx::ModelProto& model, const PrintOptions& options = {}) {
  auto text = modelToText(model, options);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : std::string();
}

// Prints `model`, parses the text and expects the original proto back.
void expectProtoRoundTrip(const onnx::ModelProto& model) {
  auto text = modelToText(model);
  ASSERT_TRUE(text.ok()) << text.status();
  auto parsed = parse(*text);
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\ntext:\n" << *text;
  EXPECT_TRUE(protosEqual(model, *parsed)) << "text:\n" << *text;
}

// Parses `text` and expects the printer to reproduce it exactly.
void expectTextRoundTrip(std::string_view text) {
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  auto printed = modelToText(*parsed);
  ASSERT_TRUE(printed.ok()) << printed.status();
  EXPECT_EQ(*printed, text);
}

// Expects parsing to fail with a message that starts with
// "test.onnxtxt:LINE:COLUMN: " and contains `fragment`.
void expectParseError(std::string_view text, int line, int column, std::string_view fragment) {
  auto parsed = parse(text);
  ASSERT_FALSE(parsed.ok()) << "parsed without error:\n" << text;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  std::string message(parsed.status().message());
  std::string position =
      std::string(kSource) + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  EXPECT_EQ(message.substr(0, position.size()), position) << message;
  EXPECT_NE(message.find(fragment), std::string::npos) << message;
}

// A model whose graph is `main` with no inputs or outputs, for tests that
// fill in the graph.
onnx::ModelProto emptyModel() {
  onnx::ModelProto model;
  model.set_ir_version(8);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  model.mutable_graph()->set_name("main");
  return model;
}

template <typename T>
TensorProto rawTensor(const std::string& name, int32_t dataType, std::vector<int64_t> dims,
                      const std::vector<T>& values) {
  TensorProto tensor;
  tensor.set_name(name);
  tensor.set_data_type(dataType);
  for (int64_t dim : dims) tensor.add_dims(dim);
  tensor.set_raw_data(
      std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)));
  return tensor;
}

onnx::ValueInfoProto tensorValue(const std::string& name, int32_t elemType,
                                 std::vector<int64_t> dims) {
  onnx::ValueInfoProto info;
  info.set_name(name);
  auto* tensor = info.mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(elemType);
  auto* shape = tensor->mutable_shape();
  for (int64_t dim : dims) shape->add_dim()->set_dim_value(dim);
  return info;
}

// The model from docs/text-format.md, in the printer's layout.
constexpr std::string_view kCanonicalModel = R"(<
  ir_version: 8,
  opset_import: ["" : 13, "com.microsoft" : 1],
  producer_name: "tf2onnx",
  producer_version: "1.9.3",
  domain: "",
  model_version: 0,
  doc_string: "line one\nline two",
  metadata_props: ["key" : "value", "k:2" : ""]
>
graph_name (float[unk__B, unk__S] "input_token:0", int64[2] shape_in) => (float[unk__B, 1] "Identity:0") <
  float[2] "w:0" = {1.0, 2.5},
  int64[2] "shape:0" = {0, -1},
  float[unk__B, 64] "some/value_info:0"
> {
  ["StatefulPartitionedCall/model/Dense/MatMul"] "mm:0" = MatMul ("input_token:0", "w:0")
  y = com.microsoft.SkipLayerNormalization <epsilon = 1e-12> (a, b, gamma, beta, "")
  t = Transpose <perm = [0, 2, 1, 3]> (x)
  c = Constant <value = float[2] {1.0, 2.0}> ()
  o = If <then_branch = g1 () => (float[1] r) {
    r = Identity (a)
  }, else_branch = g2 () => (float[1] r2) {
    r2 = Identity (b)
  }> (cond)
}
)";

TEST(TextFormat, CanonicalModelRoundTrip) { expectTextRoundTrip(kCanonicalModel); }

TEST(TextFormat, CanonicalModelFields) {
  auto parsed = parse(kCanonicalModel);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const onnx::ModelProto& model = *parsed;

  EXPECT_EQ(model.ir_version(), 8);
  ASSERT_EQ(model.opset_import_size(), 2);
  EXPECT_EQ(model.opset_import(1).domain(), "com.microsoft");
  EXPECT_EQ(model.opset_import(1).version(), 1);
  EXPECT_EQ(model.producer_version(), "1.9.3");
  EXPECT_TRUE(model.has_domain());
  EXPECT_TRUE(model.has_model_version());
  EXPECT_EQ(model.doc_string(), "line one\nline two");
  ASSERT_EQ(model.metadata_props_size(), 2);
  EXPECT_EQ(model.metadata_props(1).key(), "k:2");

  const onnx::GraphProto& graph = model.graph();
  EXPECT_EQ(graph.name(), "graph_name");
  ASSERT_EQ(graph.input_size(), 2);
  EXPECT_EQ(graph.input(0).name(), "input_token:0");
  const auto& shape = graph.input(0).type().tensor_type().shape();
  ASSERT_EQ(shape.dim_size(), 2);
  EXPECT_EQ(shape.dim(0).dim_param(), "unk__B");
  EXPECT_EQ(graph.output(0).name(), "Identity:0");

  ASSERT_EQ(graph.initializer_size(), 2);
  const TensorProto& weights = graph.initializer(0);
  EXPECT_EQ(weights.name(), "w:0");
  EXPECT_EQ(weights.data_type(), TensorProto::FLOAT);
  std::vector<float> expectedWeights = {1.0f, 2.5f};
  EXPECT_EQ(weights.raw_data(),
            std::string(reinterpret_cast<const char*>(expectedWeights.data()), 8));
  std::vector<int64_t> expectedShape = {0, -1};
  EXPECT_EQ(graph.initializer(1).raw_data(),
            std::string(reinterpret_cast<const char*>(expectedShape.data()), 16));
  ASSERT_EQ(graph.value_info_size(), 1);
  EXPECT_EQ(graph.value_info(0).name(), "some/value_info:0");

  ASSERT_EQ(graph.node_size(), 5);
  const onnx::NodeProto& matmul = graph.node(0);
  EXPECT_EQ(matmul.name(), "StatefulPartitionedCall/model/Dense/MatMul");
  EXPECT_EQ(matmul.output(0), "mm:0");
  EXPECT_FALSE(matmul.has_domain());
  const onnx::NodeProto& skip = graph.node(1);
  EXPECT_EQ(skip.domain(), "com.microsoft");
  EXPECT_EQ(skip.op_type(), "SkipLayerNormalization");
  ASSERT_EQ(skip.input_size(), 5);
  EXPECT_EQ(skip.input(4), "");
  EXPECT_EQ(skip.attribute(0).type(), AttributeProto::FLOAT);
  EXPECT_EQ(skip.attribute(0).f(), 1e-12f);
  EXPECT_EQ(graph.node(2).attribute(0).type(), AttributeProto::INTS);
  EXPECT_EQ(graph.node(3).attribute(0).t().dims(0), 2);
  const onnx::NodeProto& branch = graph.node(4);
  ASSERT_EQ(branch.attribute_size(), 2);
  EXPECT_EQ(branch.attribute(1).type(), AttributeProto::GRAPH);
  EXPECT_EQ(branch.attribute(1).g().name(), "g2");
  EXPECT_EQ(branch.attribute(1).g().node(0).input(0), "b");
}

TEST(TextFormat, QuotedNamesRoundTrip) {
  const std::vector<std::string> names = {
      "input_token:0",
      "StatefulPartitionedCall/model/Dense/MatMul",
      "with space",
      "quote\" and backslash\\",
      "line\nbreak\ttab\rreturn",
      std::string("nul\0byte\x01\x7f", 11),
      "utf8 \xC3\xA9 \xE4\xB8\xAD",
      "invalid utf8 \xFF\xFE \xC3",
      "float",
      "nan",
      "external",
      "9starts_with_digit",
      "",
  };
  onnx::ModelProto model = emptyModel();
  onnx::GraphProto& graph = *model.mutable_graph();
  graph.set_name("graph with: colon");
  for (const std::string& name : names) {
    onnx::ValueInfoProto& input = *graph.add_input();
    input = tensorValue(name, TensorProto::FLOAT, {});
    input.mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_param(name);
    onnx::NodeProto& node = *graph.add_node();
    node.set_name(name);
    node.set_op_type("Identity");
    node.add_input(name);
    node.add_output(name + "/out");
    *graph.add_output() = tensorValue(name + "/out", TensorProto::FLOAT, {1});
  }
  expectProtoRoundTrip(model);
}

TEST(TextFormat, ParsesEscapes) {
  auto parsed = parse(R"(main ("a\"b\\c\n\t\r\x41\x7f" x) => () {})");
  ASSERT_FALSE(parsed.ok()) << "a quoted name is not a type";

  parsed = parse(R"(main (float "a\"b\\c\n\t\r\x41\x7f") => () {})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->graph().input(0).name(), "a\"b\\c\n\t\rA\x7f");
}

TEST(TextFormat, PrintsNamesQuotedOnlyWhenNeeded) {
  onnx::ModelProto model = emptyModel();
  onnx::GraphProto& graph = *model.mutable_graph();
  *graph.add_input() = tensorValue("plain_name1", TensorProto::FLOAT, {});
  *graph.add_input() = tensorValue("a:0", TensorProto::FLOAT, {});
  *graph.add_input() = tensorValue("int64", TensorProto::FLOAT, {});
  *graph.add_input() = tensorValue("tab\there", TensorProto::FLOAT, {});
  std::string text = printOrFail(model);
  EXPECT_NE(
      text.find(
          "(float[] plain_name1, float[] \"a:0\", float[] \"int64\", float[] \"tab\\there\")"),
      std::string::npos)
      << text;
}

TEST(TextFormat, NodeDomainsAndNames) {
  onnx::ModelProto model = emptyModel();
  onnx::GraphProto& graph = *model.mutable_graph();
  struct Case {
    std::string domain;
    std::string opType;
    std::string spelling;
  };
  const std::vector<Case> cases = {
      {"", "Relu", "= Relu ("},
      {"com.microsoft", "BiasGelu", "= com.microsoft.BiasGelu ("},
      {"ai.onnx.ml", "Scaler", "= ai.onnx.ml.Scaler ("},
      {"my-domain.v2", "Op", "= \"my-domain.v2\".Op ("},
      {"custom", "Op With Space", "= custom.\"Op With Space\" ("},
  };
  for (const Case& c : cases) {
    onnx::NodeProto& node = *graph.add_node();
    if (!c.domain.empty()) node.set_domain(c.domain);
    node.set_op_type(c.opType);
    node.add_input(std::string("x"));
    node.add_output("y_" + std::to_string(graph.node_size()));
  }
  graph.mutable_node(1)->set_name("named");
  graph.mutable_node(2)->set_name("");
  graph.mutable_node(3)->clear_output();

  std::string text = printOrFail(model);
  for (const Case& c : cases) {
    EXPECT_NE(text.find(c.spelling), std::string::npos) << c.spelling << " not in\n" << text;
  }
  EXPECT_NE(text.find("[named] y_2 = com.microsoft.BiasGelu (x)"), std::string::npos) << text;
  EXPECT_NE(text.find("[\"\"] y_3 = ai.onnx.ml.Scaler (x)"), std::string::npos) << text;
  EXPECT_NE(text.find("  = \"my-domain.v2\".Op (x)"), std::string::npos) << text;
  expectProtoRoundTrip(model);
}

AttributeProto floatAttribute(const std::string& name, float value) {
  AttributeProto attribute;
  attribute.set_name(name);
  attribute.set_type(AttributeProto::FLOAT);
  attribute.set_f(value);
  return attribute;
}

TEST(TextFormat, EveryAttributeKindRoundTrip) {
  onnx::ModelProto model = emptyModel();
  onnx::NodeProto& node = *model.mutable_graph()->add_node();
  node.set_op_type("Custom");
  node.set_domain("test");
  node.add_output("y");
  auto add = [&](const std::string& name, AttributeProto::AttributeType type) {
    AttributeProto& attribute = *node.add_attribute();
    attribute.set_name(name);
    attribute.set_type(type);
    return &attribute;
  };

  add("int", AttributeProto::INT)->set_i(-3);
  add("int_min", AttributeProto::INT)->set_i(std::numeric_limits<int64_t>::min());
  add("int_max", AttributeProto::INT)->set_i(std::numeric_limits<int64_t>::max());
  const std::vector<float> floats = {0.1f,
                                     -0.0f,
                                     1.0f,
                                     1e-12f,
                                     16777216.0f,
                                     std::numeric_limits<float>::max(),
                                     std::numeric_limits<float>::lowest(),
                                     std::numeric_limits<float>::min(),
                                     std::numeric_limits<float>::denorm_min(),
                                     std::numeric_limits<float>::infinity(),
                                     -std::numeric_limits<float>::infinity(),
                                     std::numeric_limits<float>::quiet_NaN(),
                                     -std::numeric_limits<float>::quiet_NaN()};
  for (size_t i = 0; i < floats.size(); ++i) {
    *node.add_attribute() = floatAttribute("float" + std::to_string(i), floats[i]);
  }
  add("string", AttributeProto::STRING)->set_s("quote\" tab\t bytes\x01\xff");
  auto* ints = add("ints", AttributeProto::INTS);
  ints->add_ints(0);
  ints->add_ints(std::numeric_limits<int64_t>::min());
  auto* floatList = add("floats", AttributeProto::FLOATS);
  for (float value : floats) floatList->add_floats(value);
  auto* strings = add("strings", AttributeProto::STRINGS);
  strings->add_strings("a");
  strings->add_strings("");
  for (auto type : {AttributeProto::INTS, AttributeProto::FLOATS, AttributeProto::STRINGS,
                    AttributeProto::TENSORS, AttributeProto::GRAPHS, AttributeProto::TYPE_PROTOS}) {
    add("empty_" + AttributeProto::AttributeType_Name(type), type);
  }

  TensorProto* unnamed = add("tensor", AttributeProto::TENSOR)->mutable_t();
  *unnamed = rawTensor<float>("", TensorProto::FLOAT, {2}, {1.0f, 2.0f});
  unnamed->clear_name();
  *add("named_tensor", AttributeProto::TENSOR)->mutable_t() =
      rawTensor<int64_t>("const:0", TensorProto::INT64, {}, {7});
  auto* tensors = add("tensors", AttributeProto::TENSORS);
  *tensors->add_tensors() = rawTensor<float>("", TensorProto::FLOAT, {1}, {3.0f});
  tensors->mutable_tensors(0)->clear_name();
  *tensors->add_tensors() = rawTensor<int32_t>("t", TensorProto::INT32, {2, 1}, {4, 5});

  onnx::GraphProto branch;
  branch.set_name("branch");
  *branch.add_output() = tensorValue("r", TensorProto::FLOAT, {1});
  onnx::NodeProto& inner = *branch.add_node();
  inner.set_op_type("Identity");
  inner.add_input("outer:0");
  inner.add_output("r");
  *add("graph", AttributeProto::GRAPH)->mutable_g() = branch;
  auto* graphs = add("graphs", AttributeProto::GRAPHS);
  *graphs->add_graphs() = branch;
  branch.set_name("quoted graph:1");
  *graphs->add_graphs() = branch;

  auto* type = add("type", AttributeProto::TYPE_PROTO);
  *type->mutable_tp() = tensorValue("", TensorProto::FLOAT16, {2, 3}).type();
  auto* types = add("types", AttributeProto::TYPE_PROTOS);
  *types->add_type_protos() = tensorValue("", TensorProto::INT8, {}).type();
  types->add_type_protos()
      ->mutable_sequence_type()
      ->mutable_elem_type()
      ->mutable_tensor_type()
      ->set_elem_type(TensorProto::FLOAT);

  auto* reference = add("ref", AttributeProto::FLOAT);
  reference->set_ref_attr_name("alpha");
  AttributeProto& untypedReference = *node.add_attribute();
  untypedReference.set_name("untyped_ref");
  untypedReference.set_ref_attr_name("beta:1");

  expectProtoRoundTrip(model);
}

TEST(TextFormat, AttributeSpellings) {
  onnx::ModelProto model = emptyModel();
  onnx::NodeProto& node = *model.mutable_graph()->add_node();
  node.set_op_type("Op");
  node.add_output("y");
  *node.add_attribute() = floatAttribute("one", 1.0f);
  *node.add_attribute() = floatAttribute("tenth", 0.1f);
  *node.add_attribute() = floatAttribute("negative_zero", -0.0f);
  *node.add_attribute() = floatAttribute("epsilon", 1e-12f);
  *node.add_attribute() = floatAttribute("max", std::numeric_limits<float>::max());
  *node.add_attribute() = floatAttribute("denormal", std::numeric_limits<float>::denorm_min());
  *node.add_attribute() = floatAttribute("big", 123456792.0f);
  *node.add_attribute() = floatAttribute("nan", std::numeric_limits<float>::quiet_NaN());
  *node.add_attribute() = floatAttribute("minus_inf", -std::numeric_limits<float>::infinity());
  AttributeProto& axes = *node.add_attribute();
  axes.set_name("axes");
  axes.set_type(AttributeProto::INTS);
  AttributeProto& reference = *node.add_attribute();
  reference.set_name("alpha");
  reference.set_type(AttributeProto::FLOAT);
  reference.set_ref_attr_name("a");

  std::string text = printOrFail(model);
  EXPECT_NE(text.find("y = Op <one = 1.0, tenth = 0.1, negative_zero = -0.0, epsilon = 1e-12, "
                      "max = 3.4028235e+38, denormal = 1e-45, big = 123456792.0, \"nan\" = nan, "
                      "minus_inf = -inf, axes: ints = [], alpha: float = @a> ()"),
            std::string::npos)
      << text;
}

TEST(TextFormat, ParsesUntypedAndTypedAttributes) {
  auto parsed = parse(R"(main () => () {
    y = Op <a = 1, b = 2.5, c = "s", d = [1, 2.5], e = ["x", "y"], f: float = 3, g: floats = [1, 2],
            h = -inf, i = [nan, 1.0], j = float {4.0}, k = [int64[1] {1}, float {2.0}],
            l: type_proto = seq(float[2]), m: strings = [], n = "quoted graph" () => () {}> ()
  })");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const onnx::NodeProto& node = parsed->graph().node(0);
  ASSERT_EQ(node.attribute_size(), 14);
  auto type = [&](int i) { return node.attribute(i).type(); };

  // Numbers and strings, alone and in lists.
  EXPECT_EQ(type(0), AttributeProto::INT);
  EXPECT_EQ(type(1), AttributeProto::FLOAT);
  EXPECT_EQ(type(2), AttributeProto::STRING);
  EXPECT_EQ(type(3), AttributeProto::FLOATS);
  EXPECT_EQ(node.attribute(3).floats(0), 1.0f);
  EXPECT_EQ(type(4), AttributeProto::STRINGS);

  // The typed form converts integers to floats.
  EXPECT_EQ(type(5), AttributeProto::FLOAT);
  EXPECT_EQ(node.attribute(5).f(), 3.0f);
  EXPECT_EQ(type(6), AttributeProto::FLOATS);

  // nan and inf, tensors, types, an empty typed list and a quoted graph name.
  EXPECT_EQ(type(7), AttributeProto::FLOAT);
  EXPECT_TRUE(std::isinf(node.attribute(7).f()));
  EXPECT_EQ(type(8), AttributeProto::FLOATS);
  EXPECT_TRUE(std::isnan(node.attribute(8).floats(0)));
  EXPECT_EQ(type(9), AttributeProto::TENSOR);
  EXPECT_EQ(node.attribute(9).t().dims_size(), 0);
  EXPECT_EQ(type(10), AttributeProto::TENSORS);
  EXPECT_EQ(node.attribute(10).tensors(1).data_type(), TensorProto::FLOAT);
  EXPECT_EQ(type(11), AttributeProto::TYPE_PROTO);
  EXPECT_TRUE(node.attribute(11).tp().has_sequence_type());
  EXPECT_EQ(type(12), AttributeProto::STRINGS);
  EXPECT_EQ(node.attribute(12).strings_size(), 0);
  EXPECT_EQ(type(13), AttributeProto::GRAPH);
  EXPECT_EQ(node.attribute(13).g().name(), "quoted graph");
}

TEST(TextFormat, NestedSubgraphsRoundTrip) {
  onnx::ModelProto model = emptyModel();
  onnx::GraphProto& graph = *model.mutable_graph();
  *graph.add_input() = tensorValue("cond", TensorProto::BOOL, {});

  onnx::GraphProto innermost;
  innermost.set_name("innermost");
  *innermost.add_initializer() = rawTensor<float>("inner_w:0", TensorProto::FLOAT, {1}, {0.5f});
  *innermost.add_value_info() = tensorValue("inner/tmp:0", TensorProto::FLOAT, {1});
  *innermost.add_output() = tensorValue("inner_out", TensorProto::FLOAT, {1});
  onnx::NodeProto& add = *innermost.add_node();
  add.set_op_type("Add");
  add.add_input("inner_w:0");
  add.add_input("outer_value");
  add.add_output("inner_out");

  onnx::GraphProto body;
  body.set_name("loop body");
  *body.add_input() = tensorValue("iteration", TensorProto::INT64, {});
  *body.add_input() = tensorValue("keep_going", TensorProto::BOOL, {});
  *body.add_output() = tensorValue("keep_going_out", TensorProto::BOOL, {});
  *body.add_output() = tensorValue("inner_out", TensorProto::FLOAT, {1});
  onnx::NodeProto& branch = *body.add_node();
  branch.set_op_type("If");
  branch.add_input("keep_going");
  branch.add_output("inner_out");
  AttributeProto& thenBranch = *branch.add_attribute();
  thenBranch.set_name("then_branch");
  thenBranch.set_type(AttributeProto::GRAPH);
  *thenBranch.mutable_g() = innermost;
  AttributeProto& elseBranch = *branch.add_attribute();
  elseBranch.set_name("else_branch");
  elseBranch.set_type(AttributeProto::GRAPH);
  *elseBranch.mutable_g() = innermost;

  onnx::NodeProto& loop = *graph.add_node();
  loop.set_op_type("Loop");
  loop.add_input("");
  loop.add_input("cond");
  loop.add_output("result");
  AttributeProto& bodyAttribute = *loop.add_attribute();
  bodyAttribute.set_name("body");
  bodyAttribute.set_type(AttributeProto::GRAPH);
  *bodyAttribute.mutable_g() = body;

  expectProtoRoundTrip(model);
}

TEST(TextFormat, ElementTypesWithEdgeValuesRoundTrip) {
  using F = std::numeric_limits<float>;
  using D = std::numeric_limits<double>;
  onnx::ModelProto model = emptyModel();
  onnx::GraphProto& graph = *model.mutable_graph();
  auto add = [&](TensorProto tensor) { *graph.add_initializer() = std::move(tensor); };

  add(rawTensor<float>(
      "float", TensorProto::FLOAT, {13},
      {0.1f, -0.0f, 0.0f, F::max(), F::lowest(), F::min(), F::denorm_min(), -F::denorm_min(),
       F::infinity(), -F::infinity(), F::quiet_NaN(), -F::quiet_NaN(), 1.17549421e-38f}));
  add(rawTensor<double>("double", TensorProto::DOUBLE, {10},
                        {0.1, -0.0, D::max(), D::lowest(), D::min(), D::denorm_min(), D::infinity(),
                         -D::infinity(), D::quiet_NaN(), 1.0 / 3.0}));
  add(rawTensor<int8_t>("int8", TensorProto::INT8, {3}, {-128, 0, 127}));
  add(rawTensor<uint8_t>("uint8", TensorProto::UINT8, {3}, {0, 1, 255}));
  add(rawTensor<int16_t>("int16", TensorProto::INT16, {2}, {-32768, 32767}));
  add(rawTensor<uint16_t>("uint16", TensorProto::UINT16, {2}, {0, 65535}));
  add(rawTensor<int32_t>("int32", TensorProto::INT32, {2}, {INT32_MIN, INT32_MAX}));
  add(rawTensor<uint32_t>("uint32", TensorProto::UINT32, {2}, {0, UINT32_MAX}));
  add(rawTensor<int64_t>(
      "int64", TensorProto::INT64, {3},
      {std::numeric_limits<int64_t>::min(), -1, std::numeric_limits<int64_t>::max()}));
  add(rawTensor<uint64_t>("uint64", TensorProto::UINT64, {2}, {0, UINT64_MAX}));
  add(rawTensor<uint8_t>("bool", TensorProto::BOOL, {2, 2}, {0, 1, 1, 0}));
  // float16: 1.0, -0.0, max (65504), smallest subnormal, smallest normal, inf, NaN, 0.1
  add(rawTensor<uint16_t>("float16", TensorProto::FLOAT16, {8},
                          {0x3C00, 0x8000, 0x7BFF, 0x0001, 0x0400, 0x7C00, 0x7E00, 0x2E66}));
  // bfloat16: 1.0, -0.0, max, smallest subnormal, -inf, NaN, 0.1
  add(rawTensor<uint16_t>("bfloat16", TensorProto::BFLOAT16, {7},
                          {0x3F80, 0x8000, 0x7F7F, 0x0001, 0xFF80, 0x7FC0, 0x3DCD}));
  add(rawTensor<float>("complex64", TensorProto::COMPLEX64, {2},
                       {1.0f, -2.0f, 0.5f, F::infinity()}));
  add(rawTensor<double>("complex128", TensorProto::COMPLEX128, {1}, {0.1, -0.0}));
  add(rawTensor<float>("scalar", TensorProto::FLOAT, {}, {42.0f}));
  add(rawTensor<float>("empty", TensorProto::FLOAT, {2, 0}, {}));

  TensorProto strings;
  strings.set_name("string");
  strings.set_data_type(TensorProto::STRING);
  strings.add_dims(4);
  strings.add_string_data("plain");
  strings.add_string_data("");
  strings.add_string_data("quote\" newline\n");
  strings.add_string_data(std::string("\0\xff", 2));
  add(strings);

  expectProtoRoundTrip(model);
}

TEST(TextFormat, ValueSpellingsInTensors) {
  onnx::ModelProto model = emptyModel();
  onnx::GraphProto& graph = *model.mutable_graph();
  *graph.add_initializer() =
      rawTensor<float>("f", TensorProto::FLOAT, {4}, {1.0f, 0.1f, -0.0f, 2e30f});
  *graph.add_initializer() =
      rawTensor<uint16_t>("h", TensorProto::FLOAT16, {3}, {0x3C00, 0x2E66, 0x0001});
  *graph.add_initializer() = rawTensor<uint16_t>("b", TensorProto::BFLOAT16, {2}, {0x3DCD, 0x4780});
  *graph.add_initializer() = rawTensor<uint8_t>("bools", TensorProto::BOOL, {3}, {0, 1, 2});
  *graph.add_initializer() = rawTensor<float>("c", TensorProto::COMPLEX64, {1}, {1.5f, -2.0f});
  std::string text = printOrFail(model);
  EXPECT_NE(text.find("float[4] f = {1.0, 0.1, -0.0, 2e+30}"), std::string::npos) << text;
  // Half 0x2E66 is 0.0999755859375, the nearest half to 0.1; 0x0001 is 2^-24.
  EXPECT_NE(text.find("float16[3] h = {1.0, 0.1, 6e-08}"), std::string::npos) << text;
  // bfloat16 0x3DCD is 0.10009765625 and 0x4780 is 65536, which is also the
  // bfloat16 nearest to the shorter 65500.
  EXPECT_NE(text.find("bfloat16[2] b = {0.1, 65500.0}"), std::string::npos) << text;
  EXPECT_NE(text.find("bool[3] bools = {false, true, 2}"), std::string::npos) << text;
  EXPECT_NE(text.find("complex64[1] c = {1.5, -2.0}"), std::string::npos) << text;
  expectProtoRoundTrip(model);
}

TEST(TextFormat, EveryFloat16AndBFloat16Pattern) {
  std::vector<uint16_t> patterns(65536);
  for (size_t i = 0; i < patterns.size(); ++i) patterns[i] = static_cast<uint16_t>(i);
  for (int32_t type : {TensorProto::FLOAT16, TensorProto::BFLOAT16}) {
    onnx::ModelProto model = emptyModel();
    *model.mutable_graph()->add_initializer() = rawTensor<uint16_t>("all", type, {65536}, patterns);
    auto text = modelToText(model);
    ASSERT_TRUE(text.ok()) << text.status();
    auto parsed = parse(*text);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    const std::string& raw = parsed->graph().initializer(0).raw_data();
    ASSERT_EQ(raw.size(), patterns.size() * 2);

    // NaN payloads are not kept: each NaN becomes the quiet NaN of its sign.
    uint16_t exponentMask = type == TensorProto::FLOAT16 ? 0x7C00 : 0x7F80;
    uint16_t quietNaN = type == TensorProto::FLOAT16 ? 0x7E00 : 0x7FC0;
    int mismatches = 0;
    for (size_t i = 0; i < patterns.size(); ++i) {
      uint16_t bits;
      std::memcpy(&bits, raw.data() + 2 * i, 2);
      uint16_t original = patterns[i];
      bool isNaN =
          (original & exponentMask) == exponentMask && (original & ~0x8000 & ~exponentMask) != 0;
      uint16_t expected = isNaN ? static_cast<uint16_t>((original & 0x8000) | quietNaN) : original;
      if (bits != expected && ++mismatches <= 5) {
        ADD_FAILURE() << TensorProto::DataType_Name(type) << " pattern 0x" << std::hex << original
                      << " came back as 0x" << bits;
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
}

TEST(TextFormat, NaNPayloadBecomesQuietNaN) {
  onnx::ModelProto model = emptyModel();
  uint32_t signalingBits = 0x7F800001;
  uint32_t negativePayloadBits = 0xFFC12345;
  *model.mutable_graph()->add_initializer() = rawTensor<float>(
      "nans", TensorProto::FLOAT, {2},
      {std::bit_cast<float>(signalingBits), std::bit_cast<float>(negativePayloadBits)});
  std::string text = printOrFail(model);
  EXPECT_NE(text.find("{nan, -nan}"), std::string::npos) << text;
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  uint32_t bits[2];
  std::memcpy(bits, parsed->graph().initializer(0).raw_data().data(), 8);
  EXPECT_EQ(bits[0], 0x7FC00000u);
  EXPECT_EQ(bits[1], 0xFFC00000u);
}

TEST(TextFormat, TypedFieldsPrintLikeRawData) {
  onnx::ModelProto typed = emptyModel();
  onnx::ModelProto raw = emptyModel();
  auto addPair = [&](TensorProto typedTensor, TensorProto rawTensorProto) {
    *typed.mutable_graph()->add_initializer() = std::move(typedTensor);
    *raw.mutable_graph()->add_initializer() = std::move(rawTensorProto);
  };
  auto typedTensor = [](const std::string& name, int32_t type, int64_t dim) {
    TensorProto tensor;
    tensor.set_name(name);
    tensor.set_data_type(type);
    tensor.add_dims(dim);
    return tensor;
  };

  const float nan = std::numeric_limits<float>::quiet_NaN();
  TensorProto floats = typedTensor("f", TensorProto::FLOAT, 3);
  floats.add_float_data(1.5f);
  floats.add_float_data(-0.0f);
  floats.add_float_data(nan);
  addPair(floats, rawTensor<float>("f", TensorProto::FLOAT, {3}, {1.5f, -0.0f, nan}));
  TensorProto halves = typedTensor("h", TensorProto::FLOAT16, 2);
  halves.add_int32_data(0x3C00);
  halves.add_int32_data(0xFBFF);
  addPair(halves, rawTensor<uint16_t>("h", TensorProto::FLOAT16, {2}, {0x3C00, 0xFBFF}));
  TensorProto int8s = typedTensor("i8", TensorProto::INT8, 2);
  int8s.add_int32_data(-128);
  int8s.add_int32_data(127);
  addPair(int8s, rawTensor<int8_t>("i8", TensorProto::INT8, {2}, {-128, 127}));
  TensorProto int64s = typedTensor("i64", TensorProto::INT64, 1);
  int64s.add_int64_data(std::numeric_limits<int64_t>::min());
  addPair(int64s, rawTensor<int64_t>("i64", TensorProto::INT64, {1},
                                     {std::numeric_limits<int64_t>::min()}));
  TensorProto uint32s = typedTensor("u32", TensorProto::UINT32, 1);
  uint32s.add_uint64_data(UINT32_MAX);
  addPair(uint32s, rawTensor<uint32_t>("u32", TensorProto::UINT32, {1}, {UINT32_MAX}));
  TensorProto doubles = typedTensor("d", TensorProto::DOUBLE, 2);
  doubles.add_double_data(0.1);
  doubles.add_double_data(-std::numeric_limits<double>::infinity());
  addPair(doubles, rawTensor<double>("d", TensorProto::DOUBLE, {2},
                                     {0.1, -std::numeric_limits<double>::infinity()}));
  TensorProto bools = typedTensor("b", TensorProto::BOOL, 2);
  bools.add_int32_data(1);
  bools.add_int32_data(0);
  addPair(bools, rawTensor<uint8_t>("b", TensorProto::BOOL, {2}, {1, 0}));

  std::string typedText = printOrFail(typed);
  EXPECT_EQ(typedText, printOrFail(raw));
  // The parser writes raw_data, so typed fields come back as raw_data.
  auto parsed = parse(typedText);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(protosEqual(raw, *parsed));
}

TEST(TextFormat, RejectsTypedValuesThatDoNotFit) {
  onnx::ModelProto model = emptyModel();
  TensorProto& tensor = *model.mutable_graph()->add_initializer();
  tensor.set_name("bad_int8");
  tensor.set_data_type(TensorProto::INT8);
  tensor.add_dims(1);
  tensor.add_int32_data(300);
  auto text = modelToText(model);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(text.status().message().find("bad_int8"), absl::string_view::npos) << text.status();
  EXPECT_NE(text.status().message().find("300"), absl::string_view::npos) << text.status();
}

TEST(TextFormat, RejectsDataThatDoesNotMatchDims) {
  onnx::ModelProto model = emptyModel();
  *model.mutable_graph()->add_initializer() =
      rawTensor<float>("short", TensorProto::FLOAT, {3}, {1.0f, 2.0f});
  auto text = modelToText(model);
  ASSERT_FALSE(text.ok());
  EXPECT_NE(text.status().message().find("\"short\""), absl::string_view::npos) << text.status();
}

TEST(TextFormat, ExternalDataRoundTrip) {
  onnx::ModelProto model = emptyModel();
  TensorProto& tensor = *model.mutable_graph()->add_initializer();
  tensor.set_name("w:0");
  tensor.set_data_type(TensorProto::FLOAT);
  tensor.add_dims(768);
  tensor.set_data_location(TensorProto::EXTERNAL);
  auto entry = [&](const std::string& key, const std::string& value) {
    auto* pair = tensor.add_external_data();
    pair->set_key(key);
    pair->set_value(value);
  };
  entry("location", "w.data");
  entry("offset", "0");
  entry("length", "3072");
  entry("checksum", "a1b2");
  entry("odd key", "-12");

  std::string text = printOrFail(model);
  EXPECT_NE(
      text.find("float[768] \"w:0\" = external(location: \"w.data\", offset: 0, length: 3072, "
                "checksum: \"a1b2\", \"odd key\": \"-12\")"),
      std::string::npos)
      << text;
  expectProtoRoundTrip(model);
}

TEST(TextFormat, ElidesLargeTensorsWithTheirHash) {
  onnx::ModelProto model = emptyModel();
  std::vector<float> values(6);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.5f;
  *model.mutable_graph()->add_initializer() =
      rawTensor<float>("big", TensorProto::FLOAT, {2, 3}, values);
  *model.mutable_graph()->add_initializer() =
      rawTensor<float>("small", TensorProto::FLOAT, {2}, {1.0f, 2.0f});

  PrintOptions options;
  options.elideTensorsAbove = 4;
  std::string text = printOrFail(model, options);
  // The hash covers data_type (int32), dims (int64 each) and the raw bytes.
  std::string hashed;
  int32_t dataType = TensorProto::FLOAT;
  hashed.append(reinterpret_cast<const char*>(&dataType), sizeof(dataType));
  for (int64_t dim : {int64_t{2}, int64_t{3}}) {
    hashed.append(reinterpret_cast<const char*>(&dim), sizeof(dim));
  }
  hashed.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  uint64_t expectedHash = XXH3_64bits(hashed.data(), hashed.size());
  EXPECT_EQ(expectedHash, Tensor::create<float>({2, 3}, values)->contentHash())
      << "the printer and the IR exporter must mark elided tensors with the same hash";
  char hash[17];
  std::snprintf(hash, sizeof(hash), "%016llx", static_cast<unsigned long long>(expectedHash));
  EXPECT_NE(text.find(std::string("float[2, 3] big = elided(xxh3: \"") + hash + "\", elements: 6)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("float[2] small = {1.0, 2.0}"), std::string::npos) << text;

  onnx::ModelProto withStrings = emptyModel();
  TensorProto& strings = *withStrings.mutable_graph()->add_initializer();
  strings.set_name("vocabulary");
  strings.set_data_type(TensorProto::STRING);
  strings.add_dims(5);
  std::vector<std::string> words = {"a", "", "bc", "d", "e\n"};
  for (const std::string& word : words) strings.add_string_data(word);
  char stringHash[17];
  std::snprintf(stringHash, sizeof(stringHash), "%016llx",
                static_cast<unsigned long long>(Tensor({5}, words).contentHash()));
  std::string stringText = printOrFail(withStrings, options);
  EXPECT_NE(stringText.find(std::string("string[5] vocabulary = elided(xxh3: \"") + stringHash +
                            "\", elements: 5)"),
            std::string::npos)
      << stringText;

  auto parsed = parse(text);
  ASSERT_FALSE(parsed.ok());
  std::string message(parsed.status().message());
  EXPECT_NE(message.find("test.onnxtxt:6:"), std::string::npos) << message;
  EXPECT_NE(message.find("elided"), std::string::npos) << message;
  EXPECT_NE(message.find("full constants"), std::string::npos) << message;
}

TEST(TextFormat, PrintsTensorsMarkedElidedByTheExporter) {
  onnx::ModelProto model = emptyModel();
  TensorProto& tensor = *model.mutable_graph()->add_initializer();
  tensor.set_name("embeddings");
  tensor.set_data_type(TensorProto::FLOAT);
  tensor.add_dims(768);
  tensor.add_dims(768);
  auto* marker = tensor.add_external_data();
  marker->set_key("roformer.elided");
  marker->set_value("0123456789abcdef");
  std::string text = printOrFail(model);
  EXPECT_NE(
      text.find(
          "float[768, 768] embeddings = elided(xxh3: \"0123456789abcdef\", elements: 589824)"),
      std::string::npos)
      << text;
}

TEST(TextFormat, TypesAndValueInfoRoundTrip) {
  onnx::ModelProto model = emptyModel();
  onnx::GraphProto& graph = *model.mutable_graph();

  onnx::ValueInfoProto scalar = tensorValue("scalar", TensorProto::FLOAT, {});
  onnx::ValueInfoProto unknownRank;
  unknownRank.set_name("unknown_rank");
  unknownRank.mutable_type()->mutable_tensor_type()->set_elem_type(TensorProto::INT64);
  onnx::ValueInfoProto dims = tensorValue("dims", TensorProto::FLOAT, {2});
  auto* shape = dims.mutable_type()->mutable_tensor_type()->mutable_shape();
  shape->add_dim();
  shape->add_dim()->set_dim_param("batch");
  shape->add_dim()->set_dim_param("unk__1:0");
  shape->add_dim()->set_dim_param("");
  shape->add_dim()->set_dim_value(-1);
  onnx::ValueInfoProto untyped;
  untyped.set_name("untyped");
  onnx::ValueInfoProto sequence;
  sequence.set_name("sequence");
  *sequence.mutable_type()->mutable_sequence_type()->mutable_elem_type() =
      tensorValue("", TensorProto::FLOAT, {3}).type();
  onnx::ValueInfoProto map;
  map.set_name("map");
  map.mutable_type()->mutable_map_type()->set_key_type(TensorProto::INT64);
  *map.mutable_type()->mutable_map_type()->mutable_value_type() =
      tensorValue("", TensorProto::FLOAT, {}).type();
  onnx::ValueInfoProto optional;
  optional.set_name("optional");
  *optional.mutable_type()->mutable_optional_type()->mutable_elem_type() = sequence.type();
  onnx::ValueInfoProto sparse;
  sparse.set_name("sparse");
  auto* sparseType = sparse.mutable_type()->mutable_sparse_tensor_type();
  sparseType->set_elem_type(TensorProto::FLOAT);
  sparseType->mutable_shape()->add_dim()->set_dim_value(3);

  for (const auto* info :
       {&scalar, &unknownRank, &dims, &untyped, &sequence, &map, &optional, &sparse}) {
    *graph.add_input() = *info;
    *graph.add_value_info() = *info;
  }
  *graph.add_output() = untyped;

  std::string text = printOrFail(model);
  EXPECT_NE(
      text.find(
          "main (float[] scalar, int64 unknown_rank, float[2, ?, batch, \"unk__1:0\", \"\", -1] "
          "dims, untyped, seq(float[3]) sequence, map(int64, float[]) \"map\", "
          "optional(seq(float[3])) \"optional\", sparse_tensor(float[3]) sparse) => "
          "(untyped)"),
      std::string::npos)
      << text;
  expectProtoRoundTrip(model);
}

// `float[]` is a scalar and `float` has unknown rank, the reverse of ONNX
// 1.12's parser. Tensor values have no unknown rank, so `float {1.0}` is a
// scalar there, as in ONNX.
TEST(TextFormat, ParsesScalarAndUnknownRank) {
  auto parsed = parse("main (float[] a, float b, float[?] c) => () <float d = {1.0}> {}");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const auto& inputs = parsed->graph().input();
  EXPECT_TRUE(inputs[0].type().tensor_type().has_shape());
  EXPECT_EQ(inputs[0].type().tensor_type().shape().dim_size(), 0);
  EXPECT_FALSE(inputs[1].type().tensor_type().has_shape());
  EXPECT_EQ(parsed->graph().initializer(0).dims_size(), 0);
  EXPECT_EQ(parsed->graph().initializer(0).raw_data().size(), 4u);
  ASSERT_EQ(inputs[2].type().tensor_type().shape().dim_size(), 1);
  EXPECT_FALSE(inputs[2].type().tensor_type().shape().dim(0).has_dim_value());
  EXPECT_FALSE(inputs[2].type().tensor_type().shape().dim(0).has_dim_param());
}

TEST(TextFormat, FunctionsRoundTrip) {
  onnx::ModelProto model = emptyModel();
  onnx::NodeProto& call = *model.mutable_graph()->add_node();
  call.set_op_type("ScaledAdd");
  call.set_domain("custom.ops");
  call.add_input("x");
  call.add_input("y");
  call.add_output("z");

  onnx::FunctionProto& function = *model.add_functions();
  function.set_name("ScaledAdd");
  function.set_domain("custom.ops");
  function.set_doc_string("z = (x + y) * alpha");
  auto* opset = function.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  function.add_attribute("alpha");
  function.add_input("x");
  function.add_input("y:0");
  function.add_output("z");
  onnx::NodeProto& sum = *function.add_node();
  sum.set_op_type("Add");
  sum.add_input("x");
  sum.add_input("y:0");
  sum.add_output("sum");
  onnx::NodeProto& scale = *function.add_node();
  scale.set_op_type("Constant");
  scale.add_output("alpha_value");
  AttributeProto& reference = *scale.add_attribute();
  reference.set_name("value_float");
  reference.set_type(AttributeProto::FLOAT);
  reference.set_ref_attr_name("alpha");
  onnx::NodeProto& product = *function.add_node();
  product.set_op_type("Mul");
  product.add_input("sum");
  product.add_input("alpha_value");
  product.add_output("z");

  onnx::FunctionProto& bare = *model.add_functions();
  bare.set_name("Bare");
  bare.add_output("o");

  std::string text = printOrFail(model);
  EXPECT_NE(text.find("ScaledAdd <alpha> (x, \"y:0\") => (z) {"), std::string::npos) << text;
  expectProtoRoundTrip(model);
}

TEST(TextFormat, ReportsWhatTheSyntaxCannotExpress) {
  struct Case {
    std::string name;
    std::function<void(onnx::ModelProto&)> change;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {"sparse initializer",
       [](onnx::ModelProto& model) {
         auto* sparse = model.mutable_graph()->add_sparse_initializer();
         sparse->mutable_values()->set_name("sparse_w");
       },
       "sparse initializers (\"sparse_w\")"},
      {"quantization annotation",
       [](onnx::ModelProto& model) {
         model.mutable_graph()->add_quantization_annotation()->set_tensor_name("x");
       },
       "quantization_annotation"},
      {"training info", [](onnx::ModelProto& model) { model.add_training_info(); },
       "training_info"},
      {"sparse tensor attribute",
       [](onnx::ModelProto& model) {
         auto* node = model.mutable_graph()->add_node();
         node->set_op_type("Constant");
         node->add_output("c");
         auto* attribute = node->add_attribute();
         attribute->set_name("sparse_value");
         attribute->set_type(AttributeProto::SPARSE_TENSOR);
       },
       "sparse tensor attributes in attribute \"sparse_value\""},
      {"tensor segment",
       [](onnx::ModelProto& model) {
         TensorProto& tensor = *model.mutable_graph()->add_initializer();
         tensor = rawTensor<float>("segmented", TensorProto::FLOAT, {1}, {1.0f});
         tensor.mutable_segment()->set_begin(0);
       },
       "tensor segments in initializer \"segmented\""},
      {"opaque type",
       [](onnx::ModelProto& model) {
         auto* input = model.mutable_graph()->add_input();
         input->set_name("opaque_value");
         input->mutable_type()->mutable_opaque_type()->set_name("thing");
       },
       "opaque types in value \"opaque_value\""},
  };
  for (const Case& c : cases) {
    onnx::ModelProto model = emptyModel();
    c.change(model);
    auto text = modelToText(model);
    ASSERT_FALSE(text.ok()) << c.name;
    EXPECT_EQ(text.status().code(), absl::StatusCode::kUnimplemented) << c.name;
    std::string message(text.status().message());
    EXPECT_NE(message.find(c.fragment), std::string::npos) << c.name << ": " << message;
    EXPECT_NE(message.find("keep the model in binary form"), std::string::npos) << message;
  }
}

TEST(TextFormat, RejectsModelWithoutGraph) {
  onnx::ModelProto model;
  model.set_ir_version(8);
  auto text = modelToText(model);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(text.status().message().find("no graph"), absl::string_view::npos) << text.status();
}

TEST(TextFormat, CommentsAreIgnored) {
  auto commented = parse(R"(# leading comment
<ir_version: 8, # after a field
 opset_import: ["" : 13]>
main (float x) => (float y) { # after the brace
  y = Relu (x)  # "not a string
}
# trailing comment)");
  auto plain = parse(R"(<ir_version: 8, opset_import: ["" : 13]>
main (float x) => (float y) { y = Relu (x) })");
  ASSERT_TRUE(commented.ok()) << commented.status();
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_TRUE(protosEqual(*plain, *commented));
}

TEST(TextFormat, ParsesOnnxSyntaxForms) {
  // ONNX's syntax puts a graph input's default value after `=` and allows
  // the attributes after the inputs.
  auto parsed = parse(R"(<ir_version: 7, opset_import: ["" : 13]>
agraph (float[N] x, int64[1] axes = {0}) => (float[N] y) {
  y = Unsqueeze (x, axes)
  z = Concat (y, y) <axis = 0>
})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const onnx::GraphProto& graph = parsed->graph();
  ASSERT_EQ(graph.input_size(), 2);
  ASSERT_EQ(graph.initializer_size(), 1);
  EXPECT_EQ(graph.initializer(0).name(), "axes");
  ASSERT_EQ(graph.node(1).attribute_size(), 1);
  EXPECT_EQ(graph.node(1).attribute(0).name(), "axis");
}

// ONNX 1.12's own parser reads the printer's output for models whose names
// it accepts, and reaches the same model. Scalar and unknown-rank types are
// left out because the two parsers spell them the other way round.
TEST(TextFormat, OnnxParserReadsPrintedText) {
  constexpr std::string_view kText = R"(<
  ir_version: 8,
  opset_import: ["" : 13, "com.microsoft" : 1]
>
main (float[B, 4] x, float[1] scale) => (float[B, 4] y) <
  float[4] bias = {0.5, -1.0, 0.0, 3.25},
  int64[2] shape = {-1, 4},
  float[B, 4] tmp
> {
  tmp = com.microsoft.BiasGelu (x, bias)
  y = Mul <alpha = 0.5, axes = [1, 2]> (tmp, scale)
}
)";
  expectTextRoundTrip(kText);

  onnx::ModelProto onnxModel;
  auto status = onnx::OnnxParser::Parse(onnxModel, std::string(kText).c_str());
  ASSERT_TRUE(status.IsOK()) << status.ErrorMessage();
  // ONNX's parser stores values in typed fields, which print like raw_data.
  auto printed = modelToText(onnxModel);
  ASSERT_TRUE(printed.ok()) << printed.status();
  EXPECT_EQ(*printed, kText);
}

TEST(TextFormat, ErrorUnterminatedString) {
  expectParseError("main (float \"abc) => () {}\n", 1, 13, "unterminated string");
  expectParseError("main (float x) => () {\n  y = Op <s = \"abc\n> ()\n}", 2, 15,
                   "unterminated string");
}

TEST(TextFormat, ErrorBadEscape) {
  expectParseError("main (float \"a\\qb\") => () {}", 1, 15, "invalid escape sequence '\\q'");
  expectParseError("main (float \"a\\x4\") => () {}", 1, 15, "\\x needs two hex digits");
}

TEST(TextFormat, ErrorUnknownTypeName) {
  expectParseError("main (floot[2] x) => () {}", 1, 7, "unknown type 'floot'");
  expectParseError("main () => (seq(flaot) x) {}", 1, 17, "unknown type 'flaot'");
  expectParseError("main () => () {\n  y = Op <t: int32 = 1> ()\n}", 2, 14,
                   "unknown attribute type 'int32'");
}

TEST(TextFormat, ErrorMissingEquals) {
  expectParseError("main (float x) => (float y) {\n  y Relu (x)\n}", 2, 5,
                   "expected '=' after the outputs of a node, found 'Relu'");
  expectParseError("main () => () {\n  y = Op <axis 1> ()\n}", 2, 16,
                   "expected '=' after attribute name \"axis\", found number 1");
}

TEST(TextFormat, ErrorElidedData) {
  expectParseError(
      "main () => () <\n  float[768] w = elided(xxh3: \"00000000000000ff\", elements: 768)\n> {}",
      2, 18, "initializer \"w\" was elided");
}

TEST(TextFormat, ErrorValueCountAndRange) {
  expectParseError("main () => () <float[3] w = {1.0, 2.0}> {}", 1, 38,
                   "initializer \"w\" has 2 values but its dims [3] need 3");
  expectParseError("main () => () <float[1] w = {1.0, 2.0}> {}", 1, 35,
                   "more values than its dims need");
  expectParseError("main () => () <int8[1] w = {128}> {}", 1, 29,
                   "value 128 is out of the range of int8");
  expectParseError("main () => () <uint64[1] w = {-1}> {}", 1, 31, "out of the range of uint64");
  expectParseError("main () => () <float16[1] w = {70000.0}> {}", 1, 32,
                   "out of the range of float16");
  expectParseError("main () => () <float[1] w = {1e39}> {}", 1, 30, "out of the range of float");
  expectParseError("main () => () <int64[1] w = {1.5}> {}", 1, 30, "expected an integer value");
  expectParseError("main () => () <float[] w = {}> {}", 1, 29,
                   "has 0 values but its dims [] need 1");
  expectParseError("main () => () <float[N] w = {1.0}> {}", 1, 16, "needs numeric dims");
}

TEST(TextFormat, ErrorAttributeLists) {
  expectParseError("main () => () {\n  y = Op <axes = []> ()\n}", 2, 18,
                   "needs a type: write axes: ints = []");
  expectParseError("main () => () {\n  y = Op <mixed = [1, \"a\"]> ()\n}", 2, 23,
                   "mixes an int and a string");
}

TEST(TextFormat, ErrorHeaderAndStructure) {
  expectParseError("<ir_version: 8, producer: \"x\">\nmain () => () {}", 1, 17,
                   "unknown model field 'producer'");
  expectParseError("<ir_version: 8, ir_version: 9>\nmain () => () {}", 1, 17, "appears twice");
  expectParseError("main () => () {\n  y = Relu (x)\n", 3, 1, "found end of input");
  expectParseError("main () -> () {}", 1, 9, "unexpected character '-'");
  expectParseError("main (float x) => () {}\n}", 2, 1,
                   "expected a function, or the end of the model after its graph, found '}'");
  expectParseError("main () => () {\n  y = Op <a = 1.5.2> ()\n}", 2, 15, "invalid number '1.5.2'");
}

TEST(TextFormat, RejectsDeepNestingWithoutCrashing) {
  std::string type;
  for (int i = 0; i < 5000; ++i) type += "seq(";
  std::string text = "main (" + type + "float";
  auto parsed = parse(text);
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("nest deeper than"), absl::string_view::npos)
      << parsed.status();
}

TEST(TextFormat, EveryPrefixOfAModelFailsCleanly) {
  std::string text(kCanonicalModel);
  for (size_t length = 0; length + 1 < text.size(); ++length) {
    auto parsed = parse(std::string_view(text).substr(0, length));
    // Cutting after the final '}' leaves a whole model; every shorter cut fails.
    if (text.substr(length).find_first_not_of(" \n") == std::string::npos) continue;
    ASSERT_FALSE(parsed.ok()) << "prefix of length " << length << " parsed";
    ASSERT_EQ(std::string(parsed.status().message()).rfind("test.onnxtxt:", 0), 0u)
        << parsed.status();
  }
}

// Replaces each byte of a model with bytes that often break parsers. Every
// result must either fail with a positioned message or parse to a model that
// prints and parses back to itself.
TEST(TextFormat, MutatedModelsFailCleanlyOrRoundTrip) {
  const std::string original(kCanonicalModel);
  const std::string replacements = std::string("\"\\{}<>()[],=:.-9e@?#x \n", 23) + '\0';
  int parsedCount = 0;
  for (size_t i = 0; i < original.size(); ++i) {
    for (char replacement : replacements) {
      if (original[i] == replacement) continue;
      std::string text = original;
      text[i] = replacement;
      auto parsed = parse(text);
      if (!parsed.ok()) {
        ASSERT_EQ(std::string(parsed.status().message()).rfind("test.onnxtxt:", 0), 0u)
            << parsed.status();
        continue;
      }
      ++parsedCount;
      auto printed = modelToText(*parsed);
      ASSERT_TRUE(printed.ok()) << printed.status() << "\nafter replacing byte " << i << ":\n"
                                << text;
      auto reparsed = parse(*printed);
      ASSERT_TRUE(reparsed.ok()) << reparsed.status() << "\nprinted:\n" << *printed;
      ASSERT_TRUE(protosEqual(*parsed, *reparsed)) << "input:\n"
                                                   << text << "\nprinted:\n"
                                                   << *printed;
    }
  }
  // Many replacements (inside strings and names, for example) still parse.
  EXPECT_GT(parsedCount, 500);
}

TEST(TextFormat, PrintModelTextWritesToStream) {
  auto parsed = parse(kCanonicalModel);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  std::ostringstream stream;
  ASSERT_TRUE(printModelText(*parsed, stream).ok());
  EXPECT_EQ(stream.str(), kCanonicalModel);
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ROFORMER_TEST_ASAN 1
#endif
#endif
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__) && !defined(ROFORMER_TEST_ASAN)
constexpr bool kOptimizedBuild = true;
#else
constexpr bool kOptimizedBuild = false;
#endif

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A 4 MB float tensor, a 2 MB float16 tensor and a 50,000-node graph print
// and parse in linear time. The bounds leave room for a heavily loaded
// machine and catch quadratic steps, which would take minutes here.
TEST(TextFormat, LargeTensorsAndGraphsAreFast) {
  onnx::ModelProto model = emptyModel();
  std::vector<float> values(1 << 20);
  for (size_t i = 0; i < values.size(); ++i) values[i] = std::sin(static_cast<float>(i)) * 1000.0f;
  *model.mutable_graph()->add_initializer() =
      rawTensor<float>("weights", TensorProto::FLOAT, {1024, 1024}, values);
  std::vector<uint16_t> halves(1 << 20);
  for (size_t i = 0; i < halves.size(); ++i) {
    // Every pattern but NaNs, whose payloads the text does not keep.
    halves[i] = static_cast<uint16_t>(i * 7919);
    if ((halves[i] & 0x7C00) == 0x7C00 && (halves[i] & 0x03FF) != 0) halves[i] = 0x3C00;
  }
  *model.mutable_graph()->add_initializer() =
      rawTensor<uint16_t>("halves", TensorProto::FLOAT16, {1 << 20}, halves);
  onnx::GraphProto& graph = *model.mutable_graph();
  for (int i = 0; i < 50000; ++i) {
    onnx::NodeProto& node = *graph.add_node();
    node.set_op_type("Add");
    node.set_name("layer/" + std::to_string(i));
    node.add_input("v:" + std::to_string(i));
    node.add_input("weights");
    node.add_output("v:" + std::to_string(i + 1));
  }

  auto start = std::chrono::steady_clock::now();
  auto text = modelToText(model);
  double printSeconds = secondsSince(start);
  ASSERT_TRUE(text.ok()) << text.status();

  start = std::chrono::steady_clock::now();
  auto parsed = parse(*text);
  double parseSeconds = secondsSince(start);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(protosEqual(model, *parsed));

  std::printf("printed %zu bytes in %.3f s, parsed in %.3f s\n", text->size(), printSeconds,
              parseSeconds);
  // Debug and sanitizer builds run several times slower, so only optimized
  // builds check the time.
  if (kOptimizedBuild) {
    EXPECT_LT(printSeconds, 10.0);
    EXPECT_LT(parseSeconds, 10.0);
  }
}

}  // namespace
}  // namespace roformer::ir
