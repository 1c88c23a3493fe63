"""The TensorFlow-free ``.keras`` writer writes what Keras' own saver writes for the same model.

Each case writes one ModelSpec twice, with ``write_keras_archive`` and with Keras' saver
(``write_keras_with_keras``: build, compile, ``model.save``), and compares the two weight files
object by object (group paths, ``name`` attributes, every dataset's dtype and bytes), then loads
both with plain ``keras.saving.load_model`` and compares configs, compile configs and weights.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import fixture_path
from surgeon.io import read_model, write_model
from surgeon.io.keras_archive import OPTIMIZER_SLOTS, PLAIN_STATE_LAYERS, unsupported_reason, write_keras_archive
from surgeon.io.keras_model import spec_from_keras_model
from surgeon.io.keras_writer import write_keras_with_keras

FIXTURES = ["convbn", "nested", "compiled_frozen", "late_freeze", "dense_bn", "multi_io", "shared_layer",
            "conv1d_bn", "conv3d_bn", "convtranspose_bn", "channels_first", "lambda_marker"]


def weights_tree(path: str) -> dict:
    """Every group and dataset of the archive's weights file: path -> (attributes, dtype, bytes)."""
    with zipfile.ZipFile(path) as archive:
        data = archive.read("model.weights.h5")
        assert archive.getinfo("model.weights.h5").compress_type == zipfile.ZIP_STORED
    tree = {}
    with h5py.File(io.BytesIO(data), "r") as handle:
        def visit(name, item):
            attributes = {key: str(value) for key, value in item.attrs.items()}
            if isinstance(item, h5py.Dataset):
                tree[name] = (attributes, str(item.dtype), item.shape, item[()].tobytes())
            else:
                tree[name] = (attributes,)
        handle.visititems(visit)
    return tree


def as_json(value):
    return json.loads(json.dumps(value))


def assert_written_like_keras(spec, tmp_path, allow_code=False):
    import keras

    assert unsupported_reason(spec) is None
    direct, saved = str(tmp_path / "direct.keras"), str(tmp_path / "saved.keras")
    write_keras_archive(spec, direct)
    write_keras_with_keras(spec, saved, allow_code=allow_code)
    expected, written = weights_tree(saved), weights_tree(direct)
    assert sorted(written) == sorted(expected)
    for name in expected:
        assert written[name] == expected[name], name
    with zipfile.ZipFile(direct) as archive:
        assert sorted(json.loads(archive.read("metadata.json"))) == ["date_saved", "keras_version"]
    ours = keras.saving.load_model(direct, safe_mode=not allow_code)
    theirs = keras.saving.load_model(saved, safe_mode=not allow_code)
    assert as_json(ours.get_config()) == as_json(theirs.get_config())
    assert ours.compiled == theirs.compiled
    if theirs.compiled:
        assert as_json(ours.get_compile_config()) == as_json(theirs.get_compile_config())
    assert [v.path for v in ours.weights] == [v.path for v in theirs.weights]
    for a, b in zip(ours.weights, theirs.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
        assert a.trainable == b.trainable, a.path


@pytest.mark.parametrize("model", FIXTURES)
@pytest.mark.parametrize("source", ["h5", "keras"])
def test_direct_keras_archive_equals_keras_own_save(model, source, tmp_path):
    spec = read_model(fixture_path(f"{model}.{source}"))
    assert_written_like_keras(spec, tmp_path, allow_code=model == "lambda_marker")


def every_plain_state_layer():
    """One functional model holding an instance of every class in PLAIN_STATE_LAYERS."""
    import keras
    from keras import layers

    image, sequence = keras.Input((8, 8, 4)), keras.Input((8, 4))
    volume, vector, tokens = keras.Input((4, 4, 4, 2)), keras.Input((6,)), keras.Input((5,), dtype="int32")
    per_input = {
        image: [layers.Conv2D(3, 3), layers.Conv2DTranspose(3, 3), layers.DepthwiseConv2D(3, depth_multiplier=2),
                layers.SeparableConv2D(3, 3), layers.BatchNormalization(), layers.Cropping2D(1),
                layers.ZeroPadding2D(1), layers.UpSampling2D(), layers.MaxPooling2D(), layers.AveragePooling2D(2),
                layers.GlobalAveragePooling2D(), layers.GlobalMaxPooling2D(), layers.SpatialDropout2D(0.1)],
        sequence: [layers.Conv1D(3, 3), layers.Conv1DTranspose(3, 3), layers.DepthwiseConv1D(3),
                   layers.SeparableConv1D(3, 3, use_bias=False), layers.Cropping1D(1), layers.ZeroPadding1D(1),
                   layers.UpSampling1D(), layers.MaxPooling1D(), layers.AveragePooling1D(2),
                   layers.GlobalAveragePooling1D(), layers.GlobalMaxPooling1D(), layers.SpatialDropout1D(0.1),
                   layers.LayerNormalization(), layers.Permute((2, 1))],
        volume: [layers.Conv3D(3, 2), layers.Conv3DTranspose(3, 2), layers.Cropping3D(1), layers.ZeroPadding3D(1),
                 layers.UpSampling3D(), layers.MaxPooling3D(), layers.AveragePooling3D(2),
                 layers.GlobalAveragePooling3D(), layers.GlobalMaxPooling3D(), layers.SpatialDropout3D(0.1)],
        vector: [layers.Dense(3), layers.Dense(3, use_bias=False),
                 layers.EinsumDense("ab,bc->ac", output_shape=3, bias_axes="c"), layers.PReLU(),
                 layers.Normalization(), layers.Activation("tanh"), layers.ReLU(), layers.LeakyReLU(), layers.ELU(),
                 layers.Softmax(), layers.Identity(), layers.Flatten(), layers.Reshape((2, 3)),
                 layers.RepeatVector(2), layers.Rescaling(0.5, 1.0), layers.Dropout(0.1), layers.GaussianNoise(0.1),
                 layers.GaussianDropout(0.1), layers.AlphaDropout(0.1), layers.ActivityRegularization(),
                 layers.BatchNormalization(center=False, scale=False), layers.Lambda(lambda x: x * 2)],
        tokens: [layers.Embedding(10, 3)],
    }
    outputs = [layer(source) for source, kinds in per_input.items() for layer in kinds]
    outputs += [merge()([vector, vector]) for merge in (layers.Add, layers.Subtract, layers.Multiply, layers.Average,
                                                        layers.Maximum, layers.Minimum, layers.Concatenate)]
    outputs.append(layers.Dot(axes=1)([vector, vector]))
    rng = np.random.default_rng(0)
    model = keras.Model([image, sequence, volume, vector, tokens], outputs)
    for variable in model.weights:  # non-trivial values everywhere, statistics included
        variable.assign(rng.normal(size=variable.shape).astype(variable.dtype) if variable.dtype != "int64" else 3)
    return model


def test_every_plain_state_layer_is_written_like_keras(tmp_path):
    model = every_plain_state_layer()
    present = {type(layer).__name__ for layer in model.layers}
    assert PLAIN_STATE_LAYERS <= present, f"untested rows: {sorted(PLAIN_STATE_LAYERS - present)}"
    model.layers[-3].trainable = False  # a frozen layer keeps its variables' order
    assert_written_like_keras(spec_from_keras_model(model), tmp_path, allow_code=True)


OPTIMIZERS = [
    ("SGD", {}), ("SGD", {"momentum": 0.9}), ("Adam", {}), ("Adam", {"amsgrad": True}), ("AdamW", {}),
    ("Adamax", {}), ("Lion", {}), ("Adagrad", {"initial_accumulator_value": 0.25}), ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.5, "centered": True}),
]


@pytest.mark.parametrize("optimizer,options", OPTIMIZERS)
def test_fresh_optimizer_state_is_written_like_keras(optimizer, options, tmp_path):
    import keras

    inputs = keras.Input((4,))
    hidden = keras.layers.BatchNormalization()(keras.layers.Dense(3, name="frozen")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    model.get_layer("frozen").trainable = False
    model.compile(getattr(keras.optimizers, optimizer)(learning_rate=0.01, **options), "mse", metrics=["mae"])
    assert_written_like_keras(spec_from_keras_model(model), tmp_path)


def test_optimizer_rows_are_all_tested():
    assert {name for name, _ in OPTIMIZERS} == set(OPTIMIZER_SLOTS)


def test_layers_that_own_layers_fall_back_to_keras_saver_and_say_so(tmp_path):
    import keras

    inputs = keras.Input((5, 4))
    hidden = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))(inputs)
    outputs = keras.layers.MultiHeadAttention(2, 4)(hidden, hidden)
    model = keras.Model(inputs, outputs)
    spec = spec_from_keras_model(model)
    out = str(tmp_path / "rnn.keras")
    note = write_model(spec, out)
    assert "Keras' own saver" in note and "Bidirectional" in note
    loaded = keras.saving.load_model(out)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_direct_keras_writer_does_not_import_tensorflow(tmp_path):
    code = (
        "import sys; from surgeon.io import read_model, write_model; "
        f"note = write_model(read_model({fixture_path('nested.h5')!r}), {str(tmp_path / 'out.keras')!r}); "
        "assert note is None, note; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def applications():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import applications as module

    return module


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["flat", "nested"])
@pytest.mark.parametrize("arch", list(applications().ARCHS))
def test_keras_applications_are_written_like_keras(arch, variant, tmp_path):
    """The sweep: every keras.applications architecture surgeon's sweeps build, flat and nested.

    A model the direct writer cannot express (a custom layer class) is skipped with its reason;
    the fallback then writes it with Keras' own saver.
    """
    model = applications().build(arch, variant, frozen=variant == "nested")
    model.compile("adam", "mse")
    source = str(tmp_path / "source.keras")
    model.save(source)
    spec = read_model(source)
    reason = unsupported_reason(spec)
    if reason:
        pytest.skip(f"written by Keras' saver: {reason}")
    assert_written_like_keras(spec, tmp_path)


def test_the_archive_is_a_valid_zip_with_the_weights_written_in_place(tmp_path):
    """zipfile reads the archive and every member's CRC, in Keras' member order, and nothing is left
    beside it (that its contents load as Keras' own save's: assert_written_like_keras above)."""
    spec = read_model(fixture_path("nested.keras"))
    path = str(tmp_path / "m.keras")
    write_keras_archive(spec, path)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
        json.loads(archive.read("config.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]  # nothing left beside it
