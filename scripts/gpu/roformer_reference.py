"""Weights of an exported RoFormer, read from its ONNX initializers, and a
NumPy forward pass that uses them.

The PyTorch reference of scripts/gpu/torch_reference.py loads its weights
through load_weights(), so the same mapping is checked on machines without
PyTorch: `python3 roformer_reference.py MODEL.onnx --check-against DIR`
compares numpy_forward() with outputs roformer-run wrote for the same inputs.

The mapping follows the tf2onnx export of bert4keras that
tools/roformer-fixture writes (docs/fixture.md), where every weight is an
initializer named after its Keras scope:

    .../Embedding-Token/embedding_lookup/ReadVariableOp:0        [vocab, hidden]
    .../Transformer-<i>-MultiHeadSelfAttention/dense_<k>/...     Q, K, V, O in order of k
    .../Transformer-<i>-FeedForward/dense_<k>/...                inner, outer in order of k
    .../<block>-Norm/mul/ReadVariableOp:0 and add_1/...          LayerNorm gamma and beta
    .../dense_<k>/MatMul/ReadVariableOp:0                        the score head
"""

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

# bert4keras LayerNormalization epsilon.
LAYER_NORM_EPSILON = 1e-12
ROTARY_BASE = 10000.0


def _dense_index(name):
    match = re.search(r"/dense(?:_(\d+))?/", name)
    return int(match.group(1) or 0) if match else -1


def load_weights(model_path):
    """Return {"token_embedding", "segment_embedding", "embedding_norm", "layers", "head",
    "heads"} as float32 NumPy arrays, read from the model's initializers."""
    model = onnx.load(str(model_path))
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}

    def find(pattern):
        names = [name for name in arrays if re.search(pattern, name)]
        if len(names) != 1:
            raise ValueError(f"{model_path}: expected one initializer matching {pattern!r}, "
                             f"found {len(names)}")
        return arrays[names[0]].astype(np.float32)

    def norm(block):
        return {"gamma": find(rf"/{block}/mul/ReadVariableOp"),
                "beta": find(rf"/{block}/add_1/ReadVariableOp")}

    def dense_params(scope):
        kernels = sorted((name for name in arrays
                          if f"/{scope}/" in name and name.endswith("/Tensordot/ReadVariableOp:0")),
                         key=_dense_index)
        layers = []
        for kernel in kernels:
            prefix = kernel[: kernel.index("/Tensordot/")]
            layers.append({"kernel": arrays[kernel].astype(np.float32),
                           "bias": arrays[prefix + "/BiasAdd/ReadVariableOp:0"].astype(np.float32)})
        return layers

    layer_count = 1 + max(int(m.group(1)) for name in arrays
                          for m in [re.search(r"/Transformer-(\d+)-", name)] if m)
    weights = {
        "token_embedding": find(r"/Embedding-Token/embedding_lookup/ReadVariableOp"),
        "segment_embedding": find(r"/Embedding-Segment/embedding_lookup/ReadVariableOp"),
        "embedding_norm": norm("Embedding-Norm"),
        "layers": [],
    }
    for index in range(layer_count):
        attention = dense_params(f"Transformer-{index}-MultiHeadSelfAttention")
        feed_forward = dense_params(f"Transformer-{index}-FeedForward")
        if len(attention) != 4 or len(feed_forward) != 2:
            raise ValueError(f"{model_path}: layer {index} has {len(attention)} attention and "
                             f"{len(feed_forward)} feed-forward dense layers, expected 4 and 2")
        weights["layers"].append({
            "q": attention[0], "k": attention[1], "v": attention[2], "o": attention[3],
            "attention_norm": norm(f"Transformer-{index}-MultiHeadSelfAttention-Norm"),
            "ffn_in": feed_forward[0], "ffn_out": feed_forward[1],
            "ffn_norm": norm(f"Transformer-{index}-FeedForward-Norm"),
        })
    head_kernels = [name for name in arrays if name.endswith("/MatMul/ReadVariableOp:0")
                    and "Transformer-" not in name]
    if len(head_kernels) != 1:
        raise ValueError(f"{model_path}: expected one score head kernel, found {head_kernels}")
    head_prefix = head_kernels[0][: head_kernels[0].index("/MatMul/")]
    weights["head"] = {"kernel": arrays[head_kernels[0]].astype(np.float32),
                       "bias": arrays[head_prefix + "/BiasAdd/ReadVariableOp:0"].astype(np.float32)}

    # The fixture records its size in the model's doc_string ("heads=12").
    heads = re.search(r"heads=(\d+)", model.doc_string or "")
    hidden = weights["token_embedding"].shape[1]
    weights["heads"] = int(heads.group(1)) if heads else max(1, hidden // 64)
    return weights


def rotary_tables(sequence, head_size):
    """cos and sin [sequence, head_size / 2] of p * 10000^(-2i / head_size)."""
    exponents = np.arange(head_size // 2, dtype=np.float64) * (-2.0 / head_size)
    angles = np.arange(sequence, dtype=np.float64)[:, None] * np.power(ROTARY_BASE, exponents)[None, :]
    return np.cos(angles), np.sin(angles)


def rotate_interleaved(x, cos, sin):
    """Rotates pairs (2i, 2i + 1) of x [b, s, heads, d] by the position's angle."""
    first, second = x[..., 0::2], x[..., 1::2]
    cos = cos[None, :, None, :]
    sin = sin[None, :, None, :]
    out = np.empty_like(x)
    out[..., 0::2] = first * cos - second * sin
    out[..., 1::2] = second * cos + first * sin
    return out


def _layer_norm(x, params):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + LAYER_NORM_EPSILON) * params["gamma"] + params["beta"]


def _gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def numpy_forward(weights, tokens, segments):
    """float64 forward pass; returns (scores [b, 1], encoder output [b, s, hidden])."""
    tokens = np.asarray(tokens).astype(np.int64)
    segments = np.asarray(segments).astype(np.int64)
    batch, sequence = tokens.shape
    heads = weights["heads"]
    x = (weights["token_embedding"][tokens] + weights["segment_embedding"][segments]).astype(np.float64)
    x = _layer_norm(x, weights["embedding_norm"])
    hidden = x.shape[-1]
    head_size = hidden // heads
    # bert4keras keeps position 0 even when its token is 0.
    mask = tokens != 0
    mask[:, 0] = True
    cos, sin = rotary_tables(sequence, head_size)
    for layer in weights["layers"]:
        def project(name, value):
            return value @ layer[name]["kernel"] + layer[name]["bias"]
        q = rotate_interleaved(project("q", x).reshape(batch, sequence, heads, head_size), cos, sin)
        k = rotate_interleaved(project("k", x).reshape(batch, sequence, heads, head_size), cos, sin)
        v = project("v", x).reshape(batch, sequence, heads, head_size)
        scores = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_size)
        scores = np.where(mask[:, None, None, :], scores, -1e12)
        scores -= scores.max(-1, keepdims=True)
        probabilities = np.exp(scores)
        probabilities /= probabilities.sum(-1, keepdims=True)
        context = np.einsum("bhqk,bkhd->bqhd", probabilities, v).reshape(batch, sequence, hidden)
        x = _layer_norm(x + project("o", context), layer["attention_norm"])
        inner = _gelu(project("ffn_in", x))
        x = _layer_norm(x + inner @ layer["ffn_out"]["kernel"] + layer["ffn_out"]["bias"],
                        layer["ffn_norm"])
    weight = mask[..., None].astype(np.float64)
    pooled = (x * weight).sum(1) / weight.sum(1)
    logits = pooled @ weights["head"]["kernel"] + weights["head"]["bias"]
    return 1.0 / (1.0 + np.exp(-logits)), x


def _read_folder(folder, index):
    mapping = json.loads((Path(folder) / index).read_text())
    return {name: np.load(Path(folder) / file) for name, file in mapping.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the exported model (roformer-frozen_org.onnx)")
    parser.add_argument("--check-against", metavar="DIR", required=True,
                        help="folder with roformer-run's --save-inputs and --output-dir files "
                             "(inputs.json, outputs.json)")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="max abs error allowed on every output (default 1e-3)")
    args = parser.parse_args(argv)
    weights = load_weights(args.model)
    inputs = _read_folder(args.check_against, "inputs.json")
    outputs = _read_folder(args.check_against, "outputs.json")
    tokens = next(value for name, value in inputs.items() if "token" in name)
    segments = next(value for name, value in inputs.items() if "segment" in name)
    scores, encoder = numpy_forward(weights, tokens, segments)
    failed = False
    for name, reference in (("Identity:0", scores), ("encoder_output:0", encoder)):
        if name not in outputs:
            continue
        error = float(np.abs(outputs[name] - reference).max())
        print(f"{name}: max abs error {error:.2e} against the NumPy forward pass")
        failed = failed or error > args.tolerance
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
