"""What the fine-tune check costs ``prepare``: wall time with and without it, fresh processes.

The check runs in its own process (``surgeon.finetune_check.fine_tune_checker``), started before
the rewrite so that its TensorFlow start-up overlaps the rewrite and the verification. Each
repeat runs ``surgeon.prepare.prepare_file(MODEL, OUT)`` in a fresh Python process, alternately
with ``fine_tune=True`` and ``fine_tune=False``; the medians and their difference are printed.

    python bench/bench_fine_tune_check.py [MODEL] [--repeats 5]

MODEL defaults to fixtures/nested.h5.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import applications  # noqa: F401  (puts the surgeon beside this script on sys.path)

from surgeon.child_process import last_error_line, run_python

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "nested.h5")
_PREPARE = """
import sys
from surgeon.prepare import prepare_file
result = prepare_file(sys.argv[1], sys.argv[2], force=True, fine_tune=sys.argv[3] == "1")
sys.exit(0 if result.passed else 1)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", default=FIXTURE)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as scratch:
        output = os.path.join(scratch, "prepared" + os.path.splitext(args.model)[1])
        for _ in range(args.repeats):
            for fine_tune in (True, False):
                started = time.perf_counter()
                done = run_python(["-c", _PREPARE, args.model, output, "1" if fine_tune else "0"])
                if done.returncode != 0:
                    raise SystemExit(f"prepare failed: {last_error_line(done.stderr, done.returncode)}")
                times[fine_tune].append(time.perf_counter() - started)
    with_check, without = statistics.median(times[True]), statistics.median(times[False])
    print(f"{args.model}: prepare in a fresh process, median of {args.repeats}")
    print(f"  with the fine-tune check    {with_check:6.2f} s")
    print(f"  without (fine_tune=False)   {without:6.2f} s")
    print(f"  the check costs             {with_check - without:6.2f} s")


if __name__ == "__main__":
    main()
