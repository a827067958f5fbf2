#!/usr/bin/python3
"""Check the CPU kernels of the com.microsoft ops against ONNX Runtime.

ONNX's backend node tests cover only standard ops. This test builds one small
model with every contrib op the passes emit, in the variants the kernels
accept:
  - RotaryEmbedding interleaved and in halves, on [batch, seq, hidden] and
    [batch, heads, seq, head_size] inputs, with [batch, seq] positions and
    with a one-element offset;
  - MultiHeadAttention with a [batch, kv_seq] padding mask, with a [batch]
    key-length mask and a bias, and as cross attention;
  - SkipLayerNormalization with all outputs and with a skip shared by the
    batch; BiasGelu, Gelu, FastGelu; LayerNormalization with its statistics.
It runs the model with roformer-run and with ONNX Runtime (scripts/ort-run.js)
and requires every output to agree within 1e-4.

A control checks that the comparison can tell the rotary variants apart:
ONNX Runtime's interleaved output must match a numpy rotation of pairs
(2i, 2i + 1) and differ from a rotation of halves (i, i + head_size / 2).

    ROFORMER_BIN_DIR=build/bin /usr/bin/python3 test/conformance/contrib_ort_parity.py

Needs onnxruntime-node (scripts/install-ort). Exits with 1 on a failed check.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "test" / "e2e"))
from ortutil import OrtRunError, run_model  # noqa: E402

BIN_DIR = Path(os.environ.get("ROFORMER_BIN_DIR", REPO_ROOT / "build" / "bin"))

TOLERANCE = 1e-4
BATCH, SEQUENCE, KV_SEQUENCE, HIDDEN, HEADS = 2, 16, 24, 32, 4
HEAD_SIZE = HIDDEN // HEADS
MAX_POSITIONS = 40
MICROSOFT = "com.microsoft"


def rotary_tables():
    inverse = np.power(10000.0, -np.arange(HEAD_SIZE // 2) * 2.0 / HEAD_SIZE)
    angles = np.arange(MAX_POSITIONS)[:, None] * inverse[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def build_model(rng):
    initializers = []

    def weight(name, shape, scale=1.0):
        values = (rng.standard_normal(shape) * scale).astype(np.float32)
        initializers.append(numpy_helper.from_array(values, name))

    cos, sin = rotary_tables()
    initializers.append(numpy_helper.from_array(cos, "cos"))
    initializers.append(numpy_helper.from_array(sin, "sin"))
    initializers.append(numpy_helper.from_array(np.array([3], np.int64), "offset"))
    weight("gamma", [HIDDEN])
    weight("beta", [HIDDEN], 0.1)
    weight("skip_bias", [HIDDEN], 0.1)
    # Q and K weights with std 2 / sqrt(hidden) make attention depend on
    # position; near-uniform attention would hide rotary mistakes.
    weight("wq", [HIDDEN, HIDDEN], 2 / np.sqrt(HIDDEN))
    weight("wk", [HIDDEN, HIDDEN], 2 / np.sqrt(HIDDEN))
    weight("wv", [HIDDEN, HIDDEN], 1 / np.sqrt(HIDDEN))
    weight("qkv_bias", [3 * HIDDEN], 0.1)
    weight("gelu_bias", [HIDDEN], 0.1)
    weight("ln_scale", [HIDDEN])
    weight("ln_bias", [HIDDEN], 0.1)
    initializers.append(numpy_helper.from_array(
        np.array([BATCH, SEQUENCE, HEADS, HEAD_SIZE], np.int64), "split_heads"))

    def node(op, inputs, outputs, domain=MICROSOFT, **attributes):
        return helper.make_node(op, inputs, outputs, domain=domain, **attributes)

    nodes = [
        node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "skip_bias"],
             ["sln", "sln_mean", "sln_inv_std", "sln_sum"], epsilon=1e-12),
        node("SkipLayerNormalization", ["x", "skip_one", "gamma"], ["sln_shared"], epsilon=1e-6),
        node("MatMul", ["sln", "wq"], ["q"], domain=""),
        node("MatMul", ["sln", "wk"], ["k"], domain=""),
        node("MatMul", ["sln", "wv"], ["v"], domain=""),
        node("RotaryEmbedding", ["q", "pos", "cos", "sin"], ["q_interleaved"],
             interleaved=1, num_heads=HEADS),
        node("RotaryEmbedding", ["k", "pos", "cos", "sin"], ["k_interleaved"],
             interleaved=1, num_heads=HEADS),
        node("RotaryEmbedding", ["q", "pos", "cos", "sin"], ["q_halves"], interleaved=0),
        node("RotaryEmbedding", ["q", "offset", "cos", "sin"], ["q_offset"], interleaved=1),
        node("Reshape", ["q", "split_heads"], ["q_bshd"], domain=""),
        node("Transpose", ["q_bshd"], ["q_bnsh"], domain="", perm=[0, 2, 1, 3]),
        node("RotaryEmbedding", ["q_bnsh", "pos", "cos", "sin"], ["q_bnsh_rotated"],
             interleaved=1),
        node("MultiHeadAttention", ["q_interleaved", "k_interleaved", "v", "", "mask"],
             ["attention"], num_heads=HEADS),
        node("MultiHeadAttention", ["q", "k", "v", "qkv_bias", "lengths"],
             ["attention_bias_lengths"], num_heads=HEADS, scale=0.3),
        node("MultiHeadAttention", ["q", "memory", "memory", "", "memory_mask"],
             ["attention_cross"], num_heads=HEADS),
        node("BiasGelu", ["attention", "gelu_bias"], ["bias_gelu"]),
        node("Gelu", ["attention"], ["gelu"]),
        node("FastGelu", ["attention", "gelu_bias"], ["fast_gelu"]),
        node("LayerNormalization", ["bias_gelu", "ln_scale", "ln_bias"],
             ["ln", "ln_mean", "ln_inv_std"], domain="", axis=-1, epsilon=1e-5),
    ]
    outputs = ["sln", "sln_mean", "sln_inv_std", "sln_sum", "sln_shared", "q_interleaved",
               "k_interleaved", "q_halves", "q_offset", "q_bnsh_rotated", "attention",
               "attention_bias_lengths", "attention_cross", "bias_gelu", "gelu", "fast_gelu",
               "ln", "ln_mean", "ln_inv_std"]

    def tensor(name, elem_type, shape):
        return helper.make_tensor_value_info(name, elem_type, shape)

    graph = helper.make_graph(
        nodes, "contrib_ops",
        [tensor("x", TensorProto.FLOAT, [BATCH, SEQUENCE, HIDDEN]),
         tensor("skip", TensorProto.FLOAT, [BATCH, SEQUENCE, HIDDEN]),
         tensor("skip_one", TensorProto.FLOAT, [1, SEQUENCE, HIDDEN]),
         tensor("pos", TensorProto.INT64, [BATCH, SEQUENCE]),
         tensor("mask", TensorProto.INT32, [BATCH, SEQUENCE]),
         tensor("lengths", TensorProto.INT32, [BATCH]),
         tensor("memory", TensorProto.FLOAT, [BATCH, KV_SEQUENCE, HIDDEN]),
         tensor("memory_mask", TensorProto.INT32, [BATCH, KV_SEQUENCE])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(MICROSOFT, 1)])
    model.ir_version = 8
    return model, outputs


def make_inputs(rng):
    positions = np.tile(np.arange(SEQUENCE, dtype=np.int64), (BATCH, 1))
    positions[1] += 7
    mask = np.ones([BATCH, SEQUENCE], np.int32)
    mask[1, 11:] = 0
    memory_mask = np.ones([BATCH, KV_SEQUENCE], np.int32)
    memory_mask[0, 20:] = 0
    return {
        "x": rng.standard_normal([BATCH, SEQUENCE, HIDDEN]).astype(np.float32),
        "skip": rng.standard_normal([BATCH, SEQUENCE, HIDDEN]).astype(np.float32),
        "skip_one": rng.standard_normal([1, SEQUENCE, HIDDEN]).astype(np.float32),
        "pos": positions,
        "mask": mask,
        "lengths": np.array([SEQUENCE, 9], np.int32),
        "memory": rng.standard_normal([BATCH, KV_SEQUENCE, HIDDEN]).astype(np.float32),
        "memory_mask": memory_mask,
    }


def run_ours(model_path, inputs, work):
    input_args = []
    for name, array in inputs.items():
        file = work / f"{name}.npy"
        np.save(file, array)
        input_args += ["--input", f"{name}={file}"]
    output_dir = work / "ours"
    command = [str(BIN_DIR / "roformer-run"), str(model_path), *input_args, "--iterations", "1",
               "--threads", "2", "--output-dir", str(output_dir)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {completed.stderr.strip()}")
    files = json.loads((output_dir / "outputs.json").read_text())
    return {name: np.load(output_dir / file) for name, file in files.items()}


def rotate(x, positions, interleaved):
    """Rotary embedding of x [batch, seq, hidden] by the formulas, in numpy."""
    cos, sin = rotary_tables()
    heads = x.reshape(BATCH, SEQUENCE, HEADS, HEAD_SIZE).astype(np.float64)
    c = cos[positions][:, :, None, :]
    s = sin[positions][:, :, None, :]
    if interleaved:
        first, second = heads[..., 0::2], heads[..., 1::2]
    else:
        first, second = heads[..., :HEAD_SIZE // 2], heads[..., HEAD_SIZE // 2:]
    rotated_first = first * c - second * s
    rotated_second = second * c + first * s
    out = np.empty_like(heads)
    if interleaved:
        out[..., 0::2], out[..., 1::2] = rotated_first, rotated_second
    else:
        out[..., :HEAD_SIZE // 2], out[..., HEAD_SIZE // 2:] = rotated_first, rotated_second
    return out.reshape(BATCH, SEQUENCE, HIDDEN)


def main():
    rng = np.random.default_rng(2024)
    model, outputs = build_model(rng)
    inputs = make_inputs(rng)
    failures = []
    with tempfile.TemporaryDirectory(prefix="contrib-parity-") as work:
        work = Path(work)
        model_path = work / "contrib.onnx"
        onnx.save(model, model_path)
        try:
            reference = run_model(model_path, inputs, threads=2)
        except OrtRunError as error:
            print(f"FAIL: {error}")
            return 1
        try:
            ours = run_ours(model_path, inputs, work)
        except RuntimeError as error:
            print(f"FAIL: {error}")
            return 1

    for name in outputs:
        if name not in ours or name not in reference:
            failures.append(f"{name}: missing from {'ours' if name not in ours else 'ONNX Runtime'}")
            continue
        if ours[name].shape != reference[name].shape:
            failures.append(f"{name}: shape {ours[name].shape}, ONNX Runtime {reference[name].shape}")
            continue
        error = float(np.abs(ours[name].astype(np.float64) - reference[name]).max())
        print(f"{name}: max abs error {error:.3g} (ONNX Runtime max |value| "
              f"{float(np.abs(reference[name]).max()):.3g})")
        if not error <= TOLERANCE:
            failures.append(f"{name}: max abs error {error:.3g} exceeds {TOLERANCE}")

    # Control: the rotary variants differ by far more than the tolerance, so
    # a kernel with the wrong pairing could not pass the comparison above.
    q = ours["sln"] @ numpy_helper.to_array(
        next(t for t in model.graph.initializer if t.name == "wq"))
    pairs = float(np.abs(rotate(q, inputs["pos"], True) - reference["q_interleaved"]).max())
    halves = float(np.abs(rotate(q, inputs["pos"], False) - reference["q_interleaved"]).max())
    print(f"control: ONNX Runtime interleaved vs numpy pairs {pairs:.3g}, vs numpy halves {halves:.3g}")
    if not (pairs <= TOLERANCE and halves > 100 * TOLERANCE):
        failures.append(f"control: interleaved output should match pairs ({pairs:.3g}) and "
                        f"differ from halves ({halves:.3g})")

    for failure in failures:
        print(f"FAIL: {failure}")
    print("contrib op parity: " + ("failed" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
