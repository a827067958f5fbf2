#!/usr/bin/python3
"""Check that roformer-run computes what ONNX Runtime computes.

Generates the small fixture model with encoder_output:0 exposed, runs it with
roformer-run and with ONNX Runtime on the same inputs, and compares every
output within 1e-4 max abs error. The inputs are roformer-run's synthetic ones
and padded sequences of the generated CAIL2019 sample set. Graph variants that
use other ops (Transpose + MatMul instead of Einsum, literal Pow and Div,
opsets 11 and 17) get the same check. check_runtime_parity() is the reusable
part, so a later test can run it on an optimized model.

    ROFORMER_BIN_DIR=build/bin /usr/bin/python3 test/e2e/test_runtime_parity.py

Needs onnxruntime-node (scripts/install-ort). Exits with 1 on a failed check.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtureutil import MODEL_FILE, SAMPLES_DIR, load_samples  # noqa: E402
from ortutil import OrtRunError, run_model  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("ROFORMER_BIN_DIR", REPO_ROOT / "build" / "bin"))

# Max abs error allowed between roformer-run and ONNX Runtime, per output.
PARITY_TOLERANCE = 1e-4
# Encoder outputs of two different sequences must differ by more than this,
# or agreement within PARITY_TOLERANCE would prove little.
MIN_SEQUENCE_DIFFERENCE = 1e-2
THREADS = 2
SAMPLE_LENGTH = 160
SAMPLE_COUNT = 16

# [CLS] and [SEP] ids of the fixture's BERT vocabulary.
CLS_ID = 101
SEP_ID = 102

# Fixture flags of the graph variants checked besides the default graph.
VARIANT_FLAGS = [
    ["--no-einsum", "--opset=11"],
    ["--no-tf-constfold", "--rotary-table-per-layer", "--opset=17"],
]


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def generate_model(output_dir, *flags):
    """Run build/bin/roformer-fixture into output_dir and return the model path."""
    command = [str(BIN_DIR / "roformer-fixture"), "--small", "--encoder-output", "--quiet",
               f"--max-seq-len={SAMPLE_LENGTH}", f"--samples={SAMPLE_COUNT}", "-o", str(output_dir),
               *flags]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if completed.returncode != 0:
        raise CheckFailed(f"{' '.join(command)} failed:\n{completed.stderr.strip()}")
    return Path(output_dir) / MODEL_FILE


def run_roformer(*args, expect_success=True, env=None, timeout_s=600):
    """Run build/bin/roformer-run with args and return the CompletedProcess."""
    command = [str(BIN_DIR / "roformer-run"), *[str(arg) for arg in args]]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                               env=env)
    if expect_success and completed.returncode != 0:
        raise CheckFailed(f"{' '.join(command)} exited with {completed.returncode}:\n"
                          f"{completed.stderr.strip()}")
    return completed


def read_tensor_folder(folder, index_file):
    """Load the .npy files a roformer-run --output-dir or --save-inputs folder lists."""
    folder = Path(folder)
    files = json.loads((folder / index_file).read_text())
    return {name: np.load(folder / file) for name, file in files.items()}


def run_roformer_on(model_path, inputs, work_dir, *extra_args):
    """Run roformer-run once on inputs (name -> array) and return its outputs."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    args = [model_path, "--threads", THREADS, "--warmup", 0, "--iterations", 1,
            "--output-dir", work_dir / "outputs"]
    for index, (name, array) in enumerate(inputs.items()):
        path = work_dir / f"input_{index}.npy"
        np.save(path, np.ascontiguousarray(array))
        args += ["--input", f"{name}={path}"]
    run_roformer(*args, *extra_args)
    return read_tensor_folder(work_dir / "outputs", "outputs.json")


def compare_outputs(actual, expected, label, tolerance=PARITY_TOLERANCE):
    """Check that both runs give the same outputs within tolerance; return max abs errors."""
    check(set(actual) == set(expected),
          f"{label}: roformer-run outputs {sorted(actual)} but ONNX Runtime {sorted(expected)}")
    errors = {}
    for name, reference in expected.items():
        value = actual[name]
        check(value.shape == reference.shape,
              f"{label}: {name} has shape {value.shape}, ONNX Runtime {reference.shape}")
        check(value.dtype == reference.dtype,
              f"{label}: {name} has dtype {value.dtype}, ONNX Runtime {reference.dtype}")
        check(np.all(np.isfinite(value)), f"{label}: {name} has NaN or infinite values")
        error = float(np.max(np.abs(value.astype(np.float64) - reference.astype(np.float64))))
        check(error <= tolerance,
              f"{label}: {name} differs from ONNX Runtime by {error:.3e} max abs, more than "
              f"{tolerance:.0e}")
        errors[name] = error
    return errors


def check_runtime_parity(model_path, inputs, work_dir, label, tolerance=PARITY_TOLERANCE):
    """Run model_path in roformer-run and ONNX Runtime on inputs and compare every output.

    Returns {output name: max abs error}. Raises CheckFailed when an output is
    missing, has another shape or dtype, or differs by more than tolerance.
    """
    actual = run_roformer_on(model_path, inputs, work_dir)
    expected = run_model(model_path, inputs, threads=THREADS)
    return compare_outputs(actual, expected, label, tolerance)


def pad_or_truncate(lists, length):
    """Right-pad id lists with 0, or cut them, to float32 [len(lists), length]."""
    batch = np.zeros((len(lists), length), dtype=np.float32)
    for row, values in enumerate(lists):
        values = values[:length]
        batch[row, :len(values)] = values
    return batch


def print_errors(label, errors):
    listed = ", ".join(f"{name} {error:.2e}" for name, error in sorted(errors.items()))
    print(f"  {label}: max abs error {listed}")


def check_synthetic(model_path, work_dir):
    """Parity on roformer-run's own synthetic inputs, whose layout is checked first."""
    work_dir = Path(work_dir)
    run_roformer(model_path, "--synthetic", "--batch", 3, "--seq-len", 96, "--seed", 5,
                 "--threads", THREADS, "--warmup", 0, "--iterations", 1,
                 "--save-inputs", work_dir / "inputs", "--output-dir", work_dir / "outputs")
    inputs = read_tensor_folder(work_dir / "inputs", "inputs.json")
    check(set(inputs) == {"input_token:0", "input_segment:0"},
          f"synthetic inputs are {sorted(inputs)}")
    tokens = inputs["input_token:0"]
    segments = inputs["input_segment:0"]
    check(tokens.dtype == np.float32 and tokens.shape == (3, 96),
          f"synthetic tokens are {tokens.dtype} {tokens.shape}, expected float32 (3, 96) like the "
          "model's input")
    vocab = 1000  # the --small fixture's vocabulary
    check(np.all(tokens >= 1) and np.all(tokens < vocab), "synthetic token ids leave [1, vocab)")
    check(np.all(tokens[:, 0] == CLS_ID), "synthetic sequences do not start with [CLS]")
    check(np.all(tokens[:, -1] == SEP_ID), "synthetic sequences do not end with [SEP]")
    first_sep = 1 + (96 - 3) // 2
    check(np.all(tokens[:, first_sep] == SEP_ID), "the first [SEP] is missing")
    check(np.all(segments[:, :first_sep + 1] == 0) and np.all(segments[:, first_sep + 1:] == 1),
          "synthetic segments are not 0 up to the first [SEP] and 1 after it")
    check(not np.array_equal(tokens[0], tokens[1]), "synthetic sequences repeat")

    actual = read_tensor_folder(work_dir / "outputs", "outputs.json")
    expected = run_model(model_path, inputs, threads=THREADS)
    errors = compare_outputs(actual, expected, "synthetic inputs")
    encoder = actual["encoder_output:0"]
    difference = float(np.max(np.abs(encoder[0] - encoder[1])))
    check(difference > MIN_SEQUENCE_DIFFERENCE,
          f"encoder outputs of two different sequences differ by only {difference:.2e}")
    print_errors("synthetic [3, 96]", errors)


def check_samples(model_path, samples_dir, work_dir, label):
    """Parity on the first sample sequences, padded to SAMPLE_LENGTH."""
    token_lists, segment_lists, _ = load_samples(samples_dir)
    inputs = {
        "input_token:0": pad_or_truncate(token_lists[:4], SAMPLE_LENGTH),
        "input_segment:0": pad_or_truncate(segment_lists[:4], SAMPLE_LENGTH),
    }
    errors = check_runtime_parity(model_path, inputs, work_dir, label)
    print_errors(label, errors)


def main():
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runtime-parity-") as work_dir:
        work_dir = Path(work_dir)
        try:
            model_path = generate_model(work_dir / "default")
            check_synthetic(model_path, work_dir / "synthetic")
            check_samples(model_path, work_dir / "default" / SAMPLES_DIR, work_dir / "samples",
                          f"CAIL2019 samples [4, {SAMPLE_LENGTH}]")
            for index, flags in enumerate(VARIANT_FLAGS):
                variant_dir = work_dir / f"variant{index}"
                variant_path = generate_model(variant_dir, *flags)
                check_samples(variant_path, variant_dir / SAMPLES_DIR,
                              work_dir / f"variant{index}-run", f"samples, {' '.join(flags)}")
        except (CheckFailed, OrtRunError) as failure:
            print(f"FAIL: {failure}")
            return 1
    print(f"PASS: roformer-run matches ONNX Runtime within {PARITY_TOLERANCE:.0e} "
          f"({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
