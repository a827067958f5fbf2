#!/usr/bin/python3
"""Check scripts/ort-run.js, the ONNX Runtime runner of the parity tests.

Runs an Identity model over every supported dtype and checks that the outputs
come back bit for bit. Checks that output names become sanitized file names
listed in outputs.json and that --iterations reports latency. Checks that
invalid input fails with exit code 1 and one clear message.

    /usr/bin/python3 test/e2e/test_ort_run.py

Needs onnxruntime-node (scripts/install-ort). Exits with 1 on a failed check.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ortutil import OrtRunError, require_ort, run_model, runner_path  # noqa: E402

# Input name, ONNX element type and a sample array for every dtype the runner supports.
DTYPE_CASES = [
    ("float32:0", TensorProto.FLOAT, np.array([[1.5, -2.25], [3.0, np.inf]], dtype=np.float32)),
    ("float64/x:0", TensorProto.DOUBLE, np.array([1e-300, -0.0, 7.0], dtype=np.float64)),
    ("int32 x", TensorProto.INT32, np.array([[-(2**31), 2**31 - 1, 0]], dtype=np.int32)),
    ("int64", TensorProto.INT64, np.array([-(2**63), 2**63 - 1, 5], dtype=np.int64)),
    ("bool", TensorProto.BOOL, np.array([[True, False], [False, True]])),
    ("float16", TensorProto.FLOAT16, np.array([0.5, -65504.0, 1e-4], dtype=np.float16)),
    ("scalar", TensorProto.FLOAT, np.array(3.0, dtype=np.float32)),
]


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def identity_model(path):
    """Write a model with one Identity per dtype case, whose outputs are named 'out/<input name>'."""
    nodes, inputs, outputs = [], [], []
    for name, elem_type, array in DTYPE_CASES:
        inputs.append(helper.make_tensor_value_info(name, elem_type, list(array.shape)))
        outputs.append(helper.make_tensor_value_info(f"out/{name}", elem_type, list(array.shape)))
        nodes.append(helper.make_node("Identity", [name], [f"out/{name}"]))
    graph = helper.make_graph(nodes, "identity", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))


def run_runner(*args):
    return subprocess.run(["node", str(runner_path()), *map(str, args)], capture_output=True, text=True, timeout=120)


def check_round_trip(model_path):
    report = {}
    outputs = run_model(model_path, {name: array for name, _, array in DTYPE_CASES},
                        warmup=1, iterations=3, report=report)
    for name, _, array in DTYPE_CASES:
        output = outputs[f"out/{name}"]
        check(output.dtype == array.dtype, f"{name}: dtype {output.dtype}, expected {array.dtype}")
        check(output.shape == array.shape, f"{name}: shape {output.shape}, expected {array.shape}")
        check(output.tobytes() == array.tobytes(), f"{name}: values {output} differ from {array}")
    print(f"  {len(DTYPE_CASES)} dtypes come back bit for bit: "
          + ", ".join(str(array.dtype) for _, _, array in DTYPE_CASES))

    latency = report.get("latency", {})
    check(latency.get("iterations") == 3 and latency.get("warmup") == 1, f"latency report {latency}")
    check(0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["max_ms"], f"latency percentiles {latency}")
    print(f"  latency report: mean {latency['mean_ms']:.3f} ms, p50 {latency['p50_ms']:.3f} ms, "
          f"p90 {latency['p90_ms']:.3f} ms")


def check_file_names(model_path, work_dir):
    feeds = []
    for index, (name, _, array) in enumerate(DTYPE_CASES):
        file = work_dir / f"in{index}.npy"
        np.save(file, array)
        feeds += ["--input", f"{name}={file}"]
    output_dir = work_dir / "named"
    completed = run_runner(model_path, *feeds, "--output-dir", output_dir, "--opt-level", "disabled", "--threads", 1)
    check(completed.returncode == 0, f"runner failed: {completed.stderr}")

    files = json.loads((output_dir / "outputs.json").read_text())
    expected = {f"out/{name}": f"out_{name.replace(':', '_').replace('/', '_').replace(' ', '_')}.npy"
                for name, _, _ in DTYPE_CASES}
    check(files == expected, f"outputs.json maps {files}, expected {expected}")
    check(all((output_dir / file).is_file() for file in files.values()), "an output file listed in outputs.json is missing")
    print(f"  output names are sanitized into file names, e.g. {files['out/float64/x:0']}")


def check_errors(model_path, work_dir):
    good = work_dir / "good.npy"
    np.save(good, DTYPE_CASES[0][2])
    bad_magic = work_dir / "bad.npy"
    bad_magic.write_bytes(b"not an npy file")
    truncated = work_dir / "truncated.npy"
    truncated.write_bytes(good.read_bytes()[:-4])
    pickled = work_dir / "object.npy"
    lists = np.empty(2, dtype=object)
    lists[0], lists[1] = [1, 2], [3]
    np.save(pickled, lists, allow_pickle=True)
    output_dir = work_dir / "errors"

    cases = [
        ("missing model", [work_dir / "none.onnx", "--output-dir", output_dir], "model file not found"),
        ("missing input file", [model_path, "--input", f"float32:0={work_dir / 'none.npy'}", "--output-dir", output_dir],
         "cannot read input file"),
        ("bad magic", [model_path, "--input", f"float32:0={bad_magic}", "--output-dir", output_dir], "not a .npy file"),
        ("truncated data", [model_path, "--input", f"float32:0={truncated}", "--output-dir", output_dir],
         "data bytes"),
        ("object array", [model_path, "--input", f"float32:0={pickled}", "--output-dir", output_dir],
         "object arrays"),
        ("unknown input", [model_path, "--input", f"nope={good}", "--output-dir", output_dir],
         "model has no input named 'nope'"),
        ("missing feed", [model_path, "--input", f"float32:0={good}", "--output-dir", output_dir],
         "no --input given"),
        ("bad option", [model_path, "--output-dir", output_dir, "--opt-level", "fast"], "--opt-level must be one of"),
        ("no output dir", [model_path], "--output-dir is required"),
    ]
    for label, args, expected_message in cases:
        completed = run_runner(*args)
        check(completed.returncode == 1, f"{label}: exit code {completed.returncode}, expected 1")
        first_line = completed.stderr.splitlines()[0] if completed.stderr else ""
        check(first_line.startswith("ort-run: error: ") and expected_message in first_line,
              f"{label}: stderr starts with {first_line!r}, expected a message containing {expected_message!r}")
    print(f"  {len(cases)} invalid invocations exit with 1 and one 'ort-run: error:' line")


def main():
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ort-run-test-") as work_dir:
        work_dir = Path(work_dir)
        try:
            require_ort()
            model_path = work_dir / "identity.onnx"
            identity_model(model_path)
            check_round_trip(model_path)
            check_file_names(model_path, work_dir)
            check_errors(model_path, work_dir)
        except (CheckFailed, OrtRunError) as failure:
            print(f"FAIL: {failure}")
            return 1
    print(f"PASS: ort-run.js reads, runs and writes as documented ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
