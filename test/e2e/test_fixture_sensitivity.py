#!/usr/bin/python3
"""Prove that the fixture model is sensitive to the rotary element pairing.

A rotary embedding applied to the wrong element pairs (rotating halves instead
of interleaved pairs) must move encoder_output:0 by more than 1e-2 in ONNX
Runtime, or parity tests would pass on a broken rotary fusion. Two runs of the
same model must agree, and both models must hold the same weights.

    /usr/bin/python3 test/e2e/test_fixture_sensitivity.py

Needs onnxruntime-node (scripts/install-ort). Exits with 1 on a failed check.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtureutil import SAMPLES_DIR, generate_fixture, load_padded_samples  # noqa: E402
from ortutil import OrtRunError, run_model  # noqa: E402

BATCH = 4
MAX_SEQ_LEN = 96
SEED = 7

# The wrong pairing must move the encoder output by more than this.
MIN_WRONG_PAIRING_DIFF = 1e-2
# Two runs of one model on one input may differ only by float32 rounding.
SAME_MODEL_TOLERANCE = 1e-6


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def weights(model_path):
    """The trained-variable initializers (named .../ReadVariableOp:0 in a tf2onnx export)."""
    model = onnx.load(str(model_path))
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer
            if init.name.endswith("ReadVariableOp:0")}


def run(model_path, feeds):
    return run_model(model_path, feeds, threads=2)


def main():
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fixture-sensitivity-") as work_dir:
        work_dir = Path(work_dir)
        try:
            flags = ["--small", "--encoder-output", f"--seed={SEED}", f"--max-seq-len={MAX_SEQ_LEN}"]
            original = generate_fixture(work_dir / "original", *flags)
            halves = generate_fixture(work_dir / "halves", *flags, "--no-samples", "--rotary-halves")

            original_weights, halves_weights = weights(original), weights(halves)
            check(original_weights.keys() == halves_weights.keys(), "the two models have different weight names")
            check(all(np.array_equal(original_weights[name], halves_weights[name]) for name in original_weights),
                  "the two models have different weights")
            print(f"  both models hold the same {len(original_weights)} weight tensors (seed {SEED})")

            tokens, segments = load_padded_samples(work_dir / "original" / SAMPLES_DIR, BATCH, MAX_SEQ_LEN)
            feeds = {"input_token:0": tokens, "input_segment:0": segments}
            first = run(original, feeds)
            second = run(original, feeds)
            wrong = run(halves, feeds)

            same_diff = np.abs(first["encoder_output:0"] - second["encoder_output:0"]).max()
            check(same_diff <= SAME_MODEL_TOLERANCE, f"two runs of the original model differ by {same_diff:.2e}")
            print(f"  original vs itself: encoder_output:0 max abs diff {same_diff:.1e}")

            encoder_diff = np.abs(first["encoder_output:0"] - wrong["encoder_output:0"]).max()
            score_diff = np.abs(first["Identity:0"] - wrong["Identity:0"]).max()
            check(encoder_diff > MIN_WRONG_PAIRING_DIFF,
                  f"rotating halves moved encoder_output:0 by only {encoder_diff:.2e} "
                  f"(need > {MIN_WRONG_PAIRING_DIFF})")
            print(f"  original vs --rotary-halves: encoder_output:0 max abs diff {encoder_diff:.3f}, "
                  f"score max abs diff {score_diff:.2e}")
        except (CheckFailed, OrtRunError) as failure:
            print(f"FAIL: {failure}")
            return 1
    print(f"PASS: fixture is sensitive to the rotary pairing ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
