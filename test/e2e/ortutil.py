"""Run ONNX models in ONNX Runtime from Python tests, through scripts/ort-run.js.

Debian's Python has no onnxruntime package, so tests write their inputs as .npy
files, run the Node runner on them and read the outputs back.

    from ortutil import run_model
    outputs = run_model("model.onnx", {"input_token:0": tokens, "input_segment:0": segments})
    scores = outputs["Identity:0"]
"""

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]

# dtypes scripts/ort-run.js reads and writes.
SUPPORTED_DTYPES = (np.float32, np.float64, np.int32, np.int64, np.bool_, np.float16)


class OrtRunError(RuntimeError):
    """Error of a failed scripts/ort-run.js run, with its stderr in the message."""


def runner_path():
    return Path(os.environ.get("ROFORMER_ORT_RUN", REPO_ROOT / "scripts" / "ort-run.js"))


def ort_dir():
    return Path(os.environ.get("ROFORMER_ORT_DIR", REPO_ROOT / ".deps" / "ort"))


def require_ort():
    """Raise OrtRunError with the fix when onnxruntime-node is not installed."""
    package = ort_dir() / "node_modules" / "onnxruntime-node"
    if not package.is_dir():
        raise OrtRunError(
            f"onnxruntime-node not found in {package.parent}. Run scripts/install-ort first.")


def run_model(model_path, inputs, *, threads=None, opt_level=None, warmup=0, iterations=0,
              timeout_s=600, report=None):
    """Run model_path on inputs (name -> numpy array) and return {output name: array}.

    threads sets intra-op threads, opt_level one of disabled, basic, extended,
    all. With iterations > 0 the runner also times session.run. Pass a dict as
    report to receive the runner's JSON report (outputs, shapes, latency).
    """
    require_ort()
    with tempfile.TemporaryDirectory(prefix="ort-run-") as work:
        work = Path(work)
        command = ["node", str(runner_path()), str(model_path)]
        for index, (name, array) in enumerate(inputs.items()):
            array = np.asarray(array, order="C")  # np.ascontiguousarray would turn a 0-d array into 1-d
            if array.dtype.type not in SUPPORTED_DTYPES:
                raise TypeError(f"input {name} has dtype {array.dtype}, but ort-run.js reads only "
                                f"{', '.join(np.dtype(t).name for t in SUPPORTED_DTYPES)}")
            file = work / f"input_{index}.npy"
            np.save(file, array, allow_pickle=False)
            command += ["--input", f"{name}={file}"]
        output_dir = work / "outputs"
        report_file = work / "report.json"
        command += ["--output-dir", str(output_dir), "--json", str(report_file)]
        if threads is not None:
            command += ["--threads", str(threads)]
        if opt_level is not None:
            command += ["--opt-level", opt_level]
        if iterations:
            command += ["--warmup", str(warmup), "--iterations", str(iterations)]

        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        if completed.returncode != 0:
            raise OrtRunError(
                f"ort-run.js failed (exit code {completed.returncode}) on {model_path}:\n"
                f"{completed.stderr.strip()}")

        files = json.loads((output_dir / "outputs.json").read_text())
        outputs = {name: np.load(output_dir / file) for name, file in files.items()}
        if report is not None:
            report.update(json.loads(report_file.read_text()))
        return outputs
