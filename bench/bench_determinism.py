"""Are repeated seeded fits bit-identical? The measurement behind the fine-tune check's runtime.

The fine-tune check (surgeon/finetune_check.py) fits a written file twice from the same seed and
requires identical weights. This script measures how often two such fits differ with TensorFlow
set up three ways, each in its own fresh process:

- ``default``: ``enable_op_determinism()`` only (what the check did before);
- ``no-onednn``: the same with ``TF_ENABLE_ONEDNN_OPTS=0`` (is it oneDNN's doing?);
- ``one-interop``: ``surgeon.finetune_check.reproducible_runtime()``: the same and one inter-op
  thread (what the check's process does).

Each trial is the check's own first run, through its own functions: seed 0, a fresh plain
``load_model`` of the file, compile as stored (SGD + MSE if uncompiled), 3 steps of batch 4 on its
seeded synthetic data; the trial's outcome is a hash of every weight. One distinct outcome per setup
means every trial repeated bit for bit.

    python bench/bench_determinism.py [MODEL] [--trials 8] [--setups default,one-interop]

Without MODEL: keras.applications.InceptionV3 (weights=None, 75x75, random BN statistics,
5 classes, every layer trainable, compiled with Adam and MSE) through ``surgeon prepare``
(frozen BNs folded), in a temporary directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time

from applications import build

# setup -> (environment of its process, whether the process calls reproducible_runtime())
SETUPS = {
    "default": ({}, False),
    "no-onednn": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, False),
    "one-interop": ({}, True),
}


def trials(path: str, count: int, reproducible: bool) -> list[str]:
    """In this process: ``count`` seeded fits of ``path`` as the check runs them, one weight hash each."""
    import tensorflow as tf

    from surgeon.finetune_check import (DEFAULT_BATCH, DEFAULT_STEPS, compile_if_needed, fit_steps, keras_seed,
                                        reproducible_runtime, synthetic_data)
    from surgeon.io.keras_model import load_plain

    if reproducible:
        reproducible_runtime()  # what the check's process does: op determinism and one inter-op thread
    else:
        tf.config.experimental.enable_op_determinism()
    outcomes = []
    for _ in range(count):
        keras_seed(0)
        model = load_plain(path)
        compile_if_needed(model, [])
        x, y = synthetic_data(model, DEFAULT_STEPS * DEFAULT_BATCH, 0)
        weights = fit_steps(model, x, y, DEFAULT_BATCH)
        digest = hashlib.sha256()
        for layer in sorted(weights):
            for name in sorted(weights[layer]):
                digest.update(weights[layer][name].tobytes())
        outcomes.append(digest.hexdigest()[:12])
    return outcomes


def default_model(scratch: str) -> str:
    """InceptionV3 as a fine-tuning job gets it from ``surgeon prepare``: every layer trainable, BNs
    kept frozen and folded into the convolutions, compiled with Adam and MSE."""
    from surgeon.io.keras_model import quiet_tensorflow
    from surgeon.prepare import prepare_file
    from surgeon.rewrite import VerifyOptions

    quiet_tensorflow()

    original, prepared = os.path.join(scratch, "inceptionv3.keras"), os.path.join(scratch, "inceptionv3_prepared.h5")
    model = build("InceptionV3", "flat")
    model.compile(optimizer="adam", loss="mean_squared_error")
    model.save(original)
    prepare_file(original, prepared, verify=VerifyOptions(enabled=False))
    return prepared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--setups", default="default,one-interop", help=f"comma-separated, of {list(SETUPS)}")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the setup this process measures
    args = parser.parse_args()
    if args.child:
        print("OUTCOMES " + json.dumps(trials(args.model, args.trials, SETUPS[args.child][1])))
        return
    from surgeon.child_process import last_error_line, run_python

    with tempfile.TemporaryDirectory() as scratch:
        path = args.model or default_model(scratch)
        print(f"{path}: {args.trials} seeded 3-step fits per setup, each setup in a fresh process")
        for setup in args.setups.split(","):
            started = time.perf_counter()
            done = run_python([__file__, path, "--trials", str(args.trials), "--child", setup], SETUPS[setup][0])
            lines = [line for line in done.stdout.splitlines() if line.startswith("OUTCOMES ")]
            if done.returncode != 0 or not lines:
                print(f"{setup:12} failed: {last_error_line(done.stderr, done.returncode)}")
                continue
            outcomes = json.loads(lines[0][len("OUTCOMES "):])
            majority = max(set(outcomes), key=outcomes.count)
            differing = sum(o != majority for o in outcomes)
            print(f"{setup:12} {len(set(outcomes))} distinct outcome(s); {differing} of {len(outcomes)} trials "
                  f"differ from the most common one ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
