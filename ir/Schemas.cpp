#include "ir/Schemas.h"

#include <mutex>

#include "onnx/defs/schema.h"
#include "onnx/defs/shape_inference.h"

namespace roformer::ir {
namespace {

using onnx::AttributeProto;
using onnx::InferenceContext;
using onnx::OpSchema;

const std::vector<std::string> kFloatTypes = {"tensor(float)", "tensor(float16)",
                                              "tensor(bfloat16)"};

// Output 0 has input 0's type and shape.
void propagateFirstInput(InferenceContext& context) {
  onnx::propagateElemTypeFromInputToOutput(context, 0, 0);
  if (onnx::hasInputShape(context, 0)) onnx::propagateShapeFromInputToOutput(context, 0, 0);
}

OpSchema skipLayerNormalization() {
  OpSchema schema;
  schema.SetName("SkipLayerNormalization")
      .SetDomain(kMicrosoftDomain)
      .SinceVersion(1)
      .SetDoc("LayerNormalization(input + skip + bias) over the last axis, scaled by gamma and "
              "shifted by beta (ONNX Runtime contrib op).")
      .Attr("epsilon", "Added to the variance before the square root.", AttributeProto::FLOAT,
            1e-12f)
      .Input(0, "input", "Input of shape [batch, sequence, hidden].", "T")
      .Input(1, "skip", "Residual input, same shape as input.", "T")
      .Input(2, "gamma", "Scale, shape [hidden].", "T")
      .Input(3, "beta", "Shift, shape [hidden].", "T", OpSchema::Optional)
      .Input(4, "bias", "Bias added before the normalization, shape [hidden].", "T",
             OpSchema::Optional)
      .Output(0, "output", "Normalized output, same shape as input.", "T")
      .Output(1, "mean", "Per-row mean (training only).", "U", OpSchema::Optional)
      .Output(2, "inv_std_var", "Per-row inverse standard deviation (training only).", "U",
              OpSchema::Optional)
      .Output(3, "input_skip_bias_sum", "input + skip + bias.", "T", OpSchema::Optional)
      .TypeConstraint("T", kFloatTypes, "Floating-point tensors.")
      .TypeConstraint("U", {"tensor(float)"}, "Statistics are float.")
      .TypeAndShapeInferenceFunction([](InferenceContext& context) {
        propagateFirstInput(context);
        if (context.getNumOutputs() > 3) {
          onnx::propagateElemTypeFromInputToOutput(context, 0, 3);
          if (onnx::hasInputShape(context, 0)) {
            onnx::propagateShapeFromInputToOutput(context, 0, 3);
          }
        }
      });
  return schema;
}

OpSchema biasGelu() {
  OpSchema schema;
  schema.SetName("BiasGelu")
      .SetDomain(kMicrosoftDomain)
      .SinceVersion(1)
      .SetDoc("Y = Gelu(A + bias) with the exact erf form 0.5 * x * (1 + erf(x / sqrt(2))).")
      .Input(0, "A", "Input.", "T")
      .Input(1, "B", "Bias, broadcast along the last axis.", "T")
      .Output(0, "C", "Output, same shape as A.", "T")
      .TypeConstraint("T", kFloatTypes, "Floating-point tensors.")
      .TypeAndShapeInferenceFunction(propagateFirstInput);
  return schema;
}

OpSchema gelu(const char* name, const char* doc) {
  OpSchema schema;
  schema.SetName(name)
      .SetDomain(kMicrosoftDomain)
      .SinceVersion(1)
      .SetDoc(doc)
      .Input(0, "X", "Input.", "T")
      .Input(1, "bias", "Optional bias added first.", "T", OpSchema::Optional)
      .Output(0, "Y", "Output, same shape as X.", "T")
      .TypeConstraint("T", kFloatTypes, "Floating-point tensors.")
      .TypeAndShapeInferenceFunction(propagateFirstInput);
  return schema;
}

OpSchema rotaryEmbedding() {
  OpSchema schema;
  schema.SetName("RotaryEmbedding")
      .SetDomain(kMicrosoftDomain)
      .SinceVersion(1)
      .SetDoc("Rotary position embedding (ONNX Runtime contrib op). With interleaved=1 element "
              "pairs (2i, 2i+1) are rotated by the angle of cos_cache/sin_cache row "
              "position_ids and column i.")
      .Attr("scale", "Scale applied to position ids.", AttributeProto::FLOAT, 1.0f)
      .Attr("interleaved", "1: rotate pairs (2i, 2i+1); 0: rotate (i, i + d/2).",
            AttributeProto::INT, static_cast<int64_t>(0))
      .Attr("is_packed_batching", "1: input is packed without padding.", AttributeProto::INT,
            static_cast<int64_t>(0))
      .Attr("num_heads", "Number of heads; required for 3-D input with partial rotation.",
            AttributeProto::INT, static_cast<int64_t>(0))
      .Attr("rotary_embedding_dim", "Rotated dims per head (0: all).", AttributeProto::INT,
            static_cast<int64_t>(0))
      .Input(0, "input", "[batch, sequence, hidden] or [batch, heads, sequence, head].", "T")
      .Input(1, "position_ids", "[batch, sequence] positions, or [1] offset.", "M")
      .Input(2, "cos_cache", "[max_sequence, rotary_dim / 2].", "T")
      .Input(3, "sin_cache", "[max_sequence, rotary_dim / 2].", "T")
      .Output(0, "output", "Same shape as input.", "T")
      .TypeConstraint("T", kFloatTypes, "Floating-point tensors.")
      .TypeConstraint("M", {"tensor(int64)"}, "Position ids.")
      .TypeAndShapeInferenceFunction(propagateFirstInput);
  return schema;
}

OpSchema multiHeadAttention() {
  OpSchema schema;
  schema.SetName("MultiHeadAttention")
      .SetDomain(kMicrosoftDomain)
      .SinceVersion(1)
      .SetDoc("Scaled dot-product attention over num_heads heads (ONNX Runtime contrib op).")
      .Attr("num_heads", "Number of attention heads.", AttributeProto::INT)
      .Attr("mask_filter_value", "Score given to masked keys.", AttributeProto::FLOAT, -10000.0f)
      .Attr("scale", "Scale of Q*K^T; 0 means 1/sqrt(head_size).", AttributeProto::FLOAT, 0.0f)
      .Attr("unidirectional", "1: causal mask.", AttributeProto::INT, static_cast<int64_t>(0))
      .Input(0, "query", "[batch, q_sequence, hidden] or packed [batch, sequence, heads, 3, head].",
             "T")
      .Input(1, "key", "[batch, kv_sequence, hidden].", "T", OpSchema::Optional)
      .Input(2, "value", "[batch, kv_sequence, v_hidden].", "T", OpSchema::Optional)
      .Input(3, "bias", "Bias of Q, K and V projections.", "T", OpSchema::Optional)
      .Input(4, "key_padding_mask", "[batch, kv_sequence]: 1 keeps a key, 0 masks it.", "M",
             OpSchema::Optional)
      .Input(5, "attention_bias", "Additive bias of the scores.", "T", OpSchema::Optional)
      .Input(6, "past_key", "Past keys.", "T", OpSchema::Optional)
      .Input(7, "past_value", "Past values.", "T", OpSchema::Optional)
      .Output(0, "output", "[batch, q_sequence, v_hidden].", "T")
      .Output(1, "present_key", "Present keys.", "T", OpSchema::Optional)
      .Output(2, "present_value", "Present values.", "T", OpSchema::Optional)
      .TypeConstraint("T", kFloatTypes, "Floating-point tensors.")
      .TypeConstraint("M", {"tensor(int32)"}, "Key padding mask.")
      .TypeAndShapeInferenceFunction([](InferenceContext& context) {
        onnx::propagateElemTypeFromInputToOutput(context, 0, 0);
        if (!onnx::hasInputShape(context, 0)) return;
        const auto& query = onnx::getInputShape(context, 0);
        onnx::TensorShapeProto output;
        if (query.dim_size() == 3) {
          *output.add_dim() = query.dim(0);
          *output.add_dim() = query.dim(1);
          if (context.getNumInputs() > 2 && onnx::hasInputShape(context, 2) &&
              onnx::getInputShape(context, 2).dim_size() == 3) {
            *output.add_dim() = onnx::getInputShape(context, 2).dim(2);
          } else {
            *output.add_dim() = query.dim(2);
          }
        } else if (query.dim_size() == 5) {
          // Packed QKV [batch, sequence, heads, 3, head].
          *output.add_dim() = query.dim(0);
          *output.add_dim() = query.dim(1);
          const auto& heads = query.dim(2);
          const auto& head = query.dim(4);
          auto* hidden = output.add_dim();
          if (heads.has_dim_value() && head.has_dim_value()) {
            hidden->set_dim_value(heads.dim_value() * head.dim_value());
          }
        } else {
          return;
        }
        onnx::updateOutputShape(context, 0, output);
      });
  return schema;
}

}  // namespace

void registerContribSchemas() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto& ranges = onnx::OpSchemaRegistry::DomainToVersionRange::Instance();
    if (ranges.Map().count(kMicrosoftDomain) == 0) ranges.AddDomainToVersion(kMicrosoftDomain, 1, 1);
    onnx::RegisterSchema(skipLayerNormalization());
    onnx::RegisterSchema(biasGelu());
    onnx::RegisterSchema(gelu("Gelu", "Y = 0.5 * X * (1 + erf(X / sqrt(2))) (exact form)."));
    onnx::RegisterSchema(gelu("FastGelu", "Gelu with the tanh approximation."));
    onnx::RegisterSchema(rotaryEmbedding());
    onnx::RegisterSchema(multiHeadAttention());
  });
}

}  // namespace roformer::ir
