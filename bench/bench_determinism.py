"""Are repeated seeded fits bit-identical? The measurement behind the fine-tune check's runtime.

The fine-tune check (surgeon/finetune_check.py) fits a written file twice from the same seed and
requires identical weights. This script measures how often two such fits differ with TensorFlow
set up three ways, each in its own fresh process:

- ``default``: ``enable_op_determinism()`` only (what the check did before);
- ``no-onednn``: the same with ``TF_ENABLE_ONEDNN_OPTS=0`` (is it oneDNN's doing?);
- ``one-interop``: the same with one inter-op thread (what the check does now).

Each trial: ``keras.utils.set_random_seed(0)``, a fresh ``load_model`` of the file, compile as
stored (SGD + MSE if uncompiled), then the check's own fit (3 steps of batch 4 on its seeded
synthetic data); the trial's outcome is a hash of every weight. One distinct outcome per setup
means every trial repeated bit for bit.

    python bench/bench_determinism.py [MODEL] [--trials 8] [--setups default,one-interop]

Without MODEL: keras.applications.InceptionV3 (weights=None, 75x75, random BN statistics,
5 classes, every layer trainable), saved to a temporary .keras file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

from applications import build

SETUPS = {
    "default": {},
    "no-onednn": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "one-interop": {"TF_NUM_INTEROP_THREADS": "1"},
}


def trials(path: str, count: int) -> list[str]:
    """In this process: ``count`` seeded fits of ``path``, one weight hash each."""
    import keras
    import tensorflow as tf

    from surgeon.finetune_check import DEFAULT_BATCH, DEFAULT_STEPS, FALLBACK_COMPILE, synthetic_data
    from surgeon.verify import load_plain

    tf.config.experimental.enable_op_determinism()
    outcomes = []
    for _ in range(count):
        keras.utils.set_random_seed(0)
        model = load_plain(path)
        if not model.compiled:
            model.compile(**FALLBACK_COMPILE)
        x, y = synthetic_data(model, DEFAULT_STEPS * DEFAULT_BATCH, 0)
        model.fit(x if len(x) > 1 else x[0], y, batch_size=DEFAULT_BATCH, epochs=1, shuffle=False, verbose=0)
        digest = hashlib.sha256()
        for weight in model.weights:
            digest.update(weight.numpy().tobytes())
        outcomes.append(digest.hexdigest()[:12])
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--setups", default="default,one-interop", help=f"comma-separated, of {list(SETUPS)}")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("OUTCOMES " + json.dumps(trials(args.model, args.trials)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        path = args.model
        if path is None:
            path = os.path.join(scratch, "inceptionv3.keras")
            build("InceptionV3", "flat").save(path)
        print(f"{path}: {args.trials} seeded 3-step fits per setup, each setup in a fresh process")
        for setup in args.setups.split(","):
            env = {**os.environ, **SETUPS[setup]}
            started = time.perf_counter()
            done = subprocess.run([sys.executable, __file__, path, "--trials", str(args.trials), "--child"],
                                  env=env, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("OUTCOMES ")]
            if done.returncode != 0 or not lines:
                print(f"{setup:12} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
                continue
            outcomes = json.loads(lines[0][len("OUTCOMES "):])
            majority = max(set(outcomes), key=outcomes.count)
            differing = sum(o != majority for o in outcomes)
            print(f"{setup:12} {len(set(outcomes))} distinct outcome(s); {differing} of {len(outcomes)} trials "
                  f"differ from the most common one ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
