"""Turn Sequential configs into Functional ones, so that every pass sees one graph form."""

from __future__ import annotations

from surgeon.errors import SurgeonError
from surgeon.shapes import output_shape
from surgeon.spec import is_model_config, keras_tensor, layer_name


def _input_layer(config: dict, first_layer: dict) -> dict:
    shape = config.get("build_input_shape")
    if shape is None:
        first = first_layer.get("config", {})
        shape = first.get("batch_shape") or first.get("batch_input_shape")
    if shape is None:
        raise SurgeonError(
            f"Sequential model '{config.get('name')}' has no input shape, so it was never built; "
            "build it (call it on data or add keras.Input) and save it again"
        )
    name = f"{config.get('name', 'sequential')}_input"
    return {
        "class_name": "InputLayer",
        "config": {"batch_shape": list(shape), "dtype": "float32", "sparse": False, "name": name},
        "name": name,
        "inbound_nodes": [],
    }


def convert_sequentials(model: dict) -> None:
    """Given a Sequential config (possibly nested ones inside). Result, in place: Functional ones."""
    for layer in model["config"]["layers"]:
        if is_model_config(layer):
            convert_sequentials(layer)
    if model.get("class_name") != "Sequential":
        return
    config = model["config"]
    layers = config["layers"]
    if not layers:
        raise SurgeonError(f"Sequential model '{config.get('name')}' has no layers")
    if layers[0].get("class_name") != "InputLayer":
        layers.insert(0, _input_layer(config, layers[0]))
    previous = layers[0]
    previous.setdefault("name", layer_name(previous))
    previous["inbound_nodes"] = []
    shape = previous["config"].get("batch_shape") or previous["config"].get("batch_input_shape")
    for layer in layers[1:]:
        layer["name"] = layer_name(layer)
        # .keras files record the input shape of each layer with weights (build_config), .h5 files
        # only the model's input shape: the rest follows from the layers' configs where surgeon
        # knows the rule, and stays unknown (None) where it does not.
        recorded = (layer.get("build_config") or {}).get("input_shape") or shape
        layer["inbound_nodes"] = [{"args": [keras_tensor(layer_name(previous), 0, 0, shape=recorded)], "kwargs": {}}]
        previous, shape = layer, output_shape(layer, recorded)
    model["class_name"] = "Functional"
    if "module" in model:
        model["module"] = "keras.src.models.functional"
        model["registered_name"] = "Functional"
    # A single leaf, not a list of one: Keras would otherwise return a list from predict().
    config["input_layers"] = [layer_name(layers[0]), 0, 0]
    config["output_layers"] = [layer_name(previous), 0, 0]
    for key in ("build_input_shape", "dtype"):
        config.pop(key, None)
