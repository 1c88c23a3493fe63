"""Edits of one functional config level that several passes share."""

from __future__ import annotations

from typing import Callable

from surgeon.errors import SurgeonError
from surgeon.spec import is_keras_tensor, iter_tensor_refs, layer_name, map_io_refs, map_tensor_refs


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
        tensors = [arg for arg in args if is_keras_tensor(arg)]
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
    def rewire_io(ref: list) -> list:
        return list(sources[int(ref[1])]["config"]["keras_history"]) if ref[0] == name else ref

    for key in ("input_layers", "output_layers"):
        config[key] = map_io_refs(config[key], rewire_io)


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
