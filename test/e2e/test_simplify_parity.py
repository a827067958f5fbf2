#!/usr/bin/python3
"""Check that roformer-opt's simplification passes keep what the RoFormer computes.

Generates the small fixture model with encoder_output:0 exposed and runs the
simplification part of the default pipeline on it: names, input shapes, then
infer-shapes, fold-constants, eliminate-identities, cse, simplify-reshapes
and dce to a fixed point. It does so three times: with the sequence fixed to
128 and the batch symbolic, with both fixed, and with both symbolic. The MatMul form of
the attention products (--no-einsum, opset 11) gets the first run too.

For each result it checks:
  - every output against the unoptimized model in ONNX Runtime within 1e-5
    max abs error, and in roformer-run within 1e-4 when it is built. The
    symbolic model runs at two sequence lengths;
  - the op table: no Identity, no tensordot Reshape-MatMul-Reshape left, one
    mask computation; with the sequence fixed, no shape arithmetic that
    depends on shapes, every Reshape
    target a constant, and the rotary tables as two constants for the whole
    model instead of Range, Sin, Cos, Split and Concat nodes;
  - that the optimized file is not larger than the original.
Deliberately wrong constants (cos and sin tables swapped, positions shifted
by one, position 0 of the padding mask no longer forced unmasked) must fail
the parity check, which shows that it can see a wrong fold. It also checks that roformer-opt leaves its input file unchanged (bytes and
modification time) and that a failed run leaves no output file, neither a
new one nor a change to an existing one.

    ROFORMER_BIN_DIR=build/bin /usr/bin/python3 test/e2e/test_simplify_parity.py

Needs onnxruntime-node (scripts/install-ort). Exits with 1 on a failed check.
"""

import collections
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtureutil import generate_fixture  # noqa: E402
from ortutil import OrtRunError, run_model  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("ROFORMER_BIN_DIR", REPO_ROOT / "build" / "bin"))

# The simplification part of the default pipeline; the test checks that the
# default pipeline starts with it.
PIPELINE = ("sanitize-names,set-input-shape,"
            "fixpoint(infer-shapes,fold-constants,eliminate-identities,cse,simplify-reshapes,dce),dce")

# The passes only rewrite, so ONNX Runtime may differ only by the float32
# rounding of reordered but equal computations, such as a rank-3 MatMul in
# place of a flattened one. Measured: 7.2e-7 on the small fixture.
ORT_TOLERANCE = 1e-5
# roformer-run is another engine with its own kernels, so it gets the
# tolerance the fusion tests give it.
RUNTIME_TOLERANCE = 1e-4
THREADS = 2
SEQ_LEN = 128
SHORT_SEQ_LEN = 96
# Rows of the test batch: full, padded, only [CLS], and a padded row whose
# first token is also 0: the export keeps position 0 unmasked whatever its
# token, which the rewritten mask must too.
ROW_LENGTHS = (SEQ_LEN, 50, 1, 40)
ZERO_FIRST_ROW = 3
CLS_ID, SEP_ID, FIRST_TEXT_ID = 101, 102, 104
# The masked score offset of the export: scores * m + MASK_OFFSET * (1 - m).
MASK_OFFSET = -1e12

# Ops that compute with shapes; with the sequence fixed none may remain.
SHAPE_OPS = {"Shape", "Size", "Gather", "Slice", "Concat", "Cast", "Squeeze", "Unsqueeze",
             "ReduceProd", "Range", "ConstantOfShape"}
ROTARY_OPS = ["Range", "Sin", "Cos", "Split"]


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


# --------------------------------------------------------------------------
# Running roformer-opt, ONNX Runtime and roformer-run


def file_state(path):
    stat = os.stat(path)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest(), stat.st_mtime_ns, stat.st_size


def optimize(model_path, output_path, input_shape=None, extra=()):
    """Run roformer-opt with PIPELINE; return (seconds, its before/after op table)."""
    command = [str(BIN_DIR / "roformer-opt"), str(model_path), "-o", str(output_path),
               f"--pass-pipeline={PIPELINE}", *extra]
    if input_shape is not None:
        command.append(f"--input-shape={input_shape}")
    before = file_state(model_path)
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    check(completed.returncode == 0, f"{' '.join(command)} failed:\n{completed.stderr.strip()}")
    check(file_state(model_path) == before,
          f"roformer-opt changed its input file {model_path} (content or modification time)")
    return seconds, completed.stderr.strip()


def make_inputs(vocab, length, seed=7):
    """Token and segment ids [4, length]: rows of ROW_LENGTHS (cut to length), zero-padded."""
    rng = np.random.default_rng(seed)
    tokens = np.zeros((len(ROW_LENGTHS), length), dtype=np.float32)
    segments = np.zeros_like(tokens)
    for row, row_length in enumerate(ROW_LENGTHS):
        row_length = min(row_length, length)
        ids = rng.integers(FIRST_TEXT_ID, vocab, size=row_length)
        ids[0] = CLS_ID
        if row_length > 1:
            ids[-1] = SEP_ID
        if row == ZERO_FIRST_ROW:
            ids[0] = 0
        tokens[row, :row_length] = ids
        segments[row, row_length // 2:row_length] = 1
    return {"input_token:0": tokens, "input_segment:0": segments}


def sanitized(inputs):
    """The inputs under the names sanitize-names gives them by default."""
    return {name.replace(":", ""): array for name, array in inputs.items()}


def max_errors(actual, expected, label):
    check(set(actual) == set(expected),
          f"{label}: outputs {sorted(actual)}, expected {sorted(expected)}")
    errors = {}
    for name, reference in expected.items():
        value = actual[name]
        check(value.shape == reference.shape,
              f"{label}: {name} has shape {value.shape}, expected {reference.shape}")
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
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    check(completed.returncode == 0, f"{' '.join(command)} failed:\n{completed.stderr.strip()}")
    files = json.loads((work_dir / "outputs" / "outputs.json").read_text())
    return {name: np.load(work_dir / "outputs" / file) for name, file in files.items()}


def check_parity(original, optimized, inputs, work_dir, label):
    reference = run_model(original, inputs, threads=THREADS)
    actual = run_model(optimized, sanitized(inputs), threads=THREADS)
    errors = max_errors(actual, reference, f"{label} in ONNX Runtime")
    check(max(errors.values()) <= ORT_TOLERANCE,
          f"{label}: the optimized model differs from the original in ONNX Runtime: "
          f"{format_errors(errors)} (tolerance {ORT_TOLERANCE:.0e})")
    print(f"  {label}: ONNX Runtime max abs error {format_errors(errors)}")
    if not (BIN_DIR / "roformer-run").exists():
        print(f"  {label}: roformer-run not built in {BIN_DIR}; its parity was not checked")
        return
    outputs = run_roformer(optimized, sanitized(inputs), work_dir)
    errors = max_errors(outputs, reference, f"{label} in roformer-run")
    check(max(errors.values()) <= RUNTIME_TOLERANCE,
          f"{label}: roformer-run on the optimized model differs from the original: "
          f"{format_errors(errors)} (tolerance {RUNTIME_TOLERANCE:.0e})")
    print(f"  {label}: roformer-run max abs error {format_errors(errors)}")


# --------------------------------------------------------------------------
# Structure


def op_counts(model):
    return collections.Counter(node.op_type for node in model.graph.node)


def shape_plumbing(model):
    """Nodes that compute from Shape results: Shape nodes and, transitively,
    the SHAPE_OPS nodes whose non-constant inputs all come from such nodes."""
    constants = {init.name for init in model.graph.initializer}
    derived = set()
    plumbing = []
    for node in model.graph.node:
        inputs = [name for name in node.input if name and name not in constants]
        from_shapes = inputs and all(name in derived for name in inputs)
        if node.op_type == "Shape" or (node.op_type in SHAPE_OPS and from_shapes):
            plumbing.append(node)
            derived.update(node.output)
    return plumbing


def structure_problems(model_path, layers, fixed_sequence, label):
    """Return what differs from the simplified structure: one sentence per problem."""
    model = onnx.load(str(model_path))
    counts = op_counts(model)
    problems = []
    if counts["Identity"]:
        problems.append(f"{counts['Identity']} Identity nodes left")
    if counts["ReduceProd"]:
        problems.append(f"{counts['ReduceProd']} ReduceProd nodes of tensordot shapes left")

    producers = {output: node for node in model.graph.node for output in node.output}
    tensordots = [node.name for node in model.graph.node if node.op_type == "Reshape" and
                  node.input[0] in producers and producers[node.input[0]].op_type == "MatMul" and
                  producers[node.input[0]].input[0] in producers and
                  producers[producers[node.input[0]].input[0]].op_type == "Reshape"]
    if tensordots:
        problems.append(f"tensordot Reshape-MatMul-Reshape chains left: {tensordots[:3]}")

    # The attention mask -1e12 * (1 - m) of every layer is one computation.
    initializers = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    offsets = [node.name for node in model.graph.node if node.op_type == "Mul" and any(
        name in initializers and initializers[name].size == 1 and
        np.isclose(float(initializers[name].reshape(-1)[0]), MASK_OFFSET) for name in node.input)]
    if len(offsets) != 1:
        problems.append(f"{len(offsets)} mask offset computations (Mul by {MASK_OFFSET:g}), "
                        f"expected 1 for {layers} layers")

    if fixed_sequence:
        plumbing = shape_plumbing(model)
        if plumbing:
            kinds = collections.Counter(node.op_type for node in plumbing)
            problems.append(f"shape arithmetic left: {dict(kinds)}")
        computed = [node.name for node in model.graph.node
                    if node.op_type == "Reshape" and node.input[1] not in initializers]
        if computed:
            problems.append(f"Reshape targets still computed: {computed[:3]}")
        left = {op: counts[op] for op in ROTARY_OPS if counts[op]}
        if left:
            problems.append(f"rotary table computation left: {left}")
        tables = [name for name, array in initializers.items()
                  if array.dtype == np.float32 and SEQ_LEN in array.shape]
        if len(tables) != 2:
            problems.append(f"{len(tables)} initializers with the sequence dim, expected the 2 "
                            f"rotary tables: {tables[:6]}")
    else:
        # Computed once from the sequence length, not per layer.
        for op in ("Sin", "Cos"):
            if counts[op] != 1:
                problems.append(f"{counts[op]} {op} nodes, expected 1 for the whole model")

    table = ", ".join(f"{op} {count}" for op, count in sorted(counts.items()))
    print(f"  {label}: {sum(counts.values())} nodes: {table}")
    for problem in problems:
        print(f"  {label}: STRUCTURE: {problem}")
    return [f"{label}: {problem}" for problem in problems]


def count_layers(model_path):
    model = onnx.load(str(model_path))
    return sum(node.op_type == "Softmax" for node in model.graph.node)


def vocab_size(model_path):
    model = onnx.load(str(model_path))
    for init in model.graph.initializer:
        if init.name.endswith("Embedding-Token/embedding_lookup/ReadVariableOp:0"):
            return int(init.dims[0])
    raise CheckFailed(f"{model_path} has no token embedding table")


# --------------------------------------------------------------------------
# Checks


def check_default_pipeline():
    completed = subprocess.run([str(BIN_DIR / "roformer-opt"), "--print-default-pipeline"],
                               capture_output=True, text=True, timeout=60)
    check(completed.returncode == 0,
          f"roformer-opt --print-default-pipeline failed:\n{completed.stderr}")
    default = completed.stdout.strip()
    simplification = PIPELINE[:-len(",dce")]
    check(default.startswith(simplification),
          f"the default pipeline '{default}' does not start with the simplification passes "
          f"'{simplification}' that this test checks")


def check_variant(original, work_dir, label, shapes):
    """Optimize `original` once per (name, --input-shape, fixed seq, fixed batch) and check it."""
    layers = count_layers(original)
    vocab = vocab_size(original)
    original_size = os.path.getsize(original)
    problems = []
    for name, input_shape, fixed_sequence, fixed_batch in shapes:
        run_label = f"{label}, {name}"
        optimized = work_dir / f"{name.replace(' ', '-')}.onnx"
        seconds, table = optimize(original, optimized, input_shape)
        print(f"  {run_label}: roformer-opt took {seconds:.2f} s\n" +
              "\n".join(f"    {line}" for line in table.splitlines()))
        size = os.path.getsize(optimized)
        print(f"  {run_label}: file {original_size} -> {size} bytes")
        if size > original_size:
            problems.append(f"{run_label}: the optimized file has {size} bytes, more than the "
                            f"original's {original_size}")
        problems += structure_problems(optimized, layers, fixed_sequence, run_label)

        lengths = [SEQ_LEN] if fixed_sequence else [SEQ_LEN, SHORT_SEQ_LEN]
        for length in lengths:
            inputs = make_inputs(vocab, length)
            if fixed_batch:
                inputs = {key: value[:2] for key, value in inputs.items()}
            check_parity(original, optimized, inputs, work_dir / f"{name}-run-{length}",
                         f"{run_label}, run at {length}")
    return problems


def rotary_tables(model):
    return [init for init in model.graph.initializer
            if init.data_type == onnx.TensorProto.FLOAT and SEQ_LEN in init.dims]


def mutate_swap_tables(model):
    """cos and sin tables exchanged, as a fold that mixed up the two would."""
    first, second = rotary_tables(model)
    first_data = numpy_helper.to_array(first).copy()
    first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(second), first.name))
    second.CopyFrom(numpy_helper.from_array(first_data, second.name))


def mutate_shift_positions(model):
    """Both tables shifted by one position, as an off-by-one Range fold would."""
    for table in rotary_tables(model):
        array = numpy_helper.to_array(table)
        axis = list(array.shape).index(SEQ_LEN)
        table.CopyFrom(numpy_helper.from_array(np.roll(array, 1, axis=axis), table.name))


def mutate_mask_prefix(model):
    """Position 0 no longer kept unmasked, as a wrong constant-prefix rewrite would do."""
    prefixes = [init for init in model.graph.initializer
                if init.data_type == onnx.TensorProto.BOOL and init.name.endswith("_prefix")]
    check(len(prefixes) == 1, f"expected one mask prefix constant, found {len(prefixes)}")
    array = numpy_helper.to_array(prefixes[0])
    prefixes[0].CopyFrom(numpy_helper.from_array(np.zeros_like(array), prefixes[0].name))


def check_mutations(original, optimized, work_dir):
    """Deliberately wrong rotary tables and mask constants must fail the parity check."""
    vocab = vocab_size(original)
    inputs = make_inputs(vocab, SEQ_LEN)
    reference = run_model(original, inputs, threads=THREADS)
    mutations = [("cos and sin swapped", mutate_swap_tables),
                 ("positions shifted by one", mutate_shift_positions),
                 ("position 0 masked", mutate_mask_prefix)]
    for index, (label, mutate) in enumerate(mutations):
        model = onnx.load(str(optimized))
        check(len(rotary_tables(model)) == 2, f"{optimized} does not have 2 rotary tables")
        mutate(model)
        path = work_dir / f"mutation{index}.onnx"
        onnx.save(model, str(path))
        actual = run_model(path, sanitized(inputs), threads=THREADS)
        errors = max_errors(actual, reference, f"mutation '{label}'")
        check(max(errors.values()) > ORT_TOLERANCE,
              f"mutation '{label}' still passes the parity check: {format_errors(errors)}; the "
              f"check cannot see this mistake")
        print(f"  mutation '{label}' fails parity as it must: {format_errors(errors)}")


def check_failed_runs(original, work_dir):
    """A failed run writes nothing: no new file, no change to an existing one."""
    bad_shape = "input_token:0=Bx128x1,input_segment:0=Bx128"
    fresh = work_dir / "failed.onnx"
    command = [str(BIN_DIR / "roformer-opt"), str(original), "-o", str(fresh),
               f"--pass-pipeline={PIPELINE}", f"--input-shape={bad_shape}"]
    before = file_state(original)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    check(completed.returncode == 1, f"a run with --input-shape={bad_shape} exited with "
          f"{completed.returncode}, expected 1:\n{completed.stderr}")
    check("has rank 3" in completed.stderr, f"unexpected message: {completed.stderr.strip()}")
    check(not fresh.exists(), f"the failed run left {fresh} behind")

    existing = work_dir / "existing.onnx"
    existing.write_bytes(b"previous content")
    command[command.index(str(fresh))] = str(existing)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    check(completed.returncode == 1, "the second failing run did not exit with 1")
    check(existing.read_bytes() == b"previous content",
          f"the failed run changed the existing output {existing}")
    leftovers = [path.name for path in work_dir.iterdir() if ".tmp" in path.name]
    check(not leftovers, f"failed runs left temporary files: {leftovers}")
    check(file_state(original) == before, "a failed run changed the input file")
    print("  failed runs: exit code 1, no output written, existing output and input unchanged")


def main():
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="simplify-parity-") as work_dir:
        work_dir = Path(work_dir)
        try:
            check_default_pipeline()
            small = generate_fixture(work_dir / "small", "--small", "--encoder-output", "--no-samples")
            problems = check_variant(small, work_dir, "small", [
                ("sequence 128", f"input_token:0=Bx{SEQ_LEN},input_segment:0=Bx{SEQ_LEN}", True, False),
                ("batch 2 sequence 128", f"input_token:0=2x{SEQ_LEN},input_segment:0=2x{SEQ_LEN}",
                 True, True),
                ("symbolic", None, False, False),
            ])
            matmul_dir = work_dir / "matmul"
            matmul = generate_fixture(matmul_dir, "--small", "--encoder-output", "--no-samples",
                                      "--no-einsum", "--opset=11")
            problems += check_variant(matmul, matmul_dir, "small --no-einsum --opset=11", [
                ("sequence 128", f"input_token:0=Bx{SEQ_LEN},input_segment:0=Bx{SEQ_LEN}", True, False),
            ])
            check_mutations(small, work_dir / "sequence-128.onnx", work_dir)
            check_failed_runs(small, work_dir / "small")
            # Structure problems are collected so that one run reports them all.
            check(not problems, "the optimized graphs differ from the simplified structure:\n  " +
                  "\n  ".join(problems))
        except (CheckFailed, OrtRunError) as failure:
            print(f"FAIL: {failure}")
            return 1
    print(f"PASS: the simplified models match the original within {ORT_TOLERANCE:.0e} in ONNX "
          f"Runtime and have the simplified structure ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
