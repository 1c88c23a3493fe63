"""surgeon prepare: freeze -> fold frozen BN -> strip frozen Dropout -> recompile, verified by a fine-tune."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from surgeon.cli import app

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
runner = CliRunner()


@pytest.fixture(scope="module")
def prepared_nested(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepare") / "prepared.h5"
    result = runner.invoke(app, ["prepare", str(FIXTURES / "nested.h5"), "-o", str(out), "--json"])
    return out, result


def test_prepare_folds_the_frozen_base_and_drops_its_dropout_but_keeps_the_head_dropout(prepared_nested):
    import keras

    out, result = prepared_nested
    assert result.exit_code == 0, result.output
    model = keras.models.load_model(out)
    base_layers = {type(layer).__name__ for layer in model.get_layer("base").layers}
    assert "BatchNormalization" not in base_layers and "Dropout" not in base_layers
    assert isinstance(model.get_layer("head_dropout"), keras.layers.Dropout)
    data = json.loads(result.output)
    assert [p["name"] for p in data["passes"]] == ["freeze", "fold_bn", "strip_dropout", "freeze_bn", "recompile"]
    assert all(data["checked"]["checks"].values())


def test_prepared_base_gives_the_same_features_in_training_and_inference_mode(prepared_nested):
    import keras

    base = keras.models.load_model(prepared_nested[0]).get_layer("base")
    x = np.random.default_rng(0).standard_normal((4, *base.inputs[0].shape[1:])).astype("float32")
    np.testing.assert_array_equal(np.asarray(base(x, training=True)), np.asarray(base(x, training=False)))


def test_prepared_file_matches_the_original_in_inference(prepared_nested):
    import keras

    original = keras.models.load_model(FIXTURES / "nested.keras")
    prepared = keras.models.load_model(prepared_nested[0])
    x = np.random.default_rng(1).standard_normal((4, *original.inputs[0].shape[1:])).astype("float32")
    np.testing.assert_allclose(prepared.predict(x, verbose=0), original.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_batchnorm_in_the_trainable_part_stays_a_frozen_batchnorm(tmp_path):
    import keras

    out = tmp_path / "prepared.keras"
    result = runner.invoke(app, ["prepare", str(FIXTURES / "late_freeze.keras"), "-o", str(out), "--until", "bn1", "--json"])
    assert result.exit_code == 0, result.output
    model = keras.models.load_model(out)
    names = {layer.name for layer in model.layers}
    assert "bn1" not in names  # frozen part: folded into conv1
    assert isinstance(model.get_layer("bn2"), keras.layers.BatchNormalization) and not model.get_layer("bn2").trainable
    assert isinstance(model.get_layer("drop"), keras.layers.Dropout)  # trainable part: kept


def test_train_bn_leaves_trainable_batchnorm_trainable(tmp_path):
    import keras

    out = tmp_path / "prepared.h5"
    result = runner.invoke(app, ["prepare", str(FIXTURES / "late_freeze.h5"), "-o", str(out), "--until", "bn1", "--train-bn",
                                 "--optimizer", "sgd", "--lr", "0.01", "--loss", "mse", "--json"])
    assert result.exit_code == 0, result.output
    model = keras.models.load_model(out)
    assert model.get_layer("bn2").trainable
    assert type(model.optimizer).__name__ == "SGD"
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    assert getattr(model.loss, "__name__", model.loss) == "mean_squared_error"


def test_prepare_model_works_on_an_in_memory_model():
    import keras

    from surgeon.prepare import Selection, prepare_model

    model = keras.models.load_model(FIXTURES / "nested.keras")
    prepared, reports = prepare_model(model, Selection(until="base"))
    assert not prepared.get_layer("base").trainable
    assert "BatchNormalization" not in {type(layer).__name__ for layer in prepared.get_layer("base").layers}
    assert prepared.compiled and [r.name for r in reports][0] == "freeze"
