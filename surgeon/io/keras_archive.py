"""Write a ModelSpec as a Keras 3 ``.keras`` archive with json, h5py and ``stored_zip`` alone (no TensorFlow).

The inverse of ``keras_reader``, following ``keras/src/saving/saving_lib.py`` (``save_model``):
a zip (stored, not deflated) of ``metadata.json``, ``config.json`` and ``model.weights.h5``. In
the weights file every saveable object gets a group at its attribute path; for a functional model
that is ``layers/<snake_case class name>[_<n>]`` in ``model.layers`` order (``_save_container_state``
numbers repeats of a class), with a ``vars`` subgroup carrying the layer's name in its ``name``
attribute and its variables as ``0, 1, ...`` (``_trainable_variables + _non_trainable_variables``).
A compiled model adds ``optimizer/vars`` (``iterations`` and ``learning_rate`` for a fresh one).

Only layers whose saved state is exactly that are written here (``PLAIN_STATE_LAYERS``, each row
checked against Keras' own saver by tests/test_keras_archive.py). A layer that owns sublayers or
saves more than its variables (RNN cells, MultiHeadAttention, Bidirectional, TimeDistributed,
lookups, quantized or LoRA layers, custom classes) makes ``unsupported_reason`` name it, and
``keras_writer.write_keras`` falls back to Keras' saver.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Callable

import h5py
import numpy as np

from surgeon.graph import Graph
from surgeon.io.dialects import to_keras_config
from surgeon.io.h5_writer import keras_version
from surgeon.io.stored_zip import stored_archive
from surgeon.weight_names import WEIGHT_NAMES, is_trainable_weight, weight_names
from surgeon.spec import ModelSpec, is_model_config, layer_name, trainable_flag

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"

# Built-in layers whose .keras state is their own variables and nothing else: no sublayers, no
# assets, no custom save_own_variables beyond the kernel/bias one (Dense, Conv, EinsumDense unless
# quantized or LoRA). Weightless layers still get an (empty) group with their name.
WEIGHTLESS_LAYERS = frozenset({
    "InputLayer", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Identity",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
    "Flatten", "Reshape", "Permute", "RepeatVector", "Rescaling",
    "Cropping1D", "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Lambda",
})
PLAIN_STATE_LAYERS = WEIGHTLESS_LAYERS | frozenset(WEIGHT_NAMES)

# A compiled model is saved with its optimizer built for the trainable variables: ``iterations``
# and ``learning_rate`` (base_optimizer.__init__), then each optimizer's slots from its build().
# A row gives the slot groups for an optimizer config: each group is a list of initial values,
# created interleaved per trainable variable (add_optimizer_variables), groups one after another.
OPTIMIZER_SLOTS: dict[str, Callable[[dict], list[list[float]]]] = {
    "SGD": lambda config: [[0.0]] if config.get("momentum", 0.0) != 0 else [],
    "Adam": lambda config: [[0.0, 0.0]] + ([[0.0]] if config.get("amsgrad") else []),
    "AdamW": lambda config: [[0.0, 0.0]] + ([[0.0]] if config.get("amsgrad") else []),
    "Adamax": lambda config: [[0.0, 0.0]],
    "Lion": lambda config: [[0.0]],
    "Adagrad": lambda config: [[config.get("initial_accumulator_value", 0.1)]],
    "RMSprop": lambda config: (
        [[0.0]] + ([[0.0]] if config.get("momentum", 0.0) > 0 else []) + ([[0.0]] if config.get("centered") else [])
    ),
}


def snake_case(name: str) -> str:
    """``keras.src.utils.naming.to_snake_case``: the group name of an object in a container."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def unsupported_reason(spec: ModelSpec) -> str | None:
    """Why the direct writer cannot express ``spec`` (then Keras' saver writes it), or None."""
    reason = _unsupported_in(spec.config, "")
    if reason:
        return reason
    if spec.assets:  # files beside the weights (lookup vocabularies): Keras' saver places them
        return f"the assets of layer '{next(iter(spec.assets))}'"
    for path, named in spec.weights.items():
        for name, value in named.items():
            dtype = np.dtype(getattr(value, "dtype", "float32"))
            if dtype.kind not in "biuf" or dtype.name == "bfloat16":
                return f"weight '{path}/{name}' of dtype {dtype.name}"
    if spec.compile_config and _fresh_optimizer_state(spec.compile_config) is None:
        optimizer = spec.compile_config.get("optimizer")
        shown = optimizer.get("class_name") if isinstance(optimizer, dict) else optimizer
        return f"optimizer {shown!r} (its state before training is not known here)"
    return None


def _unsupported_in(model: dict, prefix: str) -> str | None:
    for layer in model["config"]["layers"]:
        path = prefix + layer_name(layer)
        class_name = layer.get("class_name")
        if is_model_config(layer):
            if class_name != "Functional":
                return f"nested model '{path}' of class {class_name}"
            reason = _unsupported_in(layer, path + "/")
            if reason:
                return reason
            continue
        module = layer.get("module", "keras.layers")
        config = layer.get("config", {})
        if class_name not in PLAIN_STATE_LAYERS or module != "keras.layers":
            return f"layer '{path}' of class {class_name}"
        if config.get("lora_rank") or config.get("quantization_config") or _is_quantized(config):
            return f"layer '{path}' is quantized or has LoRA weights"
    return None


def _is_quantized(config: dict) -> bool:
    policy = config.get("dtype")
    name = policy.get("config", {}).get("name") if isinstance(policy, dict) else policy
    return isinstance(name, str) and name.startswith(("int8", "int4", "float8", "gptq", "awq"))


def _fresh_optimizer_state(compile_config: dict, trainable: list | None = None) -> list[np.ndarray] | None:
    """The variables of a freshly compiled optimizer for ``trainable`` weights, or None when not known."""
    optimizer = compile_config.get("optimizer")
    if not isinstance(optimizer, dict) or optimizer.get("class_name") not in OPTIMIZER_SLOTS:
        return None
    if optimizer.get("module", "keras.optimizers") != "keras.optimizers":
        return None
    config = optimizer.get("config") or {}
    rate = config.get("learning_rate")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        return None  # a schedule: no learning_rate variable, and schedules may add their own
    if config.get("use_ema") or (config.get("gradient_accumulation_steps") or 1) > 1 or config.get("loss_scale_factor"):
        return None
    state = [np.array(0, dtype="int64"), np.array(rate, dtype="float32")]
    for group in OPTIMIZER_SLOTS[optimizer["class_name"]](config):
        for weight in trainable or []:
            weight = np.asarray(weight)
            state += [np.full(weight.shape, initial, dtype=weight.dtype) for initial in group]
    return state


def trainable_weights(model: dict, prefix: str, weights: dict) -> list:
    """``model.trainable_weights`` of a functional config: layers in ``model.layers`` order, recursively."""
    if not trainable_flag(model):
        return []
    graph = Graph.of(model)
    found = []
    for name in graph.keras_layer_order():
        layer = graph.layers[name]
        if is_model_config(layer):
            found += trainable_weights(layer, prefix + name + "/", weights)
        elif trainable_flag(layer):
            class_name = layer.get("class_name", "")
            found += [value for weight, value in weights.get(prefix + name, {}).items() if is_trainable_weight(class_name, weight)]
    return found


def write_keras_archive(spec: ModelSpec, path: str) -> None:
    """Write ``spec`` to ``path`` as Keras' saver would; ``unsupported_reason(spec)`` must be None.

    h5py writes the weights file in place, as the archive's last member (``stored_zip``): the
    weights are written once, with no second copy of them in memory or on disk.
    """
    config = to_keras_config(spec.config)
    config.setdefault("module", "keras.src.models.functional")
    config.setdefault("registered_name", "Functional")
    if spec.compile_config:
        config["compile_config"] = spec.compile_config
    metadata = {"keras_version": keras_version(), "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    members = [(METADATA, json.dumps(metadata).encode()), (CONFIG, json.dumps(config).encode())]
    with stored_archive(path, members, WEIGHTS) as weights_file:
        with h5py.File(weights_file, "w") as weights:
            _write_model_state(weights, spec.config, "", "", spec.weights)
            trainable = trainable_weights(spec.config, "", spec.weights)
            optimizer = _fresh_optimizer_state(spec.compile_config, trainable) if spec.compile_config else None
            if optimizer is not None:
                name = (spec.compile_config["optimizer"].get("config") or {}).get("name") or "optimizer"
                _write_vars(weights, "optimizer", name, optimizer)


def _write_model_state(handle: h5py.File, model: dict, prefix: str, layer_prefix: str, weights: dict) -> None:
    """One functional model at group ``prefix`` ("" for the root): its vars, then its layers.

    ``layer_prefix`` is the model's layer path in the spec ("" for the root, "base/" inside).
    """
    _write_vars(handle, prefix, model["config"].get("name", "model"), [])
    graph = Graph.of(model)
    used: dict[str, int] = {}
    for name in graph.keras_layer_order():
        layer = graph.layers[name]
        class_name = "Functional" if is_model_config(layer) else layer["class_name"]
        group = _unique(snake_case(class_name), used)
        group_path = f"{prefix}/layers/{group}" if prefix else f"layers/{group}"
        layer_path = layer_prefix + name
        if is_model_config(layer):
            _write_model_state(handle, layer, group_path, layer_path + "/", weights)
            continue
        named = weights.get(layer_path, {})
        order = weight_names(class_name, layer.get("config", {}), len(named))
        values = [named[key] for key in order] if set(order) == set(named) else list(named.values())
        _write_vars(handle, group_path, name, values)


def _unique(name: str, used: dict[str, int]) -> str:
    """``saving_lib._get_unique_name``: ``conv2d``, ``conv2d_1``, ... within one container."""
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def _write_vars(handle: h5py.File, prefix: str, name: str, values: list) -> None:
    group = handle.create_group(f"{prefix}/vars" if prefix else "vars")
    group.attrs["name"] = name
    for index, value in enumerate(values):
        group.create_dataset(str(index), data=np.asarray(value))
