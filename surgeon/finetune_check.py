"""Prove that a written file fine-tunes as its flags say: a short seeded ``fit()`` on synthetic data.

The file is loaded with plain ``keras.models.load_model`` in a fresh Python process (as the user's
job will load it; see ``check_fine_tuning`` for why a fresh process), then:

1. every weight of a frozen layer is bit-for-bit unchanged after the steps;
2. the trainable part moved (each trainable layer whose weights did not move is listed);
3. each frozen layer that takes a ``training`` argument gives the same output in training and in
   inference mode on the inputs it really receives (no BN batch statistics, no dropout);
4. the same run repeated from the same seed on a fresh load gives identical weights.

Any failed check fails the report and names the layers.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Callable, Iterator

import numpy as np

from surgeon.child_process import exit_with_parent, last_error_line, start_python
from surgeon.errors import one_line
from surgeon.io.keras_model import load_plain, no_stdout_noise, quiet_tensorflow
from surgeon.verify import run, seeded_inputs

DEFAULT_STEPS = 3
DEFAULT_BATCH = 4
# Compile settings used only when the file is not compiled (the file itself stays uncompiled).
FALLBACK_COMPILE = {"optimizer": "sgd", "loss": "mean_squared_error"}
CHECKS = ("frozen_unchanged", "trainable_moved", "frozen_mode_independent", "deterministic")


@dataclasses.dataclass
class LayerProblem:
    check: str  # one of CHECKS
    layer: str
    detail: str


@dataclasses.dataclass
class FineTuneReport:
    passed: bool
    checks: dict[str, bool]
    problems: list[LayerProblem]
    stuck_layers: list[str]  # trainable layers whose weights did not move (reported, not failed)
    frozen_layers: int
    trainable_layers: int
    steps: int
    batch_size: int
    seed: int
    notes: list[str] = dataclasses.field(default_factory=list)
    problem: str | None = None  # why the check could not run at all

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "FineTuneReport":
        return cls(**{**data, "problems": [LayerProblem(**problem) for problem in data["problems"]]})

    def summary(self) -> str:
        if self.problem:
            return self.problem
        if self.passed:
            return (f"fine-tune check passed: {self.steps} steps, {self.frozen_layers} frozen layers unchanged, "
                    f"{self.trainable_layers} trainable layers trained")
        first = self.problems[0]
        return f"fine-tune check failed ({first.check}): layer '{first.layer}': {first.detail}"


def check_fine_tuning(
    path: str, *, steps: int = DEFAULT_STEPS, batch_size: int = DEFAULT_BATCH, seed: int = 0, allow_code: bool = False
) -> FineTuneReport:
    """Load ``path`` with plain Keras, fine-tune it briefly on seeded data, check the four properties.

    The check runs in a fresh Python process, as the user's fine-tuning job will: the seeds, op
    determinism and thread settings it needs stay out of this process, and its TensorFlow is set
    up for bit-reproducible training before it starts (``reproducible_runtime``). It runs on the
    CPU. The Keras classes this process knows beyond Keras' own (registered, or in an active
    ``custom_object_scope``) are registered there too, imported from their modules; when one
    cannot be imported by a fresh process (defined in ``__main__`` or inside a function), the
    check runs in this process instead, with a note. ``fine_tune_checker`` starts the process
    ahead of time.

    Example:
        >>> report = check_fine_tuning("prepared.h5")
        >>> report.passed, report.checks["frozen_unchanged"]
        (True, True)
    """
    with fine_tune_checker(steps=steps, batch_size=batch_size, seed=seed, allow_code=allow_code) as check:
        return check(path)


@contextlib.contextmanager
def fine_tune_checker(*, steps: int = DEFAULT_STEPS, batch_size: int = DEFAULT_BATCH, seed: int = 0,
                      allow_code: bool = False) -> Iterator[Callable[[str], FineTuneReport]]:
    """Start the check's process now and yield ``check(path)``, usable once.

    Started before a rewrite, the process imports TensorFlow (about 2.5 s) while this one reads,
    rewrites and verifies; it is stopped on leaving the block if the check was not needed.
    """
    scratch = tempfile.mkdtemp(prefix="surgeon_fine_tune_")
    errors_path = os.path.join(scratch, "stderr.txt")
    with open(errors_path, "w", encoding="utf-8") as errors:
        # CPU only: the check is a few small steps, and this process may hold the GPU's memory.
        process = start_python(["-m", "surgeon.finetune_check", "--parent-scratch", scratch], {"CUDA_VISIBLE_DEVICES": ""},
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, text=True)

    def check(path: str) -> FineTuneReport:
        importable, local = _custom_objects()
        if local:
            return _in_this_process(path, steps, batch_size, seed, allow_code, local)
        report_path = os.path.join(scratch, "report.json")
        job = {"model": os.path.abspath(path), "report": report_path, "steps": steps, "batch_size": batch_size,
               "seed": seed, "allow_code": allow_code, "register": importable}
        try:
            process.communicate(json.dumps(job))
        except BrokenPipeError:  # the process died before reading its job; its stderr says why
            process.wait()
        if process.returncode == 0 and os.path.exists(report_path):
            with open(report_path, encoding="utf-8") as stream:
                return FineTuneReport.from_json(json.load(stream))
        with open(errors_path, encoding="utf-8", errors="replace") as stream:
            reason = last_error_line(stream.read(), process.returncode)
        return _cannot_run(f"the fine-tune check's process failed: {reason}", steps, batch_size, seed)

    try:
        yield check
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(scratch, ignore_errors=True)


def _custom_objects() -> tuple[dict[str, str], list[str]]:
    """This process's Keras objects beyond Keras' own: ({name: "module:qualname"}, names a fresh
    process cannot import)."""
    if "keras" not in sys.modules:
        return {}, []
    import keras

    known = dict(keras.saving.get_custom_objects())
    try:  # the active custom_object_scope: Keras keeps it in its private global state
        from keras.src.backend.common import global_state

        known.update(global_state.get_global_attribute("custom_objects_scope_dict", None) or {})
    except ImportError:
        pass
    importable, local = {}, []
    for name, obj in known.items():
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
        if module and module.split(".")[0] == "keras":
            continue
        if not module or module == "__main__" or "<locals>" in qualname or not qualname:
            local.append(name)
        else:
            importable[name] = f"{module}:{qualname}"
    return importable, local


def _in_this_process(path: str, steps: int, batch_size: int, seed: int, allow_code: bool, local: list[str]) -> FineTuneReport:
    """The check in the caller's process: a fresh one could not rebuild the classes ``local``.

    Op determinism is switched on for the check and off again if it was off (TF 2.21 exports no
    public query or disable function; the private ones are used where they exist). The inter-op
    pool is whatever this process started with, so the determinism check can see last-bit
    differences of TensorFlow's making; the note says so.
    """
    import tensorflow as tf

    try:
        from tensorflow.python.framework import config as tf_config

        was_enabled = tf_config.is_op_determinism_enabled()
    except (ImportError, AttributeError):
        tf_config, was_enabled = None, True
    tf.config.experimental.enable_op_determinism()
    try:
        report = run_check(path, steps=steps, batch_size=batch_size, seed=seed, allow_code=allow_code)
    finally:
        if not was_enabled:
            tf_config.disable_op_determinism()
    report.notes.append(
        f"ran in this process: a fresh one cannot import {', '.join(sorted(local))} (defined in __main__ or in a "
        "function); with TensorFlow's default threads, two runs may differ in the last bits (see README)"
    )
    return report


def run_check(path: str, *, steps: int = DEFAULT_STEPS, batch_size: int = DEFAULT_BATCH, seed: int = 0,
              allow_code: bool = False) -> FineTuneReport:
    """The check itself, in this process. Its determinism verdict holds only in a process set up by
    ``reproducible_runtime`` (the fresh one ``check_fine_tuning`` starts). Seeds Keras' global RNGs."""
    notes: list[str] = []
    keras_seed(seed)
    try:
        model = load_plain(path, allow_code=allow_code)
        compile_if_needed(model, notes)
    except Exception as error:  # a file the user's job cannot even load is a failed check
        return _cannot_run(f"the written file does not load with plain Keras: {one_line(error)}", steps, batch_size, seed)

    leaves = leaf_layers(model)
    frozen = [p for p, (layer, is_frozen) in leaves.items() if is_frozen and layer.weights]
    trainable = [p for p, (layer, is_frozen) in leaves.items() if not is_frozen and layer.trainable_weights]
    x, y = synthetic_data(model, steps * batch_size, seed)
    problems: list[LayerProblem] = []

    before = snapshot(leaves)
    try:
        after = fit_steps(model, x, y, batch_size)
    except Exception as error:
        return _cannot_run(f"fit() fails on the written file: {one_line(error)}", steps, batch_size, seed)

    for layer_path in frozen:
        moved = _changed(before[layer_path], after[layer_path])
        if moved:
            problems.append(LayerProblem("frozen_unchanged", layer_path, f"frozen weights changed: {', '.join(moved)}"))
    stuck = [p for p in trainable if not _changed(_trainable_only(before, leaves, p), _trainable_only(after, leaves, p))]
    if trainable and len(stuck) == len(trainable):
        problems.append(LayerProblem("trainable_moved", stuck[0], f"no trainable weight moved in {steps} steps ({len(stuck)} trainable layers)"))
    if not trainable:
        notes.append("the model has no trainable weights: nothing to fine-tune")

    keras_seed(seed)
    again = load_plain(path, allow_code=allow_code)
    compile_if_needed(again, [])
    second = fit_steps(again, x, y, batch_size)
    for layer_path in after:
        differing = _changed(after[layer_path], second.get(layer_path, {}))
        if differing:
            problems.append(LayerProblem("deterministic", layer_path, f"two runs from the same seed differ in "
                                         f"{_describe_differences(after[layer_path], second.get(layer_path, {}), differing)}"))
    # Last, on the second model: running a Dropout in training mode advances its seed generator,
    # which would make the two runs above differ for a reason of the check's own making.
    problems += mode_problems(again, leaf_layers(again), [a[:batch_size] for a in x])

    checks = {name: not any(p.check == name for p in problems) for name in CHECKS}
    return FineTuneReport(all(checks.values()), checks, problems, stuck, len(frozen), len(trainable), steps, batch_size, seed, notes)


def reproducible_runtime() -> None:
    """Set up this process's TensorFlow for bit-reproducible training; call before TensorFlow starts.

    Op determinism alone is not enough on the CPU: with independent ops running concurrently,
    TensorFlow's kernels split their work differently from run to run. Measured by
    bench/bench_determinism.py on a prepared InceptionV3 (TensorFlow 2.21, 2 cores, the check's
    3-step fit from the same seed and file): 3 of 12 runs differed in the last bits with the
    default threads, 0 of 12 with one inter-op thread.
    """
    quiet_tensorflow()
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()


def _cannot_run(problem: str, steps: int, batch_size: int, seed: int) -> FineTuneReport:
    return FineTuneReport(False, dict.fromkeys(CHECKS, False), [], [], 0, 0, steps, batch_size, seed, problem=problem)


def keras_seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def compile_if_needed(model, notes: list[str]) -> None:
    if not getattr(model, "compiled", False):
        model.compile(**FALLBACK_COMPILE)
        notes.append("the file is not compiled: the check compiled it with SGD and mean squared error")


def leaf_layers(model, prefix: str = "", parent_frozen: bool = False) -> dict[str, tuple[object, bool]]:
    """Layer path -> (layer, effectively frozen), nested models expanded; InputLayers left out."""
    result: dict[str, tuple[object, bool]] = {}
    for layer in model.layers:
        path = prefix + layer.name
        frozen = parent_frozen or not layer.trainable
        if hasattr(layer, "layers") and layer.__class__.__name__ in ("Functional", "Sequential", "Model"):
            result.update(leaf_layers(layer, path + "/", frozen))
        elif layer.__class__.__name__ != "InputLayer":
            result[path] = (layer, frozen)
    return result


def snapshot(leaves: dict) -> dict[str, dict[str, np.ndarray]]:
    return {path: {_weight_key(layer, i, v): np.array(v.numpy(), copy=True) for i, v in enumerate(layer.weights)}
            for path, (layer, _) in leaves.items() if layer.weights}


def _weight_key(layer, index: int, variable) -> str:
    return variable.name if variable.name else str(index)


def _trainable_only(weights: dict, leaves: dict, path: str) -> dict[str, np.ndarray]:
    layer = leaves[path][0]
    names = {v.name for v in layer.trainable_weights}
    return {k: v for k, v in weights[path].items() if k in names}


def _describe_differences(first: dict[str, np.ndarray], second: dict[str, np.ndarray], names: list[str]) -> str:
    """``kernel (max abs 3.7e-09), bias (missing or reshaped in the second run)``."""
    parts = []
    for name in names:
        other = second.get(name)
        if other is None or other.shape != first[name].shape:
            parts.append(f"{name} (missing or reshaped in the second run)")
        else:
            worst = float(np.max(np.abs(first[name].astype(np.float64) - other))) if other.size else 0.0
            parts.append(f"{name} (max abs {worst:.3g})")
    return ", ".join(parts)


def _changed(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> list[str]:
    """Names of weights that are not bit-for-bit equal (NaNs compare by bit pattern too)."""
    changed = []
    for name, value in before.items():
        other = after.get(name)
        if other is None or value.shape != other.shape or value.tobytes() != other.tobytes():
            changed.append(name)
    return changed


def fit_steps(model, x: list[np.ndarray], y, batch_size: int) -> dict[str, dict[str, np.ndarray]]:
    with no_stdout_noise():
        model.fit(x if len(x) > 1 else x[0], y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return snapshot(leaf_layers(model))


# --- synthetic data --------------------------------------------------------------------------


def synthetic_data(model, count: int, seed: int):
    """Seeded inputs (as ``verify`` makes them) and targets that suit each output's loss."""
    x = seeded_inputs(model, count, seed)
    outputs = run(model, [a[:1] for a in x])
    losses = _loss_names(model, len(outputs))
    rng = np.random.default_rng(seed + 1)
    targets = [_target(rng, count, out.shape[1:], loss) for out, loss in zip(outputs, losses)]
    return x, (targets if len(targets) > 1 else targets[0])


def _loss_names(model, count: int) -> list[str]:
    loss = getattr(model, "loss", None)
    if isinstance(loss, dict):
        names = list(getattr(model, "output_names", []) or [])
        return [_name_of(loss.get(n)) for n in names] if len(names) == count else [""] * count
    if isinstance(loss, (list, tuple)):
        return [_name_of(item) for item in loss] + [""] * (count - len(loss))
    return [_name_of(loss)] * count


def _name_of(loss) -> str:
    if loss is None:
        return ""
    if isinstance(loss, str):
        return loss.lower()
    return str(getattr(loss, "name", None) or getattr(loss, "__name__", "") or type(loss).__name__).lower()


def _target(rng: np.random.Generator, count: int, shape: tuple[int, ...], loss: str) -> np.ndarray:
    classes = shape[-1] if shape else 1
    if "sparse" in loss:
        return rng.integers(0, max(classes, 1), size=(count, *shape[:-1])).astype(np.int32)
    if "categorical" in loss or "kl" in loss:
        labels = rng.integers(0, max(classes, 1), size=(count, *shape[:-1]))
        return np.eye(classes, dtype=np.float32)[labels]
    if "binary" in loss or "hinge" in loss or "focal" in loss:
        return rng.integers(0, 2, size=(count, *shape)).astype(np.float32)
    if "poisson" in loss:
        return rng.uniform(0.0, 2.0, size=(count, *shape)).astype(np.float32)
    return rng.standard_normal(size=(count, *shape)).astype(np.float32)


# --- training vs inference mode of the frozen part ------------------------------------------


def mode_problems(model, leaves: dict, x: list[np.ndarray]) -> list[LayerProblem]:
    """Frozen layers that act differently with ``training=True`` on the inputs they really get.

    The inputs are captured during one inference pass (the call of each such layer is wrapped for
    that pass only), then the layer alone runs in both modes: a difference is the layer's own,
    not an upstream trainable layer's.
    """
    candidates = {path: layer for path, (layer, frozen) in leaves.items() if frozen and getattr(layer, "_call_has_training_arg", False)}
    captured: dict[str, tuple] = {}
    for path, layer in candidates.items():
        object.__setattr__(layer, "call", _recording(layer.call, path, captured))
    try:
        run(model, x)
    finally:
        for layer in candidates.values():
            object.__delattr__(layer, "call")
    problems = []
    for path, (args, kwargs) in captured.items():
        layer = candidates[path]
        inference = _flat(layer.call(*args, **{**kwargs, "training": False}))
        training = _flat(layer.call(*args, **{**kwargs, "training": True}))
        worst = max((float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(inference, training)), default=0.0)
        scale = max((float(np.max(np.abs(a))) if a.size else 0.0 for a in inference), default=0.0)
        if worst > 1e-6 * max(scale, 1.0):
            problems.append(LayerProblem(
                "frozen_mode_independent", path,
                f"frozen {type(layer).__name__} changes its output in training mode (max abs {worst:.3g}); "
                "`surgeon prepare` folds frozen BatchNormalization and removes frozen Dropout/noise",
            ))
    return problems


def _recording(call, path: str, captured: dict):
    def wrapper(*args, **kwargs):
        captured.setdefault(path, (args, kwargs))
        return call(*args, **kwargs)

    return wrapper


def _flat(result) -> list[np.ndarray]:
    if isinstance(result, dict):
        result = list(result.values())
    if not isinstance(result, (list, tuple)):
        result = [result]
    return [np.asarray(r, dtype=np.float64) for r in result]


# --- the child process ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """The check's process (``fine_tune_checker``): set up TensorFlow, then read one job as JSON
    on stdin (model, report path, steps, batch_size, seed, allow_code, register) and run it."""
    parser = argparse.ArgumentParser(prog="python -m surgeon.finetune_check")
    parser.add_argument("--parent-scratch", help="the caller's temporary directory, removed if the caller dies")
    args = parser.parse_args(argv)
    exit_with_parent(scratch=args.parent_scratch)
    reproducible_runtime()
    text = sys.stdin.read()
    if not text.strip():  # the caller did not need the check
        return
    job = json.loads(text)
    try:
        _register(job["register"])
        report = run_check(job["model"], steps=job["steps"], batch_size=job["batch_size"], seed=job["seed"],
                           allow_code=job["allow_code"])
    except Exception as error:  # reported as one line, not as the last line of a traceback
        report = _cannot_run(one_line(error), job["steps"], job["batch_size"], job["seed"])
    with open(job["report"], "w", encoding="utf-8") as stream:
        json.dump(report.to_json(), stream)


def _register(entries: dict[str, str]) -> None:
    """``{name: "module:qualname"}`` into Keras' registry, as the caller had them."""
    import importlib

    import keras

    for name, location in entries.items():
        module, qualname = location.split(":", 1)
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        keras.saving.get_custom_objects()[name] = obj


if __name__ == "__main__":
    main()
