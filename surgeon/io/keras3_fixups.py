"""Rewrite Keras 3 model configs that plain ``keras.models.load_model`` cannot load.

Keras 3.15 saves some of its own ``keras.applications`` models in a form it cannot read back,
mostly in the legacy ``.h5`` format, which keeps only ``class_name`` (not ``module``):

* ``LayerScale`` (ConvNeXt), ``StochasticDepth`` (ConvNeXt with ``drop_path_rate > 0``) and
  ``CustomScaleLayer`` (InceptionResNetV2) are classes defined inside the application modules and
  never registered as serializable: ``.h5`` loading fails with ``Unknown layer``. (``.keras``
  stores their ``module`` and loads, but the result still depends on private Keras classes.)
* Python arithmetic on symbolic tensors (``x + 3.0``, ``x * (1 / 6)`` in MobileNetV3's
  ``hard_sigmoid``) becomes a bare *operation* node (``keras.src.ops.numpy.Add``) whose inbound node
  has two positional args, one of them a constant. ``.h5`` drops the ``module``, so the loader
  resolves ``"Add"`` to the merge *layer* ``keras.layers.Add`` and fails with "Only input tensors
  may be passed as positional arguments".

:func:`fix_keras3_config` replaces each such node by built-in Keras layers computing exactly the same
function in float32; :func:`fix_keras3_weights` maps the weights to the new layers. Both are pure
Python + numpy: no TensorFlow or Keras import (used by a fast path).

The rewrites are data: :data:`REWRITES` maps ``class_name`` to a small function and
:data:`WEIGHT_MAPS` maps a weight-mapping name to a function.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from surgeon.io.affine_ops import rescaling_of
from surgeon.spec import dtype_policy, is_keras_tensor, keras_tensor, unique_name

__all__ = [
    "Fixup",
    "REWRITES",
    "WEIGHT_MAPS",
    "fix_keras3_config",
    "fix_keras3_weights",
]


@dataclass
class Fixup:
    """One rewrite applied (or refused) by :func:`fix_keras3_config`.

    ``layer``: name of the original layer / op node; ``path``: names of the enclosing nested models
    (outermost first, empty for the top level); ``what``: short tag such as
    ``"LayerScale -> EinsumDense"``; ``why``: the reason plain Keras cannot load the original;
    ``new_layers``: names of the layers that replace it (the one named ``layer`` produces the
    output); ``weight_map``: key into :data:`WEIGHT_MAPS` (None when no weights move);
    ``params``: arguments of the weight map; ``applied``: False when the node was recognised but
    left unchanged because no exact rewrite exists (``why`` then says so).
    """

    layer: str
    what: str
    why: str
    path: tuple[str, ...] = ()
    new_layers: tuple[str, ...] = ()
    weight_map: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    applied: bool = True

    @property
    def qualified_name(self) -> str:
        return "/".join(self.path + (self.layer,))


# --------------------------------------------------------------------------------------------
# helpers on the config dialect
# --------------------------------------------------------------------------------------------

_WHY_UNREGISTERED = (
    "class defined inside keras.src.applications and not registered: "
    "plain load_model of .h5 fails with 'Unknown layer' (and .keras depends on a private class)"
)
_WHY_OP = (
    "bare keras.ops node (Python arithmetic on a symbolic tensor); .h5 drops its module so the "
    "loader builds the merge layer of the same name, which rejects constant positional args"
)


def _is_scalar(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class FixupContext:
    """What a rewrite needs to know besides the layer: dialect, names in use, nesting path."""

    def __init__(self, dialect_keras: bool, used_names: set[str], path: tuple[str, ...]):
        self.dialect_keras = dialect_keras  # True: .keras config.json style (module, build_config)
        self.used_names = used_names
        self.path = path

    def unique(self, base: str) -> str:
        return unique_name(base, self.used_names)

    def layer(
        self,
        class_name: str,
        name: str,
        config: dict,
        inbound_nodes: list | None,
        input_shape: list | None = None,
    ) -> dict:
        """A built-in layer dict in the dialect of the file being fixed."""
        config = dict(config, name=name)
        if self.dialect_keras:
            out = {"module": "keras.layers", "class_name": class_name, "config": config,
                   "registered_name": None}
            if input_shape is not None:
                out["build_config"] = {"input_shape": copy.deepcopy(input_shape)}
        else:
            out = {"class_name": class_name, "config": config}
        out["name"] = name
        if inbound_nodes is not None:
            out["inbound_nodes"] = inbound_nodes
        return out


def _single_input(layer: dict) -> tuple[dict | None, list | None, str]:
    """(tensor, shape, dtype) of a layer's single input; (None, build shape, dtype) if unknown."""
    layer_config = layer.get("config", {})
    dtype = layer_config.get("dtype")
    dtype_name = "float32"
    if isinstance(dtype, dict):
        dtype_name = dtype.get("config", {}).get("name", "float32")
    elif isinstance(dtype, str):
        dtype_name = dtype
    nodes = layer.get("inbound_nodes")
    if nodes and len(nodes) == 1:
        args = nodes[0].get("args", [])
        if len(args) == 1 and is_keras_tensor(args[0]):
            t = args[0]
            return t, t["config"].get("shape"), t["config"].get("dtype", dtype_name)
    shape = (layer.get("build_config") or {}).get("input_shape")
    return None, shape, dtype_name


def _base_config(layer: dict, dtype_name: str) -> dict:
    layer_config = layer.get("config", {})
    dtype = layer_config.get("dtype")
    if not isinstance(dtype, (dict, str)):
        dtype = dtype_policy(dtype_name)
    return {"trainable": layer_config.get("trainable", True), "dtype": copy.deepcopy(dtype)}


def _node(*args: Any) -> dict:
    return {"args": list(copy.deepcopy(args)), "kwargs": {}}


# A rewrite: (layer dict, context) -> (replacement layer dicts, Fixup), or None = not concerned.
Rewrite = Callable[[dict, FixupContext], "tuple[list[dict], Fixup] | None"]


# --------------------------------------------------------------------------------------------
# rewrites
# --------------------------------------------------------------------------------------------


def rewrite_layer_scale(layer: dict, context: FixupContext):
    """Given: ConvNeXt ``LayerScale(init_values, projection_dim)``: ``y = x * gamma``, gamma a
    trainable ``(C,)`` weight broadcast on the last axis, any input rank.
    Result: ``EinsumDense("...c,c->...c", output_shape=[C], bias_axes=None)`` with the same name:
    its kernel has shape ``(C,)`` and holds gamma unchanged (still trainable, same ``Constant``
    initializer); the einsum has no contracted index, so each output is the single product
    ``x[..., c] * gamma[c]``: bit-exact for every rank, Sequential models included.
    """
    name = layer["config"].get("name", layer.get("name"))
    _, shape, dtype = _single_input(layer)
    c = int(layer["config"]["projection_dim"])
    init = {"module": "keras.initializers", "class_name": "Constant",
            "config": {"value": layer["config"].get("init_values", 1.0)}, "registered_name": None}
    layer_config = dict(_base_config(layer, dtype), equation="...c,c->...c", output_shape=[c],
               activation="linear", bias_axes=None, kernel_initializer=init)
    new = context.layer("EinsumDense", name, layer_config, copy.deepcopy(layer.get("inbound_nodes")), shape)
    return [new], Fixup(name, "LayerScale -> EinsumDense", _WHY_UNREGISTERED, context.path, (name,),
                        "same")


def rewrite_custom_scale(layer: dict, context: FixupContext):
    """Given: InceptionResNetV2 ``CustomScaleLayer(scale)`` on ``[a, b]``: ``y = a + b * scale``,
    ``scale`` a Python float constant, no weights.
    Result: ``Rescaling(scale=scale, offset=0.0)`` on ``b`` (new name ``<name>_scale``) then
    ``Add`` (same name) on ``[a, rescaled]``: ``a + (b * scale + 0)`` is the same float32
    arithmetic.
    """
    name = layer["config"].get("name", layer.get("name"))
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) != 1 or len(nodes[0].get("args", [])) != 1:
        return [layer], Fixup(name, "CustomScaleLayer left as is",
                              f"{_WHY_UNREGISTERED}; unexpected inbound nodes", context.path,
                              applied=False)
    a, b = nodes[0]["args"][0]
    dtype = b["config"].get("dtype", "float32")
    base = _base_config(layer, dtype)
    scale_name = context.unique(f"{name}_scale")
    resc = context.layer("Rescaling", scale_name,
                     dict(base, scale=float(layer["config"]["scale"]), offset=0.0),
                     [_node(b)], b["config"].get("shape"))
    scaled = keras_tensor(scale_name, 0, 0, copy.deepcopy(b["config"].get("shape")), dtype)
    add = context.layer("Add", name, base, [_node([a, scaled])],
                    [a["config"].get("shape"), b["config"].get("shape")])
    return [resc, add], Fixup(name, "CustomScaleLayer -> Rescaling + Add", _WHY_UNREGISTERED,
                              context.path, (scale_name, name))


def rewrite_stochastic_depth(layer: dict, context: FixupContext):
    """Given: ConvNeXt ``StochasticDepth(drop_path_rate)``: identity at inference; in training
    drops whole samples with probability ``rate`` and scales kept ones by ``1 / (1 - rate)``.
    Result: ``Dropout(rate, noise_shape=[None, 1, ..., 1])`` (one draw per sample): identity at
    inference (bit-exact), the same distribution in training (not the same random draws).
    """
    name = layer["config"].get("name", layer.get("name"))
    _, shape, dtype = _single_input(layer)
    rate = float(layer["config"].get("drop_path_rate", 0.0))
    if shape is None:
        return [layer], Fixup(name, "StochasticDepth left as is",
                              f"{_WHY_UNREGISTERED}; input rank unknown", context.path, applied=False)
    layer_config = dict(_base_config(layer, dtype), rate=rate, seed=None,
               noise_shape=[None] + [1] * (len(shape) - 1))
    new = context.layer("Dropout", name, layer_config, copy.deepcopy(layer.get("inbound_nodes")), shape)
    return [new], Fixup(name, "StochasticDepth -> Dropout(per-sample noise_shape)",
                        _WHY_UNREGISTERED, context.path, (name,))


# op class -> the operation ``affine_ops.rescaling_of`` computes for a tensor and a constant.
# Only exact rewrites here (no inexact division): unlike a Keras 2 file, whose translation
# convert checks against tf_keras, a Keras 3 config has no other runtime to check against.
_OPERATION = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply", "TrueDivide": "divide", "Divide": "divide"}
# op class -> merge layer for two tensor operands (argument order kept)
_MERGE = {"Add": "Add", "Subtract": "Subtract", "Multiply": "Multiply"}


def _is_op_node(layer: dict) -> bool:
    module = layer.get("module") or ""
    if module.startswith("keras.src.ops") or module.startswith("keras.ops"):
        return True
    if module:
        return False
    if layer.get("class_name") not in _MERGE:  # no layer of that name: must be an op
        return True
    # .h5 dialect: no module. A merge layer takes ONE positional arg (the list of tensors); an
    # op node takes its operands as separate positional args.
    nodes = layer.get("inbound_nodes") or []
    return any(len(n.get("args", [])) != 1 for n in nodes)


def rewrite_op(layer: dict, context: FixupContext):
    """Given: a bare ``keras.ops`` node from Python arithmetic on symbolic tensors
    (``Add``/``Subtract``/``Multiply``/``TrueDivide``/``Divide``/``Negative``), one inbound node,
    operands as positional args: a tensor and a scalar constant, or two tensors.
    Result: tensor and constant -> ``Rescaling(scale, offset)`` (x+c: (1, c); x-c: (1, -c);
    c-x: (-1, c); x*c: (c, 0); x/c and -x: (1/c, 0) / (-1, 0) when exact, i.e. c a power of two);
    two tensors -> the merge layer ``Add``/``Subtract``/``Multiply`` on ``[a, b]``. Same name.
    Anything else is reported (``applied=False``) and left as is.
    """
    if not _is_op_node(layer):
        return None
    cls = layer["class_name"]
    name = layer["config"].get("name", layer.get("name"))
    nodes = layer.get("inbound_nodes") or []

    def refuse(reason: str):
        return [layer], Fixup(name, f"op {cls} left as is", f"{_WHY_OP}; {reason}", context.path,
                              applied=False)

    if len(nodes) != 1 or nodes[0].get("kwargs"):
        return refuse("shared op node or keyword arguments")
    args = nodes[0]["args"]
    tensors = [i for i, a in enumerate(args) if is_keras_tensor(a)]
    if cls == "Negative" and len(args) == 1 and tensors == [0]:
        affine, t = rescaling_of("negative", 0.0, False, inexact_division=False), args[0]
    elif len(args) == 2 and len(tensors) == 1 and _is_scalar(args[1 - tensors[0]]):
        t = args[tensors[0]]
        const_pos = 1 - tensors[0]
        operation = _OPERATION.get(cls)
        affine = operation and rescaling_of(operation, float(args[const_pos]), const_pos == 0, inexact_division=False)
        if affine is None:
            return refuse(f"no exact built-in layer for {cls} with constant {args[const_pos]!r}")
    elif len(args) == 2 and len(tensors) == 2 and cls in _MERGE:
        merged = context.layer(_MERGE[cls], name,
                           _base_config(layer, args[0]["config"].get("dtype", "float32")),
                           [_node(list(args))], [a["config"].get("shape") for a in args])
        return [merged], Fixup(name, f"op {cls} -> {_MERGE[cls]} layer", _WHY_OP, context.path, (name,))
    else:
        return refuse("operands are not (tensor, scalar) or (tensor, tensor)")
    dtype = t["config"].get("dtype", "float32")
    if not str(dtype).startswith(("float", "bfloat")):
        return refuse(f"operand dtype {dtype} is not floating point")
    scale, offset = affine
    layer_config = dict(_base_config(layer, dtype), scale=scale, offset=offset)
    new = context.layer("Rescaling", name, layer_config, [_node(t)], t["config"].get("shape"))
    return [new], Fixup(name, f"op {cls} -> Rescaling", _WHY_OP, context.path, (name,))


#: class_name -> rewrite. A rewrite returns None when the layer is not its concern.
REWRITES: dict[str, Rewrite] = {
    "LayerScale": rewrite_layer_scale,
    "CustomScaleLayer": rewrite_custom_scale,
    "StochasticDepth": rewrite_stochastic_depth,
    "Add": rewrite_op,
    "Subtract": rewrite_op,
    "Multiply": rewrite_op,
    "TrueDivide": rewrite_op,
    "Divide": rewrite_op,
    "Negative": rewrite_op,
}


# --------------------------------------------------------------------------------------------
# weight maps
# --------------------------------------------------------------------------------------------


def _same(weights: list[np.ndarray]) -> list[np.ndarray]:
    """Given: the old layer's weights. Result: the same arrays (the new layer stores them as is)."""
    return list(weights)


#: weight-map name -> function(old weights, **Fixup.params) -> new weights
WEIGHT_MAPS: dict[str, Callable[..., list[np.ndarray]]] = {
    "same": _same,
}


# --------------------------------------------------------------------------------------------
# walk
# --------------------------------------------------------------------------------------------


def _is_model(layer: dict) -> bool:
    layer_config = layer.get("config")
    return isinstance(layer_config, dict) and isinstance(layer_config.get("layers"), list)


def _all_names(model: dict, out: set[str]) -> set[str]:
    for layer in model["config"]["layers"]:
        out.add(layer.get("config", {}).get("name", layer.get("name")))
        if _is_model(layer):
            _all_names(layer, out)
    return out


def _walk(model: dict, context: FixupContext, fixups: list[Fixup]) -> None:
    """Rewrite ``model["config"]["layers"]`` in place (model is already a deep copy)."""
    out: list[dict] = []
    for layer in model["config"]["layers"]:
        if _is_model(layer):
            inner = FixupContext(context.dialect_keras, context.used_names,
                         context.path + (layer["config"].get("name", layer.get("name")),))
            _walk(layer, inner, fixups)
            out.append(layer)
            continue
        fn = REWRITES.get(layer.get("class_name"))
        res = fn(layer, context) if fn else None
        if res is None:
            out.append(layer)
            continue
        new_layers, fixup = res
        fixups.append(fixup)
        out.extend(new_layers)
    model["config"]["layers"] = out


def fix_keras3_config(model_config: dict) -> tuple[dict, list[Fixup]]:
    """Return ``(fixed copy of model_config, fixups applied)``.

    ``model_config``: a Keras 3 model config, either the ``.h5`` ``model_config`` attribute
    (``{"class_name": "Functional", "config": {...}}``) or a ``.keras`` ``config.json`` (same plus
    ``module``, ``registered_name``, ``build_config``...), nested models included. The result
    keeps the dialect of the input; the input is not modified. Fixups with ``applied=False``
    name nodes that were recognised but have no exact rewrite (left unchanged).
    """
    fixed = copy.deepcopy(model_config)
    if not _is_model(fixed):
        raise ValueError("not a Keras model config: expected {'class_name', 'config': {'layers'}}")
    dialect_keras = "module" in fixed
    used = _all_names(fixed, set())
    fixups: list[Fixup] = []
    _walk(fixed, FixupContext(dialect_keras, used, ()), fixups)
    return fixed, fixups


def fix_keras3_weights(
    fixups: list[Fixup], weights: dict[str, list[np.ndarray]]
) -> dict[str, list[np.ndarray]]:
    """Map weights to the layers made by :func:`fix_keras3_config`.

    ``weights``: layer name -> arrays in the layer's ``get_weights()`` order. Keys may be plain
    layer names or ``"/"``-joined qualified names (``"outer_model/inner_model/layer"``, see
    :attr:`Fixup.qualified_name`); a qualified key wins over a plain one. Returns a new dict;
    layers not touched by a fixup are passed through (same array objects).
    """
    out = dict(weights)
    for f in fixups:
        if not f.applied or f.weight_map is None:
            continue
        key = f.qualified_name if f.qualified_name in out else f.layer
        if key not in out:
            raise KeyError(f"no weights for layer {f.qualified_name!r} ({f.what})")
        out[key] = WEIGHT_MAPS[f.weight_map](out[key], **f.params)
    return out
