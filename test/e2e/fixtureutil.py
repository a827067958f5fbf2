"""Generate fixture models and load their sample sets in end-to-end tests.

    from fixtureutil import generate_fixture, load_padded_samples
    model = generate_fixture(tmp_dir, "--small", "--encoder-output")
    tokens, segments = load_padded_samples(tmp_dir / "open_cail2019", count=4, length=128)
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_FILE = "roformer-frozen_org.onnx"
SAMPLES_DIR = "open_cail2019"


def fixture_script():
    return Path(os.environ.get(
        "ROFORMER_FIXTURE", REPO_ROOT / "tools" / "roformer-fixture" / "roformer_fixture.py"))


def generate_fixture(output_dir, *flags, timeout_s=600):
    """Run the fixture generator into output_dir with flags and return the model path."""
    command = [sys.executable, str(fixture_script()), "-o", str(output_dir), "--quiet", *flags]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if completed.returncode != 0:
        raise RuntimeError(
            f"fixture generator failed (exit code {completed.returncode}): {' '.join(command)}\n"
            f"{completed.stderr.strip()}")
    return Path(output_dir) / MODEL_FILE


def load_samples(samples_dir):
    """Return (token lists, segment lists, labels) as ByteMLPerf's loader reads them."""
    samples_dir = Path(samples_dir)
    tokens = np.load(samples_dir / "batch_token_ids.npy", allow_pickle=True).tolist()
    segments = np.load(samples_dir / "batch_segment_ids.npy", allow_pickle=True).tolist()
    labels = np.load(samples_dir / "label.npy", allow_pickle=True).tolist()
    return tokens, segments, labels


def pad_to(lists, length):
    """Right-pad int lists with 0 to [len(lists), length] float32, the form the export takes."""
    batch = np.zeros((len(lists), length), dtype=np.float32)
    for row, values in enumerate(lists):
        if len(values) > length:
            raise ValueError(f"sequence {row} has {len(values)} tokens, more than the padded length {length}")
        batch[row, :len(values)] = values
    return batch


def load_padded_samples(samples_dir, count, length, start=0):
    """Return the float32 token and segment batches of sequences start .. start+count-1."""
    tokens, segments, _ = load_samples(samples_dir)
    selected = slice(start, start + count)
    return pad_to(tokens[selected], length), pad_to(segments[selected], length)
