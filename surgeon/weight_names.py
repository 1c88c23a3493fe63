"""The names of each built-in layer's weights, in Keras 3 ``layer.weights`` order.

``.keras`` files store weights by position only (``vars/0``, ``vars/1``); passes need to know
which array is ``gamma`` and which is ``moving_variance``. Each row gives the names for a layer
config; ``tests/test_weight_names.py`` checks every row against real Keras layers.
"""

from __future__ import annotations

from typing import Callable


def _kernel_bias(config: dict) -> list[str]:
    return ["kernel", "bias"] if config.get("use_bias", True) else ["kernel"]


def _separable(config: dict) -> list[str]:
    names = ["depthwise_kernel", "pointwise_kernel"]
    return names + ["bias"] if config.get("use_bias", True) else names


def _normalization(config: dict) -> list[str]:
    names = ["gamma"] if config.get("scale", True) else []
    names += ["beta"] if config.get("center", True) else []
    return names


def _batch_normalization(config: dict) -> list[str]:
    return _normalization(config) + ["moving_mean", "moving_variance"]


KERNEL_BIAS_LAYERS = (
    "Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "DepthwiseConv1D", "DepthwiseConv2D",
)

WEIGHT_NAMES: dict[str, Callable[[dict], list[str]]] = {
    **{name: _kernel_bias for name in KERNEL_BIAS_LAYERS},
    "SeparableConv1D": _separable,
    "SeparableConv2D": _separable,
    "BatchNormalization": _batch_normalization,
    "LayerNormalization": _normalization,
    "Embedding": lambda config: ["embeddings"],
    "PReLU": lambda config: ["alpha"],
    "Normalization": lambda config: ["mean", "variance", "count"],
    # What keras3_fixups turns ConvNeXt's LayerScale into.
    "EinsumDense": lambda config: ["kernel", "bias"] if config.get("bias_axes") else ["kernel"],
}


def weight_names(class_name: str, config: dict, count: int) -> list[str]:
    """Names for ``count`` weights of a layer; positional names where the class is not known."""
    rule = WEIGHT_NAMES.get(class_name)
    if rule is not None:
        names = rule(config)
        if len(names) == count:
            return names
    return [str(index) for index in range(count)]


# Weights Keras creates with trainable=False whatever the layer's flag (statistics, counters).
INTRINSICALLY_NON_TRAINABLE: dict[str, frozenset[str]] = {
    "BatchNormalization": frozenset({"moving_mean", "moving_variance"}),
    "Normalization": frozenset({"mean", "variance", "count"}),
}


def is_trainable_weight(class_name: str, weight_name: str) -> bool:
    return weight_name not in INTRINSICALLY_NON_TRAINABLE.get(class_name, frozenset())
