"""Placeholder shapes for the translated graph: Keras replaces them with the real tensors.

The shape rules themselves (which slicing rules need too) are the one table in ``surgeon.shapes``.
"""

from __future__ import annotations

from surgeon.shapes import infer_shape

__all__ = ["infer_shape", "placeholder_shape"]


def placeholder_shape(shape, like=None):
    if shape is not None:
        return list(shape)
    if like is not None:
        return [None] * len(like)
    return [None]
