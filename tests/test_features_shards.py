"""A directory of feature shards + manifest: same bytes as one file, read back in sample order, resumable."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
from typer.testing import CliRunner  # noqa: E402

from surgeon import open_features  # noqa: E402
from surgeon.cli import app  # noqa: E402
from surgeon.errors import SurgeonError  # noqa: E402
from surgeon.features import extract_features  # noqa: E402
from surgeon.features.store import ShardedArray  # noqa: E402
from conftest import file_identity  # noqa: E402



def test_a_directory_of_npy_shards_gives_the_bytes_of_the_single_file_run_in_sample_order(nested_base, npy_shards, single_file_features, samples, tmp_path):
    result = extract_features(nested_base, str(npy_shards), str(tmp_path / "out") + "/", batch_size=8, shard_size=20, progress=False)
    assert result.layout == "directory" and result.shards == 7 and result.count == 150  # 20 rounds up to 24 = 3 batches
    features = open_features(tmp_path / "out")
    assert isinstance(features.array, ShardedArray) and features.array.shape == (150, 8, 8, 16)
    assert np.asarray(features.array).tobytes() == np.load(single_file_features).tobytes()
    # Independent reference: Keras on the whole array.
    expected = np.asarray(keras.models.load_model(nested_base)(samples, training=False))
    np.testing.assert_allclose(np.asarray(features.array), expected, rtol=1e-6, atol=1e-6)
    assert features.source(0) == ("chunk_00.npy", 0)
    assert features.source(39) == ("chunk_01.npy", 2)
    assert features.source(40) == ("chunk_02.npy", 0)
    assert features.source(149) == ("chunk_03.npy", 28)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["features"] == {"base_pool": {"shape": [150, 8, 8, 16], "dtype": "float32"}}
    assert [(r["start"], r["stop"]) for r in manifest["shards"]] == [(0, 24), (24, 48), (48, 72), (72, 96), (96, 120), (120, 144), (144, 150)]


def test_open_features_reads_todays_single_npy_and_npz_alike(single_file_features, tmp_path):
    features = open_features(single_file_features)
    assert list(features) == ["f"] and isinstance(features.array, np.memmap) and features.labels is None
    np.savez(tmp_path / "two.npz", a=np.arange(6).reshape(3, 2), b=np.arange(3))
    pair = open_features(tmp_path / "two.npz")
    assert sorted(pair) == ["a", "b"] and pair.count == 3
    np.testing.assert_array_equal(pair["a"], np.arange(6).reshape(3, 2))
    with pytest.raises(KeyError, match="pick one of"):
        pair.array


@pytest.mark.parametrize("index", [0, 5, -1, slice(None), slice(3, 17), slice(10, 2, -3), slice(None, None, 4), [0, 16, 3, 3, -2],
                                   (slice(2, 12), 1), np.arange(20) % 3 == 0])
def test_a_sharded_array_indexes_like_the_array_it_stands_for(index):
    whole = np.arange(20 * 3, dtype="float32").reshape(20, 3)
    sharded = ShardedArray([whole[0:7], whole[7:8], whole[8:20]])
    np.testing.assert_array_equal(sharded[index], whole[index])
    np.testing.assert_array_equal(np.asarray(sharded), whole)
    assert len(sharded) == 20 and sharded.shape == whole.shape


def test_a_resumed_directory_run_computes_only_the_shards_its_manifest_lacks(nested_base, npy_shards, single_file_features, tmp_path):
    out = tmp_path / "out"
    extract_features(nested_base, str(npy_shards), str(out) + "/", batch_size=8, shard_size=24, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    # As if the run had died after shard 3: the last two records gone, one of their files too.
    lost = manifest["shards"][4:]
    manifest["shards"] = manifest["shards"][:4]
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / lost[0]["files"]["base_pool"]).unlink()
    kept = {r["files"]["base_pool"]: file_identity(out / r["files"]["base_pool"]) for r in manifest["shards"]}
    result = extract_features(nested_base, str(npy_shards), str(out), batch_size=8, shard_size=24, progress=False)
    assert result.shards_resumed == 4 and result.computed == 150 - 96
    assert {name: file_identity(out / name) for name in kept} == kept
    assert np.asarray(open_features(out).array).tobytes() == np.load(single_file_features).tobytes()


def test_a_killed_single_process_run_resumes_with_the_same_bytes(kill_midway_and_resume, nested_base, npy_shards, single_file_features, tmp_path):
    kill_midway_and_resume(nested_base, npy_shards, single_file_features, tmp_path, ["--engine", "local"])


# --- refusals ------------------------------------------------------------------------------------


def test_a_directory_made_from_another_base_is_refused_and_force_starts_over(nested_base, npy_shards, tmp_path):
    out = tmp_path / "out"
    extract_features(nested_base, str(npy_shards), str(out) + "/", batch_size=8, progress=False)
    other = tmp_path / "other_base.keras"
    model = keras.models.load_model(nested_base)
    model.set_weights([w + 1 for w in model.get_weights()])
    model.save(other)
    (out / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["features", str(other), str(npy_shards), "-o", str(out)])
    assert result.exit_code == 2 and "another base file" in result.stderr and "--force" in result.stderr
    before = np.asarray(open_features(out).array)
    result = CliRunner().invoke(app, ["features", str(other), str(npy_shards), "-o", str(out), "--force", "--json"])
    assert result.exit_code == 0, result.output
    assert not np.array_equal(np.asarray(open_features(out).array), before)
    assert (out / "notes.txt").read_text() == "mine"  # --force removes only what a run writes


def test_a_non_empty_directory_without_manifest_is_refused(nested_base, npy_shards, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("keep")
    result = CliRunner().invoke(app, ["features", nested_base, str(npy_shards), "-o", str(tmp_path / "out"), "--force"])
    assert result.exit_code == 2 and "no manifest.json" in result.stderr
    assert os.listdir(tmp_path / "out") == ["keep.txt"]


def test_open_features_refuses_an_incomplete_directory(nested_base, npy_shards, tmp_path):
    out = tmp_path / "out"
    extract_features(nested_base, str(npy_shards), str(out) + "/", batch_size=8, shard_size=40, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"] = manifest["shards"][1:]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SurgeonError, match="1 of 4 shards missing; rerun"):
        open_features(out)


def test_a_truncated_npy_shard_in_the_middle_is_named_and_nothing_is_written(nested_base, npy_shards, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for path in sorted(npy_shards.iterdir()):
        (data / path.name).write_bytes(path.read_bytes())
    broken = data / "chunk_02.npy"
    broken.write_bytes(broken.read_bytes()[:500])
    result = CliRunner().invoke(app, ["features", nested_base, str(data), "-o", str(tmp_path / "out") + "/"])
    assert result.exit_code == 2 and "chunk_02.npy" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_npy_shards_of_the_wrong_shape_are_refused(nested_base, tmp_path):
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "a.npy", np.zeros((4, 16, 16, 3), "float32"))
    np.save(tmp_path / "data" / "b.npy", np.zeros((4, 8, 8, 3), "float32"))
    result = CliRunner().invoke(app, ["features", nested_base, str(tmp_path / "data"), "-o", str(tmp_path / "out") + "/"])
    assert result.exit_code == 2 and "b.npy" in result.stderr and "(16, 16, 3)" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_output_name_without_extension_says_how_to_ask_for_a_directory(nested_base, npy_shards, tmp_path):
    result = CliRunner().invoke(app, ["features", nested_base, str(npy_shards), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "end it with /" in result.stderr
    assert not (tmp_path / "out").exists()
