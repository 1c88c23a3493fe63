"""Read a ``.keras`` archive written by tf.keras 2.13-2.15 or ``tf_keras`` into a ModelSpec.

The zip has the layout of a Keras 3 one (``config.json``, ``metadata.json``, ``model.weights.h5``)
but speaks Keras 2: ``metadata.json`` says ``keras_version: 2.x``, classes are named by
``keras.src.engine.*`` / ``tf_keras.src.*`` modules, inbound nodes are Keras 2 lists, the compile
state is ``model.get_compile_config()`` of Keras 2, and the weights are stored under class-name
paths without layer names (``tracking_paths``). Keras 3 fails on these files with "Could not
locate class 'Functional'".
"""

from __future__ import annotations

import contextlib
import copy
import zipfile
import zlib

import h5py

from surgeon.errors import SurgeonError
from surgeon.io.keras2 import is_keras2
from surgeon.io.keras_reader import WEIGHTS, claims_keras, open_archive, open_member, read_archive_config
from surgeon.io.legacy_door import read_keras2_parts, weights_for_spec
from surgeon.io.tracking_paths import read_tracked_weights

_KERAS2_MODULES = ("tf_keras.src.", "keras.src.engine.")


def is_tf_keras_config(config: dict, keras_version: str | None) -> bool:
    """A ``.keras`` config written by Keras 2 (its version, or its module names when none is given)."""
    if keras_version is not None:
        return is_keras2(keras_version)
    return str(config.get("module", "")).startswith(_KERAS2_MODULES)


def training_config_of(compile_config) -> dict | None:
    """tf.keras ``get_compile_config()`` in the shape of an ``.h5`` ``training_config``, which the
    Keras 2 translation reads (optimizer given by name or as a serialized object)."""
    if not isinstance(compile_config, dict) or not compile_config.get("optimizer"):
        return None
    training = {key: value for key, value in compile_config.items() if key != "optimizer"}
    optimizer = compile_config["optimizer"]
    training["optimizer_config"] = optimizer if isinstance(optimizer, dict) else {"class_name": str(optimizer), "config": {}}
    return training


def claims_tf_keras(path: str) -> bool:
    """A ``.keras`` zip whose metadata (or, lacking it, class modules) says Keras 2. A zip whose
    config cannot be read is left to the Keras 3 reader, which names the damage."""
    if not claims_keras(path):
        return False
    try:
        with open_archive(path) as archive:
            config, version = read_archive_config(archive, path)
    except SurgeonError:
        return False
    return is_tf_keras_config(config, version)


def read_tf_keras_file(path: str, *, values: bool = True):
    with open_archive(path) as archive:
        config, keras_version = read_archive_config(archive, path)
        compile_config = config.pop("compile_config", None)
        original = copy.deepcopy(config)  # the class names and order the weight paths were numbered from
        if WEIGHTS not in archive.namelist():
            raise SurgeonError(f"'{path}' has no {WEIGHTS}; the .keras file is incomplete, save it again")
        try:
            weights_file = open_member(archive, path)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
            raise SurgeonError(f"cannot read the weights inside '{path}' ({error}); the file is corrupt") from None
    with weights_file, open_weights(weights_file, path) as handle:
        return read_keras2_parts(
            config, training_config_of(compile_config), keras_version or "2", path, "keras",
            lambda door: weights_for_spec(door, read_tracked_weights(handle, original, values, f"'{path}'")),
            optimizer_variables=optimizer_variables(handle),
        )


@contextlib.contextmanager
def open_weights(source, shown: str):
    """An HDF5 weights file (a path or a file object); damage inside it is a one-line error."""
    try:
        handle = h5py.File(source, "r")
    except OSError:
        raise SurgeonError(f"the weights in '{shown}' are not a valid HDF5 file; the file is corrupt") from None
    with handle:
        try:
            yield handle
        except (KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError, OSError) as error:
            # RuntimeError: h5py on corrupt B-trees and heaps (found by fuzzing bytes: tests/test_fuzz.py).
            raise SurgeonError(f"the weights in '{shown}' are damaged ({type(error).__name__}: {error}); save the model again") from None


def optimizer_variables(handle: h5py.File) -> list[str] | None:
    if "optimizer" not in handle or "vars" not in handle["optimizer"] or not len(handle["optimizer/vars"]):
        return None
    return [f"optimizer/vars/{name}" for name in sorted(handle["optimizer/vars"].keys(), key=lambda n: int(n) if n.isdigit() else -1)]
