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
    """Layers that still compute differently with ``training=True`` (BN, Dropout, noise)."""
    return [path for path, layer in spec.layers() if layer.get("class_name") in MODE_DEPENDENT]
