"""Keras' whole layer catalog through convert, fold-bn and prepare, in both formats (issue 17).

Every class ``keras.layers`` exports is a row (tests/layer_catalog.py). To stay fast, the rows
of one format share one model: per input kind a frozen Dense + BatchNormalization trunk, every
row's layer on it, every row's output named ``out_<row>``. Each rewrite runs once on that model
through the library API (the same code the CLI calls), and each row then checks its own output:
the written file, loaded with plain ``keras.models.load_model``, against the original in-memory
model run by Keras (not against surgeon's reading of it). ``prepare`` freezes the trunk and every
row layer (beside a trainable head) and runs the fine-tune check, whose per-layer problems are
the rows' own. ``split`` at owned-layer rows runs through the CLI in tests/test_owned_layers.py.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import time

import numpy as np
import pytest

from tests.layer_catalog import H5_LIMITS, SKIPS, Row, catalog_inputs, catalog_model, catalog_rows, output_name

ROWS = catalog_rows()
RUNNABLE = [row for row in ROWS if row.build is not None]

# Every run is one library call on a shared model. The rows Keras can save in .h5 share one
# model, saved in both formats; the few it cannot share a small .keras-only model.
RUNS = [
    ("convert", "keras", "h5"), ("convert", "h5", "keras"), ("convert", "keras", "keras"),
    ("fold_bn", "keras", "keras"), ("fold_bn", "h5", "h5"),
    ("prepare", "keras", "keras"), ("prepare", "h5", "h5"),
]
# Frozen, these would train after loading (see FROZEN_LOST): prepare leaves them trainable here.
KEEP_TRAINABLE = ("multi_head_attention*", "grouped_query_attention*", "conv_lstm*")


def _rows_for(row: Row) -> list[Row]:
    """The rows of the model ``row`` is part of."""
    only_keras = row.name in H5_LIMITS
    return [other for other in RUNNABLE if (other.name in H5_LIMITS) == only_keras]


@dataclasses.dataclass
class Run:
    passed: bool
    problem: str
    outputs: dict[str, np.ndarray] | None  # the written file's outputs, by output name, run by plain Keras
    layer_problems: dict[str, list[str]]  # after prepare: variables of frozen layers Keras would train, by layer
    row_layers: dict[str, set[str]]
    seconds: float


class Catalog:
    """The shared models and the runs on them, made on first use and kept for the session."""

    def __init__(self, root: str):
        self.root = root
        self.models: dict[tuple[str, ...], tuple[str, dict, dict, dict]] = {}
        self.runs: dict[tuple[str, str, str], Run] = {}

    def model(self, rows: list[Row]):
        """``(stem, inputs, expected outputs, row layers)``: saved as ``stem.keras`` and ``stem.h5`` where Keras can."""
        key = tuple(row.name for row in rows)
        if key not in self.models:
            model = catalog_model(rows)
            inputs = catalog_inputs(model)
            expected = {name: np.asarray(value) for name, value in model(inputs, training=False).items()}
            stem = os.path.join(self.root, f"catalog_{len(self.models)}")
            model.save(stem + ".keras")
            if not any(row.name in H5_LIMITS for row in rows):
                model.save(stem + ".h5")
            self.models[key] = (stem, inputs, expected, _row_layers(model, rows))
        return self.models[key]

    def run(self, rows: list[Row], command: str, source: str, output: str) -> Run:
        key = (tuple(row.name for row in rows), command, source, output)
        if key not in self.runs:
            self.runs[key] = self._run(rows, command, source, output)
        return self.runs[key]

    def _run(self, rows: list[Row], command: str, source: str, output: str) -> Run:
        import surgeon
        from surgeon.passes.freeze import Selection
        from surgeon.verify import load_plain

        stem, inputs, _, row_layers = self.model(rows)
        path, target = f"{stem}.{source}", f"{stem}_{command}_{source}_to.{output}"
        start = time.perf_counter()
        try:
            if command == "convert":
                result = surgeon.convert_file(path, target, force=True)
            elif command == "fold_bn":
                result = surgeon.fold_bn_file(path, target, force=True)
            else:
                # Everything frozen but the head: every row's variables must stay put in training.
                # The fine-tune check (a few fit() steps) takes minutes on a model of 130 branches;
                # here the property it proves is read off the loaded model instead: Keras
                # would train exactly the variables in trainable_weights. The check itself runs
                # on owned-layer rows through the CLI (tests/test_owned_layers.py).
                result = surgeon.prepare_file(path, target, selection=Selection(all=True, unfreeze=("head",) + _present(KEEP_TRAINABLE, row_layers)),
                                              force=True, fine_tune=False)
        except surgeon.SurgeonError as error:
            return Run(False, str(error), None, {}, row_layers, time.perf_counter() - start)
        problems: dict[str, list[str]] = {}
        outputs = None
        if result.output:
            model = load_plain(result.output)
            outputs = {name: np.asarray(value) for name, value in model(inputs, training=False).items()}
            if command == "prepare":
                keep = {"head"} | {name for glob in KEEP_TRAINABLE for name in fnmatch.filter([l.name for l in model.layers], glob)}
                trained = {id(variable) for variable in model.trainable_weights}
                for layer in model.layers:
                    if layer.name not in keep:
                        problems[layer.name] = [f"frozen by prepare, but Keras would train {v.path}" for v in layer.weights if id(v) in trained]
        verification = result.verification
        problem = (verification.problem or "") if verification else ""
        if verification and not verification.passed:
            problem = problem or "; ".join(f"{c.name} {c.mode} rel {c.max_rel:.3g}" for c in verification.checks if not c.passed)
        if result.checked is not None and not result.checked.passed:
            problem += f" fine-tune check: {result.checked.checks} {getattr(result.checked, 'problem', '')}"
        return Run(result.passed, problem, outputs, problems, row_layers, time.perf_counter() - start)


def _present(globs: tuple[str, ...], row_layers: dict[str, set[str]]) -> tuple[str, ...]:
    names = set().union(*row_layers.values())
    return tuple(glob for glob in globs if fnmatch.filter(names, glob))


def _row_layers(model, rows: list[Row]) -> dict[str, set[str]]:
    """The layers each row added: from its output back to the trunk (or the model's inputs)."""
    trunk = {layer.name for layer in model.layers if layer.name.endswith(("_dense", "_bn")) or not layer._inbound_nodes[0].input_tensors}
    found = {}
    for row in rows:
        names, stack = set(), [model.get_layer(output_name(row))]
        while stack:
            layer = stack.pop()
            if layer.name in trunk or layer.name in names:
                continue
            names.add(layer.name)
            stack += [t._keras_history[0] for t in layer._inbound_nodes[0].input_tensors]
        found[row.name] = names
    return found


@pytest.fixture(scope="session")
def catalog(tmp_path_factory) -> Catalog:
    return Catalog(str(tmp_path_factory.mktemp("catalog")))


def test_every_exported_layer_has_a_row():
    """A class a new Keras exports needs a recipe in tests/layer_catalog.py or a reason to skip it."""
    missing = [row.name for row in ROWS if row.build is None and row.skip is None]
    assert not missing, f"keras.layers exports {missing}: add a recipe or a skip reason to tests/layer_catalog.py"
    assert len(RUNNABLE) >= 120


def _row_id(value):
    return value.name if isinstance(value, Row) else "-".join(value)


@pytest.mark.parametrize("run", RUNS, ids=_row_id)
@pytest.mark.parametrize("row", ROWS, ids=_row_id)
def test_catalog_row(catalog, row: Row, run: tuple[str, str, str]):
    command, source, output = run
    if row.skip:
        pytest.skip(row.skip)
    if "h5" in (source, output) and row.name in H5_LIMITS:
        pytest.skip(f"not in .h5: {H5_LIMITS[row.name]}")
    if run == ("convert", "keras", "keras") and row.name not in H5_LIMITS:
        pytest.skip("covered by convert keras->h5, h5->keras and fold_bn keras->keras (one run less for CI)")
    rows = _rows_for(row)
    result = catalog.run(rows, command, source, output)
    _, _, expected, _ = catalog.model(rows)
    layers = result.row_layers[row.name]
    own = {layer: problems for layer, problems in result.layer_problems.items() if layer in layers and problems}
    assert not own, f"fine-tune check on {row.name}'s layers: {own}"
    assert result.outputs is not None, f"{command} {source}->{output} wrote nothing: {result.problem}"
    name = output_name(row)
    reference, written = expected[name], result.outputs[name]
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    # convert must be exact; folding a BN into a Dense rounds differently (float32).
    tolerance = 0.0 if command == "convert" else 1e-6 + 1e-4 * scale
    assert written.shape == reference.shape
    assert np.max(np.abs(written.astype(np.float64) - reference.astype(np.float64)), initial=0.0) <= tolerance
    assert result.passed, result.problem


def test_h5_limits_are_keras_own(tmp_path):
    """Each row skipped for .h5 fails in plain Keras alone: saving or reloading it loses it."""
    import keras

    rows = {row.name: row for row in RUNNABLE}
    for name, reason in H5_LIMITS.items():
        model = catalog_model([rows[name]])
        inputs = catalog_inputs(model)
        path = str(tmp_path / f"{name}.h5")
        try:
            model.save(path)
            reloaded = keras.models.load_model(path)
            same = np.array_equal(np.asarray(reloaded(inputs)[output_name(rows[name])]), np.asarray(model(inputs)[output_name(rows[name])]))
        except Exception:
            continue
        assert not same, f"Keras saves and reloads {name} in .h5 now; remove it from H5_LIMITS ({reason})"


def test_skips_name_only_exported_classes():
    from tests.layer_catalog import exported_layer_classes

    assert set(SKIPS) <= set(exported_layer_classes())
