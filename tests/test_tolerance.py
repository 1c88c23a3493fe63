"""Verification that cannot pass on nothing (issue 11 item 4).

The old rule ``max abs <= 1e-6 + 1e-4 x scale`` passed any rewrite of a model whose outputs are
~1e-7 (untrained weights, a deep base), and any rewrite of a model whose outputs are all zero.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

import surgeon.math as bn_math  # noqa: E402
from surgeon.fold import fold_bn_file  # noqa: E402
from surgeon.rewrite import verify_files  # noqa: E402
from surgeon.verify import compare, rounding_floors, run  # noqa: E402


def conv_bn_model(path, *, head_scale: float = 1.0, threshold: float = 0.0, zero_head: bool = False, variance: float = 0.01,
                  epsilon: float = 1e-3) -> str:
    """Conv -> frozen BN (statistics far from identity) -> ReLU -> GAP -> Dense, saved at ``path``."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, name="conv")(inputs)
    bn = keras.layers.BatchNormalization(name="bn", epsilon=epsilon, trainable=False)
    x = keras.layers.ReLU(threshold=threshold, name="relu")(bn(x))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    head = keras.layers.Dense(4, name="head")
    model = keras.Model(inputs, head(x))
    bn.set_weights([np.linspace(0.5, 2, 6), np.linspace(-0.2, 0.3, 6), np.linspace(-0.1, 0.1, 6), np.linspace(0.2, 1, 6) * variance])
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.zeros_like(bias)] if zero_head else [kernel * head_scale, bias * 0])
    model.save(path)
    return str(path)


@pytest.fixture
def fold_without_epsilon(monkeypatch):
    """The classic folding bug: s = gamma / sqrt(var), epsilon forgotten (off by ~10-20% here)."""
    original = bn_math.bn_affine

    def wrong(gamma, beta, moving_mean, moving_variance, epsilon):
        return original(gamma, beta, moving_mean, moving_variance, 0.0)

    monkeypatch.setattr(bn_math, "bn_affine", wrong)


def test_a_wrong_fold_on_a_model_with_outputs_of_1e_7_is_caught(tmp_path, fold_without_epsilon):
    source = conv_bn_model(tmp_path / "tiny.h5", head_scale=1e-7)
    reference = keras.models.load_model(source)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 8, 8, 3)).astype("float32")
    assert np.abs(reference.predict(x, verbose=0)).max() < 1e-6  # below the old constant atol
    result = fold_bn_file(source, str(tmp_path / "folded.h5"))
    assert not result.passed and result.output is None
    assert not (tmp_path / "folded.h5").exists()


def test_the_right_fold_of_the_same_model_passes(tmp_path):
    source = conv_bn_model(tmp_path / "tiny.h5", head_scale=1e-7)
    result = fold_bn_file(source, str(tmp_path / "folded.h5"))
    assert result.passed, result.verification.checks
    check = result.verification.checks[0]
    assert check.scale < 1e-6 and check.floor < 1e-4 * check.scale  # the relative term decides


def test_the_floor_follows_float32_rounding_of_the_outputs_scale(tmp_path):
    """The same model with its head scaled by 1e-7 gets a floor ~1e-7 times smaller: not a constant."""
    x = [np.random.default_rng(0).uniform(-1, 1, (8, 8, 8, 3)).astype("float32")]
    floors = []
    for scale in (1.0, 1e-7):
        model = keras.models.load_model(conv_bn_model(tmp_path / f"m{scale}.h5", head_scale=scale))
        floors.append(rounding_floors(model, x, run(model, x))[0])
    assert floors[0] > 0 and floors[1] == pytest.approx(floors[0] * 1e-7, rel=0.5)


def test_an_all_zero_output_proves_nothing_and_fails(tmp_path):
    source = conv_bn_model(tmp_path / "zero.h5", zero_head=True)
    report = verify_files(source, source)
    assert not report.passed
    assert "proves nothing" in " ".join(report.notes) and "--inputs" in report.problem


def test_inputs_are_widened_until_the_outputs_vary_and_then_a_wrong_fold_is_caught(tmp_path, fold_without_epsilon):
    # ReLU(threshold=8) is zero for every seeded input in [-1, 1]: the head outputs only its bias.
    source = conv_bn_model(tmp_path / "dead.h5", threshold=8.0, variance=4.0, epsilon=0.1)
    model = keras.models.load_model(source)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 8, 8, 3)).astype("float32")
    assert np.ptp(model.predict(x, verbose=0), axis=0).max() == 0
    result = fold_bn_file(source, str(tmp_path / "folded.h5"))
    assert any("trying wider" in note for note in result.verification.notes)
    assert not result.passed and result.verification.checks


def test_compare_passes_within_rtol_times_scale_plus_floor():
    reference = [np.array([[1.0, -2.0]], "float32")]
    near = [np.array([[1.0, -2.0 + 1.5e-4]], "float32")]
    assert compare(reference, near, ["y"], mode="inference", rtol=1e-4, floors=[0.0])[0].passed
    assert not compare(reference, [reference[0] + 3e-4], ["y"], mode="inference", rtol=1e-4, floors=[0.0])[0].passed
    assert compare(reference, [reference[0] + 3e-4], ["y"], mode="inference", rtol=1e-4, floors=[2e-4])[0].passed


def test_the_floor_is_measured_only_when_the_relative_tolerance_alone_fails(tmp_path):
    """A floor only widens the tolerance: the forward pass measuring it is spent only on a check
    that fails without it. Then it comes from the reference rebuilt from the input file."""
    from conftest import fixture_path, plain_model
    from surgeon.rewrite import VerifyOptions
    from surgeon.verify import seeded_inputs

    source = fixture_path("dense_bn.keras")
    loose = fold_bn_file(source, str(tmp_path / "loose.h5"))
    assert loose.passed and all(check.floor == 0 for check in loose.verification.checks)
    # Folding leaves ~1e-7 of the scale: rtol=1e-9 alone fails, the measured floor covers it.
    strict = fold_bn_file(source, str(tmp_path / "strict.h5"), verify=VerifyOptions(rtol=1e-9))
    assert strict.passed, strict.verification.checks
    model = plain_model("dense_bn.keras")  # Keras' own load, on the inputs the check used
    x = seeded_inputs(model, strict.verification.samples)
    expected_floor = rounding_floors(model, x, run(model, x))[0]
    assert [check.floor for check in strict.verification.checks] == [pytest.approx(expected_floor)] * 2


def test_with_floors_measures_once_and_only_on_a_failure():
    from surgeon.verify import with_floors

    calls = []

    def measure():
        calls.append(1)
        return [1.0]

    reference, off = [np.array([[1.0]])], [np.array([[1.5]])]
    checks = with_floors(lambda f: compare(reference, reference, ["y"], mode="inference", rtol=1e-4, floors=f), None, measure)
    assert checks[0].passed and not calls
    checks = with_floors(lambda f: compare(reference, off, ["y"], mode="inference", rtol=1e-4, floors=f), None, measure)
    assert checks[0].passed and checks[0].floor == 1.0 and calls == [1]
    checks = with_floors(lambda f: compare(reference, off, ["y"], mode="inference", rtol=1e-4, floors=f), [0.1], measure)
    assert not checks[0].passed and calls == [1]  # floors given (--atol) are used as they are
