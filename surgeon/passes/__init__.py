"""Rewrite passes: pure functions ``spec -> (spec, PassReport)``; no I/O, no TensorFlow.

Each pass lives in its own module; ``registry.PASSES`` names them all in one table, so that a
pipeline such as ``prepare`` is a list of names (data), not new code.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from surgeon.spec import ModelSpec


@dataclasses.dataclass
class PassReport:
    """What a pass did: one entry per layer it touched (or left, with the reason)."""

    name: str
    changes: list[dict] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


Pass = Callable[[ModelSpec], tuple[ModelSpec, PassReport]]
