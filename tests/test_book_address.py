"""The project's public address (polycstr_lib.book.site): one source for the repository, launch
buttons and install cells, in both cases (an address from GITHUB_REPOSITORY, and none).

The two end-to-end tests build a one-page book with the real ``_config.yml`` (so the real
Sphinx extension, theme and launch settings) into a temporary folder: no notebook is
executed, and the full book is built only once, by ``make book``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from polycstr_lib.book.site import (
    INSTALL_PROMPTS,
    INSTALL_TAG,
    github_remote,
    install_cell_repository,
    install_cell_source,
    launch_url,
    prepare_page,
    public_repository,
    theme_options,
)

ROOT = Path(__file__).resolve().parents[1]
REPO_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "mybinder.org", "colab.research")
PAGE = "05_results_startup"


# ------------------------------------------------------------------------------ address
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/owner/name.git", "owner/name"),
        ("https://github.com/owner/name", "owner/name"),
        ("https://token@github.com/owner/my.repo/", "owner/my.repo"),
        ("git@github.com:owner/name.git", "owner/name"),
        ("ssh://git@github.com/owner/name.git", "owner/name"),
        ("https://gitlab.com/owner/name.git", None),
        ("/srv/git/name.git", None),
        ("https://github.com/owner", None),
    ],
)
def test_github_remote(url, expected):
    assert github_remote(url) == expected


def _git(path: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_public_repository_order(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    _git(clone, "init", "-q")
    # no GITHUB_REPOSITORY, no origin: absent
    assert public_repository(env={}, path=clone) is None
    _git(clone, "remote", "add", "origin", "git@github.com:someone/polycstr.git")
    assert public_repository(env={}, path=clone) == "someone/polycstr"
    # GITHUB_REPOSITORY wins over origin
    assert public_repository(env={"GITHUB_REPOSITORY": "ci/repo"}, path=clone) == "ci/repo"
    with pytest.raises(ValueError, match="owner/name"):
        public_repository(env={"GITHUB_REPOSITORY": "not a repo"}, path=clone)
    # a non-GitHub origin is no public GitHub address
    _git(clone, "remote", "set-url", "origin", "https://gitlab.com/someone/polycstr.git")
    assert public_repository(env={}, path=clone) is None
    # outside any checkout
    outside = tmp_path / "plain"
    outside.mkdir()
    assert public_repository(env={}, path=outside) is None


# ------------------------------------------------------------------------- install cell
def test_install_cell_sources():
    remote = install_cell_source("owner/name")
    assert '"git+https://github.com/owner/name"' in remote
    assert "pip install -e ." not in remote
    local = install_cell_source(None)
    assert "pip install -e ." in local
    assert "github.com" not in local and "git+" not in local
    for source in (remote, local):
        compile(source, "<install cell>", "exec")
    assert install_cell_repository(remote) == "owner/name"
    assert install_cell_repository(local) is None
    with pytest.raises(ValueError):
        install_cell_repository(remote.replace("owner/name", "other/name", 1))
    with pytest.raises(ValueError):
        install_cell_source("https://github.com/owner/name")


def test_local_install_cell_stops_with_the_instruction(monkeypatch, capsys):
    import importlib.util
    import sys

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setitem(sys.modules, "polycstr_lib", None)  # as if it were not installed
    with pytest.raises(ModuleNotFoundError):
        exec(install_cell_source(None), {})
    assert "pip install -e ." in capsys.readouterr().out
    assert "raise" not in install_cell_source(None)


def _first_code(cells: list) -> dict:
    """A notebook's install cell: its first code cell (after the title)."""
    return next(c for c in cells if c["cell_type"] == "code")


def _notebook(path: Path, install: str, tags: list[str] | None = None) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell(install, metadata={"tags": tags or [INSTALL_TAG]}),
        nbformat.v4.new_markdown_cell("# A page\n\nSome text."),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os", metadata={"tags": ["remove-input"]}),
        nbformat.v4.new_code_cell("print(x)", metadata={"tags": ["show-input"]}),
        nbformat.v4.new_code_cell("y = x + 1\ny"),
    ]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.write(nb, path)
    return path


def test_prepare_page(tmp_path):
    path = _notebook(tmp_path / "page.ipynb", "print('old install cell')")
    assert prepare_page(path, "owner/name") is True
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].source.startswith("# A page")  # the title first, then how to install
    assert install_cell_repository(nb.cells[1].source) == "owner/name"
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert tags[1] == [INSTALL_TAG, "hide-input"]
    assert nb.cells[1].metadata["mystnb"] == INSTALL_PROMPTS
    assert tags[2] == ["parameters", "hide-input"]  # collapsed
    assert tags[3] == ["remove-input"]  # already decided
    assert tags[4] == ["show-input"]  # opted out
    assert tags[5] == ["hide-input"]
    assert prepare_page(path, "owner/name") is False  # idempotent
    assert prepare_page(path, None, write=False) is True
    assert install_cell_repository(nbformat.read(path, as_version=4).cells[1].source)
    assert prepare_page(path, None) is True
    assert install_cell_repository(nbformat.read(path, as_version=4).cells[1].source) is None
    bad = _notebook(tmp_path / "bad.ipynb", "pass", tags=["remove-cell"])
    with pytest.raises(ValueError, match=INSTALL_TAG):
        prepare_page(bad, None)


# ---------------------------------------------------------------------- launch buttons
def _config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def test_theme_options_follow_the_address():
    cfg = _config()
    configured = {"launch_buttons": cfg["launch_buttons"], "repository_url": "x"}
    with_address = theme_options(configured, "owner/name")
    assert with_address["repository_url"] == "https://github.com/owner/name"
    assert with_address["use_repository_button"] is True
    assert with_address["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert with_address["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    without = theme_options(configured, None)
    assert without["repository_url"] == "" and without["use_repository_button"] is False
    assert not any(
        without["launch_buttons"][k] for k in ("binderhub_url", "colab_url", "jupyterhub_url")
    )
    assert configured["repository_url"] == "x"  # not modified


def test_config_takes_the_address_from_the_extension():
    cfg = _config()
    assert "polycstr_lib.book.site" in cfg["sphinx"]["extra_extensions"]
    # no address typed into the configuration: the extension sets it at build time
    assert not cfg["repository"].get("url")
    assert "github.com/" not in (ROOT / "_config.yml").read_text(encoding="utf-8")
    assert cfg["launch_buttons"]["binderhub_url"] and cfg["launch_buttons"]["colab_url"]


def test_launch_url_opens_the_source_notebook():
    binder = (
        "https://mybinder.org/v2/gh/o/n/main?urlpath=lab/tree/book/executed/"
        "05_results_grade_up.ipynb"
    )
    assert launch_url(binder).endswith("urlpath=lab/tree/notebooks/05_results.ipynb")
    colab = "https://colab.research.google.com/github/o/n/blob/main/book/executed/02_dataset.ipynb"
    assert launch_url(colab).endswith("/blob/main/notebooks/02_dataset.ipynb")
    encoded = "https://x/?repo=r&urlpath=lab/tree/n/book%2Fexecuted%2F07_claims.ipynb"
    assert launch_url(encoded).endswith("notebooks%2F07_claims.ipynb")
    assert launch_url("https://github.com/o/n") == "https://github.com/o/n"


# ------------------------------------------------------------- committed notebooks agree
def test_committed_install_cells_agree_with_the_address():
    """Every notebook's first cell is the install cell of this checkout's address (or the
    local one); none names an address that is not where the project lives."""
    resolved = public_repository()
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        first = _first_code(nb.cells)
        assert INSTALL_TAG in first.metadata.get("tags", []), path.name
        named = install_cell_repository(first.source)  # raises if hand-edited
        assert named in (None, resolved), f"{path.name} installs from {named}, not {resolved}"


# ------------------------------------------------------------------- both build cases
def _mini_book(root: Path) -> Path:
    """A one-page copy of the book: the real _config.yml, static files and one page made
    from the first cell of the real notebooks/05_results.ipynb (as committed)."""
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")
    (root / "book" / "executed").mkdir(parents=True)
    shutil.copy(ROOT / "book" / "references.bib", root / "book" / "references.bib")
    shutil.copytree(
        ROOT / "book" / "_static",
        root / "book" / "_static",
        ignore=shutil.ignore_patterns("mathjax", "node_modules"),
    )
    (root / "intro.md").write_text("# Mini book\n\nOne page.\n", encoding="utf-8")
    (root / "_toc.yml").write_text(
        f"format: jb-book\nroot: intro\nchapters:\n  - file: book/executed/{PAGE}\n",
        encoding="utf-8",
    )
    source = nbformat.read(ROOT / "notebooks" / "05_results.ipynb", as_version=4)
    _notebook(root / "book" / "executed" / f"{PAGE}.ipynb", _first_code(source.cells).source)
    return root


def _build(root: Path, repository: str | None) -> Path:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_REPOSITORY"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if repository:
        env["GITHUB_REPOSITORY"] = repository
    cmd = [
        sys.executable,
        "-c",
        "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
        "build",
        str(root),
        "--warningiserror",
        "--quiet",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "_build" / "html"


def _hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', html)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Both builds of the one-page book: {'owner/name': html dir, None: html dir}."""
    out = {}
    for repository in ("owner/name", None):
        root = tmp_path_factory.mktemp("address" if repository else "no-address")
        out[repository] = _build(_mini_book(root), repository)
    return out


def test_build_with_github_repository_names_it(built):
    site = built["owner/name"]
    page = (site / "book" / "executed" / f"{PAGE}.html").read_text(encoding="utf-8")
    hrefs = _hrefs(page)
    binder = (
        "https://mybinder.org/v2/gh/owner/name/main?urlpath=lab/tree/notebooks/05_results.ipynb"
    )
    colab = (
        "https://colab.research.google.com/github/owner/name/blob/main/notebooks/05_results.ipynb"
    )
    assert binder in hrefs and colab in hrefs
    assert "https://github.com/owner/name" in hrefs  # the repository button
    repo_links = [h for h in hrefs if any(host in h for host in REPO_HOSTS)]
    assert repo_links and all("owner/name" in h for h in repo_links), repo_links
    assert not [h for h in repo_links if "book/executed" in h or "book%2Fexecuted" in h]
    # the install cell, in the page (collapsed) and in its .ipynb download
    assert "git+https://github.com/owner/name" in page
    assert "hide-input" in page and INSTALL_PROMPTS["code_prompt_show"] in page
    download = site / "_sources" / "book" / "executed" / f"{PAGE}.ipynb"
    nb = json.loads(download.read_text(encoding="utf-8"))
    assert install_cell_repository("".join(_first_code(nb["cells"])["source"])) == "owner/name"


def test_build_without_address_links_no_repository(built):
    site = built[None]
    pages = sorted(site.rglob("*.html"))
    assert pages
    for path in pages:
        html = path.read_text(encoding="utf-8")
        repo_links = [h for h in _hrefs(html) if any(host in h for host in REPO_HOSTS)]
        assert not repo_links, f"{path.name} links to {repo_links}"
        assert "git+https://" not in html
    page = (site / "book" / "executed" / f"{PAGE}.html").read_text(encoding="utf-8")
    assert "pip install -e ." in page
    assert "launch-buttons" not in page and "fa-rocket" not in page


def test_command_line_writes_the_resolved_install_cell(tmp_path, monkeypatch, capsys):
    from polycstr_lib.book.site import _main

    path = _notebook(tmp_path / "nb.ipynb", install_cell_source(None))
    monkeypatch.setenv("GITHUB_REPOSITORY", "owner/name")
    assert _main([str(tmp_path)]) == 0
    assert "owner/name" in capsys.readouterr().out
    nb = nbformat.read(path, as_version=4)
    assert install_cell_repository(_first_code(nb.cells).source) == "owner/name"
    assert "hide-input" not in nb.cells[5].metadata.get("tags", [])  # no --collapse
