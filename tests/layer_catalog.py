"""Keras' built-in layer catalog as test rows: every ``keras.layers`` class, a tiny use of it or the reason it has none.

``catalog_rows()`` is derived from ``keras.layers`` itself, so a new Keras release adds rows by
itself; a class with neither a recipe nor a skip reason fails ``test_every_exported_layer_has_a_row``.
Each recipe takes the tensors of one model (``inputs``: a dict by input kind, ``trunk``: the same
kinds after a frozen Dense + BatchNormalization) and returns the row's output tensor.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

import numpy as np

# Input kinds: shape without the batch axis (all tiny) and dtype.
KINDS = {
    "vector": ((3,), "float32"),
    "sequence": ((4, 3), "float32"),
    "image": ((6, 6, 3), "float32"),
    "volume": ((4, 4, 4, 2), "float32"),
    "video": ((2, 4, 4, 2), "float32"),
    "ids": ((4,), "int32"),
}

# Reasons Keras (or the environment it runs in) imposes; each one says why the row is skipped.
SKIPS = {
    "Layer": "the abstract base class: Keras has nothing to run or save",
    "Wrapper": "an abstract base class (TimeDistributed and Bidirectional are its rows)",
    "InputLayer": "every row's model starts with one",
    "Lambda": "holds Python code: Keras refuses to load it in safe mode (surgeon: --allow-code, tests/test_code_safety.py)",
    "TFSMLayer": "wraps an exported SavedModel by path; Keras saves only the path, not the model",
    "JaxLayer": "needs the JAX backend (this suite runs TensorFlow)",
    "FlaxLayer": "needs the JAX backend and flax (this suite runs TensorFlow)",
    "TorchModuleWrapper": "needs the PyTorch backend (this suite runs TensorFlow)",
    "StringLookup": "takes strings: surgeon's verification feeds numbers (IntegerLookup is its row)",
    "TextVectorization": "takes strings: surgeon's verification feeds numbers",
    "HashedCrossing": "takes a pair of scalar features per sample and outputs int64 ids of a sparse crossing",
    "MaxNumBoundingBoxes": "acts on bounding-box dictionaries, not tensors of a functional model",
    "Equalization": "at inference Keras returns its input tensor itself, which a functional model refuses as a cycle",
    "CutMix": "mixes samples of a batch in training only; Keras applies it to data pipelines, not inside models",
    "MixUp": "mixes samples of a batch in training only; Keras applies it to data pipelines, not inside models",
}

# Rows Keras itself cannot save and reload in the legacy .h5 format (test_h5_limits_are_keras_own checks each).
H5_LIMITS = {
    "Attention": "Keras' legacy .h5 loader cannot rebuild Attention from its config (score_mode)",
    "IntegerLookup": "the legacy .h5 format does not store lookup vocabularies: Keras reloads an empty table",
    "RandomBrightness": "Keras cannot write its config to .h5 (cannot pickle 'module' object)",
    "RandomColorDegeneration": "Keras cannot write its config to .h5 (cannot pickle 'module' object)",
    "RandomPosterization": "Keras cannot write its config to .h5 (cannot pickle 'module' object)",
    "RandomSaturation": "Keras cannot write its config to .h5 (cannot pickle 'module' object)",
    "RandomSharpness": "Keras cannot write its config to .h5 (cannot pickle 'module' object)",
    "Solarization": "Keras cannot write its config to .h5 (cannot pickle 'module' object)",
}

# Layers Keras rebuilds from a config whose own-layers' variables ignore the owner's trainable
# flag (MultiHeadAttention.build creates EinsumDense projections without it): see
# surgeon/frozen_owners.py. Their frozen rows check that surgeon refuses, not that it writes.
FROZEN_LOST = {"MultiHeadAttention", "GroupQueryAttention", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"}


def _adapted(layer, data):
    layer.adapt(data)
    return layer


def _recipes() -> dict[str, tuple[str, Callable]]:
    import keras

    L = keras.layers
    rng = np.random.default_rng(1)

    def simple(kind, make):
        return kind, lambda t: make()(t[kind])

    def pair(kind, make):
        # Two different operands: Subtract of a tensor and itself is zero for every input, which
        # verification rightly refuses as proving nothing.
        return kind, lambda t: make()([t[kind], L.Rescaling(0.5, offset=0.25)(t[kind])])

    sequence_data = rng.normal(2.0, 3.0, size=(16, 4, 3)).astype("float32")
    recipes = {
        "Activation": simple("vector", lambda: L.Activation("tanh")),
        "ActivityRegularization": simple("vector", lambda: L.ActivityRegularization(l1=0.01)),
        "Add": pair("vector", L.Add), "Subtract": pair("vector", L.Subtract), "Multiply": pair("vector", L.Multiply),
        "Average": pair("vector", L.Average), "Maximum": pair("vector", L.Maximum), "Minimum": pair("vector", L.Minimum),
        "Concatenate": pair("vector", L.Concatenate), "Dot": pair("vector", lambda: L.Dot(axes=1)),
        "Attention": pair("sequence", L.Attention), "AdditiveAttention": pair("sequence", L.AdditiveAttention),
        "MultiHeadAttention": ("sequence", lambda t: L.MultiHeadAttention(2, 2)(t["sequence"], t["sequence"])),
        "GroupQueryAttention": ("sequence", lambda t: L.GroupQueryAttention(2, 2, 1)(t["sequence"], t["sequence"])),
        "AlphaDropout": simple("vector", lambda: L.AlphaDropout(0.5)),
        "Dropout": simple("vector", lambda: L.Dropout(0.5)),
        "GaussianDropout": simple("vector", lambda: L.GaussianDropout(0.5)),
        "GaussianNoise": simple("vector", lambda: L.GaussianNoise(0.5)),
        "BatchNormalization": simple("vector", L.BatchNormalization),
        "LayerNormalization": simple("vector", L.LayerNormalization),
        "GroupNormalization": simple("image", lambda: L.GroupNormalization(groups=3)),
        "RMSNormalization": simple("vector", L.RMSNormalization),
        "UnitNormalization": simple("vector", L.UnitNormalization),
        "Normalization": simple("sequence", lambda: _adapted(L.Normalization(), sequence_data)),
        "SpectralNormalization": simple("vector", lambda: L.SpectralNormalization(L.Dense(2))),
        "Dense": simple("vector", lambda: L.Dense(2)),
        "EinsumDense": simple("vector", lambda: L.EinsumDense("ab,bc->ac", output_shape=2, bias_axes="c")),
        "Embedding": simple("ids", lambda: L.Embedding(10, 3)),
        "ReversibleEmbedding": simple("ids", lambda: L.ReversibleEmbedding(10, 3)),
        "CategoryEncoding": simple("ids", lambda: L.CategoryEncoding(10, output_mode="count")),
        "IntegerLookup": simple("ids", lambda: _adapted(L.IntegerLookup(), np.array([[1, 2, 3, 3], [4, 5, 5, 0]]))),
        "Hashing": simple("ids", lambda: L.Hashing(5)),
        "Discretization": simple("vector", lambda: _adapted(L.Discretization(num_bins=3), rng.normal(size=(32, 3)))),
        "Flatten": simple("image", L.Flatten), "Identity": simple("vector", L.Identity),
        "Masking": simple("sequence", L.Masking), "Permute": simple("sequence", lambda: L.Permute((2, 1))),
        "RepeatVector": simple("vector", lambda: L.RepeatVector(2)), "Reshape": simple("sequence", lambda: L.Reshape((3, 4))),
        "ELU": simple("vector", L.ELU), "LeakyReLU": simple("vector", L.LeakyReLU), "PReLU": simple("vector", L.PReLU),
        "ReLU": simple("vector", L.ReLU), "Softmax": simple("vector", L.Softmax),
        "Rescaling": simple("image", lambda: L.Rescaling(0.5, offset=0.1)),
        "Resizing": simple("image", lambda: L.Resizing(3, 3)), "CenterCrop": simple("image", lambda: L.CenterCrop(4, 4)),
        "LSTM": simple("sequence", lambda: L.LSTM(2)), "GRU": simple("sequence", lambda: L.GRU(2)),
        "SimpleRNN": simple("sequence", lambda: L.SimpleRNN(2, return_sequences=True)),
        "RNN": simple("sequence", lambda: L.RNN(L.SimpleRNNCell(2))),
        "SimpleRNNCell": simple("sequence", lambda: L.RNN(L.SimpleRNNCell(2))),
        "LSTMCell": simple("sequence", lambda: L.RNN(L.LSTMCell(2))),
        "GRUCell": simple("sequence", lambda: L.RNN(L.GRUCell(2))),
        "StackedRNNCells": simple("sequence", lambda: L.RNN(L.StackedRNNCells([L.LSTMCell(2), L.GRUCell(2)]))),
        "Bidirectional": simple("sequence", lambda: L.Bidirectional(L.LSTM(2))),
        "TimeDistributed": simple("sequence", lambda: L.TimeDistributed(L.Dense(2))),
        "ConvLSTM1D": simple("image", lambda: L.ConvLSTM1D(2, 3, padding="same")),
        "ConvLSTM2D": simple("video", lambda: L.ConvLSTM2D(2, 3, padding="same")),
        "ConvLSTM3D": ("video", lambda t: L.ConvLSTM3D(2, 3, padding="same")(L.Reshape((2, 2, 2, 4, 2))(t["video"]))),
        "DepthwiseConv1D": simple("sequence", lambda: L.DepthwiseConv1D(3)),
        "DepthwiseConv2D": simple("image", lambda: L.DepthwiseConv2D(3)),
        "SeparableConv1D": simple("sequence", lambda: L.SeparableConv1D(2, 3)),
        "SeparableConv2D": simple("image", lambda: L.SeparableConv2D(2, 3)),
        "MelSpectrogram": ("sequence", lambda t: L.MelSpectrogram(fft_length=8, sequence_stride=4, num_mel_bins=4)(L.Flatten()(t["sequence"]))),
        "STFTSpectrogram": simple("sequence", lambda: L.STFTSpectrogram(frame_length=4, frame_step=2, fft_length=4)),
        "Pipeline": simple("image", lambda: L.Pipeline([L.RandomFlip(), L.Rescaling(2.0)])),
    }
    # The 1D, 2D and 3D members of a family take a sequence, an image and a volume.
    for family, arguments in (
        ("SpatialDropout{}D", (0.5,)),
        ("Conv{}D", (2, 3)),
        ("Conv{}DTranspose", (2, 3)),
        ("Cropping{}D", (1,)),
        ("ZeroPadding{}D", ()),
        ("UpSampling{}D", ()),
        ("AvgPool{}D", (2,)),
        ("MaxPool{}D", ()),
        ("GlobalAvgPool{}D", ()),
        ("GlobalMaxPool{}D", ()),
        ("AdaptiveAveragePooling{}D", (2,)),
        ("AdaptiveMaxPooling{}D", (2,)),
    ):
        for rank, kind in ((1, "sequence"), (2, "image"), (3, "volume")):
            name = family.format(rank)
            recipes[name] = simple(kind, lambda name=name, arguments=arguments: getattr(L, name)(*arguments))
    # Image augmentation: the identity at inference (what a frozen base runs), random in training.
    for name in (
        "AugMix", "AutoContrast", "ContrastLimitedAdaptiveHistogramEqualization", "Equalization", "RandAugment",
        "RandomBrightness", "RandomColorDegeneration", "RandomColorJitter", "RandomContrast", "RandomElasticTransform",
        "RandomErasing", "RandomFlip", "RandomGaussianBlur", "RandomGrayscale", "RandomHue", "RandomInvert",
        "RandomPerspective", "RandomPosterization", "RandomRotation", "RandomSaturation", "RandomSharpness",
        "RandomShear", "RandomTranslation", "RandomZoom", "Solarization", "RandomCrop",
    ):
        recipes[name] = simple("image", _augmentation(L, name))
    return recipes


def _augmentation(L, name):
    arguments = {
        "RandomBrightness": dict(factor=0.1), "RandomContrast": dict(factor=0.1), "RandomRotation": dict(factor=0.1),
        "RandomTranslation": dict(height_factor=0.1, width_factor=0.1), "RandomZoom": dict(height_factor=0.1),
        "RandomCrop": dict(height=6, width=6),  # training crops, inference resizes: same shape only at full size
        "RandomColorDegeneration": dict(factor=0.1),
        "RandomPosterization": dict(factor=(1, 4), value_range=(-1, 1)), "RandomSharpness": dict(factor=0.1),
        "Equalization": dict(value_range=(-1, 1)), "RandomHue": dict(factor=0.1, value_range=(-1, 1)),
        "RandomSaturation": dict(factor=0.1, value_range=(-1, 1)),
    }.get(name, {})
    return lambda: getattr(L, name)(**arguments)


@dataclasses.dataclass(frozen=True)
class Row:
    name: str  # the shortest name keras.layers exports the class under
    kind: str | None
    build: Callable | None
    skip: str | None


def exported_layer_classes() -> dict[str, type]:
    """Shortest exported name -> class, one entry per class (aliases such as Convolution2D folded)."""
    import keras

    by_class: dict[type, str] = {}
    for name in sorted(dir(keras.layers)):
        obj = getattr(keras.layers, name)
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer):
            known = by_class.get(obj)
            by_class[obj] = name if known is None or len(name) < len(known) else known
    return {name: cls for cls, name in by_class.items()}


def catalog_rows() -> list[Row]:
    recipes = _recipes()
    rows = []
    for name in sorted(exported_layer_classes()):
        if name in SKIPS:
            rows.append(Row(name, None, None, SKIPS[name]))
        elif name in recipes:
            kind, build = recipes[name]
            rows.append(Row(name, kind, build, None))
        else:
            rows.append(Row(name, None, None, None))  # neither: test_every_exported_layer_has_a_row fails
    return rows


TRUNK = ("dense", "bn")  # each float kind passes a frozen Dense and a frozen BatchNormalization first


def output_name(row: Row) -> str:
    return f"out_{row.name.lower()}"


def catalog_model(rows: list[Row]):
    """One functional model holding every row: per input kind a frozen Dense + BatchNormalization
    trunk, each row's layer on it, each row's output named ``out_<row>``, plus a trainable head."""
    import keras

    L = keras.layers
    kinds = sorted({row.kind for row in rows} | {"vector"})
    inputs = {kind: keras.Input(KINDS[kind][0], dtype=KINDS[kind][1], name=kind) for kind in kinds}
    trunk = {}
    for kind, tensor in inputs.items():
        if KINDS[kind][1] != "float32":
            trunk[kind] = tensor
            continue
        dense = L.Dense(KINDS[kind][0][-1], name=f"{kind}_dense", trainable=False)
        norm = L.BatchNormalization(name=f"{kind}_bn", trainable=False)
        trunk[kind] = norm(dense(tensor))
    outputs = {output_name(row): L.Identity(name=output_name(row))(row.build(trunk)) for row in rows}
    outputs["out_head"] = L.Dense(2, name="head")(trunk["vector"])
    model = keras.Model(inputs, outputs, name="catalog")
    # Statistics a plain Keras model would hold after training, so that folding them is not a no-op.
    rng = np.random.default_rng(2)
    for kind in kinds:
        if KINDS[kind][1] == "float32":
            bn = model.get_layer(f"{kind}_bn")
            bn.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in bn.get_weights()])
    return model


def catalog_inputs(model, samples: int = 4) -> dict:
    rng = np.random.default_rng(0)
    data = {}
    for tensor in model.inputs:
        shape, dtype = KINDS[tensor.name]
        size = (samples,) + shape
        data[tensor.name] = rng.integers(0, 10, size).astype(dtype) if dtype == "int32" else rng.uniform(-1, 1, size).astype(dtype)
    return data
