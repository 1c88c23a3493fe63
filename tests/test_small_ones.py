"""Issue 11 item 7: small things a new user reaches for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
from typer.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import surgeon  # noqa: E402
from surgeon.cli import app  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
runner = CliRunner()


def test_split_creates_its_output_folder_when_the_parent_exists(tmp_path):
    result = runner.invoke(app, ["split", str(FIXTURES / "nested.h5"), "-o", str(tmp_path / "parts"), "--no-verify"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "parts")) == ["nested_base.h5", "nested_top.h5"]


def test_split_does_not_create_a_folder_for_a_failed_run_or_a_missing_parent(tmp_path):
    bad = runner.invoke(app, ["split", str(FIXTURES / "nested.h5"), "-o", str(tmp_path / "parts"), "--at", "nope"])
    assert bad.exit_code == 2 and not (tmp_path / "parts").exists()
    deep = runner.invoke(app, ["split", str(FIXTURES / "nested.h5"), "-o", str(tmp_path / "a" / "b"), "--no-verify"])
    assert deep.exit_code == 2 and "does not exist" in deep.output and not (tmp_path / "a").exists()


def _copy_with_changed_weight(source: Path, target: Path, dataset: str) -> None:
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as handle:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.endswith(dataset):
                obj[...] = np.asarray(obj) + 0.5
        handle["model_weights"].visititems(visit)


def test_diff_frozen_only_gates_on_the_frozen_part(tmp_path):
    head_moved, base_moved = tmp_path / "head_moved.h5", tmp_path / "base_moved.h5"
    _copy_with_changed_weight(FIXTURES / "nested.h5", head_moved, "head/kernel")
    _copy_with_changed_weight(FIXTURES / "nested.h5", base_moved, "base_conv1/kernel")
    assert runner.invoke(app, ["diff", str(FIXTURES / "nested.h5"), str(head_moved)]).exit_code == 1  # weights differ
    assert runner.invoke(app, ["diff", str(FIXTURES / "nested.h5"), str(head_moved), "--frozen-only"]).exit_code == 0
    assert runner.invoke(app, ["diff", str(FIXTURES / "nested.h5"), str(base_moved), "--frozen-only"]).exit_code == 1


def test_diff_frozen_only_on_a_model_with_nothing_frozen_is_bad_usage(tmp_path):
    import keras

    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(tmp_path / "trainable.h5")
    result = runner.invoke(app, ["diff", str(tmp_path / "trainable.h5"), str(tmp_path / "trainable.h5"), "--frozen-only"])
    assert result.exit_code == 2 and "nothing to check" in result.output


def test_inspect_json_gives_shapes_as_lists():
    result = runner.invoke(app, ["inspect", str(FIXTURES / "convbn.h5"), "--json"])
    shapes = [row["output_shape"] for row in json.loads(result.stdout)["layers"]]
    assert shapes and all(isinstance(shape, list) for shape in shapes)
    assert shapes[0][0] is None


def test_version_prints_the_package_version_without_tensorflow():
    code = ("import sys; from surgeon.cli import main; sys.argv = ['surgeon', '--version']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'tensorflow' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"surgeon {surgeon.__version__}"
