"""affine_ops: every (scale, offset) it gives computes, as x * scale + offset in float32, what numpy's
own operator computes; where that cannot be exact it says so (None) or stays within a rounding."""

from __future__ import annotations

import operator

import numpy as np
import pytest

from surgeon.io.affine_ops import rescaling_of

X = np.random.default_rng(0).uniform(-100, 100, size=(64, 3)).astype(np.float32)
OPS = {"add": operator.add, "subtract": operator.sub, "multiply": operator.mul, "divide": operator.truediv}


def rescaled(scale, offset) -> np.ndarray:
    return X * np.float32(scale) + np.float32(offset) if not isinstance(scale, list) else \
        X * np.asarray(scale, np.float32) + np.asarray(offset, np.float32)


@pytest.mark.parametrize("operation", ["add", "subtract", "multiply"])
@pytest.mark.parametrize("constant", [2.5, -0.75, 3.0, [1.5, -2.0, 0.25]])
@pytest.mark.parametrize("constant_first", [False, True])
def test_add_subtract_multiply_are_exact_either_way_round(operation, constant, constant_first):
    c = np.asarray(constant, np.float32)
    expected = OPS[operation](c, X) if constant_first else OPS[operation](X, c)
    affine = rescaling_of(operation, constant, constant_first, inexact_division=False)
    assert affine is not None
    np.testing.assert_array_equal(rescaled(*affine), expected)


@pytest.mark.parametrize("constant", [4.0, 0.5, -2.0, [2.0, 0.25, -8.0]])
def test_division_by_a_power_of_two_is_exact(constant):
    affine = rescaling_of("divide", constant, False, inexact_division=False)
    np.testing.assert_array_equal(rescaled(*affine), X / np.asarray(constant, np.float32))


def test_other_divisions_only_when_the_caller_accepts_a_rounding():
    assert rescaling_of("divide", 3.0, False, inexact_division=False) is None
    affine = rescaling_of("divide", 3.0, False, inexact_division=True)
    np.testing.assert_allclose(rescaled(*affine), X / np.float32(3.0), rtol=2.5e-7, atol=0)


@pytest.mark.parametrize("constant", [0.0, float("inf"), [1.0, 0.0, 2.0]])
def test_division_by_zero_or_infinity_and_constant_over_tensor_have_no_rescaling(constant):
    assert rescaling_of("divide", constant, False, inexact_division=True) is None
    assert rescaling_of("divide", 2.0, True, inexact_division=True) is None


def test_negative():
    np.testing.assert_array_equal(rescaled(*rescaling_of("negative", 0.0, False, inexact_division=False)), -X)
