"""What kind of file a path holds, checked before anything is parsed.

Every check fails with a one-line SurgeonError naming the problem and the way out, so that a
missing, unreadable, truncated or foreign file never reaches h5py or zipfile as a traceback.
"""

from __future__ import annotations

import os
import zipfile

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


def detect_input(path: str) -> str:
    """'h5', 'keras', 'saved_model' (a directory) or 'json' (an architecture, weights beside it) for a
    readable model; SurgeonError for anything else."""
    if not os.path.exists(path):
        raise SurgeonError(f"no such file: '{path}'; check the path")
    if os.path.isdir(path):
        from surgeon.io.saved_model_reader import is_saved_model

        if is_saved_model(path):
            return "saved_model"
        raise SurgeonError(
            f"'{path}' is a directory but not a SavedModel (no keras_metadata.pb or saved_model.pb); "
            "surgeon reads .keras, .h5 and model.json files and SavedModel directories"
        )
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except PermissionError:
        raise SurgeonError(f"cannot read '{path}': permission denied; check the file's permissions") from None
    except OSError as error:
        raise SurgeonError(f"cannot read '{path}': {error.strerror}") from None
    if not head:
        raise SurgeonError(f"'{path}' is empty; it is not a model file (was the download or copy interrupted?)")
    if head.startswith(HDF5_SIGNATURE):
        return "h5"
    if head.startswith(ZIP_SIGNATURE):
        if not zipfile.is_zipfile(path):
            raise SurgeonError(f"'{path}' is a truncated or corrupt zip file; the .keras file is damaged, save or download it again")
        return "keras"
    extension = os.path.splitext(path)[1].lower()
    if extension == ".json":
        return "json"
    kind = {"h5": "HDF5", "keras": ".keras (zip)"}.get(MODEL_EXTENSIONS.get(extension, ""), "")
    if kind:
        raise SurgeonError(f"'{path}' is not a valid {kind} file (wrong signature); the file is damaged or not a model")
    raise SurgeonError(
        f"'{path}' is not a Keras model file; surgeon reads .keras, .h5 and model.json files and SavedModel directories saved by Keras"
    )
