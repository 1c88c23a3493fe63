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

Step B (Keras 3, one child process per architecture, see ``applications.collect_rows``): per file,

1. ``surgeon.convert.convert_file(src, out.keras)``: passes when the result passed and its
   tf_keras cross-check (the original run by tf_keras 2 against the converted file, same inputs)
   has a max relative error under 1e-5;
2. ``surgeon.fold.fold_bn_file(src, folded.h5)`` on the ORIGINAL Keras 2 file (flat: with
   ``fold_all=True``, ``fold-bn --all``, since nothing in it is frozen and fold-bn refuses to fold
   only trainable BNs; nested: default options, folding the frozen base);
3. ``surgeon.prepare.prepare_file(src, prepared.h5)`` on the ORIGINAL Keras 2 file; it passes only
   when its fine-tune check passes too (the written file loaded with plain Keras 3 in a fresh
   process and fit: frozen weights bit-for-bit unchanged, trainable ones moved, the frozen part
   mode-independent, the run deterministic).

A model without BatchNormalization (VGG16) has nothing to fold: fold-bn refuses it (exit 2, nothing
written), and the sweep counts that refusal as the expected answer ("no BN" in the table).

Prints one row per file and the pass counts. Usage:

    python bench/sweep_keras2.py [--only ResNet50,ConvNeXtTiny] [--variants flat,nested]
                                 [--keras2-formats h5,saved_model,keras,json]
                                 [--steps convert,fold,prepare] [--out DIR] [--keep] [--in-process]

Measured 2026-11-30 (tf_keras 2.21, Keras 3.15, a loaded 2-core machine): ``--keras2-formats
saved_model`` on all 15 architectures, flat and nested, every step: fold-bn 26/30 folded and
verified plus 4/30 refused as they should be (VGG16, ConvNeXtTiny: no BN), prepare 30/30 (fine-tune
check included); convert verified 30/30 and its tf_keras cross-check under 1e-5 on 16/30. The other
14 (MobileNet V1/V2/V3, EfficientNet B0/V2B0, InceptionV3, InceptionResNetV2) are at 1.0e-5 to
9.1e-5, each within 8x what tf_keras' own output moves on a one-float32-step input change (1e-5 to
7e-5 on these random-weight models): float32 rounding of different kernels, not conversion (on
MobileNetV3Small, in float64 the converted model is 5.3e-5 from its float32 self and 1.1e-4 from
tf_keras' float32 run). ``--keras2-formats keras,json --steps convert`` on all 15 (ResNet50,
ResNet50V2 and VGG16 with every step): convert verified 30/30 per format, under 1e-5 on 16/30 per
format, the other 14 within the same 8x (42 over-bar cases in all three formats, the largest at
7.6x); a .keras file and the JSON pair of the same model gave the same error on every case.

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

from applications import ARCHS, collect_rows, one_line, parse_args, print_counts

CLASSES = 10
CONVERT_REL = 1e-5  # the bar for the tf_keras cross-check
ROUNDING_FACTOR = 8  # as surgeon.verify's: an error within 8 one-ulp moves is float32 rounding
NO_BN = "the model has no BatchNormalization layer"  # fold-bn's refusal (surgeon.fold.check_something_to_fold)

# Runs under TF_USE_LEGACY_KERAS=1: tf_keras (Keras 2) cannot share a process with Keras 3, so the
# Keras 2 files are built in a child. argv: out dir, JSON [[arch, [h, w, c]], ...], JSON variants.
_BUILD_KERAS2 = """
import json, os, sys
import numpy as np
import tf_keras

sys.path.insert(0, %(bench)r)
from applications import randomize_batchnorms  # no Keras 3 import: safe beside tf_keras

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


# Runs under TF_USE_LEGACY_KERAS=1: how much the ORIGINAL model's outputs move, relative to their
# scale, when every input value moves by one float32 step (3 random directions, seeded inputs in
# [-1, 1]): a cross-check error of that size is float32 rounding, not a conversion error.
# argv: the Keras 2 file (or JSON), its weights file for a JSON ("" otherwise).
_KERAS2_SENSITIVITY = """
import sys, numpy as np, tf_keras
from tf_keras.src.applications import convnext
custom = {"LayerScale": convnext.LayerScale, "StochasticDepth": convnext.StochasticDepth}
if sys.argv[2]:
    with open(sys.argv[1]) as handle:
        model = tf_keras.models.model_from_json(handle.read(), custom_objects=custom)
    model.load_weights(sys.argv[2])
else:
    model = tf_keras.models.load_model(sys.argv[1], compile=False, custom_objects=custom)
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (8,) + tuple(model.inputs[0].shape[1:])).astype("float32")
y = model(x, training=False).numpy().astype(np.float64)
moved = 0.0
for _ in range(3):
    towards = np.where(rng.random(x.shape) < 0.5, -np.inf, np.inf).astype(np.float32)
    moved = max(moved, float(np.abs(model(np.nextafter(x, towards), training=False).numpy() - y).max()))
print("SENSITIVITY", moved / float(np.abs(y).max()))
"""


def keras2_sensitivity(src: str) -> float | None:
    """``_KERAS2_SENSITIVITY`` on ``src`` in a tf_keras child; None if it could not run."""
    weights = src[: -len(".json")] + "_weights.h5" if src.endswith(".json") else ""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.run([sys.executable, "-c", _KERAS2_SENSITIVITY, src, weights], env=env,
                           capture_output=True, text=True)
    found = [line.split()[1] for line in child.stdout.splitlines() if line.startswith("SENSITIVITY ")]
    return float(found[0]) if found else None


KERAS2_FORMATS = {"h5": ".h5", "saved_model": "_savedmodel", "keras": ".keras", "json": ".json"}  # format -> input suffix


def build_keras2_files(out: str, archs: list[str], variants: list[str], formats: list[str], loss_object: bool) -> float:
    """Step A: the Keras 2 files, built by tf_keras in a child process; returns its wall time."""
    start = time.perf_counter()
    # The outputs are logits: a loss named by string must not expect probabilities (the name
    # "sparse_categorical_crossentropy" means from_logits=False, and then prepare's fine-tune check
    # rightly finds that the head cannot train).
    loss = ("tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)" if loss_object
            else "'mean_squared_error'")
    script = _BUILD_KERAS2 % {"classes": CLASSES, "loss": loss, "bench": os.path.dirname(os.path.abspath(__file__))}
    cases = json.dumps([[arch, list(ARCHS[arch])] for arch in archs])
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", script, out, cases, json.dumps(variants), json.dumps(formats)], env=env, check=True)
    return time.perf_counter() - start


def _rel(result) -> float | None:
    verification = getattr(result, "verification", None)
    return None if verification is None else verification.max_rel


def run_convert(src: str, out: str, variant: str) -> dict:
    from surgeon.convert import convert_file

    result = convert_file(src, out, force=True)
    checked = result.checked
    report = getattr(checked, "report", None)
    k2_rel = None if report is None else report.max_rel
    problem = ""
    if checked is None or getattr(checked, "skipped", None):
        problem = f"tf_keras check did not run ({getattr(checked, 'skipped', 'no check')})"
    elif report is not None and report.problem:
        problem = report.problem
    elif not result.passed:
        problem = f"verification failed (surgeon rel {_rel(result)}, tf_keras rel {k2_rel})"
    elif k2_rel is None or k2_rel >= CONVERT_REL:
        # Over the bar but passed: measure whether tf_keras itself moves that much on a one-ulp
        # input change (MobileNet with measured BN statistics does: 1.5e-5).
        sensitivity = keras2_sensitivity(src)
        problem = (f"tf_keras rel {k2_rel:.2g} >= {CONVERT_REL:g}; a one-float32-step input change moves "
                   f"tf_keras' own output by rel {sensitivity if sensitivity is None else format(sensitivity, '.2g')}")
        within = sensitivity is not None and k2_rel is not None and k2_rel <= ROUNDING_FACTOR * sensitivity
        return {"ok": False, "rel": k2_rel, "reason": problem, "rounding": within}
    return {"ok": not problem, "rel": k2_rel, "reason": problem}


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


def print_row(row: dict) -> None:
    print(f"{row['arch']:<18} {row['variant']:<6} {row['format']:<11} convert {_cell(row['convert'])}  fold {_cell(row['fold'])}  "
          f"prepare {_cell(row['prepare'])}  {row['seconds']:6.1f}s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="directory for the Keras 2 files and the outputs (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the files (default: delete them)")
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
        if not args.rows_json:
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
        print_counts(rows, f"convert (tf_keras check < {CONVERT_REL:g})", ok=lambda r: r["convert"]["ok"])
        rounding = sum(1 for row in rows if row["convert"].get("rounding"))
        print(f"  of the others, within {ROUNDING_FACTOR}x tf_keras' own one-float32-step sensitivity: {rounding}")
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
