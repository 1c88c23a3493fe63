"""The one reader registry (io/formats.py) and the one pass table (passes/registry.py)."""

from __future__ import annotations

import pytest

import surgeon.io.formats as formats
from conftest import fixture_path
from surgeon.errors import SurgeonError
from surgeon.io import read_model
from surgeon.io.formats import Reader, unique_readers
from surgeon.passes.registry import PASSES, pass_table


def test_a_new_reader_joins_with_one_row(tmp_path, monkeypatch):
    marker = tmp_path / "model.toy"
    marker.write_text("toy")
    read_by_toy = []

    def read_toy(path, *, values=True):
        read_by_toy.append((path, values))
        return read_model(fixture_path("convbn.h5"), values=values)

    toy = Reader("toy", "a toy format", lambda path: path.endswith(".toy"), read_toy)
    with pytest.raises(SurgeonError, match="not a Keras model file"):
        read_model(str(marker))
    monkeypatch.setattr(formats, "READERS", unique_readers(toy, *formats.READERS))
    spec = read_model(str(marker), values=False)
    assert read_by_toy == [(str(marker), False)] and "bn1" in spec.weights
    assert formats.detect_input(str(marker)) == "toy"
    assert formats.detect_input(fixture_path("convbn.h5")) == "h5"  # the others still read theirs


def test_a_reader_name_registered_twice_is_refused():
    with pytest.raises(KeyError, match="'h5' is already registered"):
        unique_readers(*formats.READERS, formats.READERS[0])


def test_a_pass_name_registered_twice_is_refused():
    with pytest.raises(KeyError, match="'freeze' is already registered"):
        pass_table(("freeze", PASSES["freeze"]), ("freeze", PASSES["fold_bn"]))
