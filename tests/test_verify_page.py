"""The "Verify these numbers" page, the tables of both profiles, the site's numbers.json, and
the round trip in `make test`."""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import nbformat
import pytest
import yaml

from polycstr_lib.book import pipeline, profiles, site, summaries
from polycstr_lib.book.provenance import notebook_parameters, parameters_markdown

ROOT = Path(__file__).resolve().parents[1]


def _notebook(path: Path, source: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})]
    nbformat.write(nb, path)
    return path


# --- what the paper profile trains ---------------------------------------------------------------
def test_training_rows_are_the_profiles_overrides_of_training_parameters():
    rows = summaries.training_rows("paper")
    assert rows, "the paper profile trains nothing more than the quick one?"
    for notebook, name, quick, paper, meaning in rows:
        assert summaries.TRAINING_PARAMETER.search(name), name
        assert paper == profiles.PROFILES["paper"][notebook][name]
        assert quick == profiles.effective_parameters(notebook, "quick")[name]
        assert quick != paper and meaning
    listed = {(n, p) for n, p, *_ in rows}
    for notebook, overrides in profiles.PROFILES["paper"].items():
        defaults = profiles.effective_parameters(notebook, "quick")
        for name, value in overrides.items():
            wanted = summaries.TRAINING_PARAMETER.search(name) and value != defaults[name]
            assert ((notebook, name) in listed) == bool(wanted), (notebook, name)
    assert {"seeds", "test_episodes", "bc_steps"} <= {name for _, name, *_ in rows}
    with pytest.raises(ValueError, match="quick, paper"):
        summaries.training_rows("huge")


def test_a_new_override_shows_in_the_training_table(monkeypatch):
    paper = dict(profiles.PROFILES["paper"])
    assert "check_steps" not in paper["01_environment"]
    paper["01_environment"] = {**paper["01_environment"], "check_steps": 99}
    monkeypatch.setitem(profiles.PROFILES, "paper", paper)
    text = summaries.training_markdown("paper")
    assert "| `01_environment` | `check_steps` | `10` | `99` | closed-loop steps" in text


def test_the_training_table_names_the_budget_rule_and_the_timings(monkeypatch):
    text = summaries.training_markdown("paper")
    assert "| Page | Parameter | Quick | Paper | Meaning |" in text
    assert "| `05_results` | `seeds` | `[0]` | `0–9 (10)` |" in text
    assert "learning curve picks" in text and "{ref}`rerun-timings`" in text
    monkeypatch.setitem(profiles.BUDGETS_FROM_CURVES, "paper", False)
    assert "fixed" in summaries.training_markdown("paper")


def test_shown_values():
    assert summaries._shown(list(range(10))) == "0–9 (10)"
    assert summaries._shown([0, 2, 4, 6]) == "[0, 2, 4, 6]"
    assert summaries._shown(10_000) == "10,000" and summaries._shown(True) == "True"


# --- the parameters table of both profiles -------------------------------------------------------
def test_parameters_markdown_shows_each_profile_beside_the_default(tmp_path):
    path = _notebook(tmp_path / "nb.ipynb", "steps = 2  # steps\nseeds = [0]  # seeds\nx = 1  # x")
    table = parameters_markdown([path], {"paper": {"nb": {"steps": 5, "x": 1}}})
    assert "| Parameter | Type | Quick (default) | Paper | Meaning |" in table
    assert "| `steps` | int | `2` | **`5`** | steps |" in table
    assert "| `seeds` | list | `[0]` | same | seeds |" in table
    assert "| `x` | int | `1` | `1` | x |" in table
    assert "| Parameter | Type | Default | Meaning |" in parameters_markdown([path])


def test_the_books_parameters_table_lists_both_profiles(tmp_path):
    text = pipeline.write_parameters_table(tmp_path).read_text()
    assert text.count("| Parameter | Type | Quick (default) | Paper | Meaning |") == len(
        {run.notebook for run in profiles.RUNS}
    )
    for notebook, overrides in profiles.PROFILES["paper"].items():
        section = text.split(f"### `{notebook}`", 1)[1].split("###", 1)[0]
        assert "| `profile` | str | `'quick'` | **`'paper'`** |" in section
        for name, value in overrides.items():
            row = next(r for r in section.splitlines() if r.startswith(f"| `{name}` |"))
            assert f"`{value!r}`" in row, (notebook, row)
    mtime = (tmp_path / "parameters.md").stat().st_mtime_ns
    pipeline.write_parameters_table(tmp_path)  # the same text: not rewritten
    assert (tmp_path / "parameters.md").stat().st_mtime_ns == mtime


def test_the_training_table_is_written_beside_the_pages(tmp_path):
    path = pipeline.write_training_table(tmp_path)
    assert path == tmp_path / "profiles.md"
    assert path.read_text() == summaries.training_markdown("paper")


# --- the Sphinx extension: tables before the build, numbers.json after it -----------------------
def _app(tmp_path: Path) -> types.SimpleNamespace:
    config = types.SimpleNamespace(polycstr_repository=None)
    builder = types.SimpleNamespace(format="html")
    out = tmp_path / "html"
    return types.SimpleNamespace(srcdir=str(tmp_path), outdir=str(out), config=config,
                                 builder=builder)  # fmt: skip


def test_the_extension_writes_the_tables_and_a_note_without_a_bundle(tmp_path):
    app = _app(tmp_path)
    site._write_tables(app, app.config)  # no executed pages: nothing written
    assert not (tmp_path / "book").exists()
    executed = tmp_path / "book" / "executed"
    executed.mkdir(parents=True)
    site._write_tables(app, app.config)
    assert {p.name for p in executed.iterdir()} == {"parameters.md", "profiles.md", "bundle.md"}
    assert (executed / "bundle.md").read_text() == site.NO_BUNDLE
    (executed / "bundle.md").write_text("the record")
    site._write_tables(app, app.config)
    assert (executed / "bundle.md").read_text() == "the record"


def test_the_tables_are_written_before_the_toc_leaves_out_the_other_files():
    connected = []
    app = types.SimpleNamespace(
        add_config_value=lambda *a, **k: None,
        connect=lambda event, handler, priority=500: connected.append((event, handler, priority)),
    )
    site.setup(app)
    (priority,) = [p for e, h, p in connected if h is site._write_tables and e == "config-inited"]
    assert priority < 900  # sphinx-external-toc's parse_toc_to_env


def test_the_extension_writes_the_glued_values_into_the_site(tmp_path):
    from test_cli import _executed_page

    from polycstr_lib.book.glue import glued_numbers, literal_value

    app = _app(tmp_path)
    executed = tmp_path / "book" / "executed"
    _executed_page(executed, "02_dataset", {"episodes": 100, "iqm": 0.1 + 0.2}, "quick")
    _executed_page(executed, "07_claims", {"verdict": "holds", "pair": (1, 2.5)}, "quick")
    site._build_finished(app, RuntimeError("the build failed"))
    assert not (tmp_path / "html" / "numbers.json").exists()
    site._build_finished(app, None)
    table = json.loads((tmp_path / "html" / "numbers.json").read_text())
    assert table["profile"] == "quick" and table["commit"] == "abc1234"
    read = {p: {n: literal_value(v) for n, v in vs.items()} for p, vs in table["pages"].items()}
    assert read == glued_numbers(executed)
    assert read["02_dataset"]["iqm"] == 0.1 + 0.2 and read["07_claims"]["pair"] == (1, 2.5)


# --- the page, the toc, the intro and rerun pages ------------------------------------------------
def test_the_verify_page_is_in_the_book_and_types_no_hash():
    toc = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"file:\s*(\S+)", toc)
    assert "book/verify" in files and files.index("book/verify") > files.index("book/rerun")
    text = (ROOT / "book" / "verify.md").read_text()
    assert "```{include} executed/bundle.md" in text
    assert '<a href="../numbers.json">numbers.json</a>' in text
    assert "make verify BUNDLE=" in text and "identical: N values on M pages" in text
    assert "{ref}`rerun-timings`" in text
    assert not re.search(r"\b[0-9a-f]{64}\b", text), "a typed sha256"
    assert not re.search(r"\b\d+(\.\d+)? (minutes|hours|min|h)\b", text), "a typed duration"


def test_the_intro_and_rerun_pages_say_what_the_paper_profile_trains():
    """The rerun page includes the generated table; the intro points to it (a long table in
    the intro buried the book's findings), and neither types a number of seeds or steps."""
    rerun = (ROOT / "book" / "rerun.md").read_text()
    assert "(rerun-profiles)=" in rerun and "```{include} executed/profiles.md" in rerun
    intro = (ROOT / "book" / "intro.md").read_text()
    assert "<rerun-profiles>`" in intro and "executed/profiles.md" not in intro
    for page, text in (("intro", intro), ("rerun", rerun)):
        assert not re.search(r"trains for hours|builds in minutes", text), page
        assert not re.search(r"\b(ten|\d+) (seeds|test episodes)\b", text), page
    assert "(rerun-timings)=" in (ROOT / "book" / "rerun.md").read_text()
    assert "{doc}`verify`" in (ROOT / "book" / "intro.md").read_text()


def test_every_parameter_the_tables_name_is_a_notebook_parameter():
    for notebook, overrides in profiles.PROFILES["paper"].items():
        names = {
            r["name"] for r in notebook_parameters(profiles.NOTEBOOK_DIR / f"{notebook}.ipynb")
        }
        assert set(overrides) <= names, notebook


# --- the round trip in `make test` ---------------------------------------------------------------
def _recipe(makefile: str, target: str) -> str:
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert match, f"no target {target}"
    return match.group(1)


def test_make_test_runs_the_round_trip_after_the_site_is_built():
    makefile = (ROOT / "Makefile").read_text()
    test = _recipe(makefile, "test").splitlines()
    html = next(i for i, line in enumerate(test) if " html" in line)
    after = next(i for i, line in enumerate(test) if "roundtrip" in line)
    last = " ".join(test[after:])
    assert html < after and "-j2" in last and "checks" in last
    # both halves of the round trip: every page is verified
    assert "roundtrip-chained" in last and "roundtrip-independent" in last
    assert "postbuild browser" in _recipe(makefile, "checks")
    exported = _recipe(makefile, "html")
    assert "bundle export $(BUNDLE_FILE) --record book/executed/bundle.md" in exported
    assert re.search(r"^roundtrip: roundtrip-chained roundtrip-independent$", makefile, re.M)
    roundtrip = _recipe(makefile, "roundtrip-chained roundtrip-independent")
    assert "POLYCSTR_ARTIFACTS=$(abspath $(ROUNDTRIP))/$*/artifacts" in roundtrip
    assert "verify" in roundtrip and "--bundle $(BUNDLE_FILE) --sha256" in roundtrip
    assert "--group $*" in roundtrip
    assert "rm -rf $(ROUNDTRIP)/$*" in roundtrip  # an empty store every time


def test_the_two_verification_groups_hold_every_page_once_with_what_they_read():
    chained, independent = profiles.page_group("chained"), profiles.page_group("independent")
    pages = [run.page for run in profiles.RUNS]
    assert sorted(chained + independent) == sorted(pages) and not set(chained) & set(independent)
    stems = {run.page: run.notebook for run in profiles.RUNS}
    for page in pages:
        source = (profiles.NOTEBOOK_DIR / f"{stems[page]}.ipynb").read_text()
        read = set(re.findall(r"(\d\d\w*)\.ipynb", source)) & set(pages)
        # a page that reads another executed page is verified together with it
        assert read <= set(chained), page
        if read:
            assert page in chained, page
    for notebook in ("05_results", "08_correction_support"):  # budgets from the curves page
        assert notebook in profiles.CHAINED_NOTEBOOKS
    with pytest.raises(ValueError, match="chained, independent"):
        profiles.page_group("odd")


def test_the_book_workflow_publishes_the_bundle():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    steps = workflow["jobs"]["build"]["steps"]
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    bundle = [s for s in uploads if s.get("with", {}).get("name") == "bundle"]
    assert bundle and "_build/bundle" in bundle[0]["with"]["path"]


def test_verify_takes_a_page_group_or_pages_not_both(capsys):
    from polycstr_lib.__main__ import build_parser

    parser = build_parser()
    assert parser.parse_args(["verify", "--group", "chained"]).group == "chained"
    for argv in (["verify", "--group", "odd"], ["verify", "--group", "chained", "--only", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    assert "--group" in capsys.readouterr().err
