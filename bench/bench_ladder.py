"""How time and peak memory of ``surgeon fold-bn`` grow with model size, MobileNetV2 to ConvNeXtXLarge.

Each rung is a keras.applications model at 224x224 (weights=None, random BN statistics, frozen:
``bench_fold_bn.make_model``; ConvNeXt, which has no BN, runs ``convert`` instead), so the input
and the activations stay small and what grows is the weights: 14 MB (MobileNetV2) to 1.4 GB
(ConvNeXtXLarge). For each rung, plain ``keras.models.load_model``, ``fold-bn`` with verification and ``fold-bn --no-verify`` run in fresh
processes, interleaved, --repeat times (median wall, median peak RSS: ``bench_fold_bn.bench_cli``).
The table gives each figure per MB of weights added over the smallest rung, so linear growth
shows as a steady slope, and ``extra copies``: (fold-bn RSS - plain RSS) / weights MB, the
number of weight copies verification holds beyond what a plain load holds (goal: at most one).
Verification must run the model once, and an eager Keras call keeps every activation until it
returns (DenseNet201 at 224x224: ~300 MB for one sample), so ``beyond load + call`` counts
against a plain load followed by one call on one sample (``bench_fold_bn.PLAIN_LOAD_AND_CALL``),
the issue's limit of one read and one forward pass.

Usage: python bench/bench_ladder.py [--only MobileNetV2,ResNet50] [--formats h5] [--repeat 1]
(one command; the largest rungs take minutes each and about 4x their file size in memory)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_fold_bn import bench_cli, load_average  # noqa: E402

LADDER = ("MobileNetV2", "ResNet50", "DenseNet201", "ResNet152", "EfficientNetB7", "ConvNeXtXLarge")
# ConvNeXt normalizes with LayerNormalization: fold-bn has nothing to fold (exit 2), so its rung
# times `convert` to the same format, the same read, write and verification of the whole model.
NO_BATCH_NORMALIZATION = ("ConvNeXtXLarge",)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated rungs (default: all of " + ", ".join(LADDER) + ")")
    parser.add_argument("--formats", default="h5")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    rungs = [arch for arch in LADDER if not args.only or arch.lower() in args.only.lower().split(",")]
    directory = tempfile.mkdtemp(prefix="bench_ladder_")
    print(f"{os.cpu_count()} CPUs; load average {load_average()} at the start; files in {directory}\n")
    print("| model | format | weights MB | plain s | verify s | x | no-verify s | plain RSS MB | plain + call RSS MB | "
          "verify RSS MB | x | no-verify RSS MB | extra copies | beyond load + call |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for arch in rungs:
        for fmt in args.formats.split(","):
            source = os.path.join(directory, f"{arch}.{fmt}")
            output = os.path.join(directory, f"{arch}.folded.{fmt}")
            subprocess.run([sys.executable, os.path.join(HERE, "bench_fold_bn.py"), "--make", arch, source], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            size = os.path.getsize(source) / 2**20
            command = "convert" if arch in NO_BATCH_NORMALIZATION else "fold-bn"
            results = bench_cli(source, output, args.repeat, failed_check_ok=True, command=command)
            (plain, plain_rss), (verify, verify_rss), (fast, fast_rss), (_, called_rss) = (
                results["plain load_model"], results["fold-bn (verify)"], results["fold-bn --no-verify"],
                results["load_model + one call"])
            print(f"| {arch}{' (convert)' if command == 'convert' else ''} | {fmt} | {size:.0f} | {plain:.2f} | {verify:.2f} | {verify / plain:.2f} | {fast:.2f} | "
                  f"{plain_rss:.0f} | {called_rss:.0f} | {verify_rss:.0f} | {verify_rss / plain_rss:.2f} | {fast_rss:.0f} | "
                  f"{(verify_rss - plain_rss) / size:.2f} | {(verify_rss - called_rss) / size:.2f} |", flush=True)
            for path in (source, output):  # the large rungs are GBs
                if os.path.exists(path):
                    os.unlink(path)
    print(f"\nload average {load_average()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
