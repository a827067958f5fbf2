"""The PyTorch side of scripts/gpu-check: the exported RoFormer as a
torch.nn.Module with weights read from the ONNX initializers
(roformer_reference.load_weights), attention through
torch.nn.functional.scaled_dot_product_attention, timed on the GPU.

    python3 torch_reference.py MODEL.onnx --batches 1 2 64 --seq-len 1024 --json torch.json
    python3 torch_reference.py MODEL.onnx --compare DIR   # against roformer-run's outputs

It is what a user would otherwise run: eager PyTorch in fp16 with its fused
attention, no CUDA graphs and no torch.compile.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roformer_reference import LAYER_NORM_EPSILON, load_weights, rotary_tables  # noqa: E402

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


class RoFormer(torch.nn.Module):
    """bert4keras RoFormer with the masked-mean-pooling sigmoid head of the export."""

    def __init__(self, weights, max_sequence, dtype):
        super().__init__()
        self.heads = weights["heads"]

        def tensor(array):
            return torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(array)).to(dtype),
                                      requires_grad=False)

        self.token_embedding = tensor(weights["token_embedding"])
        self.segment_embedding = tensor(weights["segment_embedding"])
        self.embedding_norm = torch.nn.ParameterList(
            [tensor(weights["embedding_norm"]["gamma"]), tensor(weights["embedding_norm"]["beta"])])
        self.layers = torch.nn.ModuleList()
        for layer in weights["layers"]:
            module = torch.nn.Module()
            # Q, K and V in one product, as a PyTorch user would pack them.
            module.qkv_kernel = tensor(np.concatenate(
                [layer["q"]["kernel"], layer["k"]["kernel"], layer["v"]["kernel"]], axis=1))
            module.qkv_bias = tensor(np.concatenate(
                [layer["q"]["bias"], layer["k"]["bias"], layer["v"]["bias"]]))
            for name in ("o", "ffn_in", "ffn_out"):
                setattr(module, f"{name}_kernel", tensor(layer[name]["kernel"]))
                setattr(module, f"{name}_bias", tensor(layer[name]["bias"]))
            for name in ("attention_norm", "ffn_norm"):
                setattr(module, f"{name}_gamma", tensor(layer[name]["gamma"]))
                setattr(module, f"{name}_beta", tensor(layer[name]["beta"]))
            self.layers.append(module)
        self.head_kernel = tensor(weights["head"]["kernel"])
        self.head_bias = tensor(weights["head"]["bias"])
        hidden = weights["token_embedding"].shape[1]
        cos, sin = rotary_tables(max_sequence, hidden // self.heads)
        self.register_buffer("cos", torch.from_numpy(cos).to(dtype), persistent=False)
        self.register_buffer("sin", torch.from_numpy(sin).to(dtype), persistent=False)

    def rotate(self, x):
        # x [b, heads, s, d]: pairs (2i, 2i + 1) rotated by position.
        sequence = x.shape[2]
        cos = self.cos[:sequence][None, None]
        sin = self.sin[:sequence][None, None]
        first, second = x[..., 0::2], x[..., 1::2]
        return torch.stack((first * cos - second * sin, second * cos + first * sin), dim=-1).flatten(-2)

    def forward(self, tokens, segments):
        batch, sequence = tokens.shape
        x = F.embedding(tokens, self.token_embedding) + F.embedding(segments, self.segment_embedding)
        hidden = x.shape[-1]
        x = F.layer_norm(x, (hidden,), self.embedding_norm[0], self.embedding_norm[1],
                         LAYER_NORM_EPSILON)
        mask = tokens != 0
        mask[:, 0] = True  # bert4keras keeps position 0
        attention_mask = mask[:, None, None, :]
        head_size = hidden // self.heads
        for layer in self.layers:
            qkv = torch.addmm(layer.qkv_bias, x.reshape(-1, hidden), layer.qkv_kernel)
            qkv = qkv.view(batch, sequence, 3, self.heads, head_size).permute(2, 0, 3, 1, 4)
            q, k, v = self.rotate(qkv[0]), self.rotate(qkv[1]), qkv[2]
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask)
            context = context.transpose(1, 2).reshape(-1, hidden)
            attended = torch.addmm(layer.o_bias, context, layer.o_kernel).view(batch, sequence, hidden)
            x = F.layer_norm(x + attended, (hidden,), layer.attention_norm_gamma,
                             layer.attention_norm_beta, LAYER_NORM_EPSILON)
            inner = F.gelu(torch.addmm(layer.ffn_in_bias, x.reshape(-1, hidden), layer.ffn_in_kernel))
            outer = torch.addmm(layer.ffn_out_bias, inner, layer.ffn_out_kernel).view(batch, sequence, hidden)
            x = F.layer_norm(x + outer, (hidden,), layer.ffn_norm_gamma, layer.ffn_norm_beta,
                             LAYER_NORM_EPSILON)
        weight = mask[..., None].to(x.dtype)
        pooled = (x * weight).sum(1) / weight.sum(1)
        return torch.sigmoid(pooled @ self.head_kernel + self.head_bias), x


def synthetic_inputs(batch, sequence, vocab, seed):
    """[CLS] text [SEP] text [SEP] rows filling the sequence, as roformer-run --synthetic lays them out."""
    generator = np.random.default_rng(seed)
    tokens = generator.integers(1, vocab, size=(batch, sequence))
    segments = np.zeros((batch, sequence), dtype=np.int64)
    split = sequence // 2
    tokens[:, 0] = 101
    tokens[:, split] = 102
    tokens[:, -1] = 102
    segments[:, split + 1:] = 1
    return tokens, segments


def benchmark(model, batch, sequence, vocab, warmup, iterations, device):
    tokens, segments = synthetic_inputs(batch, sequence, vocab, seed=batch)
    tokens = torch.from_numpy(tokens).to(device)
    segments = torch.from_numpy(segments).to(device)
    with torch.inference_mode():
        for _ in range(warmup):
            model(tokens, segments)
        torch.cuda.synchronize()
        times = []
        for _ in range(iterations):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            model(tokens, segments)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    times.sort()
    mean = sum(times) / len(times)
    return {"batch": batch, "sequence": sequence, "iterations": iterations,
            "latency_ms": {"mean": mean, "min": times[0], "p50": times[len(times) // 2],
                           "max": times[-1]},
            "throughput_sequences_per_s": batch * 1000.0 / mean}


def compare(model, folder, device):
    """Runs the inputs roformer-run saved in `folder` and compares with its outputs."""
    folder = Path(folder)
    inputs = {name: np.load(folder / file)
              for name, file in json.loads((folder / "inputs.json").read_text()).items()}
    outputs = {name: np.load(folder / file)
               for name, file in json.loads((folder / "outputs.json").read_text()).items()}
    tokens = next(value for name, value in inputs.items() if "token" in name).astype(np.int64)
    segments = next(value for name, value in inputs.items() if "segment" in name).astype(np.int64)
    with torch.inference_mode():
        scores, encoder = model(torch.from_numpy(tokens).to(device),
                                torch.from_numpy(segments).to(device))
    result = {}
    for name, value in (("Identity:0", scores), ("encoder_output:0", encoder)):
        if name not in outputs:
            continue
        ours = outputs[name].astype(np.float64).ravel()
        theirs = value.float().cpu().numpy().astype(np.float64).ravel()
        cosine = float(ours @ theirs / (np.linalg.norm(ours) * np.linalg.norm(theirs)))
        result[name] = {"cosine": cosine, "max_abs_error": float(np.abs(ours - theirs).max())}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the exported model (roformer-frozen_org.onnx)")
    parser.add_argument("--precision", choices=sorted(DTYPES), default="fp16")
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 2, 64])
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--compare", metavar="DIR", action="append", default=[],
                        help="roformer-run --save-inputs/--output-dir folder to compare with")
    parser.add_argument("--json", metavar="FILE", help="write the results here")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print("torch_reference.py: error: PyTorch sees no CUDA device", file=sys.stderr)
        return 1
    device = torch.device("cuda")
    started = time.monotonic()
    weights = load_weights(args.model)
    vocab = weights["token_embedding"].shape[0]
    model = RoFormer(weights, args.seq_len, DTYPES[args.precision]).to(device).eval()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, weights loaded in "
          f"{time.monotonic() - started:.1f} s", file=sys.stderr)

    report = {"torch": torch.__version__, "device": torch.cuda.get_device_name(),
              "precision": args.precision, "runs": [], "comparisons": {}}
    for folder in args.compare:
        report["comparisons"][folder] = compare(model, folder, device)
        print(f"compared with {folder}: {report['comparisons'][folder]}", file=sys.stderr)
    for batch in args.batches:
        run = benchmark(model, batch, args.seq_len, vocab, args.warmup, args.iterations, device)
        report["runs"].append(run)
        print(f"batch {batch}: mean {run['latency_ms']['mean']:.3f} ms, "
              f"{run['throughput_sequences_per_s']:.1f} sequences/s", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
