// pack-qkv: merges the query, key and value projections that feed each
// com.microsoft MultiHeadAttention (after fuse-rotary-attention) into one
// MatMul with concatenated weights, one bias Add and a Split:
//
//   x -+- MatMul(Wq) - Add(bq) - RotaryEmbedding -.
//      +- MatMul(Wk) - Add(bk) - RotaryEmbedding -+- MultiHeadAttention
//      '- MatMul(Wv) - Add(bv) -------------------'
//
//   x - MatMul([Wq | Wk | Wv]) - Add([bq | bk | bv]) - Split(axis -1, [hq, hk, hv]) -> q, k, v
//
// tensordot's form of a projection, Reshape(x, [N, in]) - MatMul - Reshape
// [b, s, out] - Add(b), packs to the first form on x itself when the
// Reshapes provably restore x's batch and sequence dims (then N = b*s and the
// rows keep their order). Otherwise it packs on the shared [N, in] input and
// reshapes each Split output back with its projection's own target:
//
//   Reshape(x) - MatMul(Wqkv) - Add(bqkv) - Split - Reshape_q / Reshape_k / Reshape_v
//
// Why a Split and not MultiHeadAttention's packed input. The packed query
// [b, s, H, 3, d] would need the rotation applied to Q and K first, which
// RotaryEmbedding cannot do on the packed tensor, and ONNX Runtime 1.30's CPU
// kernel rejects packed QKV as not implemented. What packing still buys is one
// GEMM [N, in] x [in, 3h] instead of three [N, in] x [in, h]: x is read once
// and the BLAS call is three times wider, for the price of one copy of the
// result in the Split.
//
// Requirements (else a missed-match remark on the MultiHeadAttention): the
// three projections are distinct, read the same value, have constant float
// weights with the same row count and constant 1-D biases, and their MatMul
// (and tensordot Reshape) outputs have no other user.
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "ir/Schemas.h"
#include "passes/Match.h"
#include "passes/Passes.h"
#include "passes/ShapeTerms.h"

namespace roformer::passes {
namespace {

// One projection: output = Add(MatMul(input, weight) [-> Reshape], bias).
struct Projection {
  ir::Value* output = nullptr;
  ir::Node* add = nullptr;
  ir::Node* matmul = nullptr;
  ir::Node* reshape = nullptr;  // tensordot's Reshape back to [b, s, out], or null
  ir::Value* input = nullptr;   // what the MatMul reads
  std::shared_ptr<ir::Tensor> weight;
  std::shared_ptr<ir::Tensor> bias;
};

bool matchProjection(ir::Value* output, std::string_view role, Projection& projection,
                     MatchFailure* why) {
  auto fail = [&](const std::string& reason) {
    return mismatch(why, absl::StrCat("the ", std::string(role), " projection ",
                                      describeValue(output), ": ", reason));
  };
  MatchFailure inner;
  ir::Node* add = matchProducer(output, "Add", &inner);
  if (add == nullptr) return fail(inner.reason);
  int biasIndex = -1;
  for (int i = 0; i < 2; ++i) {
    auto bias = ir::constantOf(add->input(i));
    if (bias && bias->rank() == 1 && bias->dataType() == ir::DataType::kFloat) biasIndex = i;
  }
  if (biasIndex < 0) {
    return fail(absl::StrCat(add->describe(), " does not add a constant float 1-D bias"));
  }

  ir::Value* product = add->input(1 - biasIndex);
  ir::Node* node = product->producer();
  if (node != nullptr && node->is("Reshape")) {
    if (!requireSingleUse(product, &inner)) return fail(inner.reason);
    projection.reshape = node;
    product = node->input(0);
    node = product->producer();
  }
  if (node == nullptr || !node->is("MatMul")) {
    return fail(absl::StrCat(describeValue(product), " is not computed by MatMul"));
  }
  if (!requireSingleUse(product, &inner)) return fail(inner.reason);

  auto weight = ir::constantOf(node->input(1));
  if (!weight || weight->rank() != 2 || weight->dataType() != ir::DataType::kFloat) {
    return fail(absl::StrCat(node->describe(), " has no constant float 2-D weight"));
  }
  auto bias = ir::constantOf(add->input(biasIndex));
  if (bias->dims()[0] != weight->dims()[1]) {
    return fail(absl::StrCat("the bias of ", add->describe(), " has ", bias->dims()[0],
                             " elements but the weight has ", weight->dims()[1], " columns"));
  }
  projection.output = output;
  projection.add = add;
  projection.matmul = node;
  projection.input = node->input(0);
  projection.weight = weight;
  projection.bias = bias;
  return true;
}

// The projection output behind MultiHeadAttention input `index`, looking
// through a RotaryEmbedding.
ir::Value* projectionOutput(const ir::Node* attention, size_t index) {
  ir::Value* value = attention->input(index);
  if (value != nullptr && value->producer() != nullptr &&
      value->producer()->is("RotaryEmbedding", ir::kMicrosoftDomain)) {
    return value->producer()->input(0);
  }
  return value;
}

bool matchQkv(const ir::Node* attention, Projection (&projections)[3], MatchFailure* why) {
  static constexpr std::string_view kRoles[3] = {"query", "key", "value"};
  for (size_t i = 0; i < 3; ++i) {
    ir::Value* output = projectionOutput(attention, i);
    if (output == nullptr) {
      return mismatch(why, absl::StrCat("the ", std::string(kRoles[i]),
                                        " input is omitted (packed or cross-attention form)"));
    }
    if (!matchProjection(output, kRoles[i], projections[i], why)) return false;
  }
  std::unordered_set<const ir::Node*> matmuls = {projections[0].matmul, projections[1].matmul,
                                                 projections[2].matmul};
  if (matmuls.size() != 3) return mismatch(why, "the query, key and value share a projection");
  for (size_t i = 1; i < 3; ++i) {
    if (projections[i].input != projections[0].input) {
      return mismatch(
          why, absl::StrCat("the ", std::string(kRoles[i]), " projection reads ",
                            describeValue(projections[i].input), " but the query projection reads ",
                            describeValue(projections[0].input)));
    }
    if (projections[i].weight->dims()[0] != projections[0].weight->dims()[0]) {
      return mismatch(why, "the projection weights have different row counts");
    }
    if ((projections[i].reshape == nullptr) != (projections[0].reshape == nullptr)) {
      return mismatch(why, "some projections reshape their MatMul output and others do not");
    }
  }
  return true;
}

// True when every tensordot projection reads Reshape(x, [N, in]) and
// reshapes its [N, out] product to exactly [x0, x1, out], so MatMul(x, W)
// computes the same [x0, x1, out] tensor. A 0 in a target would copy N, so
// it is not accepted; one -1 is, once the other dims are proven.
ir::Value* collapsibleTensordotInput(const Projection (&projections)[3]) {
  ir::Node* flatten = projections[0].input->producer();
  if (flatten == nullptr || !flatten->is("Reshape")) return nullptr;
  ir::Value* x = flatten->input(0);
  DimProvenance provenance;
  const int64_t in = projections[0].weight->dims()[0];
  auto lastDim = provenance.origin(x, 2);
  if (provenance.rank(x) != 3 || !lastDim || lastDim->size != in) return nullptr;
  RankOracle rankOracle = [&provenance](const ir::Value* value) { return provenance.rank(value); };
  for (const Projection& projection : projections) {
    auto target = evaluateShapeTerms(projection.reshape->input(1), rankOracle, nullptr);
    if (!target || target->scalar || target->terms.size() != 3) return nullptr;
    int inferred = 0;
    for (int64_t axis = 0; axis < 3; ++axis) {
      const DimTerm& term = target->terms[axis];
      std::optional<DimOrigin> expected =
          axis < 2
              ? provenance.origin(x, axis)
              : std::optional<DimOrigin>(DimOrigin{projection.weight->dims()[1], "", nullptr, 0});
      std::optional<DimOrigin> actual;
      if (term.kind == DimTerm::Kind::kConstant && term.constant == -1) {
        ++inferred;
        continue;
      }
      if (term.kind == DimTerm::Kind::kConstant && term.constant > 0) {
        actual = DimOrigin{term.constant, "", nullptr, 0};
      } else if (term.kind == DimTerm::Kind::kDimOf) {
        actual = provenance.origin(term.value, term.axis);
      }
      if (!actual || !expected || !(*actual == *expected)) return nullptr;
    }
    if (inferred > 1) return nullptr;
  }
  return x;
}

// Concatenates the rows of the [in, out_i] weights into [in, sum out_i].
std::shared_ptr<ir::Tensor> concatenateColumns(const Projection (&projections)[3]) {
  const int64_t rows = projections[0].weight->dims()[0];
  int64_t columns = 0;
  for (const Projection& projection : projections) columns += projection.weight->dims()[1];
  std::vector<float> packed;
  packed.reserve(static_cast<size_t>(rows * columns));
  for (int64_t row = 0; row < rows; ++row) {
    for (const Projection& projection : projections) {
      const int64_t width = projection.weight->dims()[1];
      auto data = projection.weight->values<float>();
      packed.insert(packed.end(), data.begin() + row * width, data.begin() + (row + 1) * width);
    }
  }
  return ir::Tensor::create<float>({rows, columns}, packed);
}

std::shared_ptr<ir::Tensor> concatenateBiases(const Projection (&projections)[3]) {
  std::vector<float> packed;
  for (const Projection& projection : projections) {
    auto data = projection.bias->values<float>();
    packed.insert(packed.end(), data.begin(), data.end());
  }
  return ir::Tensor::create<float>({static_cast<int64_t>(packed.size())}, packed);
}

class PackQkvPass final : public Pass {
 public:
  std::string_view name() const override { return "pack-qkv"; }
  std::string_view summary() const override {
    return "Merge the Q/K/V projections of each MultiHeadAttention into one MatMul and a Split";
  }

  absl::StatusOr<bool> run(ir::Model& model, PassContext& context) override {
    ir::Graph& graph = model.graph();
    std::optional<int64_t> opset = model.opsetVersion("");
    std::vector<ir::Node*> anchors;
    for (const auto& node : graph.nodes()) {
      if (node->is("MultiHeadAttention", ir::kMicrosoftDomain)) anchors.push_back(node.get());
    }
    bool changed = false;
    for (ir::Node* attention : anchors) {
      if (!opset || *opset < 11) {
        context.remarkMissed(*attention,
                             "the model's opset is below 11, where Split has no "
                             "negative axis");
        continue;
      }
      Projection projections[3];
      MatchFailure why;
      if (!matchQkv(attention, projections, &why)) {
        context.remarkMissed(*attention, why.reason);
        continue;
      }
      rewrite(graph, *opset, attention, projections);
      context.count("projections packed");
      changed = true;
    }
    if (changed) {
      // The packed nodes go before the first MultiHeadAttention input; a
      // tensordot Reshape target computed later in the list is moved by the sort.
      if (auto status = graph.topoSort(); !status.ok()) return status;
    }
    return changed;
  }

 private:
  void rewrite(ir::Graph& graph, int64_t opset, ir::Node* attention,
               const Projection (&projections)[3]) {
    const std::string scope = attention->name().empty() ? "qkv" : attention->name();
    ir::Node* before = firstUser(graph, projections);
    ir::Value* input = projections[0].input;
    bool keepReshapes = projections[0].reshape != nullptr;
    ir::Node* flatten = nullptr;
    if (keepReshapes) {
      if (ir::Value* x = collapsibleTensordotInput(projections)) {
        flatten = input->producer();
        input = x;
        keepReshapes = false;
      }
    }

    ir::Value* weight =
        graph.addInitializer(absl::StrCat(scope, "/qkv_weight"), concatenateColumns(projections));
    ir::Value* bias =
        graph.addInitializer(absl::StrCat(scope, "/qkv_bias"), concatenateBiases(projections));
    ir::Node* matmul =
        graph.createNode("MatMul", "", {input, weight}, {absl::StrCat(scope, "/qkv_matmul")},
                         before, graph.uniqueNodeName(absl::StrCat(scope, "/MatMul_qkv")));
    ir::Node* add =
        graph.createNode("Add", "", {matmul->output(0), bias}, {absl::StrCat(scope, "/qkv")},
                         before, graph.uniqueNodeName(absl::StrCat(scope, "/Add_qkv")));

    std::vector<int64_t> sizes;
    for (const Projection& projection : projections) sizes.push_back(projection.weight->dims()[1]);
    std::vector<ir::Value*> splitInputs = {add->output(0)};
    if (opset >= 13) {
      splitInputs.push_back(graph.addInitializer(absl::StrCat(scope, "/qkv_split"),
                                                 ir::Tensor::create<int64_t>({3}, sizes)));
    }
    ir::Node* split = graph.createNode(
        "Split", "", splitInputs,
        {absl::StrCat(scope, "/q"), absl::StrCat(scope, "/k"), absl::StrCat(scope, "/v")}, before,
        graph.uniqueNodeName(absl::StrCat(scope, "/Split_qkv")));
    split->setIntAttribute("axis", -1);
    if (opset < 13) split->setIntsAttribute("split", sizes);

    static constexpr std::string_view kRoles[3] = {"q", "k", "v"};
    for (size_t i = 0; i < 3; ++i) {
      const Projection& projection = projections[i];
      ir::Value* replacement = split->output(i);
      if (keepReshapes) {
        ir::Node* reshape = graph.createNode(
            "Reshape", "", {replacement, projection.reshape->input(1)},
            {absl::StrCat(replacement->name(), "_reshaped")}, before,
            graph.uniqueNodeName(absl::StrCat(scope, "/Reshape_", std::string(kRoles[i]))));
        replacement = reshape->output(0);
      }
      replacement->setType(projection.output->type());
      graph.replaceAllUsesWith(projection.output, replacement);
    }

    for (const Projection& projection : projections) {
      std::vector<ir::Value*> constants = {projection.add->input(0), projection.add->input(1),
                                           projection.matmul->input(1)};
      eraseIfUnused(graph, projection.add);
      if (projection.reshape != nullptr) eraseIfUnused(graph, projection.reshape);
      eraseIfUnused(graph, projection.matmul);
      for (ir::Value* constant : constants) {
        if (constant != nullptr && constant->isInitializer() && !constant->hasUses() &&
            !constant->isGraphInput()) {
          graph.removeInitializer(constant);
        }
      }
    }
    if (flatten != nullptr) eraseIfUnused(graph, flatten);
  }

  // The first node in list order that reads one of the projection outputs.
  static ir::Node* firstUser(ir::Graph& graph, const Projection (&projections)[3]) {
    std::unordered_set<const ir::Value*> outputs = {projections[0].output, projections[1].output,
                                                    projections[2].output};
    for (const auto& node : graph.nodes()) {
      for (const ir::Value* input : node->inputs()) {
        if (outputs.count(input) > 0) return node.get();
      }
    }
    return nullptr;
  }

  static void eraseIfUnused(ir::Graph& graph, ir::Node* node) {
    for (const ir::Value* output : node->outputs()) {
      if (output != nullptr && output->hasUses()) return;
    }
    // Cannot fail: every output is unused.
    (void)graph.eraseNode(node);
  }
};

}  // namespace

std::unique_ptr<Pass> createPackQkvPass() { return std::make_unique<PackQkvPass>(); }

}  // namespace roformer::passes
