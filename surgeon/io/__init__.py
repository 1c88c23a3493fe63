"""Readers and writers at the doors: files (and ``keras.Model`` objects) in and out."""

from __future__ import annotations

from surgeon.errors import SurgeonError
from surgeon.io.files import detect_input, format_for_output
from surgeon.spec import ModelSpec


def read_model(path: str, *, values: bool = True) -> ModelSpec:
    """Read a ``.keras`` or ``.h5`` model file into a ModelSpec without importing TensorFlow.

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
    from surgeon.io.keras_reader import read_keras

    return read_keras(path, values=values)


def write_model(spec: ModelSpec, path: str, *, allow_code: bool = False) -> None:
    """Write ``spec`` to ``path`` in the format its extension names (no atomicity here: see output.py)."""
    if format_for_output(path) == "h5":
        from surgeon.io.h5_writer import write_h5

        if spec.assets:
            layer = next(iter(spec.assets))
            raise SurgeonError(
                f"layer '{layer}' keeps state in files (a vocabulary), which the legacy .h5 format cannot store "
                "(Keras would reload it empty); write a .keras file"
            )
        from surgeon.io.keras_model import name_owned_layer_weights

        write_h5(name_owned_layer_weights(spec, allow_code=allow_code), path)
    else:
        from surgeon.io.keras_writer import write_keras

        write_keras(spec, path, allow_code=allow_code)


__all__ = ["read_model", "write_model", "detect_input", "format_for_output"]
