"""Bench: `surgeon features` against a hand-written `base.predict` loop on the same data.

Builds a MobileNetV2 classifier (weights=None, so no download), splits it with surgeon (automatic
cut: the global pooling), writes N random images as one .npy, then runs, each in its own process
(so peak RSS is per variant, read with os.wait4):

  baseline  load the base and run one batch: the memory TensorFlow + the model need anyway
  surgeon   surgeon.features.extract_features(base, data.npy, out.npy)  (memory-mapped in/out)
  predict       x = np.load(data.npy); np.save(out, base.predict(x, batch_size))   (the usual script)
  predict_loop  np.save(out, concatenate([base.predict(x[i:i+b]) for i in ...]))  (x memory-mapped)
  on_batch      the same with base.predict_on_batch: the fastest hand-written loop we know
  shards        surgeon, local engine, into a directory of shards + manifest (--shard-size)
  ray1, ray2    surgeon --engine ray with 1 and 2 workers: a local Ray instance started by the run
                (its start, the actors' TensorFlow import and base load are part of the time)

Throughput is images/s over the whole run (trace + all batches + writing), best of --repeats,
the variants interleaved so that machine noise hits both. The features of all are compared.
For the directory variants the run is cut in two: a start-up and stop that do not grow with the
data (for Ray: its start, the workers' TensorFlow import and base load, its stop) and the steady
rate from the first recorded shards to the last, which is what many machines multiply; from the
two, the data size beyond which the Ray engine is within 1.3x of the single process. Peak memory is per process: for the
Ray variants, the largest worker (each one holds the base, a batch or two and its shard's pages).
The machine's load average is printed: on a shared machine, read the figures against it.

Usage:
    python bench/bench_features.py [--images 4096] [--size 96] [--batch-size 64] [--shard-size 512]
                                   [--repeats 3] [--modes surgeon,shards,ray1,ray2] [--workdir DIR]
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


def child(mode: str, base: str, data: str, out: str, batch_size: int, shard_size: int) -> None:
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
    elif mode in DIRECTORY_MODES:
        from surgeon.features import extract_features

        engine, workers = ("local", 1) if mode == "shards" else ("ray", int(mode[3:]))
        # The Ray workers load the base from its file; the local engine gets the loaded model, as "surgeon" does.
        result = extract_features(model if engine == "local" else base, data, out, batch_size=batch_size, shard_size=shard_size, force=True, progress=False,
                                  engine=engine, workers=workers)
        # result.seconds runs from the first shard planned to the last recorded (no Ray start or stop).
        print(json.dumps({"seconds": time.perf_counter() - started, "first_shard": result.first_shard_seconds,
                          "engine_seconds": result.seconds}))
        return
    print(json.dumps({"seconds": time.perf_counter() - started}))


DIRECTORY_MODES = ("shards", "ray1", "ray2")


def run_child(mode: str, args, base: str, data: str, out: str) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--base", base, "--data", data, "--out", out,
               "--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size)]
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True)
        # ru_maxrss counts pages of memory-mapped files too (reclaimable page cache); the
        # anonymous part (RssAnon in /proc/PID/status, sampled) is what cannot be given back.
        peak_anon = 0
        workers: dict[int, int] = {}  # Ray worker pid -> peak anonymous kB
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak_anon = max(peak_anon, _rss_anon_kb(process.pid))
            for worker in _ray_workers(process.pid):
                workers[worker] = max(workers.get(worker, 0), _rss_anon_kb(worker))
            time.sleep(0.02)
        if status != 0:
            stderr.seek(0)
            raise SystemExit(f"{mode} failed (status {status}):\n" + "\n".join(stderr.read().splitlines()[-15:]))
        stdout.seek(0)
        result = json.loads(stdout.read().strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    result["peak_anon_mb"] = peak_anon / 1024
    result["worker_peak_anon_mb"] = max(workers.values(), default=0) / 1024
    return result


def _ray_workers(pid: int) -> list[int]:
    """Processes below ``pid`` whose name Ray set to ray::<actor> (the shard workers)."""
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        for task in _listdir(f"/proc/{parent}/task"):
            try:
                with open(f"/proc/{parent}/task/{task}/children") as children:
                    stack.extend(int(child) for child in children.read().split())
            except OSError:
                continue
        if parent != pid:
            try:
                with open(f"/proc/{parent}/cmdline", "rb") as cmdline:
                    if cmdline.read().startswith(b"ray::MapWorker"):
                        found.append(parent)
            except OSError:
                pass
    return found


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


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
    parser.add_argument("--shard-size", type=int, default=512)
    parser.add_argument("--modes", default="surgeon,predict,predict_loop,on_batch,shards,ray1,ray2")
    parser.add_argument("--workdir")
    parser.add_argument("--child")
    parser.add_argument("--base")
    parser.add_argument("--data")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.base, args.data, args.out, args.batch_size, args.shard_size)
        return

    import numpy as np

    workdir = args.workdir or tempfile.mkdtemp(prefix="surgeon_bench_features_")
    os.makedirs(workdir, exist_ok=True)
    base, data = prepare(args, workdir)
    data_mb = os.path.getsize(data) / 2**20
    print(f"data: {args.images} images {args.size}x{args.size}x3 float32 = {data_mb:.0f} MB, "
          f"batch {args.batch_size} ({args.images // args.batch_size} batches), shards of {args.shard_size}; cpus: {os.cpu_count()}")
    print("load average at start (1, 5, 15 min): " + ", ".join(f"{load:.2f}" for load in os.getloadavg()))
    modes = tuple(args.modes.split(","))
    outs = {mode: os.path.join(workdir, f"f_{mode}" + ("/" if mode in DIRECTORY_MODES else ".npy")) for mode in modes}
    baseline = run_child("baseline", args, base, data, os.devnull)
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}
    for _ in range(args.repeats):
        for mode in modes:
            runs[mode].append(run_child(mode, args, base, data, outs[mode]))
    from surgeon.features import open_features

    features = {mode: np.asarray(open_features(outs[mode]).array) for mode in modes}
    reference = features[modes[0]]
    difference = max(float(np.abs(features[m] - reference).max()) for m in modes)
    identical = [m for m in modes if features[m].tobytes() == reference.tobytes()]

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
    for mode in ("predict", "predict_loop", "on_batch"):
        if "surgeon" in best and mode in best:
            print(f"surgeon time over {mode}: {(best['surgeon'] / best[mode] - 1) * 100:+.1f}% (target: within +10%)")
    costs = {mode: start_up_and_rate(min(runs[mode], key=lambda r: r["seconds"]), args.images, args.shard_size, mode)
             for mode in DIRECTORY_MODES if mode in best}
    for mode, (start_up, rate) in costs.items():
        line = f"{mode}: start-up and stop {start_up:.1f} s, then {rate:.0f} images/s"
        if "surgeon" in best:
            line += f"; {best[mode] / best['surgeon']:.2f}x the single-process time here (target for ray: within 1.3x)"
        if mode != "shards" and "shards" in costs:
            line += "; " + break_even(costs["shards"], (start_up, rate))
        print(line)
    print(f"largest difference between the feature files: {difference:.3g}; byte-identical to {modes[0]}: {', '.join(identical)}")
    for mode in modes:
        extra = max(r["peak_anon_mb"] for r in runs[mode]) - baseline["peak_anon_mb"]
        worker = max(r["worker_peak_anon_mb"] for r in runs[mode])
        print(f"{mode}: peak anonymous memory above baseline {extra:.0f} MB (data {data_mb:.0f} MB)"
              + (f"; largest Ray worker {worker:.0f} MB in all (TensorFlow + base included)" if worker else ""))
    print("load average at end (1, 5, 15 min): " + ", ".join(f"{load:.2f}" for load in os.getloadavg()))


def start_up_and_rate(run: dict, images: int, shard_size: int, mode: str) -> tuple[float, float]:
    """(seconds of the run that do not grow with the data, steady images/s): the rate from the
    first shards recorded (one per worker, finished together) to the last; the rest of the wall
    time is start-up (Ray, the workers' TensorFlow import and base load) and stop."""
    workers = int(mode[3:]) if mode.startswith("ray") else 1
    rate = (images - shard_size * workers) / max(run["engine_seconds"] - run["first_shard"], 1e-9)
    return run["seconds"] - images / rate, rate


def break_even(single: tuple[float, float], engine: tuple[float, float], goal: float = 1.3) -> str:
    """From how many images ``engine`` (start-up, rate) takes at most ``goal`` x ``single``'s time."""
    (single_start, single_rate), (start, rate) = single, engine
    gain = goal / single_rate - 1 / rate  # seconds per image the goal leaves over
    if gain <= 0:
        return f"never within {goal}x on this machine (its steady rate is {rate / single_rate:.2f}x the single process')"
    return f"within {goal}x of the single process from about {max(0.0, (start - goal * single_start) / gain):,.0f} images"


if __name__ == "__main__":
    main()
