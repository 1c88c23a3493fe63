"""Atomic, verified writes: an interrupt, a crash or a failed check leaves no output and the input intact.

Interrupts are made deterministic without test hooks in surgeon: a child process replaces
``surgeon.rewrite.write_model`` by a writer that writes the (temporary) file, prints its path and
sleeps; the test kills the child while it sleeps, i.e. after the data is on disk but before it was
verified and renamed. SIGKILL cannot be caught by any process: the output path must still not
exist, but the temporary file (``.<stem>.*.surgeon-tmp.<ext>`` beside the output) may remain.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import fixture_path

SOURCE = "convbn.h5"

# Writes, announces, waits to be killed. Output .h5 with verification off: no TensorFlow import.
CHILD = textwrap.dedent(
    """
    import signal, sys, time
    import surgeon.rewrite as rewrite

    # A shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt; the test is about surgeon's cleanup, so the child gets the default.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    real_write = rewrite.write_model

    def write_then_wait(spec, path, **kwargs):
        real_write(spec, path, **kwargs)
        print("WRITTEN", path, flush=True)
        time.sleep(120)

    rewrite.write_model = write_then_wait
    if sys.argv[1] == "library":
        rewrite.rewrite_file(sys.argv[2], sys.argv[3], [], verify=rewrite.VerifyOptions(enabled=False))
    else:
        from surgeon.cli import app
        app(sys.argv[2:], prog_name="surgeon")
    """
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "model.h5"
    shutil.copyfile(fixture_path(SOURCE), path)
    return path


def kill_mid_write(argv: list[str], sig: signal.Signals, cwd: Path) -> tuple[subprocess.CompletedProcess, Path]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, *argv], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.startswith("WRITTEN"), (line, child.stderr.read() if child.poll() is not None else "")
        temporary = Path(line.split(" ", 1)[1].strip())
        assert temporary.exists(), "the writer should have written its temporary file"
        child.send_signal(sig)
        stdout, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess(argv, child.returncode, stdout, stderr), temporary


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_after_the_write_leaves_no_output_no_temporary_and_the_input_intact(sig, source, tmp_path):
    before = sha256(source)
    output = tmp_path / "out.h5"
    result, temporary = kill_mid_write(["library", str(source), str(output)], sig, tmp_path)
    assert result.returncode != 0
    assert not output.exists()
    assert not temporary.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.h5"]
    assert sha256(source) == before


def test_sigkill_after_the_write_never_leaves_a_file_at_the_output_path(source, tmp_path):
    before = sha256(source)
    output = tmp_path / "out.h5"
    result, temporary = kill_mid_write(["library", str(source), str(output)], signal.SIGKILL, tmp_path)
    assert result.returncode == -signal.SIGKILL
    assert not output.exists()
    # Nothing can clean up after SIGKILL; the leftover is a hidden, clearly named temporary file.
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "model.h5"]
    assert all(name.startswith(".out.") and ".surgeon-tmp" in name for name in leftovers), leftovers
    assert sha256(source) == before


def test_the_cli_reports_an_interrupt_in_one_line_with_exit_130(source, tmp_path):
    from surgeon.cli import app
    import typer

    commands = typer.main.get_command(app).commands
    name = next((n for n in ("freeze", "fold-bn", "prepare", "convert") if n in commands), None)
    if name is None:
        pytest.skip("no rewriting command registered yet")
    output = tmp_path / "out.h5"
    result, temporary = kill_mid_write(["cli", name, str(source), "-o", str(output), "--no-verify"], signal.SIGTERM, tmp_path)
    assert result.returncode == 130, result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == ["surgeon: error: interrupted; nothing was written"]
    assert not output.exists() and not temporary.exists()


def test_an_exception_mid_write_leaves_nothing(source, tmp_path, monkeypatch):
    import surgeon.rewrite as rewrite

    def half_write(spec, path, **kwargs):
        Path(path).write_bytes(b"\x89HDF\r\n\x1a\n partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rewrite, "write_model", half_write)
    with pytest.raises(OSError):
        rewrite.rewrite_file(str(source), str(tmp_path / "out.h5"), [], verify=rewrite.VerifyOptions(enabled=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.h5"]


def test_a_failed_verification_leaves_nothing(source, tmp_path, monkeypatch):
    import surgeon.rewrite as rewrite
    from surgeon.verify import VerifyReport

    checked = []

    def failing_check(original, candidate_path, options, **kwargs):
        checked.append(os.path.exists(candidate_path))
        return VerifyReport(False, [], 0, options.atol, options.rtol, problem="outputs differ")

    monkeypatch.setattr(rewrite, "verify_against", failing_check)
    result = rewrite.rewrite_file(str(source), str(tmp_path / "out.h5"), [])
    assert checked == [True], "verification must see the written file"
    assert result.output is None and not result.passed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.h5"]


def test_an_existing_output_is_kept_unless_forced(source, tmp_path):
    from surgeon.errors import SurgeonError
    from surgeon.rewrite import VerifyOptions, rewrite_file

    output = tmp_path / "out.h5"
    output.write_bytes(b"precious")
    with pytest.raises(SurgeonError, match="--force"):
        rewrite_file(str(source), str(output), [], verify=VerifyOptions(enabled=False))
    assert output.read_bytes() == b"precious"
    rewrite_file(str(source), str(output), [], force=True, verify=VerifyOptions(enabled=False))
    assert output.read_bytes().startswith(b"\x89HDF")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.h5", "out.h5"]


def test_the_output_may_never_be_the_input(source):
    from surgeon.errors import SurgeonError
    from surgeon.rewrite import VerifyOptions, rewrite_file

    before = sha256(source)
    with pytest.raises(SurgeonError, match="input"):
        rewrite_file(str(source), str(source), [], force=True, verify=VerifyOptions(enabled=False))
    assert sha256(source) == before
