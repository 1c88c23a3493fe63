"""``surgeon inspect``: the layer table, totals and every hazard, on fixtures built to hold them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import fixture_path, plain_model
from surgeon.cli import app

runner = CliRunner()


def inspect_json(name: str) -> dict:
    result = runner.invoke(app, ["inspect", fixture_path(name), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def hazard(report: dict, kind: str) -> dict:
    found = [h for h in report["hazards"] if h["kind"] == kind]
    assert found, f"no {kind} hazard in {[h['kind'] for h in report['hazards']]}"
    return found[0]


@pytest.mark.parametrize("name", ["convbn.h5", "nested.keras", "multi_io.h5"])
def test_parameter_counts_match_keras(name):
    report = inspect_json(name)
    model = plain_model(name)
    assert report["total_params"] == model.count_params()
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    assert report["trainable_params"] == trainable


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_normalization_mean_variance_and_count_are_not_trainable(tmp_path, suffix):
    import keras
    import numpy as np

    norm = keras.layers.Normalization()
    norm.adapt(np.arange(12, dtype="float32").reshape(4, 3))
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(norm(inputs)))
    path = tmp_path / f"norm{suffix}"
    model.save(path)
    result = runner.invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["total_params"] == model.count_params()
    assert report["trainable_params"] == sum(int(w.numpy().size) for w in model.trainable_weights)


def test_layer_table_lists_nested_layers_with_their_output_shapes():
    report = inspect_json("nested.h5")
    rows = {row["path"]: row for row in report["layers"]}
    assert rows["base/base_conv1"]["output_shape"] == [None, 16, 16, 8]  # a list in JSON, not text
    assert rows["base/base_conv1"]["trainable"] is False
    assert rows["head"]["output_shape"] == [None, 3]
    assert rows["head"]["trainable"] is True


def test_frozen_batchnorm_and_dropout_are_named_with_their_fix():
    report = inspect_json("nested.h5")
    assert hazard(report, "frozen-batchnorm")["layers"] == ["base/base_bn1", "base/base_bn2"]
    assert "surgeon fold-bn" in hazard(report, "frozen-batchnorm")["fix"]
    assert hazard(report, "frozen-dropout")["layers"] == ["base/base_dropout"]


@pytest.mark.parametrize("name", ["nested.h5", "nested.keras"])
def test_suggested_fix_writes_the_format_of_the_input(name):
    fix = hazard(inspect_json(name), "frozen-batchnorm")["fix"]
    assert fix.endswith("-o folded" + name[name.index("."):])


def test_flags_set_after_compile_are_detected_from_the_optimizer_state():
    report = inspect_json("late_freeze.h5")
    assert sorted(hazard(report, "flag-after-compile")["layers"]) == ["bn1", "conv1"]
    assert "surgeon freeze" in hazard(report, "flag-after-compile")["fix"]
    assert "flag-after-compile" not in [h["kind"] for h in inspect_json("compiled_frozen.h5")["hazards"]]


def test_flags_set_after_compile_are_detected_in_keras_files_by_slot_count():
    assert "26 variables" in hazard(inspect_json("late_freeze.keras"), "flag-after-compile")["message"]
    assert "flag-after-compile" not in [h["kind"] for h in inspect_json("compiled_frozen.keras")["hazards"]]


def test_h5_optimizer_state_that_cannot_be_restored_is_a_hazard():
    assert "Unknown variable" in hazard(inspect_json("compiled_frozen.h5"), "optimizer-state")["message"]
    assert "optimizer-state" not in [h["kind"] for h in inspect_json("convbn.h5")["hazards"]]


def test_nested_model_frozen_while_its_layers_say_trainable(tmp_path):
    import h5py

    path = tmp_path / "mismatch.h5"
    path.write_bytes(open(fixture_path("nested.h5"), "rb").read())
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        base = next(l for l in config["config"]["layers"] if l["name"] == "base")
        for layer in base["config"]["layers"]:
            layer["config"]["trainable"] = True  # what a Keras 2 file or `base.trainable = False` after building says
        handle.attrs["model_config"] = json.dumps(config)
    result = runner.invoke(app, ["inspect", str(path), "--json"])
    found = hazard(json.loads(result.stdout), "nested-flag-mismatch")
    assert "base/base_conv1" in found["layers"] and "still trains" in found["message"]


def test_lambda_layers_are_listed_without_running_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = inspect_json("lambda_marker.h5")
    assert hazard(report, "code-in-file")["layers"] == ["marker_lambda"]
    assert not (tmp_path / "MARKER_surgeon_lambda").exists()


def test_table_output_for_people_names_hazards_and_totals():
    result = runner.invoke(app, ["inspect", fixture_path("nested.h5")])
    assert result.exit_code == 0
    assert "Total params: 1,539" in result.stdout
    assert "frozen-dropout" in result.stdout and "fix:" in result.stdout
