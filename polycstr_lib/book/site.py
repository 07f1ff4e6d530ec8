"""The book's public address, its notebooks' install cell, and the Sphinx extension that
applies both at build time.

One source for where the project lives (:func:`public_repository`): the ``owner/name`` of
its GitHub repository, taken from ``GITHUB_REPOSITORY`` (set by GitHub Actions, so by the
Pages workflow), else from the ``origin`` remote of the checkout, else absent (``None``).

Everything that names the repository reads that one value:

- the repository button and the Binder and Colab launch buttons (this module, loaded by
  ``_config.yml`` as a Sphinx extension, sets ``html_theme_options`` when Sphinx starts;
  without an address it removes those buttons);
- the launch links open the parameterised sources ``notebooks/NN_name.ipynb``, not the
  papermill copies under ``book/executed/`` that the pages are built from (which are not in
  the repository): :func:`launch_url` maps a page to its source;
- every notebook's first cell, the install cell (:func:`install_cell_source`): with an
  address it pip-installs the library from ``git+https://github.com/owner/name``; without
  one it says how to install from a local clone (``pip install -e .``). The build writes
  the cell of the resolved address into the executed copies (:func:`prepare_page`), so
  the pages and their ``.ipynb`` downloads carry it; the committed sources carry the cell of
  the address this checkout resolves, or the local one (``python -m polycstr_lib.book.site
  notebooks`` rewrites them).

:func:`prepare_page` also collapses every visible code cell of a page behind a toggle
(``hide-input``: the code stays in the page, the reader opens it); a cell tagged
``show-input`` stays open.

The extension also writes, before the build, the tables the reader pages include beside the
executed pages (every notebook's parameters in both profiles, what the paper profile
trains), and after it the site's ``numbers.json``: every glued value of the executed pages,
the table a bundle holds (:func:`~polycstr_lib.book.glue.numbers_json`).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polycstr_lib.toolkit.store import REPO_ROOT

__all__ = [
    "INSTALL_PROMPTS",
    "INSTALL_TAG",
    "REPOSITORY_ENV",
    "github_remote",
    "install_cell_source",
    "install_cell_repository",
    "launch_url",
    "prepare_page",
    "public_repository",
    "setup",
    "theme_options",
]

#: Environment variable holding ``owner/name`` (GitHub Actions sets it in every workflow).
REPOSITORY_ENV = "GITHUB_REPOSITORY"
#: Tag of every notebook's install cell (its first cell).
INSTALL_TAG = "polycstr-install"
#: Labels of the install cell's toggle on the pages (myst-nb cell options).
INSTALL_PROMPTS = {
    "code_prompt_show": "How to install polycstr_lib",
    "code_prompt_hide": "Hide how to install polycstr_lib",
}
#: Tags that already decide whether a code cell's source is shown.
_VISIBILITY_TAGS = frozenset(
    {"remove-cell", "remove-input", "hide-cell", "hide-input", "show-input", INSTALL_TAG}
)
#: Launch services whose buttons need a public repository.
_LAUNCH_KEYS = ("binderhub_url", "colab_url", "jupyterhub_url", "deepnote_url", "jupyterlite_url")

_OWNER_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_REMOTE = re.compile(
    r"^(?:https?://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com/)"
    r"(?P<repo>[^/\s]+/[^/\s]+?)(?:\.git)?/?$"
)


def _valid(repository: str) -> bool:
    return bool(_OWNER_NAME.fullmatch(repository)) and not repository.endswith(".git")


# ------------------------------------------------------------------------------ address
def github_remote(url: str) -> str | None:
    """``owner/name`` of a GitHub remote URL (https, ``git@github.com:`` or ``ssh://``).

    Args:
        url: a git remote URL.

    Returns:
        ``'owner/name'``, or ``None`` for a remote that is not on GitHub.
    """
    match = _REMOTE.match(url.strip())
    if not match or not _valid(match["repo"]):
        return None
    return match["repo"]


def _origin(path: str | Path) -> str | None:
    """URL of the ``origin`` remote of the checkout holding ``path``, if any."""
    from polycstr_lib.book.provenance import git_output

    return git_output(["remote", "get-url", "origin"], path)


def public_repository(
    env: Mapping[str, str] | None = None, path: str | Path | None = None
) -> str | None:
    """Where the project lives: ``owner/name`` of its GitHub repository, or ``None``.

    Taken from ``GITHUB_REPOSITORY`` in ``env``, else from the GitHub ``origin`` remote of
    the checkout holding ``path``, else absent.

    Args:
        env: environment to read (default ``os.environ``).
        path: a path inside the checkout (default: this package's checkout).

    Returns:
        ``'owner/name'``, or ``None`` when no public address is known.

    Raises:
        ValueError: if ``GITHUB_REPOSITORY`` is set but is not ``owner/name``.
    """
    env = os.environ if env is None else env
    value = env.get(REPOSITORY_ENV, "").strip()
    if value:
        if not _valid(value):
            raise ValueError(f"{REPOSITORY_ENV}={value!r} is not of the form owner/name")
        return value
    where = Path(path) if path is not None else REPO_ROOT
    url = _origin(where)
    return github_remote(url) if url else None


# ------------------------------------------------------------------------- install cell
_INSTALL_REMOTE = """\
# Install polycstr_lib when this kernel lacks it (Colab, Binder, a fresh environment):
# from the project's repository, https://github.com/{repository}
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("polycstr_lib") is None:
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q",
         "git+https://github.com/{repository}"]
    )"""

_INSTALL_LOCAL = """\
# Install polycstr_lib when this kernel lacks it: this copy names no public repository,
# so install from a local clone of the project. In the clone's root run
#     pip install -e .
# (or `make venv`), then run this notebook with that environment's Python.
import importlib.util

if importlib.util.find_spec("polycstr_lib") is None:
    print(
        "polycstr_lib is not installed: run `pip install -e .` in the root of a local "
        "clone of the project, then restart this kernel"
    )
import polycstr_lib  # noqa: E402,F401 - without the library the notebook stops here"""


def install_cell_source(repository: str | None) -> str:
    """Source of a notebook's install cell for ``repository``.

    Args:
        repository: ``'owner/name'`` on GitHub, or ``None`` when no public address is known.

    Returns:
        With an address: a cell that pip-installs ``git+https://github.com/owner/name`` when
        ``polycstr_lib`` is missing. Without: a cell that says how to install from a local
        clone (``pip install -e .``) and stops (the import fails) if the library is missing.

    Raises:
        ValueError: if ``repository`` is not ``owner/name``.
    """
    if repository is None:
        return _INSTALL_LOCAL
    if not _valid(repository):
        raise ValueError(f"{repository!r} is not of the form owner/name")
    return _INSTALL_REMOTE.format(repository=repository)


def install_cell_repository(source: str) -> str | None:
    """The repository an install cell installs from.

    Args:
        source: the source of a notebook's first cell.

    Returns:
        ``'owner/name'``, or ``None`` for the local-clone cell.

    Raises:
        ValueError: if ``source`` is neither form of :func:`install_cell_source`.
    """
    if source == _INSTALL_LOCAL:
        return None
    match = re.search(r'"git\+https://github\.com/([^"]+)"', source)
    if match and _valid(match[1]) and source == install_cell_source(match[1]):
        return match[1]
    raise ValueError("not an install cell written by polycstr_lib.book.site.install_cell_source")


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _install_cell(nb: dict, where: str | Path) -> dict:
    cells = nb.get("cells", [])
    code = [c for c in cells if c.get("cell_type") == "code"]
    tagged = [c for c in cells if INSTALL_TAG in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1 or not code or code[0] is not tagged[0]:
        raise ValueError(
            f"{where}: the first code cell, and only it, must be tagged {INSTALL_TAG!r} (an "
            "executed copy older than its source? run `make notebooks` again)"
        )
    return tagged[0]


def _title_first(nb: dict, cell: dict) -> None:
    """Puts the page's title cell (a markdown cell opening with ``# ``) before the install
    cell, so that a page opens with its title and finding, not with how to install."""
    cells = nb["cells"]
    if len(cells) > 1 and cells[0] is cell and cells[1].get("cell_type") == "markdown":
        if "".join(cells[1].get("source", "")).lstrip().startswith("# "):
            cells[0], cells[1] = cells[1], cells[0]


def prepare_page(
    path: str | Path, repository: str | None, *, collapse: bool = True, write: bool = True
) -> bool:
    """Write ``repository``'s install cell into the notebook at ``path`` and collapse its
    visible code cells.

    The install cell (the first code cell, tagged ``polycstr-install``) gets the source of
    :func:`install_cell_source` and the tag ``hide-input``, and follows the page's title cell
    (moved there if it came first). With ``collapse``, its toggle is
    labelled "How to install polycstr_lib" (:data:`INSTALL_PROMPTS`) and every other
    code cell that has none of the tags ``remove-cell``, ``remove-input``, ``hide-cell``,
    ``hide-input`` or ``show-input`` gets ``hide-input``. Outputs are left as they are.

    Args:
        path: a notebook file.
        repository: ``'owner/name'`` or ``None`` (see :func:`install_cell_source`).
        collapse: whether to collapse the other code cells.
        write: whether to write the file (only when something changed).

    Returns:
        Whether the notebook changed.

    Raises:
        ValueError: if the first cell is not the only cell tagged ``polycstr-install``.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    cell = _install_cell(nb, path)
    _title_first(nb, cell)
    cell["source"] = install_cell_source(repository).splitlines(keepends=True)
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    tags[:] = [t for t in tags if t not in {"remove-cell", "hide-input"}] + ["hide-input"]
    if collapse:  # the toggle says what the cell is
        cell["metadata"]["mystnb"] = dict(INSTALL_PROMPTS)
    if collapse:
        for other in nb["cells"]:
            if other is cell or other.get("cell_type") != "code":
                continue
            other_tags = other.setdefault("metadata", {}).setdefault("tags", [])
            if not _VISIBILITY_TAGS & set(other_tags):
                other_tags.append("hide-input")
    new = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"  # as nbformat
    if json.loads(new) == json.loads(text):
        return False
    if write:
        path.write_text(new, encoding="utf-8")
    return True


# ---------------------------------------------------------------------- launch buttons
def theme_options(options: Mapping[str, Any], repository: str | None) -> dict[str, Any]:
    """``html_theme_options`` of sphinx-book-theme for ``repository``.

    With an address: ``repository_url`` is ``https://github.com/owner/name`` and the
    repository button is on; the launch services of ``options`` are kept. Without: no
    repository URL, no repository, edit or issues button, no launch service.

    Args:
        options: the configured theme options (not modified).
        repository: ``'owner/name'`` or ``None``.

    Returns:
        A new options dict.
    """
    out = dict(options)
    launch = dict(out.get("launch_buttons") or {})
    if repository:
        out["repository_url"] = f"https://github.com/{repository}"
        out["use_repository_button"] = True
    else:
        out["repository_url"] = ""
        for key in ("use_repository_button", "use_edit_page_button", "use_issues_button"):
            out[key] = False
        for key in _LAUNCH_KEYS:
            launch[key] = ""
        launch["thebe"] = False
    out["launch_buttons"] = launch
    return out


def _source_notebooks() -> dict[str, str]:
    """Executed page stem -> source notebook stem (from the pipeline's runs)."""
    from polycstr_lib.book.profiles import RUNS

    return {run.page: run.notebook for run in RUNS}


def launch_url(url: str, pages: Mapping[str, str] | None = None) -> str:
    """A launch link to ``book/executed/<page>.ipynb`` rewritten to open the page's source,
    ``notebooks/<notebook>.ipynb`` (e.g. ``05_results_grade_up`` -> ``05_results``).

    Args:
        url: a Binder, Colab, JupyterHub... link built by sphinx-book-theme.
        pages: page stem -> notebook stem (default: the pipeline's runs).

    Returns:
        The rewritten link (``url`` itself when it names no executed page).
    """
    pages = _source_notebooks() if pages is None else pages

    def swap(match: re.Match) -> str:
        sep, page = match["sep"], match["page"]
        return f"notebooks{sep}{pages.get(page, page)}.ipynb"

    return re.sub(
        r"book(?P<sep>/|%2F)executed(?:/|%2F)(?P<page>[A-Za-z0-9_.-]+?)\.ipynb", swap, url
    )


# ------------------------------------------------------------------- Sphinx extension
def _config_inited(app: Any, config: Any) -> None:
    """``config-inited``: resolve the address, set the theme's repository and launch options."""
    repository = public_repository(path=app.srcdir)
    config.polycstr_repository = repository
    config.html_theme_options = theme_options(config.html_theme_options or {}, repository)


#: What the "Verify these numbers" page says when the build exported no bundle.
NO_BUNDLE = (
    "This build was made without its bundle: `make html` exports it (`python -m "
    "polycstr_lib bundle export FILE --record book/executed/bundle.md`).\n"
)


def _write_tables(app: Any, config: Any) -> None:
    """``config-inited``, before sphinx-external-toc lists the files outside the toc (so
    that it leaves them out): write the tables the reader pages include (parameters of both
    profiles, what the paper profile trains; a note when no bundle was exported) from this
    checkout's profiles, beside the executed pages when there are any."""
    from polycstr_lib.book.pipeline import write_parameters_table, write_training_table

    executed = Path(app.srcdir) / "book" / "executed"
    if executed.is_dir():
        write_parameters_table(executed)
        write_training_table(executed)
        if not (executed / "bundle.md").is_file():
            (executed / "bundle.md").write_text(NO_BUNDLE, encoding="utf-8")


def _builder_inited(app: Any) -> None:
    """``builder-inited``: write the install cell into the executed pages, collapse cells."""
    executed = Path(app.srcdir) / "book" / "executed"
    for path in sorted(executed.glob("*.ipynb")):
        if path.name.endswith((".partial.ipynb", ".failed.ipynb")):
            continue
        prepare_page(path, app.config.polycstr_repository)


def _build_finished(app: Any, exception: Exception | None) -> None:
    """``build-finished``: write the glued values of the executed pages into the site, as
    ``numbers.json`` (the table a bundle holds, :func:`~polycstr_lib.book.glue.numbers_json`)."""
    from polycstr_lib.book.glue import NUMBERS_FILE, write_numbers_json

    if exception is None and app.builder.format == "html":
        write_numbers_json(Path(app.srcdir) / "book" / "executed", Path(app.outdir) / NUMBERS_FILE)


def _page_context(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """``html-page-context``: launch links open the page's source notebook."""
    pages = _source_notebooks()
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            if button.get("url"):
                button["url"] = launch_url(button["url"], pages)


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension (``_config.yml``: ``sphinx.extra_extensions``): resolve the public
    address, set the repository and launch buttons from it, write the install cell into
    the executed pages and point launch links at the source notebooks; write the generated
    tables before the build and the site's ``numbers.json`` after it."""
    app.add_config_value("polycstr_repository", None, "html")
    app.connect("config-inited", _config_inited)
    app.connect("config-inited", _write_tables, priority=100)  # sphinx-external-toc: 900
    app.connect("builder-inited", _builder_inited)
    app.connect("build-finished", _build_finished)
    # after sphinx-book-theme's add_launch_buttons (priority 501)
    app.connect("html-page-context", _page_context, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


# ----------------------------------------------------------------------- command line
def _main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m polycstr_lib.book.site",
        description="Write the install cell of the resolved public address (GITHUB_REPOSITORY, "
        "else the origin remote, else a local-clone instruction) into notebooks.",
    )
    ap.add_argument("paths", nargs="+", help="notebooks, or directories of notebooks")
    ap.add_argument("--collapse", action="store_true", help="also collapse the code cells")
    args = ap.parse_args(argv)
    repository = public_repository()
    print(f"public repository: {repository or 'none (local install instruction)'}")
    for p in args.paths:
        files = sorted(Path(p).glob("*.ipynb")) if Path(p).is_dir() else [Path(p)]
        for f in files:
            if prepare_page(f, repository, collapse=args.collapse):
                print(f"rewrote {f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
