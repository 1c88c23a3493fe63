"""One rewrite flow: every command (split included) keeps the notes that explain automatic choices,
and every after-write check runs with the options the main check resolved."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
pytest.importorskip("keras")

import surgeon.convert  # noqa: E402
import surgeon.rewrite  # noqa: E402
import surgeon.split  # noqa: E402
from surgeon.convert import OriginalRuntimeCheck, convert_file  # noqa: E402
from surgeon.io import read_model  # noqa: E402
from surgeon.passes.split import split  # noqa: E402
from surgeon.rewrite import VerifyOptions  # noqa: E402
from surgeon.split import split_file, verify_split  # noqa: E402
from surgeon.verify import MIXED_PRECISION_RTOL, VerifyReport  # noqa: E402
from conftest import fixture_path  # noqa: E402


def test_convert_cross_check_against_keras2_uses_the_resolved_samples_and_rtol(tmp_path, monkeypatch):
    # As for a large mixed-precision model: 3 samples and the float16 tolerance, chosen by resolve.
    monkeypatch.setattr(surgeon.rewrite, "verification_samples", lambda spec: 3)
    monkeypatch.setattr(surgeon.rewrite, "low_precision_layers", lambda spec: ["dense"])
    seen = {}

    def fake_cross_check(original, candidate, *, samples, atol, rtol, allow_code=False, weights=None):
        seen.update(samples=samples, atol=atol, rtol=rtol)
        return OriginalRuntimeCheck(True, "not run in this test", None)

    monkeypatch.setattr(surgeon.convert, "check_against_keras2", fake_cross_check)
    result = convert_file(fixture_path("keras2/k2_sequential.h5"), str(tmp_path / "out.keras"))
    assert result.passed
    assert result.verification.samples == 3 and result.verification.rtol == MIXED_PRECISION_RTOL
    assert seen == {"samples": 3, "atol": result.verification.atol, "rtol": MIXED_PRECISION_RTOL}


def test_split_keeps_the_notes_that_explain_automatic_choices(tmp_path, monkeypatch):
    monkeypatch.setattr(surgeon.rewrite, "verification_samples", lambda spec: 2)
    result = split_file(fixture_path("keras2/k2_nested.h5"), directory=str(tmp_path))
    assert result.passed
    assert any(note.startswith("verified on 2 samples") for note in result.notes), result.notes
    assert any(note.startswith("Keras 2") for note in result.notes), result.notes  # the reader's notes too
    assert result.to_json()["notes"] == result.notes


def test_a_split_check_that_compared_nothing_does_not_pass(tmp_path, monkeypatch):
    original = read_model(fixture_path("nested.keras"))
    result = split_file(fixture_path("nested.keras"), directory=str(tmp_path), verify=VerifyOptions(enabled=False))
    _, _, report = split(original, None)
    monkeypatch.setattr(surgeon.split, "compose_checks", lambda *args, **kwargs: [])
    options, _ = VerifyOptions().resolve(original)
    verdict = verify_split(original, result.base, result.top, report, options)
    assert verdict.checks == [] and not verdict.passed


def test_no_output_compared_is_not_a_pass():
    assert not VerifyReport.of([], 8, 1e-6, 1e-4).passed


def test_split_prints_the_readers_notes_as_written(tmp_path):
    from typer.testing import CliRunner

    from surgeon.cli import app

    result = CliRunner().invoke(app, ["split", fixture_path("keras2/k2_nested.h5"), "-o", str(tmp_path), "--samples", "2"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "axis list [n] written as int n" in result.output  # not eaten as rich markup
