"""The surgeon beside these scripts, run in child processes as an installed copy runs.

``pip install`` compiles a package's bytecode; a checkout on PYTHONPATH gets it on first import,
unless PYTHONDONTWRITEBYTECODE is set (as on some CI machines and this sandbox), and then every
process compiles surgeon's ~70 modules from source again: 0.07 s of a 0.5 s ``inspect``. The
benchmarks time surgeon, not the compiler, so they compile it once up front.
"""

from __future__ import annotations

import compileall
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def environment(**extra: str) -> dict[str, str]:
    """``os.environ`` with the checkout first on PYTHONPATH (bytecode compiled) and ``extra``."""
    compileall.compile_dir(os.path.join(ROOT, "surgeon"), quiet=1)
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}
