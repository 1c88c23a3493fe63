"""No input hangs the ``surgeon`` command: a file that makes libhdf5 loop forever ends in exit 2.

``fixtures/hang_object_header.h5`` is the fuzz case that found the loop (``bench/fuzz_long.py
--seed 1 --first 4730 --save PATH`` writes it again). These tests run the real command line in a
child process, as a user would, with a short read deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import fixture_path

HANG = "hang_object_header.h5"
DEADLINE = 3.0
# Python start-up and imports on a loaded 2-core machine, on top of the deadline.
SLACK = 20.0
CLI = [sys.executable, "-c", "from surgeon.cli import main; main()"]


def run_cli(*args: str, cwd: str | None = None, timeout: float = DEADLINE + SLACK) -> tuple[subprocess.CompletedProcess, float]:
    environment = {**os.environ, "SURGEON_READ_TIMEOUT": str(DEADLINE)}
    start = time.monotonic()
    done = subprocess.run(CLI + list(args), capture_output=True, text=True, env=environment, cwd=cwd, timeout=timeout)
    return done, time.monotonic() - start


def test_hanging_hdf5_file_ends_in_exit_2_within_the_deadline():
    done, seconds = run_cli("inspect", fixture_path(HANG))
    assert done.returncode == 2, done.stderr
    assert seconds < DEADLINE + SLACK
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("surgeon: error: reading"), done.stderr
    assert "did not finish within 3 s" in lines[0] and "Traceback" not in done.stderr


def test_hanging_file_given_to_fold_bn_writes_nothing(tmp_path):
    done, _ = run_cli("fold-bn", fixture_path(HANG), "-o", str(tmp_path / "out.h5"))
    assert done.returncode == 2, done.stderr
    assert os.listdir(tmp_path) == []


def test_exit_codes_and_output_pass_through_the_watchdog(tmp_path):
    done, _ = run_cli("inspect", fixture_path("convbn.h5"), "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.lstrip().startswith("{")
    (tmp_path / "not_a_model.h5").write_text("hello")
    done, _ = run_cli("inspect", str(tmp_path / "not_a_model.h5"))
    assert done.returncode == 2 and done.stderr.startswith("surgeon: error:"), done.stderr


def test_sigterm_ends_a_command_stuck_in_libhdf5():
    """What `timeout` sends: the command ends (killed, no survivor) instead of waiting on the loop."""
    environment = {**os.environ, "SURGEON_READ_TIMEOUT": "600"}
    process = subprocess.Popen(CLI + ["inspect", fixture_path(HANG)], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(3.0)  # in the loop by now (start-up is about 1 s)
    assert process.poll() is None, "the fixture no longer hangs libhdf5; the test proves nothing"
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("SIGTERM did not end the command")
    assert code == -signal.SIGTERM
