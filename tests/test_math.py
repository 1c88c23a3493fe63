"""surgeon.math against real Keras layers.

The reference is always Keras itself: a layer followed (or preceded) by a
BatchNormalization with random, non-trivial statistics, run in inference mode, is
compared with one layer of the same class carrying the folded weights. Layers run
in float64 so that the tolerance can be tight enough to catch any wrong axis.
"""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from surgeon.math import (  # noqa: E402
    affine_for_rescaling,
    bn_affine,
    cast_like,
    fold_bn_after,
    fold_bn_before,
    fold_bn_before_flatten_dense,
    scaled_kernel,
)

F64 = "float64"
TIGHT = 1e-9  # relative to the largest output; float64 layers agree to ~1e-15


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def assert_close(actual, expected, tol=TIGHT):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    error = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
    assert error <= tol, f"relative error {error:.3g} > {tol}"


def relative_error(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return np.max(np.abs(actual - expected)) / np.max(np.abs(expected))


def random_bn(input_shape, rng, axis=-1, epsilon=1e-3, scale=True, center=True):
    """A built float64 BatchNormalization with random statistics."""
    bn = keras.layers.BatchNormalization(
        axis=axis, epsilon=epsilon, scale=scale, center=center, dtype=F64
    )
    bn.build((None,) + tuple(input_shape))
    channels = ((None,) + tuple(input_shape))[axis]  # axis counts the batch
    if scale:
        bn.gamma.assign(rng.uniform(0.5, 1.5, channels))
    if center:
        bn.beta.assign(rng.normal(0, 0.5, channels))
    bn.moving_mean.assign(rng.normal(0, 0.5, channels))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, channels))
    return bn


def affine_of(bn):
    """(scale, shift) of a Keras BN layer, through surgeon.math.bn_affine."""
    return bn_affine(
        np.asarray(bn.gamma) if bn.scale else None,
        np.asarray(bn.beta) if bn.center else None,
        np.asarray(bn.moving_mean),
        np.asarray(bn.moving_variance),
        bn.epsilon,
    )


def built(layer_class, input_shape, rng, **kwargs):
    """A float64 layer built on input_shape, every weight random (bias included)."""
    layer = layer_class(dtype=F64, **kwargs)
    layer.build((None,) + tuple(input_shape))
    layer.set_weights([rng.normal(0, 0.5, w.shape) for w in layer.get_weights()])
    return layer


def with_bias(layer):
    """An unbuilt copy of `layer` (same class and config) that has a bias."""
    config = layer.get_config()
    config["use_bias"] = True
    config["name"] = layer.name + "_folded"
    return type(layer).from_config(config)


def check_fold_after(layer_class, input_shape, layout, rng, bn_kwargs=None, **kwargs):
    """layer -> BN versus the folded layer; returns (folded output, expected)."""
    layer = built(layer_class, input_shape, rng, **kwargs)
    x = rng.normal(size=(2,) + tuple(input_shape))
    hidden = layer(x)
    bn = random_bn(tuple(hidden.shape[1:]), rng, **(bn_kwargs or {}))
    expected = bn(hidden, training=False)

    weights = layer.get_weights()
    k = 1 if layout == "separable_pointwise" else 0  # [depthwise, pointwise, bias]
    bias = weights[k + 1] if layer.use_bias else None
    kernel, bias = fold_bn_after(weights[k], bias, *affine_of(bn), layout)

    folded = with_bias(layer)
    folded.build((None,) + tuple(input_shape))
    folded.set_weights(weights[:k] + [kernel, bias])
    return folded(x), expected


# --- bn_affine -------------------------------------------------------------------


@pytest.mark.parametrize(
    "scale, center, epsilon",
    [(True, True, 1e-3), (False, True, 1e-3), (True, False, 1e-3), (False, False, 0.25)],
)
def test_bn_affine_matches_keras_inference(rng, scale, center, epsilon):
    bn = random_bn((5,), rng, epsilon=epsilon, scale=scale, center=center)
    x = rng.normal(size=(7, 5))
    s, t = affine_of(bn)
    assert s.dtype == t.dtype == np.float64
    assert_close(s * x + t, bn(x, training=False))


def test_bn_affine_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="equal length"):
        bn_affine(np.ones(3), None, np.zeros(3), np.ones(4), 1e-3)


# --- fold_bn_after ---------------------------------------------------------------

L = keras.layers

AFTER_CASES = {
    "dense": (L.Dense, (6,), "dense", dict(units=4)),
    "conv1d": (L.Conv1D, (9, 3), "conv", dict(filters=4, kernel_size=3)),
    "conv2d": (L.Conv2D, (6, 5, 3), "conv", dict(filters=4, kernel_size=3, padding="same")),
    "conv3d": (L.Conv3D, (4, 4, 4, 2), "conv", dict(filters=3, kernel_size=2)),
    "conv2d_groups_2": (L.Conv2D, (5, 5, 4), "conv", dict(filters=6, kernel_size=3, groups=2)),
    "depthwise_multiplier_1": (L.DepthwiseConv2D, (5, 5, 3), "depthwise", dict(kernel_size=3)),
    "depthwise_multiplier_3": (
        L.DepthwiseConv2D, (5, 5, 3), "depthwise", dict(kernel_size=3, depth_multiplier=3)),
    "depthwise1d_multiplier_2": (
        L.DepthwiseConv1D, (7, 3), "depthwise", dict(kernel_size=3, depth_multiplier=2)),
    "separable2d": (
        L.SeparableConv2D, (5, 5, 3), "separable_pointwise",
        dict(filters=4, kernel_size=3, depth_multiplier=2)),
    "separable1d": (
        L.SeparableConv1D, (8, 3), "separable_pointwise", dict(filters=5, kernel_size=3)),
    "conv2d_transpose": (
        L.Conv2DTranspose, (4, 4, 3), "conv_transpose", dict(filters=5, kernel_size=3, strides=2)),
    "conv1d_transpose": (
        L.Conv1DTranspose, (6, 3), "conv_transpose", dict(filters=4, kernel_size=3)),
}


@pytest.mark.parametrize("case", list(AFTER_CASES))
def test_bn_after_layer_folds_exactly(rng, case):
    layer_class, input_shape, layout, kwargs = AFTER_CASES[case]
    assert_close(*check_fold_after(layer_class, input_shape, layout, rng, **kwargs))


def test_bn_after_depthwise_with_multiplier_3(rng):
    layer_class, input_shape, layout, kwargs = AFTER_CASES["depthwise_multiplier_3"]
    assert_close(*check_fold_after(layer_class, input_shape, layout, rng, **kwargs))


def test_bn_after_conv_without_bias_gains_a_bias(rng):
    assert_close(*check_fold_after(
        L.Conv2D, (5, 5, 3), "conv", rng, filters=4, kernel_size=3, use_bias=False))


def test_bn_after_dense_without_bias_gains_a_bias(rng):
    kernel = rng.normal(size=(3, 2))
    s, t = np.array([2.0, 3.0]), np.array([0.5, -1.0])
    new_kernel, new_bias = fold_bn_after(kernel, None, s, t, "dense")
    np.testing.assert_array_equal(new_bias, t)
    np.testing.assert_array_equal(new_kernel, kernel * s)


@pytest.mark.parametrize(
    "bn_kwargs",
    [dict(scale=False), dict(center=False), dict(scale=False, center=False, epsilon=0.1),
     dict(epsilon=1e-5)],
    ids=["no_gamma", "no_beta", "neither_eps_0.1", "eps_1e-5"],
)
def test_bn_after_conv_with_bn_options(rng, bn_kwargs):
    assert_close(*check_fold_after(
        L.Conv2D, (5, 5, 3), "conv", rng, bn_kwargs=bn_kwargs, filters=4, kernel_size=3))


def test_bn_after_conv_channels_first_uses_the_same_kernel_layout(rng):
    # Keras 3 stores (k..., in, out) whatever the data_format; the BN then
    # normalises axis 1. TF's CPU conv lacks NCHW, so compare in numpy instead.
    kernel = rng.normal(size=(3, 3, 2, 4))
    s, t = rng.uniform(0.5, 1.5, 4), rng.normal(size=4)
    new_kernel, new_bias = fold_bn_after(kernel, np.zeros(4), s, t, "conv")
    assert_close(new_kernel, np.einsum("hwio,o->hwio", kernel, s))
    assert_close(new_bias, t)


# --- teeth: the references catch a fold on the wrong axis -------------------------


def test_wrong_axis_fold_is_detected_for_conv_transpose(rng):
    # in == out, so folding on the wrong axis ("conv": last = input axis of a
    # transposed kernel) is shape-compatible and only the numbers can tell.
    layer = built(L.Conv2DTranspose, (4, 4, 4), rng, filters=4, kernel_size=3)
    x = rng.normal(size=(2, 4, 4, 4))
    bn = random_bn((6, 6, 4), rng)
    expected = bn(layer(x), training=False)
    kernel, bias = layer.get_weights()
    for layout, should_match in [("conv_transpose", True), ("conv", False)]:
        layer_folded = with_bias(layer)
        layer_folded.build((None, 4, 4, 4))
        layer_folded.set_weights(list(fold_bn_after(kernel, bias, *affine_of(bn), layout)))
        error = relative_error(layer_folded(x), expected)
        assert (error < TIGHT) == should_match, (layout, error)
    assert error > 1e-2  # the wrong fold is off by percents, not by rounding


def test_wrong_channel_order_is_detected_for_depthwise_multiplier_3(rng):
    layer = built(L.DepthwiseConv2D, (5, 5, 3), rng, kernel_size=3, depth_multiplier=3)
    x = rng.normal(size=(2, 5, 5, 3))
    bn = random_bn((3, 3, 9), rng)
    expected = bn(layer(x), training=False)
    kernel, bias = layer.get_weights()
    s, t = affine_of(bn)
    # channel m*in + i instead of i*multiplier + m
    wrong = kernel * s.reshape(3, 3).T
    layer_folded = with_bias(layer)
    layer_folded.build((None, 5, 5, 3))
    layer_folded.set_weights([wrong, bias * s + t])
    assert relative_error(layer_folded(x), expected) > 1e-2


# --- fold_bn_before --------------------------------------------------------------


def check_fold_before(layer_class, input_shape, layout, rng, **kwargs):
    bn = random_bn(input_shape, rng)
    layer = built(layer_class, input_shape, rng, **kwargs)
    x = rng.normal(size=(2,) + tuple(input_shape))
    expected = layer(bn(x, training=False))
    kernel, bias = layer.get_weights()
    groups = kwargs.get("groups", 1)
    folded_weights = fold_bn_before(kernel, bias, *affine_of(bn), layout, groups=groups)
    layer.set_weights(list(folded_weights))
    return layer(x), expected


BEFORE_CASES = {
    "dense": (L.Dense, (6,), "dense", dict(units=4)),
    "conv_1x1": (L.Conv2D, (4, 4, 3), "conv", dict(filters=5, kernel_size=1)),
    "conv_3x3_valid": (L.Conv2D, (6, 5, 3), "conv", dict(filters=4, kernel_size=3)),
    "conv1d_valid_strided": (L.Conv1D, (9, 3), "conv", dict(filters=4, kernel_size=3, strides=2)),
    "depthwise_3x3_valid_multiplier_2": (
        L.DepthwiseConv2D, (5, 5, 3), "depthwise", dict(kernel_size=3, depth_multiplier=2)),
}


@pytest.mark.parametrize("case", list(BEFORE_CASES))
def test_bn_before_layer_folds_exactly(rng, case):
    layer_class, input_shape, layout, kwargs = BEFORE_CASES[case]
    assert_close(*check_fold_before(layer_class, input_shape, layout, rng, **kwargs))


def test_bn_before_conv_with_groups_2(rng):
    # kernel (3, 3, 2, 6): outputs 0-2 read inputs 0-1, outputs 3-5 read inputs 2-3
    assert_close(*check_fold_before(
        L.Conv2D, (5, 5, 4), "conv", rng, groups=2, filters=6, kernel_size=3))


def test_bn_before_same_padded_conv_is_not_exact(rng):
    # Why the caller must check padding: zeros padded after the BN never see
    # the shift, so border outputs differ.
    output, expected = check_fold_before(
        L.Conv2D, (5, 5, 3), "conv", rng, filters=4, kernel_size=3, padding="same")
    assert relative_error(output, expected) > 1e-3
    assert_close(output[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1])


def test_bn_before_conv_transpose_is_refused():
    with pytest.raises(ValueError, match="transposed convolution"):
        fold_bn_before(np.ones((3, 3, 2, 2)), None, np.ones(2), np.zeros(2), "conv_transpose")


def test_bn_before_dense_refuses_groups():
    with pytest.raises(ValueError, match="groups must be 1"):
        fold_bn_before(np.ones((4, 2)), None, np.ones(4), np.zeros(4), "dense", groups=2)


def test_unknown_layout_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="'conv'"):
        fold_bn_after(np.ones((3, 2)), None, np.ones(2), np.zeros(2), "convolution")


def test_wrong_scale_length_is_refused():
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        fold_bn_after(np.ones((3, 2)), None, np.ones(3), np.zeros(3), "dense")


@pytest.mark.parametrize(
    "input_shape, bn_axis, flatten_format, channel_major",
    [
        ((3, 2, 4), -1, "channels_last", False),
        ((4, 3, 2), 1, "channels_last", True),  # channels-first tensor, flattened as is
        ((4, 3, 2), 1, "channels_first", False),  # Flatten transposes to (H, W, C)
    ],
    ids=["channels_last", "channels_first_tensor", "channels_first_flatten"],
)
def test_bn_before_flatten_dense(rng, input_shape, bn_axis, flatten_format, channel_major):
    bn = random_bn(input_shape, rng, axis=bn_axis)
    flatten = L.Flatten(data_format=flatten_format, dtype=F64)
    dense = built(L.Dense, (int(np.prod(input_shape)),), rng, units=5)
    x = rng.normal(size=(2,) + input_shape)
    expected = dense(flatten(bn(x, training=False)))
    channel_index = bn_axis - 1 if bn_axis > 0 else len(input_shape) + bn_axis
    spatial = tuple(d for i, d in enumerate(input_shape) if i != channel_index)
    kernel, bias = dense.get_weights()
    dense.set_weights(list(fold_bn_before_flatten_dense(
        kernel, bias, *affine_of(bn), spatial_shape=spatial, channel_major=channel_major)))
    assert_close(dense(flatten(x)), expected)


# --- dtypes ----------------------------------------------------------------------


def test_float16_kernel_is_computed_in_float64_and_cast_once(rng):
    kernel = rng.normal(size=(3, 3, 2, 4)).astype(np.float16)
    bias = rng.normal(size=4).astype(np.float16)
    s = rng.uniform(0.5, 1.5, 4) / 3.0  # not representable in float16
    t = rng.normal(size=4)
    new_kernel, new_bias = fold_bn_after(kernel, bias, s, t, "conv")
    assert new_kernel.dtype == new_bias.dtype == np.float16
    np.testing.assert_array_equal(new_kernel, (kernel.astype(np.float64) * s).astype(np.float16))
    np.testing.assert_array_equal(new_bias, (bias.astype(np.float64) * s + t).astype(np.float16))
    # casting s to float16 first (a second rounding) gives different numbers
    assert not np.array_equal(new_kernel, kernel * s.astype(np.float16))


def test_float32_kernel_and_missing_bias_stay_float32(rng):
    kernel = rng.normal(size=(3, 5, 4)).astype(np.float32)
    new_kernel, new_bias = fold_bn_before(kernel, None, np.ones(5), np.ones(5), "conv")
    assert new_kernel.dtype == new_bias.dtype == np.float32


def test_cast_like_uses_the_reference_dtype():
    assert cast_like(np.array([1.0]), np.zeros(1, np.float16)).dtype == np.float16


# --- affine_for_rescaling --------------------------------------------------------


@pytest.mark.parametrize(
    "input_shape, axis, expected_shape",
    [((4, 5, 3), -1, (1, 1, 3)), ((3, 4, 5), 1, (3, 1, 1)), ((3, 6), 1, (1, 3, 1)),
     ((6, 3), -1, (1, 1, 3)), ((2, 3, 4, 3), 1, (2, 1, 1, 1)), ((3,), -1, (3,))],
    ids=["nhwc", "nchw", "ncl", "nlc", "ncdhw", "nc"],
)
def test_rescaling_applies_the_bn_affine_per_channel(rng, input_shape, axis, expected_shape):
    bn = random_bn(input_shape, rng, axis=axis)
    s, t = affine_of(bn)
    scale, offset = affine_for_rescaling(s, t, axis, len(input_shape) + 1)
    assert np.shape(scale) == np.shape(offset) == expected_shape
    layer = L.Rescaling(scale, offset, dtype=F64)
    layer = L.Rescaling.from_config(layer.get_config())
    x = rng.normal(size=(2,) + input_shape)
    # Rescaling turns a Python list into a float32 tensor before casting it to
    # the compute dtype, so even a float64 layer applies float32 parameters.
    assert_close(layer(x), bn(x, training=False), tol=1e-6)


def test_rescaling_values_ignore_a_global_channels_first_setting(rng):
    # Rescaling reshapes a scale of < 3 dims to (C, 1, 1) when the global
    # image_data_format is channels_first; the padded (1, 1, C) is left alone.
    s, t = rng.uniform(0.5, 1.5, 3), rng.normal(size=3)
    x = rng.normal(size=(2, 4, 5, 3))
    scale, offset = affine_for_rescaling(s, t, -1, 4)
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        output = L.Rescaling(scale, offset, dtype=F64)(x)
    finally:
        keras.config.set_image_data_format(previous)
    assert_close(output, x * s + t, tol=1e-6)


@pytest.mark.parametrize("extension", ["keras", "h5"])
def test_rescaling_with_list_values_survives_save_and_load(rng, tmp_path, extension):
    scale, offset = affine_for_rescaling(rng.uniform(0.5, 1.5, 3), rng.normal(size=3), 1, 4)
    inputs = keras.Input((3, 2, 2))
    model = keras.Model(inputs, L.Rescaling(scale, offset)(inputs))
    path = tmp_path / f"model.{extension}"
    model.save(path)
    x = rng.normal(size=(2, 3, 2, 2)).astype(np.float32)
    np.testing.assert_array_equal(keras.models.load_model(path)(x), model(x))


def test_rescaling_rejects_the_batch_axis():
    with pytest.raises(ValueError, match="non-batch axis"):
        affine_for_rescaling(np.ones(3), np.zeros(3), 0, 4)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "bfloat16"])
def test_scaled_kernel_rounds_the_float64_product_once(dtype):
    import ml_dtypes

    dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    rng = np.random.default_rng(3)
    kernel = rng.standard_normal((3, 3, 4, 5)).astype(dtype)
    factor = rng.uniform(0.1, 3.0, 5)
    expected = (kernel.astype(np.float64) * factor).astype(dtype)  # the plain two-step computation
    result = scaled_kernel(kernel, factor)
    assert result.dtype == kernel.dtype
    np.testing.assert_array_equal(result.astype(np.float64), expected.astype(np.float64))
