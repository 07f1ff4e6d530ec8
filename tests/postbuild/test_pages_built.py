"""After `make book`: the built pages read well and name where the project lives.

- the repository and launch links, and the install cell, of every executed page follow the
  public address this checkout resolves (``GITHUB_REPOSITORY``, else ``origin``, else none);
- every code cell of an executed page is collapsed behind a toggle (or removed), unless it
  is tagged ``show-input``;
- no table of any page has a column that is empty or all NaN.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from polycstr_lib.book.site import public_repository

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
EXECUTED = SITE / "book" / "executed"
REPO_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "mybinder.org", "colab.research")
EMPTY = {"", "nan", "none", "<na>", "nat"}


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    if not (SITE / "index.html").is_file():
        pytest.skip(f"{SITE / 'index.html'} does not exist: run `make book` first")
    return {
        p.relative_to(SITE).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(SITE.rglob("*.html"))
        if not {"_static", "_sources", "reports"} & set(p.relative_to(SITE).parts[:-1])
    }


def _executed(pages: dict[str, str]) -> dict[str, str]:
    out = {n: h for n, h in pages.items() if n.startswith("book/executed/")}
    assert out, "no executed page in the site"
    return out


def test_links_and_install_cells_follow_the_public_address(pages):
    repository = public_repository()
    problems = []
    for name, html in _executed(pages).items():
        hrefs = re.findall(r'href="([^"]+)"', html)
        launch = [h for h in hrefs if any(host in h for host in REPO_HOSTS)]
        if repository is None:
            if launch:
                problems.append(f"{name}: no public address, but links to {launch}")
            if "pip install -e ." not in html or "git+https://" in html:
                problems.append(f"{name}: the install cell is not the local instruction")
            continue
        if f"https://github.com/{repository}" not in hrefs:
            problems.append(f"{name}: no repository button for {repository}")
        for href in launch:
            if repository not in href and not href.startswith("https://github.com/"):
                problems.append(f"{name}: {href} does not name {repository}")
            if "book/executed" in href or "book%2Fexecuted" in href:
                problems.append(f"{name}: {href} opens the executed copy, not the source")
            for stem in re.findall(r"notebooks(?:/|%2F)([A-Za-z0-9_]+)\.ipynb", href):
                if not (ROOT / "notebooks" / f"{stem}.ipynb").is_file():
                    problems.append(f"{name}: {href} opens a notebook that does not exist")
        if f"git+https://github.com/{repository}" not in html:
            problems.append(f"{name}: the install cell does not install from {repository}")
    assert not problems, "\n".join(problems[:40])


class _Cells(HTMLParser):
    """Per ``div.cell``: its classes, and whether its input is shown outside a toggle."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.cells: list[dict] = []
        self._stack: list[tuple[str, str]] = []  # (tag, class) of open elements
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        classes = cls.split()
        if tag == "div" and "cell" in classes:
            self.cells.append({"classes": classes, "open_input": False, "input": False})
        if tag == "div" and "cell_input" in classes and self.cells:
            self.cells[-1]["input"] = True
            if not any(t == "details" for t, _ in self._stack):
                self.cells[-1]["open_input"] = True
        if tag not in {"br", "img", "hr", "meta", "link", "input", "wbr"}:
            self._stack.append((tag, cls))

    def handle_endtag(self, tag):
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break


def test_code_cells_are_collapsed(pages):
    problems, collapsed = [], 0
    for name, html in _executed(pages).items():
        for i, cell in enumerate(_Cells(html).cells):
            if not cell["input"]:
                continue
            if cell["open_input"] and "tag_show-input" not in cell["classes"]:
                problems.append(f"{name}: code cell {i + 1} is shown without a toggle")
            collapsed += not cell["open_input"]
    assert collapsed, "no collapsed code cell: is polycstr_lib.book.site loaded?"
    assert not problems, "\n".join(problems[:40])


class _Tables(HTMLParser):
    """Every <table> as its header and body rows of cell texts (None: a spanning table)."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tables: list[dict | None] = []
        self._current: dict | None = None
        self._cell: list[str] | None = None
        self._section = "body"
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._current = {"head": [], "body": [], "span": False}
        elif self._current is None:
            return
        elif tag in {"thead", "tbody"}:
            self._section = "head" if tag == "thead" else "body"
        elif tag == "tr":
            self._current[self._section].append([])
        elif tag in {"td", "th"}:
            if a.get("colspan", "1") != "1" or a.get("rowspan", "1") != "1":
                self._current["span"] = True
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if self._current is None:
            return
        if tag in {"td", "th"} and self._cell is not None:
            rows = self._current[self._section] or self._current["body"]
            if not rows:
                rows.append([])
            rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag in {"thead", "tbody"}:
            self._section = "body"
        elif tag == "table":
            self.tables.append(None if self._current["span"] else self._current)
            self._current = None


def empty_columns(table: dict) -> list[str]:
    """Names (header texts) of the columns of ``table`` whose body cells are all empty/NaN."""
    body = [r for r in table["body"] if r]
    if not body or len({len(r) for r in body}) != 1:
        return []
    header = next((r for r in reversed(table["head"]) if len(r) == len(body[0])), None)
    out = []
    for j in range(len(body[0])):
        if all(r[j].strip().lower() in EMPTY for r in body):
            out.append(header[j] if header else f"column {j + 1}")
    return out


def test_empty_column_finder_can_fail():
    html = (
        "<table><thead><tr><th></th><th>mean</th><th>mean ± 95 %</th></tr></thead>"
        "<tbody><tr><th>A</th><td>1.0</td><td>NaN</td></tr>"
        "<tr><th>B</th><td>2.0</td><td>NaN</td></tr></tbody></table>"
    )
    (table,) = _Tables(html).tables
    assert empty_columns(table) == ["mean ± 95 %"]


def test_no_empty_or_all_nan_table_columns(pages):
    problems, checked = [], 0
    for name, html in pages.items():
        for k, table in enumerate(_Tables(html).tables):
            if table is None:
                continue
            checked += 1
            for col in empty_columns(table):
                problems.append(f"{name}: table {k + 1} has an empty or all-NaN column {col!r}")
    assert checked, "no table in the built book"
    assert not problems, "\n".join(problems[:40])
