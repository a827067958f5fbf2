#!/usr/bin/python3
"""Check that roformer-opt's fusions keep what the RoFormer computes, and that the check can fail.

Generates the small fixture model with encoder_output:0 exposed and optimizes
it with roformer-opt's default pipeline twice: with the sequence fixed to 128,
and with it symbolic and --max-seq-len 128. The MatMul form of the attention
products (--no-einsum, opset 11) gets the fixed run too. For each optimized
model it checks:

  - the op table: per layer one MultiHeadAttention, two RotaryEmbedding, two
    SkipLayerNormalization and one BiasGelu, the projection MatMuls (packed
    or not), and none of Softmax, Erf, Sqrt, ReduceMean, Neg, Einsum, Sin,
    Cos; with the fixed sequence also no shape arithmetic (Shape, Size,
    ConstantOfShape, Range, ReduceProd, Reshape targets that are not
    constants);
  - every output, encoder_output:0 included, against the unoptimized model
    in ONNX Runtime within 1e-4 max abs error, on a batch with a full row, a
    padded row and a row where every key but position 0 is masked;
  - the same outputs from roformer-run, against the same reference.

Then it breaks the optimized model on purpose, in Python with onnx, and
checks that the parity check fails for each mutation: RotaryEmbedding with
interleaved=0 (rotating halves), a LayerNorm epsilon of 1e-5 in place of
bert4keras' 1e-12, and MultiHeadAttention without its key_padding_mask.

    ROFORMER_BIN_DIR=build/bin /usr/bin/python3 test/e2e/test_fusion_parity.py
    ... test_fusion_parity.py --model /tmp/full/roformer-frozen_org.onnx   (an existing fixture)

Needs onnxruntime-node (scripts/install-ort). Exits with 1 on a failed check.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtureutil import generate_fixture  # noqa: E402
from ortutil import OrtRunError, run_model  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("ROFORMER_BIN_DIR", REPO_ROOT / "build" / "bin"))

# Max abs error allowed between the optimized and the original model, per output.
PARITY_TOLERANCE = 1e-4
THREADS = 2
SEQ_LEN = 128
# A second length for the symbolic model, below the cache size.
SHORT_SEQ_LEN = 96
# Row lengths of the test batch: full, padded, and only [CLS], where every
# key but position 0 is masked.
ROW_LENGTHS = (SEQ_LEN, 50, 1)

# Fusions the default pipeline must contain. A pipeline without them gets
# this tail appended, in the order docs/passes.md gives: the attention
# residuals fuse into SkipLayerNormalization only after the attention is
# fused and shapes are inferred again.
FUSION_PASSES = ["fuse-layernorm", "fuse-skip-layernorm", "fuse-gelu", "fuse-rotary-attention",
                 "pack-qkv"]
FUSION_TAIL = ("fuse-layernorm,fuse-gelu,fuse-rotary-attention,infer-shapes,fuse-skip-layernorm,"
               "pack-qkv,dce")

# Ops that must not survive the fusions.
FUSED_AWAY = ["Softmax", "Erf", "Sqrt", "ReduceMean", "Neg", "Einsum", "Sin", "Cos"]
# Ops of shape arithmetic, which a fixed sequence length must fold away.
SHAPE_ARITHMETIC = ["Shape", "Size", "ConstantOfShape", "Range", "ReduceProd"]

# The LayerNorm epsilon of the mutation: PyTorch's default in place of
# bert4keras' 1e-12. The embedding LayerNorm normalizes sums of embeddings of
# std 0.02, whose variance is near 1e-3. On the small fixture this epsilon
# moves encoder_output:0 by about 1e-3 but the score Identity:0 by only about
# 1e-5, inside the tolerance, so only the encoder output exposes it.
WRONG_EPSILON = 1e-5

MICROSOFT = "com.microsoft"
CLS_ID, SEP_ID, FIRST_TEXT_ID = 101, 102, 104


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


# --------------------------------------------------------------------------
# Running roformer-opt, ONNX Runtime and roformer-run


def default_pipeline():
    """The default pipeline, with the fusion passes appended if it lacks any of them."""
    completed = subprocess.run([str(BIN_DIR / "roformer-opt"), "--print-default-pipeline"],
                               capture_output=True, text=True, timeout=60)
    check(completed.returncode == 0, f"roformer-opt --print-default-pipeline failed:\n{completed.stderr}")
    pipeline = completed.stdout.strip()
    missing = [name for name in FUSION_PASSES if name not in pipeline]
    if not missing:
        return pipeline, []
    return f"{pipeline},{FUSION_TAIL}", missing


def optimize(model_path, output_path, input_shape, pipeline, max_seq_len=None):
    """Run roformer-opt and return (seconds, its before/after op table)."""
    command = [str(BIN_DIR / "roformer-opt"), str(model_path), "-o", str(output_path),
               f"--input-shape={input_shape}"]
    if pipeline is not None:
        command.append(f"--pass-pipeline={pipeline}")
    if max_seq_len is not None:
        command.append(f"--max-seq-len={max_seq_len}")
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    seconds = time.monotonic() - started
    check(completed.returncode == 0, f"{' '.join(command)} failed:\n{completed.stderr.strip()}")
    return seconds, completed.stderr.strip()


def make_inputs(vocab, length, seed=7):
    """Token and segment ids [3, length]: rows of ROW_LENGTHS (cut to length), zero-padded."""
    rng = np.random.default_rng(seed)
    tokens = np.zeros((len(ROW_LENGTHS), length), dtype=np.float32)
    segments = np.zeros_like(tokens)
    for row, row_length in enumerate(ROW_LENGTHS):
        row_length = min(row_length, length)
        ids = rng.integers(FIRST_TEXT_ID, vocab, size=row_length)
        ids[0] = CLS_ID
        if row_length > 1:
            ids[-1] = SEP_ID
        tokens[row, :row_length] = ids
        segments[row, row_length // 2:row_length] = 1
    return {"input_token:0": tokens, "input_segment:0": segments}


def inputs_for(model_path, inputs):
    """Rename the inputs to the optimized model's names (sanitize-names drops ':')."""
    names = [value.name for value in onnx.load(str(model_path), load_external_data=False).graph.input]
    renamed = {}
    for name, array in inputs.items():
        candidates = [candidate for candidate in names if candidate in (name, name.replace(":", ""))]
        check(len(candidates) == 1, f"{model_path} has no input for {name}; its inputs are {names}")
        renamed[candidates[0]] = array
    return renamed


def max_errors(actual, expected, label):
    check(set(actual) == set(expected),
          f"{label}: outputs {sorted(actual)}, expected {sorted(expected)}")
    errors = {}
    for name, reference in expected.items():
        value = actual[name]
        check(value.shape == reference.shape, f"{label}: {name} has shape {value.shape}, expected {reference.shape}")
        check(np.all(np.isfinite(value)), f"{label}: {name} has NaN or infinite values")
        errors[name] = float(np.max(np.abs(value.astype(np.float64) - reference.astype(np.float64))))
    return errors


def format_errors(errors):
    return ", ".join(f"{name} {error:.2e}" for name, error in sorted(errors.items()))


def run_roformer(model_path, inputs, work_dir):
    """Run roformer-run once on inputs and return its outputs."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    command = [str(BIN_DIR / "roformer-run"), str(model_path), "--threads", str(THREADS),
               "--warmup", "0", "--iterations", "1", "--output-dir", str(work_dir / "outputs")]
    for index, (name, array) in enumerate(inputs.items()):
        path = work_dir / f"input_{index}.npy"
        np.save(path, array)
        command += ["--input", f"{name}={path}"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    check(completed.returncode == 0, f"{' '.join(command)} failed:\n{completed.stderr.strip()}")
    files = json.loads((work_dir / "outputs" / "outputs.json").read_text())
    return {name: np.load(work_dir / "outputs" / file) for name, file in files.items()}


# --------------------------------------------------------------------------
# Checks


def op_counts(model):
    return collections.Counter(
        (f"{node.domain}." if node.domain not in ("", "ai.onnx") else "") + node.op_type
        for node in model.graph.node)


def structure_problems(model_path, layers, fixed_sequence, label):
    """Return what differs from the fused structure: one sentence per problem."""
    model = onnx.load(str(model_path), load_external_data=False)
    counts = op_counts(model)
    problems = []
    expected = {
        f"{MICROSOFT}.MultiHeadAttention": layers,
        f"{MICROSOFT}.RotaryEmbedding": 2 * layers,
        f"{MICROSOFT}.BiasGelu": layers,
    }
    for op, count in expected.items():
        if counts[op] != count:
            problems.append(f"{counts[op]} {op} nodes, expected {count} ({layers} layers)")
    # Two residual LayerNorms per layer, and the embedding LayerNorm, which
    # has no residual but may take the embedding sum as its skip input.
    skip = counts[f"{MICROSOFT}.SkipLayerNormalization"]
    plain = counts["LayerNormalization"]
    if skip < 2 * layers or skip + plain != 2 * layers + 1:
        problems.append(f"{skip} SkipLayerNormalization and {plain} LayerNormalization nodes, "
                        f"expected 2 per layer plus the embedding's ({2 * layers + 1} in all, at "
                        f"least {2 * layers} with the skip input)")
    left = {op: counts[op] for op in FUSED_AWAY if counts[op]}
    if left:
        problems.append(f"unfused ops left: {left}")

    # Q, K, V, O and two feed-forward projections per layer, or one packed
    # Q/K/V MatMul with its Split; plus the pooling head's dense layer.
    packed = counts["Split"] == layers
    expected_matmuls = (4 if packed else 6) * layers + 1
    if counts["MatMul"] != expected_matmuls:
        problems.append(f"{counts['MatMul']} MatMul nodes, expected {expected_matmuls} "
                        f"({'packed' if packed else 'unpacked'} projections)")

    if fixed_sequence:
        left = {op: counts[op] for op in SHAPE_ARITHMETIC if counts[op]}
        if left:
            problems.append(f"shape arithmetic left: {left}")
        initializers = {init.name for init in model.graph.initializer}
        computed = [node.name for node in model.graph.node
                    if node.op_type == "Reshape" and node.input[1] not in initializers]
        if computed:
            problems.append(f"Reshape targets still computed: {computed[:3]}")
    table = ", ".join(f"{op} {count}" for op, count in sorted(counts.items()))
    print(f"  {label}: {sum(counts.values())} nodes: {table}")
    for problem in problems:
        print(f"  {label}: STRUCTURE: {problem}")
    return [f"{label}: {problem}" for problem in problems]


def check_parity(original, optimized, inputs, work_dir, label, roformer_run=True):
    """The optimized model against the original in ONNX Runtime, and roformer-run likewise."""
    reference = run_model(original, inputs, threads=THREADS)
    actual = run_model(optimized, inputs_for(optimized, inputs), threads=THREADS)
    errors = max_errors(actual, reference, f"{label} in ONNX Runtime")
    worst = max(errors.values())
    check(worst <= PARITY_TOLERANCE,
          f"{label}: the optimized model differs from the original in ONNX Runtime: "
          f"{format_errors(errors)} (tolerance {PARITY_TOLERANCE:.0e})")
    print(f"  {label}: ONNX Runtime max abs error {format_errors(errors)}")
    if roformer_run:
        outputs = run_roformer(optimized, inputs_for(optimized, inputs), work_dir)
        errors = max_errors(outputs, reference, f"{label} in roformer-run")
        check(max(errors.values()) <= PARITY_TOLERANCE,
              f"{label}: roformer-run on the optimized model differs from the original: "
              f"{format_errors(errors)} (tolerance {PARITY_TOLERANCE:.0e})")
        print(f"  {label}: roformer-run max abs error {format_errors(errors)}")


# --------------------------------------------------------------------------
# Mutations


def set_attribute(node, name, value):
    for attribute in node.attribute:
        if attribute.name == name:
            node.attribute.remove(attribute)
            break
    node.attribute.append(helper.make_attribute(name, value))


def mutate_rotary_layout(model):
    nodes = [node for node in model.graph.node if node.op_type == "RotaryEmbedding"]
    for node in nodes:
        set_attribute(node, "interleaved", 0)
    return len(nodes)


def mutate_epsilon(model):
    nodes = [node for node in model.graph.node
             if node.op_type in ("SkipLayerNormalization", "LayerNormalization")]
    for node in nodes:
        set_attribute(node, "epsilon", WRONG_EPSILON)
    return len(nodes)


def mutate_drop_mask(model):
    nodes = [node for node in model.graph.node if node.op_type == "MultiHeadAttention"]
    for node in nodes:
        del node.input[4:]
    return len(nodes)


MUTATIONS = [
    ("RotaryEmbedding interleaved=0", mutate_rotary_layout),
    (f"LayerNorm epsilon {WRONG_EPSILON:g}", mutate_epsilon),
    ("MultiHeadAttention without key_padding_mask", mutate_drop_mask),
]


def check_mutations(original, optimized, inputs, work_dir):
    """Each deliberately wrong model must fail the parity check."""
    reference = run_model(original, inputs, threads=THREADS)
    for index, (label, mutate) in enumerate(MUTATIONS):
        model = onnx.load(str(optimized))
        changed = mutate(model)
        check(changed > 0, f"mutation '{label}' found no node to change")
        path = Path(work_dir) / f"mutation{index}.onnx"
        onnx.save(model, str(path))
        actual = run_model(path, inputs_for(path, inputs), threads=THREADS)
        errors = max_errors(actual, reference, f"mutation '{label}'")
        check(max(errors.values()) > PARITY_TOLERANCE,
              f"mutation '{label}' ({changed} nodes) still passes the parity check: "
              f"{format_errors(errors)}; the check cannot see this mistake")
        print(f"  mutation '{label}' ({changed} nodes) fails parity as it must: {format_errors(errors)}")


# --------------------------------------------------------------------------


def count_layers(model_path):
    model = onnx.load(str(model_path), load_external_data=False)
    return sum(node.op_type == "Softmax" for node in model.graph.node)


def vocab_size(model_path):
    model = onnx.load(str(model_path), load_external_data=False)
    for init in model.graph.initializer:
        if init.name.endswith("Embedding-Token/embedding_lookup/ReadVariableOp:0"):
            return int(init.dims[0])
    raise CheckFailed(f"{model_path} has no token embedding table")


def check_model(original, work_dir, pipeline, label, symbolic=True, mutations=True):
    """Run every check on one fixture model; return the structure problems found."""
    work_dir = work_dir / label.replace(" ", "").replace("-", "").replace("=", "")
    work_dir.mkdir(parents=True, exist_ok=True)
    layers = count_layers(original)
    vocab = vocab_size(original)
    fixed_shape = f"input_token:0=Bx{SEQ_LEN},input_segment:0=Bx{SEQ_LEN}"
    inputs = make_inputs(vocab, SEQ_LEN)

    fixed = work_dir / "fixed.onnx"
    seconds, table = optimize(original, fixed, fixed_shape, pipeline)
    print(f"  {label}, sequence {SEQ_LEN}: roformer-opt took {seconds:.2f} s\n" +
          "\n".join(f"    {line}" for line in table.splitlines()))
    problems = structure_problems(fixed, layers, True, f"{label}, sequence {SEQ_LEN}")
    check_parity(original, fixed, inputs, work_dir / "fixed-run", f"{label}, sequence {SEQ_LEN}")

    if symbolic:
        symbolic_model = work_dir / "symbolic.onnx"
        seconds, _ = optimize(original, symbolic_model, "input_token:0=BxS,input_segment:0=BxS",
                              pipeline, max_seq_len=SEQ_LEN)
        print(f"  {label}, symbolic sequence: roformer-opt took {seconds:.2f} s")
        problems += structure_problems(symbolic_model, layers, False, f"{label}, symbolic sequence")
        for length in (SEQ_LEN, SHORT_SEQ_LEN):
            check_parity(original, symbolic_model, make_inputs(vocab, length),
                         work_dir / f"symbolic-run-{length}",
                         f"{label}, symbolic sequence, run at {length}")
    if mutations:
        check_mutations(original, fixed, inputs, work_dir)
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path,
                        help="check this existing fixture model (e.g. the full-size one) instead of "
                             "generating the small fixture and its variants")
    args = parser.parse_args(argv)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fusion-parity-") as work_dir:
        work_dir = Path(work_dir)
        try:
            pipeline, appended = default_pipeline()
            if appended:
                print(f"NOTE: the default pipeline lacks {', '.join(appended)}; running it with "
                      f"them appended: {pipeline}")
            run_pipeline = pipeline if appended else None
            if args.model is not None:
                problems = check_model(args.model, work_dir, run_pipeline, args.model.stem,
                                       mutations=False)
            else:
                small = generate_fixture(work_dir / "small", "--small", "--encoder-output", "--no-samples")
                problems = check_model(small, work_dir, run_pipeline, "small")
                matmul = generate_fixture(work_dir / "matmul", "--small", "--encoder-output", "--no-samples",
                                          "--no-einsum", "--opset=11")
                problems += check_model(matmul, work_dir, run_pipeline, "small --no-einsum --opset=11",
                                        symbolic=False, mutations=False)
            # Structure problems are collected so that one run reports them
            # all and still runs the parity and mutation checks.
            check(not problems, "the optimized graphs differ from the fused structure:\n  " +
                  "\n  ".join(problems))
        except (CheckFailed, OrtRunError) as failure:
            print(f"FAIL: {failure}")
            return 1
    print(f"PASS: the fused models match the original within {PARITY_TOLERANCE:.0e} and every "
          f"mutation fails ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
