"""Readers and writers: every fixture survives read -> write -> plain Keras reload unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import fixture_path, plain_model
from surgeon.io import read_model, write_model
from surgeon.io.hdf5 import read_name_list
from surgeon.io.keras_model import build_keras_model, spec_from_keras_model
from surgeon.io.keras_model import load_plain
from surgeon.verify import seeded_inputs

MODELS = ["convbn", "nested", "compiled_frozen", "late_freeze", "dense_bn", "multi_io", "shared_layer",
          "conv1d_bn", "conv3d_bn", "convtranspose_bn", "channels_first"]


def outputs(model, inputs):
    result = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    return [np.asarray(r) for r in (result if isinstance(result, (list, tuple)) else [result])]


def assert_same_weights(reference, candidate):
    for layer in reference.layers:
        other = candidate.get_layer(layer.name)
        for a, b in zip(layer.get_weights(), other.get_weights()):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
        assert layer.trainable == other.trainable, layer.name


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("source", ["h5", "keras"])
def test_reader_rebuilds_the_model_plain_keras_loads(model, source):
    name = f"{model}.{source}"
    reference = plain_model(name)
    rebuilt = build_keras_model(read_model(fixture_path(name)))
    assert_same_weights(reference, rebuilt)
    x = seeded_inputs(reference, 2)
    for a, b in zip(outputs(reference, x), outputs(rebuilt, x)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("target", ["h5", "keras"])
def test_written_file_reloads_in_plain_keras_bit_for_bit(model, target, tmp_path):
    source = f"{model}.h5"
    out = str(tmp_path / f"out.{target}")
    write_model(read_model(fixture_path(source)), out)
    assert_same_weights(plain_model(source), load_plain(out))


def test_h5_writer_layer_order_matches_keras_for_nested_models(tmp_path):
    """The legacy loader matches weight groups by position: order must be Keras' own."""
    import h5py

    out = str(tmp_path / "nested.h5")
    write_model(read_model(fixture_path("nested.keras")), out)
    with h5py.File(out) as written, h5py.File(fixture_path("nested.h5")) as keras_written:
        for group, attribute in (("model_weights", "layer_names"), ("model_weights/base", "weight_names")):
            assert read_name_list(written[group], attribute) == read_name_list(keras_written[group], attribute)


def test_compiled_input_is_written_with_a_fresh_optimizer_that_can_fit(tmp_path):
    out = str(tmp_path / "nested.h5")
    write_model(read_model(fixture_path("nested.h5")), out)
    model = load_plain(out)
    assert model.optimizer.__class__.__name__ == "Adam"
    x = np.random.default_rng(0).uniform(0, 1, (4, 16, 16, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    model.fit(x, y, epochs=1, verbose=0)  # plain load of the original .h5 fails here: "Unknown variable"


def test_reader_never_imports_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys; from surgeon.io import read_model; from surgeon.inspection import inspect_spec;"
        f"inspect_spec(read_model({fixture_path('nested.keras')!r}));"
        f"inspect_spec(read_model({fixture_path('nested.h5')!r}));"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TF'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_in_memory_model_round_trips_through_the_spec():
    reference = plain_model("multi_io.keras")
    rebuilt = build_keras_model(spec_from_keras_model(reference))
    assert_same_weights(reference, rebuilt)


def test_in_memory_model_with_keras_ops_between_its_layers_round_trips():
    """keras-hub's ResNetV2 pads with ``ops.pad`` and CSPNet splits with ``ops.split``: a functional
    config holds those ops beside the layers, and ``get_layer`` does not find them."""
    import keras

    x = keras.Input((4, 4, 3))
    y = keras.layers.Conv2D(2, 1, name="conv")(x)
    y = keras.ops.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=-1.0)
    left, right = keras.ops.split(y, 2, axis=-1)
    # MobileNetV3's squeeze-and-excite multiplies two tensors with ops.multiply, which the door
    # turns into a Multiply layer of the same name (keras3_fixups): no live layer of that name.
    product = keras.ops.multiply(left, right)
    reference = keras.Model(x, keras.layers.Add(name="add")([left, product]))

    spec = spec_from_keras_model(reference)

    assert set(spec.weights) == {"conv"}
    rebuilt = build_keras_model(spec)
    inputs = seeded_inputs(reference, 2)
    np.testing.assert_array_equal(outputs(reference, inputs)[0], outputs(rebuilt, inputs)[0])


def test_sequential_models_become_functional_with_the_same_outputs(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, name="a"), keras.layers.BatchNormalization(name="bn")])
    model.get_layer("bn").set_weights([np.full(3, 2.0), np.ones(3), np.full(3, 0.5), np.full(3, 4.0)])
    path = str(tmp_path / "seq.h5")
    model.save(path)
    spec = read_model(path)
    assert spec.config["class_name"] == "Functional"
    rebuilt = build_keras_model(spec)
    x = np.random.default_rng(1).standard_normal((3, 5)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), rebuilt.predict(x, verbose=0))


def test_weights_of_a_nested_sequential_land_on_its_own_layers(tmp_path):
    """Keras 3 prefixes a nested Sequential's name to its variable paths (ConvNeXt's stem does this)."""
    import keras

    stem = keras.Sequential([keras.layers.Conv2D(4, 2, name="stem_conv"), keras.layers.LayerNormalization(name="stem_norm")], name="stem")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(stem(inputs)))
    path = str(tmp_path / "stem.h5")
    model.save(path)
    spec = read_model(path)
    assert set(spec.weights) == {"stem/stem_conv", "stem/stem_norm", "out"}
    np.testing.assert_array_equal(spec.weights["stem/stem_conv"]["kernel"], stem.get_layer("stem_conv").get_weights()[0])


@pytest.mark.parametrize("target", ["h5", "keras"])
def test_a_nested_model_as_the_output_round_trips(tmp_path, target):
    """Keras counts a nested Functional's creation node in output_layers but not in inbound nodes."""
    import keras

    inner_input = keras.Input((4,))
    net = keras.Model(inner_input, keras.layers.Dense(3, name="dense_in_net")(inner_input), name="net")
    seq = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense_in_seq")], name="seq")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, [net(inputs), seq(inputs)])
    source, out = str(tmp_path / f"m.{target}"), str(tmp_path / f"out.{target}")
    model.save(source)
    spec = read_model(source)
    assert spec.config["config"]["output_layers"] == [["net", 0, 0], ["seq", 0, 0]]  # call indices
    write_model(spec, out)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype("float32")
    for a, b in zip(model.predict(x, verbose=0), load_plain(out).predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)


def test_a_loss_object_in_an_h5_training_config_compiles_and_fits_after_rewriting(tmp_path):
    """.h5 files store loss objects without 'module'; Keras cannot locate the class without it."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.save(tmp_path / "m.h5")
    write_model(read_model(str(tmp_path / "m.h5")), str(tmp_path / "out.h5"))
    reloaded = load_plain(str(tmp_path / "out.h5"))
    assert type(reloaded.loss).__name__ == "SparseCategoricalCrossentropy" and reloaded.loss.from_logits
    reloaded.fit(np.zeros((4, 4), "float32"), np.array([0, 1, 2, 0]), verbose=0)
