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
                                  [--in-process]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time

from applications import build, collect_rows, leaves, one_line, parse_args, print_counts, print_failures


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
    remaining = [layer.name for layer in leaves(loaded) if isinstance(layer, keras.layers.BatchNormalization)]
    if remaining:
        return "FAIL bn", f"{details}; BN left: {remaining[:3]}"
    hazards = {h.kind for h in inspect_spec(read_model(out, values=False)).hazards}
    if "frozen-batchnorm" in hazards:
        return "FAIL inspect", details
    return "ok", details


def run_architecture(arch: str, args):
    with tempfile.TemporaryDirectory(prefix="sweep_fold_bn_") as directory:
        for variant in args.variants:
            try:
                model = build(arch, variant, frozen=True)
            except Exception as error:  # noqa: BLE001
                for fmt in args.formats:
                    yield _row(arch, variant, fmt, "FAIL build", one_line(error), 0.0)
                continue
            for fmt in args.formats:
                path = os.path.join(directory, f"{arch}_{variant}.{fmt}")
                out = os.path.join(directory, f"{arch}_{variant}.folded.{fmt}")
                start = time.perf_counter()
                try:
                    model.save(path)
                    status, details = check(path, out)
                except Exception as error:  # noqa: BLE001
                    status, details = "FAIL error", one_line(error)
                row = _row(arch, variant, fmt, status, details, time.perf_counter() - start)
                print(f"| {' | '.join(_cells(row))} | {row['seconds']:.1f}s |", file=sys.stderr, flush=True)
                for file in (path, out):
                    if os.path.exists(file):
                        os.remove(file)
                yield row


def _row(arch, variant, fmt, status, details, seconds) -> dict:
    ok = status == "ok"
    return {"arch": arch, "variant": variant, "format": fmt, "status": status, "details": details,
            "ok": ok, "reason": "" if ok else f"{status}: {details}", "seconds": seconds}


def _cells(row: dict) -> list[str]:
    # A case whose process died has no status or details, only a reason.
    return [row["arch"], row["variant"], row["format"], row.get("status", "FAIL"), row.get("details", row["reason"])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = parse_args(parser, argv)
    rows = collect_rows(args, lambda arch: run_architecture(arch, args))
    import keras

    print(f"\nkeras {keras.__version__}\n")
    print("| architecture | variant | format | result | details | seconds |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {' | '.join(_cells(row))} | {row['seconds']:.1f} |")
    print()
    passed = print_counts(rows, "fold, verify, leave no BatchNormalization and no BN hazard")
    print()
    print_failures(rows)
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
