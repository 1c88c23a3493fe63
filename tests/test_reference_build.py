"""A verification reference built without random initializers is the same model as a full build."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import fixture_path, plain_model
from surgeon.io import read_model
from surgeon.io.keras_model import build_keras_model
from surgeon.verify import run


@pytest.mark.parametrize("name", ["nested.keras", "multi_io.h5", "shared_layer.keras"])
def test_never_saved_build_has_the_files_weights_and_outputs(name):
    reference = build_keras_model(read_model(fixture_path(name)), never_saved=True)
    loaded = plain_model(name)  # Keras' own load: the independent reference
    assert [w.path for w in reference.weights] == [w.path for w in loaded.weights]
    for ours, theirs in zip(reference.weights, loaded.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((2, *t.shape[1:])).astype("float32") for t in loaded.inputs]
    for ours, theirs in zip(run(reference, inputs), run(loaded, inputs)):
        np.testing.assert_array_equal(ours, theirs)


def test_only_the_throwaway_build_starts_from_zeros():
    spec = read_model(fixture_path("convbn.h5"))
    kept = build_keras_model(spec)
    throwaway = build_keras_model(spec, never_saved=True)
    conv = next(layer for layer in kept.layers if layer.__class__.__name__ == "Conv2D")
    # The model handed to users keeps the file's initializers (they may save it and train from it).
    assert conv.get_config()["kernel_initializer"]["class_name"] != "Zeros"
    assert throwaway.get_layer(conv.name).get_config()["kernel_initializer"]["class_name"] == "Zeros"
