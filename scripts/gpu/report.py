"""Print the table of scripts/gpu-check from the files its steps wrote, and
write the same figures to summary.json in the results folder.

Exit code 1 when the GPU's outputs disagree with a reference: the CUDA tests
failed, PyTorch's outputs differ (cosine below MIN_COSINE), or a CAIL2019 pair
is decided differently than on the CPU. Missed speed targets are reported,
not failed.
"""

import argparse
import json
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

# fp16 outputs against PyTorch fp16. The two round differently, so they
# cannot agree exactly; 0.999 is an estimate of the drift, not a measurement.
MIN_COSINE = 0.999
# Targets of the CUDA backend on an H200 at sequence 1024.
TARGET_BATCH64_SEQUENCES_PER_S = 2000.0
TARGET_BATCH64_SPEEDUP_OVER_TORCH = 1.3
TARGET_BATCH2_LATENCY_MS = 2.5


def load_json(path):
    return json.loads(path.read_text()) if path.exists() else None


def test_summary(path):
    if not path.exists():
        return None
    root = ElementTree.parse(path).getroot()
    return {key: int(root.get(key, 0)) for key in ("tests", "failures", "errors", "disabled")} | {
        "skipped": sum(1 for case in root.iter("testcase") if case.find("skipped") is not None)}


# CPU score differences below this do not decide a CAIL2019 pair: fp16
# logits carry a relative rounding error of about 2^-11, and near 0.5 the
# sigmoid passes a quarter of a logit's error on to the score.
DECISIVE_MARGIN = 2e-3


def cail_comparison(device_dir, cpu_dir):
    device_file = Path(device_dir) / "Identity_0.npy"
    cpu_file = Path(cpu_dir) / "Identity_0.npy"
    if not device_file.exists() or not cpu_file.exists():
        return None
    device = np.load(device_file).ravel()
    cpu = np.load(cpu_file).ravel()
    device_decisions = device[0::2] > device[1::2]
    cpu_decisions = cpu[0::2] > cpu[1::2]
    decisive = np.abs(cpu[0::2] - cpu[1::2]) > DECISIVE_MARGIN
    return {"pairs": int(len(cpu_decisions)),
            "same_decisions": int((device_decisions == cpu_decisions).sum()),
            "decisive_pairs": int(decisive.sum()),
            "same_decisive_decisions": int((device_decisions == cpu_decisions)[decisive].sum()),
            "accuracy_device": float(device_decisions.mean()),
            "accuracy_cpu": float(cpu_decisions.mean()),
            "max_abs_score_difference": float(np.abs(device - cpu).max())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--cail-device", type=Path)
    parser.add_argument("--cail-cpu", type=Path)
    parser.add_argument("--elapsed", type=int, default=0, help="seconds the check took")
    parser.add_argument("--failed", default="", help="names of failed steps")
    args = parser.parse_args(argv)

    ours = []
    for path in sorted(args.results.glob("roformer-run-*.json")):
        report = load_json(path)
        ours.append({"engine": "roformer-run", "precision": report["precision"],
                     "device": report["device"], "batch": report["batch"],
                     "sequence": report["seq_len"], "latency_ms": report["latency_ms"],
                     "sequences_per_s": report["throughput_sequences_per_s"]})
    ours.sort(key=lambda row: (row["precision"], row["batch"]))
    torch = load_json(args.results / "torch-fp16.json")
    torch_rows = []
    if torch:
        for run in torch["runs"]:
            torch_rows.append({"engine": f"PyTorch {torch['torch']}", "precision": torch["precision"],
                               "device": "cuda", "batch": run["batch"], "sequence": run["sequence"],
                               "latency_ms": run["latency_ms"],
                               "sequences_per_s": run["throughput_sequences_per_s"]})
    torch_by_batch = {row["batch"]: row for row in torch_rows}

    lines = ["| engine | precision | batch | sequence | mean ms | p50 ms | sequences/s | vs PyTorch fp16 |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in ours + torch_rows:
        reference = torch_by_batch.get(row["batch"])
        ratio = (f"{row['sequences_per_s'] / reference['sequences_per_s']:.2f}x"
                 if reference and row["engine"] == "roformer-run" else "")
        lines.append(f"| {row['engine']} ({row['device']}) | {row['precision']} | {row['batch']} | "
                     f"{row['sequence']} | {row['latency_ms']['mean']:.3f} | "
                     f"{row['latency_ms']['p50']:.3f} | {row['sequences_per_s']:.1f} | {ratio} |")

    problems = []
    notes = []
    tests = test_summary(args.results / "cuda-unit-tests.xml")
    if tests:
        notes.append(f"CUDA tests: {tests['tests']} run, {tests['failures']} failed, "
                     f"{tests['skipped']} skipped")
        if tests["failures"] or tests["errors"]:
            problems.append("CUDA tests failed")
    if torch:
        for folder, outputs in torch.get("comparisons", {}).items():
            for name, values in outputs.items():
                notes.append(f"roformer-run vs PyTorch, {name}: cosine {values['cosine']:.6f}, "
                             f"max abs difference {values['max_abs_error']:.3g}")
                if values["cosine"] < MIN_COSINE:
                    problems.append(f"{name} differs from PyTorch (cosine {values['cosine']:.6f})")
    cail = (cail_comparison(args.cail_device, args.cail_cpu)
            if args.cail_device and args.cail_cpu else None)
    if cail:
        notes.append(f"CAIL2019 samples: {cail['same_decisions']} of {cail['pairs']} pair decisions "
                     f"equal to the CPU's ({cail['same_decisive_decisions']} of the "
                     f"{cail['decisive_pairs']} pairs the CPU decides by more than "
                     f"{DECISIVE_MARGIN}); accuracy {cail['accuracy_device']:.3f} here, "
                     f"{cail['accuracy_cpu']:.3f} on the CPU; max score difference "
                     f"{cail['max_abs_score_difference']:.3g}")
        if cail["same_decisive_decisions"] != cail["decisive_pairs"]:
            problems.append("CAIL2019 decisions differ from the CPU backend")

    targets = []
    fp16 = {row["batch"]: row for row in ours if row["precision"] == "fp16" and row["device"] == "cuda"}
    if 64 in fp16:
        rate = fp16[64]["sequences_per_s"]
        targets.append(f"batch 64 fp16: {rate:.0f} sequences/s (target {TARGET_BATCH64_SEQUENCES_PER_S:.0f}): "
                       f"{'met' if rate >= TARGET_BATCH64_SEQUENCES_PER_S else 'not met'}")
        if 64 in torch_by_batch:
            speedup = rate / torch_by_batch[64]["sequences_per_s"]
            targets.append(f"batch 64 fp16 vs PyTorch fp16: {speedup:.2f}x (target "
                           f"{TARGET_BATCH64_SPEEDUP_OVER_TORCH}x): "
                           f"{'met' if speedup >= TARGET_BATCH64_SPEEDUP_OVER_TORCH else 'not met'}")
    if 2 in fp16:
        latency = fp16[2]["latency_ms"]["mean"]
        targets.append(f"batch 2 fp16: {latency:.3f} ms per batch (target {TARGET_BATCH2_LATENCY_MS} ms): "
                       f"{'met' if latency <= TARGET_BATCH2_LATENCY_MS else 'not met'}")

    print("## gpu-check\n")
    print("\n".join(lines))
    print()
    for note in notes + targets:
        print(f"- {note}")
    if args.failed.strip():
        print(f"- failed steps: {args.failed.strip()}")
    for problem in problems:
        print(f"- PROBLEM: {problem}")
    print(f"- finished in {args.elapsed} s")

    summary = {"rows": ours + torch_rows, "tests": tests, "cail": cail, "targets": targets,
               "problems": problems, "failed_steps": args.failed.strip(), "elapsed_s": args.elapsed}
    (args.results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
