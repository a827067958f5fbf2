#!/usr/bin/python3
"""Check roformer-run's command line: inputs, reports and errors.

Uses the small fixture model. Checks that .npz and int64 inputs give the same
outputs as float .npy inputs, that --compare-to on the model itself reports no
difference, that --json and --output-dir write what they promise, that
--list-ops lists the CPU kernels, and that bad inputs and flags exit with 1
and one clear message on stderr. Needs no ONNX Runtime.

    ROFORMER_BIN_DIR=build/bin /usr/bin/python3 test/e2e/test_runtime_driver.py

Exits with 1 on a failed check.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtureutil import SAMPLES_DIR, load_samples  # noqa: E402
from test_runtime_parity import (  # noqa: E402
    THREADS, CheckFailed, check, generate_model, pad_or_truncate, read_tensor_folder,
    run_roformer)

SEQ_LEN = 64
TOKEN = "input_token:0"
SEGMENT = "input_segment:0"


def sample_inputs(samples_dir):
    tokens, segments, _ = load_samples(samples_dir)
    return {TOKEN: pad_or_truncate(tokens[:2], SEQ_LEN),
            SEGMENT: pad_or_truncate(segments[:2], SEQ_LEN)}


def save_inputs(inputs, folder, dtype=None):
    """Write inputs as folder/<n>.npy and return the --input arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    args = []
    for index, (name, array) in enumerate(inputs.items()):
        path = folder / f"{index}.npy"
        np.save(path, array if dtype is None else array.astype(dtype))
        args += ["--input", f"{name}={path}"]
    return args


def run_once(model_path, *args):
    return run_roformer(model_path, "--threads", THREADS, "--warmup", 0, "--iterations", 1, *args)


def expect_error(model_path, args, expected_text, label):
    completed = run_roformer(model_path, *args, expect_success=False)
    check(completed.returncode == 1, f"{label}: exit code {completed.returncode}, expected 1")
    lines = completed.stderr.strip().splitlines()
    check(len(lines) == 1, f"{label}: stderr has {len(lines)} lines, expected one:\n"
                           f"{completed.stderr}")
    check(lines[0].startswith("roformer-run: error: "), f"{label}: stderr is '{lines[0]}'")
    check(expected_text in lines[0], f"{label}: '{expected_text}' is not in '{lines[0]}'")


def check_input_forms(model_path, samples_dir, work_dir):
    inputs = sample_inputs(samples_dir)
    reference_dir = work_dir / "reference"
    run_once(model_path, *save_inputs(inputs, work_dir / "float"), "--output-dir", reference_dir)
    reference = read_tensor_folder(reference_dir, "outputs.json")
    check(set(reference) == {"Identity:0", "encoder_output:0"},
          f"outputs.json lists {sorted(reference)}")
    files = json.loads((reference_dir / "outputs.json").read_text())
    check(files["Identity:0"] == "Identity_0.npy",
          f"Identity:0 is written as {files['Identity:0']}, expected Identity_0.npy")

    # int64 ids are converted to the model's float inputs.
    int_dir = work_dir / "int64-out"
    run_once(model_path, *save_inputs(inputs, work_dir / "int64", np.int64),
             "--output-dir", int_dir)
    converted = read_tensor_folder(int_dir, "outputs.json")
    for name, array in reference.items():
        check(np.array_equal(converted[name], array), f"int64 inputs change {name}")

    # One compressed .npz with every input.
    npz_path = work_dir / "inputs.npz"
    np.savez_compressed(npz_path, **inputs)
    npz_dir = work_dir / "npz-out"
    run_once(model_path, "--input", npz_path, "--output-dir", npz_dir)
    from_npz = read_tensor_folder(npz_dir, "outputs.json")
    for name, array in reference.items():
        check(np.array_equal(from_npz[name], array), f".npz inputs change {name}")
    print("  float .npy, int64 .npy and compressed .npz inputs give the same outputs")


def check_reports(model_path, work_dir):
    report_path = work_dir / "report.json"
    completed = run_roformer(model_path, "--synthetic", "--batch", 2, "--seq-len", SEQ_LEN,
                             "--threads", THREADS, "--warmup", 1, "--iterations", 3,
                             "--json", report_path, "--compare-to", model_path,
                             "--compare-tolerance", 0)
    report = json.loads(report_path.read_text())
    for key in ("model", "device", "threads", "batch", "seq_len", "iterations", "latency_ms",
                "throughput_sequences_per_s", "compare"):
        check(key in report, f"--json report lacks '{key}': {sorted(report)}")
    latency = report["latency_ms"]
    check(latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"],
          f"latency percentiles are out of order: {latency}")
    check(report["batch"] == 2 and report["seq_len"] == SEQ_LEN and report["iterations"] == 3,
          f"report has batch {report['batch']}, seq_len {report['seq_len']}, iterations "
          f"{report['iterations']}")
    expected_throughput = 2 * 3 / (latency["mean"] * 3 / 1000)
    check(abs(report["throughput_sequences_per_s"] - expected_throughput) <=
          1e-3 * expected_throughput,
          f"throughput {report['throughput_sequences_per_s']} is not batch * runs / time "
          f"({expected_throughput})")
    for name, comparison in report["compare"]["outputs"].items():
        check(comparison["max_abs_error"] == 0 and comparison["cosine_similarity"] == 1,
              f"--compare-to on the model itself reports {comparison} for {name}")
    for text in ("Latency (ms, 3 runs): mean", "Throughput:", "sequences/s", "Comparison with",
                 "encoder_output:0"):
        check(text in completed.stdout, f"'{text}' is not in the printed report:\n"
                                        f"{completed.stdout}")
    print("  --json, --compare-to and the printed report agree")

    concurrent_dir = work_dir / "concurrent"
    completed = run_roformer(model_path, "--synthetic", "--batch", 2, "--seq-len", SEQ_LEN,
                             "--threads", THREADS, "--warmup", 0, "--iterations", 20,
                             "--concurrency", 2, "--output-dir", concurrent_dir)
    check("Concurrency: 2 threads, 20 runs each, identical outputs" in completed.stdout,
          f"--concurrency 2 prints:\n{completed.stdout}")
    serial_dir = work_dir / "serial"
    run_roformer(model_path, "--synthetic", "--batch", 2, "--seq-len", SEQ_LEN,
                 "--threads", THREADS, "--warmup", 0, "--iterations", 1,
                 "--output-dir", serial_dir)
    concurrent = read_tensor_folder(concurrent_dir, "outputs.json")
    serial = read_tensor_folder(serial_dir, "outputs.json")
    for name, array in serial.items():
        check(np.array_equal(concurrent[name], array),
              f"{name} from concurrent runs differs from a single run")
    print("  40 runs from 2 threads at once give the outputs of a single run")

    completed = run_roformer(model_path, "--synthetic", "--seq-len", SEQ_LEN, "--threads",
                             THREADS, "--iterations", 2, "--profile")
    check("Profile (mean of 2 runs" in completed.stdout and "slowest nodes:" in completed.stdout,
          f"--profile prints no profile:\n{completed.stdout}")
    check(any(line.split()[:1] == ["MatMul"] for line in completed.stdout.splitlines()),
          f"--profile lists no MatMul time:\n{completed.stdout}")
    print("  --profile prints the time per op type")


def rename_inputs(model_path, renamed_path):
    """Save a copy of the model whose inputs are named as roformer-opt names them."""
    model = onnx.load(str(model_path))
    renames = {graph_input.name: graph_input.name.replace(":", "")
               for graph_input in model.graph.input}
    for graph_input in model.graph.input:
        graph_input.name = renames[graph_input.name]
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name in renames:
                node.input[index] = renames[name]
    onnx.save(model, str(renamed_path))
    return sorted(renames.values())


def check_compare_renamed(model_path, work_dir):
    renamed_path = work_dir / "renamed.onnx"
    names = rename_inputs(model_path, renamed_path)
    check(names == ["input_segment0", "input_token0"], f"renamed inputs are {names}")
    report_path = work_dir / "renamed.json"
    run_roformer(renamed_path, "--synthetic", "--seq-len", SEQ_LEN, "--threads", THREADS,
                 "--iterations", 1, "--compare-to", model_path, "--compare-tolerance", 0,
                 "--json", report_path)
    outputs = json.loads(report_path.read_text())["compare"]["outputs"]
    check(sorted(outputs) == ["Identity:0", "encoder_output:0"],
          f"--compare-to compared {sorted(outputs)}")
    print("  --compare-to feeds a reference whose inputs keep the ':0' suffix")


def check_list_ops():
    completed = run_roformer("--list-ops")
    ops = completed.stdout.split()
    for op in ("MatMul", "Gather", "Einsum", "Softmax", "com.microsoft.SkipLayerNormalization"):
        check(op in ops, f"--list-ops does not list {op}: {ops}")
    print(f"  --list-ops lists {len(ops)} ops")


def check_errors(model_path, samples_dir, work_dir):
    inputs = sample_inputs(samples_dir)
    good = save_inputs(inputs, work_dir / "good")
    bad_dir = work_dir / "bad"
    bad_dir.mkdir()

    fortran = bad_dir / "fortran.npy"
    np.save(fortran, np.asfortranarray(inputs[TOKEN]))
    fractional = bad_dir / "fractional.npy"
    ids = inputs[TOKEN].copy()
    ids[1, 3] = 7.5
    np.save(fractional, ids)
    outside = bad_dir / "outside.npy"
    ids = inputs[TOKEN].copy()
    ids[0, 2] = 1000  # the --small fixture's vocabulary has 1000 ids
    np.save(outside, ids)
    wrong_rank = bad_dir / "rank.npy"
    np.save(wrong_rank, inputs[TOKEN][0])
    segment_arg = good[2:]

    cases = [
        ([], "no inputs", "no inputs"),
        (["--input", f"{TOKEN}={fortran}", *segment_arg], "Fortran-order", "Fortran input"),
        (["--input", f"{TOKEN}={fractional}", *segment_arg], "element [1, 3] is 7.5",
         "fractional id"),
        (["--input", f"{TOKEN}={outside}", *segment_arg], "outside the table of 1000 rows",
         "id outside the vocabulary"),
        (["--input", f"{TOKEN}={wrong_rank}", *segment_arg], "declares rank 2", "wrong rank"),
        (["--input", f"{TOKEN}={bad_dir / 'missing.npy'}", *segment_arg], "missing.npy",
         "missing file"),
        (["--input", f"input_tokens={fortran}"], "'input_tokens' from", "unknown input name"),
        (good[:2], "missing input 'input_segment:0'", "missing input"),
        (["--synthetic", "--precision", "fp16"], "needs --device cuda", "fp16 on the cpu"),
        (["--synthetic", "--device", "tpu"], "no backend for device 'tpu'", "unknown device"),
        (["--synthetic", "--iterations", "0"], "--iterations must be at least 1", "no iterations"),
        (["--synthetic", "--concurrency", "0"], "--concurrency must be at least 1",
         "no concurrency"),
        ([*good, "--batch", "2"], "--batch and --seq-len shape synthetic inputs",
         "--batch with file inputs"),
        # 2^64 tokens, which wraps to 0 in 64-bit arithmetic.
        (["--synthetic", "--batch", "4294967296", "--seq-len", "4294967296"],
         "more than 2147483648 tokens", "batch x seq-len overflow"),
    ]
    for args, expected_text, label in cases:
        expect_error(model_path, args, expected_text, label)
    expect_error(work_dir / "absent.onnx", ["--synthetic"], "absent.onnx", "missing model")

    environment = dict(os.environ, ROFORMER_SOURCE_DIR=str(work_dir / "nowhere"))
    completed = run_roformer(model_path, "--cail2019", samples_dir, expect_success=False,
                             env=environment)
    check(completed.returncode == 1 and "cail2019-convert.py' was not found" in completed.stderr,
          f"a missing converter script fails with:\n{completed.stderr}")
    print(f"  {len(cases) + 2} bad invocations exit with 1 and one clear message")


def main():
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runtime-driver-") as work_dir:
        work_dir = Path(work_dir)
        try:
            model_path = generate_model(work_dir / "model")
            samples_dir = work_dir / "model" / SAMPLES_DIR
            check_input_forms(model_path, samples_dir, work_dir)
            check_reports(model_path, work_dir)
            check_compare_renamed(model_path, work_dir)
            check_list_ops()
            check_errors(model_path, samples_dir, work_dir)
        except CheckFailed as failure:
            print(f"FAIL: {failure}")
            return 1
    print(f"PASS: roformer-run's command line ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
