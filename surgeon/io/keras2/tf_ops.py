"""Graph rules: TFOpLambda / SlicingOpLambda calls replaced by built-in Keras 3 layers, one call each.

A graph rule gets (layer name, call, input shape lookup, context, dtype) and returns a list of
:class:`NewLayer`; the last one produces the call's output.
"""

from __future__ import annotations

from typing import Callable

from surgeon.errors import SurgeonError
from surgeon.io.affine_ops import rescaling_of
from surgeon.io.keras2.context import Constant, TensorRef, base_config
from surgeon.spec import unique_name


class NewLayer:
    def __init__(self, cls, config, args, kwargs=None):
        self.cls, self.config, self.args, self.kwargs = cls, config, args, kwargs or {}


def _untranslatable(name, op, why=""):
    return SurgeonError(
        f"layer {name!r} applies the TensorFlow op {op!r}{why}, which has no built-in Keras 3 "
        "layer; replace it by a Keras layer in the original model and save again (or translate "
        "it in surgeon.io.keras2.tf_ops.TFOP_RULES)"
    )


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _const_value(v):
    """A scalar or a flat list of numbers (per-channel constant), else None."""
    if isinstance(v, Constant):
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
    config = base_config(name, dtype)
    config.update(scale=scale, offset=offset)
    return [NewLayer("Rescaling", config, [x])]


def _binary(merge_cls, operation):
    """``x op c`` or ``c op x`` -> Rescaling (``affine_ops``), ``x op y`` -> the merge layer ``merge_cls``."""
    def rule(name, op, call, shape_of, context, dtype):
        x, y = _op_xy(name, op, call)
        if isinstance(x, TensorRef) and isinstance(y, TensorRef):
            if merge_cls is None:
                raise _untranslatable(name, op, " on two tensors")
            context.note(f"TFOpLambda {op} on two tensors written as {merge_cls}", name)
            return [NewLayer(merge_cls, base_config(name, dtype), [[x, y]])]
        constant_first = not isinstance(x, TensorRef)
        c, x = (_const_value(x), y) if constant_first else (_const_value(y), x)
        if c is None or not isinstance(x, TensorRef):
            raise _untranslatable(name, op, " with a non-scalar constant")
        # x / c as x * (1/c): within one float32 rounding of TF's division (convert's check
        # against tf_keras measures it).
        affine = rescaling_of(operation, c, constant_first, inexact_division=True)
        if affine is None:
            where = "first (constant / tensor has no built-in layer)" if constant_first else f"{c!r}"
            raise _untranslatable(name, op, f" with the constant {where}")
        context.note(f"TFOpLambda {op} with a constant written as Rescaling", name)
        return _rescale(name, x, *affine, dtype)

    return rule


_ADD = _binary("Add", "add")
_SUB = _binary("Subtract", "subtract")
_MUL = _binary("Multiply", "multiply")
_DIV = _binary(None, "divide")


def _unary(cls, **extra):
    def rule(name, op, call, shape_of, context, dtype):
        x = call.args[0] if call.args else call.kwargs.get("features", call.kwargs.get("x"))
        if not isinstance(x, TensorRef):
            raise _untranslatable(name, op, " on a constant")
        config = base_config(name, dtype)
        params = {k: (v(call.kwargs) if callable(v) else v) for k, v in extra.items()}
        config.update(params)
        context.note(f"TFOpLambda {op} written as {cls}", name)
        return [NewLayer(cls, config, [x])]

    return rule


def _concat(name, op, call, shape_of, context, dtype):
    values = call.args[0] if call.args else call.kwargs.get("values")
    axis = call.kwargs.get("axis", -1)
    if not isinstance(values, list) or not all(isinstance(v, TensorRef) for v in values):
        raise _untranslatable(name, op, " with constant inputs")
    if axis == 0:
        raise _untranslatable(name, op, " along the batch axis")
    config = base_config(name, dtype)
    config["axis"] = axis
    context.note("TFOpLambda concat written as Concatenate", name)
    return [NewLayer("Concatenate", config, [list(values)])]


def _reduce(pool):
    def rule(name, op, call, shape_of, context, dtype):
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
            config = base_config(name, dtype)
            config.update(data_format="channels_last", keepdims=keepdims)
            context.note(f"TFOpLambda {op} over the spatial axes written as {cls}", name)
            return [NewLayer(cls, config, [x])]
        raise _untranslatable(name, op, f" over axes {axes} of a rank-{rank} tensor")

    return rule


def _reshape(name, op, call, shape_of, context, dtype):
    x = call.args[0]
    shape = call.kwargs.get("shape")
    if not isinstance(shape, list) or not shape or shape[0] not in (-1, None):
        raise _untranslatable(name, op, " that changes the batch dimension")
    target = list(shape[1:])
    if shape[0] == -1 and -1 in target:
        raise _untranslatable(name, op, " with two -1 dimensions")
    config = base_config(name, dtype)
    config["target_shape"] = target
    context.note("TFOpLambda reshape written as Reshape", name)
    return [NewLayer("Reshape", config, [x])]


def _transpose(name, op, call, shape_of, context, dtype):
    x = call.args[0]
    perm = call.kwargs.get("perm")
    if not isinstance(perm, list) or not perm or perm[0] != 0:
        raise _untranslatable(name, op, " that moves the batch axis")
    config = base_config(name, dtype)
    config["dims"] = list(perm[1:])
    context.note("TFOpLambda transpose written as Permute", name)
    return [NewLayer("Permute", config, [x])]


def _crop_layer(name, dtype, rank, crops, channels_first):
    n = rank - 2
    config = base_config(name, dtype)
    if n == 1:
        config["cropping"] = list(crops[0])
        return "Cropping1D", config
    config["cropping"] = [list(c) for c in crops]
    config["data_format"] = "channels_first" if channels_first else "channels_last"
    return f"Cropping{n}D", config


def _getitem(name, op, call, shape_of, context, dtype, taken: set):
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
        context.note("SlicingOpLambda that keeps everything written as Identity", name)
        return [NewLayer("Identity", base_config(name, dtype), [x])]
    out: list[NewLayer] = []

    def emit(cls, config, inp):
        out.append(NewLayer(cls, config, [inp]))
        return TensorRef(config["name"], 0, 0)

    cur = x
    if rank == 2:
        # (B, C) -> (B, C, 1) -> Cropping1D -> (B, C')
        c = shape[1]
        lo, hi = crops[1]
        config = base_config(unique_name(f"{name}_expand", taken), dtype)
        config["target_shape"] = [c, 1]
        cur = emit("Reshape", config, cur)
        cls, config = _crop_layer(unique_name(f"{name}_crop", taken), dtype, 3, [(lo, hi)], False)
        cur = emit(cls, config, cur)
        config = base_config(name, dtype)
        config["target_shape"] = [c - lo - hi]
        emit("Reshape", config, cur)
    elif rank == 3:
        if crops[2] == (0, 0):
            cls, config = _crop_layer(name, dtype, 3, [crops[1]], False)
            emit(cls, config, cur)
        else:
            # (B, T, C) -> (B, T, C, 1) -> Cropping2D -> (B, T', C')
            t, c = shape[1], shape[2]
            if c is None:
                raise _untranslatable(name, op, " (slicing a feature axis of unknown size)")
            config = base_config(unique_name(f"{name}_expand", taken), dtype)
            config["target_shape"] = [-1 if t is None else t, c, 1]
            cur = emit("Reshape", config, cur)
            cls, config = _crop_layer(unique_name(f"{name}_crop", taken), dtype, 4,
                                   [crops[1], crops[2]], False)
            cur = emit(cls, config, cur)
            config = base_config(name, dtype)
            config["target_shape"] = [-1, c - crops[2][0] - crops[2][1]]
            emit("Reshape", config, cur)
    elif rank in (4, 5):
        # channels_last CroppingND crops axes 1..rank-2; channels_first crops axes 2..rank-1.
        need_last = any(crops[a] != (0, 0) for a in range(1, rank - 1))
        need_first = crops[rank - 1] != (0, 0)
        if need_last:
            nm = name if not need_first else unique_name(f"{name}_crop", taken)
            cls, config = _crop_layer(nm, dtype, rank, crops[1:rank - 1], False)
            cur = emit(cls, config, cur)
        if need_first:
            cls, config = _crop_layer(name, dtype, rank, [(0, 0)] * (rank - 3) + [crops[rank - 1]],
                                   True)
            emit(cls, config, cur)
    else:
        raise _untranslatable(name, op, f" (slicing a rank-{rank} tensor)")
    context.note("SlicingOpLambda (x[...] slicing) written as Cropping layers", name)
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


def _gelu_rule(name, op, call, shape_of, context, dtype):
    if call.kwargs.get("approximate"):
        raise _untranslatable(name, op, " with approximate=True")
    return _unary("Activation", activation="gelu")(name, op, call, shape_of, context, dtype)


TFOP_RULES["nn.gelu"] = _gelu_rule


def translate_tf_op(cls, layer_config, name, call, shape_of, context, taken):
    op = layer_config.get("function")
    rule = TFOP_RULES.get(op)
    if rule is None:
        raise _untranslatable(name, op)
    dtype = layer_config.get("dtype")
    if rule is _getitem:
        return _getitem(name, op, call, shape_of, context, dtype, taken)
    return rule(name, op, call, shape_of, context, dtype)


GRAPH_RULES = {"TFOpLambda": translate_tf_op, "SlicingOpLambda": translate_tf_op}
