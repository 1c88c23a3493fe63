"""Pure numpy algebra of folding BatchNormalization into a neighbouring layer.

No graphs and no TensorFlow here: every function takes and returns numpy arrays, so it
is tested on its own against Keras itself (tests/test_math.py: a layer next to a
BatchNormalization, run in float64, against one layer carrying the folded weights).

BatchNormalization at inference is a per-channel affine map ``y = scale * x + shift``
(:func:`bn_affine`). It can be folded

- *after* a linear layer (the layer feeds the BN, :func:`fold_bn_after`): the
  output channels of the kernel are scaled, and ``bias = bias * scale + shift``;
- *before* a linear layer (the BN feeds the layer, :func:`fold_bn_before`): the
  input channels of the kernel are scaled, and the shift, pushed through the
  kernel, is added to the bias. Exact only when every output sees every kernel tap
  over real input (Dense, convs with ``padding="valid"``); the caller decides that.

All arithmetic is float64; results are cast once, at the end, back to the dtype
of the original kernel (float32, or float16 for a ``"float16"`` dtype policy),
like PyTorch's ``torch.nn.utils.fusion.fuse_conv_bn_weights``.

Keras 3 kernel layouts (identical for channels_last and channels_first):

===================== ============================ ==============================
layout                kernel shape                 output channel
===================== ============================ ==============================
``dense``             ``(in, out)``                axis -1
``conv``              ``(k..., in/groups, out)``   axis -1
``separable_pointwise`` ``(1[, 1], in*m, out)``    axis -1
``conv_transpose``    ``(k..., out, in)``          axis -2
``depthwise``         ``(k..., in, m)``            axes (-2, -1), ``c = i*m + j``
===================== ============================ ==============================
"""

import numpy as np

# Which kernel axes index the output channel. When there are several, the output
# channel is their row-major flattening (DepthwiseConv: c = i * multiplier + m,
# see keras/src/ops/nn.py depthwise_conv and tf.nn.depthwise_conv2d).
# Adding a layer kind is adding a row.
OUTPUT_AXES = {
    "dense": (-1,),
    "conv": (-1,),
    "separable_pointwise": (-1,),
    "conv_transpose": (-2,),
    "depthwise": (-2, -1),
}

# Which kernel axis indexes the input channel, for a BN that feeds the layer.
INPUT_AXIS = {
    "dense": -2,
    "conv": -2,
    "separable_pointwise": -2,
    "depthwise": -2,
}

# Layouts that cannot take a BN folded in front of them, and why.
NOT_FOLDABLE_BEFORE = {
    "conv_transpose": (
        "a transposed convolution sums a varying number of kernel taps at the "
        "output borders, even with padding='valid', so the shift of a preceding "
        "BatchNormalization is not a per-channel bias"
    ),
}


def bn_affine(gamma, beta, moving_mean, moving_variance, epsilon):
    """Return ``(scale, shift)``, float64, such that BN(x) == scale * x + shift.

    ``gamma`` is None for ``scale=False`` (taken as ones) and ``beta`` is None for
    ``center=False`` (taken as zeros).

    Example:
        >>> bn_affine(None, None, np.array([1.0]), np.array([3.999]), 1e-3)
        (array([0.5]), array([-0.5]))
    """
    mean = np.asarray(moving_mean, dtype=np.float64)
    variance = np.asarray(moving_variance, dtype=np.float64)
    gamma = np.ones_like(mean) if gamma is None else np.asarray(gamma, np.float64)
    beta = np.zeros_like(mean) if beta is None else np.asarray(beta, np.float64)
    if not (gamma.shape == beta.shape == mean.shape == variance.shape) or mean.ndim != 1:
        raise ValueError(
            "BatchNormalization weights must be 1-D and of equal length, got shapes "
            f"gamma={gamma.shape}, beta={beta.shape}, moving_mean={mean.shape}, "
            f"moving_variance={variance.shape}"
        )
    scale = gamma / np.sqrt(variance + float(epsilon))
    shift = beta - mean * scale
    return scale, shift


def cast_like(value, reference):
    """Cast ``value`` once to the dtype of ``reference`` (an array)."""
    return np.asarray(value).astype(np.asarray(reference).dtype, copy=False)


def _check_layout(layout, table):
    if layout not in table:
        raise ValueError(
            f"Unknown kernel layout {layout!r}; expected one of {sorted(table)}"
        )


def _as_vector(name, value, length):
    value = np.asarray(value, dtype=np.float64)
    if value.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {value.shape}")
    return value


def fold_bn_after(kernel, bias, scale, shift, layout):
    """Fold ``y = scale * layer(x) + shift`` into the layer: ``(kernel, bias)``.

    The layer must have a linear activation. ``bias`` None means no bias; a bias is
    always returned (the folded layer needs ``use_bias=True``). For SeparableConv
    pass only the pointwise kernel with ``layout="separable_pointwise"``.

    Example:
        >>> k, b = fold_bn_after(np.ones((3, 2), np.float32), None,
        ...                      np.array([2.0, 3.0]), np.array([1.0, 0.0]), "dense")
        >>> k[0].tolist(), b.tolist()
        ([2.0, 3.0], [1.0, 0.0])
    """
    _check_layout(layout, OUTPUT_AXES)
    kernel = np.asarray(kernel)
    axes = [a % kernel.ndim for a in OUTPUT_AXES[layout]]
    out_shape = [kernel.shape[a] for a in axes]
    channels = int(np.prod(out_shape))
    scale = _as_vector("scale", scale, channels)
    shift = _as_vector("shift", shift, channels)
    # Shape of the output-channel axes with ones in between, so that it
    # broadcasts from the first output axis to the end of the kernel.
    broadcast = [kernel.shape[a] if a in axes else 1 for a in range(axes[0], kernel.ndim)]
    new_kernel = scaled_kernel(kernel, scale.reshape(broadcast))
    old_bias = np.zeros(channels) if bias is None else _as_vector("bias", bias, channels)
    new_bias = old_bias * scale + shift
    bias_dtype = kernel if bias is None else np.asarray(bias)
    return new_kernel, cast_like(new_bias, bias_dtype)


# numpy's own float types: a ufunc computes in float64 and casts block by block into them.
_NUMPY_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def scaled_kernel(kernel: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """``kernel * factor`` computed in float64 and rounded once to the kernel's dtype.

    Written straight into the result, without a float64 copy of the whole kernel: the same
    bits, three times faster (ResNet50's 23M kernel values: 0.26 s -> 0.09 s).

    Example:
        >>> scaled_kernel(np.array([[1.0, 3.0]], np.float32), np.array([1 / 3, 1 / 3])).tolist()
        [[0.3333333432674408, 1.0]]
    """
    if kernel.dtype not in _NUMPY_FLOATS:  # bfloat16 and other ml_dtypes: cast the float64 product
        return cast_like(kernel.astype(np.float64) * factor, kernel)
    result = np.empty(kernel.shape, kernel.dtype)
    np.multiply(kernel, factor, out=result, dtype=np.float64, casting="same_kind")
    return result


def _per_kernel_entry(vector, kernel, layout, groups):
    """Spread a per-input-channel vector over the (input, output) kernel axes.

    Returns an array broadcastable against ``kernel`` from its input axis on.
    With ``groups`` g a conv kernel holds ``in/g`` input channels per group, and
    output channel ``o`` belongs to group ``o // (out/g)`` (keras/src/ops/nn.py
    conv, tf.nn.convolution with feature_group_count).
    """
    if layout in ("dense", "conv", "separable_pointwise"):
        per_group, outputs = kernel.shape[-2], kernel.shape[-1]
        group_of_output = np.arange(outputs) // (outputs // groups)
        index = group_of_output[None, :] * per_group + np.arange(per_group)[:, None]
        return vector[index]  # (in/groups, out)
    if layout == "depthwise":
        return vector[:, None]  # (in, 1) against (in, multiplier)
    raise AssertionError(layout)  # guarded by INPUT_AXIS


def fold_bn_before(kernel, bias, scale, shift, layout, groups=1):
    """Fold a BN that feeds the layer: ``layer(scale * x + shift)`` -> ``(kernel, bias)``.

    The input-channel axis of the kernel is scaled by ``scale``, and the bias gains
    the contraction of the kernel with ``shift`` over every non-output axis.
    Exact for Dense and for convolutions with ``padding="valid"`` (no zero padding
    that the shift would not reach); the caller checks the padding. Layouts:
    ``dense``, ``conv`` (any ``groups``), ``separable_pointwise``, ``depthwise``.
    ``conv_transpose`` raises ValueError: see ``NOT_FOLDABLE_BEFORE``.
    For a BN -> Flatten -> Dense chain use :func:`fold_bn_before_flatten_dense`.

    Example:
        >>> k, b = fold_bn_before(np.ones((2, 1), np.float32), None,
        ...                       np.array([2.0, 3.0]), np.array([1.0, 1.0]), "dense")
        >>> k[:, 0].tolist(), b.tolist()
        ([2.0, 3.0], [2.0])
    """
    if layout in NOT_FOLDABLE_BEFORE:
        raise ValueError(
            f"Cannot fold BatchNormalization before a {layout!r} layer: "
            f"{NOT_FOLDABLE_BEFORE[layout]}"
        )
    _check_layout(layout, INPUT_AXIS)
    kernel = np.asarray(kernel)
    groups = int(groups)
    if groups < 1 or (groups > 1 and layout != "conv"):
        raise ValueError(f"groups must be 1 for layout {layout!r}, got {groups}")
    if kernel.shape[-1] % groups:
        raise ValueError(
            f"{kernel.shape[-1]} output channels cannot be split into {groups} groups"
        )
    channels = kernel.shape[INPUT_AXIS[layout]] * groups
    scale = _per_kernel_entry(_as_vector("scale", scale, channels), kernel, layout, groups)
    shift = _per_kernel_entry(_as_vector("shift", shift, channels), kernel, layout, groups)

    wide = kernel.astype(np.float64)
    new_kernel = scaled_kernel(kernel, scale)
    # Contract the kernel with the shift over the spatial and input axes; what is
    # left are the output-channel axes, flattened as the layer's outputs are.
    spatial = tuple(range(kernel.ndim - 2))
    if layout == "depthwise":
        bias_gain = (wide * shift).sum(axis=spatial).reshape(-1)  # (in*m,)
    else:
        bias_gain = (wide * shift).sum(axis=spatial + (kernel.ndim - 2,))  # (out,)
    outputs = bias_gain.shape[0]
    old_bias = np.zeros(outputs) if bias is None else _as_vector("bias", bias, outputs)
    new_bias = old_bias + bias_gain
    bias_dtype = kernel if bias is None else np.asarray(bias)
    return new_kernel, cast_like(new_bias, bias_dtype)


def fold_bn_before_flatten_dense(
    kernel, bias, scale, shift, spatial_shape, channel_major=False
):
    """Fold BN -> Flatten -> Dense into the Dense ``(kernel, bias)``.

    ``spatial_shape`` is the non-channel shape of the flattened tensor, e.g.
    ``(H, W)``. The Dense rows are the flattened positions: ``(*spatial, c)``
    order by default; ``channel_major=True`` for ``(c, *spatial)`` order.

    Which order applies is decided by what Flatten saw, not by the conv layers:
    ``Flatten(data_format="channels_first")`` transposes its input to channels-last
    before flattening (keras/src/layers/reshaping/flatten.py), so its rows are
    ``(*spatial, c)`` -> ``channel_major=False``; only a channels-first tensor
    flattened by a channels_last Flatten gives ``channel_major=True``.

    Example:
        >>> k, b = fold_bn_before_flatten_dense(np.ones((4, 1)), None, np.array(
        ...     [1.0, 2.0]), np.zeros(2), spatial_shape=(2,))
        >>> k[:, 0].tolist()
        [1.0, 2.0, 1.0, 2.0]
    """
    scale = np.asarray(scale, dtype=np.float64)
    shift = np.asarray(shift, dtype=np.float64)
    positions = int(np.prod(spatial_shape, dtype=np.int64))
    expand = np.repeat if channel_major else np.tile
    return fold_bn_before(
        kernel, bias, expand(scale, positions), expand(shift, positions), "dense"
    )


def affine_for_rescaling(scale, shift, channel_axis, rank):
    """Per-channel ``(scale, offset)`` nested lists for ``keras.layers.Rescaling``.

    ``Rescaling(scale=s, offset=o)`` computes ``x * s + o`` with numpy-style
    broadcasting, so each value is shaped ``(C, 1, ..., 1)`` with one trailing 1
    per axis after ``channel_axis``, in an input of ``rank`` dimensions counting the
    batch (4 for images). It is also left-padded with ones to 3
    dimensions (when ``rank >= 3``), because Rescaling.call reshapes a ``scale`` of fewer than 3
    dimensions to ``(C, 1, 1)`` whenever the *global*
    ``keras.config.image_data_format()`` is channels_first, and never reshapes the
    offset (keras/src/layers/preprocessing/rescaling.py). With 3 dimensions the
    layer behaves the same on every machine. (For rank 2, ``(N, C)``, no shape is
    immune: such a layer breaks under a global channels_first setting.)

    Values are Python floats (plain JSON in the config). Rescaling converts a list
    to a float32 tensor before casting it to its compute dtype, so the parameters
    are float32 even in a float64 layer; under mixed precision give the layer
    ``dtype="float32"``, or it applies them in float16.

    Example:
        >>> affine_for_rescaling(np.array([2.0, 3.0]), np.zeros(2), -1, 4)[0]
        [[[2.0, 3.0]]]
        >>> affine_for_rescaling(np.array([2.0, 3.0]), np.zeros(2), 1, 4)[0]
        [[[2.0]], [[3.0]]]
    """
    rank = int(rank)
    axis = channel_axis % rank if -rank <= channel_axis < rank else None
    if rank < 2 or axis is None or axis == 0:
        raise ValueError(
            f"channel_axis must name a non-batch axis of a rank-{rank} input, "
            f"got {channel_axis}"
        )
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    shift = np.asarray(shift, dtype=np.float64).reshape(-1)
    if scale.shape != shift.shape:
        raise ValueError(f"scale {scale.shape} and shift {shift.shape} differ in shape")
    trailing = rank - 1 - axis
    dims = max(1 + trailing, 3) if rank >= 3 else 1
    shape = (1,) * (dims - 1 - trailing) + (scale.shape[0],) + (1,) * trailing
    return scale.reshape(shape).tolist(), shift.reshape(shape).tolist()
