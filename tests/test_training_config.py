"""The ``.h5`` training config surgeon writes carries every key Keras' own legacy saver writes.

Issue 11 item 2: an uncompiled model given ``--optimizer/--loss`` was written to ``.h5`` without
``loss_weights``, which Keras' legacy loader reads unconditionally: ``load_model`` raised KeyError.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from surgeon.cli import app  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def keras_training_config(tmp_path) -> dict:
    """What Keras itself writes to an .h5 for compile(optimizer, loss) and nothing else."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.save(tmp_path / "keras_own.h5")
    with h5py.File(tmp_path / "keras_own.h5") as handle:
        return json.loads(handle.attrs["training_config"])


@pytest.mark.parametrize("command, verify", [("freeze", []), ("prepare", ["--no-verify"])])
def test_an_uncompiled_model_given_optimizer_and_loss_writes_an_h5_keras_loads_compiled(tmp_path, command, verify):
    out = tmp_path / "out.h5"
    result = CliRunner().invoke(app, [command, str(FIXTURES / "convbn.h5"), "-o", str(out), "--until", "conv2",
                                      "--optimizer", "adam", "--lr", "1e-4", "--loss", "sparse_categorical_crossentropy", *verify])
    assert result.exit_code == 0, result.output
    with h5py.File(out) as handle:
        written = json.loads(handle.attrs["training_config"])
    assert set(written) == set(keras_training_config(tmp_path))
    model = keras.models.load_model(out)
    assert model.compiled and type(model.optimizer).__name__ == "Adam"
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-4)
    x = np.random.default_rng(0).standard_normal((4,) + tuple(model.inputs[0].shape[1:])).astype("float32")
    model.fit(x, np.zeros((4,), "int64"), verbose=0)
