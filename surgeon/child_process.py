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
    """``python ARGS`` run to its end, output captured (see ``start_python``)."""
    return subprocess.run(_command(args), env=_environment(env), capture_output=True, text=True)


def start_python(args: list[str], env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """``python ARGS`` started: this interpreter, this process's import path, TensorFlow's log quiet.

    The import path is passed on so that the child imports the same surgeon (a source checkout
    on ``sys.path`` included) and the same modules a caller's registered Keras classes live in.
    """
    return subprocess.Popen(_command(args), env=_environment(env), **popen)


def _command(args: list[str]) -> list[str]:
    # -P: the working directory does not go first on the child's path (``python -m`` would put it
    # there), so a stray keras.py or surgeon/ folder beside the user's files is not imported.
    return [sys.executable, "-P", *args]


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    path = os.pathsep.join(entry for entry in sys.path if entry)
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}


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


def last_error_line(stderr: str | None, returncode: int | None = None) -> str:
    """The line of a failed child's stderr that says what went wrong (Python puts it last)."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {returncode}, no output"
