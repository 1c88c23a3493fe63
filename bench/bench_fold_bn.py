"""Bench ``surgeon fold-bn`` on ResNet50 and MobileNetV2 at 224x224 (weights=None, random BN stats).

(a) Wall time and peak RSS of ``surgeon fold-bn`` with and without verification, each a fresh
    process, side by side with a process that only runs ``keras.models.load_model`` on the same
    file and one that also calls the loaded model once on one sample (verification's floor: one
    read and one forward pass), the four interleaved round by round (so load on a shared
    machine hits them alike); medians of --repeat runs; peak RSS from os.wait4's rusage of that child (the largest of it
    and its own children: surgeon's watchdog parent and its worker). Linux counts the RSS a child
    had before exec (a copy of its parent's), so this process never imports Keras: models are
    made and inference is timed in child processes. Each row gives its ratio to the plain load
    and the goal (issue 15): with verification <= 1.3x the time and <= 1.2x the peak RSS of a
    plain load, --no-verify <= 1.0 s for ResNet50 in both formats.
(b) Inference time of the folded vs the original model: batch 32, one process, both loaded with
    plain Keras, ``predict_on_batch`` calls interleaved (original, folded, original, ...), medians
    and their ratio.
(c) The largest absolute and relative error between the two on that batch.

Other targets (2-core CPU): speedup >= 1.07x ResNet50, >= 1.15x MobileNetV2; relative error < 1e-5.
The surgeon measured is the one beside this script (PYTHONPATH), whatever copy is installed.

Usage: python bench/bench_fold_bn.py [--only ResNet50] [--formats h5,keras] [--repeat 5] [--calls 15] [--no-inference]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import checkout  # noqa: E402 - beside this script

ARCHS = ("ResNet50", "MobileNetV2")
SURGEON = [sys.executable, "-m", "surgeon.cli"]
ENVIRONMENT = checkout.environment()
TIME_GOAL, MEMORY_GOAL, NO_VERIFY_SECONDS = 1.3, 1.2, 1.0
PLAIN_LOAD = "import os, sys; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; import keras; keras.models.load_model(sys.argv[1])"
# The physical limit's read and forward pass (issue 15): a plain load, then one eager call on one
# sample, as verification calls a 224x224 model (verify.call_size), holding what Keras keeps of it.
PLAIN_LOAD_AND_CALL = PLAIN_LOAD.replace(
    "keras.models.load_model(sys.argv[1])",
    "import numpy as np; m = keras.models.load_model(sys.argv[1]); m(np.zeros((1,) + tuple(m.inputs[0].shape[1:]), 'float32'), training=False)")


def make_model(arch: str, path: str) -> None:
    """A frozen application with random BN statistics, saved as a fine-tuning job would find it."""
    import keras

    from applications import randomize_bn

    # Logits: a saturated softmax would hide the error in (c).
    model = getattr(keras.applications, arch)(weights=None, input_shape=(224, 224, 3), classifier_activation=None)
    randomize_bn(model)
    model.trainable = False
    model.save(path)


def timed(command: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENVIRONMENT)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024.0, process.returncode


def bench_cli(source: str, output: str, repeat: int, *, failed_check_ok: bool = False,
              command: str = "fold-bn") -> dict[str, tuple[float, float]]:
    """Median wall seconds and peak RSS MB per command. ``failed_check_ok``: a verification that
    fails (exit 1) did all the work, so it is still measured (the ladder reports it). ``command``:
    the surgeon command timed (the rows keep fold-bn's names: the ladder's BN-free rungs run
    ``convert``, the same read, write and verify)."""
    commands = {
        "plain load_model": [sys.executable, "-c", PLAIN_LOAD, source],
        "load_model + one call": [sys.executable, "-c", PLAIN_LOAD_AND_CALL, source],
        "fold-bn (verify)": SURGEON + [command, source, "-o", output, "--force"],
        "fold-bn --no-verify": SURGEON + [command, source, "-o", output, "--force", "--no-verify"],
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(repeat):  # interleaved, so that machine noise hits every command alike
        for name, command in commands.items():
            wall, rss, code = timed(command)
            if code != 0 and not (failed_check_ok and code == 1):
                raise SystemExit(f"{name} failed with exit code {code}: {' '.join(command)}")
            results[name].append((wall, rss))
    return {name: (statistics.median(w for w, _ in runs), statistics.median(r for _, r in runs)) for name, runs in results.items()}


def goal_text(name: str, arch: str, wall: float, wall_ratio: float, rss_ratio: float) -> str:
    """The goal a row is held to, and whether it is met."""
    if name == "fold-bn (verify)":
        met = wall_ratio <= TIME_GOAL and rss_ratio <= MEMORY_GOAL
        return f"<= {TIME_GOAL}x time, <= {MEMORY_GOAL}x RSS: {'met' if met else 'NOT met'}"
    if name == "fold-bn --no-verify" and arch == "ResNet50":
        return f"<= {NO_VERIFY_SECONDS:.1f} s: {'met' if wall <= NO_VERIFY_SECONDS else 'NOT met'}"
    return ""


def bench_inference(source: str, folded: str, calls: int) -> dict[str, float]:
    import keras
    import numpy as np

    original, candidate = keras.models.load_model(source, compile=False), keras.models.load_model(folded, compile=False)
    x = np.random.default_rng(0).uniform(0, 255, size=(32, 224, 224, 3)).astype("float32")
    expected, got = original.predict_on_batch(x), candidate.predict_on_batch(x)  # also warms up both
    times = {"original": [], "folded": []}
    for _ in range(calls):
        for name, model in (("original", original), ("folded", candidate)):
            start = time.perf_counter()
            model.predict_on_batch(x)
            times[name].append(time.perf_counter() - start)
    difference = np.abs(expected.astype(np.float64) - got.astype(np.float64))
    scale = float(np.abs(expected).max())
    return {
        "original_s": statistics.median(times["original"]),
        "folded_s": statistics.median(times["folded"]),
        "speedup": statistics.median(times["original"]) / statistics.median(times["folded"]),
        "max_abs": float(difference.max()),
        "max_rel": float(difference.max()) / scale,
    }


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated architectures")
    parser.add_argument("--formats", default="h5,keras")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--no-inference", action="store_true", help="only (a): skip timing the folded model's inference")
    args = parser.parse_args(argv)
    archs = [a for a in ARCHS if not args.only or a.lower() in args.only.lower().split(",")]
    directory = tempfile.mkdtemp(prefix="bench_fold_bn_")
    print(f"{os.cpu_count()} CPUs; load average {load_average()} at the start; files in {directory}\n")
    print("| model | format | command | wall s | x plain | peak RSS MB | x plain | goal |")
    print("|---|---|---|---|---|---|---|---|")
    inference = []
    for arch in archs:
        for fmt in args.formats.split(","):
            source = os.path.join(directory, f"{arch}.{fmt}")
            output = os.path.join(directory, f"{arch}.folded.{fmt}")
            subprocess.run([sys.executable, __file__, "--make", arch, source], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            results = bench_cli(source, output, args.repeat)
            plain, plain_rss = results["plain load_model"]
            for name, (wall, rss) in results.items():
                goal = goal_text(name, arch, wall, wall / plain, rss / plain_rss)
                print(f"| {arch} | {fmt} | {name} | {wall:.2f} | {wall / plain:.2f} | {rss:.0f} | {rss / plain_rss:.2f} | {goal} |",
                      flush=True)
            if fmt == args.formats.split(",")[0] and not args.no_inference:
                done = subprocess.run([sys.executable, __file__, "--infer", source, output, str(args.calls)], check=True,
                                      capture_output=True, text=True)
                inference.append((arch, fmt, json.loads(done.stdout.strip().splitlines()[-1])))
    print(f"\nload average {load_average()} at the end (median of --repeat interleaved runs above)")
    print("\n| model | original s/batch | folded s/batch | speedup | max abs error | max rel error |")
    print("|---|---|---|---|---|---|")
    for arch, fmt, r in inference:
        print(f"| {arch} ({fmt}) | {r['original_s']:.3f} | {r['folded_s']:.3f} | {r['speedup']:.3f}x | "
              f"{r['max_abs']:.2e} | {r['max_rel']:.2e} |")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--make":
        make_model(sys.argv[2], sys.argv[3])
        sys.exit(0)
    if len(sys.argv) == 5 and sys.argv[1] == "--infer":
        print(json.dumps(bench_inference(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        sys.exit(0)
    sys.exit(main())
