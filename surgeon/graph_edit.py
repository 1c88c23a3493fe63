"""Edits of one functional config level that several passes share."""

from __future__ import annotations

from typing import Callable

from surgeon.errors import SurgeonError
from surgeon.spec import iter_tensor_refs, layer_name, map_tensor_refs


def bypass_layer(model: dict, name: str) -> None:
    """Remove a one-input, one-output layer and wire every use of its output to its input.

    Given: ``a -> name -> b`` (any number of calls of ``name``). Result: ``a -> b``.
    The model's outputs are rewired the same way. Edits ``model`` in place.
    """
    config = model["config"]
    layers = config["layers"]
    layer = next((entry for entry in layers if layer_name(entry) == name), None)
    if layer is None:
        raise SurgeonError(f"no layer '{name}' to remove")
    sources: dict[int, dict] = {}
    for index, node in enumerate(layer.get("inbound_nodes") or []):
        args = node.get("args", [])
        tensors = [arg for arg in args if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__"]
        if len(tensors) != 1 or len(list(iter_tensor_refs(node))) != 1:
            raise SurgeonError(f"layer '{name}' takes more than one input; it cannot be bypassed")
        sources[index] = tensors[0]

    def rewire(tensor: dict) -> dict:
        layer_ref, node_index, _ = tensor["config"]["keras_history"]
        return sources[node_index] if layer_ref == name else tensor

    config["layers"] = [entry for entry in layers if entry is not layer]
    for entry in config["layers"]:
        if entry.get("inbound_nodes"):
            entry["inbound_nodes"] = map_tensor_refs(entry["inbound_nodes"], rewire)
    for key in ("input_layers", "output_layers"):
        config[key] = _rewire_io(config[key], name, sources)


def _rewire_io(struct, name: str, sources: dict[int, dict]):
    if isinstance(struct, list) and len(struct) == 3 and isinstance(struct[0], str):
        if struct[0] == name:
            return list(sources[int(struct[1])]["config"]["keras_history"])
        return struct
    if isinstance(struct, dict):
        return {key: _rewire_io(value, name, sources) for key, value in struct.items()}
    return [_rewire_io(value, name, sources) for value in struct]


def replace_layer(model: dict, name: str, build: Callable[[dict], dict]) -> dict:
    """Swap one layer entry for ``build(old_entry)`` keeping its name and inbound nodes."""
    for index, entry in enumerate(model["config"]["layers"]):
        if layer_name(entry) == name:
            new = build(entry)
            new["name"] = name
            new["config"]["name"] = name
            new["inbound_nodes"] = entry.get("inbound_nodes", [])
            model["config"]["layers"][index] = new
            return new
    raise SurgeonError(f"no layer '{name}' to replace")
