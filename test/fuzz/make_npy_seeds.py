#!/usr/bin/python3
"""Write small .npy and .npz files covering the reader's branches, as seeds
for fuzz-npy.

Usage: make_npy_seeds.py FOLDER
"""
import io
import os
import sys

import numpy as np


def seeds():
    """Yield (file name, bytes) pairs."""
    arrays = {
        "f32_2x3": np.arange(6, dtype="<f4").reshape(2, 3),
        "f64_scalar": np.array(2.5, dtype="<f8"),
        "i64_ids": np.array([[101, 2769, 102, 0]], dtype="<i8"),
        "i32_big_endian": np.array([1, -2, 3], dtype=">i4"),
        "u8": np.array([0, 255], dtype="u1"),
        "bool": np.array([True, False, True]),
        "f16": np.array([0.5, -1.0], dtype="<f2"),
        "c64": np.array([1 + 2j], dtype="<c8"),
        "empty": np.zeros((0, 4), dtype="<f4"),
        "fortran": np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)),
        "u16_3d": np.arange(8, dtype="<u2").reshape(2, 2, 2),
    }
    for name, array in arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, array)
        yield f"{name}.npy", buffer.getvalue()

    # Header format versions 2.0 and 3.0 (4-byte header length).
    for version in ((2, 0), (3, 0)):
        buffer = io.BytesIO()
        array = np.arange(4, dtype="<i2")
        np.lib.format.write_array(buffer, array, version=version)
        yield f"version{version[0]}.npy", buffer.getvalue()

    # An object array, which the reader rejects.
    buffer = io.BytesIO()
    np.save(buffer, np.array([1, "a"], dtype=object), allow_pickle=True)
    yield "object.npy", buffer.getvalue()

    buffer = io.BytesIO()
    np.savez(buffer, input_token=arrays["i64_ids"], input_segment=np.zeros((1, 4), "<i8"))
    yield "stored.npz", buffer.getvalue()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, scores=arrays["f32_2x3"])
    yield "deflate.npz", buffer.getvalue()


def main():
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(folder, name), "wb") as out:
            out.write(data)


if __name__ == "__main__":
    main()
