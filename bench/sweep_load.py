"""Sweep: build keras.applications models (weights=None), save as .keras and .h5,
and try to load each file with PLAIN ``keras.models.load_model``.

Prints a table  architecture x variant x format -> ok | ExceptionClass: first line.

With ``--fixups``: for every file, also read its config (h5py / zip), apply
``surgeon.io.keras3_fixups.fix_keras3_config`` + ``fix_keras3_weights``, rebuild
with ``keras.Model.from_config``, set the (mapped) weights of the original in-memory
model, save the fixed model in the same format, reload THAT with plain
``load_model`` and compare its outputs with the original in-memory model.

Usage:
    python bench/sweep_load.py [--only NAME[,NAME...]] [--out DIR] [--keep] [--fixups]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# architecture -> smallest (fast) input shape it accepts with weights=None
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
FORMATS = ("keras", "h5")


def first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    msg = msg[0] if msg else ""
    if len(msg) > 110:
        msg = msg[:107] + "..."
    return f"{type(exc).__name__}: {msg}"


def build(arch: str, variant: str):
    import keras

    fn = getattr(keras.applications, arch)
    shape = ARCHS[arch]
    if variant == "flat":
        return fn(weights=None, input_shape=shape, classes=10)
    base = fn(include_top=False, weights=None, input_shape=shape)
    x = keras.Input(shape)
    y = base(x)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(5, name="head")(y)
    return keras.Model(x, y, name=f"outer_{arch.lower()}")


def read_config(path: str) -> dict:
    if path.endswith(".h5"):
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs["model_config"]
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        return json.loads(raw)
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("config.json"))


def collect_weights(model, out=None) -> dict:
    """Leaf-layer name -> layer.get_weights(), recursing into nested models."""
    import keras

    out = {} if out is None else out
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            collect_weights(layer, out)
        elif layer.weights:
            out[layer.name] = layer.get_weights()
    return out


def assign_weights(model, weights: dict) -> None:
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            assign_weights(layer, weights)
        elif layer.weights:
            layer.set_weights(weights[layer.name])


def compare(ref, out) -> float:
    import numpy as np

    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    return float(np.max(np.abs(ref - out)) / (np.max(np.abs(ref)) + 1e-12))


def try_fixups(model, path: str, fmt: str, x, ref) -> str:
    import keras

    from surgeon.io.keras3_fixups import fix_keras3_config, fix_keras3_weights

    cfg = read_config(path)
    fixed, fixups = fix_keras3_config(cfg)
    weights = fix_keras3_weights(fixups, collect_weights(model))
    new = keras.Model.from_config(fixed["config"])
    assign_weights(new, weights)
    out_path = path.replace(f".{fmt}", f".fixed.{fmt}")
    new.save(out_path)
    keras.backend.clear_session()
    reloaded = keras.models.load_model(out_path, compile=False)
    err = compare(ref, reloaded(x, training=False))
    kinds = sorted({f.what for f in fixups})
    status = "FIXED" if fixups else "ok"
    res = f"{status} ({len(fixups)} fixups: {','.join(kinds) or '-'}) relerr={err:.1e}"
    if err > 1e-5:
        res = "MISMATCH " + res
    return res


def run(arch: str, out_dir: str, do_fixups: bool) -> list[tuple]:
    import keras
    import numpy as np

    rows = []
    for variant in VARIANTS:
        keras.backend.clear_session()
        t0 = time.time()
        try:
            model = build(arch, variant)
        except Exception as e:  # noqa: BLE001
            for fmt in FORMATS:
                rows.append((arch, variant, fmt, "BUILD " + first_line(e), "", 0.0))
            continue
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2,) + ARCHS[arch]).astype("float32")
        ref = np.asarray(model(x, training=False))
        for fmt in FORMATS:
            path = os.path.join(out_dir, f"{arch}_{variant}.{fmt}")
            t1 = time.time()
            try:
                model.save(path)
            except Exception as e:  # noqa: BLE001
                rows.append((arch, variant, fmt, "SAVE " + first_line(e), "", time.time() - t1))
                continue
            try:
                loaded = keras.models.load_model(path, compile=False)
                err = compare(ref, loaded(x, training=False))
                status = "ok" if err < 1e-5 else f"ok-but-mismatch relerr={err:.1e}"
            except Exception as e:  # noqa: BLE001
                status = first_line(e)
            after = ""
            if do_fixups:
                try:
                    after = try_fixups(model, path, fmt, x, ref)
                except Exception as e:  # noqa: BLE001
                    after = "FAIL " + first_line(e)
                    if os.environ.get("SWEEP_TRACE"):
                        traceback.print_exc()
            rows.append((arch, variant, fmt, status, after, time.time() - t1))
        del model
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated architecture names (case-insensitive)")
    ap.add_argument("--out", help="directory for the saved files (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--fixups", action="store_true", help="also try surgeon's keras3 fixups")
    args = ap.parse_args(argv)

    archs = list(ARCHS)
    if args.only:
        want = {n.strip().lower() for n in args.only.split(",")}
        archs = [a for a in archs if a.lower() in want]
        unknown = want - {a.lower() for a in archs}
        if unknown:
            print(f"unknown architecture(s): {sorted(unknown)}; known: {list(ARCHS)}", file=sys.stderr)
            return 2
    if args.fixups:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    out_dir = args.out or tempfile.mkdtemp(prefix="sweep_load_")
    os.makedirs(out_dir, exist_ok=True)
    import warnings

    warnings.filterwarnings("ignore")
    import keras

    print(f"keras {keras.__version__}; files in {out_dir}", flush=True)
    cols = ["architecture", "variant", "format", "plain load_model"] + (["with --fixups"] if args.fixups else [])
    lines = []
    try:
        for arch in archs:
            for row in run(arch, out_dir, args.fixups):
                cells = list(row[:4]) + ([row[4]] if args.fixups else [])
                lines.append(cells)
                print("| " + " | ".join(cells) + f" |   ({row[5]:.1f}s)", file=sys.stderr, flush=True)
    finally:
        if not args.out and not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    print()
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for cells in lines:
        print("| " + " | ".join(cells) + " |")
    nfail = sum(1 for c in lines if c[3] != "ok")
    print(f"\n{len(lines) - nfail}/{len(lines)} load with plain keras")
    if args.fixups:
        nbad = sum(1 for c in lines if not (c[4].startswith("ok") or c[4].startswith("FIXED")))
        print(f"{len(lines) - nbad}/{len(lines)} load with plain keras after fixups (outputs compared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
