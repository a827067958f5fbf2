"""Run the benchmarks of scripts/bench and write the report as markdown.

Four parts, each table stamped with the machine, commit, date and load:

1. roformer-opt with the default pipeline (or --pipeline) and the sequence
   fixed at 1024, against a load+save baseline (`--pass-pipeline=`): wall
   time and peak resident memory from /usr/bin/time -v, median of several
   alternating runs.
2. End-to-end latency of roformer-run on the optimized model and of ONNX
   Runtime (all graph optimizations) on the original export and on the
   optimized model, all on the same .npy inputs. The engines take turns run
   by run: each turn is one timed run of one engine, and the order rotates, so
   drift of a shared machine hits all three alike. roformer-run starts a fresh
   process per turn (load, one warm-up run, one timed run) because it has no
   server mode. ONNX Runtime runs in bench/ort-worker.js, which keeps its
   session between turns.
3. The Google Benchmark kernel micro-benchmarks (bench-kernels).
4. roformer-run --profile at batch 1 and the longest sequence, when the
   roformer-run build has that option.

Progress goes to stderr; the report goes to stdout and OUT/report.md.
"""

import argparse
import datetime
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORT_WORKER = os.path.join(REPO, "bench", "ort-worker.js")

# The project's speed and resource targets. A speedup is the other engine's
# median latency / this engine's median, so above 1 means this one is faster.
TARGET_OURS_VS_ORT_ORIGINAL = 1.3
TARGET_OURS_VS_ORT_OPTIMIZED = 1.0
TARGET_ORT_OPTIMIZED_VS_ORIGINAL = 1.2
TARGET_OPTIMIZER_WALL_RATIO = 2.0
TARGET_OPTIMIZER_MEMORY_RATIO = 2.0
# Batches at which the speed targets apply, at sequence 1024.
TARGET_BATCHES = (1, 2)
TARGET_SEQUENCE = 1024

ENGINES = ("ours", "ort-original", "ort-optimized")


class BenchError(Exception):
    """A step failed; the message names the command or file and what to do."""


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def load_average():
    with open("/proc/loadavg") as file:
        return " ".join(file.read().split()[:3])


def run_command(command, description):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchError(f"{description} failed (exit code {result.returncode}): {' '.join(command)}\n"
                         f"{result.stderr.strip()[-2000:]}")
    return result


# ---------------------------------------------------------------------------
# Machine and run description


def describe_machine():
    fields = {}
    output = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    for line in output.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    interesting = ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                   "avx512_bf16", "amx_tile", "amx_bf16"]
    flags = set(fields.get("Flags", "").split())
    memory_gib = 0.0
    with open("/proc/meminfo") as file:
        for line in file:
            if line.startswith("MemTotal:"):
                memory_gib = int(line.split()[1]) / (1024 * 1024)
    return {
        "cpu": fields.get("Model name", "unknown CPU"),
        "cpus": fields.get("CPU(s)", "?"),
        "threads_per_core": fields.get("Thread(s) per core", "?"),
        "hypervisor": fields.get("Hypervisor vendor", ""),
        "flags": [flag for flag in interesting if flag in flags],
        "memory_gib": memory_gib,
    }


def describe_commit():
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "unknown"
    status = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True).stdout.strip()
    return head, bool(status)


def ort_version(ort_dir):
    package = os.path.join(ort_dir, "node_modules", "onnxruntime-node", "package.json")
    try:
        with open(package) as file:
            return json.load(file)["version"]
    except (OSError, KeyError, ValueError):
        return "unknown"


def openblas_version():
    result = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libopenblas0-pthread"],
                            capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


class Stamp:
    """The line printed beside every table: machine, commit, date and load."""

    def __init__(self, machine, commit, dirty):
        cpu = f"{machine['cpu']}, {machine['cpus']} CPUs"
        if "avx512f" in machine["flags"]:
            cpu += ", AVX-512"
        self.prefix = f"{cpu}; commit {commit[:12]}{' + uncommitted changes' if dirty else ''}"

    def line(self, load_before):
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return (f"_{self.prefix}; {now}; load average {load_before} before, "
                f"{load_average()} after._")


# ---------------------------------------------------------------------------
# Statistics


def percentile(values, fraction):
    """Nearest-rank percentile, as roformer-run and scripts/ort-run.js compute it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def median(values):
    return statistics.median(values)


# ---------------------------------------------------------------------------
# Part 1: the optimizer


def optimizer_pipeline(args):
    if args.pipeline:
        return args.pipeline
    result = run_command([args.roformer_opt, "--print-default-pipeline"],
                         "roformer-opt --print-default-pipeline")
    return result.stdout.strip()


def parse_time_output(path):
    wall = None
    rss_kib = None
    with open(path) as file:
        for line in file:
            line = line.strip()
            if line.startswith("Elapsed (wall clock) time"):
                clock = line.rsplit(" ", 1)[1]
                seconds = 0.0
                for part in clock.split(":"):
                    seconds = seconds * 60 + float(part)
                wall = seconds
            elif line.startswith("Maximum resident set size"):
                rss_kib = int(line.rsplit(" ", 1)[1])
    if wall is None or rss_kib is None:
        raise BenchError(f"{path}: no wall time or maximum resident set size in the output of "
                         "/usr/bin/time -v")
    return wall, rss_kib * 1024


def time_optimizer(args, label, extra_flags, output):
    time_file = os.path.join(args.out, "time.txt")
    command = ["/usr/bin/time", "-v", "-o", time_file, args.roformer_opt, args.model, "-o", output,
               "--quiet"] + extra_flags
    result = run_command(command, f"roformer-opt ({label})")
    wall, rss = parse_time_output(time_file)
    os.remove(time_file)
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    return wall, rss, warnings


def optimizer_flags(args, sequence):
    """The flags of an optimizing roformer-opt run with the sequence fixed."""
    flags = ["--input-shape", f"input_token:0=Bx{sequence},input_segment:0=Bx{sequence}"]
    if args.pipeline:
        flags.append(f"--pass-pipeline={args.pipeline}")
    return flags


def pipeline_name(args):
    return "the --pipeline pipeline" if args.pipeline else "default pipeline"


def bench_optimizer(args, stamp, report):
    log(f"part 1: timing roformer-opt, {args.optimizer_runs} runs per pipeline")
    load_before = load_average()
    models = os.path.join(args.out, "models")
    baseline_output = os.path.join(models, "load-save.onnx")
    optimized_output = os.path.join(models, f"optimized-{TARGET_SEQUENCE}.onnx")
    name_map = os.path.join(models, "name-map.tsv")
    pipelines = {
        "load+save (--pass-pipeline=)": (["--pass-pipeline="], baseline_output),
        f"{pipeline_name(args)}, sequence {TARGET_SEQUENCE}":
            (optimizer_flags(args, TARGET_SEQUENCE) + [f"--name-map={name_map}"],
             optimized_output),
    }
    runs = {label: [] for label in pipelines}
    warnings = []
    for round_index in range(args.optimizer_runs):
        labels = list(pipelines)
        if round_index % 2 == 1:
            labels.reverse()
        for label in labels:
            flags, output = pipelines[label]
            wall, rss, messages = time_optimizer(args, label, flags, output)
            log(f"  {label}: {wall:.2f} s, {rss / 2**20:.0f} MiB")
            runs[label].append((wall, rss))
            warnings += [message for message in messages if message not in warnings]
    os.remove(baseline_output)

    model_bytes = os.path.getsize(args.model)
    baseline_label, default_label = list(pipelines)
    summary = {}
    for label in pipelines:
        summary[label] = (median([wall for wall, _ in runs[label]]),
                          median([rss for _, rss in runs[label]]))
    wall_ratio = summary[default_label][0] / summary[baseline_label][0]
    memory_ratio = summary[default_label][1] / model_bytes

    lines = ["## 1. Optimizer: time and peak memory", "", stamp.line(load_before), "",
             f"Model: `{args.model}`, {model_bytes / 1e6:.1f} MB "
             f"({model_bytes / 2**20:.1f} MiB). Optimized model: "
             f"{os.path.getsize(optimized_output) / 1e6:.1f} MB. "
             f"Median of {args.optimizer_runs} runs each, the two pipelines alternating.", "",
             "| pipeline | wall s (median) | wall s (runs) | peak RSS MiB (median) "
             "| peak RSS / model file |",
             "| --- | ---: | --- | ---: | ---: |"]
    for label in pipelines:
        wall, rss = summary[label]
        walls = ", ".join(f"{value:.2f}" for value, _ in runs[label])
        lines.append(f"| {label} | {wall:.2f} | {walls} | {rss / 2**20:.0f} | "
                     f"{rss / model_bytes:.2f}x |")
    lines += ["", f"Optimizing / load+save wall time: **{wall_ratio:.2f}x** "
              f"(target at most {TARGET_OPTIMIZER_WALL_RATIO:.1f}x). "
              f"Peak RSS / model file size: **{memory_ratio:.2f}x** "
              f"(target at most {TARGET_OPTIMIZER_MEMORY_RATIO:.1f}x)."]
    if warnings:
        lines += ["", "roformer-opt printed:", "", "```"] + warnings + ["```"]
    report.section(lines)
    report.target("optimizer wall time / load+save", f"{wall_ratio:.2f}x",
                  f"<= {TARGET_OPTIMIZER_WALL_RATIO:.1f}x",
                  wall_ratio <= TARGET_OPTIMIZER_WALL_RATIO)
    report.target("optimizer peak RSS / model file size", f"{memory_ratio:.2f}x",
                  f"<= {TARGET_OPTIMIZER_MEMORY_RATIO:.1f}x",
                  memory_ratio <= TARGET_OPTIMIZER_MEMORY_RATIO)
    return optimized_output, name_map


# ---------------------------------------------------------------------------
# Part 2: end-to-end latency


def read_name_map(path):
    """Returns {original name: optimized name} from roformer-opt --name-map."""
    mapping = {}
    with open(path) as file:
        for line in file:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 2:
                mapping[parts[0]] = parts[1]
    return mapping


def write_inputs(args, model, batch, sequence):
    """Writes synthetic [CLS] a [SEP] b [SEP] ids with roformer-run --save-inputs.

    The ids come from one untimed roformer-run pass, so the vocabulary is the
    model's (roformer-run reads it from the token embedding's Gather).
    Returns {optimized input name: .npy path}.
    """
    folder = os.path.join(args.out, "inputs", f"b{batch}-s{sequence}")
    index = os.path.join(folder, "inputs.json")
    if not os.path.exists(index):
        run_command([args.roformer_run, model, "--synthetic", "--batch", str(batch), "--seq-len",
                     str(sequence), "--seed", "1", "--warmup", "0", "--iterations", "1",
                     "--threads", str(args.threads), "--save-inputs", folder],
                    f"roformer-run --save-inputs (batch {batch}, sequence {sequence})")
    with open(index) as file:
        files = json.load(file)
    return {name: os.path.join(folder, file) for name, file in files.items()}


class OrtWorker:
    """One bench/ort-worker.js process with its session loaded."""

    def __init__(self, args, model, inputs, label):
        self.label = label
        command = ["node", ORT_WORKER, model, "--threads", str(args.threads), "--opt-level", "all",
                   "--warmup", str(args.warmup)]
        for name, path in inputs.items():
            command += ["--input", f"{name}={path}"]
        env = dict(os.environ, ROFORMER_ORT_DIR=args.ort_dir)
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env)
        ready = self._reply()
        self.load_ms = ready.get("load_ms", 0.0)

    def _reply(self):
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise BenchError(f"ONNX Runtime worker ({self.label}) exited with code "
                             f"{self.process.returncode}: {self.process.stderr.read().strip()}")
        return json.loads(line)

    def _send(self, command):
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._reply()

    def time_run(self):
        """Returns the latency and the process's processor time of one run, in ms."""
        reply = self._send("run 1")
        return reply["latencies_ms"][0], reply["cpu_ms"][0]

    def save_outputs(self, folder):
        self._send(f"save {folder}")

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait(timeout=60)


def time_ours(args, model, inputs, output_dir=None):
    """Returns the latency and processor time (None when not reported) of one run, in ms."""
    json_path = os.path.join(args.out, "roformer-run.json")
    command = [args.roformer_run, model, "--warmup", str(args.warmup), "--iterations", "1",
               "--threads", str(args.threads), "--json", json_path]
    for name, path in inputs.items():
        command += ["--input", f"{name}={path}"]
    if output_dir:
        command += ["--output-dir", output_dir]
    run_command(command, "roformer-run")
    with open(json_path) as file:
        report = json.load(file)
    os.remove(json_path)
    return report["latency_ms"]["p50"], report.get("cpu_ms_per_run")


def max_abs_difference(folder_a, folder_b):
    """Largest |a - b| over the .npy outputs both folders contain, or None."""
    largest = None
    for name in sorted(os.listdir(folder_a)):
        other = os.path.join(folder_b, name)
        if not name.endswith(".npy") or not os.path.exists(other):
            continue
        a = np.load(os.path.join(folder_a, name)).astype(np.float64)
        b = np.load(other).astype(np.float64)
        if a.shape != b.shape:
            raise BenchError(f"output {name} has shape {a.shape} in {folder_a} but {b.shape} in "
                             f"{folder_b}")
        difference = float(np.max(np.abs(a - b))) if a.size else 0.0
        largest = difference if largest is None else max(largest, difference)
    return largest


def optimize_for_sequence(args, sequence):
    output = os.path.join(args.out, "models", f"optimized-{sequence}.onnx")
    log(f"  optimizing for sequence {sequence}")
    run_command([args.roformer_opt, args.model, "-o", output, "--quiet"] +
                optimizer_flags(args, sequence), f"roformer-opt (sequence {sequence})")
    return output


def bench_config(args, models, name_map, batch, sequence):
    """Times the three engines at one batch and sequence.

    Returns {engine: latencies}, {engine: processor times} (ms, None where
    not reported) and the max abs output differences from ORT on the original.
    """
    optimized = models[sequence]
    inputs = write_inputs(args, optimized, batch, sequence)
    reverse = {new: old for old, new in name_map.items()}
    original_inputs = {reverse.get(name, name): path for name, path in inputs.items()}

    outputs = os.path.join(args.out, "outputs", f"b{batch}-s{sequence}")
    workers = {}
    try:
        workers["ort-original"] = OrtWorker(args, args.model, original_inputs, "original")
        workers["ort-optimized"] = OrtWorker(args, optimized, inputs, "optimized")
        for engine, worker in workers.items():
            worker.save_outputs(os.path.join(outputs, engine))

        latencies = {engine: [] for engine in ENGINES}
        cpu = {engine: [] for engine in ENGINES}
        for turn in range(args.iterations):
            shift = turn % len(ENGINES)
            for engine in ENGINES[shift:] + ENGINES[:shift]:
                if engine == "ours":
                    save = os.path.join(outputs, "ours") if turn == 0 else None
                    latency, cpu_ms = time_ours(args, optimized, inputs, save)
                else:
                    latency, cpu_ms = workers[engine].time_run()
                latencies[engine].append(latency)
                cpu[engine].append(cpu_ms)
            log(f"  batch {batch}, sequence {sequence}: turn {turn + 1}/{args.iterations} "
                + ", ".join(f"{engine} {latencies[engine][-1]:.0f} ms" for engine in ENGINES))
    finally:
        for worker in workers.values():
            worker.close()

    differences = {
        "ours": max_abs_difference(os.path.join(outputs, "ours"),
                                   os.path.join(outputs, "ort-original")),
        "ort-optimized": max_abs_difference(os.path.join(outputs, "ort-optimized"),
                                            os.path.join(outputs, "ort-original")),
    }
    return latencies, cpu, differences


def format_difference(value):
    return "no common output" if value is None else f"{value:.1e}"


def format_ms(value):
    return "n/a" if value is None else f"{value:.1f}"


def format_ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator <= 0:
        return "n/a"
    return f"{numerator / denominator:.2f}x"


def bench_latency(args, stamp, report, optimized_1024, name_map_path):
    load_before = load_average()
    name_map = read_name_map(name_map_path)
    models = {}
    for sequence in args.sequences:
        models[sequence] = (optimized_1024 if sequence == TARGET_SEQUENCE
                            else optimize_for_sequence(args, sequence))

    results = {}
    for sequence in args.sequences:
        for batch in args.batches:
            log(f"part 2: batch {batch}, sequence {sequence}, {args.iterations} turns")
            results[(batch, sequence)] = bench_config(args, models, name_map, batch, sequence)

    lines = ["## 2. End-to-end latency", "", stamp.line(load_before), "",
             f"Milliseconds per run, in-process, median (p50) and p90 of {args.iterations} "
             f"runs per engine after {args.warmup} warm-up run(s); {args.threads} threads for "
             "every engine (roformer-run `--threads`, ONNX Runtime `intraOpNumThreads` with "
             "`graphOptimizationLevel: all`). The engines took turns run by run in rotating "
             "order. `A vs B` is B's median / A's median, so above 1 means A is faster.", "",
             "| batch | seq | roformer-run p50 | p90 | ORT original p50 | p90 "
             "| ORT optimized p50 | p90 | ours vs ORT original | ours vs ORT optimized "
             "| ORT optimized vs original |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (batch, sequence), (latencies, _, _) in results.items():
        p50 = {engine: median(latencies[engine]) for engine in ENGINES}
        p90 = {engine: percentile(latencies[engine], 0.9) for engine in ENGINES}
        ours_original = p50["ort-original"] / p50["ours"]
        ours_optimized = p50["ort-optimized"] / p50["ours"]
        ort_gain = p50["ort-original"] / p50["ort-optimized"]
        lines.append(
            f"| {batch} | {sequence} | {p50['ours']:.1f} | {p90['ours']:.1f} | "
            f"{p50['ort-original']:.1f} | {p90['ort-original']:.1f} | "
            f"{p50['ort-optimized']:.1f} | {p90['ort-optimized']:.1f} | "
            f"{ours_original:.2f}x | {ours_optimized:.2f}x | {ort_gain:.2f}x |")
        if sequence == TARGET_SEQUENCE and batch in TARGET_BATCHES:
            where = f"batch {batch}, seq {sequence}"
            report.target(f"ours vs ORT on the original, {where}", f"{ours_original:.2f}x",
                          f">= {TARGET_OURS_VS_ORT_ORIGINAL:.1f}x",
                          ours_original >= TARGET_OURS_VS_ORT_ORIGINAL)
            report.target(f"ours vs ORT on the optimized model, {where}",
                          f"{ours_optimized:.2f}x", f">= {TARGET_OURS_VS_ORT_OPTIMIZED:.1f}x",
                          ours_optimized >= TARGET_OURS_VS_ORT_OPTIMIZED)
            report.target(f"ORT optimized vs ORT original, {where}", f"{ort_gain:.2f}x",
                          f">= {TARGET_ORT_OPTIMIZED_VS_ORIGINAL:.1f}x",
                          ort_gain >= TARGET_ORT_OPTIMIZED_VS_ORIGINAL)

    lines += ["", "Processor time per run, all threads of the process, user and system "
              "(roformer-run `cpu_ms_per_run`, Node's `process.cpuUsage()` around each ONNX "
              "Runtime run), median in ms. Waiting for other jobs on a shared machine does not "
              "count here, but spinning worker threads do.", "",
              "| batch | seq | roformer-run | ORT original | ORT optimized | ours vs ORT original "
              "| ours vs ORT optimized | ORT optimized vs original |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (batch, sequence), (_, cpu, _) in results.items():
        medians = {engine: (median(cpu[engine]) if None not in cpu[engine] else None)
                   for engine in ENGINES}
        lines.append(f"| {batch} | {sequence} | "
                     + " | ".join(format_ms(medians[engine]) for engine in ENGINES) + " | "
                     + " | ".join(format_ratio(medians[slow], medians[fast]) for slow, fast in
                                  (("ort-original", "ours"), ("ort-optimized", "ours"),
                                   ("ort-original", "ort-optimized"))) + " |")

    lines += ["", "Same inputs, same outputs: max abs difference of every output from ONNX "
              "Runtime on the original export (first run of each engine). This only shows "
              "that the engines ran the same model on the same inputs: the default model's "
              "one output is the sigmoid score, which random weights make insensitive to "
              "small errors. The parity tests in test/e2e compare encoder outputs.", "",
              "| batch | seq | roformer-run, optimized | ORT, optimized |",
              "| ---: | ---: | ---: | ---: |"]
    for (batch, sequence), (_, _, differences) in results.items():
        lines.append(f"| {batch} | {sequence} | {format_difference(differences['ours'])} | "
                     f"{format_difference(differences['ort-optimized'])} |")
    if TARGET_SEQUENCE not in args.sequences:
        lines += ["", f"The speed targets apply at sequence {TARGET_SEQUENCE}, which this run "
                  "did not measure."]
    report.section(lines)
    return models, name_map


# ---------------------------------------------------------------------------
# Part 3: kernel micro-benchmarks


def bench_kernels(args, stamp, report):
    if not args.bench_kernels:
        report.section(["## 3. Kernel micro-benchmarks", "",
                        "Not run: bench-kernels was not built (Google Benchmark, package "
                        "libbenchmark-dev, was not found when the build was configured)."])
        return
    log("part 3: kernel micro-benchmarks")
    load_before = load_average()
    json_path = os.path.join(args.out, "kernels.json")
    command = [args.bench_kernels, f"--threads={args.threads}",
               f"--benchmark_out={json_path}", "--benchmark_out_format=json",
               f"--benchmark_min_time={args.kernel_min_time}"]
    if args.kernel_repetitions > 1:
        command += [f"--benchmark_repetitions={args.kernel_repetitions}",
                    "--benchmark_report_aggregates_only=true"]
    run_command(command, "bench-kernels")
    with open(json_path) as file:
        data = json.load(file)

    rows = {}
    for entry in data["benchmarks"]:
        if args.kernel_repetitions > 1 and entry.get("aggregate_name") != "median":
            continue
        if "error_message" in entry:
            rows[entry["run_name"]] = {"error": entry["error_message"]}
            continue
        scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[entry.get("time_unit", "ns")]
        rows[entry["run_name"]] = {"ms": entry["real_time"] * scale,
                                   "gflops": entry.get("GFLOP"), "gbps": entry.get("GB")}

    lines = ["## 3. Kernel micro-benchmarks", "", stamp.line(load_before), "",
             f"`bench-kernels --threads={args.threads}`: wall time per call"
             + (f", median of {args.kernel_repetitions} repetitions" if args.kernel_repetitions > 1
                else "")
             + ". GFLOP/s counts the matrix products only; GB/s counts each input read and each "
             "output written once. The MatMul rows go through the kernel registry; the "
             "OpenBLAS rows call cblas_sgemm directly on the same shapes.", "",
             "| benchmark | ms | GFLOP/s | GB/s | vs OpenBLAS sgemm |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, row in rows.items():
        display = name.replace("BM_", "").replace("/real_time", "")
        if "error" in row:
            lines.append(f"| {display} | failed: {row['error']} | | | |")
            continue
        gflops = f"{row['gflops']:.1f}" if row["gflops"] is not None else ""
        gbps = f"{row['gbps']:.2f}" if row["gbps"] is not None else ""
        versus = ""
        reference = rows.get(name.replace("BM_MatMul", "BM_OpenBlasSgemm"))
        if name.startswith("BM_MatMul") and reference and "ms" in reference:
            versus = f"{reference['ms'] / row['ms']:.2f}x"
        lines.append(f"| {display} | {row['ms']:.3f} | {gflops} | {gbps} | {versus} |")
    report.section(lines)


# ---------------------------------------------------------------------------
# Part 4: where our runtime's time goes


def bench_profile(args, stamp, report, models, name_map):
    help_text = subprocess.run([args.roformer_run, "--help"], capture_output=True,
                               text=True).stdout
    if "-profile" not in help_text:
        report.section(["## 4. Runtime profile", "",
                        "Not run: this roformer-run has no `--profile` option."])
        return
    sequence = max(args.sequences)
    log(f"part 4: roformer-run --profile at batch 1, sequence {sequence}")
    load_before = load_average()
    inputs = write_inputs(args, models[sequence], 1, sequence)
    command = [args.roformer_run, models[sequence], "--warmup", "1", "--iterations",
               str(args.profile_iterations), "--threads", str(args.threads), "--profile"]
    for name, path in inputs.items():
        command += ["--input", f"{name}={path}"]
    output = run_command(command, "roformer-run --profile").stdout
    profile = []
    keep = False
    for line in output.splitlines():
        if line.startswith("Profile"):
            keep = True
        if keep:
            profile.append(line)
    report.section(["## 4. Runtime profile", "", stamp.line(load_before), "",
                    f"`roformer-run --profile`, batch 1, sequence {sequence}, "
                    f"{args.profile_iterations} timed runs:", "", "```"] + profile + ["```"])


# ---------------------------------------------------------------------------
# Report


class Report:
    def __init__(self):
        self.header = []
        self.sections = []
        self.targets = []

    def section(self, lines):
        self.sections.append(lines)
        print("\n".join(lines) + "\n", file=sys.stderr, flush=True)

    def target(self, name, measured, goal, met):
        self.targets.append((name, measured, goal, met))

    def text(self):
        lines = list(self.header)
        for section in self.sections:
            lines += [""] + section
        if self.targets:
            lines += ["", "## Targets", "", "| target | measured | goal | met |",
                      "| --- | ---: | ---: | --- |"]
            for name, measured, goal, met in self.targets:
                lines.append(f"| {name} | {measured} | {goal} | {'yes' if met else '**no**'} |")
        return "\n".join(lines) + "\n"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", required=True, help="build folder with bin/")
    parser.add_argument("--model", required=True, help="the original tf2onnx-style export")
    parser.add_argument("--out", required=True, help="folder for the report and scratch files")
    parser.add_argument("--ort-dir", required=True, help="folder with node_modules/onnxruntime-node")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads of every engine and kernel (default: all CPUs)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: sequence 128 only, 3 runs per engine, 1 optimizer run "
                        "per pipeline, short kernel benchmarks")
    parser.add_argument("--iterations", type=int, help="timed runs per engine and configuration "
                        "(default 10, or 3 with --quick)")
    parser.add_argument("--sequences", help="comma-separated sequence lengths to time "
                        "(default 128,512,1024, or 128 with --quick)")
    parser.add_argument("--pipeline", default="",
                        help="roformer-opt --pass-pipeline for the optimized models (default: "
                        "roformer-opt's default pipeline)")
    parser.add_argument("--command", default="scripts/bench", help="command line for the report")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be at least 1")

    if args.sequences:
        try:
            args.sequences = [int(value) for value in args.sequences.split(",")]
        except ValueError:
            parser.error(f"--sequences must be comma-separated integers, got '{args.sequences}'")
        if min(args.sequences) < 3:
            parser.error("--sequences must be at least 3 ([CLS] a [SEP] b [SEP] needs 3 tokens)")
    else:
        args.sequences = [128] if args.quick else [128, 512, 1024]
    args.batches = [1, 2]
    args.iterations = args.iterations or (3 if args.quick else 10)
    args.warmup = 1
    args.optimizer_runs = 1 if args.quick else 3
    args.kernel_min_time = 0.05 if args.quick else 0.5
    args.kernel_repetitions = 1 if args.quick else 3
    args.profile_iterations = 2 if args.quick else 3
    binaries = os.path.join(args.build_dir, "bin")
    args.roformer_opt = os.path.join(binaries, "roformer-opt")
    args.roformer_run = os.path.join(binaries, "roformer-run")
    kernels = os.path.join(binaries, "bench-kernels")
    args.bench_kernels = kernels if os.path.exists(kernels) else None
    return args


def main(argv):
    args = parse_args(argv)
    for tool in (args.roformer_opt, args.roformer_run):
        if not os.access(tool, os.X_OK):
            raise BenchError(f"{tool} not found; build it first (scripts/quickstart)")
    if not os.path.exists(args.model):
        raise BenchError(f"model {args.model} not found; generate it with roformer-fixture -o DIR")
    os.makedirs(os.path.join(args.out, "models"), exist_ok=True)

    machine = describe_machine()
    commit, dirty = describe_commit()
    stamp = Stamp(machine, commit, dirty)
    started = time.time()
    report = Report()
    flags = " ".join(machine["flags"]) or "none of avx, avx2, fma, avx512*"
    report.header = [
        "# roformer-opt benchmark report", "",
        f"- Command: `{args.command}`",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Commit: {commit}" + (" (the working tree had uncommitted changes to tracked files)"
                                 if dirty else ""),
        f"- Machine: {machine['cpu']}, {machine['cpus']} CPUs "
        f"({machine['threads_per_core']} thread(s) per core), {machine['memory_gib']:.1f} GiB"
        + (f", {machine['hypervisor']} virtual machine" if machine["hypervisor"] else ""),
        f"- CPU flags: {flags}",
        f"- Threads per engine: {args.threads}",
        f"- Optimizer, {pipeline_name(args)}: `{optimizer_pipeline(args)}`",
        f"- Software: onnxruntime-node {ort_version(args.ort_dir)}, OpenBLAS "
        f"{openblas_version()} (pthread build), Node.js "
        f"{subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}",
        f"- Load average at start: {load_average()} (1, 5, 15 minutes)",
    ]

    optimized_1024, name_map = bench_optimizer(args, stamp, report)
    models, name_map = bench_latency(args, stamp, report, optimized_1024, name_map)
    bench_kernels(args, stamp, report)
    bench_profile(args, stamp, report, models, name_map)

    report.header.append(f"- Load average at end: {load_average()}; the run took "
                         f"{(time.time() - started) / 60:.1f} minutes")
    text = report.text()
    with open(os.path.join(args.out, "report.md"), "w") as file:
        file.write(text)
    sys.stdout.write(text)
    log(f"report written to {os.path.join(args.out, 'report.md')}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        sys.exit(1)
