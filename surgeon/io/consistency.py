"""The checks at the door: a config and weights that describe one buildable model, or one clear error.

Both readers call ``check_spec`` on what they read, so that a file whose config is malformed, whose
graph has a cycle or a dangling reference, whose weights are missing or do not fit the layers, or
which declares absurd sizes, is refused with one line before any pass, writer, ``inspect`` or
TensorFlow sees it. (Keras itself would fail later, with a long message, or try to allocate.)
"""

from __future__ import annotations

from typing import Any, Callable

from surgeon.errors import SurgeonError
from surgeon.graph import Graph
from surgeon.spec import ModelSpec, is_model_config, iter_layers, keras_tensors
from surgeon.weight_names import WEIGHT_NAMES

# Per sample: 2^31 float32 elements are 8 GB. Larger inputs or activations do not come from a real
# model file but from a damaged or hostile one; verification would try to allocate them.
MAX_ELEMENTS_PER_SAMPLE = 2**31


def check_spec(spec: ModelSpec) -> None:
    check_structure(spec.config)
    check_declared_sizes(spec.config)
    check_weights(spec)


# --- structure -----------------------------------------------------------------------------------


def check_layer_entries(model_config, where: str = "the model") -> None:
    """Before translation, in any dialect: every layer entry, at every depth, is a dict with a
    class name and a config dict (Keras 2 Sequential configs are a bare list of layers)."""
    if not isinstance(model_config, dict):
        return  # dialects.translate names what it found instead of a model
    config = model_config.get("config")
    layers = config if isinstance(config, list) else config.get("layers") if isinstance(config, dict) else None
    if layers is None:
        return
    if not isinstance(layers, list):
        raise SurgeonError(f"{where} has no list of layers in its config; the file is corrupt")
    for layer in layers:
        if not isinstance(layer, dict) or not isinstance(layer.get("class_name"), str) or not isinstance(layer.get("config"), (dict, list)):
            raise SurgeonError(f"{where} holds a layer entry without class_name/config; the file is corrupt")
        if isinstance(layer["config"], list) or "layers" in layer["config"]:
            check_layer_entries(layer, f"nested model '{layer['config'].get('name', '?') if isinstance(layer['config'], dict) else '?'}'")


def check_structure(model: dict, where: str = "the model") -> None:
    """Every level of nesting: well-formed entries, then the graph checks (missing layers, cycles)."""
    config = model.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise SurgeonError(f"{where} has no list of layers in its config; the file is corrupt")
    for layer in config["layers"]:
        if not isinstance(layer, dict) or not isinstance(layer.get("config"), dict):
            raise SurgeonError(f"{where} holds a layer entry without a config; the file is corrupt")
        name = layer.get("name") or layer["config"].get("name")
        if not isinstance(name, str) or not name:
            raise SurgeonError(f"{where} holds a layer without a name; the file is corrupt")
        nodes = layer.get("inbound_nodes") or []
        if not isinstance(nodes, list) or not all(isinstance(node, (dict, list)) for node in nodes):
            raise SurgeonError(f"layer '{name}' has malformed inbound nodes; the file is corrupt")
        _check_tensor_refs(nodes, name)
    for key in ("input_layers", "output_layers"):
        if not _is_io_struct(config.get(key)):
            raise SurgeonError(f"the {key} of {where} are malformed; the file is corrupt")
    graph = Graph.of(model)  # duplicate names, missing layers, dangling nodes, cycles
    for name, layer in graph.layers.items():
        if is_model_config(layer):
            check_structure(layer, f"nested model '{name}'")


def _check_tensor_refs(obj: Any, layer: str) -> None:
    for tensor in keras_tensors(obj):
        history = tensor.get("config", {}).get("keras_history") if isinstance(tensor.get("config"), dict) else None
        if not _is_ref(history):
            raise SurgeonError(f"layer '{layer}' has an input that names no layer (keras_history {history!r}); the file is corrupt")


def _is_index(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_ref(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str) and _is_index(value[1]) and _is_index(value[2])


def _is_io_struct(struct) -> bool:
    """``[name, node, tensor]`` leaves in lists or dicts, at least one (what ``spec.io_refs`` reads)."""
    if _is_ref(struct):
        return True
    if isinstance(struct, dict):
        return bool(struct) and all(_is_io_struct(value) for value in struct.values())
    if isinstance(struct, list):
        return bool(struct) and all(_is_io_struct(value) for value in struct)
    return False


# --- declared sizes ------------------------------------------------------------------------------


def check_declared_sizes(model: dict) -> None:
    """Input shapes and recorded tensor shapes: non-negative integer sizes of a believable count."""
    for path, layer in iter_layers(model):
        config = layer["config"]
        if layer.get("class_name") == "InputLayer":
            _check_shape(config.get("batch_shape") or config.get("batch_input_shape"), path)
        for tensor in keras_tensors(layer.get("inbound_nodes") or []):
            _check_shape(tensor["config"].get("shape"), path)


def _check_shape(shape, path: str) -> None:
    if shape is None:
        return
    if not isinstance(shape, (list, tuple)) or not all(d is None or _is_index(d) for d in shape):
        raise SurgeonError(f"layer '{path}' declares a malformed shape {shape!r}; the file is corrupt")
    elements = 1
    for size in list(shape)[1:]:  # the batch size is not part of one sample
        elements *= size if size is not None else 1
    if elements > MAX_ELEMENTS_PER_SAMPLE:
        raise SurgeonError(
            f"layer '{path}' declares a tensor of shape {tuple(shape)} ({elements:,} elements per sample, "
            f"more than surgeon's limit of {MAX_ELEMENTS_PER_SAMPLE:,}); the file is corrupt or not a real model"
        )


# --- weights -------------------------------------------------------------------------------------


def check_weights(spec: ModelSpec) -> None:
    """Every layer of a known kind has its weights, each of the shape its config and input call for."""
    layers = dict(iter_layers(spec.config))
    for path in spec.weights:
        if path not in layers:
            raise SurgeonError(f"the file has weights for '{path}', which is not a layer of the model; the file is inconsistent")
    for path, layer in layers.items():
        rule, shapes = WEIGHT_NAMES.get(layer.get("class_name", "")), SHAPES.get(layer.get("class_name", ""))
        if rule is None or shapes is None or is_model_config(layer):
            continue  # e.g. Normalization: no weights when its mean and variance are in the config
        expected = rule(layer["config"])
        stored = spec.weights.get(path, {})
        if len(stored) < len(expected):
            raise SurgeonError(
                f"layer '{path}' ({layer['class_name']}) needs weights {expected}, the file has {sorted(stored) or 'none'}; "
                "the file is incomplete, save the model again"
            )
        if not set(expected) <= set(stored):
            continue  # extra weights (LoRA, quantization) or unknown names: Keras will judge at build time
        for name, want in shapes(layer["config"], _input_shape(layer), path).items():
            if name not in stored:
                continue
            have = tuple(stored[name].shape)
            if len(have) != len(want) or any(w is not None and h != w for h, w in zip(have, want)):
                wanted = "(" + ", ".join("?" if w is None else str(w) for w in want) + ")"
                raise SurgeonError(
                    f"weight '{path}/{name}' has shape {have} but the layer's config and input call for {wanted}; "
                    "the file is inconsistent"
                )


def _input_shape(layer: dict) -> list | None:
    """The shape Keras recorded for the layer's first input (None when not recorded)."""
    nodes = layer.get("inbound_nodes") or []
    tensor = next(keras_tensors(nodes[0]), None) if nodes else None
    shape = tensor["config"].get("shape") if tensor else None
    return list(shape) if isinstance(shape, (list, tuple)) else None


def _size(config: dict, key: str, path: str, default=None) -> int:
    value = config.get(key, default)
    if not _is_index(value) or value == 0:
        raise SurgeonError(f"layer '{path}' has {key}={value!r}, not a positive integer; the config is corrupt")
    return value


def _dim(shape: list | None, axis) -> int | None:
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    if shape is None or not isinstance(axis, int) or not -len(shape) <= axis < len(shape):
        return None
    return shape[axis] if _is_index(shape[axis]) else None


def _kernel_size(config: dict, rank: int, path: str) -> tuple[int, ...]:
    size = config.get("kernel_size")
    size = [size] * rank if _is_index(size) else size
    if not isinstance(size, (list, tuple)) or len(size) != rank or not all(_is_index(s) and s > 0 for s in size):
        raise SurgeonError(f"layer '{path}' has kernel_size={config.get('kernel_size')!r}; the config is corrupt")
    return tuple(size)


def _channels(config: dict, shape: list | None) -> int | None:
    return _dim(shape, 1 if config.get("data_format") == "channels_first" else -1)


def _times(a: int | None, b: int) -> int | None:
    return None if a is None else a * b


def _dense(config, shape, path):
    units = _size(config, "units", path)
    return {"kernel": (_dim(shape, -1), units), "bias": (units,)}


def _conv(rank):
    def shapes(config, shape, path):
        filters, groups = _size(config, "filters", path), _size(config, "groups", path, 1)
        channels = _channels(config, shape)
        per_group = channels // groups if channels is not None else None
        return {"kernel": _kernel_size(config, rank, path) + (per_group, filters), "bias": (filters,)}
    return shapes


def _conv_transpose(rank):
    def shapes(config, shape, path):
        filters = _size(config, "filters", path)
        return {"kernel": _kernel_size(config, rank, path) + (filters, _channels(config, shape)), "bias": (filters,)}
    return shapes


def _depthwise(rank):
    def shapes(config, shape, path):
        multiplier, channels = _size(config, "depth_multiplier", path, 1), _channels(config, shape)
        return {"kernel": _kernel_size(config, rank, path) + (channels, multiplier), "bias": (_times(channels, multiplier),)}
    return shapes


def _separable(rank):
    def shapes(config, shape, path):
        multiplier, filters, channels = _size(config, "depth_multiplier", path, 1), _size(config, "filters", path), _channels(config, shape)
        return {
            "depthwise_kernel": _kernel_size(config, rank, path) + (channels, multiplier),
            "pointwise_kernel": (1,) * rank + (_times(channels, multiplier), filters),
            "bias": (filters,),
        }
    return shapes


def _batch_normalization(config, shape, path):
    channels = _dim(shape, config.get("axis", -1))
    return {name: (channels,) for name in ("gamma", "beta", "moving_mean", "moving_variance")}


def _embedding(config, shape, path):
    return {"embeddings": (_size(config, "input_dim", path), _size(config, "output_dim", path))}


# Layer class -> (config, recorded input shape, path) -> {weight name: expected shape, None = unknown}.
SHAPES: dict[str, Callable[[dict, list | None, str], dict[str, tuple]]] = {
    "Dense": _dense,
    **{f"Conv{r}D": _conv(r) for r in (1, 2, 3)},
    **{f"Conv{r}DTranspose": _conv_transpose(r) for r in (1, 2, 3)},
    **{f"DepthwiseConv{r}D": _depthwise(r) for r in (1, 2)},
    **{f"SeparableConv{r}D": _separable(r) for r in (1, 2)},
    "BatchNormalization": _batch_normalization,
    "Embedding": _embedding,
}
