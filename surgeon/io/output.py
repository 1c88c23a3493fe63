"""Atomic outputs: write to a temporary file beside the target, verify, then rename.

A failed verification, an exception or a SIGINT/SIGTERM leaves neither a partial nor an
unverified file behind, and an existing output is only replaced when the user said ``--force``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from typing import Iterator

from surgeon.errors import SurgeonError
from surgeon.io.files import format_for_output


def check_output_path(path: str, *, force: bool, inputs: tuple[str, ...] = ()) -> str:
    """Refuse a model output that cannot or should not be written; returns its format."""
    kind = format_for_output(path)
    check_target(path, force=force, inputs=inputs)
    return kind


def check_target(path: str, *, force: bool, inputs: tuple[str, ...] = ()) -> None:
    """Refuse any output path (model or data) that cannot or should not be written."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise SurgeonError(f"the output directory '{directory}' does not exist; create it first")
    for source in inputs:
        if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
            raise SurgeonError(f"the output '{path}' is an input file; surgeon never modifies its input: choose another -o")
    if os.path.isdir(path):
        raise SurgeonError(f"the output '{path}' is a directory; give a file name")
    if os.path.exists(path) and not force:
        raise SurgeonError(f"'{path}' already exists; pass --force to replace it")
    if not os.access(directory, os.W_OK):
        raise SurgeonError(f"cannot write to '{directory}': permission denied")


class PendingOutputs:
    """Temporary files for a set of outputs, committed together or not at all."""

    def __init__(self, targets: list[str]):
        self.targets = targets
        self.temporary: dict[str, str] = {}
        for target in targets:
            directory, name = os.path.split(os.path.abspath(target))
            stem, extension = os.path.splitext(name)
            # Same directory, so the final rename is atomic; same extension, since Keras'
            # save() picks the format from it.
            handle, temporary = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".surgeon-tmp{extension}", dir=directory)
            os.close(handle)
            os.unlink(temporary)
            self.temporary[target] = temporary

    def path(self, target: str) -> str:
        return self.temporary[target]

    def commit(self) -> None:
        for target in self.targets:
            os.replace(self.temporary[target], target)

    def discard(self) -> None:
        for temporary in self.temporary.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def pending_outputs(targets: list[str]) -> Iterator[PendingOutputs]:
    """Yield temporary paths; the caller calls ``commit()`` once everything is verified."""
    pending = PendingOutputs(targets)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: no handler, the finally below still cleans up
        pass
    try:
        yield pending
    finally:
        pending.discard()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
