"""Rerun one page of the book: as the build ran it, or with its notebook's own defaults.

The build records the parameters it injected into each page in the executed copy's
papermill metadata (``metadata.papermill.parameters``, the profile's values and the budgets
read from the learning curves included). :func:`rerun_page` reads them back and runs the
page's source notebook with exactly those, so the rerun's glued numbers equal the book's
(``python -m polycstr_lib numbers --executed rerun --against book/executed``); with
``defaults=True`` it runs the notebook's parameters cell as it stands. :func:`render_page`
turns one executed notebook into an HTML page with its glued prose, as the book shows it.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polycstr_lib.book.profiles import EXECUTED_DIR, NOTEBOOK_DIR, REPO_ROOT, RUNS
from polycstr_lib.toolkit.store import ReportedError

__all__ = [
    "JUPYTER_BOOK",
    "RenderError",
    "RerunPlan",
    "built_parameters",
    "render_page",
    "rerun_page",
    "rerun_plan",
]

#: Jupyter Book's command line in this interpreter (the package has no ``__main__``).
JUPYTER_BOOK = (
    sys.executable,
    "-c",
    "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
)


class RenderError(ReportedError, RuntimeError):
    """Jupyter Book could not render a notebook (its output ends the message)."""


#: Where reruns are written by default (ignored by git).
RERUN_DIR = REPO_ROOT / "rerun"


@dataclass(frozen=True)
class RerunPlan:
    """What a rerun executes: the source notebook, its parameters, and where it writes."""

    page: str  # the book's page, e.g. "05_results_startup"
    source: Path  # notebooks/<notebook>.ipynb
    output: Path  # the executed rerun
    parameters: dict[str, Any]  # injected into the parameters cell ({} for the defaults)
    parameters_file: Path | None  # the same parameters as YAML (None for the defaults)

    def command(self) -> str:
        """The equivalent papermill command line (run from the repository root)."""
        parts = ["papermill", _relative(self.source), _relative(self.output)]
        if self.parameters_file is not None:
            parts += ["-f", _relative(self.parameters_file)]
        parts += ["--cwd", _relative(NOTEBOOK_DIR), "--log-output"]
        return shlex.join(parts)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def built_parameters(page: str, executed_dir: Path = EXECUTED_DIR) -> dict[str, Any]:
    """The parameters the build injected into ``page`` (read from its executed copy).

    Raises:
        ValueError: no executed copy of ``page`` (build the book first), or one without a
            papermill record.
    """
    path = Path(executed_dir) / f"{page}.ipynb"
    if not path.is_file():
        raise ValueError(
            f"no executed page {path}; build the book first (`make book`), or rerun with --defaults"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))["metadata"]["papermill"]
        return dict(meta["parameters"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: no papermill record of its parameters ({error})") from None


def rerun_plan(
    page: str,
    defaults: bool = False,
    output_dir: Path = RERUN_DIR,
    executed_dir: Path = EXECUTED_DIR,
) -> RerunPlan:
    """What :func:`rerun_page` would run for ``page``.

    Raises:
        ValueError: an unknown page (the message lists the pages), or no executed copy to
            read the build's parameters from.
    """
    runs = {run.page: run for run in RUNS}
    if page not in runs:
        raise ValueError(f"no page {page} in the book; pages: {', '.join(runs)}")
    source = NOTEBOOK_DIR / f"{runs[page].notebook}.ipynb"
    output_dir = Path(output_dir)
    suffix = "-defaults" if defaults else ""
    output = output_dir / f"{page}{suffix}.ipynb"
    if defaults:
        return RerunPlan(page, source, output, {}, None)
    parameters = built_parameters(page, executed_dir)
    return RerunPlan(page, source, output, parameters, output_dir / f"{page}.parameters.yaml")


def rerun_page(plan: RerunPlan, log_output: bool = True) -> Path:
    """Executes ``plan`` with papermill (cell outputs shown as they come) and returns the
    executed notebook's path; writes the parameters file first."""
    import papermill
    import yaml

    plan.output.parent.mkdir(parents=True, exist_ok=True)
    if plan.parameters_file is not None:
        plan.parameters_file.write_text(yaml.safe_dump(plan.parameters, sort_keys=True))
    papermill.execute_notebook(
        str(plan.source),
        str(plan.output),
        parameters=plan.parameters,
        cwd=str(NOTEBOOK_DIR),
        log_output=log_output,
        progress_bar=sys.stderr.isatty(),
    )
    return plan.output


def render_page(notebook: Path) -> Path:
    """Renders one executed notebook to HTML with its glued prose (Jupyter Book, one page,
    the book's configuration; nothing is executed again).

    Returns:
        The HTML file.

    Raises:
        ValueError: ``notebook`` is not an existing ``.ipynb`` file.
        RenderError: the page build failed (the last line of its output is in the message).
    """
    notebook = Path(notebook).resolve()
    if not notebook.is_file() or notebook.suffix != ".ipynb":
        raise ValueError(f"{notebook} is not an executed notebook (.ipynb)")
    command = [*JUPYTER_BOOK, "build", str(notebook), "--config", str(REPO_ROOT / "_config.yml")]
    done = subprocess.run(command, cwd=notebook.parent, capture_output=True, text=True)
    # Jupyter Book says where it put the page (beside the notebook, or under the project's
    # _build/ when the notebook lies inside one)
    said = re.search(r"Open your page at: (\S+\.html)", done.stdout)
    html = (notebook.parent / said[1]).resolve() if said else notebook.with_suffix(".html")
    if done.returncode != 0 or not html.is_file():
        tail = (done.stdout[-1500:] + done.stderr[-500:]).strip().splitlines()[-1:]
        raise RenderError(f"rendering {notebook} failed: {' '.join(tail) or 'no output'}")
    return html
