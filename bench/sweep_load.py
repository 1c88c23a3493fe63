"""Sweep: save keras.applications models (weights=None, random BN statistics) as .h5 and .keras, and
check, per file:

1. plain ``keras.models.load_model`` of the file (Keras 3 cannot load some applications it saved);
2. surgeon's reader: ``surgeon.io.read_model(file)`` -> ``build_keras_model(spec)``;
3. surgeon's writer: ``write_model(spec, <same format>)`` -> plain ``keras.models.load_model``.

Each model that loads is compared with the original in-memory model on a seeded batch (inference
mode, relative error on the logits); a relative error above 1e-5 is a MISMATCH. A case passes when
2 and 3 both load and match.

Usage:
    python bench/sweep_load.py [--only NAME[,NAME...]] [--variants flat,nested] [--formats h5,keras]
                               [--out DIR] [--plain-only] [--in-process]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback

from applications import ARCHS, build, collect_rows, one_line, parse_args, print_counts, print_failures

TOLERANCE = 1e-5
COLUMNS = {"plain": "plain load_model", "read": "surgeon read -> build", "written": "surgeon write -> plain load"}


def relative_error(ref, out) -> float:
    import numpy as np

    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    return float(np.max(np.abs(ref - out)) / (np.max(np.abs(ref)) + 1e-12))


def attempt(load, x, ref) -> str:
    """'ok <rel error>', 'MISMATCH <rel error>' or 'FAIL <exception>' for one way of loading."""
    try:
        err = relative_error(ref, load()(x, training=False))
    except Exception as error:  # noqa: BLE001  (a failure is a result of the sweep)
        if os.environ.get("SWEEP_TRACE"):
            traceback.print_exc()
        return "FAIL " + one_line(error)
    return f"{'ok' if err <= TOLERANCE else 'MISMATCH'} {err:.1e}"


def run_case(model, x, ref, arch: str, variant: str, fmt: str, folder: str, surgeon: bool) -> dict:
    import keras

    from surgeon.io import read_model, write_model
    from surgeon.io.keras_model import build_keras_model

    row = {"arch": arch, "variant": variant, "format": fmt}
    path = os.path.join(folder, f"{arch}_{variant}.{fmt}")
    written = os.path.join(folder, f"{arch}_{variant}.surgeon.{fmt}")
    start = time.perf_counter()
    try:
        model.save(path)
    except Exception as error:  # noqa: BLE001
        row.update(plain="SAVE " + one_line(error), ok=False, reason="SAVE " + one_line(error), seconds=time.perf_counter() - start)
        return row
    row["plain"] = attempt(lambda: keras.models.load_model(path, compile=False), x, ref)
    checked = ["plain"]
    if surgeon:
        spec = None

        def read():
            nonlocal spec
            spec = read_model(path)
            return build_keras_model(spec)

        def write():
            if spec is None:
                raise RuntimeError("not run: surgeon could not read the file")
            write_model(spec, written)
            return keras.models.load_model(written, compile=False)

        row["read"] = attempt(read, x, ref)
        row["written"] = attempt(write, x, ref)
        checked = ["read", "written"]
    failed = [f"{COLUMNS[key]}: {row[key]}" for key in checked if not row[key].startswith("ok")]
    row.update(ok=not failed, reason="; ".join(failed), seconds=time.perf_counter() - start)
    return row


def run_architecture(arch: str, args):
    folder = args.out or tempfile.mkdtemp(prefix="sweep_load_")
    os.makedirs(folder, exist_ok=True)
    try:
        yield from _run_variants(arch, args, folder)
    finally:
        if not args.out:
            shutil.rmtree(folder, ignore_errors=True)


def _run_variants(arch: str, args, folder: str):
    import numpy as np

    for variant in args.variants:
        start = time.perf_counter()
        try:
            model = build(arch, variant)
        except Exception as error:  # noqa: BLE001
            for fmt in args.formats:
                yield {"arch": arch, "variant": variant, "format": fmt, "plain": "BUILD " + one_line(error),
                       "ok": False, "reason": "BUILD " + one_line(error), "seconds": time.perf_counter() - start}
            continue
        x = np.random.default_rng(0).standard_normal((2,) + ARCHS[arch]).astype("float32")
        ref = np.asarray(model(x, training=False))
        for fmt in args.formats:
            row = run_case(model, x, ref, arch, variant, fmt, folder, surgeon=not args.plain_only)
            print("| " + " | ".join(_cells(row, args)) + f" |   ({row['seconds']:.1f}s)", file=sys.stderr, flush=True)
            if not args.out:  # large files (VGG16: 135 MB each); nobody looks at them afterwards
                for name in os.listdir(folder):
                    os.remove(os.path.join(folder, name))
            yield row
        del model


def _cells(row: dict, args) -> list[str]:
    return [row["arch"], row["variant"], row["format"]] + [row.get(key, row["reason"]) for key in _keys(args)]


def _keys(args) -> list[str]:
    return ["plain"] if args.plain_only else list(COLUMNS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="keep the saved files in this directory (default: a temp dir, removed)")
    parser.add_argument("--plain-only", action="store_true", help="only plain load_model; skip surgeon's reader and writer")
    args = parse_args(parser, argv)

    rows = collect_rows(args, lambda arch: run_architecture(arch, args))

    import keras

    columns = ["architecture", "variant", "format"] + [COLUMNS[key] for key in _keys(args)]
    print(f"\nkeras {keras.__version__}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(_cells(row, args)) + " |")
    counts = {"plain": "load and match with plain keras", "read": "read by surgeon and match",
              "written": "written by surgeon, load with plain keras and match"}
    print()
    for key in _keys(args):
        print_counts(rows, counts[key], ok=lambda row, key=key: row.get(key, "").startswith("ok"), breakdown=args.plain_only)
    if not args.plain_only:
        print_counts(rows, "pass (surgeon's read and written file both load and match)")
    print()
    print_failures(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
