"""Write a ModelSpec as a Keras 3 whole-model ``.h5`` file with h5py alone (no TensorFlow).

Keras' legacy loader matches weight groups to ``model.layers`` *by position*
(keras/src/legacy/saving/legacy_h5_format.py: load_weights_from_hdf5_group), so the
``layer_names`` attribute follows the layer order Keras computes for the graph
(``Graph.keras_layer_order``), and each group lists its weights in the order of
``layer.trainable_weights + layer.non_trainable_weights``. No optimizer state is written: the
model reloads compiled with a fresh optimizer of the stored config.
"""

from __future__ import annotations

import json
from importlib import metadata

import h5py
import numpy as np

from surgeon.graph import Graph
from surgeon.io.compile_config import to_training_config
from surgeon.io.dialects import to_keras_config
from surgeon.io.hdf5 import write_name_list
from surgeon.spec import ModelSpec, is_model_config, layer_name, trainable_flag
from surgeon.weight_names import is_trainable_weight


def keras_version() -> str:
    try:
        return metadata.version("keras")
    except metadata.PackageNotFoundError:
        return "3.0.0"


def write_h5(spec: ModelSpec, path: str, *, allow_code: bool = False) -> None:
    """Write ``spec`` as a legacy ``.h5`` with h5py alone (``allow_code`` is moot: nothing is built or run)."""
    version = keras_version()
    with h5py.File(path, "w") as handle:
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["keras_version"] = version
        handle.attrs["model_config"] = json.dumps(to_keras_config(spec.config))
        training_config = to_training_config(spec.compile_config)
        if training_config:
            handle.attrs["training_config"] = json.dumps(training_config)
        group = handle.create_group("model_weights")
        group.attrs["backend"] = "tensorflow"
        group.attrs["keras_version"] = version
        order = Graph.of(spec.config).keras_layer_order()
        write_name_list(group, "layer_names", order)
        layers = {layer_name(layer): layer for layer in spec.config["config"]["layers"]}
        for name in sorted(order):
            weights = legacy_weight_order(layers[name], name, spec.weights)
            layer_group = group.create_group(name)
            # Variable paths: Keras 3 names a variable "<its own layer>/<variable>", even in a nested model.
            names = [f"{path.rpartition('/')[2]}/{weight}" for path, weight, _ in weights]
            write_name_list(layer_group, "weight_names", names)
            for stored_name, (_, _, value) in zip(names, weights):
                layer_group.create_dataset(stored_name, data=np.asarray(value))
        write_name_list(group.create_group("top_level_model_weights"), "weight_names", [])


def legacy_weight_order(layer: dict, path: str, weights: dict) -> list[tuple[str, str, object]]:
    """``(layer path, weight name, value)`` in ``trainable_weights + non_trainable_weights`` order."""
    if not is_model_config(layer):
        return [(path, name, value) for name, value in weights.get(path, {}).items()]
    flat = _all_weights(layer, path, weights)
    if not trainable_flag(layer):
        return [(p, n, v) for p, n, v, _ in flat]
    trainable = [(p, n, v) for p, n, v, t in flat if t]
    frozen = [(p, n, v) for p, n, v, t in flat if not t]
    return trainable + frozen


def _all_weights(model: dict, prefix: str, weights: dict) -> list[tuple[str, str, object, bool]]:
    """``model.weights`` order: each layer's weights in ``model.layers`` order, recursively."""
    graph = Graph.of(model)
    result = []
    for name in graph.keras_layer_order():
        layer = graph.layers[name]
        path = f"{prefix}/{name}"
        if is_model_config(layer):
            result += _all_weights(layer, path, weights)
            continue
        for weight, value in weights.get(path, {}).items():
            # A variable's own flag is the layer's flag when it was built (Layer._track_variable).
            trainable = trainable_flag(layer) and is_trainable_weight(layer.get("class_name", ""), weight)
            result.append((path, weight, value, trainable))
    return result
