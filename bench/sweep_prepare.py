"""Sweep: ``surgeon prepare`` on keras.applications architectures (weights=None), flat and nested,
saved as .keras and .h5; then a plain-Keras fine-tuning job on the prepared file, and ``surgeon
diff`` to show the frozen part did not move.

For each case:
  1. build the model (weights=None, small input, logits output; nested: with a Dropout before the
     head), give every BatchNormalization random statistics (gamma ~ U(0.5, 1.5), beta/mean ~
     N(0, 0.5), var ~ U(0.5, 2)), compile it (Adam, categorical crossentropy from logits) and save it;
  2. ``prepare_file`` with a fine-tuning selection: flat -> --until the layer at 75% of the
     topological order; nested -> --until the nested base (a frozen feature extractor);
     prepare verifies the written file and runs its fine-tune check (4 checks);
  3. a separate "user job": plain ``keras.models.load_model`` of the prepared file, ``fit`` 2 steps,
     save as a new file;
  4. ``diff_files(prepared, finetuned)``: every layer frozen in the prepared file must be bit-for-bit
     identical, and some trainable layer must differ.

Prints one row per case and the pass counts; timings with time.perf_counter.

Usage:
    python bench/sweep_prepare.py [--only NAME[,NAME...]] [--variants flat,nested] [--formats h5,keras]
                                  [--in-process]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback

from applications import CLASSES, build, collect_rows, one_line, parse_args, print_counts, print_failures


def selection_for(path: str, variant: str):
    from surgeon.io import read_model
    from surgeon.passes.freeze import Selection, topological_paths

    if variant == "nested":
        spec = read_model(path, values=False)
        base = next(layer["name"] for layer in spec.config["config"]["layers"] if "layers" in layer.get("config", {}))
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
    model = build(arch, variant, dropout=0.2)
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    model.save(source)
    del model
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


def run_architecture(arch: str, args):
    with tempfile.TemporaryDirectory(prefix="sweep_prepare_") as folder:
        for variant in args.variants:
            for fmt in args.formats:
                start = time.perf_counter()
                try:
                    row = run_case(arch, variant, fmt, folder)
                except Exception as error:  # a crash is a failed case, reported with its first line
                    row = {"arch": arch, "variant": variant, "format": fmt, "ok": False, "stage": "crash", "reason": one_line(error)}
                    if os.environ.get("SWEEP_DEBUG"):
                        traceback.print_exc()
                row["seconds"] = time.perf_counter() - start
                print(line(row), file=sys.stderr, flush=True)
                for name in os.listdir(folder):
                    os.remove(os.path.join(folder, name))
                yield row


def line(row: dict) -> str:
    max_rel = row.get("max_rel")
    return (f"{row['arch']:18} {row['variant']:6} {row['format']:5} {'PASS' if row['ok'] else 'FAIL'} "
            f"folded={row.get('folded', '-')} stripped={row.get('stripped', '-')} "
            f"max_rel={'None' if max_rel is None else format(max_rel, '.2g')} "
            f"trained={row.get('trained_layers', '-')} prepare={row.get('prepare_s', 0):.1f}s total={row['seconds']:.1f}s "
            f"{row.get('selection', '')} {row.get('reason', '')}")


def main(argv=None) -> int:
    args = parse_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter), argv)
    rows = collect_rows(args, lambda arch: run_architecture(arch, args))
    print()
    for row in rows:
        print(line(row))
    print()
    passed = print_counts(rows, "prepare, fine-tune with plain Keras, frozen part unchanged")
    print()
    print_failures(rows)
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
