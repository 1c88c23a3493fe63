"""Remove layers that are the identity at inference (Dropout and noise) from frozen parts."""

from __future__ import annotations

from typing import Callable

from surgeon.graph_edit import bypass_layer
from surgeon.layer_kinds import DROPOUT_LAYERS
from surgeon.passes import PassReport
from surgeon.spec import ModelSpec, effectively_frozen, is_model_config, layer_name


def strip_dropout(spec: ModelSpec, *, only_frozen: bool = True) -> tuple[ModelSpec, PassReport]:
    """Given: ``x -> Dropout -> y`` in a frozen part. Result: ``x -> y``.

    Dropout, SpatialDropout*, GaussianNoise, GaussianDropout and AlphaDropout ignore
    ``trainable`` and act whenever ``training=True``: in a frozen base they make the features
    seen by ``fit()`` differ from ``predict()``'s. At inference they are the identity, so
    removing them changes no inference output. ``only_frozen=False`` removes them everywhere.
    """
    spec = spec.copy()
    frozen = effectively_frozen(spec.config)
    report = PassReport("strip_dropout")
    wanted: Callable[[str], bool] = (lambda path: frozen[path]) if only_frozen else (lambda path: True)
    _strip(spec.config, "", wanted, report)
    return spec, report


def _strip(model: dict, prefix: str, wanted: Callable[[str], bool], report: PassReport) -> None:
    for layer in list(model["config"]["layers"]):
        path = prefix + layer_name(layer)
        if is_model_config(layer):
            _strip(layer, path + "/", wanted, report)
        elif layer.get("class_name") in DROPOUT_LAYERS and wanted(path):
            bypass_layer(model, layer_name(layer))
            report.changes.append({"layer": path, "type": layer["class_name"], "action": "removed"})
