"""Check that every lit input survives text -> binary -> text unchanged.

For each .onnxtxt file under the lit folder that roformer-opt can load
(files whose first RUN line expects a failure are skipped), the text printed
directly and the text printed after a binary round trip must be identical,
and parsing the printed text again must print the same text.
Usage: roundtrip_all.py LIT_DIR WORK_DIR
"""

import pathlib
import re
import subprocess
import sys


def run(args, stdin=None):
    return subprocess.run(["roformer-opt", *args, "--pass-pipeline=", "--quiet"],
                          input=stdin, capture_output=True, check=False)


def expects_failure(path):
    for line in path.read_text().splitlines():
        match = re.match(r"#\s*RUN:\s*(.*)", line)
        if match:
            return match.group(1).startswith("not ")
    return False


def main():
    lit_dir = pathlib.Path(sys.argv[1])
    work = pathlib.Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    checked = 0
    failures = []
    for path in sorted(lit_dir.rglob("*.onnxtxt")):
        if expects_failure(path):
            continue
        direct = run([str(path), "-S"])
        if direct.returncode != 0:
            failures.append(f"{path}: printing failed: {direct.stderr.decode()}")
            continue
        binary = work / "model.onnx"
        to_binary = run([str(path), "-o", str(binary)])
        back = run([str(binary), "-S"])
        reparsed = run(["-", "-S"], stdin=direct.stdout)
        if to_binary.returncode != 0 or back.stdout != direct.stdout:
            failures.append(f"{path}: text -> binary -> text differs from the direct print")
        if reparsed.returncode != 0 or reparsed.stdout != direct.stdout:
            failures.append(f"{path}: parsing the printed text does not print the same text")
        checked += 1
    for failure in failures:
        print(failure)
    print(f"round trip: {checked} files checked, {len(failures)} failed")
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
