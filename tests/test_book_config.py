"""The book's configuration, bibliography and provenance helpers (fast, no build)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from polycstr_lib.book.provenance import (
    notebook_parameters,
    parameters_markdown,
    provenance,
    provenance_html,
    provenance_text,
)

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = "book/executed/"


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def _toc_files(node) -> list[str]:
    """Every `file:` entry of a jb-book toc, in order."""
    files: list[str] = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        if "root" in node:
            files.append(node["root"])
        for key in ("chapters", "parts", "sections"):
            for child in node.get(key, []) or []:
                files.extend(_toc_files(child))
    elif isinstance(node, list):
        for child in node:
            files.extend(_toc_files(child))
    return files


def _page_exists(entry: str) -> bool:
    return any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb", ".rst"))


def test_config_parses_and_builds_offline_settings():
    cfg = _config()
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["only_build_toc_files"] is True
    excluded = set(cfg["exclude_patterns"])
    for pattern in (
        "notebooks",
        "artifacts",
        "_build",
        "README.md",
        "tests",
        "benchmarks",
        "**/.ipynb_checkpoints",
    ):
        assert pattern in excluded, pattern
    assert any(p.startswith(".venv") for p in excluded)
    exts = set(cfg["parse"]["myst_enable_extensions"])
    assert {"dollarmath", "amsmath", "colon_fence", "deflist"} <= exts
    assert cfg["bibtex_bibfiles"] == ["book/references.bib"]
    assert cfg["html"]["use_download_button"]
    assert cfg["launch_buttons"]["binderhub_url"] and cfg["launch_buttons"]["colab_url"]
    # the repository's address is set at build time (tests/test_book_address.py)
    assert cfg["repository"]["url"] == ""


def test_mathjax_is_served_locally():
    sphinx_cfg = _config()["sphinx"]["config"]
    path = sphinx_cfg["mathjax_path"]
    assert "://" not in path and not path.startswith("//"), path
    # Sphinx resolves a relative mathjax_path against _static/, which is book/_static.
    assert "book/_static" in sphinx_cfg["html_static_path"]
    assert path == "mathjax/tex-chtml-full.js"
    script = (ROOT / "scripts" / "install_mathjax.sh").read_text(encoding="utf-8")
    assert "mathjax@3" in script and "book/_static/mathjax" in script
    assert "cdn" not in json.dumps(sphinx_cfg).lower()


def test_toc_parses_and_static_pages_exist():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    assert toc["format"] == "jb-book"
    files = _toc_files(toc)
    assert files[0] == "book/intro"
    assert len(files) == len(set(files)), "duplicate toc entries"
    missing = [f for f in files if not f.startswith(EXECUTED) and not _page_exists(f)]
    assert not missing, f"toc entries without a page: {missing}"
    # Executed pages are exactly the pipeline's runs, and each run has its source notebook.
    from polycstr_lib.book.profiles import RUNS

    executed = [f[len(EXECUTED) :] for f in files if f.startswith(EXECUTED)]
    assert sorted(executed) == sorted(run.page for run in RUNS)
    for run in RUNS:
        assert (ROOT / "notebooks" / f"{run.notebook}.ipynb").exists(), run.notebook


def test_each_notebook_has_one_parameters_cell():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not notebooks:
        pytest.skip("no notebooks yet")
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
        assert tagged[0].cell_type == "code", path.name
        assert notebook_parameters(path), f"{path.name}: empty parameters cell"


def _reader_pages() -> list[Path]:
    """The hand-written pages of the book: book/**/*.md, without the build's outputs."""
    skip = {"_static", "executed"}
    return sorted(
        p
        for p in (ROOT / "book").rglob("*.md")
        if not skip & set(p.relative_to(ROOT / "book").parts[:-1])
    )


def _cited_keys() -> set[str]:
    keys: set[str] = set()
    role = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
    pages = _reader_pages() + sorted((ROOT / "notebooks").glob("*.ipynb"))
    for page in pages:
        for group in role.findall(page.read_text(encoding="utf-8")):
            keys.update(k.strip() for k in group.split(","))
    return keys


def test_bibliography_parses_and_has_cited_keys():
    from pybtex.database import parse_file

    bib = parse_file(str(ROOT / "book" / "references.bib"), bib_format="bibtex")
    keys = set(bib.entries)
    expected = {
        "durkin2025safe",
        "kostrikov2022iql",
        "kumar2020cql",
        "pomerleau1991efficient",
        "amos2017icnn",
        "towers2024gymnasium",
        "minari",
        "papermill",
        "jupyterbook2020",
        "seno2022d3rlpy",
        "hairer1996solving",
        "deuflhard1985extrapolation",
    }
    assert expected <= keys
    cited = _cited_keys()
    assert cited, "no {cite} roles found"
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"
    # pybtex's built-in styles format only these types.
    for key, entry in bib.entries.items():
        assert entry.type in {"article", "inproceedings", "book", "misc"}, key
    assert bib.entries["durkin2025safe"].fields["eprint"] == "2507.22640"
    assert (ROOT / "book" / "bibliography.md").read_text().count("{bibliography}") == 1


def test_provenance_record():
    record = provenance("quick", {"scenario": "startup", "steps": 10})
    assert set(record) >= {"profile", "parameters", "git_commit", "date_utc", "versions"}
    assert record["profile"] == "quick"
    assert record["parameters"] == {"scenario": "startup", "steps": 10}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["date_utc"])
    assert isinstance(record["git_commit"], str) and record["git_commit"]
    for pkg in ("torch", "gymnasium", "scipy", "numpy", "polycstr_lib"):
        assert pkg in record["versions"]
    json.dumps(record)  # serialisable, e.g. for glue
    html = provenance_html(record)
    assert "quick" in html and "polycstr-provenance" in html
    assert "startup" in provenance_text(record)


def test_provenance_outside_git(tmp_path):
    from polycstr_lib.book import provenance as prov

    assert prov.git_commit(tmp_path) == "unknown"


def test_provenance_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; import polycstr_lib.book.provenance as p; p.provenance('quick', {}); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    # polycstr_lib/__init__ may import torch through other modules; provenance must not add it.
    code_base = "import sys; import polycstr_lib; print('torch' in sys.modules)"
    base = subprocess.run(
        [sys.executable, "-c", code_base], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == base.stdout.strip()


def test_notebook_parameters_parses_a_synthetic_notebook(tmp_path):
    source = "\n".join(
        [
            "scenario = 'startup'  # scenario to run",
            "steps = 2_000  # gradient steps",
            "lr: float = 3e-4  # learning rate",
            "# seeds of the agents",
            "seeds = [0, 1,",
            "         2]",
            'profile = "quick"',
            "out_dir = str(ROOT) + '/x'  # not a literal",
            "use_gpu = False # device",
        ]
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1  # not a parameter"),
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)

    rows = notebook_parameters(path)
    by_name = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == [
        "scenario",
        "steps",
        "lr",
        "seeds",
        "profile",
        "out_dir",
        "use_gpu",
    ]
    assert by_name["scenario"] == {
        "name": "scenario",
        "type": "str",
        "default": "startup",
        "comment": "scenario to run",
    }
    assert by_name["steps"]["default"] == 2000 and by_name["steps"]["type"] == "int"
    assert by_name["lr"]["type"] == "float" and by_name["lr"]["default"] == 3e-4
    assert by_name["seeds"]["default"] == [0, 1, 2]
    assert by_name["seeds"]["comment"] == "seeds of the agents"
    assert by_name["profile"]["comment"] == ""
    assert by_name["out_dir"]["type"] == "expression"
    assert by_name["out_dir"]["default"] == "str(ROOT) + '/x'"
    assert by_name["use_gpu"]["default"] is False and by_name["use_gpu"]["comment"] == "device"

    table = parameters_markdown([path])
    assert table.startswith("### `nb`\n")
    assert table.count("\n") == 4 + len(rows)  # heading, blank line, header, rule, rows
    assert "| `scenario` | str | `'startup'` | scenario to run |" in table


def test_notebook_parameters_requires_exactly_one_tagged_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("a = 1")]
    path = tmp_path / "none.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match="exactly one"):
        notebook_parameters(path)
    nb.cells = [
        nbformat.v4.new_code_cell(f"a = {i}", metadata={"tags": ["parameters"]}) for i in range(2)
    ]
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match="found 2"):
        notebook_parameters(path)


# ------------------------------------------------------------------------ deviations
DEV_LABEL = re.compile(r"^\((dev-[a-z0-9-]+)\)=[ \t]*$", re.M)
DEV_REF = re.compile(r"\{ref\}`(?:[^`<]*<)?(dev-[a-z0-9-]+)>?`")
ENTRY = re.compile(r"^#+ (D\d+)\. ", re.M)
FIELDS = ("Source", "Decision", "Reason", "Evidence", "Status")


def _deviation_pages() -> list[Path]:
    return [ROOT / "book" / "deviations.md", *sorted((ROOT / "book" / "deviations").glob("*.md"))]


def test_every_referenced_deviation_label_is_defined_once():
    sources = [
        *sorted((ROOT / "notebooks").glob("*.ipynb")),
        *_reader_pages(),
        *sorted((ROOT / "polycstr_lib").rglob("*.py")),
    ]
    referenced = {
        label for path in sources for label in DEV_REF.findall(path.read_text(encoding="utf-8"))
    }
    defined: dict[str, int] = {}
    for page in _reader_pages():
        for label in DEV_LABEL.findall(page.read_text(encoding="utf-8")):
            defined[label] = defined.get(label, 0) + 1
    assert referenced, "no {ref} to a dev- label found"
    missing = sorted(referenced - set(defined))
    assert not missing, f"referenced but not defined: {missing}"
    duplicated = sorted(label for label, count in defined.items() if count != 1)
    assert not duplicated, f"defined more than once: {duplicated}"


def test_every_deviation_entry_has_the_five_fields_in_order():
    entries: dict[str, str] = {}
    for page in _deviation_pages():
        text = page.read_text(encoding="utf-8")
        heads = list(ENTRY.finditer(text))
        for k, head in enumerate(heads):
            end = heads[k + 1].start() if k + 1 < len(heads) else len(text)
            body = text[head.end() : end]
            assert head.group(1) not in entries, f"{head.group(1)} appears twice"
            entries[head.group(1)] = body
            # the entry's label sits on the line above its heading
            above = text[: head.start()].rstrip().splitlines()[-1]
            assert DEV_LABEL.fullmatch(above), f"{head.group(1)} has no dev- label: {above!r}"
            terms = [t for t in re.findall(r"^([A-Z][a-z]+)\n: ", body, re.M) if t in FIELDS]
            assert tuple(terms) == FIELDS, f"{page.name} {head.group(1)}: fields {terms}"
    numbers = sorted(int(n[1:]) for n in entries)
    assert numbers == list(range(1, len(numbers) + 1)), f"numbers not consecutive: {numbers}"
    # the summary table on the overview links every entry
    overview = (ROOT / "book" / "deviations.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| \{ref\}`(D\d+) <dev-", overview, re.M)
    assert sorted(rows) == sorted(entries), f"summary rows {rows}"


def test_reader_pages_carry_no_maintainer_notes():
    for page in _reader_pages():
        text = page.read_text(encoding="utf-8")
        for phrase in ("To add one", "GITHUB_REPOSITORY"):
            assert phrase not in text, f"{page.relative_to(ROOT)} says {phrase!r}"
