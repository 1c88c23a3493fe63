"""What the keras.applications sweeps share: the architectures, how a case's model is built, the
command-line selection of cases, and running each architecture in its own process.

The sweeps run as ``python bench/sweep_x.py``, so this directory is on ``sys.path`` and they
import this module as ``applications``. A sweep's row is a dict with at least ``arch``,
``variant``, ``format``, ``ok``, ``reason`` (one line, empty when ok) and ``seconds``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The surgeon beside this script, whatever copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# architecture -> the smallest input it accepts with weights=None: the sweeps test structure, not accuracy
ARCHS = {
    "ResNet50": (32, 32, 3),
    "ResNet50V2": (32, 32, 3),
    "MobileNet": (32, 32, 3),
    "MobileNetV2": (32, 32, 3),
    "MobileNetV3Small": (32, 32, 3),
    "MobileNetV3Large": (32, 32, 3),
    "DenseNet121": (32, 32, 3),
    "Xception": (71, 71, 3),
    "InceptionV3": (75, 75, 3),
    "InceptionResNetV2": (75, 75, 3),
    "EfficientNetB0": (32, 32, 3),
    "EfficientNetV2B0": (32, 32, 3),
    "NASNetMobile": (32, 32, 3),
    "ConvNeXtTiny": (32, 32, 3),
    "VGG16": (32, 32, 3),
}
VARIANTS = ("flat", "nested")
FORMATS = ("h5", "keras")
CLASSES = 5
CALIBRATION_SAMPLES = 64  # inputs the BN moving statistics are measured on (randomize_batchnorms)
LARGE_INPUT_VALUES, LARGE_INPUT_SAMPLES = 128 * 128 * 3, 8  # larger inputs: 8 samples (randomize_batchnorms)
ROW_MARK = "SWEEP-ROW "  # a child's result lines on stdout, told apart from anything Keras prints there


def leaves(model):
    """Every non-model layer, recursing into nested models."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaves(layer)
        else:
            yield layer


def randomize_bn(model, seed: int = 0) -> None:
    """Non-trivial BN statistics: with fresh ones (mean 0, variance 1, gamma 1, beta 0) a BN is
    nearly the identity, and a fold or a weight-order mistake would not show in the outputs.

    Random gamma and beta, then moving statistics measured on a batch of seeded inputs (one
    training-mode call with momentum 0), as a trained model's are. Purely random statistics make
    deep models without shortcuts (MobileNetV2) compute outputs that do not depend on the input
    at all (they vary by 2e-7 of their scale across inputs), and a comparison of such outputs
    proves nothing: surgeon's verification refuses it.
    """
    import keras
    import numpy as np

    layers = [layer for layer in leaves(model) if isinstance(layer, keras.layers.BatchNormalization)]
    randomize_batchnorms(model, layers, np.random.default_rng(seed))


def randomize_batchnorms(model, layers, rng) -> None:
    """``randomize_bn``'s work on the given BN ``layers`` of ``model``; duck-typed, so the sweep of
    Keras 2 files runs it on tf_keras models too (a Keras 2 BN reads ``momentum`` at call time)."""
    for layer in layers:
        randomize_batchnorm(layer, rng)
    momentum = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    # 64 samples, not 8: at these small inputs the last blocks are 1x1 spatially, so 8 samples give
    # each channel a variance from 8 values, and on other inputs those BNs multiply rounding by
    # 1e4 (EfficientNetB0 in tf_keras: a one-float32-step input change moved the output by 1e-3 of
    # its scale with 8 calibration samples, 1e-5 with 64), which no verification can tell from a bug.
    shape = tuple(model.inputs[0].shape[1:])
    # At 224x224 (the benchmarks) every channel already sees thousands of values in 8 samples, and
    # 64 samples of EfficientNetB7 in training mode need more than the 23 GB of a bench machine.
    samples = CALIBRATION_SAMPLES if math.prod(shape) <= LARGE_INPUT_VALUES else LARGE_INPUT_SAMPLES
    x = rng.uniform(-1, 1, (samples,) + shape).astype("float32")
    model(x, training=True)
    for layer, value in zip(layers, momentum):
        layer.momentum = value


def randomize_batchnorm(layer, rng) -> None:
    """One BN layer's statistics; duck-typed, so tf_keras (Keras 2) layers take it too."""
    n = layer.moving_mean.shape[0]
    if layer.scale:
        layer.gamma.assign(rng.uniform(0.5, 1.5, n))
    if layer.center:
        layer.beta.assign(rng.normal(0, 0.5, n))
    layer.moving_mean.assign(rng.normal(0, 0.5, n))
    layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))


def build(arch: str, variant: str, *, frozen: bool = False, dropout: float = 0.0):
    """One case's model, weights=None, with random BN statistics (seed 0), in a fresh Keras session.

    flat: the application with a CLASSES-way top that outputs logits (a saturated softmax would hide
    any error from a comparison). nested: the application without its top, called as a layer of an
    outer model, then GlobalAveragePooling2D, Dropout(``dropout``) if asked, and a Dense logits head.
    ``frozen`` freezes the application as a fine-tuning job does: flat, the whole model; nested, the
    inner application only (the head stays trainable).
    """
    import keras

    keras.backend.clear_session()  # auto-generated layer names then do not depend on earlier cases
    application = getattr(keras.applications, arch)
    shape = ARCHS[arch]
    if variant == "flat":
        model = application(weights=None, input_shape=shape, classes=CLASSES, classifier_activation=None)
        randomize_bn(model)
        model.trainable = not frozen
        return model
    base = application(include_top=False, weights=None, input_shape=shape)
    randomize_bn(base)
    base.trainable = not frozen
    x = keras.Input(shape)
    y = keras.layers.GlobalAveragePooling2D()(base(x))
    if dropout:
        y = keras.layers.Dropout(dropout)(y)
    return keras.Model(x, keras.layers.Dense(CLASSES, name="head")(y), name=f"outer_{arch.lower()}")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Add the options every sweep has, parse, and resolve them: ``args.archs``, ``args.variants``
    and ``args.formats`` become lists; an unknown name exits 2 with the known ones."""
    parser.add_argument("--only", help="comma-separated architectures, case-insensitive (default: all)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every architecture in this process (default: one process per architecture, since "
        "TensorFlow keeps memory across models: one process running the whole prepare sweep was "
        "OOM-killed at 22 GB)",
    )
    parser.add_argument("--rows-json", action="store_true", help=argparse.SUPPRESS)  # how a child reports
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    by_lower = {arch.lower(): arch for arch in ARCHS}
    args.archs = _choose(parser, "--only", args.only, list(ARCHS), by_lower)
    args.variants = _choose(parser, "--variants", args.variants, list(VARIANTS), {v: v for v in VARIANTS})
    args.formats = _choose(parser, "--formats", args.formats, list(FORMATS), {f: f for f in FORMATS})
    return args


def _choose(parser, option: str, value: str | None, default: list[str], known: dict[str, str]) -> list[str]:
    if not value:
        return default
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name.lower() not in known]
    if unknown:
        parser.error(f"{option}: unknown {unknown}; known: {sorted(set(known.values()))}")
    chosen = {known[name.lower()] for name in names}
    return [name for name in default if name in chosen]


def collect_rows(args: argparse.Namespace, run_architecture) -> list[dict]:
    """Every selected case's row. ``run_architecture(arch)`` yields one architecture's rows.

    More than one architecture without --in-process: each runs in a child process of this same
    script, which prints its rows as JSON lines (stderr passes through, for progress). A child that
    dies (e.g. killed for memory) leaves a failed row for each case it did not report.
    """
    if args.rows_json:  # this is a child
        quiet()
        for arch in args.archs:
            for row in run_architecture(arch):
                print(ROW_MARK + json.dumps(row, default=_plain), flush=True)
        sys.exit(0)
    if args.in_process or len(args.archs) == 1:
        quiet()
        return [row for arch in args.archs for row in run_architecture(arch)]
    rows = []
    for arch in args.archs:
        # A repeated --only: argparse keeps the last one.
        command = [sys.executable, os.path.abspath(sys.argv[0]), *args.argv, "--only", arch, "--rows-json"]
        child = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        found = [json.loads(line[len(ROW_MARK):]) for line in child.stdout.splitlines() if line.startswith(ROW_MARK)]
        reported = {(row["variant"], row["format"]) for row in found}
        rows += found
        for variant in args.variants:
            for fmt in args.formats:
                if (variant, fmt) not in reported:
                    reason = f"CRASH: the process for {arch} exited with code {child.returncode} before this case"
                    rows.append({"arch": arch, "variant": variant, "format": fmt, "ok": False, "reason": reason, "seconds": 0.0})
    return rows


def quiet() -> None:
    """Keep the sweep's own lines readable: no TensorFlow start-up chatter, no "HDF5 is legacy" or
    retracing warning per case (failures are reported in the rows, not through logging)."""
    import logging
    import warnings

    from surgeon.io.keras_model import quiet_tensorflow

    quiet_tensorflow()
    warnings.filterwarnings("ignore")
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}"


def print_counts(rows: list[dict], what: str, ok=lambda row: row["ok"], breakdown: bool = True) -> int:
    """``passed/total what`` and (``breakdown``) the same per variant and per format; returns the number passed."""
    passed = sum(1 for row in rows if ok(row))
    print(f"{passed}/{len(rows)} {what}")
    for key in ("variant", "format") if breakdown else ():
        for value in sorted({row[key] for row in rows}):
            subset = [row for row in rows if row[key] == value]
            print(f"  {key}={value}: {sum(1 for row in subset if ok(row))}/{len(subset)}")
    return passed


def print_failures(rows: list[dict]) -> None:
    failed = [row for row in rows if not row["ok"]]
    if failed:
        print("failing cases:")
        for row in failed:
            print(f"  {row['arch']} {row['variant']} .{row['format']}: {row['reason']}")
