"""Fuzzing the door: mutated configs and weight files either read or fail with SurgeonError.

Each example takes a small fixture, applies 1-3 mutations to its config JSON (delete a key, change a
value's type or size, dangling or cyclic inbound references, duplicate layers, odd shapes), to
its weights (other shapes and dtypes, deleted datasets and groups, 10^12-element declarations,
wrong weight lists) or to its raw bytes (3-9 random bytes overwritten), writes the file, and runs ``read_model`` (shapes only and with values) and
``inspect_spec``. Any exception other than SurgeonError is a bug.

The mutation engine draws through a ``Draw`` (an ``integer(lo, hi)`` function), so the same code
runs under hypothesis here (derandomized, bounded: a few seconds) and under a plain seeded random
generator in ``bench/fuzz_long.py`` for long runs.
"""

from __future__ import annotations

import copy
import io
import json
import os
import tempfile
import zipfile
from typing import Any, Callable

import h5py
import numpy as np
import pytest

from conftest import fixture_path

BASES = ["convbn.h5", "convbn.keras", "nested.h5", "nested.keras", "multi_io.keras", "shared_layer.h5", "dense_bn.keras",
         # tf.keras 2: a SavedModel directory, a .keras archive, an architecture JSON (+ NAME.h5 weights)
         "keras2/tfk_nested_savedmodel", "keras2/tfk_flat.keras", "keras2/tfk_sequential.json"]
ODD_VALUES: list[Any] = [None, True, 0, -1, 1.5, 10**12, "", "x", [], {}, [None], {"class_name": "x"}, [10**6, 10**6], "relu"]
ODD_DIMS: list[Any] = [0, -1, 10**12, None, "a", 1.5, [2]]
ODD_DTYPES = ["int8", "float16", "float64", "bool", "S3", "complex64", "uint32"]


class Draw:
    """Choices made through one ``integer(lo, hi)`` source (hypothesis or random.Random)."""

    def __init__(self, integer: Callable[[int, int], int]):
        self.integer = integer

    def choice(self, items: list):
        return items[self.integer(0, len(items) - 1)]


# --- config mutations ------------------------------------------------------------------------------


def _slots(obj: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON tree."""
    slots = []
    stack = [obj]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            slots.append((node, key))
            stack.append(value)
    return slots


def _histories(obj: Any) -> list[list]:
    return [c[k]["config"]["keras_history"] for c, k in _slots(obj)
            if isinstance(c[k], dict) and c[k].get("class_name") == "__keras_tensor__"
            and isinstance(c[k].get("config"), dict) and isinstance(c[k]["config"].get("keras_history"), list)]


def _layers(config: dict) -> list[dict]:
    return [layer for c, k in _slots(config) if k == "layers" and isinstance(c[k], list) for layer in c[k] if isinstance(layer, dict)]


def _names(config: dict) -> list[str]:
    return [layer.get("name") for layer in _layers(config) if isinstance(layer.get("name"), str)] or ["ghost"]


def mutate_config(config: dict, draw: Draw) -> str:
    """Apply one mutation in place; returns its description."""
    kind = draw.choice(["delete", "replace", "dangle", "cycle", "duplicate", "shape", "swap"])
    slots = _slots(config)
    if not slots:
        return "nothing"
    if kind == "delete":
        container, key = draw.choice(slots)
        container.pop(key)
        return f"delete {key!r}"
    if kind == "replace":
        container, key = draw.choice(slots)
        value = draw.choice(ODD_VALUES + [draw.choice(_names(config)), copy.deepcopy(draw.choice(slots)[0])])
        container[key] = copy.deepcopy(value)
        return f"replace {key!r} by {str(value)[:40]}"
    histories = _histories(config)
    if kind == "dangle" and histories:
        history = draw.choice(histories)
        history[draw.integer(0, 2)] = draw.choice(["ghost", draw.integer(0, 5), draw.choice(_names(config)), -1, None])
        return f"history {history}"
    if kind == "cycle" and histories:
        history = draw.choice(histories)
        history[0], history[1] = draw.choice(_names(config)), 0
        return f"rewire to {history[0]}"
    layers = [c[k] for c, k in slots if k == "layers" and isinstance(c[k], list) and c[k]]
    if kind == "duplicate" and layers:
        target = draw.choice(layers)
        target.insert(draw.integer(0, len(target)), copy.deepcopy(draw.choice(target)))
        return "duplicate a layer"
    if kind == "swap" and layers:
        target = draw.choice(layers)
        i, j = draw.integer(0, len(target) - 1), draw.integer(0, len(target) - 1)
        target[i], target[j] = target[j], target[i]
        return "swap layers"
    shapes = [c[k] for c, k in slots if k in ("shape", "batch_shape", "batch_input_shape", "kernel_size", "input_shape") and isinstance(c[k], list) and c[k]]
    if shapes:
        shape = draw.choice(shapes)
        shape[draw.integer(0, len(shape) - 1)] = draw.choice(ODD_DIMS)
        return f"shape {shape}"
    return "nothing"


# --- weight mutations ----------------------------------------------------------------------------


def mutate_weights(handle: h5py.File, draw: Draw) -> str:
    datasets: list[h5py.Dataset] = []
    handle.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
    if not datasets:
        return "nothing"
    dataset = draw.choice(datasets)
    parent, name, shape = dataset.parent, dataset.name.rpartition("/")[2], dataset.shape
    kind = draw.choice(["reshape", "dtype", "delete", "huge", "scalar", "delete group", "names"])
    if kind == "delete group" and parent.name != "/":
        del handle[parent.name]
        return f"delete group {parent.name}"
    if kind == "names":
        attrs = dataset.parent.attrs if "weight_names" in dataset.parent.attrs else handle[parent.name.rsplit("/", 1)[0] or "/"].attrs
        key = "weight_names" if "weight_names" in attrs else "name" if "name" in attrs else None
        if key is not None:
            attrs[key] = draw.choice([np.array([b"ghost/kernel"]), np.array([], dtype="float64"), "x", np.array([1, 2])])
            return f"attribute {key}"
        return "nothing"
    del parent[name]
    if kind == "reshape":
        new = tuple(draw.integer(0, 20) for _ in range(draw.integer(1, 4)))
        parent.create_dataset(name, data=np.ones(new, "float32"))
        return f"reshape {shape} -> {new}"
    if kind == "dtype":
        dtype = draw.choice(ODD_DTYPES)
        parent.create_dataset(name, data=np.zeros(shape if np.prod(shape) < 10**6 else (3,), dtype=dtype))
        return f"dtype {dtype}"
    if kind == "huge":
        parent.create_dataset(name, shape=(10**6, 10**6), dtype="float32")
        return "huge"
    if kind == "scalar":
        parent.create_dataset(name, data=np.float32(1))
        return "scalar"
    return f"delete {dataset.name}"


def mutate_index(entries: dict[str, bytes], draw: Draw) -> str:
    """One change to a checkpoint index's entries (key -> serialized BundleEntryProto)."""
    from saved_model_edits import field

    keys = sorted(key for key in entries if key)
    if not keys:
        return "nothing"
    key, kind = draw.choice(keys), draw.choice(["delete", "swap", "truncate", "huge"])
    if kind == "delete":
        del entries[key]
    elif kind == "swap":
        other = draw.choice(keys)
        entries[key], entries[other] = entries[other], entries[key]
    elif kind == "truncate":
        entries[key] = entries[key][: draw.integer(0, len(entries[key]))]
    else:  # one more dimension of 10^12: the declared size no longer matches the stored bytes
        entries[key] += field(2, field(2, field(1, 10**12)))
    return f"{kind} {key}"


def _mutated_saved_model(source: str, draw: Draw, directory: str, family: str, count: int) -> tuple[str, list[str]]:
    from pathlib import Path

    from saved_model_edits import copy_saved_model, edit_index, edit_metadata

    target = copy_saved_model(source, Path(directory) / "fuzz_savedmodel")
    steps: list[str] = []
    if family == "config":
        def edit(nodes):
            root = next((n for n in nodes if n["node_path"] == "root"), nodes[0])["metadata"]
            steps.extend(mutate_config(root.get("model_config") or root, draw) for _ in range(count))
        edit_metadata(target, edit)
    elif family == "weights":
        edit_index(target, lambda entries: steps.extend(mutate_index(entries, draw) for _ in range(count)))
    else:
        files = [target / "keras_metadata.pb", target / "variables" / "variables.index", target / "variables" / "variables.data-00000-of-00001"]
        steps = _overwrite_bytes(draw.choice(files), draw, count * 3)
    return str(target), steps


def _overwrite_bytes(path, draw: Draw, count: int) -> list[str]:
    with open(path, "rb") as handle:
        data = bytearray(handle.read())
    steps = []
    for _ in range(count if data else 0):
        offset = draw.integer(0, len(data) - 1)
        data[offset] = draw.integer(0, 255)
        steps.append(f"byte {offset} of {os.path.basename(path)}")
    with open(path, "wb") as handle:
        handle.write(bytes(data))
    return steps


def _mutated_json(source: str, draw: Draw, directory: str, family: str, count: int) -> tuple[str, list[str]]:
    import shutil

    target, weights = os.path.join(directory, "fuzz.json"), os.path.join(directory, "fuzz.h5")
    shutil.copy(source, target)
    shutil.copy(os.path.splitext(source)[0] + ".h5", weights)
    if family == "config":
        with open(target) as handle:
            config = json.load(handle)
        steps = [mutate_config(config, draw) for _ in range(count)]
        with open(target, "w") as handle:
            json.dump(config, handle)
        return target, steps
    if family == "weights":
        with h5py.File(weights, "r+") as handle:
            return target, [mutate_weights(handle, draw) for _ in range(count)]
    return target, _overwrite_bytes(draw.choice([target, weights]), draw, count * 3)


# --- files ------------------------------------------------------------------------------------------


def mutated_file(base: str, draw: Draw, directory: str) -> tuple[str, list[str]]:
    """Write a mutated copy of fixture ``base`` into ``directory``; returns (path, what was done)."""
    source = fixture_path(base)
    target = os.path.join(directory, "fuzz" + os.path.splitext(base)[1])
    steps = []
    family = draw.choice(["config", "weights", "bytes"])
    on_config = family == "config"
    count = draw.integer(1, 3)
    if base.endswith("_savedmodel"):
        return _mutated_saved_model(source, draw, directory, family, count)
    if base.endswith(".json"):
        return _mutated_json(source, draw, directory, family, count)
    if family == "bytes":
        with open(source, "rb") as src:
            data = bytearray(src.read())
        for _ in range(count * 3):
            offset = draw.integer(0, len(data) - 1)
            data[offset] = draw.integer(0, 255)
            steps.append(f"byte {offset}")
        with open(target, "wb") as dst:
            dst.write(bytes(data))
        return target, steps
    if base.endswith(".h5"):
        with open(source, "rb") as src, open(target, "wb") as dst:
            dst.write(src.read())
        with h5py.File(target, "r+") as handle:
            if on_config:
                config = json.loads(handle.attrs["model_config"])
                steps = [mutate_config(config, draw) for _ in range(count)]
                handle.attrs["model_config"] = json.dumps(config)
            else:
                steps = [mutate_weights(handle["model_weights"], draw) for _ in range(count)]
        return target, steps
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if on_config:
        config = json.loads(members["config.json"])
        steps = [mutate_config(config, draw) for _ in range(count)]
        members["config.json"] = json.dumps(config).encode()
    else:
        buffer = io.BytesIO(members["model.weights.h5"])
        with h5py.File(buffer, "r+") as handle:
            steps = [mutate_weights(handle, draw) for _ in range(count)]
        members["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target, steps


def check_one(path: str) -> str:
    """'ok' or 'refused'; any other exception propagates (a crash)."""
    from surgeon.errors import SurgeonError
    from surgeon.inspection import inspect_spec
    from surgeon.io import read_model

    outcome = "ok"
    for values in (False, True):
        try:
            inspect_spec(read_model(path, values=values))
        except SurgeonError as error:
            assert str(error) and "\n" not in str(error), "a SurgeonError message is one line"
            outcome = "refused"
    return outcome


def run_case(base: str, draw: Draw) -> tuple[str, list[str]]:
    with tempfile.TemporaryDirectory() as directory:
        path, steps = mutated_file(base, draw, directory)
        return check_one(path), steps


# --- the test -------------------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, note, settings, strategies as st  # noqa: E402

EXAMPLES_PER_BASE = int(os.environ.get("SURGEON_FUZZ_EXAMPLES", "60"))


@pytest.mark.parametrize("base", BASES)
# No shrinking: it can take minutes on a file-level failure; the note below names the mutations.
@settings(max_examples=EXAMPLES_PER_BASE, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_files_read_or_fail_with_surgeon_error(base, data):
    draw = Draw(lambda lo, hi: data.draw(st.integers(lo, hi)))
    outcome, steps = run_case(base, draw)
    note(f"{base}: {steps} -> {outcome}")
