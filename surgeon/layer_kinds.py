"""Layer classes that passes and ``inspect`` treat alike, named once."""

from __future__ import annotations

from surgeon.spec import ModelSpec

BATCH_NORMALIZATION = "BatchNormalization"

# Layers that act differently in training (fit) and inference (predict): noise and dropout.
DROPOUT_LAYERS = frozenset(
    {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout"}
)

# Layers whose output shape equals their (first) input's shape.
SHAPE_PRESERVING = frozenset({
    BATCH_NORMALIZATION, "LayerNormalization", "GroupNormalization", "UnitNormalization", "Normalization",
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU", "Rescaling", "Identity",
    "ActivityRegularization", "Masking",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
}) | DROPOUT_LAYERS

# Layers that compute differently with ``training=True``: BN uses batch statistics, dropout and
# noise act. A model holding none of them can be checked in training mode as well.
MODE_DEPENDENT = frozenset({BATCH_NORMALIZATION}) | DROPOUT_LAYERS


def mode_dependent_layers(spec: ModelSpec) -> list[str]:
    """Layers that still compute differently with ``training=True`` (BN, Dropout, noise).

    A BatchNormalization whose own flag is False does not: Keras 3 uses batch statistics only
    ``if training and self.trainable`` (BatchNormalization.call). Its own flag, not an enclosing
    model's, since Keras 3 does not push a nested model's flag into its layers on load.
    Dropout and noise layers ignore ``trainable``.
    """
    return [path for path, layer in spec.layers() if layer.get("class_name") in MODE_DEPENDENT
            and not (layer.get("class_name") == BATCH_NORMALIZATION and layer.get("config", {}).get("trainable", True) is False)]
