"""Arithmetic of a tensor and a constant as one ``Rescaling(scale, offset)``: y = x * scale + offset.

Both doors meet such arithmetic where Keras 3 has no layer to load it as: Keras 2 files as
TFOpLambda layers (``tf.math.multiply``, ``__operators__.add``, ...), Keras 3 configs as bare
``keras.ops`` nodes (``Add``, ``TrueDivide``, ...). They spell the operation differently; the
algebra lives here once.
"""

from __future__ import annotations

import math

Constant = float | list[float]  # a scalar, or one value per channel (broadcast over the last axis)


def rescaling_of(operation: str, constant: Constant, constant_first: bool, *,
                 inexact_division: bool) -> tuple[Constant, Constant] | None:
    """``(scale, offset)`` of ``x op c`` (``c op x`` when ``constant_first``), or None when no
    Rescaling computes it. ``operation``: add, subtract, multiply, divide, negative (``constant``
    ignored).

    All results are exact in IEEE arithmetic (x*1 == x, x - c == x + (-c)) except division:
    x / c becomes x * (1/c), exact only when c is a power of two and otherwise within about one
    float32 rounding of the division. ``inexact_division`` says whether the caller accepts that
    (``c / x`` never has a Rescaling).
    """
    c = constant
    if operation == "negative":
        return -1.0, 0.0
    if operation == "add":
        return _like(c, 1.0), c
    if operation == "subtract":
        return (_like(c, -1.0), c) if constant_first else (_like(c, 1.0), _map(c, lambda a: -a))
    if operation == "multiply":
        return c, _like(c, 0.0)
    if operation == "divide" and not constant_first:
        values = c if isinstance(c, list) else [c]
        if any(a == 0 or not math.isfinite(a) for a in values):
            return None
        if inexact_division or all(_power_of_two(a) for a in values):
            return _map(c, lambda a: 1.0 / a), _like(c, 0.0)
    return None


def _power_of_two(c: float) -> bool:
    mantissa, _ = math.frexp(abs(c))
    return mantissa == 0.5 and 2.0 ** -126 <= abs(1.0 / c) <= 2.0 ** 127


def _like(c: Constant, value: float) -> Constant:
    return [value] * len(c) if isinstance(c, list) else value


def _map(c: Constant, fn) -> Constant:
    return [fn(a) for a in c] if isinstance(c, list) else fn(c)
