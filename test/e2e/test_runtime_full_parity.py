#!/usr/bin/python3
"""Check roformer-run against ONNX Runtime on the full-size fixture model.

Generates the default-size model (12 layers, hidden 768, vocab 50000, about
500 MB) with encoder_output:0 exposed, runs one batch of roformer-run's
synthetic inputs at sequence length 128 in both engines, and compares every
output within 1e-4 max abs error. The small model's parity test covers the
ops. This one covers the sizes: large matrix products split over threads,
the 50000-row embedding and twelve layers of accumulated rounding.

    ROFORMER_BIN_DIR=build/bin /usr/bin/python3 test/e2e/test_runtime_full_parity.py

Needs onnxruntime-node (scripts/install-ort); roformer-run peaks at about 1 GB
of resident memory here (measured with /usr/bin/time -v). Exits
with 1 on a failed check.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtureutil import MODEL_FILE  # noqa: E402
from ortutil import OrtRunError, run_model  # noqa: E402
from test_runtime_parity import (  # noqa: E402
    BIN_DIR, PARITY_TOLERANCE, THREADS, CheckFailed, compare_outputs, print_errors,
    read_tensor_folder, run_roformer)

SEQ_LEN = 128
BATCH = 1


def main():
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runtime-full-parity-") as work_dir:
        work_dir = Path(work_dir)
        try:
            command = [str(BIN_DIR / "roformer-fixture"), "--encoder-output", "--no-samples",
                       "--quiet", "-o", str(work_dir)]
            completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
            if completed.returncode != 0:
                raise CheckFailed(f"{' '.join(command)} failed:\n{completed.stderr.strip()}")
            model_path = work_dir / MODEL_FILE

            run_roformer(model_path, "--synthetic", "--batch", BATCH, "--seq-len", SEQ_LEN,
                         "--threads", THREADS, "--warmup", 0, "--iterations", 1,
                         "--save-inputs", work_dir / "inputs", "--output-dir",
                         work_dir / "outputs")
            inputs = read_tensor_folder(work_dir / "inputs", "inputs.json")
            actual = read_tensor_folder(work_dir / "outputs", "outputs.json")
            expected = run_model(model_path, inputs, threads=THREADS)
            errors = compare_outputs(actual, expected, f"full-size model [{BATCH}, {SEQ_LEN}]")
            print_errors(f"full-size model [{BATCH}, {SEQ_LEN}]", errors)
        except (CheckFailed, OrtRunError) as failure:
            print(f"FAIL: {failure}")
            return 1
    print(f"PASS: roformer-run matches ONNX Runtime on the full-size model within "
          f"{PARITY_TOLERANCE:.0e} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
