"""What one translation carries: its result, the notes it collects, and tensor references in calls."""

from __future__ import annotations

from dataclasses import dataclass, field

from surgeon.spec import dtype_policy


@dataclass
class Translation:
    """Result of :func:`translate_model_config`."""

    config: dict
    renamed: dict = field(default_factory=dict)  # old layer name -> new layer name
    notes: list = field(default_factory=list)  # one human-readable line per rule applied


class TranslationContext:
    """What a translation collects as it goes: layers renamed and one note per rule applied."""

    def __init__(self):
        self.renamed: dict[str, str] = {}
        self._notes: dict[str, list[str]] = {}

    def note(self, message: str, layer: str | None = None):
        layers = self._notes.setdefault(message, [])
        if layer is not None and layer not in layers:
            layers.append(layer)

    def notes(self) -> list[str]:
        out = []
        for message, layers in self._notes.items():
            if layers:
                shown = ", ".join(layers[:5]) + (", ..." if len(layers) > 5 else "")
                out.append(f"{message} ({len(layers)} layer(s): {shown})")
            else:
                out.append(message)
        return out


def policy_of(dtype):
    """Keras 2 dtype (string or Policy dict) -> the DTypePolicy dict Keras 3 writes."""
    if isinstance(dtype, dict):
        if dtype.get("class_name") == "DTypePolicy":
            return dtype
        name = (dtype.get("config") or {}).get("name", "float32")
    else:
        name = dtype or "float32"
    return dtype_policy(name)


def base_config(name: str, dtype=None, trainable: bool = True) -> dict:
    return {"name": name, "trainable": trainable, "dtype": policy_of(dtype)}


class TensorRef:
    """A reference to a tensor: (layer name, node index, tensor index)."""

    __slots__ = ("name", "node", "tensor")

    def __init__(self, name, node, tensor):
        self.name, self.node, self.tensor = name, node, tensor

    def key(self):
        return (self.name, self.node, self.tensor)

    def __repr__(self):
        return f"TensorRef({self.name!r}, {self.node}, {self.tensor})"


class Constant:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def map_structure(fn, x):
    if isinstance(x, (TensorRef, Constant)):
        return fn(x)
    if isinstance(x, list):
        return [map_structure(fn, v) for v in x]
    if isinstance(x, tuple):
        return tuple(map_structure(fn, v) for v in x)
    if isinstance(x, dict):
        return {k: map_structure(fn, v) for k, v in x.items()}
    return x


def flatten_refs(x) -> list[TensorRef]:
    out = []
    map_structure(lambda r: out.append(r) if isinstance(r, TensorRef) else None, x)
    return out
