"""``surgeon verify``: exit codes and the reported errors, against hand-made perturbations."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from conftest import fixture_path, plain_model
from surgeon.cli import app

runner = CliRunner()


def test_identical_models_verify_with_zero_error():
    result = runner.invoke(app, ["verify", fixture_path("convbn.h5"), fixture_path("convbn.keras"), "--json", "--samples", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["checks"][0]["max_abs"] == 0.0


def test_a_perturbed_weight_fails_with_exit_1_and_the_error_size(tmp_path):
    model = plain_model("dense_bn.keras")
    clone = model.__class__.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    kernel, bias = clone.get_layer("d3").get_weights()
    clone.get_layer("d3").set_weights([kernel, bias + 0.5])
    path = str(tmp_path / "perturbed.keras")
    clone.save(path)
    result = runner.invoke(app, ["verify", fixture_path("dense_bn.keras"), path, "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert not report["passed"]
    assert abs(report["checks"][0]["max_abs"] - 0.5) < 1e-5  # a bias shift shows up exactly


def test_user_inputs_from_an_npz_are_used(tmp_path):
    # Different samples: three copies of one input would prove nothing (see test_tolerance.py).
    x = np.random.default_rng(0).standard_normal((3, 10)).astype("float32")
    np.savez(tmp_path / "x.npz", x=x)
    result = runner.invoke(app, ["verify", fixture_path("dense_bn.h5"), fixture_path("dense_bn.keras"), "--inputs", str(tmp_path / "x.npz"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["samples"] == 3


def test_a_missing_candidate_is_bad_input():
    result = runner.invoke(app, ["verify", fixture_path("dense_bn.h5"), "/nonexistent/model.h5"])
    assert result.exit_code == 2
    assert "no such file" in result.stderr and "Traceback" not in result.output


def test_an_empty_inputs_file_is_bad_input_not_a_pass(tmp_path):
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 10), dtype="float32"))
    result = runner.invoke(app, ["verify", fixture_path("dense_bn.h5"), fixture_path("dense_bn.keras"), "--inputs", str(tmp_path / "empty.npz")])
    assert result.exit_code == 2 and "non-zero number of samples" in result.stderr


def test_inputs_of_the_wrong_shape_are_named_in_one_line(tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 7), dtype="float32"))
    result = runner.invoke(app, ["verify", fixture_path("dense_bn.h5"), fixture_path("dense_bn.keras"), "--inputs", str(tmp_path / "x.npz")])
    assert result.exit_code == 2 and "takes shape (None, 10)" in result.stderr


def test_models_with_different_inputs_are_not_comparable():
    result = runner.invoke(app, ["verify", fixture_path("convbn.h5"), fixture_path("dense_bn.h5")])
    assert result.exit_code == 2 and "not comparable" in result.stderr


def test_json_carries_the_headline_errors():
    result = runner.invoke(app, ["verify", fixture_path("convbn.h5"), fixture_path("convbn.keras"), "--json", "--samples", "2"])
    report = json.loads(result.stdout)
    assert report["max_abs"] == 0.0 and report["max_rel"] == 0.0
