"""Loading a user's file with plain Keras, after surgeon's own reader has vetted it.

Keras' ``load_model`` on a damaged file raises long tracebacks, and on a file with Lambda layers
runs the code stored in it; surgeon's reader refuses both with one line first.
"""

from __future__ import annotations

from surgeon.io.formats import read_model
from surgeon.io.custom_classes import check_classes_known
from surgeon.io.keras_model import build_keras_model, check_code_layers, load_plain, quiet_tensorflow


def refuse_code_in_file(path: str, allow_code: bool) -> None:
    """One-line errors for a damaged file, or one holding code (unless ``allow_code``), before Keras sees it."""
    check_code_layers(read_model(path, values=False), allow_code)


def load_checked(path: str, *, allow_code: bool = False):
    """``load_plain`` for a file a user gave us: damaged files, code and classes not registered
    (``--import``) are refused with one line first. A keras-hub model, which Keras alone cannot
    rebuild, is built from its graph as surgeon read it; so are Keras 2 files (SavedModel
    directories, architecture JSON, tf.keras .keras, .h5), which Keras 3 cannot load."""
    spec = read_model(path, values=False)
    check_code_layers(spec, allow_code)
    if (spec.source.format or "").startswith("keras-hub"):  # that reader always holds the values
        return build_keras_model(spec, allow_code=allow_code)
    if spec.source.dialect == "keras2":
        return build_keras_model(read_model(path), allow_code=allow_code)
    quiet_tensorflow()
    check_classes_known(spec.config)
    return load_plain(path, allow_code=allow_code)
