#!/usr/bin/python3
"""Run a model above protobuf's 2 GiB limit through roformer-opt.

The input keeps a 2.2 GB initializer in an external data file that is sparse
(all zeros but two marker values), so it costs almost no disk. roformer-opt
must load it, run the default pipeline and `--pass-pipeline=dce`, and write
the result with external data on its own (no --external-data flag), since a
single protobuf file cannot hold it. The output is checked with ONNX's
checker and by loading it again with roformer-opt, and the marker values
must sit at the offsets the output declares.

    ROFORMER_BIN_DIR=build/bin /usr/bin/python3 test/e2e/test_large_model.py

Each output writes 2.2 GB of real data, so the test needs about 5 GB of free
disk in the temporary folder and takes a minute or more. ctest labels it
`slow`, and only `scripts/check --slow` runs it. Exits with 1 on a failed
check.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# 2.2 GB of float32, above the 2 GiB (2147483648 bytes) protobuf limit.
BIG_ELEMENTS = 550_000_000
BIG_BYTES = BIG_ELEMENTS * 4
FIRST_MARKER = 1.5
LAST_MARKER = -2.5
# Two outputs of BIG_BYTES each may exist at once, plus some slack.
REQUIRED_FREE_BYTES = 2 * BIG_BYTES + (512 << 20)


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def tool(name):
    folder = os.environ.get("ROFORMER_BIN_DIR")
    path = Path(folder) / name if folder else shutil.which(name)
    check(path is not None and Path(path).exists(),
          f"{name} not found; set ROFORMER_BIN_DIR to the build's bin folder")
    return str(path)


def write_large_model(folder):
    """Write large.onnx: y = x + big (2.2 GB, external), z = small_x * scale."""
    data_path = folder / "big.weights"
    with open(data_path, "wb") as data:
        data.truncate(BIG_BYTES)
        data.write(np.array([FIRST_MARKER], np.float32).tobytes())
        data.seek(BIG_BYTES - 4)
        data.write(np.array([LAST_MARKER], np.float32).tobytes())
    big = TensorProto(name="model/big:0", data_type=TensorProto.FLOAT, dims=[BIG_ELEMENTS],
                      data_location=TensorProto.EXTERNAL)
    for key, value in (("location", data_path.name), ("offset", "0"),
                       ("length", str(BIG_BYTES))):
        entry = big.external_data.add()
        entry.key, entry.value = key, value
    scale = numpy_helper.from_array(np.array([0.5, 2.0, -1.0, 4.0], np.float32), "model/scale:0")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x:0", "model/big:0"], ["y:0"], name="model/Add"),
         helper.make_node("Mul", ["small_x:0", "model/scale:0"], ["z:0"], name="model/Mul")],
        "tf2onnx",
        [helper.make_tensor_value_info("x:0", TensorProto.FLOAT, [BIG_ELEMENTS]),
         helper.make_tensor_value_info("small_x:0", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y:0", TensorProto.FLOAT, [BIG_ELEMENTS]),
         helper.make_tensor_value_info("z:0", TensorProto.FLOAT, [4])],
        [big, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="tf2onnx")
    model.ir_version = 8
    path = folder / "large.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def external_entries(tensor):
    return {entry.key: entry.value for entry in tensor.external_data}


def check_output(output, label):
    """Check that `output` keeps the big initializer in its data file."""
    data_path = output.parent / (output.name + ".data")
    check(data_path.exists(), f"{label}: no external data file {data_path.name} was written")
    check(output.stat().st_size < (1 << 20),
          f"{label}: {output.name} has {output.stat().st_size} bytes; the weights should be in "
          "the data file")

    model = onnx.load(str(output), load_external_data=False)
    big = [t for t in model.graph.initializer if t.dims == [BIG_ELEMENTS]]
    check(len(big) == 1, f"{label}: expected one initializer of {BIG_ELEMENTS} elements, "
          f"found {len(big)}")
    big = big[0]
    check(big.data_location == TensorProto.EXTERNAL,
          f"{label}: the large initializer is not stored as external data")
    entries = external_entries(big)
    check(entries.get("location") == data_path.name,
          f"{label}: location is {entries.get('location')!r}, expected {data_path.name!r}")
    offset = int(entries.get("offset", "0"))
    length = int(entries.get("length", "-1"))
    check(length == BIG_BYTES, f"{label}: length is {length}, expected {BIG_BYTES}")
    check(offset % 64 == 0, f"{label}: offset {offset} is not 64-byte aligned")
    check(offset + length <= data_path.stat().st_size,
          f"{label}: [{offset}, {offset + length}) runs past the data file "
          f"({data_path.stat().st_size} bytes)")

    with open(data_path, "rb") as data:
        data.seek(offset)
        first = np.frombuffer(data.read(4), np.float32)[0]
        data.seek(offset + 4 * 1000)
        middle = np.frombuffer(data.read(4), np.float32)[0]
        data.seek(offset + length - 4)
        last = np.frombuffer(data.read(4), np.float32)[0]
    check(first == FIRST_MARKER, f"{label}: first element is {first}, expected {FIRST_MARKER}")
    check(middle == 0.0, f"{label}: element 1000 is {middle}, expected 0")
    check(last == LAST_MARKER, f"{label}: last element is {last}, expected {LAST_MARKER}")

    small = [t for t in model.graph.initializer if t.name.endswith("scale:0")]
    check(len(small) == 1 and small[0].data_location != TensorProto.EXTERNAL,
          f"{label}: the 16-byte initializer should stay inline (below the 1024-byte threshold)")

    # ONNX's checker, given the path, checks that external data files exist.
    onnx.checker.check_model(str(output))


def run_opt(arguments, label):
    started = time.monotonic()
    done = subprocess.run([tool("roformer-opt")] + arguments + ["--quiet"],
                          capture_output=True, text=True)
    seconds = time.monotonic() - started
    check(done.returncode == 0,
          f"{label}: roformer-opt exited with {done.returncode}: {done.stderr.strip()}")
    print(f"{label}: ok ({seconds:.1f} s)")


def main():
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="roformer-large-") as work_dir:
        work_dir = Path(work_dir)
        free = shutil.disk_usage(work_dir).free
        check(free >= REQUIRED_FREE_BYTES,
              f"{work_dir} has {free >> 20} MiB free; the test needs "
              f"{REQUIRED_FREE_BYTES >> 20} MiB (set TMPDIR to a larger disk)")
        model = write_large_model(work_dir)

        for label, pipeline in (("default pipeline", []), ("dce", ["--pass-pipeline=dce"])):
            output = work_dir / "out" / "optimized.onnx"
            output.parent.mkdir(exist_ok=True)
            run_opt([str(model), "-o", str(output)] + pipeline, label)
            check_output(output, label)
            # The output loads again, with its data resolved beside it.
            reloaded = work_dir / "out" / "reloaded.onnx"
            run_opt([str(output), "-o", str(reloaded), "--pass-pipeline=dce"], f"{label}, reload")
            check_output(reloaded, f"{label}, reload")
            shutil.rmtree(output.parent)
    print(f"large model: passed in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as failure:
        print(f"FAILED: {failure}")
        sys.exit(1)
