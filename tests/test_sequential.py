"""Sequential models, the way most people write a top model, through every command and entry point.

Issue 11 item 1: ``split`` failed on Sequential files at most cuts, every in-memory entry point raised
a bare ``ValueError: No such layer: input_layer``, and ``inspect`` showed their shapes as ``(None)``.
References are the models themselves run by plain Keras.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
from typer.testing import CliRunner  # noqa: E402

import surgeon  # noqa: E402
from surgeon.cli import app  # noqa: E402
from surgeon.io import read_model  # noqa: E402
from surgeon.passes.freeze import Selection  # noqa: E402
from surgeon.shapes import infer_shape, output_shape  # noqa: E402

LAYERS = ("conv1", "bn1", "relu1", "gap", "drop", "cls")
X = np.random.default_rng(3).standard_normal((4, 8, 8, 3)).astype("float32")


def sequential(with_input: bool = True, name: str = "seq") -> "keras.Sequential":
    keras.utils.set_random_seed(0)
    layers = [
        keras.layers.Conv2D(4, 3, name="conv1"), keras.layers.BatchNormalization(name="bn1"), keras.layers.ReLU(name="relu1"),
        keras.layers.GlobalAveragePooling2D(name="gap"), keras.layers.Dropout(0.3, name="drop"), keras.layers.Dense(3, name="cls"),
    ]
    if with_input:
        model = keras.Sequential([keras.Input((8, 8, 3))] + layers, name=name)
    else:
        model = keras.Sequential(layers, name=name)
        model.build((None, 8, 8, 3))
    bn = model.get_layer("bn1")  # statistics far from identity, so a fold that is wrong shows
    bn.set_weights([np.full(4, 1.5), np.full(4, 0.2), np.linspace(-1, 1, 4), np.linspace(0.5, 2, 4)])
    return model


def nested() -> "keras.Model":
    """The classic recipe: a Sequential base called inside a functional model with a head."""
    inputs = keras.Input((8, 8, 3), name="image")
    base = sequential(name="base")
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(base(inputs)), name="outer")


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """Sequential models (with and without Input) and a nested one, saved in both formats."""
    folder = tmp_path_factory.mktemp("sequential")
    paths = {}
    for key, model in (("seq", sequential()), ("noinput", sequential(with_input=False)), ("nested", nested())):
        for fmt in ("keras", "h5"):
            paths[key, fmt] = str(folder / f"{key}.{fmt}")
            model.save(paths[key, fmt])
    return paths


def predict(model, x=X):
    return np.asarray(model.predict(x, verbose=0))


@pytest.mark.parametrize("fmt", ["h5", "keras"])
@pytest.mark.parametrize("key", ["seq", "noinput"])
@pytest.mark.parametrize("at", [None, *LAYERS[:-1]])
def test_split_a_sequential_file_at_any_cut(saved, tmp_path, key, fmt, at):
    if fmt == "keras" and at not in (None, "relu1", "gap"):
        pytest.skip("the .keras door records shapes of weighted layers; three cuts cover it")
    result = surgeon.split_file(saved[key, fmt], at=at, directory=str(tmp_path))
    assert result.passed, result.verification and result.verification.problem
    reference = keras.models.load_model(saved[key, fmt])
    base, top = keras.models.load_model(result.base), keras.models.load_model(result.top)
    np.testing.assert_allclose(predict(top, predict(base)), predict(reference), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", ["h5", "keras"])
def test_split_command_on_a_sequential_file_exits_0(saved, tmp_path, fmt):
    outcome = CliRunner().invoke(app, ["split", saved["seq", fmt], "-o", str(tmp_path), "--json"])
    assert outcome.exit_code == 0, outcome.output
    assert json.loads(outcome.output)["passed"]


@pytest.mark.parametrize("fmt", ["h5", "keras"])
def test_prepare_a_nested_sequential_file(saved, tmp_path, fmt):
    out = str(tmp_path / f"prepared.{fmt}")
    result = surgeon.prepare_file(saved["nested", fmt], out, selection=Selection(until="base"), fine_tune=False)
    assert result.passed
    prepared = keras.models.load_model(out)
    np.testing.assert_allclose(predict(prepared), predict(keras.models.load_model(saved["nested", fmt])), rtol=1e-5, atol=1e-6)
    # The frozen BN inside the nested Sequential was folded away.
    assert "bn1" not in [layer.name for layer in prepared.get_layer("base").layers]


@pytest.mark.parametrize("fmt", ["h5", "keras"])
def test_split_a_nested_sequential_file(saved, tmp_path, fmt):
    result = surgeon.split_file(saved["nested", fmt], directory=str(tmp_path))
    assert result.passed
    base, top = keras.models.load_model(result.base), keras.models.load_model(result.top)
    np.testing.assert_allclose(predict(top, predict(base)), predict(keras.models.load_model(saved["nested", fmt])), rtol=1e-5, atol=1e-6)


def in_memory_models(saved):
    return {
        "built with Input": sequential(),
        "built without Input": sequential(with_input=False),
        "loaded .keras": keras.models.load_model(saved["seq", "keras"]),
        "loaded .h5": keras.models.load_model(saved["seq", "h5"]),
        "nested in functional": nested(),
    }


def test_every_library_entry_point_takes_an_in_memory_sequential(saved):
    for label, model in in_memory_models(saved).items():
        expected = predict(model)
        until = "base" if label == "nested in functional" else "relu1"
        selection = Selection(until=until)
        folded, _ = surgeon.fold_bn_model(model, fold_all=True)
        prepared, _ = surgeon.prepare_model(model, selection)
        frozen, _ = surgeon.freeze_model(model, selection)
        base, top, _ = surgeon.split_model(model, at=None if label == "nested in functional" else "relu1")
        for name, result in (("fold_bn_model", folded), ("prepare_model", prepared), ("freeze_model", frozen)):
            np.testing.assert_allclose(predict(result), expected, rtol=1e-5, atol=1e-6, err_msg=f"{name} on {label}")
        np.testing.assert_allclose(predict(top, predict(base)), expected, rtol=1e-5, atol=1e-6, err_msg=f"split_model on {label}")
        assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in _leaves(folded)), label


def _leaves(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaves(layer)
        else:
            yield layer


@pytest.mark.parametrize("fmt", ["h5", "keras"])
@pytest.mark.parametrize("key", ["seq", "noinput", "nested"])
def test_inspect_shows_the_output_shapes_keras_computes(saved, key, fmt):
    reference = keras.models.load_model(saved[key, fmt])
    expected = {}
    for layer in _leaves(reference):
        prefix = "base/" if key == "nested" and layer.name in LAYERS else ""
        expected[prefix + layer.name] = list(layer.output.shape)
    rows = {row.path: row.output_shape for row in surgeon.inspect_spec(read_model(saved[key, fmt], values=False)).layers}
    for path, shape in expected.items():
        assert rows[path] == shape, path


LAYER_CASES = [
    (keras.layers.Conv2D(5, 3, strides=2, padding="same"), (None, 9, 7, 3)),
    (keras.layers.Conv2D(5, (3, 2), dilation_rate=2), (None, 9, 7, 3)),
    (keras.layers.Conv2D(5, 3, data_format="channels_first"), (None, 3, 9, 7)),
    (keras.layers.Conv1D(4, 3, padding="causal"), (None, 10, 2)),
    (keras.layers.Conv3D(2, 2, strides=(1, 2, 2)), (None, 5, 6, 7, 1)),
    (keras.layers.DepthwiseConv2D(3, depth_multiplier=2), (None, 8, 8, 3)),
    (keras.layers.SeparableConv2D(6, 3, strides=2), (None, 9, 9, 3)),
    (keras.layers.Conv2DTranspose(4, 3, strides=2), (None, 5, 5, 3)),
    (keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same"), (None, 5, 5, 3)),
    (keras.layers.MaxPooling2D(), (None, 9, 9, 3)),
    (keras.layers.AveragePooling2D(3, strides=1, padding="same"), (None, 9, 9, 3)),
    (keras.layers.GlobalMaxPooling2D(keepdims=True), (None, 9, 9, 3)),
    (keras.layers.GlobalAveragePooling1D(), (None, 9, 3)),
    (keras.layers.Flatten(), (None, 4, 5, 3)),
    (keras.layers.Reshape((-1, 3)), (None, 4, 5, 3)),
    (keras.layers.Dense(7), (None, 4, 5)),
    (keras.layers.LayerNormalization(), (None, 4, 5)),
    (keras.layers.Permute((2, 1)), (None, 4, 5)),
    (keras.layers.Cropping1D((1, 2)), (None, 9, 3)),
    (keras.layers.Cropping2D(((1, 2), (0, 1))), (None, 9, 7, 3)),
    (keras.layers.ZeroPadding2D(((1, 2), (3, 0))), (None, 9, 7, 3)),
    (keras.layers.ZeroPadding1D(2), (None, 9, 3)),
    (keras.layers.UpSampling2D((2, 3)), (None, 9, 7, 3)),
    (keras.layers.UpSampling1D(3), (None, 9, 3)),
]


@pytest.mark.parametrize("layer, shape", LAYER_CASES, ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else str(v))
def test_shape_rules_match_keras_compute_output_shape(layer, shape):
    entry = {"class_name": type(layer).__name__, "config": keras.saving.serialize_keras_object(layer)["config"]}
    assert output_shape(entry, list(shape)) == list(layer.compute_output_shape(shape))


def test_concatenate_adds_the_sizes_on_its_axis():
    layer = keras.layers.Concatenate(axis=1)
    shapes = [[None, 4, 3], [None, 5, 3]]
    assert infer_shape("Concatenate", layer.get_config(), shapes) == list(layer.compute_output_shape(shapes))


def test_an_unknown_layer_has_an_unknown_shape_not_a_guess():
    assert output_shape({"class_name": "MyLayer", "config": {}}, [None, 3]) is None
    assert output_shape({"class_name": "Dense", "config": {"units": 2}}, None) is None
