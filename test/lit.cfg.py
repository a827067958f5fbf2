# lit configuration for the text-format tests under test/lit/.
import os

import lit.formats

config.name = "roformer-opt"
config.test_format = lit.formats.ShTest(execute_external=True)
config.suffixes = [".onnxtxt", ".test"]
config.test_source_root = os.path.join(config.roformer_source_dir, "test", "lit")
config.test_exec_root = os.path.join(os.path.dirname(config.roformer_bin_dir), "test", "lit")
config.excludes = ["Inputs"]

# The tools under test come first on PATH, then LLVM's FileCheck, not and count.
config.environment["PATH"] = os.pathsep.join(
    [config.roformer_bin_dir, config.llvm_tools_dir, config.environment.get("PATH", "")])

config.substitutions.append(("%python", config.python))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "Inputs")))
