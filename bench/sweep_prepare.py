"""Sweep: ``surgeon prepare`` on keras.applications architectures (weights=None), flat and nested,
saved as .keras and .h5; then a plain-Keras fine-tuning job on the prepared file, and ``surgeon
diff`` to show the frozen part did not move.

For each case:
  1. build the model (weights=None, small input), give every BatchNormalization random statistics
     (gamma ~ U(0.5, 1.5), beta ~ N(0, 0.2), mean ~ N(0, 0.2), var ~ U(0.5, 1.5)), compile it
     (Adam, categorical_crossentropy) and save it;
  2. ``prepare_file`` with a fine-tuning selection: flat -> --until the layer at 75% of the
     topological order; nested -> --until the nested base (a frozen feature extractor);
     prepare verifies the written file and runs its fine-tune check (4 checks);
  3. a separate "user job": plain ``keras.models.load_model`` of the prepared file, ``fit`` 2 steps,
     save as a new file;
  4. ``diff_files(prepared, finetuned)``: every layer frozen in the prepared file must be bit-for-bit
     identical, and some trainable layer must differ.

Prints one row per case and the pass counts; timings with time.perf_counter.

Usage:
    python bench/sweep_prepare.py [--only NAME[,NAME...]] [--variants flat,nested] [--formats keras,h5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ARCHS = {
    "VGG16": (32, 32, 3),
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
}
CLASSES = 5


def build(arch: str, variant: str):
    import keras

    fn = getattr(keras.applications, arch)
    shape = ARCHS[arch]
    if variant == "flat":
        model = fn(weights=None, input_shape=shape, classes=CLASSES)
    else:
        base = fn(include_top=False, weights=None, input_shape=shape)
        x = keras.Input(shape)
        y = keras.layers.GlobalAveragePooling2D()(base(x))
        y = keras.layers.Dropout(0.2)(y)
        y = keras.layers.Dense(CLASSES, activation="softmax", name="head")(y)
        model = keras.Model(x, y, name=f"outer_{arch.lower()}")
    randomize_bn(model)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def randomize_bn(model, seed: int = 0) -> None:
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in _leaves(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            values = []
            for variable in layer.weights:
                name, shape = variable.name, tuple(variable.shape)
                if name == "gamma" or name == "moving_variance":
                    values.append(rng.uniform(0.5, 1.5, shape))
                else:
                    values.append(rng.normal(0.0, 0.2, shape))
            layer.set_weights([v.astype("float32") for v in values])


def _leaves(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _leaves(layer)
        else:
            yield layer


def selection_for(path: str, variant: str):
    from surgeon.io import read_model
    from surgeon.passes.freeze import Selection, topological_paths

    if variant == "nested":
        spec = read_model(path, values=False)
        base = next(name for name, layer in ((l["name"], l) for l in spec.config["config"]["layers"]) if "layers" in layer.get("config", {}))
        return Selection(until=base)
    order = topological_paths(read_model(path, values=False).config)
    return Selection(until=order[int(len(order) * 0.75)])


def user_job(prepared: str, finetuned: str) -> None:
    """What a user's fine-tuning script does: plain load, fit, save."""
    import keras
    import numpy as np

    model = keras.models.load_model(prepared)
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (8, *shape)).astype("float32")
    y = np.eye(CLASSES, dtype="float32")[rng.integers(0, CLASSES, 8)]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.save(finetuned)


def run_case(arch: str, variant: str, fmt: str, folder: str) -> dict:
    import keras

    from surgeon.diff import diff_files
    from surgeon.prepare import prepare_file

    row = {"arch": arch, "variant": variant, "format": fmt}
    source = os.path.join(folder, f"{arch}_{variant}.{fmt}")
    prepared = os.path.join(folder, f"{arch}_{variant}_prepared.{fmt}")
    finetuned = os.path.join(folder, f"{arch}_{variant}_finetuned.{fmt}")
    keras.backend.clear_session()
    build(arch, variant).save(source)
    selection = selection_for(source, variant)
    row["selection"] = selection.describe()
    start = time.perf_counter()
    result = prepare_file(source, prepared, selection=selection)
    row["prepare_s"] = time.perf_counter() - start
    passes = {r.name: r for r in result.passes}
    row["folded"] = sum(1 for c in passes["fold_bn"].changes if c["action"] != "left")
    row["stripped"] = len(passes["strip_dropout"].changes)
    row["max_rel"] = result.verification.max_rel if result.verification else None
    if not result.passed:
        checked = result.checked
        reason = (result.verification.problem if result.verification and result.verification.problem else None) or (
            checked.summary() if checked is not None else f"not equivalent (max rel {row['max_rel']:.3g})")
        row.update(ok=False, stage="prepare", reason=reason)
        return row
    keras.backend.clear_session()
    user_job(prepared, finetuned)
    report = diff_files(prepared, finetuned)
    trained = [d.layer for d in report.layers if d.status == "different"]
    row.update(frozen_unchanged=report.frozen_unchanged, trained_layers=len(trained))
    ok = report.frozen_unchanged is not False and bool(trained)
    row.update(ok=ok, stage="done" if ok else "diff",
               reason="" if ok else f"frozen_unchanged={report.frozen_unchanged}, trained layers={len(trained)}")
    return row


def run_isolated(archs: list[str], args) -> int:
    """One process per architecture: TensorFlow keeps memory across many models (one process
    running the whole sweep was OOM-killed at 22 GB on NASNetMobile, the 53rd case)."""
    import subprocess

    results = []
    for arch in archs:
        command = [sys.executable, __file__, "--only", arch, "--variants", args.variants, "--formats", args.formats, "--in-process"]
        output = subprocess.run(command, capture_output=True, text=True).stdout
        for line in output.splitlines():
            if line.startswith(arch):
                print(line, flush=True)
                results.append(line.split()[:4])
    passed = sum(r[3] == "PASS" for r in results)
    print(f"\npassed {passed}/{len(results)} (of {len(archs) * len(args.variants.split(',')) * len(args.formats.split(','))} cases)")
    for index, key in ((1, "variant"), (2, "format")):
        for value in sorted({r[index] for r in results}):
            subset = [r for r in results if r[index] == value]
            print(f"  {key}={value}: {sum(r[3] == 'PASS' for r in subset)}/{len(subset)}")
    return 0 if passed == len(results) else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="")
    parser.add_argument("--variants", default="flat,nested")
    parser.add_argument("--formats", default="keras,h5")
    parser.add_argument("--in-process", action="store_true", help="Run every architecture in this process.")
    args = parser.parse_args()
    archs = [a for a in ARCHS if not args.only or a in args.only.split(",")]
    if len(archs) > 1 and not args.in_process:
        return run_isolated(archs, args)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for arch in archs:
            for variant in args.variants.split(","):
                for fmt in args.formats.split(","):
                    start = time.perf_counter()
                    try:
                        row = run_case(arch, variant, fmt, folder)
                    except Exception as error:  # a crash is a failed case, reported with its first line
                        row = {"arch": arch, "variant": variant, "format": fmt, "ok": False, "stage": "crash",
                               "reason": f"{type(error).__name__}: {' '.join(str(error).split())[:160]}"}
                        if os.environ.get("SWEEP_DEBUG"):
                            traceback.print_exc()
                    row["total_s"] = time.perf_counter() - start
                    rows.append(row)
                    print(f"{arch:18} {variant:6} {fmt:5} {'PASS' if row['ok'] else 'FAIL'} "
                          f"folded={row.get('folded', '-')} stripped={row.get('stripped', '-')} "
                          f"max_rel={row.get('max_rel') if row.get('max_rel') is None else format(row['max_rel'], '.2g')} "
                          f"trained={row.get('trained_layers', '-')} prepare={row.get('prepare_s', 0):.1f}s total={row['total_s']:.1f}s "
                          f"{row.get('selection', '')} {row.get('reason', '')}", flush=True)
                    for name in os.listdir(folder):
                        os.remove(os.path.join(folder, name))
    passed = sum(r["ok"] for r in rows)
    print(f"\npassed {passed}/{len(rows)}")
    for key in ("variant", "format"):
        for value in sorted({r[key] for r in rows}):
            subset = [r for r in rows if r[key] == value]
            print(f"  {key}={value}: {sum(r['ok'] for r in subset)}/{len(subset)}")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
