"""Best-effort output shapes: placeholders for Keras, which replaces them; slicing rules need them."""

from __future__ import annotations

import math
from typing import Callable

from surgeon.layer_kinds import SHAPE_PRESERVING


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


def _spatial(config, shape):
    cf = config.get("data_format") == "channels_first"
    return (list(shape[2:]), shape[1]) if cf else (list(shape[1:-1]), shape[-1]), cf


def _shape_conv(config, shapes, cls):
    shape = shapes[0]
    (sp, _), cf = _spatial(config, shape)
    n = len(sp)
    k = _tuple(config.get("kernel_size", 1), n)
    s = _tuple(config.get("strides", 1), n)
    d = _tuple(config.get("dilation_rate", 1), n)
    out_sp = [_conv_len(sp[i], k[i], s[i], d[i], config.get("padding", "valid")) for i in range(n)]
    if cls.startswith("Depthwise"):
        ch = shape[1 if cf else -1]
        ch = None if ch is None else ch * config.get("depth_multiplier", 1)
    else:
        ch = config.get("filters")
    return [shape[0], ch] + out_sp if cf else [shape[0]] + out_sp + [ch]


def _shape_pool(config, shapes):
    shape = shapes[0]
    (sp, ch), cf = _spatial(config, shape)
    n = len(sp)
    k = _tuple(config.get("pool_size", 2), n)
    s = _tuple(config.get("strides") or k, n)
    out_sp = [_conv_len(sp[i], k[i], s[i], 1, config.get("padding", "valid")) for i in range(n)]
    return [shape[0], ch] + out_sp if cf else [shape[0]] + out_sp + [ch]


def _shape_gpool(config, shapes):
    shape = shapes[0]
    (sp, ch), cf = _spatial(config, shape)
    if config.get("keepdims"):
        return [shape[0], ch] + [1] * len(sp) if cf else [shape[0]] + [1] * len(sp) + [ch]
    return [shape[0], ch]


def _shape_concat(config, shapes):
    axis = config.get("axis", -1)
    out = list(shapes[0])
    ax = axis % len(out)
    dims = [s[ax] for s in shapes]
    out[ax] = None if any(d is None for d in dims) else sum(dims)
    return out


def _shape_flatten(config, shapes):
    rest = shapes[0][1:]
    return [shapes[0][0], None if any(d is None for d in rest) else math.prod(rest)]


def _shape_reshape(config, shapes):
    target = list(config["target_shape"])
    if -1 in target:
        rest = shapes[0][1:]
        known = math.prod(d for d in target if d != -1)
        if any(d is None for d in rest):
            target[target.index(-1)] = None
        else:
            target[target.index(-1)] = math.prod(rest) // known
    return [shapes[0][0]] + target


def _shape_crop(config, shapes, n):
    shape = list(shapes[0])
    crop = config.get("cropping")
    if n == 1:
        if isinstance(crop, (list, tuple)) and not isinstance(crop[0], (list, tuple)):
            crop = [crop]
    crop = [_tuple(c, 2) for c in _tuple(crop, n)]
    cf = config.get("data_format") == "channels_first"
    first = 2 if cf else 1
    for i, (lo, hi) in enumerate(crop):
        d = shape[first + i]
        shape[first + i] = None if d is None else d - lo - hi
    return shape


def _shape_pad(config, shapes, n):
    shape = list(shapes[0])
    pad = config.get("padding")
    pad = [_tuple(p, 2) for p in _tuple(pad, n)] if n > 1 else [_tuple(pad, 2)]
    cf = config.get("data_format") == "channels_first"
    first = 2 if cf else 1
    for i, (lo, hi) in enumerate(pad):
        d = shape[first + i]
        shape[first + i] = None if d is None else d + lo + hi
    return shape


def _shape_upsample(config, shapes, n):
    shape = list(shapes[0])
    size = _tuple(config.get("size", 2), n)
    cf = config.get("data_format") == "channels_first"
    first = 2 if cf else 1
    for i in range(n):
        d = shape[first + i]
        shape[first + i] = None if d is None else d * size[i]
    return shape


def _same(config, shapes):
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


def infer_shape(cls, config, in_shapes):
    """Output shape (list) of a single-output layer, or None when unknown."""
    rule = SHAPE_RULES.get(cls)
    if rule is None or not in_shapes or any(s is None for s in in_shapes):
        return None
    try:
        return rule(config, in_shapes)
    except Exception:  # noqa: BLE001 - a placeholder shape is never worth failing for
        return None


def placeholder_shape(shape, like=None):
    if shape is not None:
        return list(shape)
    if like is not None:
        return [None] * len(like)
    return [None]
