"""Wall time of `surgeon inspect` on a ResNet50 .h5/.keras (and, with tf_keras installed, a tf.keras 2
SavedModel directory) against `python -c "import tensorflow"`.

Each command runs in a fresh process (as a user types it), several times, the commands interleaved
round by round so that load on a shared machine hits them alike; the median is reported. The
ResNet50 files are built once with weights=None (no download) under bench/out/. The surgeon run is
the one beside this script (PYTHONPATH), through the installed entry point's Python; rows marked
"no watchdog" set SURGEON_NO_WATCHDOG=1, to show what the watchdog process costs (goal: inspect
<= 0.5 s with it).

    python bench/bench_inspect.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import checkout

OUT = Path(__file__).resolve().parent / "out"


def ensure_resnet50() -> list[Path]:
    OUT.mkdir(exist_ok=True)
    paths = [OUT / "resnet50.h5", OUT / "resnet50.keras"]
    if all(p.exists() for p in paths):
        return paths
    code = (
        "import keras; m = keras.applications.ResNet50(weights=None);"
        + "".join(f"m.save({str(p)!r});" for p in paths)
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return paths


def ensure_resnet50_saved_model() -> list[Path]:
    """ResNet50 as tf.keras 2 saved it by default (model.save without extension), if tf_keras is there."""
    import importlib.util

    path = OUT / "resnet50_savedmodel"
    if path.exists() or importlib.util.find_spec("tf_keras") is None:
        return [path] if path.exists() else []
    code = f"import tf_keras; m = tf_keras.applications.ResNet50(weights=None); m.save({str(path)!r}, save_format='tf')"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1"})
    return [path]


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6



SURGEON = [sys.executable, "-c", "from surgeon.cli import main; main()"]


def wall(argv: list[str], environment: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    environment = checkout.environment()
    unguarded = {**environment, "SURGEON_NO_WATCHDOG": "1"}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}; python {platform.python_version()}; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    rows = [("python -c 'import tensorflow'", [sys.executable, "-c", "import tensorflow"], environment)]
    for path in ensure_resnet50() + ensure_resnet50_saved_model():
        rows.append((f"surgeon inspect {path.name} ({size_mb(path):.0f} MB)", SURGEON + ["inspect", str(path)], environment))
        rows.append(("  same, no watchdog", SURGEON + ["inspect", str(path)], unguarded))
        rows.append((f"surgeon inspect {path.name} --json", SURGEON + ["inspect", str(path), "--json"], environment))
    rows.append(("surgeon --help", SURGEON + ["--help"], environment))
    times: list[list[float]] = [[] for _ in rows]
    for _ in range(args.runs):  # interleaved rounds
        for index, (_, argv, env) in enumerate(rows):
            times[index].append(wall(argv, env))
    print(f"{'command':<50} {'median wall (s)':>16}   ({args.runs} runs each, interleaved)")
    for (label, _, _), runs in zip(rows, times):
        print(f"{label:<50} {statistics.median(runs):>16.3f}")


if __name__ == "__main__":
    main()
