"""Read a tf.keras 2 SavedModel directory (``model.save("my_model")``) into a ModelSpec.

What the directory holds (tf_keras/src/saving/legacy/saved_model/):
- ``keras_metadata.pb``: a ``SavedMetadata`` protobuf, one ``SavedObject`` per Keras object
  (``node_path`` such as ``root.layer_with_weights-0.layer-3``, an ``identifier`` such as
  ``_tf_keras_network`` / ``_tf_keras_layer``, and JSON ``metadata``). The root's metadata carries
  the same ``model_config`` and ``training_config`` a Keras 2 ``.h5`` file stores.
- ``variables/variables.{index,data-*}``: the TensorFlow checkpoint of every variable. Its object
  graph has the same paths: from the root, follow the ``node_path`` components; a layer's
  ``variables`` child lists its variables in ``layer.weights`` order, and the layer's own child of
  the same node names it (``kernel``, ``gamma``).
- ``saved_model.pb``: the traced TensorFlow graph, which surgeon does not need.

Neither file needs TensorFlow to read (``protobuf_wire``, ``tf_checkpoint``), so ``inspect``
answers without importing it. Directories written by ``tf.saved_model.save`` or ``model.export``
have no ``keras_metadata.pb``: they hold a graph, not Keras layers, and are refused.
"""

from __future__ import annotations

import json
import os

from surgeon.errors import SurgeonError
from surgeon.io.legacy_door import read_keras2_parts, weights_for_spec
from surgeon.io.protobuf_wire import message
from surgeon.io.tf_checkpoint import Checkpoint, TrackableObject

METADATA = "keras_metadata.pb"
GRAPH = "saved_model.pb"
CHECKPOINT = os.path.join("variables", "variables")
_NETWORKS = ("_tf_keras_network", "_tf_keras_model", "_tf_keras_sequential")
_NOT_LAYERS = ("_tf_keras_input_layer", "_tf_keras_metric")
# Children of a layer's checkpoint node that are not its own attributes.
_BOOKKEEPING = ("variables", "trainable_variables", "non_trainable_variables", "keras_api")


def claims_saved_model(path: str) -> bool:
    """A directory holding Keras metadata or a TensorFlow graph (the latter is refused when read)."""
    return os.path.isdir(path) and (os.path.exists(os.path.join(path, METADATA)) or os.path.exists(os.path.join(path, GRAPH)))


def read_saved_model(path: str, *, values: bool = True):
    if not os.path.exists(os.path.join(path, METADATA)):
        raise SurgeonError(
            f"'{path}' is a TensorFlow SavedModel without {METADATA} (written by tf.saved_model.save or "
            "model.export): it holds a traced graph, not Keras layers; save the model with model.save() "
            "where it was built, or run it as-is with keras.layers.TFSMLayer"
        )
    objects = _read_metadata(path)
    root = objects.get("root")
    if root is None or "class_name" not in root["metadata"]:
        raise SurgeonError(f"'{path}/{METADATA}' describes no model (no root object); the SavedModel is incomplete, save it again")
    metadata = root["metadata"]
    model_config = metadata.get("model_config") or {"class_name": metadata.get("class_name"), "config": metadata.get("config")}
    if not os.path.isdir(os.path.join(path, "variables")):
        raise SurgeonError(f"'{path}' has no variables/ directory (the weights); the SavedModel is incomplete, copy or save it again")
    checkpoint = Checkpoint(os.path.join(path, CHECKPOINT), path)

    def read_weights(door):
        return weights_for_spec(door, _layer_weights(objects, checkpoint, values, path))

    optimizer = sorted(key.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE") for key in checkpoint.entries if key.startswith("optimizer/"))
    version = metadata.get("keras_version") if isinstance(metadata.get("keras_version"), str) else None
    with checkpoint:
        return read_keras2_parts(model_config, metadata.get("training_config"), version, path, "saved_model",
                                 read_weights, optimizer_variables=[name for name in optimizer if "/_variables/" in name] or None)


def _read_metadata(path: str) -> dict[str, dict]:
    """node path -> {"identifier", "metadata" (parsed JSON)} of every saved Keras object."""
    try:
        with open(os.path.join(path, METADATA), "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise SurgeonError(f"cannot read '{path}/{METADATA}': {error.strerror}") from None
    objects = {}
    try:
        for node in message(data, {1: ("nodes", "repeated bytes")})["nodes"]:
            saved = message(node, {3: ("node_path", "str"), 4: ("identifier", "str"), 5: ("metadata", "str")})
            parsed = json.loads(saved["metadata"], object_hook=_decode_tuples) if saved["metadata"] else {}
            if not isinstance(parsed, dict):
                raise ValueError(f"metadata of {saved['node_path']} is not a JSON object")
            objects[saved["node_path"]] = {"identifier": saved["identifier"], "metadata": parsed}
    except ValueError as error:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SurgeonError(f"'{path}/{METADATA}' is not Keras metadata ({error}); the SavedModel is damaged, save it again") from None
    return objects


def _decode_tuples(obj: dict):
    """Keras 2 writes tuples into SavedModel metadata as ``{"class_name": "__tuple__", "items": [...]}``
    (tf_keras/src/saving/legacy/saved_model/json_utils.py); its ``.h5`` configs have plain lists."""
    if obj.get("class_name") in ("__tuple__", "TensorShape") and isinstance(obj.get("items"), list) and len(obj) == 2:
        return obj["items"]
    return obj


def _layer_weights(objects: dict[str, dict], checkpoint: Checkpoint, values: bool, path: str) -> dict[tuple, dict]:
    """Original layer name path -> {variable name: array or WeightShape}, for every layer that is
    not a model (a nested model's variables belong to its inner layers)."""
    graph = checkpoint.object_graph()
    names: dict[str, tuple[str, ...]] = {"root": ()}  # node path -> layer name path
    stored: dict[tuple, dict] = {}
    for node_path in sorted(objects, key=lambda p: p.count(".")):
        parent, _, _ = node_path.rpartition(".")
        saved = objects[node_path]
        if parent not in names or saved["identifier"] in _NOT_LAYERS or objects[parent]["identifier"] not in _NETWORKS:
            continue  # a cell inside an RNN, a metric, an optimizer: their variables are the layer's
        name = saved["metadata"].get("name")
        if not isinstance(name, str):
            raise SurgeonError(f"'{path}/{METADATA}' has an object without a name at {node_path}; the SavedModel is damaged")
        names[node_path] = names[parent] + (name,)
        if saved["identifier"] in _NETWORKS:
            continue
        node = _follow(graph, node_path, path)
        stored[names[node_path]] = _variables(graph, node, checkpoint, values, path, name)
    return stored


def _follow(graph: list[TrackableObject], node_path: str, path: str) -> TrackableObject:
    node = graph[0]
    for local in node_path.split(".")[1:]:
        child = dict(node.children).get(local)
        if child is None or not 0 <= child < len(graph):
            raise SurgeonError(f"the checkpoint in '{path}' has no object at {node_path} (a layer of "
                               f"{METADATA}); the SavedModel is inconsistent, save it again")
        node = graph[child]
    return node


def _variables(graph, node: TrackableObject, checkpoint: Checkpoint, values: bool, path: str, layer: str) -> dict:
    """The layer's variables by attribute name (``kernel``), in ``layer.weights`` order.

    With traces (the default) the layer's ``variables`` child lists them in that order; without
    (``save_traces=False``) only the attributes are there, in creation order, which for built-in
    layers is the same. An RNN layer's variables are attributes of its ``cell``, one level down.
    """
    attributes: list[tuple[str, int]] = []
    for local, child in node.children:
        if local in _BOOKKEEPING or not 0 <= child < len(graph):
            continue
        attributes.append((local, child))
        attributes += [(inner_local, inner) for inner_local, inner in graph[child].children if 0 <= inner < len(graph)]
    names: dict[int, str] = {}
    for local, child in attributes:
        names.setdefault(child, local)
    listed = dict(node.children).get("variables")
    if listed is not None and 0 <= listed < len(graph):
        order = [child for _, child in sorted(graph[listed].children, key=lambda c: int(c[0]) if c[0].isdigit() else 0)]
    else:
        order = list(dict.fromkeys(child for _, child in attributes if graph[child].variable_key is not None))
    result = {}
    for index, variable in enumerate(order):
        key = graph[variable].variable_key if 0 <= variable < len(graph) else None
        if key is None or key not in checkpoint.entries:
            raise SurgeonError(f"the checkpoint in '{path}' lacks variable {index} of layer '{layer}'; "
                               "the SavedModel is incomplete, save it again")
        name = names.get(variable, str(index))
        result[name if name not in result else f"{name}_{index}"] = checkpoint.read(key) if values else checkpoint.shape(key)
    return result
