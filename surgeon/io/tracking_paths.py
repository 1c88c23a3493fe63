"""Weights of a tf.keras 2.13+ ``.keras`` archive or ``.weights.h5`` file, by layer name.

tf.keras' saving_lib (tf_keras/src/saving/saving_lib.py, ``_save_container_state``) stores each
layer of a model's ``layers`` list under a path made of its *class* name in snake case, numbered
in list order among layers of the same class (``layers/conv2d``, ``layers/conv2d_1``,
``layers/functional/layers/batch_normalization_3``), with its variables as ``vars/0, 1, ...`` in
``layer.weights`` order; the layer's own name is not stored (Keras 3.6+ adds a ``name``
attribute, tf.keras never did). The config lists the layers in the same order, so replaying the
numbering over the config finds each layer's group.
"""

from __future__ import annotations

import re

import h5py

from surgeon.errors import SurgeonError
from surgeon.io.hdf5 import read_dataset
from surgeon.spec import is_model_config, layer_name


def snake_case(class_name: str) -> str:
    """tf_keras' ``generic_utils.to_snake_case``.

    Example:
        >>> snake_case("GlobalAveragePooling2D"), snake_case("ReLU"), snake_case("Conv2D")
        ('global_average_pooling2d', 're_lu', 'conv2d')
    """
    intermediate = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", intermediate).lower()
    return name if not name.startswith("_") else "private" + name


def read_tracked_weights(handle: h5py.Group, model_config: dict, values: bool, shown: str) -> dict[tuple, dict]:
    """Original layer name path -> {"0": array, "1": ...} for every layer with variables.

    ``model_config`` is the file's own (untranslated) config: the class names and the layer order
    are the ones the numbering was made from.
    """
    stored: dict[tuple, dict] = {}
    _walk(handle, model_config, (), stored, values, shown)
    return stored


def _walk(group: h5py.Group, model: dict, prefix: tuple, stored: dict, values: bool, shown: str) -> None:
    config = model.get("config")
    layers = config if isinstance(config, list) else config.get("layers", []) if isinstance(config, dict) else []
    if model.get("class_name") == "Sequential":
        # tf_keras' Sequential.layers leaves out the InputLayer its config lists first.
        layers = [layer for layer in layers if layer.get("class_name") != "InputLayer"]
    used: dict[str, int] = {}
    container = group["layers"] if "layers" in group else None
    for layer in layers:
        key = snake_case(str(layer.get("class_name", "")))
        used[key] = used.get(key, -1) + 1
        entry = key if used[key] == 0 else f"{key}_{used[key]}"
        path = prefix + (layer_name(layer),)
        if container is None or entry not in container:
            continue  # a layer without state; one that needs weights is caught by check_spec
        child = container[entry]
        if is_model_config(layer) or isinstance(layer.get("config"), list):
            _walk(child, layer, path, stored, values, shown)
            continue
        variables = child["vars"] if "vars" in child else {}
        if len(variables):
            try:
                stored[path] = {str(i): read_dataset(variables[str(i)], values, shown) for i in range(len(variables))}
            except KeyError:
                raise SurgeonError(f"the weights of layer '{'/'.join(path)}' in {shown} are not numbered 0..{len(variables) - 1}; "
                                   "the file is damaged, save it again") from None
