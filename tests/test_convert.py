"""``surgeon convert``: Keras 2 files become Keras 3 files that compute what Keras 2 computed.

The independent reference is each fixture's ``.expected.npz``: outputs tf.keras 2 itself computed
when the fixture was made (fixtures/make_keras2_fixtures.py). The cross-runtime check against a
live tf_keras runs when tf_keras is installed (CI installs it) and is skipped with a reason otherwise.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import fixture_path
from surgeon.cli import app
from surgeon.convert import tf_keras_available
from surgeon.io.keras_model import load_plain

runner = CliRunner()
KERAS2 = ["k2_nested", "k2_depthwise", "k2_slash_names", "k2_tfop", "k2_sequential", "k2_standalone21", "k2_standalone21_functional"]


def expected(name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    data = np.load(fixture_path(f"keras2/{name}.expected.npz"))
    xs = [data[k] for k in sorted(data.files) if k.startswith("x")]
    ys = [data[k] for k in sorted(data.files) if k.startswith("y")]
    return xs, ys


@pytest.fixture
def without_tf_keras(monkeypatch):
    """The stored tf.keras outputs are the reference here; a live tf_keras run per case costs ~5 s."""
    import surgeon.convert

    monkeypatch.setattr(surgeon.convert, "tf_keras_available", lambda: False)


@pytest.mark.parametrize("name", KERAS2)
@pytest.mark.parametrize("target", ["keras", "h5"])
def test_converted_keras2_file_matches_what_keras2_computed(name, target, tmp_path, without_tf_keras):
    out = tmp_path / f"{name}.{target}"
    result = runner.invoke(app, ["convert", fixture_path(f"keras2/{name}.h5"), "-o", str(out), "--json", "--samples", "2"])
    assert result.exit_code == 0, result.output
    model = load_plain(str(out))
    xs, ys = expected(name)
    got = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    got = got if isinstance(got, list) else [got]
    for y, g in zip(ys, got):
        np.testing.assert_allclose(g, y, rtol=1e-5, atol=1e-6 * np.abs(y).max())


def test_frozen_nested_model_stays_frozen_after_conversion(tmp_path, without_tf_keras):
    out = tmp_path / "nested.keras"
    assert runner.invoke(app, ["convert", fixture_path("keras2/k2_nested.h5"), "-o", str(out)]).exit_code == 0
    model = load_plain(str(out))
    base = next(layer for layer in model.layers if hasattr(layer, "layers"))
    assert not base.trainable and not any(layer.trainable for layer in base.layers if layer.weights)
    assert all(not w.trainable for w in base.weights)


def test_renamed_layers_are_reported_with_old_and_new_names(tmp_path, without_tf_keras):
    out = tmp_path / "slash.keras"
    result = runner.invoke(app, ["convert", fixture_path("keras2/k2_slash_names.h5"), "-o", str(out), "--json", "--samples", "2"])
    notes = " ".join(json.loads(result.stdout)["notes"])
    assert "'/' in layer names replaced by '_'" in notes and "block1/conv" in notes
    assert "block1_conv" in [layer.name for layer in load_plain(str(out)).layers]


def test_legacy_optimizer_settings_are_translated(tmp_path, without_tf_keras):
    out = tmp_path / "standalone.h5"
    assert runner.invoke(app, ["convert", fixture_path("keras2/k2_standalone21.h5"), "-o", str(out)]).exit_code == 0
    model = load_plain(str(out))
    assert model.optimizer is not None and float(model.optimizer.learning_rate) > 0


@pytest.mark.skipif(not tf_keras_available(), reason="tf_keras not installed: pip install 'surgeon[keras2]' to check against Keras 2 itself")
def test_conversion_is_checked_against_the_original_run_by_tf_keras(tmp_path):
    out = tmp_path / "tfop.keras"
    result = runner.invoke(app, ["convert", fixture_path("keras2/k2_tfop.h5"), "-o", str(out), "--json", "--samples", "4"])
    assert result.exit_code == 0, result.output
    checked = json.loads(result.stdout)["checked"]
    assert checked["skipped"] is None and checked["passed"]
    assert checked["report"]["checks"][0]["max_rel"] < 1e-5


def test_without_tf_keras_the_original_runtime_check_is_skipped_with_the_reason(tmp_path, without_tf_keras):
    out = tmp_path / "nested.keras"
    result = runner.invoke(app, ["convert", fixture_path("keras2/k2_nested.h5"), "-o", str(out), "--json", "--samples", "2"])
    assert result.exit_code == 0
    assert "tf_keras is not installed" in json.loads(result.stdout)["checked"]["skipped"]


def test_a_lambda_in_a_keras2_file_is_refused_without_allow_code(tmp_path):
    import h5py

    path = tmp_path / "lambda.h5"
    path.write_bytes(open(fixture_path("keras2/k2_sequential.h5"), "rb").read())
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        config["config"]["layers"].append({"class_name": "Lambda", "config": {"name": "evil", "function": ["4wEAAAAA", None, None], "function_type": "lambda"}})
        handle.attrs["model_config"] = json.dumps(config)
    result = runner.invoke(app, ["convert", str(path), "-o", str(tmp_path / "out.keras")])
    assert result.exit_code == 2 and "--allow-code" in result.stderr
    assert not (tmp_path / "out.keras").exists()
