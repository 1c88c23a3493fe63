"""The graph view agrees with Keras itself (Keras is the independent reference here)."""

from __future__ import annotations

import pytest

from conftest import plain_model
from surgeon.graph import Graph
from surgeon.io.keras_model import spec_from_keras_model


@pytest.mark.parametrize("name", ["convbn.keras", "nested.keras", "multi_io.keras", "shared_layer.keras", "dense_bn.keras"])
def test_keras_layer_order_is_the_order_keras_computes(name):
    model = plain_model(name)
    spec = spec_from_keras_model(model)
    assert Graph.of(spec.config).keras_layer_order() == [layer.name for layer in model.layers]


def test_keras_layer_order_for_a_resnet_style_graph():
    import keras

    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=3)
    spec = spec_from_keras_model(model)
    assert Graph.of(spec.config).keras_layer_order() == [layer.name for layer in model.layers]


def test_a_cycle_is_reported_as_a_corrupt_file():
    from surgeon.errors import SurgeonError
    from surgeon.spec import keras_tensor

    config = {"class_name": "Functional", "config": {
        "name": "m", "trainable": True,
        "layers": [
            {"class_name": "InputLayer", "name": "in", "config": {"name": "in", "batch_shape": [None, 2]}, "inbound_nodes": []},
            {"class_name": "Dense", "name": "a", "config": {"name": "a"}, "inbound_nodes": [{"args": [keras_tensor("b", 0, 0)], "kwargs": {}}]},
            {"class_name": "Dense", "name": "b", "config": {"name": "b"}, "inbound_nodes": [{"args": [keras_tensor("a", 0, 0)], "kwargs": {}}]},
        ],
        "input_layers": ["in", 0, 0], "output_layers": ["b", 0, 0]}}
    with pytest.raises(SurgeonError, match="cycle"):
        Graph.of(config)
