"""Long fuzzing run of surgeon's readers and ``inspect`` (the CI test runs a few hundred cases).

Uses the mutation engine of ``tests/test_fuzz.py`` with a plain seeded ``random.Random``, so every
case is reproducible from (seed, case number). A case passes when ``read_model`` and
``inspect_spec`` either succeed or raise SurgeonError; anything else is a crash, printed with the
mutations that produced it.

Usage:
    python bench/fuzz_long.py [--examples N] [--seconds S] [--seed K] [--base convbn.h5,...] [--first CASE]

Stops after N cases or S seconds, whichever comes first; prints cases run, how many files were
read, how many refused, and every crash (exit status 1 if any). A case that runs longer than
--case-timeout is a hang: the run stops there with a stack dump, and the last progress line names
the case (libhdf5 1.14.6 can loop forever on some corrupted object headers; see tests/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import os
import random
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import tempfile  # noqa: E402

from test_fuzz import BASES, Draw, check_one, mutated_file  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", default=",".join(BASES), help="comma-separated fixture names")
    parser.add_argument("--first", type=int, default=0, help="start at this case number (to reproduce one)")
    parser.add_argument("--case-timeout", type=float, default=60.0, help="seconds before a case counts as a hang")
    parser.add_argument("--save", metavar="PATH", help="write case --first's file to PATH and stop, without reading it "
                        "(how fixtures/hang_object_header.h5 was made: --seed 1 --first 4730)")
    args = parser.parse_args()
    if args.save:
        return save_case(args.seed, args.first, args.base.split(","), args.save)

    bases = args.base.split(",")
    outcomes: collections.Counter = collections.Counter()
    crashes: dict[str, tuple[int, str, list[str], str]] = {}  # signature -> first (case, base, steps, traceback)
    start = time.perf_counter()
    case = args.first
    while case - args.first < args.examples and time.perf_counter() - start < args.seconds:
        rng, base = case_source(args.seed, case, bases)
        steps: list[str] = []
        # A hang inside libhdf5 holds the GIL, so no Python-level timeout can fire; faulthandler's
        # watchdog is a C thread: it prints where the process is stuck and exits. The progress line
        # on stdout names the case to reproduce with --first.
        print(f"case {case} ({base})", end="\r", flush=True)
        faulthandler.dump_traceback_later(args.case_timeout, exit=True)
        try:
            with tempfile.TemporaryDirectory() as directory:
                path, steps = mutated_file(base, Draw(rng.randint), directory)
                outcomes[check_one(path)] += 1
        except Exception as error:  # noqa: BLE001 - a crash is what we are looking for
            outcomes["crash"] += 1
            frame = traceback.extract_tb(error.__traceback__)[-1]
            signature = f"{type(error).__name__} at {os.path.relpath(frame.filename)}:{frame.lineno}"
            crashes.setdefault(signature, (case, base, steps, "".join(traceback.format_exception(error))[-1500:]))
        finally:
            faulthandler.cancel_dump_traceback_later()
        case += 1
    elapsed = time.perf_counter() - start

    print(f"cases run: {case - args.first} in {elapsed:.1f} s ({(case - args.first) / max(elapsed, 1e-9):.0f}/s), seed {args.seed}")
    print(f"read fine: {outcomes['ok']}, refused with SurgeonError: {outcomes['refused']}, crashes: {outcomes['crash']}")
    for signature, (number, base, steps, text) in crashes.items():
        print(f"\nCRASH {signature}\n  first at case {number} ({base}; reproduce: --seed {args.seed} --first {number} --examples 1)\n  mutations: {steps}\n{text}")
    return 1 if crashes else 0


def case_source(seed: int, case: int, bases: list[str]) -> tuple[random.Random, str]:
    """The random source and the fixture of one case: what makes (seed, case) reproducible."""
    return random.Random(f"{seed}:{case}"), bases[case % len(bases)]


def save_case(seed: int, case: int, bases: list[str], target: str) -> int:
    import shutil

    rng, base = case_source(seed, case, bases)
    with tempfile.TemporaryDirectory() as directory:
        path, steps = mutated_file(base, Draw(rng.randint), directory)
        shutil.copyfile(path, target)
    print(f"case {case} of seed {seed} ({base}; mutations: {steps}) written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
