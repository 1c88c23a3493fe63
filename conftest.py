"""Docstring examples run as tests: ``--doctest-modules`` (pyproject.toml) over ``surgeon/``.

Examples run from the repository root, so they can read ``fixtures/``. The modules listed below
show whole workflows whose examples need TensorFlow (building, loading or fine-tuning Keras
models) or the user's own files; every other module's examples must run as written. A new
module whose examples need TensorFlow joins the list.
"""

from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.abspath(__file__))

collect_ignore = [
    os.path.join("surgeon", name)
    for name in ("convert.py", "features.py", "finetune_check.py", "fold.py", "prepare.py", "rewrite.py", "split.py")
]


@pytest.fixture(autouse=True)
def _examples_run_from_the_repository_root(request, monkeypatch):
    if type(request.node).__name__ == "DoctestItem":
        monkeypatch.chdir(ROOT)
