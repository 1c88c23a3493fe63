"""surgeon freeze: selection -> flags (pure pass), compile replacement, and the command end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from surgeon.cli import app
from surgeon.errors import SurgeonError
from surgeon.io import read_model
from surgeon.passes.freeze import Selection, freeze
from surgeon.passes.recompile import CompileOptions, recompile
from surgeon.spec import effectively_frozen

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
runner = CliRunner()


@pytest.fixture(scope="module")
def nested():
    return read_model(str(FIXTURES / "nested.h5"))


@pytest.fixture(scope="module")
def late_freeze():
    return read_model(str(FIXTURES / "late_freeze.keras"))


def flags(spec) -> dict[str, bool]:
    return {path: layer["config"]["trainable"] for path, layer in spec.layers() if "trainable" in layer["config"]}


def frozen_paths(spec) -> set[str]:
    return {p for p, f in effectively_frozen(spec.config).items() if f and p in spec.weights}


def test_until_freezes_every_layer_up_to_and_including_it_and_unfreezes_the_rest(late_freeze):
    spec, report = freeze(late_freeze, Selection(until="conv2", keep_bn_frozen=False))
    assert frozen_paths(spec) == {"conv1", "bn1", "conv2"}
    assert {c["layer"]: c["after"] for c in report.changes} == {"conv2": "frozen", "relu1": "frozen"}


def test_unfreeze_after_until_reaches_into_the_nested_model_by_bare_name(nested):
    spec, _ = freeze(nested, Selection(until="base", unfreeze=("base_conv2",)))
    f = flags(spec)
    assert f["base"] is True and f["base/base_conv2"] is True
    assert f["base/base_conv1"] is False and f["base/base_bn2"] is False  # BN kept frozen by default
    assert frozen_paths(spec) == {"base/base_conv1", "base/base_bn1", "base/base_bn2"}


def test_globs_match_full_paths_and_a_nested_model_selects_everything_inside(nested):
    spec, _ = freeze(nested, Selection(freeze=("base",), unfreeze=("base/*conv2",), keep_bn_frozen=False))
    assert frozen_paths(spec) == {"base/base_conv1", "base/base_bn1", "base/base_bn2"}


def test_train_bn_lets_batchnorm_in_unfrozen_blocks_train(nested):
    spec, _ = freeze(nested, Selection(unfreeze=("base",), keep_bn_frozen=False))
    assert frozen_paths(spec) == set()
    kept, _ = freeze(nested, Selection(unfreeze=("base",)))
    assert frozen_paths(kept) == {"base/base_bn1", "base/base_bn2"}


def test_all_freezes_every_layer(nested):
    spec, report = freeze(nested, Selection(all=True))
    assert frozen_paths(spec) == set(spec.weights)
    assert report.after.trainable == 0


def test_a_frozen_nested_model_whose_layers_say_trainable_is_made_consistent(nested):
    inconsistent = nested.copy()
    for path, layer in inconsistent.layers():
        if path.startswith("base/") and "trainable" in layer["config"]:
            layer["config"]["trainable"] = True
    spec, _ = freeze(inconsistent)
    assert all(value is False for path, value in flags(spec).items() if path.startswith("base"))


def test_unknown_and_ambiguous_names_are_refused(nested):
    with pytest.raises(SurgeonError, match="no layer named 'nope'"):
        freeze(nested, Selection(until="nope"))
    with pytest.raises(SurgeonError, match="no layer matches 'zzz\\*'"):
        freeze(nested, Selection(freeze=("zzz*",)))


def test_the_pass_does_not_touch_its_input(nested):
    before = json.dumps(nested.config, sort_keys=True)
    freeze(nested, Selection(all=True))
    assert json.dumps(nested.config, sort_keys=True) == before


def test_parameter_counts_agree_with_keras(nested):
    import keras

    from surgeon.io.keras_model import build_keras_model

    spec, report = freeze(nested, Selection(until="base_bn1"))
    model = build_keras_model(spec)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    total = sum(int(np.prod(v.shape)) for v in model.weights)
    assert (report.after.trainable, report.after.non_trainable) == (trainable, total - trainable)
    assert isinstance(model, keras.Model)


def test_compile_options_build_a_config_that_keras_compiles_and_fits(late_freeze):
    from surgeon.io.keras_model import build_keras_model

    spec, report = recompile(late_freeze, CompileOptions("sgd", 0.05, "mse", ("mae",)))
    assert spec.optimizer_variables is None and report.changes[0]["action"] == "replaced"
    model = build_keras_model(spec, compile=True)
    assert type(model.optimizer).__name__ == "SGD"
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.05)
    model.fit(np.zeros((2, 16, 16, 3), "float32"), np.zeros((2, 2), "float32"), verbose=0)


def test_learning_rate_alone_changes_the_kept_optimizer(late_freeze):
    spec, _ = recompile(late_freeze, CompileOptions(learning_rate=1e-5))
    assert spec.compile_config["optimizer"]["class_name"] == "Adam"
    assert spec.compile_config["optimizer"]["config"]["learning_rate"] == 1e-5
    assert spec.compile_config["loss"] == late_freeze.compile_config["loss"]


def test_an_uncompiled_input_stays_uncompiled_with_a_note_or_needs_optimizer_and_loss():
    spec = read_model(str(FIXTURES / "convbn.h5"))
    kept, report = recompile(spec)
    assert kept.compile_config is None and "uncompiled" in report.notes[0]
    with pytest.raises(SurgeonError, match="--optimizer and --loss"):
        recompile(spec, CompileOptions(loss="mse"))
    with pytest.raises(SurgeonError, match="unknown optimizer 'adamm'"):
        recompile(spec, CompileOptions("adamm", loss="mse"))


# --- the command -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frozen_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("freeze") / "frozen.h5"
    result = runner.invoke(app, ["freeze", str(FIXTURES / "compiled_frozen.h5"), "-o", str(out), "--until", "bn1",
                                 "--unfreeze", "conv1", "--optimizer", "adam", "--lr", "0.001", "--json"])
    return out, result


def test_freeze_writes_a_file_that_plain_keras_loads_and_fine_tunes(frozen_file):
    import keras

    out, result = frozen_file
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["checked"]["passed"] and all(data["checked"]["checks"].values())
    model = keras.models.load_model(out)
    assert model.get_layer("conv1").trainable and not model.get_layer("bn1").trainable
    bn = [w.copy() for w in model.get_layer("bn1").get_weights()]
    model.fit(np.random.default_rng(0).standard_normal((4, 16, 16, 3)).astype("float32"), np.zeros((4, 2), "float32"), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(bn, model.get_layer("bn1").get_weights()))


def test_freeze_json_reports_counts_before_and_after_and_the_changed_flags(frozen_file):
    data = json.loads(frozen_file[1].output)
    report = next(p for p in data["passes"] if p["name"] == "freeze")
    # conv1 (3*3*3*8 + 8 = 224 weights) unfrozen; bn2 (gamma, beta: 2*8) frozen by the BN rule.
    assert report["after"]["trainable"] - report["before"]["trainable"] == 224 - 16
    assert {c["layer"]: c["after"] for c in report["changes"]} == {"conv1": "trainable", "bn2": "frozen"}


def test_freeze_with_a_frozen_dropout_fails_with_exit_1_names_it_and_writes_nothing(tmp_path):
    out = tmp_path / "out.h5"
    result = runner.invoke(app, ["freeze", str(FIXTURES / "nested.h5"), "-o", str(out)])
    assert result.exit_code == 1
    assert "base/base_dropout" in result.output and "nothing written" in result.output
    assert not out.exists() and os.listdir(tmp_path) == []


def test_a_bad_selection_exits_2_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out.h5"
    result = runner.invoke(app, ["freeze", str(FIXTURES / "nested.h5"), "-o", str(out), "--until", "missing"])
    assert result.exit_code == 2
    assert "no layer named 'missing'" in result.output and not out.exists()


def test_freeze_help_shows_an_example():
    result = runner.invoke(app, ["freeze", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output
