"""Layers that own layers through the CLI (issue 17): RNN cells, wrappers, attention projections.

One chain model holds them all: a frozen Dense + BatchNormalization, then
Bidirectional(LSTM) -> MultiHeadAttention -> TimeDistributed(Dense) -> GRU -> a Dense head.
Every written file is loaded with plain Keras and compared with the original in-memory model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from surgeon.cli import app

runner = CliRunner()


def chain_model():
    import keras

    L = keras.layers
    x = keras.Input((4, 3), name="x")
    h = L.BatchNormalization(name="bn", trainable=False)(L.Dense(3, name="dense", trainable=False)(x))
    h = L.Bidirectional(L.LSTM(2, return_sequences=True), name="bidirectional")(h)
    h = L.MultiHeadAttention(2, 2, name="mha")(h, h)
    h = L.TimeDistributed(L.Dense(3), name="time_distributed")(h)
    h = L.GRU(2, name="gru")(h)
    model = keras.Model(x, L.Dense(2, name="head")(h))
    bn = model.get_layer("bn")
    bn.set_weights([np.full(w.shape, value, "float32") for w, value in zip(bn.get_weights(), (1.5, 0.2, 0.3, 2.0))])
    return model


SAMPLES = np.random.default_rng(0).uniform(-1, 1, (4, 4, 3)).astype("float32")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """``{format: path}`` of the chain model saved by plain Keras, and its outputs on SAMPLES."""
    root = tmp_path_factory.mktemp("owned")
    model = chain_model()
    paths = {fmt: str(root / f"chain.{fmt}") for fmt in ("keras", "h5")}
    for path in paths.values():
        model.save(path)
    return paths, np.asarray(model(SAMPLES, training=False)), root


def plain_outputs(path: str) -> np.ndarray:
    from surgeon.verify import load_plain

    return np.asarray(load_plain(path)(SAMPLES, training=False))


@pytest.mark.parametrize("source,output", [("keras", "keras"), ("keras", "h5"), ("h5", "keras")])
def test_convert_reads_owned_layers_of_keras_files(chain, source, output):
    """Issue 17: every .keras file with an LSTM, Bidirectional, MHA ... failed convert (rel error 1.15)."""
    paths, expected, root = chain
    target = str(root / f"converted_{source}.{output}")
    result = runner.invoke(app, ["convert", paths[source], "-o", target, "--force"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(plain_outputs(target), expected)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_split_at_a_layer_that_owns_layers(chain, fmt):
    import keras

    paths, expected, root = chain
    base, top = str(root / f"base.{fmt}"), str(root / f"top.{fmt}")
    result = runner.invoke(app, ["split", paths[fmt], "--at", "bidirectional", "--base-out", base, "--top-out", top, "--force"])
    assert result.exit_code == 0, result.output
    features = keras.models.load_model(base)(SAMPLES, training=False)
    np.testing.assert_allclose(np.asarray(keras.models.load_model(top)(features, training=False)), expected, atol=1e-6)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_prepare_freezes_owned_layers_and_fine_tunes(chain, fmt):
    """The fine-tune check runs on the written file: the frozen Bidirectional's cells stay put."""
    paths, expected, root = chain
    target = str(root / f"prepared.{fmt}")
    result = runner.invoke(app, ["prepare", paths[fmt], "-o", target, "--until", "bidirectional", "--force", "--json"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(plain_outputs(target), expected, atol=1e-5)
    from surgeon.verify import load_plain

    model = load_plain(target)
    trained = {id(variable) for variable in model.trainable_weights}
    assert {layer.name for layer in model.layers if any(id(v) in trained for v in layer.weights)} == {"mha", "time_distributed", "gru", "head"}
    assert json.loads(result.output)["checked"]["passed"]


def _frozen_row(class_name: str):
    import keras

    from tests.layer_catalog import catalog_model, catalog_rows

    row = next(row for row in catalog_rows() if row.name == class_name)
    model = catalog_model([row])
    owner = next(layer for layer in model.layers if type(layer).__name__ in (class_name, "GroupedQueryAttention"))
    owner.trainable = False
    return model, owner.name, keras


@pytest.mark.parametrize("class_name", ["MultiHeadAttention", "GroupQueryAttention", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"])
def test_rebuilt_trainable_is_keras_own(tmp_path, class_name):
    """Frozen in memory, saved, reloaded by plain Keras: its owned layers train. surgeon's table says so."""
    from surgeon.layer_kinds import REBUILT_TRAINABLE

    model, owner, keras = _frozen_row(class_name)
    assert not any(v.path.startswith(owner + "/") for v in model.trainable_weights)
    for fmt in ("keras", "h5"):
        model.save(tmp_path / f"m.{fmt}")
        reloaded = keras.models.load_model(tmp_path / f"m.{fmt}")
        assert reloaded.get_layer(owner).trainable is False
        assert any(v.path.startswith(owner + "/") for v in reloaded.trainable_weights), f"Keras keeps {class_name} frozen now"
    assert class_name in REBUILT_TRAINABLE


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_prepare_refuses_to_freeze_attention_it_cannot_keep_frozen(tmp_path, fmt):
    """Issue 17: prepare used to write nothing after "FAIL frozen weights bit-for-bit unchanged"; now it says why up front."""
    model, owner, _ = _frozen_row("MultiHeadAttention")
    source, target = str(tmp_path / f"m.{fmt}"), str(tmp_path / f"out.{fmt}")
    model.save(source)
    result = runner.invoke(app, ["prepare", source, "-o", target, "--all", "--unfreeze", "head"])
    assert result.exit_code == 2
    assert "cannot be frozen in a file" in result.output and f"--unfreeze '{owner}'" in result.output
    assert not (tmp_path / f"out.{fmt}").exists()


def test_inspect_reports_frozen_layers_keras_would_train(tmp_path):
    model, owner, _ = _frozen_row("ConvLSTM2D")
    path = str(tmp_path / "m.keras")
    model.save(path)
    result = runner.invoke(app, ["inspect", path, "--json"])
    assert result.exit_code == 0, result.output
    hazards = {hazard["kind"]: hazard for hazard in json.loads(result.output)["hazards"]}
    assert hazards["frozen-but-trained"]["layers"] == [owner]
