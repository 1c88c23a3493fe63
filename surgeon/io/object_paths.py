"""Weights keyed by ``.keras`` object paths, resolved by Keras' own walk over a built layer.

A layer that owns layers (an RNN and its cell, Bidirectional and its two RNNs, TimeDistributed
and its inner layer, MultiHeadAttention and its four EinsumDense projections) stores their
variables in ``.keras`` files under attribute paths: ``forward_layer/cell/vars/0``. The reader
keeps those paths (it cannot import TensorFlow); here a built Keras layer is walked exactly as
``keras/src/saving/saving_lib.py`` walks it when saving (``_walk_saveable``: attributes in sorted
order, containers named by class, each object once), so every path finds its own variable and
each object loads its values through its own ``load_own_variables``. Asset files (an adapted
lookup layer's vocabulary) travel the same paths.
"""

from __future__ import annotations

import os
import re
import tempfile

import numpy as np

from surgeon.errors import SurgeonError

_OBJECT_PATH = re.compile(r"(?:^|.*/)vars/\d+$")


def is_object_path_form(named: dict) -> bool:
    """True when a layer's weights are keyed by ``.keras`` object paths (``cell/vars/0``)."""
    return bool(named) and all(_OBJECT_PATH.match(name) for name in named)


def object_states(saveable, path: str = "", visited: set | None = None):
    """``(object path, saveable)`` for ``saveable`` and everything it owns, in Keras' save order."""
    from keras.src.saving import saving_lib
    from keras.src.saving.keras_saveable import KerasSaveable

    visited = set() if visited is None else visited
    if id(saveable) in visited:
        return
    visited.add(id(saveable))
    yield path, saveable
    for attribute, child in saving_lib._walk_saveable(saveable):
        child_path = f"{path}{attribute}/"
        if isinstance(child, KerasSaveable):
            yield from object_states(child, child_path, visited)
        elif isinstance(child, (list, dict, tuple)):
            yield from _container_states(child, child_path, visited, set())


def _container_states(container, path: str, visited: set, containers: set):
    # keras/src/saving/saving_lib.py: _save_container_state names items by class, numbered.
    from keras.src.saving import saving_lib
    from keras.src.saving.keras_saveable import KerasSaveable
    from keras.src.utils import naming

    if id(container) in containers:
        return
    containers.add(id(container))
    used: dict[str, int] = {}
    for item in container.values() if isinstance(container, dict) else container:
        if isinstance(item, KerasSaveable):
            name = saving_lib._get_unique_name(naming.to_snake_case(item.__class__.__name__), used)
            yield from object_states(item, f"{path}{name}/", visited)
        elif isinstance(item, (list, dict, tuple)):
            name = saving_lib._get_unique_name("container", used)
            yield from _container_states(item, f"{path}{name}/", visited, containers)


def load_object_path_weights(layer, named: dict, where: str) -> None:
    """Set a built layer's variables from weights keyed by object paths."""
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for name, value in named.items():
        prefix, _, index = name.rpartition("vars/")
        grouped.setdefault(prefix, {})[index] = value
    for path, saveable in object_states(layer):
        values = grouped.pop(path, None)
        if values is None or not hasattr(saveable, "load_own_variables"):
            continue
        try:
            saveable.load_own_variables(values)
        except (ValueError, KeyError, IndexError) as error:
            raise SurgeonError(
                f"the weights of '{where}' under '{path or '.'}' do not fit the layer ({' '.join(str(error).split())[:200]}); "
                "the file is inconsistent"
            ) from None
    if grouped:
        raise SurgeonError(
            f"the file has weights for '{where}/{next(iter(grouped))}', which the layer does not own; the file is inconsistent"
        )


def load_layer_assets(layer, files: dict[str, bytes]) -> None:
    """Give a built layer (and the layers it owns) the asset files a ``.keras`` file stored for it.

    Keras' loader hands each object the directory of its object path (saving_lib._load_state:
    ``load_assets(assets_store.get(inner_path))``); the same here, from a temporary directory.
    """
    with tempfile.TemporaryDirectory() as root:
        for name, data in files.items():
            target = os.path.join(root, *name.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as handle:
                handle.write(data)
        for path, saveable in object_states(layer):
            directory = os.path.join(root, *path.split("/"))
            if hasattr(saveable, "load_assets") and os.path.isdir(directory) and os.listdir(directory):
                saveable.load_assets(directory)


def layer_assets(layer) -> dict[str, bytes]:
    """The asset files Keras would store for a built layer, by path below its object path."""
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as root:
        for path, saveable in object_states(layer):
            if not hasattr(saveable, "save_assets"):
                continue
            directory = os.path.join(root, *path.split("/"))
            os.makedirs(directory, exist_ok=True)
            saveable.save_assets(directory)
        for folder, _, names in os.walk(root):
            for name in names:
                full = os.path.join(folder, name)
                with open(full, "rb") as handle:
                    files[os.path.relpath(full, root).replace(os.sep, "/")] = handle.read()
    return files
