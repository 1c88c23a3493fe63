"""ModelSpec: one in-memory description of a Keras model, as plain data.

The description is the Keras 3 functional config (JSON-like dicts, as Keras itself writes it into
a file) plus the weights as named numpy arrays per layer. Readers translate every file dialect into
it at the door; passes rewrite it; writers turn it back into files. Nothing here imports TensorFlow.

Layer paths name a layer inside nested models with "/" ("base/conv1"): Keras 3 refuses "/" in
layer names, so the separator cannot collide with a name.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Iterator

import numpy as np

from surgeon.errors import SurgeonError

MODEL_CLASSES = ("Functional", "Model", "Sequential")


@dataclasses.dataclass(frozen=True)
class WeightShape:
    """A weight known only by its shape and dtype (``inspect`` never reads the values)."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclasses.dataclass
class Source:
    path: str | None = None
    format: str | None = None  # "keras" | "h5" | "saved_model" | "json" | "memory"
    keras_version: str | None = None
    dialect: str = "keras3"  # "keras3" | "keras2"
    weights_path: str | None = None  # where the weights are, when not in ``path`` (JSON + weights)


@dataclasses.dataclass
class ModelSpec:
    """A Keras model as data.

    config: ``{"class_name": "Functional", "config": {"name", "trainable", "layers",
        "input_layers", "output_layers"}}``; Sequential models are turned into Functional ones
        at the door, so passes see one graph form.
    weights: layer path -> {weight name -> array}, in the order of Keras 3 ``layer.weights``
        (``kernel``, ``bias``; ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``).
    compile_config: the ``.keras`` form of ``model.get_compile_config()`` or None (uncompiled).
    optimizer_variables: names of the optimizer slots stored in the file (their values are
        never carried: a rewritten model gets a fresh optimizer of the same config).
    notes: what was translated at the door, for reports.
    inner_batch_norms: BNs no rewrite can reach, inside layers kept as one unit.
    assets: layer path -> {file path relative to the layer's object path -> bytes}: state a
        layer keeps in files rather than variables (an adapted IntegerLookup's vocabulary),
        which only the ``.keras`` format stores (``assets/`` in the archive).
    """

    config: dict
    weights: dict[str, dict[str, Any]]
    compile_config: dict | None = None
    optimizer_variables: list[str] | None = None
    source: Source = dataclasses.field(default_factory=Source)
    notes: list[str] = dataclasses.field(default_factory=list)
    # BatchNormalization layers inside layers surgeon rewrites as one unit (keras-hub blocks such as
    # FusedMBConvBlock), by that layer's path: known only when a reader built the model (keras-hub).
    inner_batch_norms: dict[str, int] = dataclasses.field(default_factory=dict)
    assets: dict[str, dict[str, bytes]] = dataclasses.field(default_factory=dict)

    def copy(self) -> "ModelSpec":
        """A deep copy of the config; weight arrays are shared (passes replace, never mutate)."""
        return dataclasses.replace(
            self,
            config=copy.deepcopy(self.config),
            weights={path: dict(ws) for path, ws in self.weights.items()},
            compile_config=copy.deepcopy(self.compile_config),
            notes=list(self.notes),
            assets={path: dict(files) for path, files in self.assets.items()},
        )

    @property
    def name(self) -> str:
        return self.config["config"].get("name", "model")

    def layers(self) -> Iterator[tuple[str, dict]]:
        """Every layer config with its path, depth first, nested models before their layers."""
        yield from iter_layers(self.config)



# --- config helpers --------------------------------------------------------------------------


def is_model_config(layer: dict) -> bool:
    return layer.get("class_name") in MODEL_CLASSES and isinstance(layer.get("config"), dict) and (
        "layers" in layer["config"]
    )


def iter_layers(model_config: dict, prefix: str = "") -> Iterator[tuple[str, dict]]:
    for layer in model_config["config"]["layers"]:
        path = prefix + layer_name(layer)
        yield path, layer
        if is_model_config(layer):
            yield from iter_layers(layer, path + "/")


def layer_name(layer: dict) -> str:
    return layer.get("name") or layer["config"]["name"]


def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_1``, ``base_2``, ... whichever is not in ``taken``; the result is added to ``taken``."""
    name, counter = base, 1
    while name in taken:
        name = f"{base}_{counter}"
        counter += 1
    taken.add(name)
    return name


def dtype_policy(name: str) -> dict:
    """The serialized ``DTypePolicy`` Keras 3 writes as a layer's ``dtype`` (e.g. "float32", "mixed_float16")."""
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}, "registered_name": None}


def parent_path(path: str) -> str:
    return path.rpartition("/")[0]


def is_keras_op(layer: dict) -> bool:
    """A Keras op called on a symbolic tensor (keras-hub ResNetV2's ``ops.pad``, CSPNet's
    ``ops.split``): a functional config holds it beside the layers, with no weights and no flag,
    and ``Model.get_layer`` does not find it.

    Example:
        >>> is_keras_op({"module": "keras.src.ops.numpy", "class_name": "Pad", "config": {"name": "pad"}})
        True
    """
    return str(layer.get("module") or "").startswith("keras.src.ops.")


def takes_trainable_flag(layer: dict) -> bool:
    """Whether a layer's config may carry ``trainable``: Keras writes it for every class whose
    constructor accepts it (Layer.get_config); InputLayer and Discretization write none and
    refuse one when loading (``__init__() got an unexpected keyword argument 'trainable'``)."""
    return "trainable" in layer.get("config", {})


def trainable_flag(layer: dict) -> bool:
    return bool(layer.get("config", {}).get("trainable", True))


def effectively_frozen(spec_config: dict) -> dict[str, bool]:
    """Layer path -> True when Keras will not train it.

    A layer is frozen by its own flag or by any enclosing model's flag. (Keras 3 does not push a
    nested model's ``trainable=False`` into its layers on load, so a file can say otherwise: that
    is a hazard ``inspect`` reports, and ``freeze`` removes.)
    """
    frozen: dict[str, bool] = {}
    for path, layer in iter_layers(spec_config):
        parent = parent_path(path)
        frozen[path] = (not trainable_flag(layer)) or (frozen.get(parent, False) if parent else False)
    if not trainable_flag(spec_config):
        frozen = {path: True for path in frozen}
    return frozen


# --- keras tensors inside inbound nodes ------------------------------------------------------


def is_keras_tensor(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("class_name") == "__keras_tensor__"


# The one pair of walks over the structures that hold keras tensors (a node's args and kwargs, in
# lists, tuples and dicts): ``keras_tensors`` reads them, ``map_tensor_refs`` rewrites them.


def keras_tensors(obj: Any) -> Iterator[dict]:
    """Every ``__keras_tensor__`` dict inside ``obj``, in order.

    Example:
        >>> node = {"args": [[keras_tensor("a", 0, 0), keras_tensor("b", 1, 0)]], "kwargs": {"mask": None}}
        >>> [tensor["config"]["keras_history"] for tensor in keras_tensors(node)]
        [['a', 0, 0], ['b', 1, 0]]
    """
    if is_keras_tensor(obj):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from keras_tensors(value)
    elif isinstance(obj, (list, tuple)):  # configs serialized in memory hold tuples
        for value in obj:
            yield from keras_tensors(value)


def iter_tensor_refs(obj: Any) -> Iterator[tuple[str, int, int]]:
    """Every ``(layer, node_index, tensor_index)`` that a node's args/kwargs refer to, in order."""
    for tensor in keras_tensors(obj):
        name, node_index, tensor_index = tensor["config"]["keras_history"]
        yield name, int(node_index), int(tensor_index)


def map_tensor_refs(obj: Any, fn) -> Any:
    """A copy of ``obj`` in which each keras tensor is replaced by ``fn(tensor_dict)``.

    Example:
        >>> renamed = map_tensor_refs([keras_tensor("a", 0, 0), 2.0], lambda t: keras_tensor("b", 0, 0))
        >>> renamed[0]["config"]["keras_history"], renamed[1]
        (['b', 0, 0], 2.0)
    """
    if is_keras_tensor(obj):
        return fn(obj)
    if isinstance(obj, dict):
        return {key: map_tensor_refs(value, fn) for key, value in obj.items()}
    if isinstance(obj, list):
        return [map_tensor_refs(value, fn) for value in obj]
    if isinstance(obj, tuple):
        return tuple(map_tensor_refs(value, fn) for value in obj)
    return obj


def keras_tensor(name: str, node_index: int, tensor_index: int, shape=None, dtype="float32") -> dict:
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": shape, "dtype": dtype, "keras_history": [name, node_index, tensor_index]},
    }


def _is_io_leaf(struct: Any) -> bool:
    return isinstance(struct, (list, tuple)) and len(struct) == 3 and isinstance(struct[0], str)


def io_refs(struct: Any) -> list[tuple[str, int, int]]:
    """Flatten a model's ``input_layers``/``output_layers`` (a leaf is ``[name, node, tensor]``).

    In Keras' order: ``keras.tree.flatten`` visits a dict's values by sorted key, whatever order
    the config lists them in (a model with dict outputs orders ``model.layers`` by it).
    """
    found: list[tuple[str, int, int]] = []

    def collect(leaf):
        try:
            found.append((leaf[0], int(leaf[1]), int(leaf[2])))
        except (TypeError, ValueError):
            raise _malformed_io() from None
        return leaf

    map_io_refs(_sorted_dicts(struct), collect)
    return found


def _sorted_dicts(struct: Any) -> Any:
    if isinstance(struct, dict):
        return {key: _sorted_dicts(struct[key]) for key in sorted(struct)}
    if isinstance(struct, (list, tuple)) and not _is_io_leaf(struct):
        return [_sorted_dicts(value) for value in struct]
    return struct


def map_io_refs(struct: Any, fn) -> Any:
    """A copy of an ``input_layers``/``output_layers`` structure with each ``[name, node, tensor]`` leaf replaced by ``fn(leaf)``."""
    if _is_io_leaf(struct):
        return fn(struct)
    if isinstance(struct, dict):
        return {key: map_io_refs(value, fn) for key, value in struct.items()}
    if isinstance(struct, (list, tuple)):
        return [map_io_refs(value, fn) for value in struct]
    # A string would iterate into itself forever; anything else is not a tensor reference either.
    raise _malformed_io()


def _malformed_io() -> SurgeonError:
    return SurgeonError("the model's input_layers/output_layers are malformed; the file is corrupt, save the model again")


# --- code stored in configs ------------------------------------------------------------------

# Keras runs these when it deserializes them: a Lambda layer's function (marshalled bytecode in
# both .keras and legacy .h5), and any Python lambda serialized as a value anywhere in a layer's
# config (an activation, an initializer argument), which Keras writes as {"class_name": "__lambda__"}.
CODE_LAYER_CLASSES = ("Lambda",)


def code_carriers(model_config: dict) -> list[str]:
    """Paths of the layers whose config holds Python code that Keras would run on load or call."""
    return [
        path for path, layer in iter_layers(model_config)
        if layer.get("class_name") in CODE_LAYER_CLASSES or (not is_model_config(layer) and _holds_lambda(layer.get("config")))
    ]


def _holds_lambda(obj: Any) -> bool:
    if isinstance(obj, dict):
        return obj.get("class_name") == "__lambda__" or any(_holds_lambda(value) for value in obj.values())
    if isinstance(obj, list):
        return any(_holds_lambda(value) for value in obj)
    return False
