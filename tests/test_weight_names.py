"""Every row of ``surgeon.weight_names`` against the weights real Keras layers create, in order."""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

from surgeon.weight_names import WEIGHT_NAMES, is_trainable_weight  # noqa: E402

# (class, constructor arguments, input shape without the batch axis); each row's options both ways.
CASES = [
    ("Dense", {"units": 3}, (8,)),
    ("Dense", {"units": 3, "use_bias": False}, (8,)),
    ("Conv1D", {"filters": 2, "kernel_size": 3}, (10, 4)),
    ("Conv2D", {"filters": 2, "kernel_size": 3, "use_bias": False}, (8, 8, 3)),
    ("Conv3D", {"filters": 2, "kernel_size": 3}, (6, 6, 6, 2)),
    ("Conv1DTranspose", {"filters": 2, "kernel_size": 3}, (10, 4)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 3}, (8, 8, 3)),
    ("Conv3DTranspose", {"filters": 2, "kernel_size": 3}, (6, 6, 6, 2)),
    ("DepthwiseConv1D", {"kernel_size": 3, "depth_multiplier": 2}, (10, 4)),
    ("DepthwiseConv2D", {"kernel_size": 3, "use_bias": False}, (8, 8, 3)),
    ("SeparableConv1D", {"filters": 2, "kernel_size": 3}, (10, 4)),
    ("SeparableConv2D", {"filters": 2, "kernel_size": 3, "use_bias": False}, (8, 8, 3)),
    ("BatchNormalization", {}, (8, 4)),
    ("BatchNormalization", {"scale": False, "center": False}, (8, 4)),
    ("LayerNormalization", {}, (8, 4)),
    ("LayerNormalization", {"scale": False}, (8, 4)),
    ("Embedding", {"input_dim": 10, "output_dim": 4}, (5,)),
    ("PReLU", {}, (8,)),
    ("Normalization", {}, (8,)),
    ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 3, "bias_axes": "c"}, (8,)),
    ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 3}, (8,)),
]


def built(class_name: str, arguments: dict, shape: tuple):
    layer = getattr(keras.layers, class_name)(**arguments)
    layer.build((None,) + shape)
    return layer


@pytest.mark.parametrize("class_name, arguments, shape", CASES)
def test_row_names_the_weights_keras_creates_in_order(class_name, arguments, shape):
    layer = built(class_name, arguments, shape)
    assert WEIGHT_NAMES[class_name](layer.get_config()) == [variable.name for variable in layer.weights]


@pytest.mark.parametrize("class_name, arguments, shape", CASES)
def test_intrinsically_non_trainable_weights_are_the_ones_keras_makes_so(class_name, arguments, shape):
    layer = built(class_name, arguments, shape)
    assert [is_trainable_weight(class_name, v.name) for v in layer.weights] == [v.trainable for v in layer.weights]


def test_every_row_has_a_case():
    assert set(WEIGHT_NAMES) <= {case[0] for case in CASES}
