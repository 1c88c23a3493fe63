"""Run Python in a fresh process: for work that needs a runtime this process cannot offer.

Two callers: the ``convert`` cross-check runs the original file in Keras 2 (``tf_keras`` cannot
share a process with Keras 3), and the fine-tune check runs in a TensorFlow runtime configured
for bit-reproducible training (thread settings fixed before TensorFlow starts, untouched by the
caller's own use of TensorFlow).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time


def run_python(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python ARGS`` with this interpreter, this process's import path, and TensorFlow's log quiet.

    The import path is passed on so that the child imports the same surgeon (a source checkout
    on ``sys.path`` included) and the same modules a caller's registered Keras classes live in.
    """
    path = os.pathsep.join(entry for entry in sys.path if entry)
    environment = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    # -P: the working directory does not go first on the child's path (``python -m`` would put it
    # there), so a stray keras.py or surgeon/ folder beside the user's files is not imported.
    return subprocess.run([sys.executable, "-P", *args], env=environment, capture_output=True, text=True)


def exit_with_parent(scratch: str | None = None, poll_seconds: float = 1.0) -> None:
    """In a child: exit when the parent dies (a SIGKILL or unhandled SIGTERM gives it no chance to
    stop us), instead of training on for minutes with nobody to report to; remove the parent's
    ``scratch`` directory, which the parent can no longer clean up."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        os._exit(3)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def last_error_line(done: subprocess.CompletedProcess) -> str:
    """The line of a failed child's stderr that says what went wrong (Python puts it last)."""
    lines = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {done.returncode}, no output"
