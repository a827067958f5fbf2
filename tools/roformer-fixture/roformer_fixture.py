#!/usr/bin/python3
"""Generate the default test model and sample set of roformer-opt.

The model is an ONNX graph laid out like the tf2onnx export of ByteMLPerf's
open_roformer (a bert4keras 0.10.4 RoFormer with a masked-mean-pooling and
sigmoid head, fine-tuned on CAIL2019-SCM), op for op, with seeded random
weights. The sample set follows ByteMLPerf's open_cail2019 layout: numpy object
arrays of variable-length token and segment id lists, plus labels.

Run it with Debian's Python, which has python3-onnx and python3-numpy:
    /usr/bin/python3 tools/roformer-fixture/roformer_fixture.py -o models/default
    /usr/bin/python3 tools/roformer-fixture/roformer_fixture.py --small -o /tmp/small

docs/fixture.md lists what the graph reproduces and where it may differ from a
real export.
"""

import argparse
import itertools
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MODEL_FILE = "roformer-frozen_org.onnx"
SAMPLES_DIR = "open_cail2019"

# Every op of the Keras model sits under this scope in a tf2onnx export of a
# TF2 saved_model whose Keras model is named "model".
MODEL_SCOPE = "StatefulPartitionedCall/model"

# Slice end of an open slice such as x[1::2].
SLICE_END = np.iinfo(np.int64).max

# bert4keras 0.10.4 constants: LayerNormalization epsilon, the value written
# into masked attention scores, and the rotary frequency base.
LAYER_NORM_EPSILON = 1e-12
MASKED_SCORE = -1e12
ROTARY_BASE = 10000.0

# Special token ids of the BERT vocabulary layout: 0 is [PAD], which the model
# masks, 1 to 99 are unused, then [UNK], [CLS], [SEP] and [MASK]. Sample texts
# use ids from FIRST_TEXT_ID on.
CLS_ID = 101
SEP_ID = 102
FIRST_TEXT_ID = 104

MIN_OPSET = 11
# ONNX 1.12 supports opsets up to 17. From opset 18 on, ReduceMean and Split take
# other inputs than the graph below gives them.
MAX_OPSET = 17
MIN_EINSUM_OPSET = 12


@dataclass
class ModelConfig:
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int
    seed: int
    einsum: bool
    opset: int
    encoder_output: bool
    rotary_halves: bool
    tf_constfold: bool
    keras_mask_merge: bool
    rotary_table_per_layer: bool

    @property
    def head_size(self):
        return self.hidden // self.heads


# --------------------------------------------------------------------------
# Graph building with tf2onnx-style names


class Tf2OnnxGraph:
    """Collects nodes and initializers, naming them the way a tf2onnx export does.

    A node that stands for a TF op is named after it ("<scope>/mul_1"), with TF's
    rule of appending _1, _2, ... to repeated names in a scope. A node that
    tf2onnx adds while converting a TF op (a Cast after Shape, the Unsqueeze
    nodes of a Pack) is named "<TF op name>__<N>". Output i of a node is the
    tensor "<node name>:<i>".
    """

    def __init__(self, opset):
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self._taken_names = set()
        self._suffix_counter = itertools.count(1)

    # Names

    def tf_name(self, scope, base):
        name = f"{scope}/{base}"
        if name not in self._taken_names:
            self._taken_names.add(name)
            return name
        for index in itertools.count(1):
            candidate = f"{name}_{index}"
            if candidate not in self._taken_names:
                self._taken_names.add(candidate)
                return candidate

    def claim_name(self, name):
        """Take an exact name, as TF does for the op that names a scope (a tensordot's final Reshape)."""
        if name in self._taken_names:
            raise ValueError(f"node name {name} is already taken")
        self._taken_names.add(name)
        return name

    def converter_name(self, tf_op_name):
        name = f"{tf_op_name}__{next(self._suffix_counter)}"
        self._taken_names.add(name)
        return name

    def next_suffix(self):
        return next(self._suffix_counter)

    # Nodes and constants

    def add_node(self, op_type, inputs, name, num_outputs=1, **attributes):
        outputs = [f"{name}:{index}" for index in range(num_outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, **attributes))
        return outputs if num_outputs > 1 else outputs[0]

    def op(self, op_type, inputs, scope, base, **attributes):
        return self.add_node(op_type, inputs, self.tf_name(scope, base), **attributes)

    def converter_op(self, op_type, inputs, tf_op_name, **attributes):
        return self.add_node(op_type, inputs, self.converter_name(tf_op_name), **attributes)

    def constant(self, name, value):
        tensor_name = f"{name}:0"
        self.initializers.append(numpy_helper.from_array(np.asarray(value), tensor_name))
        return tensor_name

    def tf_constant(self, scope, base, value):
        return self.constant(self.tf_name(scope, base), value)

    def int64s(self, node_name, role, values):
        return self.constant(f"{node_name}/{role}", np.array(values, dtype=np.int64))

    # Ops whose form changed between opset 11 and 13: axes became an input.

    def unsqueeze(self, x, axes, name):
        if self.opset >= 13:
            return self.add_node("Unsqueeze", [x, self.int64s(name, "axes", axes)], name)
        return self.add_node("Unsqueeze", [x], name, axes=axes)

    def squeeze(self, x, axes, name):
        if self.opset >= 13:
            return self.add_node("Squeeze", [x, self.int64s(name, "axes", axes)], name)
        return self.add_node("Squeeze", [x], name, axes=axes)

    def reduce_sum(self, x, axes, keepdims, name):
        if self.opset >= 13:
            return self.add_node(
                "ReduceSum", [x, self.int64s(name, "axes", axes)], name, keepdims=keepdims)
        return self.add_node("ReduceSum", [x], name, axes=axes, keepdims=keepdims)

    def slice(self, x, starts, ends, axes, steps, name):
        inputs = [
            x,
            self.int64s(name, "starts", starts),
            self.int64s(name, "ends", ends),
            self.int64s(name, "axes", axes),
            self.int64s(name, "steps", steps),
        ]
        return self.add_node("Slice", inputs, name)

    def cast(self, x, to, name):
        return self.add_node("Cast", [x], name, to=to)


# --------------------------------------------------------------------------
# Weights


def draw_weights(config):
    """Draw every weight in one fixed order, so that graph options never change them.

    Scales follow a trained BERT: normal with std 0.02, LayerNorm gamma near 1,
    small nonzero beta and biases. Q and K kernels use std 2/sqrt(hidden), so
    attention logits spread over a few units as in a trained model. With 0.02
    there, attention is nearly uniform and the output barely depends on position.
    """
    rng = np.random.default_rng(config.seed)
    hidden, ffn = config.hidden, config.ffn
    qk_std = 2.0 / np.sqrt(hidden)

    def normal(shape, std):
        values = rng.standard_normal(shape, dtype=np.float32)
        values *= np.float32(std)
        return values

    def layer_norm():
        return {"gamma": 1.0 + normal([hidden], 0.02), "beta": normal([hidden], 0.02)}

    weights = {
        "token_embedding": normal([config.vocab, hidden], 0.02),
        "segment_embedding": normal([2, hidden], 0.02),
        "embedding_norm": layer_norm(),
        "layers": [],
    }
    for _ in range(config.layers):
        layer = {}
        for projection in ("q", "k", "v", "o"):
            std = qk_std if projection in ("q", "k") else 0.02
            layer[projection] = {"kernel": normal([hidden, hidden], std), "bias": normal([hidden], 0.02)}
        layer["attention_norm"] = layer_norm()
        layer["ffn_in"] = {"kernel": normal([hidden, ffn], 0.02), "bias": normal([ffn], 0.02)}
        layer["ffn_out"] = {"kernel": normal([ffn, hidden], 0.02), "bias": normal([hidden], 0.02)}
        layer["ffn_norm"] = layer_norm()
        weights["layers"].append(layer)
    weights["head"] = {"kernel": normal([hidden, 1], 0.02), "bias": normal([1], 0.02)}
    return weights


# --------------------------------------------------------------------------
# Pieces of the Keras model, each as tf2onnx converts it


def shape_as_int32(graph, x, scope, base="Shape"):
    """tf.shape(x): ONNX Shape returns int64, so tf2onnx casts it to TF's int32."""
    shape_name = graph.tf_name(scope, base)
    shape = graph.add_node("Shape", [x], shape_name)
    return graph.converter_op("Cast", [shape], shape_name, to=TensorProto.INT32)


def shape_dim(graph, shape_int32, index, scope):
    """shape[index] as an int32 scalar: a StridedSlice with shrink_axis, converted to Slice + Squeeze."""
    slice_name = graph.tf_name(scope, "strided_slice")
    sliced = graph.slice(shape_int32, [index], [index + 1], [0], [1], slice_name)
    return graph.squeeze(sliced, [0], graph.converter_name(slice_name))


def reshape_with_packed_shape(graph, x, parts, scope):
    """K.reshape(x, (parts...)) where parts mixes Python ints and int32 scalars.

    TF packs the parts into a shape vector with Pack. tf2onnx converts the Pack
    to one Unsqueeze per scalar tensor and a Concat, with the Python ints folded
    into one-element constants, and casts the result to int64 for Reshape.
    """
    reshape_name = graph.tf_name(scope, "Reshape")
    pack_name = f"{reshape_name}/shape"
    pieces = []
    for index, part in enumerate(parts):
        if isinstance(part, int):
            pieces.append(graph.constant(f"{pack_name}/{index}", np.array([part], dtype=np.int32)))
        else:
            pieces.append(graph.unsqueeze(part, [0], graph.converter_name(pack_name)))
    packed = graph.add_node("Concat", pieces, pack_name, axis=0)
    shape = graph.converter_op("Cast", [packed], reshape_name, to=TensorProto.INT64)
    return graph.add_node("Reshape", [x, shape], reshape_name)


def reshape_like(graph, x, like, scope):
    """K.reshape(x, K.shape(like)): Shape, Cast to int32, Cast back to int64, Reshape."""
    shape = shape_as_int32(graph, like, scope)
    reshape_name = graph.tf_name(scope, "Reshape")
    shape64 = graph.converter_op("Cast", [shape], reshape_name, to=TensorProto.INT64)
    return graph.add_node("Reshape", [x, shape64], reshape_name)


def dense_rank3(graph, x, params, scope, out_dim):
    """Keras Dense on a [batch, seq, in] tensor, which TF computes with tensordot.

    tensordot reshapes x to 2-D with a shape computed at run time from
    Shape/Gather/ReduceProd/Pack, multiplies, and reshapes back to
    Concat(Gather(shape, [0, 1]), [out]). The bias is a BiasAdd, an Add in ONNX.
    """
    tensordot = f"{scope}/Tensordot"
    kernel = graph.constant(f"{tensordot}/ReadVariableOp", params["kernel"])
    bias = graph.constant(f"{scope}/BiasAdd/ReadVariableOp", params["bias"])

    shape = shape_as_int32(graph, x, tensordot)
    free = graph.tf_constant(tensordot, "free", np.array([0, 1], dtype=np.int32))
    axes = graph.tf_constant(tensordot, "axes", np.array([2], dtype=np.int32))
    free_dims = graph.op("Gather", [shape, free], tensordot, "GatherV2", axis=0)
    axes_dims = graph.op("Gather", [shape, axes], tensordot, "GatherV2", axis=0)
    free_size = graph.op("ReduceProd", [free_dims], tensordot, "Prod", axes=[0], keepdims=0)
    axes_size = graph.op("ReduceProd", [axes_dims], tensordot, "Prod", axes=[0], keepdims=0)

    stack_name = graph.tf_name(tensordot, "stack")
    matrix_shape = graph.add_node(
        "Concat",
        [
            graph.unsqueeze(free_size, [0], graph.converter_name(stack_name)),
            graph.unsqueeze(axes_size, [0], graph.converter_name(stack_name)),
        ],
        stack_name,
        axis=0,
    )
    reshape_name = graph.tf_name(tensordot, "Reshape")
    matrix_shape64 = graph.converter_op("Cast", [matrix_shape], reshape_name, to=TensorProto.INT64)
    matrix = graph.add_node("Reshape", [x, matrix_shape64], reshape_name)
    product = graph.op("MatMul", [matrix, kernel], tensordot, "MatMul")

    out_dims = graph.tf_constant(tensordot, "Const", np.array([out_dim], dtype=np.int32))
    result_shape = graph.op("Concat", [free_dims, out_dims], tensordot, "concat_1", axis=0)
    result_name = graph.claim_name(tensordot)
    result_shape64 = graph.converter_op("Cast", [result_shape], result_name, to=TensorProto.INT64)
    result = graph.add_node("Reshape", [product, result_shape64], result_name)
    return graph.op("Add", [result, bias], scope, "BiasAdd")


def layer_norm(graph, x, params, scope):
    """bert4keras LayerNormalization: (x - mean) / sqrt(var + eps) * gamma + beta."""
    gamma = graph.constant(f"{scope}/mul/ReadVariableOp", params["gamma"])
    beta = graph.constant(f"{scope}/add_1/ReadVariableOp", params["beta"])
    epsilon = graph.tf_constant(scope, "add/y", np.float32(LAYER_NORM_EPSILON))

    mean = graph.op("ReduceMean", [x], scope, "Mean", axes=[-1], keepdims=1)
    centered = graph.op("Sub", [x, mean], scope, "sub")
    square = graph.op("Mul", [centered, centered], scope, "Square")
    variance = graph.op("ReduceMean", [square], scope, "Mean", axes=[-1], keepdims=1)
    shifted = graph.op("Add", [variance, epsilon], scope, "add")
    std = graph.op("Sqrt", [shifted], scope, "Sqrt")
    normalized = graph.op("Div", [centered, std], scope, "truediv")
    scaled = graph.op("Mul", [normalized, gamma], scope, "mul")
    return graph.op("Add", [scaled, beta], scope, "add")


def divide_by_constant(graph, config, x, divisor, scope):
    """Divide x by a constant, as Div or, after TF's grappler constant folding
    (which tf2onnx runs), as Mul by the reciprocal."""
    if config.tf_constfold:
        reciprocal = graph.tf_constant(scope, "truediv/recip", np.float32(1.0 / divisor))
        return graph.op("Mul", [x, reciprocal], scope, "truediv")
    denominator = graph.tf_constant(scope, "truediv/y", np.float32(divisor))
    return graph.op("Div", [x, denominator], scope, "truediv")


def merge_masks(graph, masks, scope):
    """The mask Keras' Add layer attaches to its output: all(concat([m[None] for m in masks]), axis=0).

    tf2onnx converts All into Cast to float, ReduceMin and Greater than zero.
    """
    expanded = [graph.unsqueeze(mask, [0], graph.tf_name(scope, "ExpandDims")) for mask in masks]
    stacked = graph.op("Concat", expanded, scope, "concat", axis=0)
    all_name = graph.tf_name(scope, "All")
    as_float = graph.converter_op("Cast", [stacked], all_name, to=TensorProto.FLOAT)
    minimum = graph.converter_op("ReduceMin", [as_float], all_name, axes=[0], keepdims=0)
    zero = graph.constant(f"{all_name}/zero", np.float32(0.0))
    return graph.add_node("Greater", [minimum, zero], all_name)


def embeddings(graph, config, weights, token_input, segment_input):
    """Token and segment embeddings, their sum, the padding mask and Embedding-Norm."""
    token_scope = f"{MODEL_SCOPE}/Embedding-Token"
    segment_scope = f"{MODEL_SCOPE}/Embedding-Segment"

    token_table = graph.constant(f"{token_scope}/embedding_lookup/ReadVariableOp", weights["token_embedding"])
    token_ids = graph.op("Cast", [token_input], token_scope, "Cast", to=TensorProto.INT32)
    token_vectors = graph.op("Gather", [token_table, token_ids], token_scope, "embedding_lookup", axis=0)

    segment_table = graph.constant(
        f"{segment_scope}/embedding_lookup/ReadVariableOp", weights["segment_embedding"])
    segment_ids = graph.op("Cast", [segment_input], segment_scope, "Cast", to=TensorProto.INT32)
    segment_vectors = graph.op("Gather", [segment_table, segment_ids], segment_scope, "embedding_lookup", axis=0)

    mask = token_mask(graph, token_input, token_scope)

    sum_scope = f"{MODEL_SCOPE}/Embedding-Token-Segment"
    x = graph.op("Add", [token_vectors, segment_vectors], sum_scope, "add")
    if config.keras_mask_merge:
        mask = merge_masks(graph, [mask], sum_scope)

    x = layer_norm(graph, x, weights["embedding_norm"], f"{MODEL_SCOPE}/Embedding-Norm")
    return x, mask


def token_mask(graph, token_input, scope):
    """bert4keras Embedding.compute_mask: token != 0, with position 0 always unmasked.

    NotEqual becomes Equal + Not, and ones_like(mask[:, :1]) becomes
    Shape + ConstantOfShape. Concat joins the two parts along the sequence.
    """
    zero = graph.tf_constant(scope, "NotEqual/y", np.float32(0.0))
    not_equal_name = graph.tf_name(scope, "NotEqual")
    equal = graph.add_node("Equal", [token_input, zero], not_equal_name)
    nonzero = graph.converter_op("Not", [equal], not_equal_name)

    first_column = graph.slice(nonzero, [0], [1], [1], [1], graph.tf_name(scope, "strided_slice"))
    ones_scope = f"{scope}/ones_like"
    ones_shape = shape_as_int32(graph, first_column, ones_scope)
    ones_name = graph.tf_name(scope, "ones_like")
    ones_shape64 = graph.converter_op("Cast", [ones_shape], ones_name, to=TensorProto.INT64)
    true_value = helper.make_tensor("value", TensorProto.BOOL, [1], [True])
    ones = graph.add_node("ConstantOfShape", [ones_shape64], ones_name, value=true_value)
    rest = graph.slice(nonzero, [1], [SLICE_END], [1], [1], graph.tf_name(scope, "strided_slice"))
    return graph.op("Concat", [ones, rest], scope, "concat", axis=1)


def rotary_table(graph, config, x, scope):
    """bert4keras SinusoidalPositionEmbedding(merge_mode='zero'): [1, S, head_size].

    Row p is [sin(p w_0), cos(p w_0), sin(p w_1), cos(p w_1), ...] with
    w_i = 10000^(-2i / head_size), computed from the run-time sequence length.
    """
    half = config.head_size // 2
    shape = shape_as_int32(graph, x, scope)
    seq_len = shape_dim(graph, shape, 1, scope)

    start = graph.tf_constant(scope, "arange/start", np.int32(0))
    delta = graph.tf_constant(scope, "arange/delta", np.int32(1))
    positions = graph.op("Range", [start, seq_len, delta], scope, "arange")
    positions = graph.op("Cast", [positions], scope, "Cast", to=TensorProto.FLOAT)
    positions = graph.unsqueeze(positions, [0], graph.tf_name(scope, "strided_slice"))

    exponents = (-2.0 * np.arange(half, dtype=np.float32) / config.head_size).astype(np.float32)
    if config.tf_constfold:
        frequencies = graph.tf_constant(scope, "Pow", np.power(np.float32(ROTARY_BASE), exponents))
    else:
        base = graph.tf_constant(scope, "Pow/x", np.float32(ROTARY_BASE))
        exponent = graph.tf_constant(scope, "truediv", exponents)
        frequencies = graph.op("Pow", [base, exponent], scope, "Pow")

    if config.einsum:
        angles = graph.op("Einsum", [positions, frequencies], f"{scope}/einsum", "Einsum", equation="bn,d->bnd")
    else:
        column = graph.unsqueeze(positions, [2], graph.tf_name(f"{scope}/einsum", "ExpandDims"))
        angles = graph.op("Mul", [column, frequencies], f"{scope}/einsum", "mul")

    stack_name = graph.tf_name(scope, "stack")
    sines = graph.op("Sin", [angles], scope, "Sin")
    cosines = graph.op("Cos", [angles], scope, "Cos")
    pairs = graph.add_node(
        "Concat",
        [
            graph.unsqueeze(sines, [3], graph.converter_name(stack_name)),
            graph.unsqueeze(cosines, [3], graph.converter_name(stack_name)),
        ],
        stack_name,
        axis=3,
    )
    return reshape_with_packed_shape(graph, pairs, [-1, seq_len, config.head_size], scope)


def cos_sin_columns(graph, config, table, scope):
    """cos_pos and sin_pos of bert4keras' rotary attention, [1, S, 1, head_size].

    cos_pos = repeat_elements(table[..., None, 1::2], 2, -1), sin_pos the same on
    the even columns. Keras' repeat_elements splits the last axis into
    head_size/2 pieces and concatenates each piece twice. With rotary_halves the
    columns are tiled instead ([c_0 .. c_n, c_0 .. c_n]), the layout of a
    rotation of halves.
    """
    half = config.head_size // 2
    columns = []
    for start in (1, 0):
        slice_name = graph.tf_name(scope, "strided_slice")
        sliced = graph.slice(table, [start], [SLICE_END], [2], [2], slice_name)
        sliced = graph.unsqueeze(sliced, [2], graph.converter_name(slice_name))
        if config.rotary_halves:
            columns.append(graph.op("Concat", [sliced, sliced], scope, "concat", axis=3))
            continue
        pieces = graph.add_node("Split", [sliced], graph.tf_name(scope, "split"), num_outputs=half, axis=3)
        repeated = [piece for piece in pieces for _ in range(2)]
        columns.append(graph.op("Concat", repeated, scope, "concat", axis=3))
    return columns


def apply_rotary(graph, config, x, cos_pos, sin_pos, scope):
    """x * cos_pos + x2 * sin_pos, where x2 = stack([-x[..., 1::2], x[..., ::2]], 4) reshaped to x's shape.

    With rotary_halves, x2 = concat([-x[..., d/2:], x[..., :d/2]]) instead.
    """
    half = config.head_size // 2
    if config.rotary_halves:
        upper = graph.slice(x, [half], [config.head_size], [3], [1], graph.tf_name(scope, "strided_slice"))
        lower = graph.slice(x, [0], [half], [3], [1], graph.tf_name(scope, "strided_slice"))
        negated = graph.op("Neg", [upper], scope, "Neg")
        rotated = graph.op("Concat", [negated, lower], scope, "concat", axis=3)
    else:
        odd = graph.slice(x, [1], [SLICE_END], [3], [2], graph.tf_name(scope, "strided_slice"))
        negated = graph.op("Neg", [odd], scope, "Neg")
        even = graph.slice(x, [0], [SLICE_END], [3], [2], graph.tf_name(scope, "strided_slice"))
        stack_name = graph.tf_name(scope, "stack")
        stacked = graph.add_node(
            "Concat",
            [
                graph.unsqueeze(negated, [4], graph.converter_name(stack_name)),
                graph.unsqueeze(even, [4], graph.converter_name(stack_name)),
            ],
            stack_name,
            axis=4,
        )
        rotated = reshape_like(graph, stacked, x, scope)
    with_cos = graph.op("Mul", [x, cos_pos], scope, "mul")
    with_sin = graph.op("Mul", [rotated, sin_pos], scope, "mul")
    return graph.op("Add", [with_cos, with_sin], scope, "add")


def attention_scores(graph, config, q, k, scope):
    """einsum('bjhd,bkhd->bhjk', q, k), or the same contraction as Transpose + MatMul."""
    if config.einsum:
        return graph.op("Einsum", [q, k], f"{scope}/einsum", "Einsum", equation="bjhd,bkhd->bhjk")
    einsum_scope = f"{scope}/einsum"
    q_heads = graph.op("Transpose", [q], einsum_scope, "transpose", perm=[0, 2, 1, 3])
    k_heads = graph.op("Transpose", [k], einsum_scope, "transpose", perm=[0, 2, 3, 1])
    return graph.op("MatMul", [q_heads, k_heads], einsum_scope, "MatMul")


def attention_context(graph, config, probabilities, v, scope):
    """einsum('bhjk,bkhd->bjhd', probabilities, v), or Transpose + MatMul + Transpose."""
    if config.einsum:
        return graph.op("Einsum", [probabilities, v], f"{scope}/einsum_1", "Einsum", equation="bhjk,bkhd->bjhd")
    einsum_scope = f"{scope}/einsum_1"
    v_heads = graph.op("Transpose", [v], einsum_scope, "transpose", perm=[0, 2, 1, 3])
    context = graph.op("MatMul", [probabilities, v_heads], einsum_scope, "MatMul")
    return graph.op("Transpose", [context], einsum_scope, "transpose", perm=[0, 2, 1, 3])


def mask_scores(graph, config, scores, mask, scope):
    """bert4keras sequence_masking(scores, mask, '-inf', -1): scores * m + (-1e12) * (1 - m),
    with m the float mask expanded to [batch, 1, 1, seq]."""
    mask = graph.op("Cast", [mask], scope, "Cast", to=TensorProto.FLOAT)
    mask = graph.unsqueeze(mask, [1], graph.tf_name(scope, "ExpandDims"))
    mask = graph.unsqueeze(mask, [1], graph.tf_name(scope, "ExpandDims"))
    kept = graph.op("Mul", [scores, mask], scope, "mul")
    one = graph.tf_constant(scope, "sub/x", np.float32(1.0))
    inverted = graph.op("Sub", [one, mask], scope, "sub")
    masked_value = graph.tf_constant(scope, "mul/x", np.float32(MASKED_SCORE))
    penalty = graph.op("Mul", [masked_value, inverted], scope, "mul")
    return graph.op("Add", [kept, penalty], scope, "add")


def self_attention(graph, config, weights, x, mask, table, index, dense_names):
    """bert4keras MultiHeadAttention with rotary position embedding, on [x, x, x, table]."""
    scope = f"{MODEL_SCOPE}/Transformer-{index}-MultiHeadSelfAttention"
    hidden, heads, head_size = config.hidden, config.heads, config.head_size

    projections = {}
    for name in ("q", "k", "v"):
        projections[name] = dense_rank3(graph, x, weights[name], f"{scope}/{next(dense_names)}", hidden)
    heads_shaped = {}
    for name in ("q", "k", "v"):
        seq_len = shape_dim(graph, shape_as_int32(graph, x, scope), 1, scope)
        heads_shaped[name] = reshape_with_packed_shape(
            graph, projections[name], [-1, seq_len, heads, head_size], scope)

    if config.rotary_table_per_layer:
        table = rotary_table(graph, config, x, f"{scope}/Embedding-Rotary-Position")
    cos_pos, sin_pos = cos_sin_columns(graph, config, table, scope)
    q = apply_rotary(graph, config, heads_shaped["q"], cos_pos, sin_pos, scope)
    k = apply_rotary(graph, config, heads_shaped["k"], cos_pos, sin_pos, scope)

    scores = attention_scores(graph, config, q, k, scope)
    scores = divide_by_constant(graph, config, scores, float(np.sqrt(head_size)), scope)
    scores = mask_scores(graph, config, scores, mask, scope)
    softmax_axis = -1 if config.opset >= 13 else 3
    probabilities = graph.op("Softmax", [scores], scope, "Softmax", axis=softmax_axis)
    context = attention_context(graph, config, probabilities, heads_shaped["v"], scope)

    seq_len = shape_dim(graph, shape_as_int32(graph, context, scope), 1, scope)
    context = reshape_with_packed_shape(graph, context, [-1, seq_len, hidden], scope)
    return dense_rank3(graph, context, weights["o"], f"{scope}/{next(dense_names)}", hidden)


def gelu_erf(graph, config, x, scope):
    """bert4keras gelu_erf: 0.5 * x * (1 + erf(x / sqrt(2)))."""
    half = graph.tf_constant(scope, "mul/x", np.float32(0.5))
    scaled = graph.op("Mul", [half, x], scope, "mul")
    erf_input = divide_by_constant(graph, config, x, float(np.sqrt(2.0)), scope)
    erf = graph.op("Erf", [erf_input], scope, "Erf")
    one = graph.tf_constant(scope, "add/x", np.float32(1.0))
    shifted = graph.op("Add", [one, erf], scope, "add")
    return graph.op("Mul", [scaled, shifted], scope, "mul")


def feed_forward(graph, config, weights, x, index, dense_names):
    scope = f"{MODEL_SCOPE}/Transformer-{index}-FeedForward"
    inner_scope = f"{scope}/{next(dense_names)}"
    inner = dense_rank3(graph, x, weights["ffn_in"], inner_scope, config.ffn)
    inner = gelu_erf(graph, config, inner, inner_scope)
    return dense_rank3(graph, inner, weights["ffn_out"], f"{scope}/{next(dense_names)}", config.hidden)


def residual(graph, config, x, update, mask, scope):
    """Keras Add([x, update]) and, when Keras mask propagation is modelled, its merged mask."""
    total = graph.op("Add", [x, update], scope, "add")
    if config.keras_mask_merge:
        mask = merge_masks(graph, [mask, mask], scope)
    return total, mask


def pooled_score(graph, weights, x, mask, dense_name):
    """Masked mean pooling (Keras GlobalAveragePooling1D with a mask), Dense(1), sigmoid."""
    scope = f"{MODEL_SCOPE}/global_average_pooling1d"
    mask = graph.op("Cast", [mask], scope, "Cast", to=TensorProto.FLOAT)
    mask = graph.unsqueeze(mask, [2], graph.tf_name(scope, "ExpandDims"))
    masked = graph.op("Mul", [x, mask], scope, "mul")
    total = graph.reduce_sum(masked, [1], 0, graph.tf_name(scope, "Sum"))
    count = graph.reduce_sum(mask, [1], 0, graph.tf_name(scope, "Sum"))
    pooled = graph.op("Div", [total, count], scope, "truediv")

    dense_scope = f"{MODEL_SCOPE}/{dense_name}"
    kernel = graph.constant(f"{dense_scope}/MatMul/ReadVariableOp", weights["kernel"])
    bias = graph.constant(f"{dense_scope}/BiasAdd/ReadVariableOp", weights["bias"])
    logits = graph.op("MatMul", [pooled, kernel], dense_scope, "MatMul")
    logits = graph.op("Add", [logits, bias], dense_scope, "BiasAdd")
    return graph.op("Sigmoid", [logits], dense_scope, "Sigmoid")


def keras_dense_names():
    """Keras names Dense layers dense, dense_1, dense_2, ... in creation order."""
    yield "dense"
    for index in itertools.count(1):
        yield f"dense_{index}"


# --------------------------------------------------------------------------
# The model


def build_model(config, weights=None):
    if weights is None:
        weights = draw_weights(config)
    graph = Tf2OnnxGraph(config.opset)
    dense_names = keras_dense_names()

    token_input, segment_input = "input_token:0", "input_segment:0"
    x, mask = embeddings(graph, config, weights, token_input, segment_input)

    table = None
    if not config.rotary_table_per_layer:
        table = rotary_table(graph, config, x, f"{MODEL_SCOPE}/Embedding-Rotary-Position")

    for index in range(config.layers):
        layer = weights["layers"][index]
        attention_scope = f"{MODEL_SCOPE}/Transformer-{index}-MultiHeadSelfAttention"
        update = self_attention(graph, config, layer, x, mask, table, index, dense_names)
        x, mask = residual(graph, config, x, update, mask, f"{attention_scope}-Add")
        x = layer_norm(graph, x, layer["attention_norm"], f"{attention_scope}-Norm")

        feed_forward_scope = f"{MODEL_SCOPE}/Transformer-{index}-FeedForward"
        update = feed_forward(graph, config, layer, x, index, dense_names)
        x, mask = residual(graph, config, x, update, mask, f"{feed_forward_scope}-Add")
        x = layer_norm(graph, x, layer["ffn_norm"], f"{feed_forward_scope}-Norm")

    score = pooled_score(graph, weights["head"], x, mask, next(dense_names))
    graph.add_node("Identity", [score], "Identity")

    outputs = [("Identity:0", ["unk", 1])]
    if config.encoder_output:
        graph.add_node("Identity", [x], "encoder_output")
        outputs.append(("encoder_output:0", ["unk", "unk", config.hidden]))
    return make_model_proto(graph, config, outputs)


def make_model_proto(graph, config, outputs):
    """Wrap the nodes into a model whose unknown dims are named unk__N, as tf2onnx names them."""

    def dims(template):
        return [f"unk__{graph.next_suffix()}" if dim == "unk" else dim for dim in template]

    inputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, dims(["unk", "unk"]))
        for name in ("input_segment:0", "input_token:0")
    ]
    output_infos = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, dims(template)) for name, template in outputs
    ]
    onnx_graph = helper.make_graph(
        graph.nodes, "tf2onnx", inputs, output_infos, initializer=graph.initializers)
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", config.opset)],
        producer_name="roformer-fixture",
        doc_string=(
            "Seeded random-weight RoFormer laid out like the tf2onnx export of "
            f"ByteMLPerf open_roformer: layers={config.layers} hidden={config.hidden} "
            f"heads={config.heads} ffn={config.ffn} vocab={config.vocab} seed={config.seed}"
        ),
    )
    return model


# --------------------------------------------------------------------------
# Sample set


def make_samples(count, max_seq_len, vocab, seed):
    """Build count sequences as (similar, dissimilar) pairs sharing their first text.

    Each sequence is [CLS] A [SEP] B [SEP]. Segment ids are 0 up to and including
    the first [SEP] and 1 after it. Texts are drawn long, like legal case
    descriptions, so many pairs are truncated to exactly max_seq_len, the longer
    text losing its last tokens first.
    """
    rng = np.random.default_rng(seed + 1)
    text_budget = max_seq_len - 3
    topics = rng.integers(FIRST_TEXT_ID, vocab, size=(8, 64))

    def draw_text(topic):
        length = int(rng.integers(max(1, text_budget // 20), max(2, int(text_budget * 0.9)) + 1))
        on_topic = rng.choice(topics[topic], size=length)
        random_ids = rng.integers(FIRST_TEXT_ID, vocab, size=length)
        return np.where(rng.random(length) < 0.7, on_topic, random_ids).tolist()

    token_lists, segment_lists, labels = [], [], []
    for _ in range(count // 2):
        topic = int(rng.integers(len(topics)))
        other_topic = (topic + 1 + int(rng.integers(len(topics) - 1))) % len(topics)
        first = draw_text(topic)
        for label, second in ((1, draw_text(topic)), (0, draw_text(other_topic))):
            a, b = truncate_pair(list(first), second, text_budget)
            token_lists.append([CLS_ID] + a + [SEP_ID] + b + [SEP_ID])
            segment_lists.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
            labels.append(label)
    return token_lists, segment_lists, labels


def truncate_pair(first, second, budget):
    while len(first) + len(second) > budget:
        longer = first if len(first) > len(second) else second
        longer.pop()
    return first, second


def object_array(lists):
    """A 1-D numpy object array of Python int lists, the layout np.save pickles."""
    array = np.empty(len(lists), dtype=object)
    for index, values in enumerate(lists):
        array[index] = [int(value) for value in values]
    return array


def write_samples(directory, count, max_seq_len, vocab, seed):
    os.makedirs(directory, exist_ok=True)
    tokens, segments, labels = make_samples(count, max_seq_len, vocab, seed)
    save_npy(os.path.join(directory, "batch_token_ids.npy"), object_array(tokens))
    save_npy(os.path.join(directory, "batch_segment_ids.npy"), object_array(segments))
    save_npy(os.path.join(directory, "label.npy"), np.array(labels, dtype=np.int64))


def save_npy(path, array):
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "wb") as handle:
        np.save(handle, array, allow_pickle=True)
    os.replace(temporary, path)


def save_model(path, model):
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "wb") as handle:
            handle.write(model.SerializeToString())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


# --------------------------------------------------------------------------
# Command line

SMALL_SIZE = {"layers": 2, "hidden": 64, "heads": 4, "ffn": 256, "vocab": 1000}
DEFAULT_SIZE = {"layers": 12, "hidden": 768, "heads": 12, "ffn": 3072, "vocab": 50000}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but exiting with 1 on invalid arguments, like every tool of the project."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def parse_args(argv):
    parser = ArgumentParser(
        prog="roformer-fixture",
        description=(
            "Write roformer-frozen_org.onnx (a seeded random-weight RoFormer laid out like the "
            "tf2onnx export of ByteMLPerf open_roformer) and an open_cail2019 sample set into DIR."
        ))
    parser.add_argument("-o", "--output-dir", required=True, metavar="DIR", help="output folder (created if missing)")
    size = parser.add_argument_group("model size (default: 12 layers, hidden 768, 12 heads, ffn 3072, vocab 50000)")
    size.add_argument("--small", action="store_true",
                      help="test size: 2 layers, hidden 64, 4 heads, ffn 256, vocab 1000 (explicit size flags override it)")
    size.add_argument("--layers", type=int, help="number of encoder layers")
    size.add_argument("--hidden", type=int, help="hidden size")
    size.add_argument("--heads", type=int, help="number of attention heads (hidden/heads must be even)")
    size.add_argument("--ffn", type=int, help="feed-forward inner size")
    size.add_argument("--vocab", type=int, help=f"vocabulary size, at least {FIRST_TEXT_ID + 1}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and samples (default 0)")
    parser.add_argument("--einsum", action=argparse.BooleanOptionalAction, default=True,
                        help="attention products as Einsum (opset >= 12) or, with --no-einsum, Transpose + MatMul")
    parser.add_argument("--opset", type=int, default=13, help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default 13)")
    parser.add_argument("--encoder-output", action="store_true",
                        help="also output the last encoder layer as encoder_output:0 [batch, seq, hidden]")
    parser.add_argument("--samples", type=int, default=64,
                        help="number of sample sequences, an even number: (similar, dissimilar) pairs (default 64)")
    parser.add_argument("--max-seq-len", type=int, default=1024,
                        help="maximum sample length in tokens, at least 8 (default 1024)")
    fidelity = parser.add_argument_group("export details")
    fidelity.add_argument("--tf-constfold", action=argparse.BooleanOptionalAction, default=True,
                          help="apply what TF's grappler constant folding does inside tf2onnx: division by a "
                               "constant becomes multiplication by its reciprocal and the rotary frequencies are a "
                               "constant; --no-tf-constfold keeps the literal Div and Pow ops")
    fidelity.add_argument("--keras-mask-merge", action=argparse.BooleanOptionalAction, default=True,
                          help="model the mask each Keras Add layer derives from its inputs' masks "
                               "(Unsqueeze, Concat, Cast, ReduceMin, Greater after every residual Add)")
    fidelity.add_argument("--rotary-table-per-layer", action="store_true",
                          help="compute the sinusoid table in every layer (bert4keras computes it once and shares it)")
    fidelity.add_argument("--rotary-halves", action="store_true",
                          help="for tests only: rotate halves instead of interleaved pairs, a deliberately wrong model")
    parser.add_argument("--no-samples", action="store_true", help="write only the model")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)

    base = SMALL_SIZE if args.small else DEFAULT_SIZE
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    validate_args(parser, args)
    return args


def validate_args(parser, args):
    for key in ("layers", "hidden", "heads", "ffn"):
        if getattr(args, key) < 1:
            parser.error(f"--{key} must be at least 1, got {getattr(args, key)}")
    if args.hidden % args.heads != 0:
        parser.error(f"--hidden {args.hidden} is not divisible by --heads {args.heads}")
    if (args.hidden // args.heads) % 2 != 0:
        parser.error(f"head size {args.hidden // args.heads} (hidden/heads) must be even for the rotary embedding")
    if args.vocab <= FIRST_TEXT_ID:
        parser.error(f"--vocab must be more than {FIRST_TEXT_ID} so that samples have text ids, got {args.vocab}")
    if not MIN_OPSET <= args.opset <= MAX_OPSET:
        parser.error(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {args.opset}")
    if args.einsum and args.opset < MIN_EINSUM_OPSET:
        parser.error(f"Einsum needs opset {MIN_EINSUM_OPSET} or later; pass --no-einsum for opset {args.opset}")
    if args.samples < 2 or args.samples % 2 != 0:
        parser.error(f"--samples must be an even number of at least 2, got {args.samples}")
    if args.max_seq_len < 8:
        parser.error(f"--max-seq-len must be at least 8, got {args.max_seq_len}")


def config_from_args(args):
    return ModelConfig(
        layers=args.layers, hidden=args.hidden, heads=args.heads, ffn=args.ffn, vocab=args.vocab,
        seed=args.seed, einsum=args.einsum, opset=args.opset, encoder_output=args.encoder_output,
        rotary_halves=args.rotary_halves, tf_constfold=args.tf_constfold,
        keras_mask_merge=args.keras_mask_merge, rotary_table_per_layer=args.rotary_table_per_layer)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = config_from_args(args)
    started = time.monotonic()
    try:
        os.makedirs(args.output_dir, exist_ok=True)
        model = build_model(config)
        model_path = os.path.join(args.output_dir, MODEL_FILE)
        save_model(model_path, model)
        if not args.no_samples:
            samples_dir = os.path.join(args.output_dir, SAMPLES_DIR)
            write_samples(samples_dir, args.samples, args.max_seq_len, args.vocab, args.seed)
    except OSError as error:
        print(f"roformer_fixture: error: cannot write into {args.output_dir}: {error}", file=sys.stderr)
        return 1

    if not args.quiet:
        size_mb = os.path.getsize(model_path) / 1e6
        print(f"wrote {model_path} ({len(model.graph.node)} nodes, {size_mb:.1f} MB) "
              f"in {time.monotonic() - started:.2f} s")
        if not args.no_samples:
            print(f"wrote {args.samples} sample sequences into {samples_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
