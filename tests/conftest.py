"""Shared test fixtures: paths of the bundled model files and models loaded once per session."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture_path(name: str) -> str:
    """``fixture_path("nested.h5")`` -> absolute path of a bundled fixture."""
    path = FIXTURES / name
    assert path.exists(), f"missing fixture {path}; run python fixtures/make_fixtures.py"
    return str(path)


@functools.lru_cache(maxsize=None)
def plain_model(name: str):
    """A fixture loaded once with plain ``keras.models.load_model`` (the independent reference)."""
    import keras

    return keras.models.load_model(fixture_path(name), compile=False)


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
