"""surgeon diff: which layers' weights differ between two files, and by how much."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from surgeon.cli import app
from surgeon.diff import diff_specs
from surgeon.io import read_model

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
runner = CliRunner()


def perturbed_copy(tmp_path: Path, layer: str, weight: str, delta: float) -> Path:
    """A copy of compiled_frozen.h5 with one weight changed by hand (h5py: no surgeon code)."""
    copy = tmp_path / f"changed_{delta}.h5"
    shutil.copy(FIXTURES / "compiled_frozen.h5", copy)
    with h5py.File(copy, "r+") as handle:
        dataset = handle[f"model_weights/{layer}/{layer}/{weight}"]
        values = dataset[()]
        values.flat[0] += delta
        dataset[...] = values
    return copy


def test_a_file_diffed_with_itself_is_identical_and_exits_0():
    result = runner.invoke(app, ["diff", str(FIXTURES / "compiled_frozen.h5"), str(FIXTURES / "compiled_frozen.keras"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["counts"]["different"] == 0 and data["counts"]["identical"] == len(data["layers"])
    assert data["frozen_unchanged"] is True


def test_a_changed_weight_is_found_with_its_max_abs_and_relative_norm(tmp_path):
    changed = perturbed_copy(tmp_path, "fc1", "kernel", 0.5)
    result = runner.invoke(app, ["diff", str(FIXTURES / "compiled_frozen.h5"), str(changed), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    different = [d for d in data["layers"] if d["status"] == "different"]
    assert [d["layer"] for d in different] == ["fc1"]
    with h5py.File(FIXTURES / "compiled_frozen.h5") as handle:
        kernel = handle["model_weights/fc1/fc1/kernel"][()].astype(np.float64)
        bias = handle["model_weights/fc1/fc1/bias"][()].astype(np.float64)
    expected_delta = np.float64(np.float32(kernel.flat[0] + 0.5)) - kernel.flat[0]
    assert different[0]["max_abs"] == pytest.approx(abs(expected_delta))
    assert different[0]["rel_norm"] == pytest.approx(abs(expected_delta) / np.sqrt((kernel**2).sum() + (bias**2).sum()))
    assert data["frozen_unchanged"] is True  # fc1 is trainable in the file


def test_a_change_in_a_frozen_layer_is_flagged_and_atol_can_accept_it(tmp_path):
    changed = perturbed_copy(tmp_path, "conv1", "kernel", 1e-3)
    strict = runner.invoke(app, ["diff", str(FIXTURES / "compiled_frozen.h5"), str(changed)])
    assert strict.exit_code == 1 and "CHANGED" in strict.output
    loose = runner.invoke(app, ["diff", str(FIXTURES / "compiled_frozen.h5"), str(changed), "--atol", "0.01", "--json"])
    assert loose.exit_code == 0
    assert {d["layer"]: d["status"] for d in json.loads(loose.output)["layers"]}["conv1"] == "within-atol"


def test_layers_present_in_only_one_file_are_listed():
    a = read_model(str(FIXTURES / "compiled_frozen.h5"))
    b = a.copy()
    b.weights["extra"] = {"kernel": np.zeros(3, np.float32)}
    del b.weights["bn1"]
    statuses = {d.layer: d.status for d in diff_specs(a, b).layers}
    assert statuses["bn1"] == "only-in-a" and statuses["extra"] == "only-in-b"
    assert not diff_specs(a, b).same


def test_weights_named_by_position_in_one_file_are_paired_by_position():
    a = read_model(str(FIXTURES / "compiled_frozen.h5"))
    b = a.copy()
    b.weights["fc1"] = {"0": a.weights["fc1"]["kernel"], "1": a.weights["fc1"]["bias"] + 1}
    rows = {d.layer: d for d in diff_specs(a, b).layers}
    assert rows["fc1"].status == "different" and rows["fc1"].max_abs == pytest.approx(1.0)
    assert [w["status"] for w in rows["fc1"].weights] == ["identical", "different"]


def test_a_missing_file_exits_2():
    result = runner.invoke(app, ["diff", str(FIXTURES / "compiled_frozen.h5"), "no_such_file.h5"])
    assert result.exit_code == 2


def test_diff_does_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from surgeon.diff import diff_files; "
            f"diff_files({str(FIXTURES / 'nested.h5')!r}, {str(FIXTURES / 'nested.keras')!r}); "
            "print('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
