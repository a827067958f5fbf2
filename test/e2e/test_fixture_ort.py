#!/usr/bin/python3
"""Run the small fixture model in ONNX Runtime on its sample set.

Checks that the scores are finite and in (0, 1) and that changing one token
changes that sequence's score and no other. Checks that extra padding changes no
score, because the padding mask reaches attention and pooling. Checks that the
graph computes what a NumPy transcription of bert4keras' RoFormer computes from
the same weights, and that every graph variant the flags select computes the
same outputs.

    /usr/bin/python3 test/e2e/test_fixture_ort.py

Needs onnxruntime-node (scripts/install-ort). Exits with 1 on a failed check.
"""

import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtureutil import SAMPLES_DIR, generate_fixture, load_padded_samples, load_samples  # noqa: E402
from ortutil import OrtRunError, run_model  # noqa: E402

BATCH = 4
MAX_SEQ_LEN = 96
LONGER_PADDING = 128

# A changed token must move its score by more than float32 noise.
MIN_SCORE_CHANGE = 1e-6
# Max abs difference of the float32 graph from the float64 NumPy reference.
REFERENCE_TOLERANCE = 1e-4
# Scores of untouched sequences, and of extra padding, may differ only by
# float32 rounding (ONNX Runtime may pick other kernels for other shapes).
ROUNDING_TOLERANCE = 1e-5


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


MODEL_SCOPE = "StatefulPartitionedCall/model"
LAYERS = 2
HEADS = 4


def run(model_path, tokens, segments):
    return run_model(model_path, {"input_token:0": tokens, "input_segment:0": segments}, threads=2)


def score(model_path, tokens, segments):
    return run(model_path, tokens, segments)["Identity:0"]


def reference_forward(weights, tokens, segments):
    """bert4keras 0.10.4 RoFormer plus the pooling head, in float64 NumPy.

    Returns (encoder output, score). Written from the Keras code, not from the
    graph, so that it checks what the graph computes.
    """
    def layer_norm(x, scope):
        centered = x - x.mean(-1, keepdims=True)
        variance = (centered * centered).mean(-1, keepdims=True)
        normalized = centered / np.sqrt(variance + 1e-12)
        return normalized * weights[f"{scope}/mul/ReadVariableOp:0"] + weights[f"{scope}/add_1/ReadVariableOp:0"]

    def dense(x, scope):
        return x @ weights[f"{scope}/Tensordot/ReadVariableOp:0"] + weights[f"{scope}/BiasAdd/ReadVariableOp:0"]

    erf = np.vectorize(math.erf)
    token_table = weights[f"{MODEL_SCOPE}/Embedding-Token/embedding_lookup/ReadVariableOp:0"]
    segment_table = weights[f"{MODEL_SCOPE}/Embedding-Segment/embedding_lookup/ReadVariableOp:0"]
    x = token_table[tokens.astype(np.int64)] + segment_table[segments.astype(np.int64)]
    x = layer_norm(x, f"{MODEL_SCOPE}/Embedding-Norm")
    mask = tokens != 0
    mask[:, 0] = True

    batch, length, hidden = x.shape
    head_size = hidden // HEADS
    angles = np.arange(length)[:, None] * np.power(10000.0, -2 * np.arange(head_size // 2) / head_size)
    cos_pos = np.repeat(np.cos(angles), 2, axis=-1)[None, :, None, :]
    sin_pos = np.repeat(np.sin(angles), 2, axis=-1)[None, :, None, :]

    def rotate(q):
        q2 = np.stack([-q[..., 1::2], q[..., ::2]], axis=4).reshape(q.shape)
        return q * cos_pos + q2 * sin_pos

    key_mask = mask[:, None, None, :].astype(np.float64)
    for index in range(LAYERS):
        names = ["dense" if n == 0 else f"dense_{n}" for n in range(6 * index, 6 * index + 6)]
        attention = f"{MODEL_SCOPE}/Transformer-{index}-MultiHeadSelfAttention"
        q, k, v = (dense(x, f"{attention}/{name}").reshape(batch, length, HEADS, head_size) for name in names[:3])
        scores = np.einsum("bjhd,bkhd->bhjk", rotate(q), rotate(k)) / np.sqrt(head_size)
        scores = scores * key_mask - 1e12 * (1 - key_mask)
        probabilities = np.exp(scores - scores.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        context = np.einsum("bhjk,bkhd->bjhd", probabilities, v).reshape(batch, length, hidden)
        x = layer_norm(x + dense(context, f"{attention}/{names[3]}"), f"{attention}-Norm")

        feed_forward = f"{MODEL_SCOPE}/Transformer-{index}-FeedForward"
        inner = dense(x, f"{feed_forward}/{names[4]}")
        inner = 0.5 * inner * (1 + erf(inner / np.sqrt(2)))
        x = layer_norm(x + dense(inner, f"{feed_forward}/{names[5]}"), f"{feed_forward}-Norm")

    pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    head = f"{MODEL_SCOPE}/dense_{6 * LAYERS}"
    logits = pooled @ weights[f"{head}/MatMul/ReadVariableOp:0"] + weights[f"{head}/BiasAdd/ReadVariableOp:0"]
    return x, 1 / (1 + np.exp(-logits))


def check_reference(model_path, samples_dir):
    model = onnx.load(str(model_path))
    weights = {init.name: numpy_helper.to_array(init).astype(np.float64) for init in model.graph.initializer
               if init.name.endswith("ReadVariableOp:0")}
    tokens, segments = load_padded_samples(samples_dir, BATCH, MAX_SEQ_LEN)
    outputs = run(model_path, tokens, segments)
    expected_encoder, expected_score = reference_forward(weights, tokens, segments)

    encoder_diff = np.abs(outputs["encoder_output:0"] - expected_encoder).max()
    score_diff = np.abs(outputs["Identity:0"] - expected_score).max()
    check(encoder_diff <= REFERENCE_TOLERANCE, f"encoder_output:0 differs from the NumPy reference by {encoder_diff:.2e}")
    check(score_diff <= REFERENCE_TOLERANCE, f"Identity:0 differs from the NumPy reference by {score_diff:.2e}")
    print(f"  matches the NumPy RoFormer reference: encoder output within {encoder_diff:.1e}, "
          f"score within {score_diff:.1e}")


def check_sample_layout(samples_dir):
    tokens, segments, labels = load_samples(samples_dir)
    check(len(tokens) == len(segments) == len(labels) == 64, f"expected 64 sequences, found {len(tokens)}")
    check(labels[0::2] == [1] * 32 and labels[1::2] == [0] * 32, "labels are not ordered (similar, dissimilar)")
    for row, (token_ids, segment_ids) in enumerate(zip(tokens, segments)):
        check(len(token_ids) == len(segment_ids) <= MAX_SEQ_LEN, f"sequence {row} has bad lengths")
        check(token_ids[0] == 101 and token_ids[-1] == 102, f"sequence {row} is not [CLS] ... [SEP]")
        check(0 not in token_ids, f"sequence {row} contains the padding id 0")
        first_sep = token_ids.index(102)
        check(segment_ids == [0] * (first_sep + 1) + [1] * (len(token_ids) - first_sep - 1),
              f"sequence {row} segment ids do not switch after the first [SEP]")
    truncated = sum(len(token_ids) == MAX_SEQ_LEN for token_ids in tokens)
    check(truncated >= 8, f"only {truncated} of 64 sequences are truncated to {MAX_SEQ_LEN}")
    print(f"  sample set: 64 sequences in (similar, dissimilar) pairs, {truncated} truncated to {MAX_SEQ_LEN} tokens")


def check_scores(model_path, samples_dir):
    tokens, segments = load_padded_samples(samples_dir, BATCH, MAX_SEQ_LEN)
    scores = score(model_path, tokens, segments)
    check(scores.shape == (BATCH, 1) and scores.dtype == np.float32, f"score shape {scores.shape} {scores.dtype}")
    check(np.all(np.isfinite(scores)), f"scores are not finite: {scores.ravel()}")
    check(np.all((scores > 0) & (scores < 1)), f"scores are not in (0, 1): {scores.ravel()}")
    print(f"  scores {np.round(scores.ravel(), 6)} are finite and in (0, 1)")

    changed = tokens.copy()
    position = 5
    changed[0, position] = 104 if changed[0, position] != 104 else 105
    changed_scores = score(model_path, changed, segments)
    delta = np.abs(changed_scores - scores).ravel()
    check(delta[0] > MIN_SCORE_CHANGE, f"changing token {position} of sequence 0 moved its score by only {delta[0]:.2e}")
    check(np.all(delta[1:] <= ROUNDING_TOLERANCE), f"changing sequence 0 moved other scores by {delta[1:]}")
    print(f"  changing token {position} of sequence 0 moves its score by {delta[0]:.2e}, others by <= {delta[1:].max():.1e}")

    padded_tokens, padded_segments = load_padded_samples(samples_dir, BATCH, LONGER_PADDING)
    padded_scores = score(model_path, padded_tokens, padded_segments)
    padding_delta = np.abs(padded_scores - scores).max()
    check(padding_delta <= ROUNDING_TOLERANCE,
          f"padding to {LONGER_PADDING} instead of {MAX_SEQ_LEN} moved scores by {padding_delta:.2e}")
    print(f"  padding to {LONGER_PADDING} instead of {MAX_SEQ_LEN} moves scores by {padding_delta:.1e}")


# Flag sets that change the graph but not the function it computes.
VARIANT_FLAGS = [
    ["--no-einsum", "--opset=11"],
    ["--no-tf-constfold", "--no-keras-mask-merge"],
    ["--rotary-table-per-layer", "--opset=17"],
]


def check_variants(model_path, samples_dir, work_dir):
    tokens, segments = load_padded_samples(samples_dir, BATCH, MAX_SEQ_LEN)
    expected = run(model_path, tokens, segments)
    for index, flags in enumerate(VARIANT_FLAGS):
        variant = generate_fixture(Path(work_dir) / f"variant{index}", "--small", "--encoder-output", "--no-samples",
                                   *flags)
        outputs = run(variant, tokens, segments)
        for name, array in expected.items():
            diff = np.abs(outputs[name] - array).max()
            check(diff <= ROUNDING_TOLERANCE, f"{' '.join(flags)}: {name} differs from the default graph by {diff:.2e}")
    print(f"  {len(VARIANT_FLAGS)} graph variants ({'; '.join(' '.join(flags) for flags in VARIANT_FLAGS)}) "
          "compute the same outputs")


def main():
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fixture-ort-") as work_dir:
        try:
            model_path = generate_fixture(work_dir, "--small", "--encoder-output", f"--max-seq-len={MAX_SEQ_LEN}")
            samples_dir = Path(work_dir) / SAMPLES_DIR
            print(f"small model and samples generated in {time.monotonic() - started:.2f} s")
            check_sample_layout(samples_dir)
            check_scores(model_path, samples_dir)
            check_reference(model_path, samples_dir)
            check_variants(model_path, samples_dir, work_dir)
        except (CheckFailed, OrtRunError) as failure:
            print(f"FAIL: {failure}")
            return 1
    print(f"PASS: small fixture runs in ONNX Runtime ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
