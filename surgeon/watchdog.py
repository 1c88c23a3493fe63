"""A watchdog process, so that no input file can hang the ``surgeon`` command.

libhdf5 (1.14.6 under h5py 3.14) loops forever on some corrupted object headers (found by
``bench/fuzz_long.py --seed 1``, case 4730: ``fixtures/hang_object_header.h5``). The loop runs
inside the C library holding Python's GIL, so no Python thread, timer or signal handler of the
stuck process ever runs again. Only another process can stop it.

``install()`` (called by the CLI before anything is read) forks: the child runs the command as
usual; the parent only waits. Around each read of an input file the child *arms* the watchdog
through a pipe (``guarded``); if the read does not end in time, the parent kills the child,
prints the usual one-line error and exits 2. The parent forwards SIGTERM/SIGHUP to the child and
exits with the child's status, so to callers it is the same command. Library calls never fork:
without ``install()``, ``guarded`` does nothing.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import select
import signal
import sys
import time
from typing import Iterator

# Reading a healthy file takes well under a second per 100 MB once cached; a cold disk or a
# loaded machine is slower. The bound is generous: it only has to end a loop that never ends.
BASE_SECONDS = 30.0
SECONDS_PER_GB = 60.0
# After passing on a SIGTERM: how long the child has to clean up (temporary outputs) before it is
# killed; a child stuck in libhdf5 never runs its handler.
STOP_GRACE_SECONDS = 5.0
TIMEOUT_VARIABLE = "SURGEON_READ_TIMEOUT"  # seconds, overrides the bound (tests use a short one)

_pipe: int | None = None  # the child's write end; None when no watchdog runs


def read_deadline(path: str) -> float:
    """Seconds a read of ``path`` may take before it counts as a hang."""
    override = os.environ.get(TIMEOUT_VARIABLE)
    if override:
        return float(override)
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    return float(math.ceil(BASE_SECONDS + SECONDS_PER_GB * size / 1e9))


@contextlib.contextmanager
def guarded(path: str) -> Iterator[None]:
    """Run the body under the watchdog's deadline for reading ``path`` (no-op without a watchdog)."""
    if _pipe is None:
        yield
        return
    _send(f"arm {read_deadline(path)} {path}")
    try:
        yield
    finally:
        _send("disarm")


def _send(message: str) -> None:
    try:
        os.write(_pipe, (message.replace("\n", " ") + "\n").encode("utf-8", "replace"))
    except OSError:  # the parent is gone; nothing left to guard us
        pass


def install() -> None:
    """Fork the watchdog; returns in the child (which runs the command). The parent never returns.

    Call it before TensorFlow is imported (a fork copies only the calling thread) and only from
    a command-line entry point: the process that called it ends when the child does.
    """
    global _pipe
    if _pipe is not None or not hasattr(os, "fork") or os.environ.get("SURGEON_NO_WATCHDOG"):
        return
    read_end, write_end = os.pipe()
    # Objects the cyclic GC would visit are shared copy-on-write with the waiting parent;
    # frozen, the child's collections do not copy their pages.
    gc.freeze()
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        _pipe = write_end
        _end_with(parent)
        return
    os.close(write_end)
    os._exit(_watch(child, read_end))


def _end_with(parent: int) -> None:
    """In the child: get SIGTERM when the watchdog dies. A SIGKILL of the ``surgeon`` process a
    user or scheduler sees (the watchdog) gives it no chance to pass anything on, and the command
    must not go on writing unseen; SIGTERM lets it remove its temporary outputs (Linux only)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the child outlives a killed watchdog
        return
    if os.getppid() != parent:  # the watchdog died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _watch(child: int, pipe: int) -> int:
    """The parent: enforce deadlines until the child exits; return the exit status to pass on."""
    # The terminal sends Ctrl-C to the whole process group, so the child already gets it;
    # SIGTERM/SIGHUP (from `timeout`, a scheduler) name this process only: pass them on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def forward(signum, frame):
        _kill(child, signum)
        raise _Forwarded

    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, forward)
    # The child's exit ends the watch even if a process it forked still holds the pipe open.
    exited = os.pidfd_open(child) if hasattr(os, "pidfd_open") else None
    deadline, seconds, reading, buffer = None, "", "", b""
    stop_by = None  # set once a SIGTERM was passed on: a child stuck in libhdf5 cannot act on it
    while True:
        waits = [t for t in (deadline, stop_by) if t is not None]
        timeout = max(0.0, min(waits) - time.monotonic()) if waits else None
        try:
            ready, _, _ = select.select([pipe] + ([exited] if exited is not None else []), [], [], timeout)
        except _Forwarded:
            stop_by = time.monotonic() + STOP_GRACE_SECONDS
            continue
        if exited is not None and exited in ready:
            break
        if not ready and stop_by is not None and time.monotonic() >= stop_by:
            _kill(child, signal.SIGKILL)
            continue
        if not ready:  # the read is past its deadline: the child is stuck inside libhdf5
            _kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            sys.stderr.write(
                f"surgeon: error: reading '{reading}' did not finish within {float(seconds):g} s: the file is "
                "damaged in a way that makes libhdf5 loop forever; save or download it again\n"
            )
            sys.stderr.flush()
            return 2
        chunk = os.read(pipe, 4096)
        if not chunk:  # the child closed the pipe: it has exited (or exec'd, which closes it too)
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            word, _, rest = line.decode("utf-8", "replace").partition(" ")
            if word == "arm":
                seconds, _, reading = rest.partition(" ")
                deadline = time.monotonic() + float(seconds)
            elif word == "disarm":
                deadline = None
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    return os.waitstatus_to_exitcode(status)


class _Forwarded(Exception):
    """Raised by the parent's SIGTERM/SIGHUP handler to wake its wait."""


def _kill(child: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, number)
