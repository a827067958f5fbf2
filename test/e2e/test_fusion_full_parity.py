#!/usr/bin/python3
"""Run the fusion parity checks on the full-size fixture model.

Generates the default-size model (12 layers, hidden 768, vocab 50000, about
500 MB) with encoder_output:0 exposed and runs test_fusion_parity's checks on
it: the fused structure of all 12 layers, and every output of the optimized
model against the original in ONNX Runtime and in roformer-run, with the
sequence fixed to 128 and symbolic. The mutations run on the small model
only, in test_fusion_parity.py.

    ROFORMER_BIN_DIR=build/bin /usr/bin/python3 test/e2e/test_fusion_full_parity.py

Needs onnxruntime-node (scripts/install-ort). Takes about 110 s here, and its
largest process peaks near 2 GB resident (/usr/bin/time on a 2-core machine).
Exits with 1 on a failed check.
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtureutil import generate_fixture  # noqa: E402
from ortutil import OrtRunError  # noqa: E402
from test_fusion_parity import (  # noqa: E402
    PARITY_TOLERANCE, CheckFailed, check, check_model, default_pipeline)


def main():
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fusion-full-parity-") as work_dir:
        work_dir = Path(work_dir)
        try:
            pipeline, appended = default_pipeline()
            if appended:
                print(f"NOTE: the default pipeline lacks {', '.join(appended)}; running it with "
                      f"them appended: {pipeline}")
            model = generate_fixture(work_dir / "full", "--encoder-output", "--no-samples")
            print(f"full-size model generated in {time.monotonic() - started:.1f} s")
            problems = check_model(model, work_dir, pipeline if appended else None, "full-size",
                                   mutations=False)
            check(not problems, "the optimized graphs differ from the fused structure:\n  " +
                  "\n  ".join(problems))
        except (CheckFailed, OrtRunError) as failure:
            print(f"FAIL: {failure}")
            return 1
    print(f"PASS: the fused full-size model matches the original within {PARITY_TOLERANCE:.0e} "
          f"({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
