"""Every pass by name, in one table: the pipelines (``prepare``, ``freeze``) name their steps from it.

A new pass is a module of its own plus one row here; a name given twice is refused, as
coremltools' pass registry refuses it, so that no pass silently shadows another.

Example:
    >>> sorted(PASSES)
    ['fold_bn', 'freeze', 'freeze_bn', 'recompile', 'strip_dropout']
"""

from __future__ import annotations

from surgeon.passes import Pass
from surgeon.passes.fold_bn import fold_bn
from surgeon.passes.freeze import freeze, freeze_batchnorm
from surgeon.passes.recompile import recompile
from surgeon.passes.strip_dropout import strip_dropout


def pass_table(*rows: tuple[str, Pass]) -> dict[str, Pass]:
    """``{name: pass}`` from ``(name, pass)`` rows, refusing a name given twice."""
    table: dict[str, Pass] = {}
    for name, function in rows:
        if name in table:
            raise KeyError(f"pass {name!r} is already registered")
        table[name] = function
    return table


PASSES = pass_table(
    ("freeze", freeze),
    ("freeze_bn", freeze_batchnorm),
    ("fold_bn", fold_bn),
    ("strip_dropout", strip_dropout),
    ("recompile", recompile),
)
