#!/usr/bin/python3
"""Run a command that must fail cleanly, and check what it left behind.

Usage: check_failure.py [--watch FILE]... -- COMMAND [ARGUMENT...]

Passes (exit 0) when all of these hold:
  - the command exits with code 1 (not another code, not a signal);
  - every watched file has the same bytes, size, modification time and inode
    as before;
  - the command's `-o` output was neither created nor changed;
  - no temporary `.<name>.tmp.*` file is left beside that output.
Prints the command's stdout and stderr to stdout, so that FileCheck can check
the message.
"""
import hashlib
import os
import subprocess
import sys


def state(path):
    """The identity and content of `path`, or None when it does not exist."""
    if not os.path.lexists(path):
        return None
    info = os.stat(path)
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    return (info.st_ino, info.st_size, info.st_mtime_ns, digest)


def main():
    arguments = sys.argv[1:]
    if "--" not in arguments:
        sys.exit("usage: check_failure.py [--watch FILE]... -- COMMAND [ARGUMENT...]")
    split = arguments.index("--")
    options, command = arguments[:split], arguments[split + 1:]
    watched = [options[i + 1] for i, option in enumerate(options) if option == "--watch"]
    output = command[command.index("-o") + 1] if "-o" in command[:-1] else None
    if output is not None and output != "-":
        watched.append(output)
    before = {path: state(path) for path in watched}

    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sys.stdout.write(done.stdout.decode(errors="replace"))
    sys.stdout.flush()

    problems = []
    if done.returncode < 0:
        problems.append(f"the command was killed by signal {-done.returncode}")
    elif done.returncode != 1:
        problems.append(f"expected exit code 1, got {done.returncode}")
    for path, old in before.items():
        new = state(path)
        if new != old:
            what = "was created" if old is None else (
                "was removed" if new is None else "was modified")
            problems.append(f"'{path}' {what}")
    if output is not None and output != "-":
        folder = os.path.dirname(os.path.abspath(output)) or "."
        prefix = "." + os.path.basename(output)
        left = [name for name in os.listdir(folder)
                if name.startswith(prefix) and ".tmp." in name]
        if left:
            problems.append(f"temporary files remain: {left}")
    for problem in problems:
        print(f"check_failure: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
