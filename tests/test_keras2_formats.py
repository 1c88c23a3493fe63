"""The other ways tf.keras 2 saved a model: SavedModel directories, tf.keras ``.keras`` archives and
architecture JSON + weights. Each fixture in fixtures/keras2 (made by make_keras2_fixtures.py with
tf_keras) is read by surgeon, built with Keras 3 and compared with the outputs tf.keras 2 itself
computed (``NAME.expected.npz``); the checkpoint reader is compared with TensorFlow's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FIXTURES

KERAS2 = FIXTURES / "keras2"
MODELS = ["tfk_nested", "tfk_flat", "tfk_sequential"]
FORMATS = {"saved_model": "{}_savedmodel", "keras": "{}.keras", "json": "{}.json"}


def path_of(name: str, file_format: str) -> str:
    return str(KERAS2 / FORMATS[file_format].format(name))


def run_cli(argv):
    from surgeon.cli import app

    return CliRunner().invoke(app, argv, catch_exceptions=True)


@pytest.mark.parametrize("file_format", list(FORMATS))
@pytest.mark.parametrize("name", MODELS)
def test_each_format_gives_the_outputs_tf_keras_computed(name, file_format):
    from surgeon.io import read_model
    from surgeon.io.keras_model import build_keras_model

    spec = read_model(path_of(name, file_format))
    assert spec.source.dialect == "keras2" and spec.source.format == file_format
    expected = np.load(KERAS2 / f"{name}.expected.npz")
    got = np.asarray(build_keras_model(spec)(expected["x"], training=False))
    scale = np.abs(expected["y"]).max()
    assert np.abs(got - expected["y"]).max() <= 1e-5 * scale


@pytest.mark.parametrize("file_format", list(FORMATS))
def test_a_frozen_nested_base_stays_frozen_in_every_format(file_format):
    from surgeon.io import read_model
    from surgeon.spec import effectively_frozen

    spec = read_model(path_of("tfk_nested", file_format), values=False)
    frozen = effectively_frozen(spec.config)
    assert all(frozen[path] for path in ("base", "base/conv", "base/bn", "base/drop"))
    assert not frozen["head"]


def test_checkpoint_reader_matches_tensorflow():
    import tensorflow as tf

    from surgeon.io.tf_checkpoint import OBJECT_GRAPH_KEY, Checkpoint

    prefix = os.path.join(path_of("tfk_nested", "saved_model"), "variables", "variables")
    ours = Checkpoint(prefix, "fixture")
    theirs = tf.train.load_checkpoint(prefix)
    assert set(ours.entries) == set(theirs.get_variable_to_shape_map())
    for key in ours.entries:
        if key == OBJECT_GRAPH_KEY:
            assert ours.read(key).item() == theirs.get_tensor(key)
        else:
            assert ours.shape(key).shape == tuple(theirs.get_variable_to_shape_map()[key])
            np.testing.assert_array_equal(ours.read(key), theirs.get_tensor(key))


def test_inspect_of_a_saved_model_does_not_import_tensorflow():
    code = ("import sys; from surgeon.io import read_model; from surgeon.inspection import inspect_spec;"
            f"inspect_spec(read_model({path_of('tfk_nested', 'saved_model')!r}, values=False));"
            "sys.exit(3 if 'tensorflow' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], env=dict(os.environ)).returncode == 0


@pytest.mark.parametrize("file_format", ["saved_model", "keras"])
def test_stored_keras2_optimizer_state_is_a_hazard_and_is_dropped(file_format):
    from surgeon.inspection import inspect_spec
    from surgeon.io import read_model

    spec = read_model(path_of("tfk_nested", file_format), values=False)
    assert spec.optimizer_variables
    kinds = {hazard.kind for hazard in inspect_spec(spec).hazards}
    assert "optimizer-state" in kinds and "flag-after-compile" not in kinds


def test_json_weights_given_explicitly_or_found_by_stem(tmp_path):
    architecture = tmp_path / "architecture.json"
    shutil.copy(path_of("tfk_flat", "json"), architecture)
    weights = tmp_path / "checkpoints" / "best.h5"
    weights.parent.mkdir()
    shutil.copy(KERAS2 / "tfk_flat.h5", weights)
    missing = run_cli(["inspect", str(architecture), "--no-layers"])
    assert missing.exit_code == 2 and "--weights" in missing.stderr
    given = run_cli(["inspect", str(architecture), "--weights", str(weights), "--no-layers", "--json"])
    assert given.exit_code == 0, given.stderr


def test_json_weights_found_by_stem(tmp_path):
    from surgeon.io.json_reader import weights_for

    (tmp_path / "model.json").write_text("{}")
    (tmp_path / "model_weights.h5").write_bytes(b"")
    assert weights_for(str(tmp_path / "model.json")) == str(tmp_path / "model_weights.h5")
    (tmp_path / "model.h5").write_bytes(b"")
    assert weights_for(str(tmp_path / "model.json")) == str(tmp_path / "model.h5")


def test_help_says_how_the_json_and_weights_pair_is_given():
    result = run_cli(["convert", "--help"])
    assert "--weights" in result.stdout and "same stem" in " ".join(result.stdout.split())


def test_json_with_tf_keras_weights_h5_layout(tmp_path):
    """save_weights("x.weights.h5") in tf.keras 2.13+ writes the class-name layout, not layer_names."""
    import h5py

    from surgeon.io import read_model

    shutil.copy(path_of("tfk_nested", "json"), tmp_path / "m.json")
    # The .keras archive's model.weights.h5 is what save_weights writes to a .weights.h5 name.
    import zipfile

    with zipfile.ZipFile(path_of("tfk_nested", "keras")) as archive:
        (tmp_path / "m.weights.h5").write_bytes(archive.read("model.weights.h5"))
    with h5py.File(tmp_path / "m.weights.h5") as handle:
        assert "layer_names" not in handle.attrs
    spec = read_model(str(tmp_path / "m.json"))
    legacy = read_model(path_of("tfk_nested", "json"))
    for path, named in legacy.weights.items():
        for weight, array in named.items():
            np.testing.assert_array_equal(spec.weights[path][weight], array)


@pytest.mark.parametrize("file_format", ["saved_model", "json"])
def test_convert_is_checked_against_tf_keras_running_the_original(file_format, tmp_path):
    pytest.importorskip("tf_keras")
    from surgeon.convert import convert_file
    from surgeon.verify import load_plain

    output = tmp_path / "converted.keras"
    result = convert_file(path_of("tfk_nested", file_format), str(output))
    assert result.passed, result.to_json()
    assert result.checked is not None and result.checked.skipped is None and result.checked.report.passed
    dropped = [note for report in result.passes for note in report.notes if "stored optimizer variables" in note]
    assert bool(dropped) == (file_format == "saved_model")  # a JSON + weights pair holds no optimizer state
    model = load_plain(str(output))
    assert model.get_layer("base").trainable is False
    expected = np.load(KERAS2 / "tfk_nested.expected.npz")
    np.testing.assert_allclose(np.asarray(model(expected["x"], training=False)), expected["y"], rtol=1e-5, atol=1e-6)


def test_features_and_other_plain_loads_take_a_keras2_directory():
    """``features BASE`` loads its base with plain Keras, which cannot read a Keras 2 SavedModel:
    load_checked builds such files from surgeon's reading instead."""
    from surgeon.io.loading import load_checked

    model = load_checked(path_of("tfk_flat", "saved_model"))
    expected = np.load(KERAS2 / "tfk_flat.expected.npz")
    np.testing.assert_allclose(np.asarray(model(expected["x"], training=False)), expected["y"], rtol=1e-5, atol=1e-6)
