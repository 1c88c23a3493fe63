"""Sweep: ``fold_bn_file`` on every keras.applications architecture, flat and nested, .h5 and .keras.

Each model is built with ``weights=None`` at a small input size, given random non-trivial BN
statistics (gamma ~ U(0.5, 1.5), beta/mean ~ N(0, 0.5), var ~ U(0.5, 2)), frozen the way a
fine-tuning job freezes a base (flat: the whole model; nested: the application inside, with a
trainable Dense head), and saved. Then, per file:

1. ``surgeon.fold.fold_bn_file`` with default options (frozen BNs, verification on: plain
   ``keras.models.load_model`` of the output against the original, inference mode, and training
   mode when nothing mode-dependent is left);
2. the output is loaded with plain Keras and must contain no BatchNormalization (nested included);
3. ``inspect`` on the output must report no ``frozen-batchnorm`` hazard.

Prints one row per file and the pass counts. Usage:

    python bench/sweep_fold_bn.py [--only ResNet50,MobileNetV2] [--formats h5,keras] [--variants flat,nested]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# architecture -> a small input it accepts with weights=None
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


def randomize_bn(model, seed: int = 0) -> None:
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in _leaves(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.5, n))
            layer.moving_mean.assign(rng.normal(0, 0.5, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))


def _leaves(model):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaves(layer)
        else:
            yield layer


def build(arch: str, variant: str):
    import keras

    fn = getattr(keras.applications, arch)
    shape = ARCHS[arch]
    if variant == "flat":
        # Logits, not softmax: a saturated softmax would hide any error from the comparison.
        model = fn(weights=None, input_shape=shape, classes=10, classifier_activation=None)
        randomize_bn(model)
        model.trainable = False
        return model
    base = fn(include_top=False, weights=None, input_shape=shape)
    randomize_bn(base)
    base.trainable = False
    x = keras.Input(shape)
    y = keras.layers.GlobalAveragePooling2D()(base(x))
    return keras.Model(x, keras.layers.Dense(5, name="head")(y), name=f"outer_{arch.lower()}")


def check(path: str, out: str) -> tuple[str, str]:
    """Fold one file; return (status, details)."""
    import keras

    from surgeon.fold import fold_bn_file
    from surgeon.inspection import inspect_spec
    from surgeon.io import read_model

    result = fold_bn_file(path, out)
    counts = collections.Counter(row["action"] for row in result.passes[0].changes)
    summary = " ".join(f"{action}={n}" for action, n in sorted(counts.items()))
    verification = result.verification
    if not result.passed:
        problem = verification.problem or f"max rel error {verification.max_rel:.2e}"
        return "FAIL verify", f"{summary}; {problem}"
    modes = "+".join(sorted({c.mode for c in verification.checks}))
    details = f"{summary}; rel {verification.max_rel:.1e} ({modes})"
    left = [row for row in result.passes[0].changes if row["action"] == "left"]
    if left:
        return "FAIL left", f"{details}; {left[0]['layer']}: {left[0]['reason']}"
    loaded = keras.models.load_model(out, compile=False)
    remaining = [layer.name for layer in _leaves(loaded) if isinstance(layer, keras.layers.BatchNormalization)]
    if remaining:
        return "FAIL bn", f"{details}; BN left: {remaining[:3]}"
    hazards = {h.kind for h in inspect_spec(read_model(out, values=False)).hazards}
    if "frozen-batchnorm" in hazards:
        return "FAIL inspect", details
    return "ok", details


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated architectures")
    parser.add_argument("--formats", default="h5,keras")
    parser.add_argument("--variants", default="flat,nested")
    args = parser.parse_args(argv)
    archs = [a for a in ARCHS if not args.only or a.lower() in {n.strip().lower() for n in args.only.split(",")}]
    import warnings

    warnings.filterwarnings("ignore")
    import keras

    directory = tempfile.mkdtemp(prefix="sweep_fold_bn_")
    rows = []
    try:
        for arch in archs:
            for variant in args.variants.split(","):
                keras.backend.clear_session()
                try:
                    model = build(arch, variant)
                except Exception as error:  # noqa: BLE001
                    rows.append((arch, variant, "-", "FAIL build", _line(error), 0.0))
                    continue
                for fmt in args.formats.split(","):
                    path = os.path.join(directory, f"{arch}_{variant}.{fmt}")
                    out = os.path.join(directory, f"{arch}_{variant}.folded.{fmt}")
                    start = time.perf_counter()
                    try:
                        model.save(path)
                        status, details = check(path, out)
                    except Exception as error:  # noqa: BLE001
                        status, details = "FAIL error", _line(error)
                    rows.append((arch, variant, fmt, status, details, time.perf_counter() - start))
                    print(f"| {' | '.join(rows[-1][:5])} | {rows[-1][5]:.1f}s |", file=sys.stderr, flush=True)
                    for file in (path, out):
                        if os.path.exists(file):
                            os.remove(file)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"\nkeras {keras.__version__}\n")
    print("| architecture | variant | format | result | details | seconds |")
    print("|---|---|---|---|---|---|")
    for arch, variant, fmt, status, details, seconds in rows:
        print(f"| {arch} | {variant} | {fmt} | {status} | {details} | {seconds:.1f} |")
    passed = sum(1 for row in rows if row[3] == "ok")
    print(f"\n{passed}/{len(rows)} fold, verify, leave no BatchNormalization and no BN hazard")
    for fmt in args.formats.split(","):
        subset = [row for row in rows if row[2] == fmt]
        print(f"  .{fmt}: {sum(1 for row in subset if row[3] == 'ok')}/{len(subset)}")
    return 0 if passed == len(rows) else 1


def _line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}"


if __name__ == "__main__":
    sys.exit(main())
