"""The library's layers: each sub-package imports only from the ones below it.

Order, bottom to top: ``toolkit`` → ``reactor`` → ``agents`` | ``correction`` (side by side,
never importing each other) → ``analysis`` → ``book`` → ``__main__``. Every import counts,
including those inside functions. The package's ``__init__`` re-exports the reactor, so it
may import ``toolkit`` and ``reactor`` only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "polycstr_lib"

#: Rank of each layer; a module may import its own layer's package or a lower rank.
RANKS = {"toolkit": 0, "reactor": 1, "agents": 2, "correction": 2, "analysis": 3, "book": 4}
TOP = 5  # __main__
#: Pairs of equal rank that must not import each other.
APART = {frozenset({"agents", "correction"})}


def _layer_of(module: str) -> str:
    """``polycstr_lib.reactor.env`` → ``reactor``; ``polycstr_lib.__main__`` → ``__main__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _rank(layer: str) -> float:
    if layer == "__main__":
        return TOP
    if layer == "__init__":  # just above the reactor, below agents and correction
        return RANKS["reactor"] + 0.5
    return RANKS[layer]


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """Every ``polycstr_lib`` module imported by a file, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "polycstr_lib":  # from polycstr_lib import reactor
                found += [(node.lineno, f"polycstr_lib.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, name))
    return [(line, name) for line, name in found if name.split(".")[0] == "polycstr_lib"]


def layer_violations(root: Path) -> list[str]:
    """Imports against the layer order in the package at ``root``, as readable lines."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        module = module.removesuffix(".__init__")
        mine = _layer_of(module)
        if mine not in RANKS and mine not in ("__init__", "__main__"):
            problems.append(f"{path}: module outside every layer ({mine})")
            continue
        for line, name in imported_modules(path, package):
            theirs = _layer_of(name)
            if theirs == mine or theirs not in RANKS:
                continue
            if frozenset({mine, theirs}) in APART or _rank(theirs) >= _rank(mine):
                problems.append(f"{path}:{line}: {mine} imports {name} ({theirs})")
    return problems


def test_every_import_follows_the_layer_order() -> None:
    assert layer_violations(LIBRARY) == []


def test_every_module_belongs_to_a_layer() -> None:
    top = {p.stem for p in LIBRARY.glob("*.py")}
    assert top == {"__init__", "__main__"}
    packages = {p.name for p in LIBRARY.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert packages == set(RANKS)


def _plant(tmp_path: Path, where: str, source: str) -> Path:
    root = tmp_path / "polycstr_lib"
    for layer in RANKS:
        (root / layer).mkdir(parents=True, exist_ok=True)
        (root / layer / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    target = root / where
    target.write_text(source)
    return root


@pytest.mark.parametrize(
    ("where", "source"),
    [
        ("reactor/env.py", "from polycstr_lib.analysis.results import results_table\n"),
        ("toolkit/store.py", "def f():\n    import polycstr_lib.reactor.env\n"),
        ("agents/runs.py", "from polycstr_lib.correction import safety\n"),
        ("correction/tuning.py", "from polycstr_lib.agents.runs import train_many\n"),
        ("analysis/curves.py", "from polycstr_lib import book\n"),
        ("reactor/metrics.py", "from ..book import glue\n"),
    ],
)
def test_a_planted_upward_import_is_caught(tmp_path: Path, where: str, source: str) -> None:
    root = _plant(tmp_path, where, source)
    problems = layer_violations(root)
    assert len(problems) == 1 and where.split("/")[0] in problems[0]


def test_downward_and_same_layer_imports_pass(tmp_path: Path) -> None:
    root = _plant(
        tmp_path,
        "analysis/curves.py",
        "from polycstr_lib.agents.runs import train_many\n"
        "from polycstr_lib.correction.safety import CorrectedPolicy\n"
        "from polycstr_lib.analysis.report import with_interval\n"
        "from polycstr_lib.toolkit import stats\n",
    )
    assert layer_violations(root) == []
