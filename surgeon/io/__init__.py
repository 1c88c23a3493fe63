"""Readers and writers at the doors: files (and ``keras.Model`` objects) in and out."""

from __future__ import annotations

from surgeon.io.files import detect_input, format_for_output
from surgeon.spec import ModelSpec


def read_model(path: str, *, values: bool = True, weights: str | None = None) -> ModelSpec:
    """Read a model into a ModelSpec without importing TensorFlow: a ``.keras`` or ``.h5`` file
    (Keras 3, or Keras 2 translated at the door), a tf.keras SavedModel directory, or an
    architecture ``.json`` whose weights are ``weights`` (or share its stem: ``model.h5``).

    ``values=False`` reads weight shapes only (what ``inspect`` needs).

    Example:
        >>> spec = read_model("fixtures/convbn.h5")
        >>> spec.weights["bn1"]["moving_variance"].shape
        (8,)
    """
    kind = detect_input(path)
    if kind == "h5":
        from surgeon.io.h5_reader import read_h5

        return read_h5(path, values=values)
    if kind == "saved_model":
        from surgeon.io.saved_model_reader import read_saved_model

        return read_saved_model(path, values=values)
    if kind == "json":
        from surgeon.io.json_reader import read_json_model

        return read_json_model(path, values=values, weights=weights)
    from surgeon.io.keras_reader import read_keras

    return read_keras(path, values=values)


def write_model(spec: ModelSpec, path: str, *, allow_code: bool = False) -> None:
    """Write ``spec`` to ``path`` in the format its extension names (no atomicity here: see output.py)."""
    if format_for_output(path) == "h5":
        from surgeon.io.h5_writer import write_h5

        write_h5(spec, path)
    else:
        from surgeon.io.keras_writer import write_keras

        write_keras(spec, path, allow_code=allow_code)


__all__ = ["read_model", "write_model", "detect_input", "format_for_output"]
