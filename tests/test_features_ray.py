"""`surgeon features --engine ray`: on a local Ray cluster with 2 workers, the single-process bytes.

One local Ray instance serves the whole session (``ray_cluster`` in conftest.py); a run given
``--address`` of it joins from a subprocess, as a user's job would join their cluster.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
pytest.importorskip("ray")
keras = pytest.importorskip("keras")
from typer.testing import CliRunner  # noqa: E402

from surgeon import open_features  # noqa: E402
from surgeon.cli import app  # noqa: E402
from surgeon.features import extract_features  # noqa: E402


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> tuple[Path, np.ndarray, list[int]]:
    """30 PNGs in 3 classes, some larger than the base's 16x16 input (so resizing is exercised)."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(11)
    pixels, labels = [], []
    for label, name in enumerate(["ant", "bee", "cat"]):
        (folder / name).mkdir()
        for index in range(10):
            size = 16 if index % 2 else 23
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            tf.io.write_file(str(folder / name / f"{index:02d}.png"), tf.io.encode_png(image))
            pixels.append(image)
            labels.append(label)
    return folder, pixels, labels


def test_ray_features_of_an_image_folder_are_the_single_process_bytes_and_labels(ray_cluster, nested_base, image_folder, tmp_path):
    folder, pixels, labels = image_folder
    single = tmp_path / "single.npy"
    extract_features(nested_base, str(folder), str(single), batch_size=4, progress=False)
    result = extract_features(nested_base, str(folder), str(tmp_path / "ray"), batch_size=4, shard_size=8, engine="ray", workers=2, progress=False)
    assert result.engine == "ray" and result.shards == 4 and result.class_names == ["ant", "bee", "cat"]
    features = open_features(tmp_path / "ray")
    assert np.asarray(features.array).tobytes() == np.load(single).tobytes()
    np.testing.assert_array_equal(np.asarray(features.labels), labels)
    np.testing.assert_array_equal(np.asarray(features.labels), np.load(tmp_path / "single_labels.npy"))
    assert features.class_names == ["ant", "bee", "cat"] and features.source(10) == (os.path.join("bee", "00.png"), 0)
    # Independent reference: Keras' own image loading (resizing the 23x23 ones), then the base.
    images = keras.utils.image_dataset_from_directory(folder, image_size=(16, 16), batch_size=None, shuffle=False)
    reference = np.stack([image.numpy() for image, _ in images])
    np.testing.assert_array_equal(reference[1], pixels[1])  # 16x16: the pixels themselves
    expected = np.asarray(keras.models.load_model(nested_base)(reference, training=False))
    np.testing.assert_allclose(np.asarray(features.array), expected, rtol=1e-6, atol=1e-5)


def test_ray_features_of_npy_shards_are_the_single_process_bytes(ray_cluster, nested_base, npy_shards, single_file_features, tmp_path):
    local = tmp_path / "local"
    extract_features(nested_base, str(npy_shards), str(local) + "/", batch_size=8, shard_size=32, progress=False)
    result = extract_features(nested_base, str(npy_shards), str(tmp_path / "ray"), batch_size=8, shard_size=32, engine="ray", workers=2, progress=False)
    assert result.shards == 5 and result.computed == 150
    assert np.asarray(open_features(tmp_path / "ray").array).tobytes() == np.load(single_file_features).tobytes()
    for name in sorted(os.listdir(local)):
        if name.startswith("part-"):
            assert (tmp_path / "ray" / name).read_bytes() == (local / name).read_bytes(), name


def test_a_killed_ray_run_resumes_without_recomputing_finished_shards(kill_midway_and_resume, ray_cluster, nested_base, npy_shards, single_file_features, tmp_path):
    report = kill_midway_and_resume(nested_base, npy_shards, single_file_features, tmp_path,
                                    ["--engine", "ray", "--workers", "2", "--address", ray_cluster])
    assert report["engine"] == "ray" and report["computed"] < 150


def test_a_corrupt_image_in_the_middle_is_named_and_its_shard_not_recorded(ray_cluster, nested_base, image_folder, tmp_path):
    folder = tmp_path / "images"
    for path in sorted(image_folder[0].rglob("*.png")):
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        (folder / path.parent.name / path.name).write_bytes(path.read_bytes())
    (folder / "bee" / "03.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))  # sample 13: shard 1 of 8-sample shards
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["features", nested_base, str(folder), "-o", str(out), "--engine", "ray",
                                      "--batch-size", "4", "--shard-size", "8", "--workers", "1", "--address", ray_cluster])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("surgeon: error")]  # beside the progress bar
    assert len(errors) == 1 and "bee/03.png" in errors[0] and "Invalid PNG" in errors[0] and "Op:" not in errors[0]
    recorded = {r["index"] for r in json.loads((out / "manifest.json").read_text())["shards"]}
    assert 1 not in recorded
    assert not [name for name in os.listdir(out) if name.startswith("part-000001")]


def test_without_ray_the_error_names_the_extra(nested_base, npy_shards, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = CliRunner().invoke(app, ["features", nested_base, str(npy_shards), "-o", str(tmp_path / "out"), "--engine", "ray"])
    assert result.exit_code == 2 and "pip install 'surgeon[ray]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_an_unreachable_address_is_one_line(nested_base, npy_shards, tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(app, ["features", nested_base, str(npy_shards), "-o", str(tmp_path / "out"), "--engine", "ray",
                                      "--address", f"127.0.0.1:{port}"])
    assert result.exit_code == 2 and f"cannot reach the Ray cluster at '127.0.0.1:{port}'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_ray_engine_writes_a_directory_not_an_npy(nested_base, npy_shards, tmp_path):
    result = CliRunner().invoke(app, ["features", nested_base, str(npy_shards), "-o", str(tmp_path / "f.npy"), "--engine", "ray"])
    assert result.exit_code == 2 and "directory of shards" in result.stderr
    assert not (tmp_path / "f.npy").exists()


@pytest.mark.parametrize("workers, started_here, expected", [(1, True, 4), (2, True, 2), (3, True, 1), (8, True, 1), (1, False, 1)])
def test_a_local_instance_divides_this_machines_cpus_among_the_workers(monkeypatch, workers, started_here, expected):
    """One worker on a 4-core machine computes with 4 threads, as the single process does; on a
    cluster (or an instance a caller started) each worker takes one CPU."""
    from surgeon.features import ray_engine

    stopped = []
    fake_ray = type("FakeRay", (), {"shutdown": staticmethod(lambda: stopped.append(True))})
    monkeypatch.setattr(ray_engine, "import_ray", lambda: fake_ray)  # the session's real cluster stays up
    monkeypatch.setattr(ray_engine, "_connect", lambda ray, address, count: started_here)
    monkeypatch.setattr(ray_engine, "machine_cpus", lambda: 4)
    with ray_engine.ray_session(None, workers) as cpus_per_worker:
        assert cpus_per_worker == expected
    assert stopped == ([True] if started_here else [])


def test_a_worker_sizes_tensorflows_thread_pool_to_its_cpus(tmp_path):
    """TensorFlow reads TF_NUM_INTRAOP_THREADS at its import, which happens in the worker."""
    import subprocess

    script = ("import os; os.environ.pop('TF_NUM_INTRAOP_THREADS', None)\n"
              "from surgeon.features.ray_engine import ShardWorker\n"
              f"worker = ShardWorker({str(tmp_path / 'missing.keras')!r}, 'x', 8, {str(tmp_path)!r}, ['y'], False, threads=3)\n"
              "print(os.environ['TF_NUM_INTRAOP_THREADS'], worker.model is None)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["3", "True"], done.stderr[-500:]
