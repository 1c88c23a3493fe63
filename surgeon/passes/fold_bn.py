"""Remove BatchNormalization layers by folding their inference-time affine map into neighbours.

Given::

    x -> Conv2D(linear) -> BN -> relu          (BN after a linear layer)
    x -> BN -> Dense / valid or 1x1 conv       (BN before a layer, where exact)
    x -> BN -> Flatten -> Dense
    x -> relu -> BN -> ...                     (anything else)

Result::

    x -> Conv2D(kernel * s, (bias - mean) * s + beta) -> relu
    x -> Dense(kernel * s on its input axis, bias + kernel . t)
    x -> Flatten -> Dense(rows scaled per channel)
    x -> relu -> Rescaling(scale=s, offset=t) -> ...   ("affine": exact, has no training mode)

with ``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s`` (surgeon.math.bn_affine).

Only BNs that Keras would not train (``trainable=False`` on the layer or an enclosing model) are
touched by default, and only folded into a neighbour that is frozen too: folding into a trainable
kernel would reparametrize it and change what fine-tuning does, so a frozen BN next to a trainable
layer becomes an exact, weightless Rescaling instead. ``fold_all=True`` folds everything (deployment).

Which layers can absorb a BN, and how, is the data in ``PATTERNS``; the algebra is surgeon.math.
All folds are computed in float64 and cast once, to each weight's stored dtype (a layer that takes
two folds, one on each side, gets float64 working copies so that the first is not rounded).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from surgeon import math as bn_math
from surgeon.graph import Graph
from surgeon.graph_edit import bypass_layer, replace_layer
from surgeon.layer_kinds import BATCH_NORMALIZATION
from surgeon.passes import PassReport
from surgeon.spec import ModelSpec, dtype_policy, effectively_frozen, is_keras_tensor, is_model_config, layer_name


def _data_format_axis(config: dict, rank: int) -> int:
    return 1 if config.get("data_format") == "channels_first" else rank - 1


def _last_axis(config: dict, rank: int) -> int:
    return rank - 1


@dataclasses.dataclass(frozen=True)
class Pattern:
    """How a layer kind absorbs a BN.

    after: (math layout, kernel weight) for a BN fed by the layer's output.
    before: (math layout, kernel weight) for a BN feeding the layer, or None when never exact.
    channel_axis: the channel axis of the layer's input/output tensor, given its config and rank.
    spatial: the layer slides a window (its padding decides whether a fold before it is exact).
    """

    after: tuple[str, str]
    before: tuple[str, str] | None
    channel_axis: Callable[[dict, int], int]
    spatial: bool = True


_CONV = Pattern(("conv", "kernel"), ("conv", "kernel"), _data_format_axis)
_DEPTHWISE = Pattern(("depthwise", "kernel"), ("depthwise", "kernel"), _data_format_axis)
# The depthwise half of a SeparableConv has no bias of its own to take a preceding BN's shift.
_SEPARABLE = Pattern(("separable_pointwise", "pointwise_kernel"), None, _data_format_axis)
# A transposed conv sums a varying number of taps at the borders (surgeon.math.NOT_FOLDABLE_BEFORE).
_TRANSPOSE = Pattern(("conv_transpose", "kernel"), None, _data_format_axis)

PATTERNS: dict[str, Pattern] = {
    "Dense": Pattern(("dense", "kernel"), ("dense", "kernel"), _last_axis, spatial=False),
    "Conv1D": _CONV,
    "Conv2D": _CONV,
    "Conv3D": _CONV,
    "DepthwiseConv1D": _DEPTHWISE,
    "DepthwiseConv2D": _DEPTHWISE,
    "SeparableConv1D": _SEPARABLE,
    "SeparableConv2D": _SEPARABLE,
    "Conv1DTranspose": _TRANSPOSE,
    "Conv2DTranspose": _TRANSPOSE,
    "Conv3DTranspose": _TRANSPOSE,
}

LINEAR_ACTIVATIONS = (None, "linear")


@dataclasses.dataclass
class _Level:
    """One nesting level being rewritten: its config, graph and the path prefix of its layers."""

    model: dict
    prefix: str
    graph: Graph
    top: bool
    weights: dict  # the spec's weights, by layer path

    def path(self, name: str) -> str:
        return self.prefix + name


def fold_bn(spec: ModelSpec, *, fold_all: bool = False) -> tuple[ModelSpec, PassReport]:
    """Fold (or make affine) every frozen BatchNormalization; ``fold_all`` takes trainable ones too.

    The report has one row per BN: ``action`` is ``folded-after`` / ``folded-before`` (``into``
    names the layer(s) that absorbed it), ``affine`` (replaced by a Rescaling of the same name)
    or ``left`` (``reason`` says why).

    Example:
        >>> from surgeon.io import read_model
        >>> spec, report = fold_bn(read_model("fixtures/convbn.h5"))
        >>> [row["action"] for row in report.changes][:2]
        ['folded-after', 'folded-after']
    """
    spec = spec.copy()
    report = PassReport("fold_bn")
    frozen = effectively_frozen(spec.config)
    if fold_all:
        frozen = {path: True for path in frozen}
    edits: dict[str, list[Callable]] = {}  # layer path -> weight edits, in planning order
    _fold_level(spec, spec.config, "", True, frozen, edits, report)
    for path, functions in edits.items():
        original = spec.weights[path]
        if len(functions) == 1:
            # surgeon.math computes in float64 and casts back to the dtype of the arrays it is given.
            weights = dict(original)
            functions[0](weights)
            spec.weights[path] = weights
            continue
        weights = {name: np.asarray(value, dtype=np.float64) for name, value in original.items()}
        for edit in functions:
            edit(weights)
        kernel = next(iter(original.values()))  # a new bias takes the kernel's (the variable) dtype
        spec.weights[path] = {name: bn_math.cast_like(value, original.get(name, kernel)) for name, value in weights.items()}
    left = [row for row in report.changes if row["action"] == "left"]
    if left:
        report.notes.append(f"{len(left)} BatchNormalization layer(s) left; see 'reason'")
    return spec, report


def _fold_level(spec: ModelSpec, model: dict, prefix: str, top: bool, frozen: dict[str, bool], edits: dict, report: PassReport) -> None:
    for layer in model["config"]["layers"]:
        if is_model_config(layer):
            _fold_level(spec, layer, prefix + layer_name(layer) + "/", False, frozen, edits, report)
    level = _Level(model, prefix, Graph.of(model), top, spec.weights)
    consumers = level.graph.consumers()
    outputs = set(level.graph.outputs)
    bypass, affine = [], []
    for name, layer in level.graph.layers.items():
        if layer.get("class_name") != BATCH_NORMALIZATION:
            continue
        path = level.path(name)
        row = {"layer": path, "action": "left", "into": None, "reason": None}
        report.changes.append(row)
        if not frozen[path]:
            row["reason"] = "trainable: folding it would change fine-tuning (--all folds it)"
            continue
        bn = _BatchNorm.of(spec, level, name)
        if isinstance(bn, str):
            row["reason"] = bn
            continue
        plan = _plan_after(level, bn, consumers, outputs, frozen) or _plan_before(level, bn, consumers, outputs, frozen)
        if plan is not None:
            for target, apply in plan.targets:
                edits.setdefault(target, []).append(apply)
            row.update(action=plan.action, into=[target for target, _ in plan.targets])
            bypass.append(name)
        elif bn.axis is None:
            row["reason"] = f"its axis {bn.config_axis} is not an axis of its input (rank {bn.rank or 'not recorded'})"
        else:
            row.update(action="affine", reason=bn.why_not)
            affine.append(bn)
    for name in bypass:
        bypass_layer(model, name)
        spec.weights.pop(level.path(name), None)
    for bn in affine:
        rescaling = replace_layer(model, bn.name, lambda entry, bn=bn: _rescaling_entry(entry, bn))
        # BatchNormalization.call takes mask= and training=, which Keras records in the node;
        # Rescaling.call takes neither and refuses the config if they stay.
        rescaling["inbound_nodes"] = [_without_bn_kwargs(node) for node in rescaling["inbound_nodes"]]
        spec.weights.pop(level.path(bn.name), None)


# --- one BN ----------------------------------------------------------------------------------


@dataclasses.dataclass
class _BatchNorm:
    name: str
    path: str
    axis: int | None  # normalized to [0, rank)
    config_axis: int
    calls: int
    rank: int | None
    shape: list | None  # input shape with batch, as recorded
    scale: np.ndarray
    shift: np.ndarray
    source: tuple[str, int, int]  # the tensor it normalizes
    dtype: object
    why_not: str | None = None  # set while planning: why it could not be folded

    @classmethod
    def of(cls, spec: ModelSpec, level: _Level, name: str) -> "_BatchNorm | str":
        layer = level.graph.layers[name]
        path = level.path(name)
        config = layer["config"]
        if level.graph.call_count(name) == 0:
            return "never called"
        weights = spec.weights.get(path, {})
        if not all(isinstance(weights.get(w), np.ndarray) for w in ("moving_mean", "moving_variance")):
            return "its statistics are not in the file"
        axis = config.get("axis", -1)
        if isinstance(axis, (list, tuple)):
            if len(axis) != 1:
                return f"it normalizes over several axes {list(axis)}"
            axis = axis[0]
        tensor = _input_tensor(layer["inbound_nodes"][0])
        shape = tensor["config"].get("shape") if tensor else None
        if shape is None or len(shape) < 2:
            # A BN input has a batch and a channel axis; anything shorter (a converted Sequential
            # records [None] for shapes it does not know) says nothing about the rank.
            shape = (layer.get("build_config") or {}).get("input_shape")
            shape = shape if shape is not None and len(shape) >= 2 else None
        rank = len(shape) if shape is not None else _output_rank(level.graph.layers[level.graph.node_inputs[(name, 0)][0][0]])
        scale, shift = bn_math.bn_affine(
            weights.get("gamma"), weights.get("beta"), weights["moving_mean"], weights["moving_variance"], config.get("epsilon", 1e-3)
        )
        normalized = (axis % rank if -rank <= axis < rank else None) if rank else None
        source = level.graph.node_inputs[(name, 0)][0]
        if normalized == 1 and rank > 2 and shape is not None and shape[1] is not None and shape[1] == shape[-1]:
            # keras/src/backend/tensorflow/numpy.py `add` turns "x + per-channel vector" into
            # tf.nn.bias_add and picks NHWC whenever the last dimension equals the vector's length:
            # on a tensor normalized over axis 1 whose last dimension has the same size, Keras adds
            # every folded bias or Rescaling offset on the last axis, so no rewrite would match.
            return (f"Keras (TensorFlow backend) would add its offsets on the last axis: the tensor's last "
                    f"dimension equals its {shape[1]} channels on axis 1")
        calls = level.graph.call_count(name)
        bn = cls(name, path, normalized, axis, calls, rank, shape, scale, shift, source, config.get("dtype"))
        if calls > 1:
            bn.why_not = f"called {calls} times: no single neighbour sees all its inputs"
        return bn


def _input_tensor(node) -> dict | None:
    for arg in node.get("args", []) if isinstance(node, dict) else node:
        if is_keras_tensor(arg):
            return arg
    return None


@dataclasses.dataclass
class _Fold:
    action: str
    targets: list[tuple[str, Callable[[dict[str, np.ndarray]], None]]]  # layer path, weight edit


def _plan_after(level: _Level, bn: _BatchNorm, consumers, outputs, frozen) -> _Fold | None:
    """A BN after a linear layer whose output feeds only the BN: scale the output channels."""
    if bn.calls > 1:
        return None
    producer_name = bn.source[0]
    producer = level.graph.layers[producer_name]
    pattern = PATTERNS.get(producer.get("class_name"))
    if pattern is None:
        return None
    target = level.path(producer_name)
    config = producer["config"]
    reason = None
    if level.graph.call_count(producer_name) != 1:
        reason = f"'{target}' is called {level.graph.call_count(producer_name)} times; folding would change its other calls"
    elif config.get("activation") not in LINEAR_ACTIVATIONS:
        reason = f"'{target}' applies activation '{config.get('activation')}' before the BN"
    elif consumers.get(bn.source) != [(bn.name, 0)] or bn.source in outputs:
        reason = f"the output of '{target}' is used by more than this BN"
    elif not _on_channel_axis(bn, pattern, config):
        reason = f"its axis is not the channel axis of '{target}'"
    elif not frozen[target]:
        reason = f"'{target}' is trainable: folding would change how it fine-tunes (--all folds it)"
    elif level.top and _is_output(level, bn.name):
        reason = "its output is a model output: the layer keeps its name so the output does too"
    elif pattern.after[1] not in level.weights.get(target, {}):
        reason = f"'{target}' has no '{pattern.after[1]}' weight in the file"
    if reason:
        bn.why_not = reason
        return None
    layout = pattern.after[0]
    kernel_name = pattern.after[1]  # the readers give every file Keras 3's weight names

    def apply(weights: dict[str, np.ndarray]) -> None:
        kernel, bias = bn_math.fold_bn_after(weights[kernel_name], weights.get("bias"), bn.scale, bn.shift, layout)
        weights[kernel_name], weights["bias"] = kernel, bias

    _ensure_bias(producer)
    return _Fold("folded-after", [(target, apply)])


def _plan_before(level: _Level, bn: _BatchNorm, consumers, outputs, frozen) -> _Fold | None:
    """A BN whose every consumer is a layer it folds into exactly (Dense, valid/1x1 conv, Flatten->Dense)."""
    if bn.calls > 1:
        return None
    out = (bn.name, 0, 0)
    users = consumers.get(out, [])
    if not users or out in outputs:
        return None
    folds = []
    for user, _ in users:
        fold = _before_one(level, bn, user, consumers, outputs, frozen)
        if isinstance(fold, str):
            # The "after" reason, if any, is the more telling one for the usual conv -> BN chain.
            bn.why_not = bn.why_not or fold
            return None
        folds.append(fold)
    for target, _ in folds:
        _ensure_bias(level.graph.layers[target.rpartition("/")[2]])
    return _Fold("folded-before", folds)


def _before_one(level: _Level, bn: _BatchNorm, user: str, consumers, outputs, frozen):
    layer = level.graph.layers[user]
    target = level.path(user)
    if level.graph.call_count(user) != 1:
        return f"'{target}' is called {level.graph.call_count(user)} times"
    if len(level.graph.node_inputs[(user, 0)]) != 1:
        return f"'{target}' takes several inputs"
    if layer.get("class_name") == "Flatten":
        return _before_flatten(level, bn, user, consumers, outputs, frozen)
    pattern = PATTERNS.get(layer.get("class_name"))
    if pattern is None or pattern.before is None:
        return f"it feeds '{target}' ({layer.get('class_name')}), which cannot absorb it"
    config = layer["config"]
    if not _on_channel_axis(bn, pattern, config):
        return f"its axis is not the channel axis of '{target}'"
    if pattern.spatial and config.get("padding") != "valid" and any(k != 1 for k in _as_list(config.get("kernel_size"))):
        # Zero padding is added after the BN: the padded border would not see the BN's shift.
        return f"it feeds '{target}', whose padding '{config.get('padding')}' pads after the BN"
    if not frozen[target]:
        return f"'{target}' is trainable: folding would change how it fine-tunes (--all folds it)"
    layout, kernel_name = pattern.before
    if kernel_name not in level.weights.get(target, {}):  # the readers give every file Keras 3's weight names
        return f"'{target}' has no '{kernel_name}' weight in the file"
    groups = int(config.get("groups", 1) or 1)

    def apply(weights: dict[str, np.ndarray]) -> None:
        kernel, bias = bn_math.fold_bn_before(weights[kernel_name], weights.get("bias"), bn.scale, bn.shift, layout, groups)
        weights[kernel_name], weights["bias"] = kernel, bias

    return target, apply


def _before_flatten(level: _Level, bn: _BatchNorm, flatten: str, consumers, outputs, frozen):
    target = level.path(flatten)
    out = (flatten, 0, 0)
    users = consumers.get(out, [])
    if out in outputs or len(users) != 1:
        return f"the output of '{target}' is used by more than one Dense"
    dense, _ = users[0]
    dense_path = level.path(dense)
    if level.graph.layers[dense].get("class_name") != "Dense" or level.graph.call_count(dense) != 1:
        return f"'{target}' does not feed a Dense called once"
    if bn.shape is None or any(d is None for d in bn.shape[1:]) or bn.axis is None:
        return f"the shape flattened by '{target}' is not recorded"
    if not frozen[dense_path]:
        return f"'{dense_path}' is trainable: folding would change how it fine-tunes (--all folds it)"
    channels_first_flatten = level.graph.layers[flatten]["config"].get("data_format") == "channels_first"
    # Row order of the flattened tensor (see surgeon.math.fold_bn_before_flatten_dense).
    if bn.axis == bn.rank - 1 and not channels_first_flatten:
        spatial, channel_major = bn.shape[1:-1], False
    elif bn.axis == 1 and channels_first_flatten:
        spatial, channel_major = bn.shape[2:], False
    elif bn.axis == 1:
        spatial, channel_major = bn.shape[2:], True
    else:
        return f"'{target}' reorders the BN's channel axis"

    def apply(weights: dict[str, np.ndarray]) -> None:
        kernel, bias = bn_math.fold_bn_before_flatten_dense(weights["kernel"], weights.get("bias"), bn.scale, bn.shift, spatial, channel_major)
        weights["kernel"], weights["bias"] = kernel, bias

    return dense_path, apply


def _output_rank(layer: dict) -> int | None:
    """The rank of a conv layer's output (its spatial dims + batch + channels), else None."""
    pattern = PATTERNS.get(layer.get("class_name"))
    if pattern is None or not pattern.spatial:
        return None
    return len(_as_list(layer["config"].get("kernel_size"))) + 2


def _on_channel_axis(bn: _BatchNorm, pattern: Pattern, config: dict) -> bool:
    rank = bn.rank
    if rank is None and pattern.spatial:
        rank = len(_as_list(config.get("kernel_size"))) + 2  # a conv's input has the same rank
    if rank is None:
        return bn.config_axis == -1  # a Dense acts on the last axis, whatever the rank
    if not -rank <= bn.config_axis < rank:
        return False
    return bn.config_axis % rank == pattern.channel_axis(config, rank)


def _ensure_bias(layer: dict) -> None:
    """A folded layer always has a bias; Keras 3 orders it after the kernel(s), as the dicts do."""
    layer["config"]["use_bias"] = True


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _is_output(level: _Level, name: str) -> bool:
    return any(t[0] == name for t in level.graph.outputs)


def _rescaling_entry(entry: dict, bn: _BatchNorm) -> dict:
    """A weightless, mode-independent ``Rescaling(scale=s, offset=t)`` in place of the BN."""
    scale, offset = bn_math.affine_for_rescaling(bn.scale, bn.shift, bn.axis, bn.rank)
    return {
        "module": "keras.layers",
        "class_name": "Rescaling",
        "config": {
            "name": bn.name,
            "trainable": entry["config"].get("trainable", True),
            "dtype": _rescaling_dtype(bn.dtype),
            "scale": scale,
            "offset": offset,
        },
        "registered_name": None,
    }


def _without_bn_kwargs(node):
    if not isinstance(node, dict) or not isinstance(node.get("kwargs"), dict):
        return node
    kwargs = {key: value for key, value in node["kwargs"].items() if key not in ("mask", "training")}
    return {**node, "kwargs": kwargs}


def _rescaling_dtype(policy):
    """The BN's policy, except that mixed precision computes the affine map in float32.

    (Rescaling would otherwise apply float32 parameters in float16; BatchNormalization itself
    computes in float32 under mixed precision.)
    """
    name = policy.get("config", {}).get("name") if isinstance(policy, dict) else policy
    if name is None or str(name).startswith("mixed_") or name in ("float16", "bfloat16"):
        return dtype_policy("float32")
    return policy
