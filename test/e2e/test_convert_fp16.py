#!/usr/bin/python3
"""Check that convert-fp16 writes a float16 model ONNX Runtime runs correctly.

Generates the small fixture with encoder_output:0 exposed and a 50000-token
vocabulary, so that ids exceed 2048, above which float16 skips integers.
Optimizes it with roformer-opt's default pipeline, converts it with
convert-fp16, and runs both in ONNX Runtime (CPU) on padded batches. The
converted model must keep float32 inputs and outputs, store its weights as
float16, and agree with the float32 model to a cosine similarity of at least
0.999 on every output. A control converts with keep-io-types=false, which feeds
the ids as float16: its encoder output must fall below that similarity, which
shows that the check sees rounded ids.

    ROFORMER_BIN_DIR=build/bin /usr/bin/python3 test/e2e/test_convert_fp16.py

Needs onnxruntime-node (scripts/install-ort). Exits with 1 on a failed check.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtureutil import generate_fixture  # noqa: E402
from ortutil import OrtRunError, run_model  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("ROFORMER_BIN_DIR", REPO_ROOT / "build" / "bin"))

MIN_COSINE = 0.999
VOCAB = 50000
BATCH = 4
SEQUENCE = 96
CLS_ID = 101
SEP_ID = 102


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def roformer_opt(*args):
    command = [str(BIN_DIR / "roformer-opt"), *map(str, args), "--quiet"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if completed.returncode != 0:
        raise CheckFailed(f"{' '.join(command)} failed: {completed.stderr.strip()}")


def padded_inputs(rng):
    """[CLS] text [SEP] text [SEP] rows of varying length, then 0 padding."""
    tokens = np.zeros((BATCH, SEQUENCE), dtype=np.float32)
    segments = np.zeros((BATCH, SEQUENCE), dtype=np.float32)
    for row, length in enumerate([SEQUENCE, 70, 33, 9][:BATCH]):
        split = length // 2
        tokens[row, :length] = rng.integers(2100, VOCAB, size=length)
        tokens[row, 0] = CLS_ID
        tokens[row, split] = SEP_ID
        tokens[row, length - 1] = SEP_ID
        segments[row, split + 1:length] = 1
    return tokens, segments


def feeds_for(model_path, tokens, segments, dtype=np.float32):
    names = [value.name for value in onnx.load(str(model_path), load_external_data=False).graph.input]
    return {name: (tokens if "token" in name else segments).astype(dtype) for name in names}


def cosine(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def check_interface(path):
    model = onnx.load(str(path))
    for value in list(model.graph.input) + list(model.graph.output):
        check(value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT,
              f"{path.name}: {value.name} is not float32; keep-io-types must keep the interface")
    float16 = sum(1 for tensor in model.graph.initializer
                  if tensor.data_type == onnx.TensorProto.FLOAT16)
    float32 = sum(1 for tensor in model.graph.initializer
                  if tensor.data_type == onnx.TensorProto.FLOAT)
    check(float16 > 0 and float32 == 0,
          f"{path.name}: {float16} float16 and {float32} float32 initializers; expected only float16")


def main():
    started = time.monotonic()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="convert-fp16-") as work:
        work = Path(work)
        try:
            raw = generate_fixture(work, "--small", "--encoder-output", "--no-samples",
                                   f"--vocab={VOCAB}")
            optimized = work / "optimized.onnx"
            converted = work / "optimized-fp16.onnx"
            control = work / "optimized-fp16-io.onnx"
            roformer_opt(raw, "-o", optimized, "--max-seq-len", 1024)
            roformer_opt(optimized, "-o", converted, "--pass-pipeline=convert-fp16")
            roformer_opt(optimized, "-o", control, "--pass-pipeline=convert-fp16(keep-io-types=false)")
            check_interface(converted)

            tokens, segments = padded_inputs(rng)
            expected = run_model(optimized, feeds_for(optimized, tokens, segments))
            actual = run_model(converted, feeds_for(converted, tokens, segments))
            check(set(actual) == set(expected), f"outputs differ: {sorted(actual)} vs {sorted(expected)}")
            for name, reference in expected.items():
                check(actual[name].dtype == np.float32, f"{name} is {actual[name].dtype}, not float32")
                similarity = cosine(actual[name], reference)
                error = float(np.abs(actual[name] - reference).max())
                print(f"  {name}: cosine {similarity:.7f}, max abs error {error:.2e}")
                check(similarity >= MIN_COSINE,
                      f"{name}: cosine similarity {similarity:.6f} is below {MIN_COSINE}")

            rounded = run_model(control, feeds_for(control, tokens, segments, np.float16))
            control_similarity = cosine(rounded["encoder_output:0"].astype(np.float32),
                                        expected["encoder_output:0"])
            print(f"  control with float16 ids: encoder_output:0 cosine {control_similarity:.7f}")
            check(control_similarity < MIN_COSINE,
                  f"feeding float16 ids gave cosine {control_similarity:.6f}; the check cannot "
                  "tell rounded ids from exact ones")
        except (CheckFailed, OrtRunError, RuntimeError) as failure:
            print(f"FAIL: {failure}")
            return 1
    print(f"PASS: the float16 model matches float32 in ONNX Runtime "
          f"({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
