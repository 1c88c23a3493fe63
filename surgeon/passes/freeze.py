"""Bake ``trainable`` flags into the config: a selection of layers -> consistent flags.

Given: a model whose flags may say one thing while Keras does another (flags set after compile,
a nested model frozen while its layers say trainable, an outer ``trainable=False``).
Result: every layer carries its own final flag; a nested model is frozen exactly when every layer
inside it is, so Keras 2 (which honours the container's flag) and Keras 3 (which follows each
layer's flag) read the same file the same way. Weights are untouched.

The selection is applied in a fixed order, each step overriding the previous ones:
``all`` -> ``until`` -> ``freeze`` globs -> ``unfreeze`` globs -> BatchNormalization kept frozen.
"""

from __future__ import annotations

import dataclasses
import fnmatch

from surgeon.errors import SurgeonError
from surgeon.graph import Graph
from surgeon.layer_kinds import BATCH_NORMALIZATION
from surgeon.params import ParamCounts, layer_param_count, param_counts
from surgeon.passes import PassReport
from surgeon.spec import ModelSpec, effectively_frozen, is_model_config, iter_layers, parent_path

@dataclasses.dataclass(frozen=True)
class Selection:
    """Which layers end up frozen. The empty selection keeps the current (effective) flags."""

    until: str | None = None  # freeze every layer up to and including this one (topological order)
    freeze: tuple[str, ...] = ()  # layer-name globs, matched against the path and the bare name
    unfreeze: tuple[str, ...] = ()
    all: bool = False
    keep_bn_frozen: bool = True  # the usual advice: BN statistics stay put even in unfrozen blocks

    def describe(self) -> str:
        parts = ["--all"] if self.all else []
        parts += [f"--until {self.until}"] if self.until else []
        parts += [f"--freeze {g}" for g in self.freeze] + [f"--unfreeze {g}" for g in self.unfreeze]
        return " ".join(parts) or "(keep current flags)"


@dataclasses.dataclass
class FreezeReport(PassReport):
    before: ParamCounts | None = None
    after: ParamCounts | None = None


def freeze(spec: ModelSpec, selection: Selection | None = None) -> tuple[ModelSpec, FreezeReport]:
    """Apply ``selection`` and write every flag explicitly and consistently.

    Example:
        >>> from surgeon.io import read_model
        >>> spec, report = freeze(read_model("fixtures/nested.h5"), Selection(until="base"))
        >>> report.after
        ParamCounts(trainable=51, non_trainable=1488)
    """
    selection = selection or Selection()
    spec = spec.copy()
    order = topological_paths(spec.config)
    layers = dict(iter_layers(spec.config))
    before_frozen = effectively_frozen(spec.config)
    trainable = {path: not before_frozen[path] for path in order}

    if selection.all:
        trainable = dict.fromkeys(order, False)
    if selection.until:
        target = resolve_layer(selection.until, order)
        position = max(i for i, path in enumerate(order) if path == target or path.startswith(target + "/"))
        trainable = {path: i > position for i, path in enumerate(order)}
    for patterns, value in ((selection.freeze, False), (selection.unfreeze, True)):
        for pattern in patterns:
            for path in matching_paths(pattern, order):
                trainable[path] = value
    if selection.keep_bn_frozen:
        for path in order:
            if layers[path].get("class_name") == BATCH_NORMALIZATION:
                trainable[path] = False

    report = FreezeReport("freeze", before=param_counts(spec))
    _write_flags(spec, layers, trainable)
    spec.config["config"]["trainable"] = True  # an outer False is now carried by each layer's flag
    after_frozen = effectively_frozen(spec.config)
    for path, layer in layers.items():
        if layer.get("class_name") != "InputLayer" and before_frozen[path] != after_frozen[path]:
            report.changes.append({
                "layer": path, "type": layers[path].get("class_name"), "params": layer_param_count(spec, path),
                "before": "frozen" if before_frozen[path] else "trainable",
                "after": "frozen" if after_frozen[path] else "trainable",
            })
    report.after = param_counts(spec)
    report.notes.append(f"selection: {selection.describe()}")
    return spec, report


def freeze_batchnorm(spec: ModelSpec) -> tuple[ModelSpec, FreezeReport]:
    """Given: BatchNormalization layers in trainable blocks. Result: the same layers, frozen.

    ``prepare`` runs this after fold_bn, so that the BNs of the trainable part stay BNs (frozen)
    instead of being folded as part of the frozen part.
    """
    spec, report = freeze(spec, Selection(keep_bn_frozen=True))
    report.name = "freeze_bn"
    report.notes = ["BatchNormalization layers kept frozen (--train-bn to let them train)"] if report.changes else []
    return spec, report


def _write_flags(spec: ModelSpec, layers: dict[str, dict], trainable: dict[str, bool]) -> None:
    """Leaves get their flag; a nested model is trainable iff some layer inside it is."""
    for path, layer in layers.items():
        if layer.get("class_name") == "InputLayer":
            continue  # InputLayer's config takes no ``trainable`` and has nothing to train
        if is_model_config(layer):
            prefix = path + "/"
            value = any(trainable.get(p, False) for p in trainable if p.startswith(prefix))
        else:
            value = trainable.get(path, True)
        layer["config"]["trainable"] = bool(value)


def topological_paths(model_config: dict, prefix: str = "") -> list[str]:
    """Leaf layer paths in execution order, nested models expanded in place (InputLayers left out)."""
    graph = Graph.of(model_config)
    paths: list[str] = []
    seen: set[str] = set()
    for name, _ in graph.nodes_in_order():
        if name in seen:
            continue
        seen.add(name)
        layer = graph.layers[name]
        if is_model_config(layer):
            paths += topological_paths(layer, prefix + name + "/")
        elif layer.get("class_name") != "InputLayer":
            paths.append(prefix + name)
    # Layers no output depends on still exist in the file and still get a flag.
    for name, layer in graph.layers.items():
        if name not in seen and layer.get("class_name") != "InputLayer":
            paths += topological_paths(layer, prefix + name + "/") if is_model_config(layer) else [prefix + name]
    return paths


def _all_paths(order: list[str]) -> set[str]:
    """Leaf paths plus every enclosing model path."""
    result = set(order)
    for path in order:
        while "/" in path:
            path = parent_path(path)
            result.add(path)
    return result


def resolve_layer(name: str, order: list[str]) -> str:
    """A full path ("base/conv1") or a bare name that is unique across nesting levels."""
    paths = _all_paths(order)
    if name in paths:
        return name
    matches = sorted(p for p in paths if p.rpartition("/")[2] == name)
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise SurgeonError(f"layer name '{name}' is ambiguous: {', '.join(matches)}; give the full path")
    raise SurgeonError(f"no layer named '{name}' in the model; run `surgeon inspect` to list them")


def matching_paths(pattern: str, order: list[str]) -> list[str]:
    """Leaf paths selected by a glob: a match on a nested model selects everything inside it."""
    hits = {p for p in _all_paths(order) if fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p.rpartition("/")[2], pattern)}
    if not hits:
        raise SurgeonError(f"no layer matches '{pattern}'; run `surgeon inspect` to list the layer names")
    return [p for p in order if p in hits or any(p.startswith(h + "/") for h in hits)]
