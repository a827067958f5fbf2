#!/usr/bin/python3
"""Write the lit inputs of fuse-rotary-attention: small rotary attention blocks.

Each block is the tf2onnx form of bert4keras' RoFormer self-attention with
hidden 8, 2 heads of size 4 and sequence 4, small enough to print its rotary
tables. The expected caches in the CHECK lines are computed here with NumPy
from the RoPE formula, independently of the pass.

    /usr/bin/python3 test/lit/fuse-rotary-attention/generate_inputs.py

rewrites every .onnxtxt file of this folder except those listed in
HAND_WRITTEN.
"""

import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HIDDEN, HEADS, HEAD_SIZE, SEQ = 8, 2, 4, 4
INT64_MAX = 9223372036854775807
ROPE_BASE = 10000.0


# --------------------------------------------------------------------------
# Number spelling, as the roformer-opt text printer writes it (C++ to_chars)


def spell_float(value):
    """Shortest round-trip spelling of a float32, fixed or scientific, like std::to_chars."""
    value = np.float32(value)
    if value == 0:
        return "-0.0" if np.signbit(value) else "0.0"
    scientific = np.format_float_scientific(value, unique=True, trim="-")
    mantissa, exponent = scientific.split("e")
    exponent = int(exponent)
    digits = mantissa.replace("-", "").replace(".", "")
    sign = "-" if value < 0 else ""
    sci = f"{sign}{digits[0]}{'.' + digits[1:] if len(digits) > 1 else ''}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"
    point = exponent + 1
    if point <= 0:
        fixed = f"{sign}0.{'0' * -point}{digits}"
    elif point >= len(digits):
        fixed = f"{sign}{digits}{'0' * (point - len(digits))}"
    else:
        fixed = f"{sign}{digits[:point]}.{digits[point:]}"
    text = fixed if len(fixed) <= len(sci) else sci
    if not any(c in text for c in ".eE"):
        text += ".0"
    return text


def floats(values):
    return "{" + ", ".join(spell_float(v) for v in np.asarray(values, dtype=np.float32).ravel()) + "}"


def ints(values):
    return "{" + ", ".join(str(int(v)) for v in np.asarray(values).ravel()) + "}"


# --------------------------------------------------------------------------
# RoPE tables


def frequencies(base=ROPE_BASE):
    """w_i = base^(-2i/d) in float32, as TF folds the Pow constant."""
    exponents = (-2.0 * np.arange(HEAD_SIZE // 2, dtype=np.float32) / HEAD_SIZE).astype(np.float32)
    return np.power(np.float32(base), exponents).astype(np.float32), exponents


def sinusoid_table(base=ROPE_BASE, rows=SEQ):
    """bert4keras' [rows, d] table: [sin(p w_0), cos(p w_0), sin(p w_1), cos(p w_1), ...]."""
    w, _ = frequencies(base)
    angles = np.arange(rows, dtype=np.float32)[:, None] * w[None, :]
    table = np.empty((rows, HEAD_SIZE), dtype=np.float32)
    table[:, 0::2] = np.sin(angles.astype(np.float64))
    table[:, 1::2] = np.cos(angles.astype(np.float64))
    return table


def rope_positions(base=ROPE_BASE, rows=SEQ):
    """cos_pos and sin_pos [1, rows, 1, d]: odd (cos) and even (sin) columns repeated pairwise."""
    table = sinusoid_table(base, rows)
    cos_pos = np.repeat(table[:, 1::2], 2, axis=1).reshape(1, rows, 1, HEAD_SIZE)
    sin_pos = np.repeat(table[:, 0::2], 2, axis=1).reshape(1, rows, 1, HEAD_SIZE)
    return cos_pos, sin_pos


def expected_caches(rows):
    """The caches [rows, d/2] of the computed form: cos/sin(float32(p) * w_i)."""
    w, _ = frequencies()
    angles = (np.arange(rows, dtype=np.float32)[:, None] * w[None, :]).astype(np.float32)
    return (np.cos(angles.astype(np.float64)).astype(np.float32),
            np.sin(angles.astype(np.float64)).astype(np.float32))


# --------------------------------------------------------------------------
# Graph text


class Graph:
    def __init__(self, name, opset):
        self.name = name
        self.opset = opset
        self.initializers = []
        self.nodes = []
        self.constants = {}

    def init(self, text):
        self.initializers.append(text)

    def const(self, dtype, name, values, dims):
        """A named constant, declared once even if several blocks use it."""
        if name not in self.constants:
            dims_text = ", ".join(str(d) for d in dims)
            body = floats(values) if dtype == "float" else ints(values)
            self.init(f"{dtype}[{dims_text}] {name} = {body}")
            self.constants[name] = True
        return name

    def node(self, text):
        self.nodes.append(f"  {text}")

    def blank(self):
        self.nodes.append("")

    def axes(self, values, op_name="axes"):
        """Unsqueeze/Squeeze axes: an input from opset 13, an attribute before."""
        if self.opset >= 13:
            name = f"axes_{'_'.join(str(v).replace('-', 'm') for v in values)}"
            return "", ", " + self.const("int64", name, values, [len(values)])
        return f" <axes = [{', '.join(str(v) for v in values)}]>", ""

    def unsqueeze(self, out, x, values):
        attr, extra = self.axes(values)
        self.node(f"{out} = Unsqueeze{attr} ({x}{extra})")

    def strided_slice(self, out, x, start, axis, step=2):
        start_name = self.const("int64", f"start_{start}", [start], [1])
        end_name = self.const("int64", "end_max", [INT64_MAX], [1])
        axis_name = self.const("int64", f"axis_{axis}", [axis], [1])
        step_name = self.const("int64", f"step_{step}", [step], [1])
        self.node(f"{out} = Slice ({x}, {start_name}, {end_name}, {axis_name}, {step_name})")

    def text(self, inputs, outputs):
        lines = ["<", "  ir_version: 8,", f'  opset_import: ["" : {self.opset}]', ">"]
        lines.append(f"{self.name} ({', '.join(inputs)}) => ({', '.join(outputs)}) <")
        lines.append(",\n".join(f"  {text}" for text in self.initializers))
        lines.append("> {")
        while self.nodes and self.nodes[-1] == "":
            self.nodes.pop()
        lines.extend(self.nodes)
        lines.append("}")
        return "\n".join(lines) + "\n"


def weights(seed):
    rng = np.random.default_rng(seed)
    matrices = {}
    for name in ("q", "k", "v"):
        matrices[name] = (np.round(rng.standard_normal((HIDDEN, HIDDEN)) * 0.5, 1),
                          np.round(rng.standard_normal(HIDDEN) * 0.1, 1))
    return matrices


def projections(g, p, x, seed, tensordot=False):
    """Q/K/V dense layers: Add(MatMul(x, W), b), or tensordot's Reshape-MatMul-Reshape with
    shapes computed from Shape(x) as tf2onnx writes them."""
    outputs = {}
    if tensordot:
        g.node(f"{p}x_shape = Shape ({x})")
        free = g.const("int64", "free_axes", [0, 1], [2])
        g.node(f"{p}x_free = Gather <axis = 0> ({p}x_shape, {free})")
        last = g.const("int64", "last_axis", [2], [1])
        g.node(f"{p}x_last = Gather <axis = 0> ({p}x_shape, {last})")
        g.node(f"{p}rows = ReduceProd <axes = [0], keepdims = 0> ({p}x_free)")
        g.unsqueeze(f"{p}rows_1", f"{p}rows", [0])
        g.node(f"{p}flat_shape = Concat <axis = 0> ({p}rows_1, {p}x_last)")
        g.node(f"{p}x_flat = Reshape ({x}, {p}flat_shape)")
        width = g.const("int64", "hidden", [HIDDEN], [1])
        g.node(f"{p}dense_shape = Concat <axis = 0> ({p}x_free, {width})")
    for name, (w, b) in weights(seed).items():
        g.const("float", f"{p}w{name}", w, [HIDDEN, HIDDEN])
        g.const("float", f"{p}b{name}", b, [HIDDEN])
        if tensordot:
            g.node(f"{p}{name}_mm = MatMul ({p}x_flat, {p}w{name})")
            g.node(f"{p}{name}_dense = Reshape ({p}{name}_mm, {p}dense_shape)")
            g.node(f"{p}{name} = Add ({p}{name}_dense, {p}b{name})")
        else:
            g.node(f"{p}{name}_mm = MatMul ({x}, {p}w{name})")
            g.node(f"{p}{name} = Add ({p}{name}_mm, {p}b{name})")
        outputs[name] = f"{p}{name}"
    return outputs


def head_split(g, p, projected, computed_shape=False):
    """Reshape [b, s, 8] -> [b, s, 2, 4]: a constant target, or Concat(-1, Shape(x)[1], 2, 4)."""
    split = {}
    if computed_shape:
        g.node(f"{p}seq_len = Slice ({p}x_shape, {g.const('int64', 'start_1', [1], [1])}, "
               f"{g.const('int64', 'end_2', [2], [1])}, {g.const('int64', 'axis_0', [0], [1])})")
        g.node(f"{p}heads_shape = Concat <axis = 0> ({g.const('int64', 'minus_one', [-1], [1])}, "
               f"{p}seq_len, {g.const('int64', 'heads_head', [HEADS, HEAD_SIZE], [2])})")
        shape = f"{p}heads_shape"
    else:
        shape = g.const("int64", "heads_shape", [0, 0, HEADS, HEAD_SIZE], [4])
    for name, value in projected.items():
        g.node(f"{p}{name}4 = Reshape ({value}, {shape})")
        split[name] = f"{p}{name}4"
    return split


def rotate(g, p, name, t, cos_pos, sin_pos, halves=False):
    """t * cos_pos + rot(t) * sin_pos, rot(t) = stack([-t[..., 1::2], t[..., ::2]], 4) reshaped to t."""
    if halves:
        upper = g.const("int64", "half_start", [HEAD_SIZE // 2], [1])
        lower_start = g.const("int64", "start_0", [0], [1])
        end = g.const("int64", "half_end", [HEAD_SIZE], [1])
        mid = g.const("int64", "half_mid", [HEAD_SIZE // 2], [1])
        axis = g.const("int64", "axis_3", [3], [1])
        g.node(f"{p}{name}_upper = Slice ({t}, {upper}, {end}, {axis})")
        g.node(f"{p}{name}_lower = Slice ({t}, {lower_start}, {mid}, {axis})")
        g.node(f"{p}{name}_neg = Neg ({p}{name}_upper)")
        g.node(f"{p}{name}_rot = Concat <axis = 3> ({p}{name}_neg, {p}{name}_lower)")
    else:
        g.strided_slice(f"{p}{name}_odd", t, 1, 3)
        g.node(f"{p}{name}_neg = Neg ({p}{name}_odd)")
        g.strided_slice(f"{p}{name}_even", t, 0, 3)
        g.unsqueeze(f"{p}{name}_neg5", f"{p}{name}_neg", [4])
        g.unsqueeze(f"{p}{name}_even5", f"{p}{name}_even", [4])
        g.node(f"{p}{name}_stack = Concat <axis = 4> ({p}{name}_neg5, {p}{name}_even5)")
        g.node(f"{p}{name}_shape = Shape ({t})")
        g.node(f"{p}{name}_rot = Reshape ({p}{name}_stack, {p}{name}_shape)")
    g.node(f"{p}{name}_cos = Mul ({t}, {cos_pos})")
    g.node(f"{p}{name}_sin = Mul ({p}{name}_rot, {sin_pos})")
    g.node(f"{p}{name}_rotated = Add ({p}{name}_cos, {p}{name}_sin)")
    return f"{p}{name}_rotated"


def folded_tables(g, base=ROPE_BASE, name="", unequal_pairs=False):
    cos_pos, sin_pos = rope_positions(base)
    if unequal_pairs:
        cos_pos = cos_pos.copy()
        cos_pos[0, 1, 0, 1] = np.nextafter(cos_pos[0, 1, 0, 1], np.float32(2))
    dims = [1, SEQ, 1, HEAD_SIZE]
    return (g.const("float", f"cos_pos{name}", cos_pos, dims),
            g.const("float", f"sin_pos{name}", sin_pos, dims))


def computed_tables(g, x, form="pow", base=ROPE_BASE, prefix="t_"):
    """The sinusoid table from Range(0, s) and the repeated columns, as tf2onnx exports it.

    form "pow": angles by Einsum with Pow(base, exponents); form "constant": angles by
    Unsqueeze + Mul with the folded frequency constant.
    """
    p = prefix
    g.node(f"{p}shape = Shape ({x})")
    g.node(f"{p}seq_1 = Slice ({p}shape, {g.const('int64', 'start_1', [1], [1])}, "
           f"{g.const('int64', 'end_2', [2], [1])}, {g.const('int64', 'axis_0', [0], [1])})")
    attr, extra = g.axes([0])
    g.node(f"{p}seq = Squeeze{attr} ({p}seq_1{extra})")
    zero = g.const("int64", "range_start", [0], [])
    one = g.const("int64", "range_delta", [1], [])
    g.node(f"{p}positions = Range ({zero}, {p}seq, {one})")
    g.node(f"{p}positions_f = Cast <to = 1> ({p}positions)")
    g.unsqueeze(f"{p}positions_row", f"{p}positions_f", [0])
    w, exponents = frequencies(base)
    if form == "pow":
        base_name = g.const("float", f"{p}base", [base], [])
        exponents_name = g.const("float", f"{p}exponents", exponents, [HEAD_SIZE // 2])
        g.node(f"{p}frequencies = Pow ({base_name}, {exponents_name})")
        g.node(f'{p}angles = Einsum <equation = "bn,d->bnd"> ({p}positions_row, {p}frequencies)')
    else:
        frequencies_name = g.const("float", f"{p}frequencies", w, [HEAD_SIZE // 2])
        g.unsqueeze(f"{p}positions_col", f"{p}positions_row", [2])
        g.node(f"{p}angles = Mul ({p}positions_col, {frequencies_name})")
    g.node(f"{p}sin = Sin ({p}angles)")
    g.node(f"{p}cos = Cos ({p}angles)")
    g.unsqueeze(f"{p}sin4", f"{p}sin", [3])
    g.unsqueeze(f"{p}cos4", f"{p}cos", [3])
    g.node(f"{p}pairs = Concat <axis = 3> ({p}sin4, {p}cos4)")
    g.node(f"{p}table_shape = Concat <axis = 0> ({g.const('int64', 'minus_one', [-1], [1])}, "
           f"{p}seq_1, {g.const('int64', 'head_size', [HEAD_SIZE], [1])})")
    g.node(f"{p}table = Reshape ({p}pairs, {p}table_shape)")
    columns = []
    for start, name in ((1, "cos"), (0, "sin")):
        g.strided_slice(f"{p}{name}_columns", f"{p}table", start, 2)
        g.unsqueeze(f"{p}{name}_columns4", f"{p}{name}_columns", [2])
        pieces = [f"{p}{name}_piece{i}" for i in range(HEAD_SIZE // 2)]
        g.node(f"{', '.join(pieces)} = Split <axis = 3> ({p}{name}_columns4)")
        repeated = ", ".join(piece for piece in pieces for _ in range(2))
        g.node(f"{p}{name}_pos = Concat <axis = 3> ({repeated})")
        columns.append(f"{p}{name}_pos")
    g.blank()
    return columns[0], columns[1]


def attention(g, p, x, mask, out, cos_pos, sin_pos, *, einsum=True, seed=0, scale=None,
              scale_by_div=False, masked_score=-1e12, mask_form="bool", halves=False,
              tensordot=False, extra_output=None):
    """One rotary self-attention block writing `out`; keyword options make it a near miss."""
    projected = projections(g, p, x, seed, tensordot=tensordot)
    split = head_split(g, p, projected, computed_shape=tensordot)
    q = rotate(g, p, "q", split["q"], cos_pos, sin_pos, halves=halves)
    k = rotate(g, p, "k", split["k"], cos_pos, sin_pos, halves=halves)

    if einsum:
        g.node(f'{p}scores = Einsum <equation = "bjhd,bkhd->bhjk"> ({q}, {k})')
    else:
        g.node(f"{p}q_heads = Transpose <perm = [0, 2, 1, 3]> ({q})")
        g.node(f"{p}k_heads = Transpose <perm = [0, 2, 3, 1]> ({k})")
        g.node(f"{p}scores = MatMul ({p}q_heads, {p}k_heads)")
    if scale_by_div:
        divisor = g.const("float", "sqrt_head", [math.sqrt(HEAD_SIZE)], [])
        g.node(f"{p}scaled = Div ({p}scores, {divisor})")
    else:
        factor = 1 / math.sqrt(HEAD_SIZE) if scale is None else scale
        name = g.const("float", f"scale_{spell_float(factor).replace('.', '_').replace('-', 'm')}", [factor], [])
        g.node(f"{p}scaled = Mul ({p}scores, {name})")

    if mask_form == "float":
        g.node(f"{p}m2 = Identity ({mask})")
    else:
        g.node(f"{p}m2 = Cast <to = 1> ({mask})")
    mask_axes = [1, 3] if mask_form == "query" else [1, 1]
    g.unsqueeze(f"{p}m3", f"{p}m2", [mask_axes[0]])
    g.unsqueeze(f"{p}m4", f"{p}m3", [mask_axes[1]])
    one = g.const("float", "one", [1.0], [])
    masked = g.const("float", f"masked_{spell_float(masked_score).replace('-', 'm').replace('+', '').replace('.', '_')}",
                     [masked_score], [])
    g.node(f"{p}kept = Mul ({p}scaled, {p}m4)")
    g.node(f"{p}inverted = Sub ({one}, {p}m4)")
    g.node(f"{p}penalty = Mul ({masked}, {p}inverted)")
    g.node(f"{p}masked = Add ({p}kept, {p}penalty)")
    softmax_axis = -1 if g.opset >= 13 else 3
    g.node(f"[\"{p}softmax\"] {p}probabilities = Softmax <axis = {softmax_axis}> ({p}masked)")

    if einsum:
        g.node(f'{p}context = Einsum <equation = "bhjk,bkhd->bjhd"> ({p}probabilities, {split["v"]})')
    else:
        g.node(f"{p}v_heads = Transpose <perm = [0, 2, 1, 3]> ({split['v']})")
        g.node(f"{p}context_heads = MatMul ({p}probabilities, {p}v_heads)")
        g.node(f"{p}context = Transpose <perm = [0, 2, 1, 3]> ({p}context_heads)")
    merge = g.const("int64", "merge_shape", [0, 0, HIDDEN], [3])
    g.node(f"{out} = Reshape ({p}context, {merge})")
    if extra_output is not None:
        g.node(f"{extra_output} = Identity ({p}scores)")
    g.blank()


# --------------------------------------------------------------------------
# The files


def header(lines):
    return "\n".join(f"# {line}" if line else "#" for line in lines) + "\n\n"


def checks(lines):
    return "\n" + "\n".join(f"# {line}" if line else "#" for line in lines) + "\n"


def cache_checks(prefix, cos, sin):
    return [f"{prefix}-DAG: float[{cos.shape[0]}, {cos.shape[1]}] rotary_cos_cache = {floats(cos)}",
            f"{prefix}-DAG: float[{sin.shape[0]}, {sin.shape[1]}] rotary_sin_cache = {floats(sin)}"]


FUSED_BLOCK = [
    "CHECK: mask_int32 = Cast <to = 6> (mask)",
    "CHECK: q_rotary = com.microsoft.RotaryEmbedding <interleaved = 1, num_heads = 2> (q, rotary_position_offset, rotary_cos_cache, rotary_sin_cache)",
    "CHECK: k_rotary = com.microsoft.RotaryEmbedding <interleaved = 1, num_heads = 2> (k, rotary_position_offset, rotary_cos_cache, rotary_sin_cache)",
    'CHECK: out = com.microsoft.MultiHeadAttention <num_heads = 2, scale = 0.5, mask_filter_value = -1e+12> (q_rotary, k_rotary, v, "", mask_int32)',
    "CHECK-NOT: = {{Softmax|Einsum|Neg|Slice|Transpose|Sin|Cos|Reshape}}",
    "CHECK: }",
]


def folded_cache_values():
    cos_pos, sin_pos = rope_positions()
    return cos_pos[0, :, 0, 0::2], sin_pos[0, :, 0, 0::2]


def write_einsum_folded():
    g = Graph("einsum_folded", 13)
    cos_pos, sin_pos = folded_tables(g)
    attention(g, "", "x", "mask", "out", cos_pos, sin_pos)
    cos, sin = folded_cache_values()
    text = header([
        "RUN: roformer-opt %s -S --verify-each --pass-pipeline=fuse-rotary-attention --quiet | FileCheck %s",
        "RUN: roformer-opt %s -S --pass-pipeline=fuse-rotary-attention --stats --quiet 2>&1 >/dev/null | FileCheck %s --check-prefix=STATS",
        "RUN: roformer-opt %s -S --pass-pipeline=fuse-rotary-attention --max-seq-len=6 --quiet | FileCheck %s --check-prefix=LONGER",
        "RUN: not roformer-opt %s -S --pass-pipeline=fuse-rotary-attention --max-seq-len=3 --quiet 2>&1 | FileCheck %s --check-prefix=SHORT",
        "",
        "The Einsum form at opset 13 with a fixed sequence of 4, after constant",
        "folding: cos_pos and sin_pos are constants [1, 4, 1, 4] whose columns repeat",
        "cos(p w_i) and sin(p w_i) pairwise, w = (1, 0.01). The caches take one",
        "column of each pair; with --max-seq-len=6 rows 4 and 5 are computed from",
        "the formula, and a length below the fixed 4 is an error.",
    ])
    text += g.text(["float[2, 4, 8] x", "bool[2, 4] mask"], ["float[2, 4, 8] out"])
    longer_cos, longer_sin = expected_caches(6)
    text += checks(
        ['CHECK: opset_import: ["" : 13, "com.microsoft" : 1]', "CHECK-LABEL: einsum_folded"]
        + cache_checks("CHECK", cos, sin)
        + ["CHECK-DAG: int64[1] rotary_position_offset = {0}", "CHECK-NOT: cos_pos"]
        + FUSED_BLOCK
        + ["", "STATS: 1 fuse-rotary-attention - attention blocks fused",
           "STATS: 1 fuse-rotary-attention - rotary caches added", ""]
        + [line.replace("CHECK", "LONGER") for line in cache_checks("CHECK", longer_cos, longer_sin)]
        + ["", "SHORT: error: pass 'fuse-rotary-attention' failed: max-seq-len 3 is below the sequence length 4 of the attention block at Softmax 'softmax'; raise --max-seq-len to at least 4 or leave it unset"])
    (HERE / "einsum-folded.onnxtxt").write_text(text)


def write_matmul_folded():
    g = Graph("matmul_folded", 11)
    cos_pos, sin_pos = folded_tables(g)
    attention(g, "", "x", "mask", "out", cos_pos, sin_pos, einsum=False, scale_by_div=True)
    cos, sin = folded_cache_values()
    text = header([
        "RUN: roformer-opt %s -S --verify-each --pass-pipeline=fuse-rotary-attention --quiet | FileCheck %s",
        "",
        "The Transpose + MatMul form of the attention products at opset 11:",
        "Unsqueeze takes its axes as an attribute, the scores are divided by",
        "sqrt(4) instead of multiplied by 0.5, and Softmax names axis 3.",
    ])
    text += g.text(["float[2, 4, 8] x", "bool[2, 4] mask"], ["float[2, 4, 8] out"])
    text += checks(['CHECK: opset_import: ["" : 11, "com.microsoft" : 1]', "CHECK-LABEL: matmul_folded"]
                   + cache_checks("CHECK", cos, sin) + FUSED_BLOCK)
    (HERE / "matmul-folded.onnxtxt").write_text(text)


def write_computed():
    g = Graph("computed_tables", 13)
    pow_cos, pow_sin = computed_tables(g, "x", form="pow", prefix="t_")
    const_cos, const_sin = computed_tables(g, "x", form="constant", prefix="u_")
    attention(g, "a_", "x", "mask", "out_a", pow_cos, pow_sin, tensordot=True, seed=1)
    attention(g, "b_", "x", "mask", "out_b", const_cos, const_sin, seed=2)
    cos, sin = expected_caches(8)
    text = header([
        "RUN: roformer-opt %s -S --verify-each --pass-pipeline=fuse-rotary-attention --max-seq-len=8 --quiet | FileCheck %s",
        "RUN: roformer-opt %s -S --pass-pipeline=fuse-rotary-attention --remarks-missed=fuse-rotary-attention --quiet 2>&1 >/dev/null | FileCheck %s --check-prefix=REMARK",
        "",
        "The sequence length S is symbolic, so the tables are still computed from",
        "Shape(x): Range(0, S), frequencies w = 10000^(-2i/4), angles, Sin and Cos",
        "stacked into [1, S, 4], and the odd and even columns repeated pairwise.",
        "  a: Pow(10000, exponents) and an Einsum outer product; the Q/K/V",
        "     projections in tensordot's Reshape-MatMul-Reshape form with targets",
        "     computed from Shape(x), and the head split target as well.",
        "  b: the folded frequency constant and Unsqueeze + Mul.",
        "With --max-seq-len=8 both blocks fuse and share one pair of caches, 8 rows",
        "of cos/sin(float32(p) * w_i). Without it the cache size is unknown and",
        "both blocks stay, each with a remark.",
    ])
    text += g.text(["float[2, S, 8] x", "bool[2, S] mask"], ["float[2, S, 8] out_a", "float[2, S, 8] out_b"])
    text += checks(["CHECK-LABEL: computed_tables"] + cache_checks("CHECK", cos, sin) + [
        "CHECK-NOT: rotary_cos_cache",
        "CHECK: mask_int32 = Cast <to = 6> (mask)",
        "CHECK: a_q_rotary = com.microsoft.RotaryEmbedding <interleaved = 1, num_heads = 2> (a_q, rotary_position_offset, rotary_cos_cache, rotary_sin_cache)",
        'CHECK: out_a = com.microsoft.MultiHeadAttention <num_heads = 2, scale = 0.5, mask_filter_value = -1e+12> (a_q_rotary, a_k_rotary, a_v, "", mask_int32)',
        "CHECK: b_q_rotary = com.microsoft.RotaryEmbedding <interleaved = 1, num_heads = 2> (b_q, rotary_position_offset, rotary_cos_cache, rotary_sin_cache)",
        'CHECK: out_b = com.microsoft.MultiHeadAttention <num_heads = 2, scale = 0.5, mask_filter_value = -1e+12> (b_q_rotary, b_k_rotary, b_v, "", mask_int32)',
        "CHECK-NOT: = {{Softmax|Einsum|Sin|Cos|Range|Neg}}",
        "CHECK: }",
        "",
        "REMARK: remark: fuse-rotary-attention: Softmax 'a_softmax': the sequence length is not fixed, so the rotary cache size is unknown; pass --max-seq-len (or the max-seq-len option) to fuse",
        "REMARK: remark: fuse-rotary-attention: Softmax 'b_softmax': the sequence length is not fixed",
    ])
    (HERE / "computed-tables.onnxtxt").write_text(text)


def write_rejected(filename, description, remark, block_options=None, tables="folded",
                   table_options=None, extra_outputs=(), sequence="4"):
    g = Graph("rejected", 13)
    if tables == "folded":
        cos_pos, sin_pos = folded_tables(g, **(table_options or {}))
    else:
        cos_pos, sin_pos = computed_tables(g, "x", **(table_options or {}))
    attention(g, "", "x", "mask", "out", cos_pos, sin_pos, **(block_options or {}))
    outputs = [f"float[2, {sequence}, 8] out"] + [f"float[2, 2, {sequence}, {sequence}] {name}" for name in extra_outputs]
    mask_type = "float" if (block_options or {}).get("mask_form") == "float" else "bool"
    run = "RUN: roformer-opt %s -S --verify-each --pass-pipeline=fuse-rotary-attention"
    if tables != "folded":
        run += " --max-seq-len=4"
    text = header([
        f"{run} --quiet | FileCheck %s",
        f"{run} --remarks-missed=fuse-rotary-attention --quiet 2>&1 >/dev/null | FileCheck %s --check-prefix=REMARK",
        "",
    ] + description)
    text += g.text([f"float[2, {sequence}, 8] x", f"{mask_type}[2, {sequence}] mask"], outputs)
    text += checks(["CHECK-LABEL: rejected", "CHECK-NOT: com.microsoft", "CHECK: Softmax",
                    "CHECK-NOT: com.microsoft", "", f"REMARK: remark: fuse-rotary-attention: Softmax 'softmax': {remark}"])
    (HERE / filename).write_text(text)


def write_all_rejected():
    write_rejected(
        "rejected-table-base.onnxtxt",
        ["The folded tables are sinusoids of base 1000, not RoPE's 10000."],
        "element [1, 2] of the rotary table value 'cos_pos' is 0.999500036, but cos(1 * 10000^(-2/4)) is 0.99995 (tolerance 1.95e-06): not the RoPE table",
        table_options={"base": 1000.0})
    write_rejected(
        "rejected-table-pairs.onnxtxt",
        ["Column 1 of row 1 of cos_pos is one float above column 0: the pairs of the",
         "interleaved layout must be equal, because RotaryEmbedding uses one cos per pair."],
        "elements [1, 0] and [1, 1] of the rotary table value 'cos_pos' differ (0.540302277, 0.540302336); the interleaved layout repeats each column pair",
        table_options={"unequal_pairs": True})
    write_rejected(
        "rejected-computed-base.onnxtxt",
        ["The computed table raises 1000, not 10000, to the exponents -2i/d."],
        "the rotary table value 't_table': the rotary frequency base of Pow producing 't_frequencies' is 1000, not 10000",
        tables="computed", table_options={"form": "pow", "base": 1000.0}, sequence="S")
    write_rejected(
        "rejected-halves.onnxtxt",
        ["rot(t) = concat(-t[..., 2:], t[..., :2]) rotates halves (pairs i, i + d/2),",
         "the GPT-NeoX layout, not RoFormer's interleaved pairs (2i, 2i+1)."],
        "the query rotation value 'q_rotated' is not t * cos_pos + rot(t) * sin_pos: Concat producing 'q_rot' joins two parts along the head axis, which rotates halves (i, i + d/2); only RoFormer's interleaved pairs (2i, 2i+1) are fused",
        block_options={"halves": True})
    write_rejected(
        "rejected-mask-float.onnxtxt",
        ["The mask is a float input, not a bool cast to float: its values need not",
         "be 0 or 1, so it is not a padding mask that key_padding_mask can express."],
        "the attention mask value 'm4' is not a Cast to float of a bool tensor",
        block_options={"mask_form": "float"})
    write_rejected(
        "rejected-mask-query.onnxtxt",
        ["The mask is unsqueezed to [b, 1, s, 1], so it masks queries, not keys."],
        "the attention mask value 'm4' is laid out [b, 1, s, 1], expected [b, 1, 1, s]: a padding mask of the keys",
        block_options={"mask_form": "query"})
    write_rejected(
        "rejected-mask-value.onnxtxt",
        ["The masked score is -10000: MultiHeadAttention adds mask_filter_value to",
         "the scores where the export replaces them, which differs in rows whose",
         "keys are all masked unless the value swamps every score."],
        "the masked score -10000 is above -2^35, so adding it to the scores (as MultiHeadAttention does) is not the same as replacing them",
        block_options={"masked_score": -10000.0})
    write_rejected(
        "rejected-scale.onnxtxt",
        ["The scores are scaled by 0.25, not 1/sqrt(4)."],
        "the scores are scaled by 0.25, not 1/sqrt(4) = 0.5",
        block_options={"scale": 0.25})
    write_rejected(
        "rejected-extra-user.onnxtxt",
        ["The raw scores are also copied to a graph output, which the fusion would lose."],
        "value 'scores' inside the attention block is also used by Identity producing 'scores_out', which the fusion would leave without it",
        block_options={"extra_output": "scores_out"}, extra_outputs=["scores_out"])


if __name__ == "__main__":
    write_einsum_folded()
    write_matmul_folded()
    write_computed()
    write_all_rejected()
