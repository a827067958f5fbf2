#!/usr/bin/python3
"""Check roformer-run's CAIL2019 accuracy mode against ONNX Runtime.

Runs roformer-run --cail2019 on the generated sample set of the small fixture
model, then feeds ONNX Runtime the same sequences, padded or cut to the same
length, and computes the pairwise accuracy mean(score[2i] > score[2i+1]) from
its scores. The accuracy roformer-run reports must be the same number, and the
scores it writes must match within 1e-4. A batch size that does not divide the
sample count must give the same result.

    ROFORMER_BIN_DIR=build/bin /usr/bin/python3 test/e2e/test_runtime_cail2019.py

Needs onnxruntime-node (scripts/install-ort). Exits with 1 on a failed check.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtureutil import SAMPLES_DIR, load_samples  # noqa: E402
from ortutil import OrtRunError, run_model  # noqa: E402
from test_runtime_parity import (  # noqa: E402
    PARITY_TOLERANCE, SAMPLE_COUNT, THREADS, CheckFailed, check, generate_model, pad_or_truncate,
    read_tensor_folder, run_roformer)

# Shorter than the longest generated sample, so some sequences are cut.
SEQ_LEN = 128


def ort_accuracy(model_path, samples_dir):
    """Return (accuracy, correct pairs, scores, cut sequences) from ONNX Runtime."""
    token_lists, segment_lists, _ = load_samples(samples_dir)
    inputs = {
        "input_token:0": pad_or_truncate(token_lists, SEQ_LEN),
        "input_segment:0": pad_or_truncate(segment_lists, SEQ_LEN),
    }
    scores = run_model(model_path, inputs, threads=THREADS)["Identity:0"].reshape(-1)
    correct = int(np.sum(scores[0::2] > scores[1::2]))
    pairs = len(scores) // 2
    cut = sum(1 for tokens in token_lists if len(tokens) > SEQ_LEN)
    return correct / pairs, correct, scores, cut


def check_accuracy_mode(model_path, samples_dir, work_dir, batch, reference):
    accuracy, correct, scores, cut = reference
    report_path = work_dir / f"report-{batch}.json"
    output_dir = work_dir / f"outputs-{batch}"
    completed = run_roformer(model_path, "--cail2019", samples_dir, "--batch", batch,
                             "--seq-len", SEQ_LEN, "--threads", THREADS, "--warmup", 0,
                             "--json", report_path, "--output-dir", output_dir)
    check(completed.stderr == "",
          f"batch {batch}: roformer-run wrote to stderr although it is not a terminal:\n"
          f"{completed.stderr}")
    report = json.loads(report_path.read_text())["cail2019"]
    check(report["sequences"] == SAMPLE_COUNT,
          f"batch {batch}: {report['sequences']} sequences reported, {SAMPLE_COUNT} generated")
    check(report["pairs"] == SAMPLE_COUNT // 2, f"batch {batch}: {report['pairs']} pairs reported")
    check(report["truncated_sequences"] == cut,
          f"batch {batch}: {report['truncated_sequences']} sequences reported cut, {cut} are "
          f"longer than {SEQ_LEN}")
    check(report["correct_pairs"] == correct,
          f"batch {batch}: roformer-run counts {report['correct_pairs']} correct pairs, ONNX "
          f"Runtime's scores give {correct}")
    check(abs(report["accuracy"] - accuracy) < 1e-9,
          f"batch {batch}: roformer-run reports accuracy {report['accuracy']}, ONNX Runtime's "
          f"scores give {accuracy}")
    accuracy_line = f"Accuracy: {accuracy:.6f}"
    check(accuracy_line in completed.stdout,
          f"batch {batch}: '{accuracy_line}' is not in the printed report:\n{completed.stdout}")

    outputs = read_tensor_folder(output_dir, "outputs.json")
    written = outputs["Identity:0"].reshape(-1)
    check(written.shape == scores.shape,
          f"batch {batch}: {written.shape[0]} scores written, {scores.shape[0]} expected")
    error = float(np.max(np.abs(written - scores)))
    check(error <= PARITY_TOLERANCE,
          f"batch {batch}: scores differ from ONNX Runtime's by {error:.2e} max abs")
    encoder = outputs["encoder_output:0"]
    check(encoder.shape[:2] == (SAMPLE_COUNT, SEQ_LEN),
          f"batch {batch}: encoder_output:0 written with shape {encoder.shape}")
    print(f"  batch {batch}: accuracy {report['accuracy']:.4f} ({correct} of {report['pairs']} "
          f"pairs) as from ONNX Runtime's scores, score error {error:.2e}")


def check_converter_errors(model_path, work_dir):
    """A folder the converter rejects must fail with its message."""
    broken = work_dir / "broken"
    broken.mkdir()
    np.save(broken / "batch_token_ids.npy", np.array([[101, 7, 102]], dtype=np.int64))
    np.save(broken / "batch_segment_ids.npy", np.array([[0, 0]], dtype=np.int64))
    np.save(broken / "label.npy", np.array([1], dtype=np.int64))
    completed = run_roformer(model_path, "--cail2019", broken, "--seq-len", SEQ_LEN,
                             expect_success=False)
    check(completed.returncode == 1, f"a broken folder exits with {completed.returncode}, not 1")
    check("3 token ids but 2 segment ids" in completed.stderr,
          f"a broken folder fails with an unclear message:\n{completed.stderr}")
    print("  a folder with mismatched token and segment lists is rejected with the converter's "
          "message")


def main():
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runtime-cail2019-") as work_dir:
        work_dir = Path(work_dir)
        try:
            model_path = generate_model(work_dir / "model")
            samples_dir = work_dir / "model" / SAMPLES_DIR
            reference = ort_accuracy(model_path, samples_dir)
            check(reference[3] > 0, f"no sample is longer than {SEQ_LEN}, so cutting is untested")
            for batch in (4, 5):
                check_accuracy_mode(model_path, samples_dir, work_dir, batch, reference)
            check_converter_errors(model_path, work_dir)
        except (CheckFailed, OrtRunError) as failure:
            print(f"FAIL: {failure}")
            return 1
    print(f"PASS: roformer-run --cail2019 reports ONNX Runtime's accuracy "
          f"({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
