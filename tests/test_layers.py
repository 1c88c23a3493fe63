"""Each module sits on one level: it imports only from its own level or those below, with no loop.

The levels are the README's development map; a new module joins the level its imports allow
(a new reader: ``surgeon/io/``, found by prefix; a new top-level module: a row in ``LEVELS``).
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "surgeon")

# Lowest first. A name covers the module and, for a package, everything under it.
LEVELS = [
    ("foundation", ["surgeon.errors", "surgeon.spec", "surgeon.layer_kinds", "surgeon.weight_names", "surgeon.math",
                    "surgeon.child_process"]),
    ("model views", ["surgeon.graph", "surgeon.graph_edit", "surgeon.params"]),
    ("doors (readers and writers)", ["surgeon.io"]),
    ("passes", ["surgeon.passes"]),
    ("checks and reports", ["surgeon.verify", "surgeon.inspection", "surgeon.diff", "surgeon.report"]),
    ("flows", ["surgeon.rewrite", "surgeon.fold", "surgeon.split", "surgeon.prepare", "surgeon.convert",
               "surgeon.features", "surgeon.finetune_check"]),
    ("commands", ["surgeon.commands", "surgeon.cli"]),
]


def module_names() -> dict[str, str]:
    found = {}
    for directory, _, files in os.walk(ROOT):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(directory, file)
                parts = os.path.relpath(path, os.path.dirname(ROOT))[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join(parts)] = path
    return found


MODULES = module_names()


def level_of(module: str) -> int | None:
    best, level = -1, None
    for index, (_, names) in enumerate(LEVELS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, level = len(name), index
    return level


def imports_of(module: str) -> list[tuple[str, bool]]:
    """(imported surgeon module, at module level?) for every import statement in ``module``."""
    path = MODULES[module]
    is_package = path.endswith("__init__.py")
    found = []
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(name, node.col_offset == 0) for name in names if name.startswith("surgeon.")]
    return found


def development_map() -> str:
    readme = open(os.path.join(ROOT, "..", "README.md"), encoding="utf-8").read()
    return readme[readme.index("## Development"):]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not MODULES[m].endswith("__init__.py")))
def test_readme_development_map_names_the_module(module):
    stem = module.rsplit(".", 1)[-1]
    text = development_map()
    assert f"`{stem}.py`" in text or f"`{stem}`" in text, f"README's development map does not name {module}: add it at its level"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "surgeon"))
def test_module_imports_only_its_level_or_below(module):
    level = level_of(module)
    assert level is not None, f"{module} has no level: add it to LEVELS here and to the README's development map"
    for imported, _ in imports_of(module):
        other = level_of(imported)
        assert other is not None and other <= level, (
            f"{module} ({LEVELS[level][0]}) imports {imported} ({LEVELS[other][0] if other is not None else '?'}), "
            "a level above it: move the shared code down, or the module up"
        )


def test_no_import_loop():
    # Importing a.b.c runs a/__init__ and a/b/__init__ first, so those count as imported too.
    edges = {}
    for module in MODULES:
        targets = set()
        for imported, _ in imports_of(module):
            parts = imported.split(".")
            for end in range(2, len(parts) + 1):
                name = ".".join(parts[:end])
                if name in MODULES and name != module and not module.startswith(name + "."):
                    targets.add(name)
        edges[module] = targets
    done, path = set(), []

    def visit(module):
        if module in path:
            loop = path[path.index(module):] + [module]
            pytest.fail("import loop: " + " -> ".join(loop))
        if module in done:
            return
        path.append(module)
        for target in sorted(edges[module]):
            visit(target)
        path.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)
