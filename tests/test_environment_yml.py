"""environment.yml (Binder, conda) installs what `make venv` (pyproject.toml) installs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
# the extras `make venv` installs: pip install -e '.[book,test]'
MAKE_EXTRAS = ("book", "test")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _make_extras() -> tuple[str, ...]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"-e '\.\[([a-z,]+)\]'", makefile)
    assert match, "the Makefile's venv recipe no longer installs -e '.[extras]'"
    return tuple(match[1].split(","))


def _requirements(lines) -> dict[str, SpecifierSet]:
    out: dict[str, SpecifierSet] = {}
    for line in lines:
        req = Requirement(line)
        name = req.name.lower().replace("_", "-")
        assert name not in out, f"{name} listed twice"
        out[name] = req.specifier
    return out


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))


def _pip_section(env: dict) -> list[str]:
    pips = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pips) == 1, "environment.yml needs exactly one pip section"
    return pips[0]


def test_make_venv_installs_the_extras_this_test_compares():
    assert _make_extras() == MAKE_EXTRAS


def test_environment_yml_pins_what_pyproject_pins():
    project = _pyproject()["project"]
    expected_lines = list(project["dependencies"])
    for extra in MAKE_EXTRAS:
        expected_lines += project["optional-dependencies"][extra]
    expected = _requirements(expected_lines)
    pip = _pip_section(_environment())
    options = [p for p in pip if p.startswith("-")]
    listed = _requirements([p for p in pip if not p.startswith("-")])
    assert listed == expected, (
        f"only in environment.yml: {sorted(set(listed) - set(expected))}; "
        f"only in pyproject.toml: {sorted(set(expected) - set(listed))}; "
        "different versions: "
        f"{sorted(n for n in set(listed) & set(expected) if listed[n] != expected[n])}"
    )
    # and the library itself, with the same extras, editable from the clone
    assert f"-e .[{','.join(MAKE_EXTRAS)}]" in options


def test_environment_yml_python_satisfies_requires_python():
    env = _environment()
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and re.match(r"python[=<>]", d)]
    assert len(pythons) == 1, pythons
    version = re.sub(r"^python=+", "", pythons[0])
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert version in requires, f"{pythons[0]} against requires-python {requires}"


def test_requirement_comparison_can_fail():
    assert _requirements(["torch==2.13.0"]) != _requirements(["torch==2.12.0"])
    assert _requirements(["numpy>=1.26"]) != _requirements(["numpy>=1.26", "scipy"])
