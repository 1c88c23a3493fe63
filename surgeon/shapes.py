"""Output shapes of common layers from their configs alone: pure Python, no TensorFlow.

Keras records every tensor's shape in a functional config, but a Sequential config records at
most each weighted layer's input shape (``.keras`` ``build_config``) and none at all in ``.h5``.
``inspect`` (which must not import TensorFlow) and ``split`` (whose top needs the shape of the
tensor crossing the cut) fill the gaps with these rules, the same formulas as Keras'
``compute_output_shape`` (keras/src/ops/operation_utils.py). A layer not covered here gives
``None``: unknown, never a guess.

Example:
    >>> output_shape({"class_name": "Conv2D", "config": {"filters": 8, "kernel_size": [3, 3], "padding": "valid"}},
    ...              [None, 32, 32, 3])
    [None, 30, 30, 8]
"""

from __future__ import annotations

import math
from typing import Callable

from surgeon.layer_kinds import SHAPE_PRESERVING

Shape = list  # [batch, ...] with None for unknown sizes


def infer_shape(class_name: str, config: dict, input_shapes: list) -> Shape | None:
    """The output shape of a single-output layer given its inputs' shapes, or None if unknown."""
    rule = RULES.get(class_name)
    if rule is None or not input_shapes or any(shape is None for shape in input_shapes):
        return None
    try:
        result = rule(config, [list(shape) for shape in input_shapes])
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
        return None  # an odd config: unknown rather than wrong
    return None if result is None else list(result)


def output_shape(layer: dict, input_shape: Shape | None) -> Shape | None:
    """``infer_shape`` for a config entry (``{"class_name", "config"}``) called on one input."""
    return infer_shape(layer.get("class_name"), layer.get("config", {}), [input_shape])


def shape_text(shape, *, batch: bool = True) -> str:
    """``(None, 224, 224, 3)`` for people; ``?`` for an unknown shape. ``batch=False`` leaves out
    a batch dimension of any size (``(224, 224, 3)``), where a table has no room for it.

    Example:
        >>> shape_text([None, 7, 7, 2048]), shape_text([None, 7, 7, 2048], batch=False), shape_text([None], batch=False)
        ('(None, 7, 7, 2048)', '(7, 7, 2048)', '()')
    """
    if shape is None:
        return "?"
    dimensions = list(shape) if batch else list(shape)[1:]
    return "(" + ", ".join("None" if d is None else str(d) for d in dimensions) + ")"


def _tuple(value, rank: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * rank


def _spatial_axes(config: dict, rank: int) -> list[int]:
    """Indices of the spatial dimensions in a shape of length ``rank + 2``."""
    first = config.get("data_format") == "channels_first"
    return list(range(2, rank + 2)) if first else list(range(1, rank + 1))


def _channel_axis(config: dict) -> int:
    return 1 if config.get("data_format") == "channels_first" else -1


def _window(size, kernel: int, stride: int, dilation: int, padding: str):
    if size is None:
        return None
    if padding in ("same", "causal"):
        return math.ceil(size / stride)
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def _sliding(config: dict, shape: Shape, kernel_key: str, channels, default_strides=1) -> Shape:
    rank = len(shape) - 2
    kernel = _tuple(config[kernel_key], rank)
    # Convolutions stride 1 by default; pooling layers stride by their window (strides=None).
    strides = _tuple(config.get("strides") or (kernel if default_strides is None else default_strides), rank)
    dilation = _tuple(config.get("dilation_rate", 1), rank)
    padding = config.get("padding", "valid")
    result = list(shape)
    for i, axis in enumerate(_spatial_axes(config, rank)):
        result[axis] = _window(shape[axis], kernel[i], strides[i], dilation[i], padding)
    if channels is not None:
        result[_channel_axis(config)] = channels
    return result


def _conv(config: dict, shape: Shape) -> Shape:
    return _sliding(config, shape, "kernel_size", config["filters"])


def _depthwise(config: dict, shape: Shape) -> Shape:
    channels = shape[_channel_axis(config)]
    multiplier = config.get("depth_multiplier", 1)
    return _sliding(config, shape, "kernel_size", None if channels is None else channels * multiplier)


def _pool(config: dict, shape: Shape) -> Shape:
    return _sliding(config, shape, "pool_size", None, default_strides=None)


def _transpose(config: dict, shape: Shape) -> Shape | None:
    if config.get("output_padding") is not None:
        return None
    rank = len(shape) - 2
    kernel, strides = _tuple(config["kernel_size"], rank), _tuple(config.get("strides", 1), rank)
    dilation = _tuple(config.get("dilation_rate", 1), rank)
    result = list(shape)
    for i, axis in enumerate(_spatial_axes(config, rank)):
        size, effective = shape[axis], dilation[i] * (kernel[i] - 1) + 1
        if size is not None:
            grow = max(effective - strides[i], 0) if config.get("padding", "valid") == "valid" else 0
            result[axis] = size * strides[i] + grow
    result[_channel_axis(config)] = config["filters"]
    return result


def _global_pool(config: dict, shape: Shape) -> Shape:
    channels = shape[_channel_axis(config)]
    if config.get("keepdims"):
        result = [shape[0]] + [1] * (len(shape) - 1)
        result[_channel_axis(config)] = channels
        return result
    return [shape[0], channels]


def _flatten(config: dict, shape: Shape) -> Shape:
    rest = shape[1:]
    return [shape[0], None if None in rest else math.prod(rest)]


def _reshape(config: dict, shape: Shape) -> Shape | None:
    target = list(config["target_shape"])
    if -1 in target:
        known = shape[1:]
        if None in known:
            return None
        target[target.index(-1)] = math.prod(known) // math.prod(d for d in target if d != -1)
    return [shape[0]] + target


def _dense(config: dict, shape: Shape) -> Shape:
    return shape[:-1] + [config["units"]]


def _same(config: dict, shape: Shape) -> Shape:
    return shape


def _single(rule: Callable[[dict, Shape], Shape | None]) -> Callable[[dict, list], Shape | None]:
    return lambda config, shapes: rule(config, shapes[0])


def _concatenate(config: dict, shapes: list) -> Shape:
    result = list(shapes[0])
    axis = config.get("axis", -1) % len(result)
    sizes = [shape[axis] for shape in shapes]
    result[axis] = None if None in sizes else sum(sizes)
    return result


def _resize(config: dict, shape: Shape, key: str, change: Callable) -> Shape:
    """Cropping/ZeroPadding/UpSampling: each spatial size changed by its own (lo, hi) or factor."""
    rank = len(shape) - 2
    amounts = config[key]
    if key != "size" and rank == 1 and not isinstance(amounts[0], (list, tuple)):
        amounts = [amounts]
    amounts = _tuple(amounts, rank)
    result = list(shape)
    for axis, amount in zip(_spatial_axes(config, rank), amounts):
        if shape[axis] is not None:
            result[axis] = change(shape[axis], amount if key == "size" else _tuple(amount, 2))
    return result


def _permute(config: dict, shape: Shape) -> Shape:
    return [shape[0]] + [shape[d] for d in config["dims"]]


RULES: dict[str, Callable[[dict, list], Shape | None]] = {
    **{name: _single(_same) for name in SHAPE_PRESERVING},
    "Dense": _single(_dense),
    "Flatten": _single(_flatten),
    "Reshape": _single(_reshape),
    "Permute": _single(_permute),
    "Concatenate": _concatenate,
    **{f"Conv{d}D": _single(_conv) for d in (1, 2, 3)},
    **{f"SeparableConv{d}D": _single(_conv) for d in (1, 2)},
    **{f"DepthwiseConv{d}D": _single(_depthwise) for d in (1, 2)},
    **{f"Conv{d}DTranspose": _single(_transpose) for d in (1, 2, 3)},
    **{f"{kind}Pooling{d}D": _single(_pool) for kind in ("Max", "Average") for d in (1, 2, 3)},
    **{f"Global{kind}Pooling{d}D": _single(_global_pool) for kind in ("Max", "Average") for d in (1, 2, 3)},
    **{f"Cropping{d}D": _single(lambda c, s: _resize(c, s, "cropping", lambda n, a: n - a[0] - a[1])) for d in (1, 2, 3)},
    **{f"ZeroPadding{d}D": _single(lambda c, s: _resize(c, s, "padding", lambda n, a: n + a[0] + a[1])) for d in (1, 2, 3)},
    **{f"UpSampling{d}D": _single(lambda c, s: _resize(c, s, "size", lambda n, a: n * a)) for d in (1, 2, 3)},
}
