"""Translate Keras 2 model configs (tf.keras 2.x, standalone keras 2.x) into Keras 3 ones.

Pure Python: no TensorFlow or Keras import, so the reader's fast path stays fast. Everything here
works on the JSON dicts stored in a legacy ``.h5`` file (the ``model_config`` and
``training_config`` attributes).

Public API
----------
- :func:`is_keras2` -- does a file's ``keras_version`` attribute say Keras 2?
- :func:`looks_like_keras2` -- sniff a ``model_config`` dict when the version is missing.
- :func:`translate_model_config` -> :class:`Translation` (``.config``, ``.renamed``, ``.notes``).
- :func:`translate_training_config` -- optimizer / loss / metric names and keys.

The output config is what Keras 3.15 itself writes into an ``.h5`` ``model_config``: layers with
``class_name``, ``config``, ``name`` and ``inbound_nodes`` in the new format
``[{"args": [{"class_name": "__keras_tensor__", "config": {"shape", "dtype", "keras_history"}}],
"kwargs": {}}]``, loadable with ``keras.Model.from_config`` / ``keras.models.model_from_json``.
The ``shape`` in a ``__keras_tensor__`` is a placeholder that Keras replaces by the real tensor when
it rebuilds the graph; this module infers it for the common layers and otherwise writes a shape of
the right rank (or ``[None]``) with unknown dimensions.

How Keras 2 ``.h5`` weights map to Keras 3 layers
------------------------------------------------
A Keras 2 ``.h5`` keeps weights under ``model_weights``: the group's ``layer_names`` attribute lists
the top-level layers in model order; ``model_weights[<layer name>]`` has a ``weight_names``
attribute listing that layer's weights, and each array is the dataset
``model_weights[<layer name>][<weight name>]``. Weight names are ``<layer path>/<variable>:0``
(``dense_1/kernel:0``).

- A plain layer: its weights are stored in ``layer.weights`` order (trainable ones first), which for
  the built-in layers is Keras 3's order too (Dense/Conv: kernel, bias; BatchNormalization: gamma,
  beta, moving_mean, moving_variance; DepthwiseConv: depthwise_kernel, bias; SeparableConv:
  depthwise_kernel, pointwise_kernel, bias). ``layer.set_weights(arrays)`` in that order.
- A nested model is one top-level entry whose weight names carry the *inner* layer's name
  (``conv/kernel:0``, not ``base/conv/kernel:0``); ``h5_reader`` gives each weight to the inner
  layer that the innermost run of its path components names.
- ``/`` in a layer name: h5py treats ``/`` as a path separator, so the group of layer
  ``block1/conv`` is ``model_weights/block1/conv`` (nested groups) and its datasets are
  ``model_weights/block1/conv/block1/conv/kernel:0``. Keras 3 refuses ``/`` in names, so such layers
  are renamed (``Translation.renamed``, old -> new, ``/`` becomes ``_``): read weights with the
  *old* name (``f["model_weights"][old]``, ``weight_names`` as stored) and give them to the layer
  with the new name.
- Layers that a translation rule replaces (TFOpLambda, SlicingOpLambda) have no weights.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from typing import Callable

from surgeon.errors import SurgeonError
from surgeon.io.affine_ops import rescaling_of
from surgeon.io.compile_config import LOSS_NAMES, OPTIMIZER_NAMES
from surgeon.layer_kinds import SHAPE_PRESERVING
from surgeon.spec import MODEL_CLASSES, dtype_policy, keras_tensor, map_io_refs, unique_name

__all__ = [
    "Translation",
    "is_keras2",
    "looks_like_keras2",
    "translate_model_config",
    "translate_training_config",
]

@dataclass
class Translation:
    """Result of :func:`translate_model_config`."""

    config: dict
    renamed: dict = field(default_factory=dict)  # old layer name -> new layer name
    notes: list = field(default_factory=list)  # one human-readable line per rule applied


# ---------------------------------------------------------------------------------------------
# version sniffing


def is_keras2(keras_version: str | None) -> bool:
    """True when a file's ``keras_version`` attribute names Keras 2 (``2.1.6``, ``2.15.0``...).

    ``None`` (no attribute) answers False: Keras 3 always writes the attribute, so a caller that
    meets a file without it should sniff the config with :func:`looks_like_keras2`.
    """
    if keras_version is None:
        return False
    if isinstance(keras_version, bytes):
        keras_version = keras_version.decode("utf-8", "replace")
    m = re.match(r"\s*v?(\d+)", str(keras_version))
    return bool(m) and int(m.group(1)) == 2


def looks_like_keras2(model_config: dict) -> bool:
    """Heuristic: does this ``model_config`` use the Keras 2 dialect?"""
    text = json.dumps(model_config)
    if isinstance(model_config.get("config"), list):
        return True
    if '"batch_input_shape"' in text or '"TFOpLambda"' in text or '"SlicingOpLambda"' in text:
        return True
    for layer in (model_config.get("config") or {}).get("layers", []):
        for node in layer.get("inbound_nodes") or []:
            if isinstance(node, list):
                return True
    return False


# ---------------------------------------------------------------------------------------------
# translation context and small helpers


class _Ctx:
    def __init__(self, allow_code: bool):
        self.allow_code = allow_code
        self.renamed: dict[str, str] = {}
        self._notes: dict[str, list[str]] = {}

    def note(self, message: str, layer: str | None = None):
        lst = self._notes.setdefault(message, [])
        if layer is not None and layer not in lst:
            lst.append(layer)

    def notes(self) -> list[str]:
        out = []
        for msg, layers in self._notes.items():
            if layers:
                shown = ", ".join(layers[:5]) + (", ..." if len(layers) > 5 else "")
                out.append(f"{msg} ({len(layers)} layer(s): {shown})")
            else:
                out.append(msg)
        return out


def _policy(dtype):
    """Keras 2 dtype (string or Policy dict) -> the DTypePolicy dict Keras 3 writes."""
    if isinstance(dtype, dict):
        if dtype.get("class_name") == "DTypePolicy":
            return dtype
        name = (dtype.get("config") or {}).get("name", "float32")
    else:
        name = dtype or "float32"
    return dtype_policy(name)


def _base_cfg(name: str, dtype=None, trainable: bool = True) -> dict:
    return {"name": name, "trainable": trainable, "dtype": _policy(dtype)}


class _Ref:
    """A reference to a tensor: (layer name, node index, tensor index)."""

    __slots__ = ("name", "node", "tensor")

    def __init__(self, name, node, tensor):
        self.name, self.node, self.tensor = name, node, tensor

    def key(self):
        return (self.name, self.node, self.tensor)

    def __repr__(self):
        return f"_Ref({self.name!r}, {self.node}, {self.tensor})"


class _Const:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _map_struct(fn, x):
    if isinstance(x, (_Ref, _Const)):
        return fn(x)
    if isinstance(x, list):
        return [_map_struct(fn, v) for v in x]
    if isinstance(x, tuple):
        return tuple(_map_struct(fn, v) for v in x)
    if isinstance(x, dict):
        return {k: _map_struct(fn, v) for k, v in x.items()}
    return x


def _flatten_refs(x) -> list[_Ref]:
    out = []
    _map_struct(lambda r: out.append(r) if isinstance(r, _Ref) else None, x)
    return out


# ---------------------------------------------------------------------------------------------
# Keras 2 inbound nodes -> calls


def _is_entry(x) -> bool:
    return (
        isinstance(x, list)
        and len(x) in (3, 4)
        and isinstance(x[0], str)
        and isinstance(x[1], int)
        and not isinstance(x[1], bool)
        and (len(x) == 3 or isinstance(x[3], dict))
    )


class _Call:
    """One call of a layer: ``layer(*args, **kwargs)`` with tensors as :class:`_Ref`."""

    def __init__(self, args: list, kwargs: dict):
        self.args, self.kwargs = args, kwargs


def _parse_node(node, layer_names: set, preserve_structure: bool) -> _Call:
    """Parse one Keras 2 (or Keras 3) inbound node into a :class:`_Call`."""
    if isinstance(node, dict):  # already Keras 3
        return _Call(
            _from_k3_struct(node.get("args", [])), _from_k3_struct(node.get("kwargs", {}))
        )
    kwargs_holder: list[dict] = []

    def entry(e):
        if len(e) == 4 and not kwargs_holder:
            kwargs_holder.append(e[3])
        if e[0] == "_CONSTANT_VALUE":
            return _Const(e[2])
        return _Ref(e[0], e[1], e[2])

    def walk(x):
        if _is_entry(x):
            return entry(x)
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    struct = walk(node)
    if not preserve_structure and isinstance(struct, list) and len(struct) == 1:
        struct = struct[0]  # plain layer called on one tensor
    kwargs = kwargs_holder[0] if kwargs_holder else {}

    def kw(v):
        if (
            isinstance(v, list) and len(v) == 3 and isinstance(v[0], str)
            and v[0] in layer_names and isinstance(v[1], int) and isinstance(v[2], int)
        ):
            return _Ref(*v)
        if isinstance(v, list):
            return [kw(a) for a in v]
        if isinstance(v, dict):
            return {k: kw(a) for k, a in v.items()}
        return v

    return _Call([struct], {k: kw(v) for k, v in kwargs.items()})


def _from_k3_struct(x):
    if isinstance(x, dict) and x.get("class_name") == "__keras_tensor__":
        return _Ref(*x["config"]["keras_history"])
    if isinstance(x, list):
        return [_from_k3_struct(v) for v in x]
    if isinstance(x, dict):
        return {k: _from_k3_struct(v) for k, v in x.items()}
    return x


# ---------------------------------------------------------------------------------------------
# shape inference (best effort: the shapes are placeholders for Keras, but slicing rules need them)


def _conv_len(n, k, s, d, padding):
    if n is None:
        return None
    if padding == "same":
        return -(-n // s)
    if padding == "causal":
        return -(-n // s)
    return -(-(n - (k - 1) * d) // s)


def _tuple(v, n):
    if isinstance(v, (list, tuple)):
        return list(v)
    return [v] * n


def _spatial(cfg, shape):
    cf = cfg.get("data_format") == "channels_first"
    return (list(shape[2:]), shape[1]) if cf else (list(shape[1:-1]), shape[-1]), cf


def _shape_conv(cfg, shapes, cls):
    shape = shapes[0]
    (sp, _), cf = _spatial(cfg, shape)
    n = len(sp)
    k = _tuple(cfg.get("kernel_size", 1), n)
    s = _tuple(cfg.get("strides", 1), n)
    d = _tuple(cfg.get("dilation_rate", 1), n)
    out_sp = [_conv_len(sp[i], k[i], s[i], d[i], cfg.get("padding", "valid")) for i in range(n)]
    if cls.startswith("Depthwise"):
        ch = shape[1 if cf else -1]
        ch = None if ch is None else ch * cfg.get("depth_multiplier", 1)
    else:
        ch = cfg.get("filters")
    return [shape[0], ch] + out_sp if cf else [shape[0]] + out_sp + [ch]


def _shape_pool(cfg, shapes):
    shape = shapes[0]
    (sp, ch), cf = _spatial(cfg, shape)
    n = len(sp)
    k = _tuple(cfg.get("pool_size", 2), n)
    s = _tuple(cfg.get("strides") or k, n)
    out_sp = [_conv_len(sp[i], k[i], s[i], 1, cfg.get("padding", "valid")) for i in range(n)]
    return [shape[0], ch] + out_sp if cf else [shape[0]] + out_sp + [ch]


def _shape_gpool(cfg, shapes):
    shape = shapes[0]
    (sp, ch), cf = _spatial(cfg, shape)
    if cfg.get("keepdims"):
        return [shape[0], ch] + [1] * len(sp) if cf else [shape[0]] + [1] * len(sp) + [ch]
    return [shape[0], ch]


def _shape_concat(cfg, shapes):
    axis = cfg.get("axis", -1)
    out = list(shapes[0])
    ax = axis % len(out)
    dims = [s[ax] for s in shapes]
    out[ax] = None if any(d is None for d in dims) else sum(dims)
    return out


def _shape_flatten(cfg, shapes):
    rest = shapes[0][1:]
    return [shapes[0][0], None if any(d is None for d in rest) else math.prod(rest)]


def _shape_reshape(cfg, shapes):
    target = list(cfg["target_shape"])
    if -1 in target:
        rest = shapes[0][1:]
        known = math.prod(d for d in target if d != -1)
        if any(d is None for d in rest):
            target[target.index(-1)] = None
        else:
            target[target.index(-1)] = math.prod(rest) // known
    return [shapes[0][0]] + target


def _shape_crop(cfg, shapes, n):
    shape = list(shapes[0])
    crop = cfg.get("cropping")
    if n == 1:
        if isinstance(crop, (list, tuple)) and not isinstance(crop[0], (list, tuple)):
            crop = [crop]
    crop = [_tuple(c, 2) for c in _tuple(crop, n)]
    cf = cfg.get("data_format") == "channels_first"
    first = 2 if cf else 1
    for i, (lo, hi) in enumerate(crop):
        d = shape[first + i]
        shape[first + i] = None if d is None else d - lo - hi
    return shape


def _shape_pad(cfg, shapes, n):
    shape = list(shapes[0])
    pad = cfg.get("padding")
    pad = [_tuple(p, 2) for p in _tuple(pad, n)] if n > 1 else [_tuple(pad, 2)]
    cf = cfg.get("data_format") == "channels_first"
    first = 2 if cf else 1
    for i, (lo, hi) in enumerate(pad):
        d = shape[first + i]
        shape[first + i] = None if d is None else d + lo + hi
    return shape


def _shape_upsample(cfg, shapes, n):
    shape = list(shapes[0])
    size = _tuple(cfg.get("size", 2), n)
    cf = cfg.get("data_format") == "channels_first"
    first = 2 if cf else 1
    for i in range(n):
        d = shape[first + i]
        shape[first + i] = None if d is None else d * size[i]
    return shape


def _same(cfg, shapes):
    return list(shapes[0])


SHAPE_RULES: dict[str, Callable] = {
    "Dense": lambda c, s: list(s[0][:-1]) + [c["units"]],
    "Conv1D": lambda c, s: _shape_conv(c, s, "Conv1D"),
    "Conv2D": lambda c, s: _shape_conv(c, s, "Conv2D"),
    "Conv3D": lambda c, s: _shape_conv(c, s, "Conv3D"),
    "SeparableConv1D": lambda c, s: _shape_conv(c, s, "SeparableConv1D"),
    "SeparableConv2D": lambda c, s: _shape_conv(c, s, "SeparableConv2D"),
    "DepthwiseConv1D": lambda c, s: _shape_conv(c, s, "DepthwiseConv1D"),
    "DepthwiseConv2D": lambda c, s: _shape_conv(c, s, "DepthwiseConv2D"),
    "MaxPooling1D": _shape_pool, "MaxPooling2D": _shape_pool, "MaxPooling3D": _shape_pool,
    "AveragePooling1D": _shape_pool, "AveragePooling2D": _shape_pool,
    "AveragePooling3D": _shape_pool,
    "GlobalAveragePooling1D": _shape_gpool, "GlobalAveragePooling2D": _shape_gpool,
    "GlobalAveragePooling3D": _shape_gpool, "GlobalMaxPooling1D": _shape_gpool,
    "GlobalMaxPooling2D": _shape_gpool, "GlobalMaxPooling3D": _shape_gpool,
    "Concatenate": _shape_concat,
    "Flatten": _shape_flatten,
    "Reshape": _shape_reshape,
    "Permute": lambda c, s: [s[0][0]] + [s[0][d] for d in c["dims"]],
    "Cropping1D": lambda c, s: _shape_crop(c, s, 1),
    "Cropping2D": lambda c, s: _shape_crop(c, s, 2),
    "Cropping3D": lambda c, s: _shape_crop(c, s, 3),
    "ZeroPadding1D": lambda c, s: _shape_pad(c, s, 1),
    "ZeroPadding2D": lambda c, s: _shape_pad(c, s, 2),
    "ZeroPadding3D": lambda c, s: _shape_pad(c, s, 3),
    "UpSampling1D": lambda c, s: _shape_upsample({"size": c.get("size", 2)}, s, 1),
    "UpSampling2D": lambda c, s: _shape_upsample(c, s, 2),
    "UpSampling3D": lambda c, s: _shape_upsample(c, s, 3),
}
for _cls in SHAPE_PRESERVING:
    SHAPE_RULES[_cls] = _same


def _infer_shape(cls, cfg, in_shapes):
    """Output shape (list) of a single-output layer, or None when unknown."""
    rule = SHAPE_RULES.get(cls)
    if rule is None or not in_shapes or any(s is None for s in in_shapes):
        return None
    try:
        return rule(cfg, in_shapes)
    except Exception:  # noqa: BLE001 - a placeholder shape is never worth failing for
        return None


def _placeholder(shape, like=None):
    if shape is not None:
        return list(shape)
    if like is not None:
        return [None] * len(like)
    return [None]


# ---------------------------------------------------------------------------------------------
# config-key rules: (predicate on class_name, function(config, ctx, layer_name) -> config)


def _rule_dtype(cls, cfg, ctx, name):
    if cls == "InputLayer":
        if isinstance(cfg.get("dtype"), dict):
            cfg["dtype"] = (cfg["dtype"].get("config") or {}).get("name", "float32")
        return cfg
    if "dtype" in cfg and not (
        isinstance(cfg["dtype"], dict) and cfg["dtype"].get("class_name") == "DTypePolicy"
    ):
        cfg["dtype"] = _policy(cfg["dtype"])
    return cfg


def _rule_input_layer(cls, cfg, ctx, name):
    if cls != "InputLayer":
        return cfg
    if "batch_input_shape" in cfg:
        cfg["batch_shape"] = cfg.pop("batch_input_shape")
        ctx.note("InputLayer: batch_input_shape renamed batch_shape")
    cfg.pop("input_tensor", None)
    if cfg.get("ragged"):
        raise SurgeonError(
            f"layer {name!r}: ragged inputs have no Keras 3 equivalent; make the input dense in "
            "the original model and save again"
        )
    return cfg


def _rule_batch_input_shape(cls, cfg, ctx, name):
    # on a non-input layer of a functional model it is redundant (Sequential handles it first)
    if cls != "InputLayer":
        for k in ("batch_input_shape", "input_shape", "input_dim", "batch_size"):
            if k in cfg:
                cfg.pop(k)
                ctx.note(f"dropped redundant {k!r} from a non-input layer", name)
    return cfg


def _rule_groups(cls, cfg, ctx, name):
    if cls in ("DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"):
        if "groups" in cfg:
            if cfg.pop("groups") not in (1, None):
                raise SurgeonError(f"layer {name!r} ({cls}) has groups != 1, which Keras 3 lacks")
            ctx.note(f"{cls}: dropped the 'groups' key Keras 3 does not accept", name)
    if cls in ("SeparableConv1D", "SeparableConv2D"):
        dropped = [k for k in ("kernel_initializer", "kernel_regularizer", "kernel_constraint")
                   if k in cfg]
        for k in dropped:
            cfg.pop(k)
        if dropped:
            ctx.note(f"{cls}: dropped unused kernel_* keys (Keras 3 has depthwise_*/pointwise_*)",
                     name)
    return cfg


def _rule_bn(cls, cfg, ctx, name):
    if cls not in ("BatchNormalization", "SyncBatchNormalization"):
        return cfg
    axis = cfg.get("axis", -1)
    if isinstance(axis, list):
        if len(axis) != 1:
            raise SurgeonError(
                f"layer {name!r}: BatchNormalization over several axes {axis} has no Keras 3 "
                "equivalent"
            )
        cfg["axis"] = int(axis[0])
        ctx.note("BatchNormalization: axis list [n] written as int n", name)
    if cfg.pop("renorm", False):
        raise SurgeonError(
            f"layer {name!r}: BatchNormalization(renorm=True) has no Keras 3 equivalent; "
            "rebuild the model without renorm"
        )
    if cfg.pop("virtual_batch_size", None):
        raise SurgeonError(
            f"layer {name!r}: BatchNormalization(virtual_batch_size=...) has no Keras 3 "
            "equivalent"
        )
    dropped = [k for k in ("fused", "renorm_clipping", "renorm_momentum", "adjustment")
               if k in cfg]
    for k in dropped:
        cfg.pop(k)
    if dropped:
        ctx.note("BatchNormalization: dropped Keras 2 keys fused/renorm_*/adjustment", name)
    if cls == "SyncBatchNormalization":
        ctx.note("SyncBatchNormalization written as BatchNormalization(synchronized=True)", name)
        cfg["synchronized"] = True
    return cfg


def _fix_initializer(init, ctx, name):
    if isinstance(init, dict) and init.get("class_name") == "VarianceScaling":
        c = init.get("config", {})
        if c.get("distribution") == "normal":
            c["distribution"] = "truncated_normal"
            ctx.note("VarianceScaling(distribution='normal') written as 'truncated_normal'", name)
    return init


def _rule_initializers(cls, cfg, ctx, name):
    for k, v in list(cfg.items()):
        if k.endswith("_initializer"):
            cfg[k] = _fix_initializer(v, ctx, name)
    return cfg


def _rule_rnn(cls, cfg, ctx, name):
    if cls in ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM2D"):
        if cfg.pop("time_major", False):
            raise SurgeonError(f"layer {name!r}: time_major RNNs have no Keras 3 equivalent")
    return cfg


# Layers private to Keras 2's applications (ConvNeXt's LayerScale and StochasticDepth,
# InceptionResNetV2's CustomScaleLayer) keep their class and config here: Keras 3's applications
# define the same classes with the same config keys, and the door rewrites them into built-in
# layers right after this translation (keras3_fixups), for both dialects alike.


def _rule_tf_op_layer(cls, cfg, ctx, name):
    if cls == "TensorFlowOpLayer":
        raise SurgeonError(
            f"layer {name!r} is a TensorFlowOpLayer (raw TF op from TF 2.0-2.3) with no Keras 3 "
            "equivalent; re-save the model with TF >= 2.4 or replace the op by a Keras layer"
        )
    return cfg


CONFIG_RULES: list[Callable] = [
    _rule_tf_op_layer,
    _rule_dtype,
    _rule_input_layer,
    _rule_batch_input_shape,
    _rule_groups,
    _rule_bn,
    _rule_initializers,
    _rule_rnn,
]

CLASS_RENAMES = {
    "Model": "Functional",
    # tf.keras 2.x registers InceptionResNetV2's private layer under the "Custom" package; the door
    # (keras3_fixups) knows it by its bare name, as Keras 3 writes it.
    "Custom>CustomScaleLayer": "CustomScaleLayer",
}


def _translate_layer_config(cls: str, cfg: dict, ctx: _Ctx, name: str) -> tuple[str, dict]:
    cfg = copy.deepcopy(cfg)
    if cls in CLASS_RENAMES:
        ctx.note(f"class {cls} written as {CLASS_RENAMES[cls]}", name)
        cls = CLASS_RENAMES[cls]
    for rule in CONFIG_RULES:
        cfg = rule(cls, cfg, ctx, name)
    if cls == "SyncBatchNormalization":
        cls = "BatchNormalization"
    return cls, cfg


# ---------------------------------------------------------------------------------------------
# graph rules: layers replaced by built-in Keras 3 layers, one call each.
# A graph rule gets (layer name, call, input shape lookup, ctx, dtype) and returns a list of
# _NewLayer; the last one produces the call's output.


class _NewLayer:
    def __init__(self, cls, cfg, args, kwargs=None):
        self.cls, self.cfg, self.args, self.kwargs = cls, cfg, args, kwargs or {}


def _untranslatable(name, op, why=""):
    return SurgeonError(
        f"layer {name!r} applies the TensorFlow op {op!r}{why}, which has no built-in Keras 3 "
        "layer; replace it by a Keras layer in the original model and save again (or translate "
        "it in surgeon.io.keras2.TFOP_RULES)"
    )


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _const_value(v):
    """A scalar or a flat list of numbers (per-channel constant), else None."""
    if isinstance(v, _Const):
        v = v.value
    if _is_number(v):
        return float(v)
    if isinstance(v, list) and v and all(_is_number(a) for a in v):
        return [float(a) for a in v]
    return None


def _op_xy(name, op, call):
    x = call.args[0] if call.args else call.kwargs.get("x")
    y = call.kwargs.get("y")
    if y is None and len(call.args) > 1:
        y = call.args[1]
    if x is None or y is None:
        raise _untranslatable(name, op, " with unexpected arguments")
    return x, y


def _rescale(name, x, scale, offset, dtype):
    cfg = _base_cfg(name, dtype)
    cfg.update(scale=scale, offset=offset)
    return [_NewLayer("Rescaling", cfg, [x])]


def _binary(merge_cls, operation):
    """``x op c`` or ``c op x`` -> Rescaling (``affine_ops``), ``x op y`` -> the merge layer ``merge_cls``."""
    def rule(name, op, call, shape_of, ctx, dtype):
        x, y = _op_xy(name, op, call)
        if isinstance(x, _Ref) and isinstance(y, _Ref):
            if merge_cls is None:
                raise _untranslatable(name, op, " on two tensors")
            ctx.note(f"TFOpLambda {op} on two tensors written as {merge_cls}", name)
            return [_NewLayer(merge_cls, _base_cfg(name, dtype), [[x, y]])]
        constant_first = not isinstance(x, _Ref)
        c, x = (_const_value(x), y) if constant_first else (_const_value(y), x)
        if c is None or not isinstance(x, _Ref):
            raise _untranslatable(name, op, " with a non-scalar constant")
        # x / c as x * (1/c): within one float32 rounding of TF's division (convert's check
        # against tf_keras measures it).
        affine = rescaling_of(operation, c, constant_first, inexact_division=True)
        if affine is None:
            where = "first (constant / tensor has no built-in layer)" if constant_first else f"{c!r}"
            raise _untranslatable(name, op, f" with the constant {where}")
        ctx.note(f"TFOpLambda {op} with a constant written as Rescaling", name)
        return _rescale(name, x, *affine, dtype)

    return rule


_ADD = _binary("Add", "add")
_SUB = _binary("Subtract", "subtract")
_MUL = _binary("Multiply", "multiply")
_DIV = _binary(None, "divide")


def _unary(cls, **extra):
    def rule(name, op, call, shape_of, ctx, dtype):
        x = call.args[0] if call.args else call.kwargs.get("features", call.kwargs.get("x"))
        if not isinstance(x, _Ref):
            raise _untranslatable(name, op, " on a constant")
        cfg = _base_cfg(name, dtype)
        params = {k: (v(call.kwargs) if callable(v) else v) for k, v in extra.items()}
        cfg.update(params)
        ctx.note(f"TFOpLambda {op} written as {cls}", name)
        return [_NewLayer(cls, cfg, [x])]

    return rule


def _concat(name, op, call, shape_of, ctx, dtype):
    values = call.args[0] if call.args else call.kwargs.get("values")
    axis = call.kwargs.get("axis", -1)
    if not isinstance(values, list) or not all(isinstance(v, _Ref) for v in values):
        raise _untranslatable(name, op, " with constant inputs")
    if axis == 0:
        raise _untranslatable(name, op, " along the batch axis")
    cfg = _base_cfg(name, dtype)
    cfg["axis"] = axis
    ctx.note("TFOpLambda concat written as Concatenate", name)
    return [_NewLayer("Concatenate", cfg, [list(values)])]


def _reduce(pool):
    def rule(name, op, call, shape_of, ctx, dtype):
        x = call.args[0]
        shape = shape_of(x)
        axis = call.kwargs.get("axis")
        keepdims = bool(call.kwargs.get("keepdims", False))
        if shape is None or axis is None:
            raise _untranslatable(name, op, " over unknown axes")
        rank = len(shape)
        axes = sorted({a % rank for a in (axis if isinstance(axis, list) else [axis])})
        if rank in (3, 4, 5) and axes == list(range(1, rank - 1)):
            cls = f"Global{pool}Pooling{rank - 2}D"
            cfg = _base_cfg(name, dtype)
            cfg.update(data_format="channels_last", keepdims=keepdims)
            ctx.note(f"TFOpLambda {op} over the spatial axes written as {cls}", name)
            return [_NewLayer(cls, cfg, [x])]
        raise _untranslatable(name, op, f" over axes {axes} of a rank-{rank} tensor")

    return rule


def _reshape(name, op, call, shape_of, ctx, dtype):
    x = call.args[0]
    shape = call.kwargs.get("shape")
    if not isinstance(shape, list) or not shape or shape[0] not in (-1, None):
        raise _untranslatable(name, op, " that changes the batch dimension")
    target = list(shape[1:])
    if shape[0] == -1 and -1 in target:
        raise _untranslatable(name, op, " with two -1 dimensions")
    cfg = _base_cfg(name, dtype)
    cfg["target_shape"] = target
    ctx.note("TFOpLambda reshape written as Reshape", name)
    return [_NewLayer("Reshape", cfg, [x])]


def _transpose(name, op, call, shape_of, ctx, dtype):
    x = call.args[0]
    perm = call.kwargs.get("perm")
    if not isinstance(perm, list) or not perm or perm[0] != 0:
        raise _untranslatable(name, op, " that moves the batch axis")
    cfg = _base_cfg(name, dtype)
    cfg["dims"] = list(perm[1:])
    ctx.note("TFOpLambda transpose written as Permute", name)
    return [_NewLayer("Permute", cfg, [x])]


def _crop_layer(name, dtype, rank, crops, channels_first):
    n = rank - 2
    cfg = _base_cfg(name, dtype)
    if n == 1:
        cfg["cropping"] = list(crops[0])
        return "Cropping1D", cfg
    cfg["cropping"] = [list(c) for c in crops]
    cfg["data_format"] = "channels_first" if channels_first else "channels_last"
    return f"Cropping{n}D", cfg


def _getitem(name, op, call, shape_of, ctx, dtype, taken: set):
    x = call.args[0]
    spec = call.kwargs.get("slice_spec")
    shape = shape_of(x)
    if shape is None:
        raise _untranslatable(name, op, " (slicing) on a tensor of unknown rank")
    rank = len(shape)
    if not isinstance(spec, list):
        spec = [spec]
    if len(spec) > rank or not all(isinstance(s, dict) for s in spec):
        raise _untranslatable(name, op, " (indexing, ellipsis or new axes)")
    spec = spec + [{"start": None, "stop": None, "step": None}] * (rank - len(spec))
    crops = []
    for axis, s in enumerate(spec):
        start, stop, step = s.get("start"), s.get("stop"), s.get("step")
        if step not in (None, 1):
            raise _untranslatable(name, op, " (strided slicing)")
        dim = shape[axis]
        if dim is not None:
            lo, hi, _ = slice(start, stop).indices(dim)
            lo_c, hi_c = lo, dim - max(hi, lo)
        else:
            if (start is not None and start < 0) or (stop is not None and stop >= 0):
                if axis == 0 and start in (None, 0) and stop is None:
                    lo_c, hi_c = 0, 0
                else:
                    raise _untranslatable(
                        name, op, f" (slicing axis {axis} of unknown size)"
                    )
            else:
                lo_c, hi_c = start or 0, -stop if stop is not None else 0
        crops.append((lo_c, hi_c))
    if crops[0] != (0, 0):
        raise _untranslatable(name, op, " (slicing the batch axis)")
    sliced = [a for a in range(1, rank) if crops[a] != (0, 0)]
    if not sliced:
        ctx.note("SlicingOpLambda that keeps everything written as Identity", name)
        return [_NewLayer("Identity", _base_cfg(name, dtype), [x])]
    out: list[_NewLayer] = []

    def emit(cls, cfg, inp):
        out.append(_NewLayer(cls, cfg, [inp]))
        return _Ref(cfg["name"], 0, 0)

    cur = x
    if rank == 2:
        # (B, C) -> (B, C, 1) -> Cropping1D -> (B, C')
        c = shape[1]
        lo, hi = crops[1]
        cfg = _base_cfg(unique_name(f"{name}_expand", taken), dtype)
        cfg["target_shape"] = [c, 1]
        cur = emit("Reshape", cfg, cur)
        cls, cfg = _crop_layer(unique_name(f"{name}_crop", taken), dtype, 3, [(lo, hi)], False)
        cur = emit(cls, cfg, cur)
        cfg = _base_cfg(name, dtype)
        cfg["target_shape"] = [c - lo - hi]
        emit("Reshape", cfg, cur)
    elif rank == 3:
        if crops[2] == (0, 0):
            cls, cfg = _crop_layer(name, dtype, 3, [crops[1]], False)
            emit(cls, cfg, cur)
        else:
            # (B, T, C) -> (B, T, C, 1) -> Cropping2D -> (B, T', C')
            t, c = shape[1], shape[2]
            if c is None:
                raise _untranslatable(name, op, " (slicing a feature axis of unknown size)")
            cfg = _base_cfg(unique_name(f"{name}_expand", taken), dtype)
            cfg["target_shape"] = [-1 if t is None else t, c, 1]
            cur = emit("Reshape", cfg, cur)
            cls, cfg = _crop_layer(unique_name(f"{name}_crop", taken), dtype, 4,
                                   [crops[1], crops[2]], False)
            cur = emit(cls, cfg, cur)
            cfg = _base_cfg(name, dtype)
            cfg["target_shape"] = [-1, c - crops[2][0] - crops[2][1]]
            emit("Reshape", cfg, cur)
    elif rank in (4, 5):
        # channels_last CroppingND crops axes 1..rank-2; channels_first crops axes 2..rank-1.
        need_last = any(crops[a] != (0, 0) for a in range(1, rank - 1))
        need_first = crops[rank - 1] != (0, 0)
        if need_last:
            nm = name if not need_first else unique_name(f"{name}_crop", taken)
            cls, cfg = _crop_layer(nm, dtype, rank, crops[1:rank - 1], False)
            cur = emit(cls, cfg, cur)
        if need_first:
            cls, cfg = _crop_layer(name, dtype, rank, [(0, 0)] * (rank - 3) + [crops[rank - 1]],
                                   True)
            emit(cls, cfg, cur)
    else:
        raise _untranslatable(name, op, f" (slicing a rank-{rank} tensor)")
    ctx.note("SlicingOpLambda (x[...] slicing) written as Cropping layers", name)
    return out


TFOP_RULES: dict[str, Callable] = {
    "__operators__.add": _ADD, "math.add": _ADD, "add": _ADD, "__operators__.radd": _ADD,
    "math.subtract": _SUB, "__operators__.sub": _SUB, "subtract": _SUB,
    "math.multiply": _MUL, "__operators__.mul": _MUL, "multiply": _MUL,
    "math.truediv": _DIV, "__operators__.truediv": _DIV, "math.divide": _DIV,
    "nn.relu": _unary("ReLU"), "math.relu": _unary("ReLU"),
    "nn.relu6": _unary("ReLU", max_value=6.0),
    "nn.leaky_relu": _unary("LeakyReLU", negative_slope=lambda kw: float(kw.get("alpha", 0.2))),
    "math.sigmoid": _unary("Activation", activation="sigmoid"),
    "nn.sigmoid": _unary("Activation", activation="sigmoid"),
    "sigmoid": _unary("Activation", activation="sigmoid"),
    "math.tanh": _unary("Activation", activation="tanh"),
    "nn.tanh": _unary("Activation", activation="tanh"),
    "nn.silu": _unary("Activation", activation="silu"),
    "nn.swish": _unary("Activation", activation="silu"),
    "nn.elu": _unary("Activation", activation="elu"),
    "nn.selu": _unary("Activation", activation="selu"),
    "math.softplus": _unary("Activation", activation="softplus"),
    "nn.softplus": _unary("Activation", activation="softplus"),
    "nn.softmax": _unary("Softmax", axis=lambda kw: kw.get("axis", -1)),
    "math.softmax": _unary("Softmax", axis=lambda kw: kw.get("axis", -1)),
    "identity": _unary("Identity"),
    "concat": _concat,
    "math.reduce_mean": _reduce("Average"), "reduce_mean": _reduce("Average"),
    "math.reduce_max": _reduce("Max"), "reduce_max": _reduce("Max"),
    "reshape": _reshape,
    "transpose": _transpose, "compat.v1.transpose": _transpose,
    "__operators__.getitem": _getitem,
}


def _gelu_rule(name, op, call, shape_of, ctx, dtype):
    if call.kwargs.get("approximate"):
        raise _untranslatable(name, op, " with approximate=True")
    return _unary("Activation", activation="gelu")(name, op, call, shape_of, ctx, dtype)


TFOP_RULES["nn.gelu"] = _gelu_rule


def _translate_tfop(cls, layer_cfg, name, call, shape_of, ctx, taken):
    op = layer_cfg.get("function")
    rule = TFOP_RULES.get(op)
    if rule is None:
        raise _untranslatable(name, op)
    dtype = layer_cfg.get("dtype")
    if rule is _getitem:
        return _getitem(name, op, call, shape_of, ctx, dtype, taken)
    return rule(name, op, call, shape_of, ctx, dtype)


def _check_lambda(cls, cfg, name, ctx):
    if cls != "Lambda":
        return
    if ctx.allow_code:
        ctx.note("Lambda layer kept as is: every command but inspect refuses it unless --allow-code", name)
        return
    raise SurgeonError(
        f"layer {name!r} is a Lambda layer holding marshalled Python bytecode, which surgeon "
        "never decodes or runs; pass --allow-code if you trust this file"
    )


GRAPH_RULES = {"TFOpLambda": _translate_tfop, "SlicingOpLambda": _translate_tfop}


# ---------------------------------------------------------------------------------------------
# renaming


def _safe_name(name: str) -> str:
    return name.replace("/", "_")


def _make_renames(names: list[str], ctx: _Ctx) -> dict[str, str]:
    taken = set(names)
    out = {}
    for n in names:
        if "/" in n:
            new = unique_name(_safe_name(n), taken)
            out[n] = new
            ctx.renamed[n] = new
            ctx.note("'/' in layer names replaced by '_' (Keras 3 refuses '/')", n)
    return out


# ---------------------------------------------------------------------------------------------
# nested models


def _model_has_input(cls, cfg) -> bool:
    """Keras 2 counts a nested model's own creation node (so its first call is node 1) when it
    was built on an InputLayer: always for Functional, for Sequential when it has an input."""
    if cls in ("Functional", "Model"):
        return True
    layers = cfg if isinstance(cfg, list) else cfg.get("layers", [])
    if not layers:
        return False
    first = layers[0]
    c = first.get("config", {})
    return first.get("class_name") == "InputLayer" or any(
        k in c for k in ("batch_input_shape", "input_shape", "input_dim")
    )


def _set_untrainable(cfg, ctx, name):
    """Propagate a frozen nested model's trainable=False to every layer inside it."""
    for layer in cfg.get("layers", []):
        lc = layer.get("config", {})
        if lc.get("trainable", True) and layer.get("class_name") != "InputLayer":
            lc["trainable"] = False
            ctx.note("trainable: false of a frozen nested model propagated to its layers", name)
        if layer.get("class_name") in MODEL_CLASSES:
            _set_untrainable(lc, ctx, name)


# ---------------------------------------------------------------------------------------------
# functional models


def _translate_functional(cfg: dict, ctx: _Ctx) -> tuple[dict, dict]:
    """Returns (Keras 3 functional config, {output ref key: shape})."""
    layers = cfg["layers"]
    old_names = [layer.get("name") or layer["config"]["name"] for layer in layers]
    renames = _make_renames(old_names, ctx)
    taken = {renames.get(n, n) for n in old_names}
    names_set = set(old_names)
    cls_of = {n: layer["class_name"] for n, layer in zip(old_names, layers)}

    # node offsets of nested models (Keras 2 counted their creation node)
    offsets = {}
    for n, layer in zip(old_names, layers):
        if layer["class_name"] in MODEL_CLASSES and _model_has_input(
            layer["class_name"], layer["config"]
        ):
            offsets[n] = 1

    # parse every call
    calls: dict[str, list[_Call]] = {}
    for n, layer in zip(old_names, layers):
        preserve = layer["class_name"] in ("TFOpLambda", "SlicingOpLambda")
        calls[n] = [_parse_node(node, names_set, preserve)
                    for node in (layer.get("inbound_nodes") or [])]
    # a nested model referenced with node 0 was not built on an input: no offset
    for n in list(offsets):
        for c in calls.values():
            for call in c:
                for r in _flatten_refs([call.args, call.kwargs]):
                    if r.name == n and r.node == 0:
                        offsets.pop(n, None)
    if offsets:
        ctx.note("node indices of calls to nested models shifted by -1 (Keras 3 does not count "
                 "the model's own creation node in inbound nodes)")

    alias: dict[tuple, _Ref] = {}  # (old name, k2 node, tensor) -> Keras 3 ref

    def fix(r):
        if not isinstance(r, _Ref):
            return r.value if isinstance(r, _Const) else r
        if r.name not in names_set:
            raise SurgeonError(f"model config refers to an unknown layer {r.name!r}")
        key = (r.name, r.node, r.tensor)
        if key in alias:
            return alias[key]
        return _Ref(renames.get(r.name, r.name), r.node - offsets.get(r.name, 0), r.tensor)

    shapes: dict[tuple, list | None] = {}
    dtypes: dict[tuple, str] = {}

    def shape_of(ref: _Ref):
        return shapes.get(ref.key())

    out_layers = []
    for n, layer in zip(old_names, layers):
        cls = layer["class_name"]
        new_name = renames.get(n, n)
        lcfg = layer["config"]
        _check_lambda(cls, lcfg, n, ctx)
        layer_calls = [
            _Call(_map_struct(fix, c.args), _map_struct(fix, c.kwargs)) for c in calls[n]
        ]
        if cls in GRAPH_RULES:
            if len(layer_calls) != 1:
                raise SurgeonError(f"layer {n!r} ({cls}) is called {len(layer_calls)} times; "
                                   "surgeon translates only single-call op layers")
            new_layers = GRAPH_RULES[cls](cls, lcfg, new_name, layer_calls[0], shape_of, ctx,
                                          taken)
            for nl in new_layers:
                ins = _flatten_refs(nl.args)
                in_shapes = [shape_of(r) for r in ins]
                shp = _infer_shape(nl.cls, nl.cfg, in_shapes)
                shapes[(nl.cfg["name"], 0, 0)] = _placeholder(
                    shp, in_shapes[0] if in_shapes else None
                )
                dtypes[(nl.cfg["name"], 0, 0)] = (nl.cfg["dtype"]["config"]["name"])
                out_layers.append(_emit_layer(nl.cls, nl.cfg, [_Call(nl.args, nl.kwargs)],
                                              shapes, dtypes))
            alias[(n, 0, 0)] = _Ref(new_layers[-1].cfg["name"], 0, 0)
            continue

        if cls in MODEL_CLASSES:
            new_cls, new_cfg, out_shapes = _translate_nested(cls, lcfg, ctx, n)
            new_cfg["name"] = new_name
            for i in range(len(layer_calls)):
                for t, s in enumerate(out_shapes):
                    shapes[(new_name, i, t)] = s
                    dtypes[(new_name, i, t)] = "float32"
        else:
            new_cls, new_cfg = _translate_layer_config(cls, lcfg, ctx, n)
            new_cfg["name"] = new_name
            if new_cls == "InputLayer":
                shapes[(new_name, 0, 0)] = list(new_cfg.get("batch_shape") or [None])
                dtypes[(new_name, 0, 0)] = new_cfg.get("dtype") or "float32"
            for i, call in enumerate(layer_calls):
                ins = _flatten_refs(call.args)
                in_shapes = [shape_of(r) for r in ins]
                shp = _infer_shape(new_cls, new_cfg, in_shapes)
                shapes[(new_name, i, 0)] = _placeholder(shp, in_shapes[0] if in_shapes else None)
                pol = new_cfg.get("dtype")
                dtypes[(new_name, i, 0)] = (
                    pol["config"]["name"] if isinstance(pol, dict) else (pol or "float32")
                )
                if dtypes[(new_name, i, 0)].startswith("mixed_"):
                    dtypes[(new_name, i, 0)] = dtypes[(new_name, i, 0)].split("_")[-1]
        out_layers.append(_emit_layer(new_cls, new_cfg, layer_calls, shapes, dtypes))

    def fix_io(entry, is_output):
        name, node, tensor = entry[0], entry[1], entry[2]
        key = (name, node, tensor)
        if key in alias:
            r = alias[key]
            return [r.name, r.node, r.tensor]
        new = renames.get(name, name)
        off = offsets.get(name, 0)
        # Keras 3 output_layers count a nested *Functional*'s creation node (it subtracts 1
        # itself); a nested Sequential's they do not.
        if is_output and cls_of.get(name) in ("Functional", "Model"):
            off = 0
        return [new, node - off, tensor]

    input_layers = map_io_refs(cfg["input_layers"], lambda ref: fix_io(ref, False))
    output_layers = map_io_refs(cfg["output_layers"], lambda ref: fix_io(ref, True))
    # Keras 2 always wrote lists; Keras 3 writes a lone [name, node, tensor] for a model of one
    # input (or output), and then takes / returns a tensor rather than a list of one, as
    # Keras 2 did.
    if isinstance(input_layers, list) and len(input_layers) == 1 and isinstance(
            input_layers[0], list):
        input_layers = input_layers[0]
    if isinstance(output_layers, list) and len(output_layers) == 1 and isinstance(
            output_layers[0], list):
        output_layers = output_layers[0]
    new = {"name": cfg.get("name", "functional"), "trainable": cfg.get("trainable", True),
           "layers": out_layers, "input_layers": input_layers, "output_layers": output_layers}
    # output shapes for callers (nested models)
    out_shapes = []
    flat_out = output_layers if isinstance(output_layers[0], list) else [output_layers]
    for e in flat_out:
        node = e[1]
        if cls_of.get(_old_name(e[0], renames)) in ("Functional", "Model"):
            node -= 1
        out_shapes.append(shapes.get((e[0], node, e[2])))
    return new, out_shapes


def _old_name(new, renames):
    for k, v in renames.items():
        if v == new:
            return k
    return new


def _emit_layer(cls, cfg, calls: list[_Call], shapes, dtypes) -> dict:
    def ser(x):
        if isinstance(x, _Ref):
            shp = shapes.get(x.key())
            return keras_tensor(x.name, x.node, x.tensor, list(_placeholder(shp)), dtypes.get(x.key(), "float32"))
        return x

    nodes = []
    for call in calls:
        nodes.append({"args": _map_struct(ser, call.args), "kwargs": _map_struct(ser, call.kwargs)})
    return {"class_name": cls, "config": cfg, "name": cfg["name"], "inbound_nodes": nodes}


def _translate_nested(cls, cfg, ctx, name):
    """A nested model's config -> (class_name, Keras 3 config, its output shapes)."""
    if cls == "Sequential":
        new_cfg, out_shape = _translate_sequential(cfg, ctx)
        out_shapes = [out_shape]
        new_cls = "Sequential"
    else:
        new_cfg, out_shapes = _translate_functional(cfg, ctx)
        new_cls = "Functional"
        if cls != "Functional":
            ctx.note(f"class {cls} written as Functional", name)
    if isinstance(cfg, dict) and cfg.get("trainable", True) is False:
        new_cfg["trainable"] = False
        _set_untrainable(new_cfg, ctx, name)
    return new_cls, new_cfg, [s or [None] for s in out_shapes]


# ---------------------------------------------------------------------------------------------
# Sequential


def _translate_sequential(cfg, ctx: _Ctx) -> tuple[dict, list | None]:
    if isinstance(cfg, list):
        ctx.note("list-shaped Sequential config (standalone Keras 2.0-2.2) written as a dict")
        cfg = {"name": "sequential", "layers": cfg}
    layers = [copy.deepcopy(layer) for layer in cfg.get("layers", [])]
    out = []
    old_names = [layer["config"].get("name") for layer in layers]
    renames = _make_renames([n for n in old_names if n], ctx)
    taken = {renames.get(n, n) for n in old_names if n}
    shape = None
    build_shape = cfg.get("build_input_shape")
    if layers and layers[0]["class_name"] != "InputLayer":
        c0 = layers[0]["config"]
        bis = c0.get("batch_input_shape")
        if bis is None and "input_shape" in c0:
            bis = [None] + list(c0["input_shape"])
        if bis is None and "input_dim" in c0:
            bis = [None, c0["input_dim"]]
        if bis is not None:
            in_name = unique_name(f"{renames.get(old_names[0], old_names[0])}_input", taken)
            dt = c0.get("dtype", "float32")
            if isinstance(dt, dict):
                dt = (dt.get("config") or {}).get("name", "float32")
            out.append({"class_name": "InputLayer", "config": {
                "batch_shape": list(bis), "dtype": dt, "sparse": False, "ragged": False,
                "name": in_name}})
            ctx.note("batch_input_shape of a Sequential's first layer written as an InputLayer")
            shape = list(bis)
    for layer, old in zip(layers, old_names):
        cls = layer["class_name"]
        name = renames.get(old, old)
        _check_lambda(cls, layer["config"], old, ctx)
        if cls in GRAPH_RULES:
            raise SurgeonError(
                f"layer {old!r} ({cls}) inside a Sequential model is not translated; rebuild "
                "the model as a functional one"
            )
        if cls in MODEL_CLASSES:
            new_cls, new_cfg, out_shapes = _translate_nested(cls, layer["config"], ctx, old)
            new_cfg["name"] = name
            shape = out_shapes[0]
        else:
            new_cls, new_cfg = _translate_layer_config(cls, layer["config"], ctx, old)
            new_cfg["name"] = name
            if new_cls == "InputLayer":
                shape = list(new_cfg.get("batch_shape") or [None])
            else:
                shape = _infer_shape(new_cls, new_cfg, [shape] if shape else [])
        out.append({"class_name": new_cls, "config": new_cfg})
    new = {"name": cfg.get("name", "sequential"), "trainable": cfg.get("trainable", True),
           "layers": out}
    if out and out[0]["class_name"] == "InputLayer":
        new["build_input_shape"] = out[0]["config"]["batch_shape"]
    elif build_shape:
        new["build_input_shape"] = build_shape
    return new, shape


# ---------------------------------------------------------------------------------------------
# entry points


def translate_model_config(config: dict, allow_code: bool = False) -> Translation:
    """Translate a Keras 2 ``model_config`` (``{"class_name", "config"}``) into Keras 3's.

    Raises :class:`SurgeonError` (one line naming the layer, the problem and the way out) when a
    layer cannot be expressed with built-in Keras 3 layers. ``allow_code=True`` keeps Lambda layers
    (marshalled bytecode) as they are instead of refusing them.
    """
    if isinstance(config, (str, bytes)):
        config = json.loads(config)
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise SurgeonError("model_config is not a Keras model config (no class_name/config)")
    ctx = _Ctx(allow_code)
    cls = config["class_name"]
    if cls == "Sequential":
        new_cfg, _ = _translate_sequential(config["config"], ctx)
        if isinstance(config["config"], dict) and config["config"].get("trainable", True) is False:
            _set_untrainable(new_cfg, ctx, new_cfg["name"])
        out = {"class_name": "Sequential", "config": new_cfg}
    elif cls in ("Functional", "Model"):
        new_cfg, _ = _translate_functional(config["config"], ctx)
        if cls == "Model":
            ctx.note("class Model written as Functional")
        if config["config"].get("trainable", True) is False:
            _set_untrainable(new_cfg, ctx, new_cfg["name"])
        out = {"class_name": "Functional", "config": new_cfg}
    else:
        raise SurgeonError(
            f"model class {cls!r} is not a Functional or Sequential model; subclassed models "
            "cannot be read from an .h5 config"
        )
    return Translation(config=out, renamed=dict(ctx.renamed), notes=ctx.notes())


OPTIMIZER_DROPPED_KEYS = ("jit_compile", "is_legacy_optimizer")
# LOSS_NAMES and OPTIMIZER_NAMES live in compile_config: the Keras 3 .h5 writer and recompile use them too.
LOSS_REDUCTIONS = {"auto": "sum_over_batch_size", "sum_over_batch_size": "sum_over_batch_size",
                   "sum": "sum", "none": None}


def _translate_optimizer(opt: dict, notes: list) -> dict:
    opt = copy.deepcopy(opt)
    cls = opt.get("class_name", "")
    base = cls.split(">")[-1]
    new_cls = OPTIMIZER_NAMES.get(base.lower(), base)
    if new_cls != cls:
        notes.append(f"optimizer class {cls} written as {new_cls}")
    cfg = opt.get("config", {})
    if "lr" in cfg:
        cfg["learning_rate"] = cfg.pop("lr")
        notes.append("optimizer: lr renamed learning_rate")
    if "decay" in cfg:
        d = cfg.pop("decay")
        if d:
            notes.append(
                f"optimizer: learning-rate decay {d} dropped (Keras 3 has no 'decay'; use a "
                "keras.optimizers.schedules.InverseTimeDecay learning rate to keep it)"
            )
        else:
            notes.append("optimizer: decay 0 dropped")
    for k in OPTIMIZER_DROPPED_KEYS:
        if k in cfg:
            cfg.pop(k)
            notes.append(f"optimizer: dropped Keras 2 key {k!r}")
    if isinstance(cfg.get("name"), str) and cfg["name"] == base and base != base.lower():
        cfg["name"] = base.lower()
    return {"class_name": new_cls, "config": cfg}


def _translate_loss(loss, notes):
    if isinstance(loss, str):
        if loss in LOSS_NAMES:
            notes.append(f"loss {loss} written as {LOSS_NAMES[loss]}")
            return LOSS_NAMES[loss]
        return loss
    if isinstance(loss, dict) and "class_name" in loss:
        loss = copy.deepcopy(loss)
        c = loss.get("config", {})
        if "reduction" in c and c["reduction"] in LOSS_REDUCTIONS and c["reduction"] != (
                LOSS_REDUCTIONS[c["reduction"]]):
            notes.append(f"loss reduction {c['reduction']!r} written as "
                         f"{LOSS_REDUCTIONS[c['reduction']]!r}")
            c["reduction"] = LOSS_REDUCTIONS[c["reduction"]]
        c.pop("fn", None)
        return loss
    if isinstance(loss, dict):
        return {k: _translate_loss(v, notes) for k, v in loss.items()}
    if isinstance(loss, list):
        return [_translate_loss(v, notes) for v in loss]
    return loss


def _translate_metric(m, notes):
    if isinstance(m, dict) and m.get("class_name") == "MeanMetricWrapper":
        c = m.get("config", {})
        fn = c.get("fn")
        name = c.get("name")
        out = name if name in ("accuracy", "acc") else (fn or name)
        notes.append(f"metric MeanMetricWrapper({fn}) written as {out!r}")
        return out
    if isinstance(m, str) and m in LOSS_NAMES:
        notes.append(f"metric {m} written as {LOSS_NAMES[m]}")
        return LOSS_NAMES[m]
    if isinstance(m, list):
        return [_translate_metric(v, notes) for v in m]
    if isinstance(m, dict) and "class_name" not in m:
        return {k: _translate_metric(v, notes) for k, v in m.items()}
    return m


def _flatten_single_output_metrics(metrics):
    # tf.keras 2 writes metrics per output as a list of lists even for one output
    if isinstance(metrics, list) and len(metrics) == 1 and isinstance(metrics[0], list):
        return metrics[0]
    return metrics


def translate_training_config(training_config: dict, notes: list | None = None) -> dict:
    """Translate a Keras 2 ``training_config`` into what Keras 3 reads back from an ``.h5``.

    Optimizer: class names normalised (``Custom>Adam``/``adam`` -> ``Adam``), ``lr`` ->
    ``learning_rate``, ``decay`` and other Keras 2-only keys dropped. Each change is appended to
    ``notes`` when a list is given. Loss: old names and ``reduction: auto``
    fixed. Metrics: ``MeanMetricWrapper`` unwrapped to its function name. ``sample_weight_mode``
    dropped.
    """
    if isinstance(training_config, (str, bytes)):
        training_config = json.loads(training_config)
    tc = copy.deepcopy(training_config)
    notes = notes if notes is not None else []
    if tc.get("optimizer_config"):
        tc["optimizer_config"] = _translate_optimizer(tc["optimizer_config"], notes)
    if "loss" in tc:
        tc["loss"] = _translate_loss(tc["loss"], notes)
    for k in ("metrics", "weighted_metrics"):
        if tc.get(k) is not None:
            tc[k] = _flatten_single_output_metrics(_translate_metric(tc[k], notes))
    if "sample_weight_mode" in tc:
        tc.pop("sample_weight_mode")
        notes.append("sample_weight_mode dropped (Keras 3 has none)")
    tc.setdefault("loss_weights", None)
    return tc
