"""Write a ModelSpec as a ``.keras`` archive: directly when the layout is known, else through Keras.

``keras_archive`` writes the archive with h5py alone (no TensorFlow) for models made of layers
whose saved state it knows; anything else (layers that own layers, custom or keras-hub classes,
unknown optimizers) is built as a ``keras.Model`` and saved by Keras itself, and the returned
note says so.
"""

from __future__ import annotations

from surgeon.io.keras_archive import unsupported_reason, write_keras_archive
from surgeon.spec import ModelSpec


def write_keras(spec: ModelSpec, path: str, *, allow_code: bool = False) -> str | None:
    """Write ``spec`` to ``path``; returns a note when Keras' saver had to be used, else None."""
    reason = unsupported_reason(spec)
    if reason is None:
        write_keras_archive(spec, path)
        return None
    write_keras_with_keras(spec, path, allow_code=allow_code)
    return f".keras written by Keras' own saver (slower, imports TensorFlow): the direct writer does not handle {reason}"


def write_keras_with_keras(spec: ModelSpec, path: str, *, allow_code: bool = False) -> None:
    """Keras' own saver: build the model, compile it with a fresh optimizer, ``model.save``."""
    from surgeon.io.keras_model import build_keras_model, no_stdout_noise

    model = build_keras_model(spec, allow_code=allow_code, compile=True)
    with no_stdout_noise():
        model.save(path)
