"""Sweep (issues 6 and 13 acceptance): every keras.applications architecture saved by tf.keras 2.x,
flat and nested, in each way tf.keras 2 saved models, through ``convert``, ``fold-bn`` and ``prepare``.

Step A (one child process, ``TF_USE_LEGACY_KERAS=1``, tf_keras): build each architecture with
``weights=None`` at the smallest input it accepts (``applications.ARCHS``), non-trivial BN
statistics as ``applications.randomize_bn`` makes them (gamma ~ U(0.5, 1.5), beta ~ N(0, 0.5), then
moving statistics measured on seeded data) and ConvNeXt LayerScale gammas (U(0.5, 1.5) instead of
1e-6), and save it in each of ``--keras2-formats``: ``h5``
(``NAME.h5``), ``saved_model`` (the ``NAME_savedmodel/`` directory of ``model.save`` without
extension), ``keras`` (tf.keras' own ``NAME.keras``), ``json`` (``NAME.json`` from ``to_json()`` +
``NAME_weights.h5`` from ``save_weights``, found by surgeon by their shared stem):

- flat: the application with a 10-way logits top (``classifier_activation=None``: a saturated
  softmax would hide errors);
- nested: ``app(include_top=False)`` frozen, called as a layer, then GlobalAveragePooling2D and a
  Dense head.

Both are compiled (Adam, loss "mean_squared_error"; --loss-object: a
SparseCategoricalCrossentropy(from_logits=True) object) so that a training config is saved, as in a
real Keras 2 training file.

Step A also runs each model as tf_keras computes it on seeded inputs, in float32 and in float64
(the same layers and weights, widened exactly: ``float64_twin``), and stores both beside the files
(``NAME_exact.npz``). The float64 run is the reference: "what tf.keras computes" without float32
rounding. On these random-weight models float32 rounding alone moves tf_keras' own output by up to
~3e-4 of its scale, so a float32-against-float32 comparison at 1e-5 tells rounding, not mistakes.

Step B (Keras 3, one child process per architecture, see ``applications.collect_rows``): per file,

1. ``surgeon.convert.convert_file(src, out.keras)``: passes when the result passed (surgeon's
   verification and its float32 cross-check against tf_keras both pass) and the converted file,
   run by plain Keras 3 in float64, is within 1e-5 of tf_keras' float64 result;
2. ``surgeon.fold.fold_bn_file(src, folded.h5)`` on the ORIGINAL Keras 2 file (flat: with
   ``fold_all=True``, ``fold-bn --all``, since nothing in it is frozen and fold-bn refuses to fold
   only trainable BNs; nested: default options, folding the frozen base);
3. ``surgeon.prepare.prepare_file(src, prepared.h5)`` on the ORIGINAL Keras 2 file; it passes only
   when its fine-tune check passes too (the written file loaded with plain Keras 3 in a fresh
   process and fit: frozen weights bit-for-bit unchanged, trainable ones moved, the frozen part
   mode-independent, the run deterministic).

fold-bn and prepare pass when surgeon's verification passes and, in float64, the written file is
within 1e-5 of tf_keras' float64 result, or - where that is not possible in a float32 file - no
further from it than tf_keras' own float32 run is (``judge_exact``): a fold stores new weights,
each rounded once to float32, and on these models that rounding alone moves the output by up to
~1e-4. Every row also gives the written file's float32 error against the float64 reference
beside tf_keras' own (``[f32 .. f64 .. k2 ..]``).

A model without BatchNormalization (VGG16) has nothing to fold: fold-bn refuses it (exit 2, nothing
written), and the sweep counts that refusal as the expected answer ("no BN" in the table).

Prints one row per file and the pass counts. Usage:

    python bench/sweep_keras2.py [--only ResNet50,ConvNeXtTiny] [--variants flat,nested]
                                 [--keras2-formats h5,saved_model,keras,json]
                                 [--steps convert,fold,prepare] [--out DIR] [--keep] [--reuse]
                                 [--in-process]

Measured 2026-11-30 (tf_keras 2.21, Keras 3.15, 2 cores, niced beside other work), all 15
architectures, flat and nested, in all four formats (120 files): every converted file, run in
float64 by plain Keras 3, gave tf_keras' float64 result exactly (largest relative error 0 on
120/120; in float32 it is about as far from that result as tf_keras' own float32 run: up to
4.2e-4 against 2.9e-4, on MobileNetV3Large). fold-bn
104/120 folded and passed (in float64 the folded file is at most 8.3e-5 from tf_keras' result, on
MobileNetV3Small nested, whose own float32 run is 1.9e-4 from it) plus 16/120 refused as they
should be (VGG16, ConvNeXtTiny: no BN). prepare 120/120 with its fine-tune check (``.h5`` and
SavedModel with every step in one run, 6228 s; ``.keras`` and JSON with ``--steps convert,fold``,
4132 s, then ``--steps prepare --reuse``, 1406 s). The first ``.keras``/JSON run found EfficientNetV2B0 2.1e-5
off in float64: Keras 3's Normalization rounds its mean and variance through float32 tensors, in
the float64 twin only (``float64_twin`` now sets them in float64); rerun, 0.

A JSON + weights pair has no compile state: ``prepare`` writes it uncompiled (its fine-tune check
compiles a copy with SGD and mean squared error); the other formats keep their compile config.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from applications import ARCHS, collect_rows, leaves, one_line, parse_args, print_counts

CLASSES = 10
EXACT_REL = 1e-5  # the bar: largest relative error against what tf_keras computes
EXACT_SUFFIX = "_exact.npz"  # beside each case's files: seeded inputs, tf_keras' float32 and float64 outputs
EXACT_SAMPLES = 8
NO_BN = "the model has no BatchNormalization layer"  # fold-bn's refusal (surgeon.fold.check_something_to_fold)

# Runs under TF_USE_LEGACY_KERAS=1: tf_keras (Keras 2) cannot share a process with Keras 3, so the
# Keras 2 files are built in a child. argv: out dir, JSON [[arch, [h, w, c]], ...], JSON variants.
_BUILD_KERAS2 = """
import json, os, sys
import numpy as np
import tf_keras

sys.path.insert(0, %(bench)r)
from applications import randomize_batchnorms  # no Keras 3 import: safe beside tf_keras
from tf_keras.src.applications import convnext
custom = {"LayerScale": convnext.LayerScale, "StochasticDepth": convnext.StochasticDepth}

out, cases, variants, formats = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])

def batchnorms(model, rng):
    # The BN layers of model, nested ones included; ConvNeXt's LayerScale gammas randomized on the way.
    found = []
    for layer in model.layers:
        if isinstance(layer, tf_keras.Model):
            found += batchnorms(layer, rng)
        elif type(layer).__name__ == "LayerScale":
            # ConvNeXt's gamma starts at 1e-6: each block's branch would hardly show in the outputs.
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape[0]))
        elif isinstance(layer, tf_keras.layers.BatchNormalization):
            found.append(layer)
    return found

def randomize_bn(model, rng):
    # As applications.randomize_bn: random gamma/beta, then statistics measured on data (purely
    # random ones make MobileNetV2's outputs input-independent, and verification refuses those).
    randomize_batchnorms(model, batchnorms(model, rng), rng)

def float64_twin(model):
    # The same layers and weights computing in float64: tf_keras' result without float32 rounding.
    def widen(value):
        if isinstance(value, dict):
            return {k: "float64" if k == "dtype" and v == "float32" else widen(v) for k, v in value.items()}
        return [widen(v) for v in value] if isinstance(value, list) else value
    with tf_keras.utils.custom_object_scope(custom):
        twin = tf_keras.Model.from_config(widen(model.get_config()))
    twin.set_weights([w.astype(np.float64) for w in model.get_weights()])
    for layer in twin._flatten_layers():
        if isinstance(layer, tf_keras.layers.Rescaling):
            # Its call casts a Python float through a float32 tensor (tf.cast); a float64 scalar stays exact.
            layer.scale, layer.offset = np.asarray(layer.scale, np.float64), np.asarray(layer.offset, np.float64)
    return twin

def save_exact(model, path):
    # What tf_keras computes on seeded inputs, in float32 (as the file runs) and in float64.
    x = np.random.default_rng(1).uniform(-1, 1, (%(samples)d,) + tuple(model.inputs[0].shape[1:])).astype("float32")
    y32 = model(x, training=False).numpy()
    y64 = float64_twin(model)(x.astype(np.float64), training=False).numpy()
    np.savez(path, x=x, y32=y32, y64=y64)

for arch, shape in cases:
    application = getattr(tf_keras.applications, arch)
    for variant in variants:
        tf_keras.backend.clear_session()
        rng = np.random.default_rng(0)
        try:
            if variant == "flat":
                model = application(weights=None, input_shape=tuple(shape), classes=%(classes)d,
                                    classifier_activation=None)
                randomize_bn(model, rng)
            else:
                base = application(include_top=False, weights=None, input_shape=tuple(shape))
                randomize_bn(base, rng)
                base.trainable = False
                x = tf_keras.Input(tuple(shape))
                y = tf_keras.layers.GlobalAveragePooling2D()(base(x, training=False))
                model = tf_keras.Model(x, tf_keras.layers.Dense(%(classes)d, name="head")(y),
                                       name="outer_" + arch.lower())
            model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss=%(loss)s)
            stem = os.path.join(out, f"{arch}_{variant}")
            save_exact(model, stem + %(exact)r)
            if "h5" in formats:
                model.save(stem + ".h5")
            if "saved_model" in formats:
                model.save(stem + "_savedmodel", save_format="tf")
            if "keras" in formats:
                model.save(stem + ".keras")
            if "json" in formats:
                with open(stem + ".json", "w") as handle:
                    handle.write(model.to_json())
                model.save_weights(stem + "_weights.h5")
            print(f"built {arch} {variant}", file=sys.stderr, flush=True)
        except Exception as error:
            print(f"BUILD-FAIL {arch} {variant}: {type(error).__name__}: {error}"[:300], file=sys.stderr, flush=True)
"""


KERAS2_FORMATS = {"h5": ".h5", "saved_model": "_savedmodel", "keras": ".keras", "json": ".json"}  # format -> input suffix


def build_keras2_files(out: str, archs: list[str], variants: list[str], formats: list[str], loss_object: bool) -> float:
    """Step A: the Keras 2 files, built by tf_keras in a child process; returns its wall time."""
    start = time.perf_counter()
    # The outputs are logits: a loss named by string must not expect probabilities (the name
    # "sparse_categorical_crossentropy" means from_logits=False, and then prepare's fine-tune check
    # rightly finds that the head cannot train).
    loss = ("tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)" if loss_object
            else "'mean_squared_error'")
    script = _BUILD_KERAS2 % {"classes": CLASSES, "loss": loss, "exact": EXACT_SUFFIX, "samples": EXACT_SAMPLES,
                              "bench": os.path.dirname(os.path.abspath(__file__))}
    cases = json.dumps([[arch, list(ARCHS[arch])] for arch in archs])
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", script, out, cases, json.dumps(variants), json.dumps(formats)], env=env, check=True)
    return time.perf_counter() - start


def float64_twin(model):
    """``model`` (plain Keras 3) rebuilt to compute in float64, with its weights widened exactly."""
    import keras

    def widen(value):
        if isinstance(value, dict):
            if value.get("class_name") == "DTypePolicy":
                return {**value, "config": {**value["config"], "name": "float64"}}
            return {k: "float64" if k == "dtype" and v == "float32" else widen(v) for k, v in value.items()}
        return [widen(v) for v in value] if isinstance(value, list) else value

    twin = model.__class__.from_config(widen(model.get_config()))
    twin.set_weights([np.asarray(w, np.float64) for w in model.get_weights()])
    for layer in leaves(twin):
        if isinstance(layer, keras.layers.Rescaling):
            # Its call casts a Python float through a float32 tensor (tf.cast); a float64 scalar stays exact.
            layer.scale, layer.offset = np.asarray(layer.scale, np.float64), np.asarray(layer.offset, np.float64)
        elif isinstance(layer, keras.layers.Normalization) and layer.input_mean is not None:
            # Its build converts the mean and variance lists to float32 tensors before the cast;
            # tf_keras multiplies them by a float64 array. Set them as tf_keras has them.
            shape = tuple(layer.mean.shape)
            layer.mean = keras.ops.convert_to_tensor(np.asarray(layer.input_mean, np.float64) * np.ones(shape), "float64")
            layer.variance = keras.ops.convert_to_tensor(np.asarray(layer.input_variance, np.float64) * np.ones(shape), "float64")
    return twin


def against_exact(written: str, case_stem: str) -> dict:
    """The written file, loaded by plain Keras 3, against tf_keras' float64 result (step A):
    ``rel32`` run as written (float32), ``rel64`` run in float64, and ``keras2_rel32``, how far
    tf_keras' own float32 run of the original is from the same exact result."""
    import keras

    stored = np.load(case_stem + EXACT_SUFFIX)
    x, exact = stored["x"], stored["y64"]
    scale = float(np.abs(exact).max())
    model = keras.models.load_model(written, compile=False)
    as_written = np.asarray(model(x, training=False), np.float64)
    widened = np.asarray(float64_twin(model)(x.astype(np.float64), training=False), np.float64)
    return {"rel32": float(np.abs(as_written - exact).max()) / scale, "rel64": float(np.abs(widened - exact).max()) / scale,
            "keras2_rel32": float(np.abs(stored["y32"].astype(np.float64) - exact).max()) / scale}


def judge_exact(result: dict, step: str, exact: dict) -> None:
    """The issue's bar, on exact arithmetic: run in float64, the written file is within EXACT_REL
    of tf_keras' float64 result. A translation (convert) changes no weight, so only that bar
    applies. A fold stores new weights, rounded once to float32; that rounding may move the output
    by as much as float32 arithmetic moves tf_keras' own run, never more (on these random-weight
    models that is up to ~3e-4: see the module's docstring)."""
    result["exact"] = exact
    allowed = EXACT_REL if step == "convert" else max(EXACT_REL, exact["keras2_rel32"])
    if result["ok"] and not exact["rel64"] <= allowed:
        result["ok"] = False
        result["reason"] = (f"in float64 the written file is {exact['rel64']:.2g} from tf_keras' result "
                            f"(allowed {allowed:.2g}: tf_keras' own float32 run is {exact['keras2_rel32']:.2g} from it)")


def _rel(result) -> float | None:
    verification = getattr(result, "verification", None)
    return None if verification is None else verification.max_rel


def run_convert(src: str, out: str, variant: str) -> dict:
    from surgeon.convert import convert_file

    result = convert_file(src, out, force=True)
    checked = result.checked
    report = getattr(checked, "report", None)
    problem = ""
    if checked is None or getattr(checked, "skipped", None):
        problem = f"tf_keras check did not run ({getattr(checked, 'skipped', 'no check')})"
    elif report is not None and report.problem:
        problem = report.problem
    elif not result.passed:
        problem = f"verification failed (surgeon rel {_rel(result)}, tf_keras rel {report and report.max_rel})"
    # rel: convert's own float32 cross-check against tf_keras (the file and tf_keras both rounding)
    return {"ok": not problem, "rel": None if report is None else report.max_rel, "reason": problem}


def run_fold(src: str, out: str, variant: str) -> dict:
    from surgeon.errors import SurgeonError
    from surgeon.fold import fold_bn_file

    try:
        # The flat model is saved trainable: default fold-bn folds only frozen BNs and refuses it.
        result = fold_bn_file(src, out, fold_all=variant == "flat", force=True)
    except SurgeonError as error:
        if not str(error).startswith(NO_BN):
            raise
        # VGG16: fold-bn exits 2 and writes nothing, as it should; counted apart from the passes.
        return {"ok": True, "rel": None, "reason": "", "folded": 0, "none": True}
    folded = sum(1 for change in result.passes[0].changes if str(change.get("action", "")).startswith("folded"))
    problem = "" if result.passed else (result.verification.problem or f"verification rel {_rel(result)}")
    return {"ok": result.passed, "rel": _rel(result), "reason": problem, "folded": folded}


def run_prepare(src: str, out: str, variant: str) -> dict:
    from surgeon.prepare import prepare_file

    result = prepare_file(src, out, force=True)
    problem = ""
    if not result.passed:
        if result.verification is not None and not result.verification.passed:
            problem = result.verification.problem or f"verification rel {_rel(result)}"
        else:
            problem = f"fine-tune check: {getattr(result.checked, 'summary', lambda: result.checked)()}"
    return {"ok": result.passed, "rel": _rel(result), "reason": problem}


STEPS = {"convert": (run_convert, ".keras"), "fold": (run_fold, "_folded.h5"), "prepare": (run_prepare, "_prepared.h5")}


def run_architecture(arch: str, args: argparse.Namespace):
    for variant in args.variants:
        for fmt in args.formats:
            yield run_case(arch, variant, fmt, args)


def run_case(arch: str, variant: str, fmt: str, args: argparse.Namespace) -> dict:
    stem = os.path.join(args.out, f"{arch}_{variant}")
    source = stem + KERAS2_FORMATS[fmt]
    row = {"arch": arch, "variant": variant, "format": fmt}
    start = time.perf_counter()
    for step in STEPS:
        if step not in args.steps:
            row[step] = {"ok": True, "rel": None, "reason": "", "skipped": True}
        elif not os.path.exists(source):
            row[step] = {"ok": False, "rel": None, "reason": "tf_keras could not build or save the model (see step A)"}
    for step, (run, suffix) in STEPS.items():
        if step in row:
            continue
        output = f"{stem}_{fmt}{suffix}"
        try:
            row[step] = run(source, output, variant)
            if os.path.exists(output):
                judge_exact(row[step], step, against_exact(output, stem))
        except Exception as error:  # noqa: BLE001 - a sweep reports every failure as a row
            row[step] = {"ok": False, "rel": None, "reason": one_line(error)}
        if not args.keep and os.path.exists(output):
            os.remove(output)
    row["ok"] = all(row[step]["ok"] for step in STEPS)
    row["reason"] = "; ".join(f"{step}: {row[step]['reason']}" for step in STEPS if not row[step]["ok"])
    row["seconds"] = time.perf_counter() - start
    print_row(row)
    return row


def _cell(result: dict) -> str:
    if result.get("skipped"):
        return "not run "
    if result.get("none"):
        return "no BN   "
    rel = result.get("rel")
    return ("ok  " if result["ok"] else "FAIL") + (f" {rel:.1e}" if rel is not None else " -      ")


def _exact_cell(result: dict) -> str:
    exact = result.get("exact")
    return "" if not exact else f"[f32 {exact['rel32']:.1e} f64 {exact['rel64']:.1e} k2 {exact['keras2_rel32']:.1e}]"


def print_row(row: dict) -> None:
    print(f"{row['arch']:<18} {row['variant']:<6} {row['format']:<11} convert {_cell(row['convert'])} {_exact_cell(row['convert'])} "
          f"fold {_cell(row['fold'])} {_exact_cell(row['fold'])} prepare {_cell(row['prepare'])} {_exact_cell(row['prepare'])} "
          f"{row['seconds']:6.1f}s", file=sys.stderr, flush=True)


def all_built(args: argparse.Namespace) -> bool:
    """Whether ``args.out`` holds step A's files for every selected case."""
    stems = [os.path.join(args.out, f"{arch}_{variant}") for arch in args.archs for variant in args.variants]
    return all(os.path.exists(stem + EXACT_SUFFIX) and all(os.path.exists(stem + KERAS2_FORMATS[f]) for f in args.formats)
               for stem in stems)


def print_exact_summary(rows: list[dict], steps: list[str]) -> None:
    """Per step, the largest errors against tf_keras' exact (float64) result over every case."""
    for step in steps:
        found = [row[step]["exact"] for row in rows if row[step].get("exact")]
        if not found:
            continue
        print(f"  {step}: largest rel. error against tf_keras' float64 result - written file in float64 "
              f"{max(e['rel64'] for e in found):.2g}; in float32 {max(e['rel32'] for e in found):.2g} "
              f"(tf_keras' own float32 run: {max(e['keras2_rel32'] for e in found):.2g}); the written file's float32 run "
              f"no further from it than tf_keras' own on {sum(1 for e in found if e['rel32'] <= e['keras2_rel32'])}/{len(found)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="directory for the Keras 2 files and the outputs (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the files (default: delete them)")
    parser.add_argument("--reuse", action="store_true",
                        help="skip step A when --out already holds every case's Keras 2 files (an earlier run with this --out)")
    parser.add_argument("--loss-object", action="store_true",
                        help="compile with a loss object (SparseCategoricalCrossentropy(from_logits=True)) "
                        "instead of the loss's name")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"which of {', '.join(STEPS)} to run on each file (default: all)")
    parser.add_argument("--keras2-formats", default=",".join(KERAS2_FORMATS),
                        help=f"how tf_keras saves each model: {', '.join(KERAS2_FORMATS)} (default: all)")
    args = parse_args(parser, argv)
    # The shared --formats (Keras 3 .h5/.keras) does not apply: these are the Keras 2 ways of saving.
    args.formats = [f.strip() for f in args.keras2_formats.split(",") if f.strip()]
    unknown = [f for f in args.formats if f not in KERAS2_FORMATS]
    if unknown:
        parser.error(f"--keras2-formats: unknown {unknown}; known: {list(KERAS2_FORMATS)}")
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    if not args.steps or any(step not in STEPS for step in args.steps):
        parser.error(f"--steps: choose from {list(STEPS)}")
    temporary = args.out is None
    if temporary:
        args.out = tempfile.mkdtemp(prefix="sweep_keras2_")
        args.argv += ["--out", args.out]  # the per-architecture children use the same files
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    try:
        if not args.rows_json and not (args.reuse and all_built(args)):
            build_seconds = build_keras2_files(args.out, args.archs, args.variants, args.formats, args.loss_object)
            print(f"step A (tf_keras build + save): {build_seconds:.0f}s", file=sys.stderr, flush=True)
        rows = collect_rows(args, lambda arch: run_architecture(arch, args))
    finally:
        if temporary and not args.keep and not args.rows_json:
            shutil.rmtree(args.out, ignore_errors=True)
    for row in rows:
        for step in STEPS:  # a crashed child's row has no per-step results
            row.setdefault(step, {"ok": False, "rel": None, "reason": row["reason"]})
    print()
    print(f"{'arch':<18} {'variant':<6} {'format':<11} {'convert (tf_keras rel)':<24} {'fold-bn (rel)':<18} {'prepare (rel)':<18}")
    for row in rows:
        print(f"{row['arch']:<18} {row['variant']:<6} {row['format']:<11} {_cell(row['convert']):<24} {_cell(row['fold']):<18} "
              f"{_cell(row['prepare']):<18}")
    print()
    if "convert" in args.steps:
        print_counts(rows, f"convert (float64: within {EXACT_REL:g} of tf_keras' float64 result)", ok=lambda r: r["convert"]["ok"])
    print_exact_summary(rows, [step for step in STEPS if step in args.steps])
    if "fold" in args.steps:
        print_counts(rows, "fold-bn on the Keras 2 file (a model without BN: refused, exit 2, counted as passing)",
                     ok=lambda r: r["fold"]["ok"])
        print(f"  of which without BN: {sum(1 for row in rows if row['fold'].get('none'))}")
    if "prepare" in args.steps:
        print_counts(rows, "prepare on the Keras 2 file (its fine-tune check included)", ok=lambda r: r["prepare"]["ok"])
    failed = [row for row in rows if not row["ok"]]
    if failed:
        print("failures:")
        for row in failed:
            for step in STEPS:
                if not row[step]["ok"]:
                    print(f"  {row['arch']} {row['variant']} {row['format']} {step}: {row[step]['reason']}")
    print(f"wall time: {time.perf_counter() - start:.0f}s")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
