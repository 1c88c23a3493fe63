"""File facts every reader shares, checked before anything is parsed: signatures, extensions, errors.

Every check fails with a one-line SurgeonError naming the problem and the way out, so that a
missing, unreadable, truncated or foreign file never reaches h5py or zipfile as a traceback.
"""

from __future__ import annotations

import os

from surgeon.errors import SurgeonError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
MODEL_EXTENSIONS = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}


def format_for_output(path: str) -> str:
    """The format an output path asks for, by its extension."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in MODEL_EXTENSIONS:
        raise SurgeonError(
            f"cannot tell the output format of '{path}': use a name ending in .keras or .h5"
        )
    return MODEL_EXTENSIONS[extension]


def read_head(path: str, size: int = 8) -> bytes:
    """The first bytes of a file, for signature checks; one-line errors for unreadable or empty files."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(size)
    except PermissionError:
        raise SurgeonError(f"cannot read '{path}': permission denied; check the file's permissions") from None
    except OSError as error:
        raise SurgeonError(f"cannot read '{path}': {error.strerror}") from None
    if not head:
        raise SurgeonError(f"'{path}' is empty; it is not a model file (was the download or copy interrupted?)")
    return head


def check_input_exists(path: str) -> None:
    """A missing path, or a file that cannot be read at all, is refused before any reader looks at it."""
    if not os.path.exists(path):
        raise SurgeonError(f"no such file: '{path}'; check the path")
    if not os.path.isdir(path):
        read_head(path)


def unrecognised_input(path: str) -> SurgeonError:
    """The error for a path no reader claims, as specific as its name and kind allow."""
    if os.path.isdir(path):
        return SurgeonError(
            f"'{path}' is a directory but not a SavedModel (no keras_metadata.pb or saved_model.pb); "
            "surgeon reads .keras, .h5 and model.json files and SavedModel directories"
        )
    extension = os.path.splitext(path)[1].lower()
    kind = {"h5": "HDF5", "keras": ".keras (zip)"}.get(MODEL_EXTENSIONS.get(extension, ""), "")
    if kind:
        return SurgeonError(f"'{path}' is not a valid {kind} file (wrong signature); the file is damaged or not a model")
    return SurgeonError(f"'{path}' is not a Keras model file; surgeon reads .keras, .h5 and model.json files and SavedModel directories saved by Keras")
