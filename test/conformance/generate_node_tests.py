"""Write ONNX's backend test cases (model.onnx and .pb data) to a folder.

Usage: generate_node_tests.py OUTPUT_DIR

Runs onnx.backend.test.cmd_tools' generate-data command. Debian 12's numpy
1.24 no longer has the np.float, np.int, np.bool and np.object aliases that
ONNX 1.12's test cases use, so they are restored first.
"""
import sys

import numpy as np

np.float = float
np.int = int
np.bool = bool
np.object = object

from onnx.backend.test import cmd_tools  # noqa: E402  (needs the aliases above)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: generate_node_tests.py OUTPUT_DIR")
    sys.argv = [sys.argv[0], "generate-data", "-o", sys.argv[1]]
    cmd_tools.main()


if __name__ == "__main__":
    main()
