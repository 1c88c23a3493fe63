"""Bench: `surgeon features` against a hand-written `base.predict` loop on the same data.

Builds a MobileNetV2 classifier (weights=None, so no download), splits it with surgeon (automatic
cut: the global pooling), writes N random images as one .npy, then runs, each in its own process
(so peak RSS is per variant, read with os.wait4):

  baseline  load the base and run one batch: the memory TensorFlow + the model need anyway
  surgeon   surgeon.features.extract_features(base, data.npy, out.npy)  (memory-mapped in/out)
  predict       x = np.load(data.npy); np.save(out, base.predict(x, batch_size))   (the usual script)
  predict_loop  np.save(out, concatenate([base.predict(x[i:i+b]) for i in ...]))  (x memory-mapped)
  on_batch      the same with base.predict_on_batch: the fastest hand-written loop we know

Throughput is images/s over the whole run (trace + all batches + writing), best of --repeats,
the variants interleaved so that machine noise hits both. The features of both are compared.

Usage:
    python bench/bench_features.py [--images 4096] [--size 96] [--batch-size 64] [--repeats 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def child(mode: str, base: str, data: str, out: str, batch_size: int) -> None:
    import numpy as np

    from surgeon.io.keras_model import load_plain

    model = load_plain(base)
    started = time.perf_counter()
    if mode == "baseline":
        model.predict_on_batch(np.load(data, mmap_mode="r")[:batch_size])
    elif mode == "surgeon":
        from surgeon.features import extract_features

        extract_features(model, data, out, batch_size=batch_size, force=True, progress=False)
    elif mode == "predict":
        x = np.load(data)
        np.save(out, model.predict(x, batch_size=batch_size, verbose=0))
    elif mode == "predict_loop":
        x = np.load(data, mmap_mode="r")
        np.save(out, np.concatenate([model.predict(x[i:i + batch_size], verbose=0) for i in range(0, len(x), batch_size)]))
    elif mode == "on_batch":
        x = np.load(data, mmap_mode="r")
        np.save(out, np.concatenate([model.predict_on_batch(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]))
    print(json.dumps({"seconds": time.perf_counter() - started}))


def run_child(mode: str, args, base: str, data: str, out: str) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--base", base, "--data", data, "--out", out,
               "--batch-size", str(args.batch_size)]
    with tempfile.TemporaryFile("w+") as stdout:
        process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL, text=True)
        # ru_maxrss counts pages of memory-mapped files too (reclaimable page cache); the
        # anonymous part (RssAnon in /proc/PID/status, sampled) is what cannot be given back.
        peak_anon = 0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak_anon = max(peak_anon, _rss_anon_kb(process.pid))
            time.sleep(0.02)
        if status != 0:
            raise SystemExit(f"{mode} failed (status {status})")
        stdout.seek(0)
        result = json.loads(stdout.read().strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    result["peak_anon_mb"] = peak_anon / 1024
    return result


def _rss_anon_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def prepare(args, workdir: str) -> tuple[str, str]:
    import numpy as np

    import keras

    from surgeon.split import split_file

    model_path = os.path.join(workdir, "mobilenet.keras")
    base = os.path.join(workdir, "mobilenet_base.keras")
    if not os.path.exists(base):
        backbone = keras.applications.MobileNetV2(input_shape=(args.size, args.size, 3), include_top=False, weights=None, alpha=0.35)
        inputs = keras.Input((args.size, args.size, 3))
        x = keras.layers.GlobalAveragePooling2D(name="gap")(backbone(inputs))
        x = keras.layers.Dropout(0.2)(x)
        model = keras.Model(inputs, keras.layers.Dense(10, name="head")(x))
        model.save(model_path)
        result = split_file(model_path, directory=workdir)
        print(f"split: cut after '{result.report.at}' ({result.report.chosen_by}); verification passed: {result.passed}")
    data = os.path.join(workdir, f"images_{args.images}_{args.size}.npy")
    if not os.path.exists(data):
        out = np.lib.format.open_memmap(data, mode="w+", dtype="float32", shape=(args.images, args.size, args.size, 3))
        rng = np.random.default_rng(0)
        for start in range(0, args.images, 512):  # written in chunks: the bench itself stays small
            stop = min(start + 512, args.images)
            out[start:stop] = rng.uniform(0, 255, size=(stop - start, args.size, args.size, 3)).astype("float32")
        out.flush()
        del out
    return base, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir")
    parser.add_argument("--child")
    parser.add_argument("--base")
    parser.add_argument("--data")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.base, args.data, args.out, args.batch_size)
        return

    import numpy as np

    workdir = args.workdir or tempfile.mkdtemp(prefix="surgeon_bench_features_")
    os.makedirs(workdir, exist_ok=True)
    base, data = prepare(args, workdir)
    data_mb = os.path.getsize(data) / 2**20
    print(f"data: {args.images} images {args.size}x{args.size}x3 float32 = {data_mb:.0f} MB, "
          f"batch {args.batch_size} ({args.images // args.batch_size} batches); cpus: {os.cpu_count()}")
    modes = ("surgeon", "predict", "predict_loop", "on_batch")
    outs = {mode: os.path.join(workdir, f"f_{mode}.npy") for mode in modes}
    baseline = run_child("baseline", args, base, data, os.devnull)
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}
    for _ in range(args.repeats):
        for mode in modes:
            runs[mode].append(run_child(mode, args, base, data, outs[mode]))
    reference = np.load(outs["predict"], mmap_mode="r")
    difference = max(float(np.abs(np.load(outs[m], mmap_mode="r") - reference).max()) for m in modes)

    print(f"\n{'variant':<12} {'best s':>8} {'images/s':>10} {'all runs (s)':<22} {'peak RSS MB':>12} {'peak anon MB':>13}")
    print(f"{'baseline':<12} {'':>8} {'':>10} {'(load + 1 batch)':<22} {baseline['peak_rss_mb']:>12.0f} {baseline['peak_anon_mb']:>13.0f}")
    best = {}
    for mode, results in runs.items():
        best[mode] = min(r["seconds"] for r in results)
        seconds = ", ".join(f"{r['seconds']:.2f}" for r in results)
        peak = max(r["peak_rss_mb"] for r in results)
        anon = max(r["peak_anon_mb"] for r in results)
        print(f"{mode:<12} {best[mode]:>8.2f} {args.images / best[mode]:>10.1f} {seconds:<22} {peak:>12.0f} {anon:>13.0f}")
    print()
    for mode in modes[1:]:
        overhead = best["surgeon"] / best[mode] - 1
        print(f"surgeon time over {mode}: {overhead * 100:+.1f}% (target: within +10%)")
    print(f"largest difference between the feature files: {difference:.3g}")
    for mode in modes:
        extra = max(r["peak_anon_mb"] for r in runs[mode]) - baseline["peak_anon_mb"]
        print(f"{mode}: peak anonymous memory above baseline {extra:.0f} MB (data {data_mb:.0f} MB)")


if __name__ == "__main__":
    main()
