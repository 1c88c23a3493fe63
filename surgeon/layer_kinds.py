"""Layer classes that passes and ``inspect`` treat alike, named once."""

from __future__ import annotations

from surgeon.spec import ModelSpec

BATCH_NORMALIZATION = "BatchNormalization"

# Layers that act differently in training (fit) and inference (predict): noise and dropout.
DROPOUT_LAYERS = frozenset(
    {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout"}
)

# Image augmentation: random with training=True, the identity (or a fixed resize) at inference.
# Pipeline may hold any of them.
AUGMENTATION_LAYERS = frozenset({
    "AugMix", "RandAugment", "CutMix", "MixUp", "Pipeline", "Solarization", "RandomBrightness", "RandomColorDegeneration",
    "RandomColorJitter", "RandomContrast", "RandomCrop", "RandomElasticTransform", "RandomErasing", "RandomFlip",
    "RandomGaussianBlur", "RandomGrayscale", "RandomHue", "RandomInvert", "RandomPerspective", "RandomPosterization",
    "RandomRotation", "RandomSaturation", "RandomSharpness", "RandomShear", "RandomTranslation", "RandomZoom",
})

# Layers that own layers Keras creates in ``build`` without passing their owner's ``trainable``
# (MultiHeadAttention's EinsumDense projections, ConvLSTM's cell): rebuilt from any file, a
# frozen one trains anyway, since Keras 3 trains every variable whose own flag is True
# (Layer.trainable_weights). No config can say otherwise; tests/test_owned_layers.py checks each
# row against Keras, so a Keras that fixes this fails the test until the row goes.
REBUILT_TRAINABLE = frozenset({"MultiHeadAttention", "GroupQueryAttention", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"})


def frozen_but_trained(spec: ModelSpec, frozen: dict[str, bool]) -> list[str]:
    """Layers whose config says frozen but whose owned layers a loaded model would train: the
    REBUILT_TRAINABLE classes, and layers of classes beyond Keras' own that own layers.

    A class Keras does not know (the user's, or a keras-hub layer kept as one unit) that creates
    layers in ``__init__`` gets its own ``trainable`` from the config, but the layers it creates
    keep theirs (True) unless its code passes the flag on, which nothing in a file can make it
    do; the config holds no config of theirs to write a flag into. Its weights name the owned
    layers (``dense/vars/0`` in ``.keras``, ``inner_dense/kernel`` in ``.h5``).
    """
    return [
        path for path, layer in spec.layers()
        if frozen.get(path) and spec.weights.get(path)
        and (layer.get("class_name") in REBUILT_TRAINABLE or (_unknown_to_keras(layer) and any("/" in name for name in spec.weights[path])))
    ]


def _unknown_to_keras(layer: dict) -> bool:
    """A registered class beyond Keras' own: ``"pkg>Name"`` in a ``.h5`` config, a module outside ``keras`` in ``.keras``."""
    module, registered = layer.get("module"), str(layer.get("registered_name") or layer.get("class_name") or "")
    if isinstance(module, str):
        return module.split(".")[0] != "keras"
    return ">" in registered


# Layers whose output shape equals their (first) input's shape.
SHAPE_PRESERVING = frozenset({
    BATCH_NORMALIZATION, "LayerNormalization", "GroupNormalization", "UnitNormalization", "Normalization",
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU", "Rescaling", "Identity",
    "ActivityRegularization", "Masking",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
}) | DROPOUT_LAYERS

# Layers that compute differently with ``training=True``: BN uses batch statistics, dropout,
# noise and augmentation act. A model holding none of them can be checked in training mode as well.
MODE_DEPENDENT = frozenset({BATCH_NORMALIZATION}) | DROPOUT_LAYERS | AUGMENTATION_LAYERS


def mode_dependent_layers(spec: ModelSpec) -> list[str]:
    """Layers that still compute differently with ``training=True`` (BN, Dropout, noise, augmentation).

    A BatchNormalization whose own flag is False does not: Keras 3 uses batch statistics only
    ``if training and self.trainable`` (BatchNormalization.call). Its own flag, not an enclosing
    model's, since Keras 3 does not push a nested model's flag into its layers on load.
    Dropout and noise layers ignore ``trainable``.
    """
    return [path for path, layer in spec.layers() if layer.get("class_name") in MODE_DEPENDENT
            and not (layer.get("class_name") == BATCH_NORMALIZATION and layer.get("config", {}).get("trainable", True) is False)]
