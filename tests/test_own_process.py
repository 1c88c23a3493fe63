"""The CLI's process moves TensorFlow's objects out of the garbage collector's sight once it imports
TensorFlow; a library caller's process is left as it was."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc, sys
from surgeon.io import keras_model
if sys.argv[1] == "cli":
    keras_model.own_process()
keras_model.quiet_tensorflow()
print(gc.get_freeze_count())
"""


def frozen_after_import(role: str) -> int:
    done = subprocess.run([sys.executable, "-c", SCRIPT, role], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-500:]
    return int(done.stdout.split()[-1])


def test_the_cli_freezes_what_tensorflow_leaves_and_a_library_caller_does_not():
    assert frozen_after_import("cli") > 100_000  # TensorFlow and Keras leave ~1M objects
    assert frozen_after_import("library") == 0
