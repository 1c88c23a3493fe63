"""The one place where model formats register: how each input is recognised and read, each output written.

Every command reads through ``read_model`` and writes through ``write_model``; both look their
format up in the tables below, and nothing else in surgeon knows which formats exist.

How a new reader joins (a Keras 2 SavedModel directory, a tf.keras ``.keras`` file, JSON +
weights, a keras-hub preset, ...):

1. Write one module ``surgeon/io/<format>_reader.py`` with two functions:

   - ``claims_<format>(path) -> bool``: is this path yours? Cheap and side-effect free: an
     extension, a signature (``files.read_head``), a marker file inside a directory. Raise a
     one-line ``SurgeonError`` only for a path that is clearly of your format but damaged.
   - ``read_<format>(path, *, values=True) -> ModelSpec``: the Keras 3 functional config (through
     ``dialects.translate``, the one door for config dialects) and the weights as named numpy
     arrays; ``values=False`` may read shapes only (``inspect``). Import TensorFlow inside the
     function if at all: ``inspect`` must stay TensorFlow-free wherever the format allows.

2. Add one ``Reader(...)`` row to ``READERS`` below. The first reader whose ``claims`` says yes
   reads the path, so a reader that refines another's inputs goes before it (a tf.keras ``.keras``
   zip before the Keras 3 ``.keras`` reader; a preset directory before a generic directory).

A path no reader claims gets ``files.unrecognised_input``'s error. Writers are chosen by the
output's extension (``files.format_for_output``) in ``WRITERS``.

Example:
    >>> detect_input("fixtures/convbn.h5")
    'h5'
    >>> reader_for("fixtures/convbn.keras").description
    'Keras 3 .keras archive'
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from surgeon.io.files import check_input_exists, format_for_output, unrecognised_input
from surgeon.io.h5_reader import claims_h5, read_h5
from surgeon.io.h5_writer import write_h5
from surgeon.io.keras_hub_reader import claims_keras_hub, read_keras_hub
from surgeon.io.json_reader import claims_json, pair_weights, read_json_model
from surgeon.io.keras_reader import claims_keras, read_keras
from surgeon.io.keras_writer import write_keras
from surgeon.io.saved_model_reader import claims_saved_model, read_saved_model
from surgeon.io.tf_keras_archive import claims_tf_keras, read_tf_keras_file
from surgeon.spec import ModelSpec


@dataclasses.dataclass(frozen=True)
class Reader:
    name: str  # short and unique: what detect_input returns
    description: str  # what users call the input, for messages and docs
    claims: Callable[[str], bool]
    read: Callable[..., ModelSpec]  # read(path, *, values=True)


def unique_readers(*readers: Reader) -> tuple[Reader, ...]:
    """The readers in order, refusing a name registered twice (a copy-paste slip would shadow one)."""
    seen: set[str] = set()
    for reader in readers:
        if reader.name in seen:
            raise KeyError(f"reader {reader.name!r} is already registered")
        seen.add(reader.name)
    return readers


READERS = unique_readers(
    # Before "keras": a .keras archive holding a keras-hub backbone or task is keras-hub's to build.
    Reader("keras-hub", "keras-hub preset directory, or .keras file holding a keras-hub backbone or task",
           claims_keras_hub, read_keras_hub),
    Reader("h5", "whole-model HDF5 file (.h5) from Keras 3 or Keras 2", claims_h5, read_h5),
    Reader("tf_keras", ".keras archive written by tf.keras 2.13+ / tf_keras", claims_tf_keras, read_tf_keras_file),
    Reader("keras", "Keras 3 .keras archive", claims_keras, read_keras),
    Reader("saved_model", "tf.keras 2 SavedModel directory (model.save without extension)", claims_saved_model, read_saved_model),
    Reader("json", "architecture JSON (model.to_json()) + weights file (save_weights)", claims_json, read_json_model),
)

# Output format (by extension, files.MODEL_EXTENSIONS) -> writer(spec, path, *, allow_code),
# which returns a note when a slower fallback wrote the file, else None.
WRITERS: dict[str, Callable[..., str | None]] = {
    "h5": write_h5,
    "keras": write_keras,
}


def reader_for(path: str) -> Reader:
    """The registered reader that claims ``path``; SurgeonError (one line) when none does."""
    check_input_exists(path)
    for reader in READERS:
        if reader.claims(path):
            return reader
    raise unrecognised_input(path)


def detect_input(path: str) -> str:
    """The name of the reader for ``path`` ('h5', 'keras', ...); SurgeonError for anything else."""
    return reader_for(path).name


def read_model(path: str, *, values: bool = True, weights: str | None = None) -> ModelSpec:
    """Read a model into a ModelSpec without importing TensorFlow.

    ``values=False`` reads weight shapes only (what ``inspect`` needs). ``weights`` is the weights
    file of an architecture ``.json`` (``json_reader.pair_weights``; by default the file beside it
    with the same stem).

    Example:
        >>> spec = read_model("fixtures/convbn.h5")
        >>> spec.weights["bn1"]["moving_variance"].shape
        (8,)
    """
    from surgeon.watchdog import guarded

    pair_weights(path, weights)
    reader = reader_for(path)
    # A damaged HDF5 file can make libhdf5 loop forever; under the CLI a watchdog ends that.
    with guarded(path):
        return reader.read(path, values=values)


def write_model(spec: ModelSpec, path: str, *, allow_code: bool = False) -> str | None:
    """Write ``spec`` to ``path`` in the format its extension names (no atomicity here: see output.py).

    Returns a note when a slower fallback wrote the file (Keras' own saver for a ``.keras`` model
    the direct writer cannot express), else None.
    """
    return WRITERS[format_for_output(path)](spec, path, allow_code=allow_code)
