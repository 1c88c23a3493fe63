"""Write a ModelSpec as a ``.keras`` archive, through Keras.

The ``.keras`` weights layout follows Keras' object-tracking paths, which only Keras itself can
reproduce reliably, so this writer builds the model and calls ``model.save``.
"""

from __future__ import annotations

from surgeon.io.keras_model import build_keras_model, no_stdout_noise
from surgeon.spec import ModelSpec


def write_keras(spec: ModelSpec, path: str, *, allow_code: bool = False) -> None:
    model = build_keras_model(spec, allow_code=allow_code, compile=True)
    with no_stdout_noise():
        model.save(path)
