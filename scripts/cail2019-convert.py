#!/usr/bin/python3
"""Convert a ByteMLPerf open_cail2019 folder into plain arrays for roformer-run.

The folder contains batch_token_ids.npy and batch_segment_ids.npy, NumPy object
arrays (pickles) with one variable-length list of ids per sequence, and
label.npy with one label per sequence. C++ cannot read pickles, so this script
writes them as one uncompressed .npz:

    token_ids    int64 [N, L]  right-padded with 0 to the longest sequence L
    segment_ids  int64 [N, L]  right-padded with 0
    lengths      int64 [N]     length of each sequence before padding
    labels       int64 [N]

Usage: /usr/bin/python3 scripts/cail2019-convert.py DIR OUT.npz
roformer-run --cail2019 DIR runs it itself. Exit code 0 on success, 1 with one
message on stderr on error.
"""

import os
import sys
import tempfile

import numpy as np

TOKEN_FILE = "batch_token_ids.npy"
SEGMENT_FILE = "batch_segment_ids.npy"
LABEL_FILE = "label.npy"


class ConversionError(Exception):
    """Invalid or missing data in the CAIL2019 folder."""


def load_lists(path):
    """Return the sequences of an object array of id lists as a list of int64 arrays."""
    if not os.path.isfile(path):
        raise ConversionError(f"{path} not found; a CAIL2019 folder contains {TOKEN_FILE}, "
                              f"{SEGMENT_FILE} and {LABEL_FILE}")
    try:
        array = np.load(path, allow_pickle=True)
    except (OSError, ValueError, EOFError) as error:
        raise ConversionError(f"cannot read {path}: {error}") from error
    if array.ndim == 2 and array.dtype != object:
        rows = list(array)  # already a rectangular array
    elif array.ndim == 1:
        rows = array.tolist()
    else:
        raise ConversionError(f"{path} has shape {array.shape}; expected one list of ids per "
                              "sequence")
    sequences = []
    for index, row in enumerate(rows):
        try:
            values = np.asarray(row)
        except ValueError as error:
            raise ConversionError(f"{path}: sequence {index} is not a list of ids") from error
        if values.ndim != 1:
            raise ConversionError(f"{path}: sequence {index} has shape {values.shape}, not a "
                                  "flat list of ids")
        if values.size and not np.issubdtype(values.dtype, np.number):
            raise ConversionError(f"{path}: sequence {index} contains {values.dtype} values, not ids")
        if values.size and not np.all(np.isfinite(values)):
            raise ConversionError(f"{path}: sequence {index} contains a NaN or infinite id")
        if values.size and not np.all(values == np.round(values)):
            raise ConversionError(f"{path}: sequence {index} contains a non-integer id")
        sequences.append(values.astype(np.int64))
    return sequences


def pad(sequences, length):
    batch = np.zeros((len(sequences), length), dtype=np.int64)
    for row, values in enumerate(sequences):
        batch[row, :len(values)] = values
    return batch


def convert(folder, output):
    tokens = load_lists(os.path.join(folder, TOKEN_FILE))
    segments = load_lists(os.path.join(folder, SEGMENT_FILE))
    label_path = os.path.join(folder, LABEL_FILE)
    if not os.path.isfile(label_path):
        raise ConversionError(f"{label_path} not found")
    labels = np.asarray(np.load(label_path, allow_pickle=True).tolist())

    if len(tokens) != len(segments):
        raise ConversionError(f"{TOKEN_FILE} has {len(tokens)} sequences but {SEGMENT_FILE} has "
                              f"{len(segments)}")
    if labels.ndim != 1 or len(labels) != len(tokens):
        raise ConversionError(f"{LABEL_FILE} has shape {labels.shape}; expected one label per "
                              f"sequence ({len(tokens)})")
    for index, (token_row, segment_row) in enumerate(zip(tokens, segments)):
        if len(token_row) != len(segment_row):
            raise ConversionError(f"sequence {index} has {len(token_row)} token ids but "
                                  f"{len(segment_row)} segment ids")
    if not tokens:
        raise ConversionError(f"{folder} contains no sequences")

    lengths = np.array([len(row) for row in tokens], dtype=np.int64)
    longest = int(lengths.max())
    arrays = {
        "token_ids": pad(tokens, longest),
        "segment_ids": pad(segments, longest),
        "lengths": lengths,
        "labels": labels.astype(np.int64),
    }
    # Write beside the target and rename, so a failure leaves no partial file.
    directory = os.path.dirname(os.path.abspath(output))
    handle, temporary = tempfile.mkstemp(prefix=".cail2019-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(temporary, output)
    except BaseException:
        os.unlink(temporary)
        raise


def main(argv):
    if len(argv) != 3:
        print("usage: cail2019-convert.py DIR OUT.npz", file=sys.stderr)
        return 1
    try:
        convert(argv[1], argv[2])
    except (ConversionError, OSError) as error:
        print(f"cail2019-convert: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
