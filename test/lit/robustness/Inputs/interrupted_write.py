#!/usr/bin/python3
"""Interrupt roformer-opt while it writes its output and check what is left.

Usage: interrupted_write.py WORKDIR

roformer-opt writes each output file to `.<name>.tmp.XXXXXX` in the output's
folder and renames it into place once complete. This script stops the tool
while such a file exists (SIGSTOP, so the moment cannot pass), sends a signal,
and checks:
  - SIGTERM, SIGINT: the process dies of that signal, the previous output (or
    its absence) is unchanged and no temporary file remains;
  - SIGKILL: the previous output is unchanged; the temporary file remains,
    because no handler runs;
  - a file size limit hit while writing (as on a full disk): exit code 1, an
    error naming the output, the previous output unchanged, no temporary file;
  - the same for a model with external data: the previous model and data
    file stay a matching pair.
The input models keep their weights in sparse files, so a few hundred MB of
output cost little disk. Prints one line per scenario; exits 1 on a failure.
"""
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
from onnx import TensorProto, helper, numpy_helper

# Large enough that writing and syncing the output takes a visible time
# (about 3 s for 256 MiB on a 2-core VM with a virtual disk).
BIG_FLOATS = 64 * 1024 * 1024


def fail(message):
    print(f"FAILED: {message}")
    sys.exit(1)


def sparse_model(folder, name, floats, seed):
    """Write `name` (x + w -> y) whose w has `floats` zeros in a sparse file.

    `seed` goes into w's first element, so that models differ in content.
    """
    data_name = name + ".weights"
    with open(os.path.join(folder, data_name), "wb") as data:
        data.truncate(floats * 4)
        data.write(np.array([seed], np.float32).tobytes())
    weights = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[floats],
                          data_location=TensorProto.EXTERNAL)
    for key, value in (("location", data_name), ("offset", "0"), ("length", str(floats * 4))):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"], name="add")], "sparse",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [floats])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [floats])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = os.path.join(folder, name)
    with open(path, "wb") as out:
        out.write(model.SerializeToString())
    return path


def many_initializers_model(folder, name, seed):
    """Write a model with one 1 MiB initializer and 200 of 64 KiB each."""
    rng = np.random.default_rng(seed)
    initializers = [numpy_helper.from_array(rng.standard_normal(256 * 1024).astype(np.float32),
                                            "big")]
    nodes = [helper.make_node("Add", ["x", "big"], ["sum0"], name="add0")]
    for i in range(200):
        initializers.append(numpy_helper.from_array(
            rng.standard_normal(16 * 1024).astype(np.float32), f"small{i}"))
        nodes.append(helper.make_node("Concat", [f"sum{i}", f"small{i}"], [f"sum{i + 1}"],
                                      name=f"concat{i}", axis=0))
    graph = helper.make_graph(
        nodes, "many", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256 * 1024])],
        [helper.make_tensor_value_info("sum200", TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = os.path.join(folder, name)
    with open(path, "wb") as out:
        out.write(model.SerializeToString())
    return path


def snapshot(paths):
    """Identity and content of each path: inode, size, mtime and a hash."""
    state = {}
    for path in paths:
        if not os.path.exists(path):
            state[path] = None
            continue
        info = os.stat(path)
        digest = hashlib.sha256()
        if info.st_size <= 64 * 1024 * 1024:
            with open(path, "rb") as handle:
                digest.update(handle.read())
        state[path] = (info.st_ino, info.st_size, info.st_mtime_ns, digest.hexdigest())
    return state


def temporaries(folder):
    return sorted(name for name in os.listdir(folder) if ".tmp." in name)


def tool():
    path = shutil.which("roformer-opt")
    if path is None:
        fail("roformer-opt is not on PATH")
    return path


def interrupt(folder, arguments, temp_prefix, sig):
    """Run roformer-opt, stop it while `temp_prefix*` exists, send `sig`.

    Returns the exit status. Retries when the run finishes before it can be
    stopped with the file present.
    """
    for attempt in range(3):
        process = subprocess.Popen([tool()] + arguments, cwd=folder,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        stopped = False
        while time.monotonic() < deadline and process.poll() is None:
            if any(name.startswith(temp_prefix) for name in os.listdir(folder)):
                process.send_signal(signal.SIGSTOP)
                # The rename may have happened between the listing and the stop.
                if any(name.startswith(temp_prefix) for name in os.listdir(folder)):
                    stopped = True
                    break
                process.send_signal(signal.SIGCONT)
            time.sleep(0.002)
        if not stopped:
            process.wait()
            for name in temporaries(folder):
                os.remove(os.path.join(folder, name))
            continue
        process.send_signal(sig)
        process.send_signal(signal.SIGCONT)
        process.wait(timeout=120)
        return process.returncode, process.stderr.read().decode()
    fail(f"roformer-opt {' '.join(arguments)} finished three times before '{temp_prefix}*' "
         "could be caught; make the model larger")


def expect_unchanged(before, scenario):
    after = snapshot(before.keys())
    for path, state in before.items():
        if after[path] != state:
            what = "appeared" if state is None else (
                "was removed" if after[path] is None else "was replaced or modified")
            fail(f"{scenario}: '{os.path.basename(path)}' {what}")


def check_signal(folder, sig, previous_output):
    scenario = f"{signal.Signals(sig).name}{' after an earlier output' if previous_output else ''}"
    model = sparse_model(folder, "input.onnx", BIG_FLOATS, seed=1)
    output = os.path.join(folder, "out.onnx")
    if os.path.exists(output):
        os.remove(output)
    if previous_output:
        with open(output, "wb") as old:
            old.write(b"the previous output\n")
    before = snapshot([model, model + ".weights", output])
    status, _ = interrupt(folder, [model, "-o", output, "--pass-pipeline=dce", "--quiet"],
                          ".out.onnx.tmp.", sig)
    if status != -sig:
        fail(f"{scenario}: expected death by {signal.Signals(sig).name}, got exit status {status}")
    expect_unchanged(before, scenario)
    left = temporaries(folder)
    if sig == signal.SIGKILL:
        # No handler runs on SIGKILL; the temporary file is all that remains.
        if len(left) != 1 or not left[0].startswith(".out.onnx.tmp."):
            fail(f"{scenario}: expected exactly one '.out.onnx.tmp.*' file, found {left}")
        os.remove(os.path.join(folder, left[0]))
    elif left:
        fail(f"{scenario}: temporary files remain: {left}")
    print(f"{scenario}: ok")


def check_external_pair_signal(folder, sig):
    scenario = f"{signal.Signals(sig).name} while writing external data"
    first = sparse_model(folder, "first.onnx", BIG_FLOATS, seed=1)
    output = os.path.join(folder, "pair.onnx")
    done = subprocess.run([tool(), first, "-o", output, "--pass-pipeline=dce", "--quiet",
                           "--external-data"], cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"{scenario}: the first run failed: {done.stderr}")
    second = sparse_model(folder, "second.onnx", BIG_FLOATS, seed=2)
    before = snapshot([output, output + ".data", second])
    status, _ = interrupt(folder, [second, "-o", output, "--pass-pipeline=dce", "--quiet",
                                   "--external-data"], ".pair.onnx.data.tmp.", sig)
    if status != -sig:
        fail(f"{scenario}: expected death by {signal.Signals(sig).name}, got exit status {status}")
    expect_unchanged(before, scenario)
    left = temporaries(folder)
    if sig == signal.SIGKILL:
        for name in left:
            os.remove(os.path.join(folder, name))
    elif left:
        fail(f"{scenario}: temporary files remain: {left}")
    check = subprocess.run([tool(), output, "-o", os.path.join(folder, "reloaded.onnx"),
                            "--pass-pipeline=dce", "--quiet", "--external-data"],
                           cwd=folder, capture_output=True, text=True)
    if check.returncode != 0:
        fail(f"{scenario}: the previous output no longer loads: {check.stderr}")
    print(f"{scenario}: ok")


def limit_file_size(limit):
    def apply():
        # As on a full disk, a write past the limit fails (EFBIG) instead of
        # killing the process with SIGXFSZ.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def check_file_size_limit(folder, external):
    scenario = "file size limit" + (" with external data" if external else "")
    output = os.path.join(folder, "limited.onnx")
    flags = ["--pass-pipeline=dce", "--quiet"]
    if external:
        # The 1 MiB initializer goes to the data file, which fits under the
        # limit. The 200 small ones stay in the model file, which does not.
        flags += ["--external-data", "--external-data-threshold=1048576"]
    first = many_initializers_model(folder, "many1.onnx", seed=1)
    done = subprocess.run([tool(), first, "-o", output] + flags, cwd=folder,
                          capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"{scenario}: the first run failed: {done.stderr}")
    second = many_initializers_model(folder, "many2.onnx", seed=2)
    watched = [output, second] + ([output + ".data"] if external else [])
    before = snapshot(watched)
    done = subprocess.run([tool(), second, "-o", output] + flags, cwd=folder,
                          capture_output=True, text=True,
                          preexec_fn=limit_file_size(4 * 1024 * 1024))
    if done.returncode != 1:
        fail(f"{scenario}: expected exit code 1, got {done.returncode}: {done.stderr}")
    for words in ("limited.onnx", "failed", "File too large", "unchanged"):
        if words not in done.stderr:
            fail(f"{scenario}: the message lacks '{words}': {done.stderr}")
    expect_unchanged(before, scenario)
    left = temporaries(folder)
    if left:
        fail(f"{scenario}: temporary files remain: {left}")
    print(f"{scenario}: ok")


def main():
    folder = sys.argv[1]
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        check_signal(folder, sig, previous_output=True)
    check_signal(folder, signal.SIGTERM, previous_output=False)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        check_external_pair_signal(folder, sig)
    check_file_size_limit(folder, external=False)
    check_file_size_limit(folder, external=True)
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
