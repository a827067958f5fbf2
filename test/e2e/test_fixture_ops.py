#!/usr/bin/python3
"""Check the fixture model's ops, names, weights and ONNX validity.

Generates small models, or with --full the default 12-layer model. Counts the
nodes of each op type against the counts a model with N layers implies. Checks
that ONNX's checker and strict shape inference accept the graph while batch and
sequence dims stay symbolic.

    /usr/bin/python3 test/e2e/test_fixture_ops.py [--full] [--keep DIR]

Exits with 1 on the first failed check.
"""

import argparse
import collections
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtureutil import generate_fixture  # noqa: E402

MODEL_SCOPE = "StatefulPartitionedCall/model"

SMALL_SIZE = dict(layers=2, hidden=64, heads=4, ffn=256, vocab=1000)
FULL_SIZE = dict(layers=12, hidden=768, heads=12, ffn=3072, vocab=50000)


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


# --------------------------------------------------------------------------
# Expected op counts, built from the parts of the Keras model


def ops(**counts):
    return collections.Counter(counts)


def tensordot_dense():
    # Shape + Cast(int32), Gather free and contracted dims, ReduceProd both,
    # Unsqueeze + Concat (Pack), Cast(int64) + Reshape, MatMul,
    # Concat + Cast(int64) + Reshape back, Add bias.
    return ops(Shape=1, Cast=3, Gather=2, ReduceProd=2, Unsqueeze=2, Concat=2, Reshape=2, MatMul=1, Add=1)


def layer_norm():
    return ops(ReduceMean=2, Sub=1, Mul=2, Add=2, Sqrt=1, Div=1)


def sequence_length():
    return ops(Shape=1, Cast=1, Slice=1, Squeeze=1)


def packed_reshape():
    return ops(Unsqueeze=1, Concat=1, Cast=1, Reshape=1)


def divide_by_constant(options):
    return ops(Mul=1) if options["tf_constfold"] else ops(Div=1)


def merged_mask(mask_count):
    return ops(Unsqueeze=mask_count, Concat=1, Cast=1, ReduceMin=1, Greater=1)


def rotary_table(options):
    counts = sequence_length() + ops(Range=1, Cast=1, Unsqueeze=1)
    if not options["tf_constfold"]:
        counts += ops(Pow=1)
    counts += ops(Einsum=1) if options["einsum"] else ops(Unsqueeze=1, Mul=1)
    counts += ops(Sin=1, Cos=1, Unsqueeze=2, Concat=1)
    return counts + packed_reshape()


def attention(options):
    counts = collections.Counter()
    for _ in range(4):
        counts += tensordot_dense()
    for _ in range(3):
        counts += sequence_length() + packed_reshape()
    if options["rotary_table_per_layer"]:
        counts += rotary_table(options)
    counts += ops(Slice=2, Unsqueeze=2, Split=2, Concat=2)  # cos_pos and sin_pos
    for _ in range(2):  # rotary on Q and K
        counts += ops(Slice=2, Neg=1, Unsqueeze=2, Concat=1, Shape=1, Cast=2, Reshape=1, Mul=2, Add=1)
    products = ops(Einsum=1) if options["einsum"] else ops(Transpose=2, MatMul=1)
    counts += products + divide_by_constant(options)
    counts += ops(Cast=1, Unsqueeze=2, Mul=2, Sub=1, Add=1)  # score masking
    counts += ops(Softmax=1) + products
    return counts + sequence_length() + packed_reshape()


def feed_forward(options):
    gelu = ops(Mul=2, Erf=1, Add=1) + divide_by_constant(options)
    return tensordot_dense() + gelu + tensordot_dense()


def encoder_layer(options):
    counts = attention(options) + ops(Add=1) + layer_norm()
    counts += feed_forward(options) + ops(Add=1) + layer_norm()
    if options["keras_mask_merge"]:
        counts += merged_mask(2) + merged_mask(2)
    return counts


def expected_op_counts(layers, options):
    embeddings = ops(Cast=2, Gather=2, Add=1) + layer_norm()
    embeddings += ops(Equal=1, Not=1, Slice=2, Shape=1, Cast=2, ConstantOfShape=1, Concat=1)  # padding mask
    if options["keras_mask_merge"]:
        embeddings += merged_mask(1)
    head = ops(Cast=1, Unsqueeze=1, Mul=1, ReduceSum=2, Div=1, MatMul=1, Add=1, Sigmoid=1, Identity=1)
    if options["encoder_output"]:
        head += ops(Identity=1)

    counts = embeddings + head
    if not options["rotary_table_per_layer"]:
        counts += rotary_table(options)
    for _ in range(layers):
        counts += encoder_layer(options)
    return counts


# --------------------------------------------------------------------------
# Checks


def check_op_counts(model, size, options):
    actual = collections.Counter(node.op_type for node in model.graph.node)
    expected = expected_op_counts(size["layers"], options)
    differences = {
        op: (actual.get(op, 0), expected.get(op, 0))
        for op in sorted(set(actual) | set(expected))
        if actual.get(op, 0) != expected.get(op, 0)
    }
    check(not differences, "op counts differ (actual, expected): " + ", ".join(
        f"{op} {counts}" for op, counts in differences.items()))
    print(f"  op counts match the {size['layers']}-layer formula: {len(model.graph.node)} nodes, "
          + ", ".join(f"{op} {count}" for op, count in sorted(actual.items())))
    return actual


def dims_of(value_info):
    return [dim.dim_param or dim.dim_value for dim in value_info.type.tensor_type.shape.dim]


def is_symbolic(dim):
    return isinstance(dim, str) and re.fullmatch(r"unk__\d+", dim) is not None


def check_interface(model, size, options):
    inputs = {value.name: value for value in model.graph.input}
    check(sorted(inputs) == ["input_segment:0", "input_token:0"], f"unexpected graph inputs {sorted(inputs)}")
    for name, value in inputs.items():
        check(value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT, f"{name} is not float32")
        dims = dims_of(value)
        check(len(dims) == 2 and all(is_symbolic(dim) for dim in dims), f"{name} dims {dims} are not [unk__N, unk__N]")

    outputs = {value.name: value for value in model.graph.output}
    expected_outputs = ["Identity:0"] + (["encoder_output:0"] if options["encoder_output"] else [])
    check(sorted(outputs) == sorted(expected_outputs), f"graph outputs {sorted(outputs)}, expected {expected_outputs}")
    score_dims = dims_of(outputs["Identity:0"])
    check(len(score_dims) == 2 and is_symbolic(score_dims[0]) and score_dims[1] == 1,
          f"Identity:0 dims {score_dims} are not [unk__N, 1]")
    if options["encoder_output"]:
        encoder_dims = dims_of(outputs["encoder_output:0"])
        check(is_symbolic(encoder_dims[0]) and is_symbolic(encoder_dims[1]) and encoder_dims[2] == size["hidden"],
              f"encoder_output:0 dims {encoder_dims} are not [unk__N, unk__N, {size['hidden']}]")

    producers = {output: node for node in model.graph.node for output in node.output}
    check(producers["Identity:0"].op_type == "Identity", "Identity:0 is not produced by an Identity node")
    check(producers[producers["Identity:0"].input[0]].op_type == "Sigmoid", "the score is not a Sigmoid output")
    print(f"  inputs {sorted(inputs)} and outputs {sorted(outputs)} have tf2onnx names, types and dims")


def check_names(model, size):
    tensor_names = {name for node in model.graph.node for name in list(node.input) + list(node.output) if name}
    tensor_names |= {init.name for init in model.graph.initializer}
    bad = sorted(name for name in tensor_names if not re.search(r":\d+$", name))
    check(not bad, f"{len(bad)} tensor names lack a :N suffix, e.g. {bad[:3]}")

    node_names = [node.name for node in model.graph.node]
    check(len(set(node_names)) == len(node_names), "node names are not unique")
    produced = [name for node in model.graph.node for name in node.output]
    produced += [init.name for init in model.graph.initializer]
    check(len(set(produced)) == len(produced), "a tensor is produced twice (node outputs and initializers)")
    for index in range(size["layers"]):
        for part in ("MultiHeadSelfAttention", "MultiHeadSelfAttention-Norm", "FeedForward", "FeedForward-Norm"):
            prefix = f"{MODEL_SCOPE}/Transformer-{index}-{part}/"
            check(any(name.startswith(prefix) for name in node_names), f"no node under {prefix}")
    outside = [name for name in node_names if not name.startswith(MODEL_SCOPE) and name not in
               ("Identity", "encoder_output")]
    check(not outside, f"nodes outside the Keras scope: {outside[:3]}")
    print(f"  {len(tensor_names)} tensor names end in :N and nodes sit under {MODEL_SCOPE}/<layer>/")


def check_attributes(model, size, options):
    head_size = size["hidden"] // size["heads"]
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    nodes = model.graph.node

    splits = [node for node in nodes if node.op_type == "Split"]
    check(all(len(node.output) == head_size // 2 for node in splits),
          f"rotary Split nodes do not all have head_size/2 = {head_size // 2} outputs")
    repeats = [node for node in nodes if node.op_type == "Concat" and len(node.input) == head_size]
    check(len(repeats) == 2 * size["layers"],
          f"found {len(repeats)} {head_size}-input Concat nodes, expected 2 per layer")

    if options["einsum"]:
        equations = collections.Counter(
            onnx.helper.get_attribute_value(node.attribute[0]).decode() for node in nodes if node.op_type == "Einsum")
        tables = 1 if not options["rotary_table_per_layer"] else size["layers"]
        check(equations == {"bjhd,bkhd->bhjk": size["layers"], "bhjk,bkhd->bjhd": size["layers"], "bn,d->bnd": tables},
              f"unexpected Einsum equations {dict(equations)}")

    scale_names = [name for name in constants if name.endswith("-MultiHeadSelfAttention/truediv/recip:0")
                   or name.endswith("-MultiHeadSelfAttention/truediv/y:0")]
    check(len(scale_names) == size["layers"], f"found {len(scale_names)} attention scale constants")
    for name in scale_names:
        expected = 1 / np.sqrt(head_size) if name.endswith("recip:0") else np.sqrt(head_size)
        check(np.isclose(constants[name], expected), f"{name} is {constants[name]}, expected {expected}")

    masked_values = [value for name, value in constants.items() if name.endswith("MultiHeadSelfAttention/mul/x:0")]
    check(len(masked_values) == size["layers"] and all(value == np.float32(-1e12) for value in masked_values),
          "attention masks do not all write -1e12")
    epsilons = [value for name, value in constants.items() if name.endswith("-Norm/add/y:0")]
    check(len(epsilons) == 2 * size["layers"] + 1 and all(value == np.float32(1e-12) for value in epsilons),
          "LayerNorm epsilons are not all 1e-12")
    print(f"  rotary Split/Concat sizes, Einsum equations, scale 1/sqrt({head_size}), mask -1e12, epsilon 1e-12")


def check_weights(model, size):
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    hidden = size["hidden"]
    token_table = constants[f"{MODEL_SCOPE}/Embedding-Token/embedding_lookup/ReadVariableOp:0"]
    check(token_table.shape == (size["vocab"], hidden), f"token embedding shape {token_table.shape}")
    check(abs(token_table.std() - 0.02) < 0.002, f"token embedding std {token_table.std():.4f}, expected 0.02")

    attention = f"{MODEL_SCOPE}/Transformer-0-MultiHeadSelfAttention"
    q_kernel = constants[f"{attention}/dense/Tensordot/ReadVariableOp:0"]
    v_kernel = constants[f"{attention}/dense_2/Tensordot/ReadVariableOp:0"]
    qk_std = 2 / np.sqrt(hidden)
    check(abs(q_kernel.std() - qk_std) < 0.1 * qk_std, f"Q kernel std {q_kernel.std():.4f}, expected {qk_std:.4f}")
    check(abs(v_kernel.std() - 0.02) < 0.004, f"V kernel std {v_kernel.std():.4f}, expected 0.02")

    gamma = constants[f"{attention}-Norm/mul/ReadVariableOp:0"]
    beta = constants[f"{attention}-Norm/add_1/ReadVariableOp:0"]
    check(abs(gamma.mean() - 1) < 0.01 and gamma.std() > 0.005, f"LayerNorm gamma mean {gamma.mean():.4f}")
    check(abs(beta.mean()) < 0.01 and beta.std() > 0.005, f"LayerNorm beta mean {beta.mean():.4f}")
    print(f"  weights: token table {token_table.shape}, Q std {q_kernel.std():.4f}, V std {v_kernel.std():.4f}, "
          f"gamma mean {gamma.mean():.4f}")


def check_onnx_validity(model_path, model, size):
    started = time.monotonic()
    onnx.checker.check_model(str(model_path))
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    value_infos = {value.name: value for value in inferred.graph.value_info}

    token_dims = dims_of(next(value for value in model.graph.input if value.name == "input_token:0"))
    gathered = value_infos[f"{MODEL_SCOPE}/Embedding-Token/embedding_lookup:0"]
    check(dims_of(gathered) == token_dims + [size["hidden"]],
          f"token embedding output dims {dims_of(gathered)}, expected {token_dims + [size['hidden']]}")
    normalized = value_infos[f"{MODEL_SCOPE}/Embedding-Norm/add_1:0"]
    check(dims_of(normalized)[2] == size["hidden"] and all(is_symbolic(dim) for dim in dims_of(normalized)[:2]),
          f"Embedding-Norm output dims {dims_of(normalized)} are not symbolic batch and sequence")
    print(f"  checker and strict shape inference pass ({len(value_infos)} inferred values, "
          f"batch and sequence stay symbolic: {dims_of(normalized)}) in {time.monotonic() - started:.1f} s")


# --------------------------------------------------------------------------
# Cases


FLAG_OPTIONS = dict(einsum=True, tf_constfold=True, keras_mask_merge=True, rotary_table_per_layer=False,
                    encoder_output=False)


def run_case(work_dir, label, size, flags, options):
    print(f"case {label}: {' '.join(flags)}")
    started = time.monotonic()
    model_path = generate_fixture(work_dir / label, "--no-samples", *flags)
    print(f"  generated {model_path.stat().st_size / 1e6:.1f} MB in {time.monotonic() - started:.2f} s")
    model = onnx.load(str(model_path))
    check_op_counts(model, size, options)
    check_interface(model, size, options)
    check_names(model, size)
    check_attributes(model, size, options)
    check_weights(model, size)
    check_onnx_validity(model_path, model, size)


def size_flags(size):
    return [f"--{key}={value}" for key, value in size.items()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="check the default 12-layer, hidden-768 model (about 500 MB)")
    parser.add_argument("--keep", metavar="DIR", help="generate into DIR and keep the models")
    args = parser.parse_args()

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fixture-ops-") as temporary:
        work_dir = Path(args.keep or temporary)
        try:
            if args.full:
                run_case(work_dir, "full", FULL_SIZE, [], dict(FLAG_OPTIONS))
            else:
                run_case(work_dir, "small-default", SMALL_SIZE, ["--small"], dict(FLAG_OPTIONS))
                three_layers = dict(SMALL_SIZE, layers=3)
                run_case(
                    work_dir, "small-variants", three_layers,
                    size_flags(three_layers) + ["--no-einsum", "--opset=11", "--no-tf-constfold",
                                                "--no-keras-mask-merge", "--rotary-table-per-layer",
                                                "--encoder-output"],
                    dict(einsum=False, tf_constfold=False, keras_mask_merge=False, rotary_table_per_layer=True,
                         encoder_output=True))
        except CheckFailed as failure:
            print(f"FAIL: {failure}")
            return 1
    print(f"PASS: fixture ops, names and validity ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
