"""Wall time of `surgeon inspect` on a ResNet50 .h5/.keras (and, with tf_keras installed, a tf.keras 2
SavedModel directory) against `python -c "import tensorflow"`.

Each command runs in a fresh process (as a user types it), several times; the median is reported.
The ResNet50 files are built once with weights=None (no download) under bench/out/.

    python bench/bench_inspect.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def median_wall(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    surgeon = shutil.which("surgeon") or str(Path(sys.executable).parent / "surgeon")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}; python {platform.python_version()}")
    rows = [("python -c 'import tensorflow'", [sys.executable, "-c", "import tensorflow"])]
    for path in ensure_resnet50() + ensure_resnet50_saved_model():
        rows.append((f"surgeon inspect {path.name} ({size_mb(path):.0f} MB)", [surgeon, "inspect", str(path)]))
        rows.append((f"surgeon inspect {path.name} --json", [surgeon, "inspect", str(path), "--json"]))
    rows.append(("surgeon --help", [surgeon, "--help"]))
    print(f"{'command':<56} {'median wall (s)':>16}   ({args.runs} runs each)")
    for label, argv in rows:
        print(f"{label:<56} {median_wall(argv, args.runs):>16.3f}")


if __name__ == "__main__":
    main()
