"""Cut a model into a frozen base (feature extractor) and a trainable top (head).

Given:  x -> [conv -> bn -> relu -> dropout -> gap] -> dense -> y        (cut after ``gap``)
Result: base: x -> conv -> bn* -> relu -> gap -> f    (every layer trainable=False, Dropout gone)
        top:  f -> dense -> y                        (flags and compile config kept)
        and top(base(x)) == model(x) at inference.

Given:  x -> relu1 -> conv2 -> bn2 -> add(relu1, .) -> ...             (cut after ``conv2``)
Result: base outputs [relu1, conv2]; top inputs [relu1, conv2]: every tensor crossing the cut.

The base is the cut layer and everything it depends on; the top is the rest. A cut is refused
when a layer would land on both sides (a shared layer) or when top layers take tensors from the
base without depending on the cut layer (they run beside the cut: the cached features would hold
their inputs and the top would redo their work). A cut inside a nested model splits that model
in two and rebuilds the outer graph around the halves.

Pure: configs and arrays in, configs and arrays out; no TensorFlow.
"""

from __future__ import annotations

import copy
import dataclasses

from surgeon.errors import SurgeonError
from surgeon.graph import Graph, Node, Tensor, recorded_tensors
from surgeon.passes import PassReport
from surgeon.passes.fold_bn import fold_bn as fold_bn_pass
from surgeon.passes.strip_dropout import strip_dropout
from surgeon.spec import ModelSpec, io_refs, is_model_config, iter_layers, keras_tensor, layer_name, map_io_refs, map_tensor_refs, unique_name

# The layers after which a person would cut an image classifier: the feature vector.
FEATURE_LAYERS = frozenset({
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "Flatten",
})
NEARBY = 6  # how far (in layers) to look for valid cuts to suggest


@dataclasses.dataclass
class CutTensor:
    """One tensor crossing the cut: a base output and the top input of the same position."""

    name: str  # the top's input layer name (also the key of that feature in an .npz)
    source: str  # the layer path that computes it in the original model
    shape: list | None
    dtype: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SplitReport:
    at: str
    chosen_by: str  # "--at", or why the automatic cut was chosen
    cut: list[CutTensor]  # base outputs, in order = the top's first inputs
    passthrough_inputs: list[str]  # original model inputs the top also takes, after the cut tensors
    base_inputs: list[str]  # original model inputs the base takes, in the base's input order
    base_layers: list[str]
    top_layers: list[str]
    base_passes: list[PassReport]
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def top_inputs(self) -> list[str]:
        return [t.name for t in self.cut] + self.passthrough_inputs

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["top_inputs"] = self.top_inputs
        data["base_passes"] = [p.to_json() for p in self.base_passes]
        return data


class BadCut(SurgeonError):
    """The named layer cannot end the base; the message names the offending layers and valid cuts."""


def split(spec: ModelSpec, at: str | None = None, *, fold_bn: bool = False) -> tuple[ModelSpec, ModelSpec, SplitReport]:
    """Split ``spec`` after layer path ``at`` (or the natural cut) into (base, top, report).

    Example:
        >>> from surgeon.io import read_model
        >>> base, top, report = split(read_model("fixtures/convbn.h5"), "conv2")
        >>> [t.name for t in report.cut]
        ['relu1', 'conv2']
    """
    if at is None:
        at, chosen_by = choose_cut(spec.config)
    else:
        chosen_by = "--at"
    halves = _split_model(spec.config, at.split("/"), prefix="")
    base_config, prefix = _unwrap(halves)
    name = spec.name
    base_config["config"]["name"] = f"{name}_base" if not prefix else base_config["config"]["name"]
    halves.top["config"]["name"] = f"{name}_top"
    _freeze_all(base_config)

    base = dataclasses.replace(
        spec.copy(), config=base_config, compile_config=None, optimizer_variables=None,
        weights=_weights_for(spec, base_config, prefix),
    )
    top = dataclasses.replace(
        spec.copy(), config=halves.top, optimizer_variables=None,  # a fresh optimizer: see compile_model
        weights=_weights_for(spec, halves.top, ""),
    )
    base_passes = []
    base, report = strip_dropout(base, only_frozen=True)
    base_passes.append(report)
    if fold_bn:
        base, report = fold_bn_pass(base)
        base_passes.append(report)
    _name_top_inputs_like_base_outputs(top.config, base.config, halves.cut)
    report = SplitReport(
        at=at, chosen_by=chosen_by, cut=halves.cut, passthrough_inputs=[t[0] for t in halves.passthrough],
        base_inputs=[t[0] for t in halves.base_inputs],
        base_layers=[p for p, _ in iter_layers(base.config)], top_layers=[p for p, _ in iter_layers(top.config)],
        base_passes=base_passes,
    )
    if halves.passthrough:
        report.notes.append(
            f"the top also takes the model input(s) {', '.join(report.passthrough_inputs)} directly, after the features"
        )
    return base, top, report


def feature_keys(output_layer_names: list[str]) -> list[str]:
    """Keras names a model's outputs after the layers computing them; a layer called twice gives
    two outputs of one name, told apart here as name, name_1, ... (the keys ``features`` writes)."""
    keys: list[str] = []
    for name in output_layer_names:
        key, counter = name, 1
        while key in keys:
            key, counter = f"{name}_{counter}", counter + 1
        keys.append(key)
    return keys


def _name_top_inputs_like_base_outputs(top: dict, base: dict, cut: list[CutTensor]) -> None:
    """Rename the top's cut inputs to the base's output names, so that the .npz ``features`` writes
    is keyed by the top's input names: ``top.fit(dict(np.load("features.npz")), y)`` works."""
    keys = feature_keys([ref[0] for ref in io_refs(base["config"]["output_layers"])])
    others = {layer_name(layer) for layer in top["config"]["layers"]} - {t.name for t in cut}
    mapping = {t.name: key for t, key in zip(cut, keys) if key not in others and t.name != key}
    if len(set(mapping.values()) | ({t.name for t in cut} - set(mapping))) != len(cut):
        return  # the renaming would merge two inputs; keep the names
    for layer in top["config"]["layers"]:
        if layer.get("class_name") == "InputLayer" and layer_name(layer) in mapping:
            layer["name"] = layer["config"]["name"] = mapping[layer_name(layer)]
        if layer.get("inbound_nodes"):
            layer["inbound_nodes"] = map_tensor_refs(layer["inbound_nodes"], lambda t: _renamed(t, mapping))
    top["config"]["input_layers"] = map_io_refs(top["config"]["input_layers"], lambda ref: [mapping.get(ref[0], ref[0]), ref[1], ref[2]])
    for tensor in cut:
        tensor.name = mapping.get(tensor.name, tensor.name)


def _renamed(tensor: dict, mapping: dict[str, str]) -> dict:
    name, node, index = tensor["config"]["keras_history"]
    if name not in mapping:
        return tensor
    tensor = copy.deepcopy(tensor)
    tensor["config"]["keras_history"] = [mapping[name], node, index]
    return tensor


# --- choosing the cut ------------------------------------------------------------------------


def choose_cut(model: dict) -> tuple[str, str]:
    """The cut a person would choose: (layer path, why)."""
    graph = Graph.of(model)
    inputs = set(graph.inputs)
    for name in graph.keras_layer_order():
        layer = graph.layers[name]
        if is_model_config(layer) and graph.call_count(name) == 1 and set(graph.node_inputs[(name, 0)]) <= inputs:
            if not cut_problems(graph, name):
                return name, f"the nested model '{name}' is the first layer (the base_model + head pattern)"
    for node in reversed(graph.nodes_in_order()):
        name = node[0]
        if graph.layers[name].get("class_name") in FEATURE_LAYERS and not cut_problems(graph, name):
            return name, f"'{name}' is the last global-pooling/Flatten layer before the head"
    raise SurgeonError(
        "found no natural cut (no nested model as the first layer, no global-pooling or Flatten layer); "
        "name the last layer of the base with --at (see `surgeon inspect` for the layer names)"
    )


# --- one nesting level -----------------------------------------------------------------------


@dataclasses.dataclass
class _LevelCut:
    base_nodes: set[Node]
    top_nodes: set[Node]
    cut: list[Tensor]  # tensors computed in the base and used in the top, in topological order
    passthrough: list[Tensor]  # model input tensors the top uses itself


def _analyse(graph: Graph, at: str, *, inside: bool = False) -> tuple[_LevelCut, list[str]]:
    """The partition a cut after ``at`` makes at this level, and why it is invalid (empty: valid).

    ``inside``: the cut is inside the nested model ``at``, whose second half joins the top, so the
    top is not empty and the model's outputs ``at`` computes are computed by the top.
    """
    at_nodes = [(at, i) for i in range(graph.call_count(at))]
    base: set[Node] = set()
    stack = list(at_nodes)
    while stack:
        node = stack.pop()
        if node in base:
            continue
        base.add(node)
        stack.extend(graph.producer(t) for t in graph.node_inputs.get(node, []))
    order = graph.nodes_in_order()
    top = [node for node in order if node not in base]
    top_set = set(top)
    problems: list[str] = []

    input_names = {t[0] for t in graph.inputs}
    if at in input_names:
        problems.append(f"'{at}' is a model input: the base would be empty")
    if not inside and not [node for node in top if node[0] not in input_names]:
        problems.append(f"nothing comes after '{at}': the top would be empty")
    shared = sorted({n for n, _ in base} & {n for n, _ in top_set})
    if shared:
        problems.append(f"layer(s) {', '.join(shared)} are shared by both sides of the cut (one set of weights, called before and after it)")

    users: dict[Node, list[Node]] = {}
    for node, tensors in graph.node_inputs.items():
        for tensor in tensors:
            users.setdefault(graph.producer(tensor), []).append(node)
    after: set[Node] = set()
    stack = list(at_nodes)
    while stack:
        for user in users.get(stack.pop(), []):
            if user not in after:
                after.add(user)
                stack.append(user)
    beside = sorted({
        node[0] for node in top
        if node not in after and any(graph.producer(t) in base for t in graph.node_inputs.get(node, []))
    })
    if beside:
        problems.append(
            f"layer(s) {', '.join(beside)} take tensors from the base side but do not depend on '{at}' "
            "(they run beside the cut: the features would hold their inputs and the top would redo their work)"
        )
    base_outputs = sorted({
        t[0] for t in graph.outputs
        if graph.producer(t) in base and t[0] not in input_names and not (inside and t[0] == at)
    })
    if base_outputs and not problems:
        problems.append(f"model output(s) {', '.join(base_outputs)} would be computed by the base; cut after them")

    position = {node: i for i, node in enumerate(order)}
    crossing = {t for node in top for t in graph.node_inputs.get(node, []) if graph.producer(t) in base}
    cut = sorted((t for t in crossing if t[0] not in input_names), key=lambda t: (position[graph.producer(t)], t[2]))
    # A model input used by both sides crosses as a tensor too; one used only by the top is the top's own input.
    cut += sorted((t for t in crossing if t[0] in input_names), key=graph.inputs.index)
    passthrough = [t for t in graph.inputs if (t[0], t[1]) in top_set and t not in crossing]
    return _LevelCut(base, top_set, cut, passthrough), problems


def cut_problems(graph: Graph, at: str) -> list[str]:
    return _analyse(graph, at)[1]


def valid_cuts_near(graph: Graph, at: str) -> list[str]:
    order = [n for n in graph.keras_layer_order() if graph.layers[n].get("class_name") != "InputLayer"]
    if at not in order:
        return []
    index = order.index(at)
    before = [n for n in reversed(order[max(0, index - NEARBY):index]) if not cut_problems(graph, n)][:3]
    after = [n for n in order[index + 1:index + 1 + NEARBY] if not cut_problems(graph, n)][:3]
    return list(reversed(before)) + after


# --- building the two halves -----------------------------------------------------------------


@dataclasses.dataclass
class _Halves:
    base: dict
    top: dict
    cut: list[CutTensor]
    passthrough: list[Tensor]
    base_inputs: list[Tensor]  # this level's input tensors that feed the base, in its input order
    nested: str | None  # set when the base is just the inputs feeding one nested model (to unwrap)


def _split_model(model: dict, at: list[str], prefix: str) -> _Halves:
    graph = Graph.of(model)
    name = at[0]
    if name not in graph.layers:
        known = ", ".join(list(graph.layers)[:12])
        raise SurgeonError(f"no layer named '{prefix}{name}' in the model (layers here: {known}); run `surgeon inspect` to list them")
    if len(at) > 1 and not is_model_config(graph.layers[name]):
        raise SurgeonError(f"'{prefix}{name}' is not a nested model, so '{prefix}{'/'.join(at)}' names no layer")
    level, problems = _analyse(graph, name, inside=len(at) > 1)
    if problems:
        near = valid_cuts_near(graph, name)
        hint = f"; valid cuts near it: {', '.join(prefix + n for n in near)}" if near else "; pick another --at"
        raise BadCut(f"cannot cut after '{prefix}{name}': " + "; ".join(problems) + hint)
    shapes = recorded_tensors(model)
    inner = None
    if len(at) > 1:
        if graph.call_count(name) != 1:
            raise BadCut(f"cannot cut inside '{prefix}{name}': the nested model is called {graph.call_count(name)} times; cut after it instead")
        inner = _split_model(graph.layers[name], at[1:], prefix + name + "/")
        inner_inputs = io_refs(graph.layers[name]["config"]["input_layers"])
        if io_refs(inner.base["config"]["input_layers"]) != inner_inputs:
            raise BadCut(f"cannot cut inside '{prefix}{name}' at '{'/'.join(at[1:])}': the base half would not take all of the nested model's inputs; cut after '{prefix}{name}' instead")

    # The top's new inputs take the names of the layers that computed them (those layers are in the
    # base, so the names are free), except the nested model split in two, which keeps its name in both.
    taken = {n for n, _ in level.top_nodes} | ({name} if inner is not None else set())
    new_inputs: dict[Tensor, dict] = {}  # base-side tensor -> the top's new InputLayer entry
    cut_info: list[CutTensor] = []

    def add_input(tensor: Tensor, preferred: str, source: str, shape, dtype) -> None:
        input_name = unique_name(preferred, taken)
        new_inputs[tensor] = _input_layer(input_name, shape, dtype)
        cut_info.append(CutTensor(input_name, source, shape, dtype))

    base_outputs: list[Tensor] = []
    top_extra_args: list[dict] = []
    if inner is not None:
        # The nested model's base half now ends the outer base with one output per inner cut tensor;
        # its top half starts the outer top, fed by those outputs plus its own pass-through inputs.
        for j, tensor in enumerate(inner.cut):
            ref = (name, 0, j)
            base_outputs.append(ref)
            add_input(ref, tensor.name, tensor.source, tensor.shape, tensor.dtype)
        outer_inputs = graph.node_inputs[(name, 0)]
        inner_inputs = io_refs(graph.layers[name]["config"]["input_layers"])
        for tensor in inner.passthrough:
            feeding = outer_inputs[inner_inputs.index(tensor)]
            if feeding not in base_outputs:
                base_outputs.append(feeding)
                shape, dtype = shapes.get(feeding, (None, "float32"))
                add_input(feeding, feeding[0], prefix + feeding[0], shape, dtype)
    for tensor in level.cut:
        if inner is not None and tensor[0] == name:
            continue  # computed by the nested model's top half now
        if tensor not in base_outputs:
            base_outputs.append(tensor)
            shape, dtype = shapes.get(tensor, (None, "float32"))
            add_input(tensor, tensor[0] if tensor[1:] == (0, 0) else f"{tensor[0]}_{tensor[1]}_{tensor[2]}", prefix + tensor[0], shape, dtype)
    if inner is not None:
        args = [_tensor_dict(new_inputs[(name, 0, j)]) for j in range(len(inner.cut))]
        outer_inputs = graph.node_inputs[(name, 0)]
        inner_inputs = io_refs(graph.layers[name]["config"]["input_layers"])
        args += [_tensor_dict(new_inputs[outer_inputs[inner_inputs.index(t)]]) for t in inner.passthrough]
        top_extra_args = args

    base_layers = {n for n, _ in level.base_nodes}
    base = _level_config(model, [l for l in model["config"]["layers"] if layer_name(l) in base_layers],
                         [t for t in graph.inputs if t[0] in base_layers],
                         base_outputs)
    if inner is not None:
        _swap_layer(base, name, inner.base)

    remap = {t: _tensor_dict(entry) for t, entry in new_inputs.items() if not (inner is not None and t[0] == name)}
    top_layers = []
    for layer in model["config"]["layers"]:
        layer_key = layer_name(layer)
        if layer_key == name and inner is not None:
            entry = copy.deepcopy(layer)
            entry["config"] = inner.top["config"]
            entry["inbound_nodes"] = [{"args": [top_extra_args[0] if len(top_extra_args) == 1 else top_extra_args], "kwargs": {}}]
            top_layers.append(entry)
        elif any((layer_key, i) in level.top_nodes for i in range(max(1, len(layer.get("inbound_nodes") or [])))):
            entry = copy.deepcopy(layer)
            entry["inbound_nodes"] = map_tensor_refs(entry.get("inbound_nodes") or [], lambda t: _remap(t, remap))
            top_layers.append(entry)
    top_inputs = [(layer_name(e), 0, 0) for e in new_inputs.values()] + level.passthrough
    top = _level_config(model, list(new_inputs.values()) + top_layers, top_inputs, None)

    nested = None
    base_input_refs = [t for t in graph.inputs if t[0] in base_layers]
    if base_layers - {t[0] for t in graph.inputs} == {name} and is_model_config(graph.layers[name]) \
            and graph.node_inputs[(name, 0)] == base_input_refs and all(t[0] == name for t in base_outputs) \
            and [t[2] for t in base_outputs] == list(range(len(base_outputs))):
        nested = name
    return _Halves(base, top, cut_info, level.passthrough, base_input_refs, nested)


def _unwrap(halves: _Halves) -> tuple[dict, str]:
    """The base as the user thinks of it: a nested model fed straight by the inputs *is* the base."""
    if halves.nested is None:
        return halves.base, ""
    for layer in halves.base["config"]["layers"]:
        if layer_name(layer) == halves.nested:
            inner = {key: value for key, value in layer.items() if key not in ("name", "inbound_nodes")}
            return copy.deepcopy(inner), halves.nested + "/"
    raise AssertionError("nested base vanished")


def _level_config(model: dict, layers: list[dict], inputs: list[Tensor], outputs: list[Tensor] | None) -> dict:
    config = {key: copy.deepcopy(value) for key, value in model.items() if key not in ("config", "name", "inbound_nodes", "build_config", "compile_config")}
    inner = {key: copy.deepcopy(value) for key, value in model["config"].items() if key not in ("layers", "input_layers", "output_layers")}
    inner["layers"] = [copy.deepcopy(layer) for layer in layers]
    inner["input_layers"] = _io_struct(inputs)
    inner["output_layers"] = copy.deepcopy(model["config"]["output_layers"]) if outputs is None else _io_struct(outputs)
    config["config"] = inner
    config.setdefault("class_name", "Functional")
    return config


def _swap_layer(model: dict, name: str, nested: dict) -> None:
    for layer in model["config"]["layers"]:
        if layer_name(layer) == name:
            layer["config"] = copy.deepcopy(nested["config"])
            return


def _io_struct(refs: list[Tensor]) -> list:
    # Keras writes a single input/output as one [name, node, index] triple, several as a list of them.
    items = [[n, i, t] for n, i, t in refs]
    return items[0] if len(items) == 1 else items


def _input_layer(name: str, shape, dtype: str) -> dict:
    if shape is None:
        raise SurgeonError(f"Keras recorded no shape for the tensor '{name}' crossing the cut; pick another --at")
    return {
        "module": "keras.layers", "class_name": "InputLayer", "registered_name": None, "name": name,
        "config": {"batch_shape": list(shape), "dtype": dtype, "sparse": False,
                   "ragged": False, "name": name, "optional": False},
        "inbound_nodes": [],
    }


def _tensor_dict(input_entry: dict) -> dict:
    config = input_entry["config"]
    return keras_tensor(input_entry["name"], 0, 0, shape=config["batch_shape"], dtype=config["dtype"])


def _remap(tensor: dict, remap: dict[Tensor, dict]) -> dict:
    name, node, index = tensor["config"]["keras_history"]
    return copy.deepcopy(remap.get((name, int(node), int(index)), tensor))


def _freeze_all(model: dict) -> None:
    """trainable=False on the model, every nested model and every layer: the base is never trained."""
    model["config"]["trainable"] = False
    for _, layer in iter_layers(model):
        if layer.get("class_name") != "InputLayer":  # no weights, and its config has no such key
            layer.setdefault("config", {})["trainable"] = False


def _weights_for(spec: ModelSpec, model: dict, prefix: str) -> dict:
    # The top's new InputLayers may carry the name of a base layer with weights: never theirs.
    return {
        path: dict(spec.weights[prefix + path]) for path, layer in iter_layers(model)
        if prefix + path in spec.weights and layer.get("class_name") != "InputLayer"
    }
