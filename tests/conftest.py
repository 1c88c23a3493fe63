"""Shared test fixtures: paths of the bundled model files and models loaded once per session."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture_path(name: str) -> str:
    """``fixture_path("nested.h5")`` -> absolute path of a bundled fixture."""
    path = FIXTURES / name
    assert path.exists(), f"missing fixture {path}; run python fixtures/make_fixtures.py"
    return str(path)


@functools.lru_cache(maxsize=None)
def plain_model(name: str):
    """A fixture loaded once with plain ``keras.models.load_model`` (the independent reference)."""
    import keras

    return keras.models.load_model(fixture_path(name), compile=False)


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


def _descendants(pid: int) -> set[int]:
    """Live processes below ``pid`` (from /proc: no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="session")
def ray_cluster():
    """One small local Ray instance for the whole test session; its address, for subprocesses.

    2 CPUs, a 200 MB object store, no dashboard, logs in a temporary directory. At the end it is
    shut down and every process it started must be gone (within 30 s).
    """
    import shutil
    import tempfile
    import time

    ray = pytest.importorskip("ray")
    before = _descendants(os.getpid())
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False,
             _temp_dir=temp_dir, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        started = _descendants(os.getpid()) - before
        ray.shutdown()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [pid for pid in started if _alive(pid)]
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray left processes behind: {left}"


# --- surgeon features: a base, data in shards, today's single-file result ------------------------


@pytest.fixture(scope="session")
def nested_base(tmp_path_factory) -> str:
    """The base `surgeon split` makes of fixtures/nested.keras (16x16x3 in, 8x8x16 out)."""
    from surgeon.split import split_file

    result = split_file(fixture_path("nested.keras"), directory=str(tmp_path_factory.mktemp("nested_parts")))
    assert result.passed
    return result.base


@pytest.fixture(scope="session")
def samples():
    import numpy as np

    return np.random.default_rng(7).uniform(0, 255, size=(150, 16, 16, 3)).astype("float32")


@pytest.fixture(scope="session")
def npy_shards(samples, tmp_path_factory) -> Path:
    """The samples cut into .npy files of uneven sizes, named so that sorting by name gives their order."""
    import numpy as np

    folder = tmp_path_factory.mktemp("npy_shards")
    for index, (start, stop) in enumerate([(0, 37), (37, 40), (40, 121), (121, 150)]):
        np.save(folder / f"chunk_{index:02d}.npy", samples[start:stop])
    return folder


@pytest.fixture(scope="session")
def single_file_features(nested_base, samples, tmp_path_factory) -> Path:
    """Today's path: the whole array in, one .npy out (batch 8)."""
    import numpy as np

    from surgeon.features import extract_features

    folder = tmp_path_factory.mktemp("single")
    np.save(folder / "x.npy", samples)
    extract_features(nested_base, str(folder / "x.npy"), str(folder / "f.npy"), batch_size=8, progress=False)
    return folder / "f.npy"


def file_identity(path: Path) -> tuple[int, int]:
    """(inode, mtime): a file replaced by a rename or rewritten gets another."""
    status = path.stat()
    return status.st_ino, status.st_mtime_ns


@pytest.fixture
def kill_midway_and_resume():
    return _kill_midway_and_resume


def _kill_midway_and_resume(base: str, data: Path, reference: Path, tmp_path: Path, engine_args: list[str]) -> dict:
    """SIGKILL a `surgeon features` process once its manifest records 2 shards, then run it again
    (in this process, which saves a second TensorFlow start-up).

    Returns the resumed run's JSON report. Shards recorded before the kill must keep their inode
    and mtime (not recomputed); the result must be the uninterrupted run's bytes.
    """
    import signal
    import subprocess
    import sys
    import time

    import numpy as np

    from surgeon import open_features

    out = tmp_path / "killed"
    command = [sys.executable, "-c", "from surgeon.cli import main; main()", "features", base, str(data), "-o", str(out) + "/",
               "--batch-size", "8", "--shard-size", "8", *engine_args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FIXTURES.parent), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    recorded = []
    deadline = time.monotonic() + 240
    while len(recorded) < 2 and process.poll() is None and time.monotonic() < deadline:
        recorded = _recorded(out)
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    recorded = _recorded(out)
    assert 2 <= len(recorded) < 19, f"not killed midway: {len(recorded)} of 19 shards recorded"
    kept = {r["files"]["base_pool"]: file_identity(out / r["files"]["base_pool"]) for r in recorded}

    from typer.testing import CliRunner

    from surgeon.cli import app

    again = CliRunner().invoke(app, command[3:] + ["--json"])
    assert again.exit_code == 0, again.output[-2000:]
    report = json.loads(again.stdout)
    assert report["shards"] == 19 and report["shards_resumed"] >= len(recorded)
    assert {name: file_identity(out / name) for name in kept} == kept
    assert np.asarray(open_features(out).array).tobytes() == np.load(reference).tobytes()
    assert not [name for name in os.listdir(out) if name.endswith(".surgeon-tmp")]
    return report


def _recorded(out: Path) -> list[dict]:
    try:
        return json.loads((out / "manifest.json").read_text())["shards"]
    except (OSError, ValueError):  # not created yet
        return []


