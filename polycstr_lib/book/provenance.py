"""Run provenance for the book's notebooks, and the parser of their parameters cells.

- :func:`provenance` collects what a reader needs to reproduce a notebook's output: the
  profile, the parameters, the git commit, the UTC date and the versions of the main
  packages. Versions are read from package metadata, so nothing heavy (torch) is imported.
- :func:`show_banner` displays that record as a small admonition-like banner; the
  notebooks call it in their first visible cell.
- :func:`notebook_parameters` parses a notebook's ``parameters``-tagged cell (the cell
  papermill overrides) into ``name / type / default / comment`` rows, and
  :func:`parameters_markdown` renders those rows of several notebooks as a Markdown table.

Command line (writes the parameters table of every notebook, for an ``{include}``)::

    python -m polycstr_lib.book.provenance notebooks/ book/executed/parameters.md
"""

from __future__ import annotations

import ast
import datetime as _dt
import html
import io
import json
import subprocess
import sys
import tokenize
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polycstr_lib.toolkit.store import REPO_ROOT

__all__ = [
    "PACKAGES",
    "git_commit",
    "notebook_parameters",
    "package_versions",
    "parameters_markdown",
    "provenance",
    "provenance_html",
    "provenance_text",
    "show_banner",
]

#: Packages whose versions every notebook records (distribution names).
PACKAGES: tuple[str, ...] = ("polycstr_lib", "numpy", "scipy", "gymnasium", "torch")


# --------------------------------------------------------------------------- provenance
def git_output(args: list[str], cwd: str | Path) -> str | None:
    """Stripped stdout of ``git <args>`` run in ``cwd``; None if git is missing, fails, times
    out or prints nothing."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and text else None


def git_commit(path: str | Path | None = None) -> str:
    """Short hash of ``HEAD`` of the checkout holding ``path`` (default: this package),
    with ``-dirty`` appended when tracked files differ from it; ``'unknown'`` when
    ``path`` is not inside a git checkout, the repository has no commit yet, or git is
    not installed."""
    cwd = Path(path) if path is not None else REPO_ROOT
    commit = git_output(["rev-parse", "--short", "HEAD"], cwd)
    if commit is None:
        return "unknown"
    if git_output(["status", "--porcelain", "--untracked-files=no"], cwd):
        commit += "-dirty"
    return commit


def package_versions(packages: tuple[str, ...] | list[str] = PACKAGES) -> dict[str, str]:
    """Installed versions from package metadata (no import); ``'not installed'`` if absent.
    ``python`` is always included."""
    from importlib import metadata

    versions = {"python": sys.version.split()[0]}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _jsonable(value: Any) -> Any:
    """A JSON-serialisable copy of ``value`` (numpy scalars/arrays, paths, tuples...)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _jsonable(value.tolist())
    return repr(value) if not isinstance(value, Path) else str(value)


def provenance(profile: str, parameters: dict | None = None) -> dict:
    """The provenance record of a notebook run.

    Returns a dict with keys ``profile``, ``parameters`` (JSON-serialisable copy),
    ``git_commit`` (short hash, ``-dirty`` suffix, or ``'unknown'``), ``date_utc``
    (ISO 8601, seconds) and ``versions`` (python, polycstr_lib, numpy, scipy,
    gymnasium, torch). torch is never imported.
    """
    return {
        "profile": str(profile),
        "parameters": _jsonable(dict(parameters or {})),
        "git_commit": git_commit(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": package_versions(),
    }


_PROFILE_NOTES = {
    "quick": "Quick profile: reduced budgets so that the whole book builds in minutes. "
    "Numbers on this page are not comparable with the paper's; rebuild with "
    "<code>make book PROFILE=paper</code> for the paper-scale settings.",
    "paper": "Paper profile: the budgets of the paper (or the closest this project affords, "
    "see <em>Deviations and decisions</em>).",
}


def provenance_html(record: dict) -> str:
    """HTML banner for a :func:`provenance` record. Uses the Sphinx theme's admonition
    classes, so it looks like a ``note`` in the book, with inline styles so that it is
    also readable in JupyterLab."""
    esc = html.escape
    versions = ", ".join(f"{esc(k)} {esc(str(v))}" for k, v in record["versions"].items())
    rows = "".join(
        f"<tr><td><code>{esc(str(k))}</code></td>"
        f"<td><code>{esc(json.dumps(v) if not isinstance(v, str) else repr(v))}</code></td></tr>"
        for k, v in record["parameters"].items()
    )
    note = _PROFILE_NOTES.get(record["profile"], "")
    note_html = f"<p style='margin:0.3em 0'>{note}</p>" if note else ""
    params_html = (
        "<details style='margin-top:0.3em'><summary>Parameters of this run "
        f"({len(record['parameters'])})</summary>"
        "<div style='overflow-x:auto;max-width:100%'>"
        "<table style='font-size:0.9em;margin:0.3em 0'>"
        f"<thead><tr><th>Parameter</th><th>Value</th></tr></thead><tbody>{rows}</tbody></table>"
        "</div>"
        "</details>"
        if record["parameters"]
        else ""
    )
    return (
        "<div class='admonition note polycstr-provenance' "
        "style='border-left:4px solid #6c8ebf;padding:0.4em 0.8em;margin:0.5em 0'>"
        "<p class='admonition-title' style='font-weight:bold;margin:0 0 0.3em 0'>"
        f"Run provenance: profile <code>{esc(record['profile'])}</code></p>"
        f"{note_html}"
        f"<p style='margin:0.3em 0'>Commit <code>{esc(record['git_commit'])}</code>, "
        f"executed {esc(record['date_utc'])}.<br>"
        f"<small>{versions}</small></p>"
        f"{params_html}</div>"
    )


def provenance_text(record: dict) -> str:
    """Plain-text rendering of a :func:`provenance` record."""
    lines = [
        f"Run provenance: profile {record['profile']}, commit {record['git_commit']}, "
        f"executed {record['date_utc']}",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()),
    ]
    if record["parameters"]:
        lines.append(
            "Parameters: " + ", ".join(f"{k}={v!r}" for k, v in record["parameters"].items())
        )
    return "\n".join(lines)


def show_banner(profile: str, parameters: dict | None = None) -> None:
    """Display the provenance banner of this run (HTML in a notebook, plain text elsewhere).

    Returns None, so that a notebook cell ending with this call shows the banner only (the
    record itself is :func:`provenance`).
    """
    record = provenance(profile, parameters)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with every notebook kernel
        print(provenance_text(record))
        return
    if get_ipython() is None:
        print(provenance_text(record))
    else:
        display(
            {"text/html": provenance_html(record), "text/plain": provenance_text(record)},
            raw=True,
        )


# ------------------------------------------------------------------ parameters cells
def _cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _parameters_cell(nb: dict, path: str | Path) -> str:
    tagged = [
        c
        for c in nb.get("cells", [])
        if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if len(tagged) != 1:
        raise ValueError(
            f"{path}: expected exactly one code cell tagged 'parameters', found {len(tagged)}"
        )
    return _cell_source(tagged[0])


def _comments_by_line(source: str) -> tuple[dict[int, str], set[int]]:
    """Map line number -> comment text, and the set of lines holding only a comment."""
    comments: dict[int, str] = {}
    comment_only: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                row = tok.start[0]
                comments[row] = tok.string.lstrip("#").strip()
                if not tok.line[: tok.start[1]].strip():
                    comment_only.add(row)
    except (tokenize.TokenError, IndentationError):
        pass
    return comments, comment_only


def notebook_parameters(path: str | Path) -> list[dict]:
    """Parse the ``parameters``-tagged cell of the notebook at ``path``.

    Returns one dict per top-level assignment, in order, with keys

    - ``name``: the variable name;
    - ``type``: the annotation if the assignment is annotated, else the type name of the
      default (``'str'``, ``'int'``, ``'float'``, ``'list'``...), ``'expression'`` when the
      default is not a literal;
    - ``default``: the default as a Python value (``ast.literal_eval``), or its source
      text when it is not a literal;
    - ``comment``: the trailing ``# comment`` of the assignment (any of its lines), else
      the comment-only lines directly above it, else ``''``.

    Raises ``ValueError`` unless exactly one code cell is tagged ``parameters``.
    """
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    source = _parameters_cell(nb, path)
    tree = ast.parse(source, filename=f"{path}[parameters]")
    comments, comment_only = _comments_by_line(source)
    rows: list[dict] = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value, annotation = node.targets, node.value, None
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value, annotation = [node.target], node.value, node.annotation
        else:
            continue
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if not names:
            continue
        value_src = ast.get_source_segment(source, value) or ""
        try:
            default: Any = ast.literal_eval(value)
            literal = True
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            default, literal = value_src, False
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            type_name = annotation.value  # a quoted annotation, e.g. "Optional[str]"
        elif annotation is not None:
            type_name = ast.get_source_segment(source, annotation) or ""
        elif literal:
            type_name = "None" if default is None else type(default).__name__
        else:
            type_name = "expression"
        comment = next(
            (
                comments[ln]
                for ln in range(node.lineno, (node.end_lineno or node.lineno) + 1)
                if ln in comments and ln not in comment_only
            ),
            "",
        )
        if not comment:  # comment block just above the assignment
            above, ln = [], node.lineno - 1
            while ln in comment_only:
                above.insert(0, comments[ln])
                ln -= 1
            comment = " ".join(c for c in above if c)
        for name in names:
            rows.append({"name": name, "type": type_name, "default": default, "comment": comment})
    return rows


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default_text(row: dict) -> str:
    default = row["default"]
    if isinstance(default, str) and row["type"] == "expression":
        return default
    return repr(default)


def parameters_markdown(
    paths: list[str | Path] | str | Path,
    profiles: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> str:
    """Markdown of the parameters cells of ``paths`` (notebook files, or one directory whose
    ``*.ipynb`` are taken in name order): per notebook, a heading and a table (parameter,
    type, default, meaning), narrow enough for a phone.

    Args:
        paths: the notebooks.
        profiles: profiles beside the defaults (the quick profile), ``{profile: {notebook
            stem: {parameter: value}}}`` as :data:`~polycstr_lib.book.profiles.PROFILES`
            holds their overrides. Each gets a column after the default: its value where it
            overrides the default (in bold when it differs), "same" elsewhere; the
            default's column is then headed "Quick (default)", each profile's by its name.
    """
    if isinstance(paths, (str, Path)) and Path(paths).is_dir():
        paths = sorted(Path(paths).glob("*.ipynb"))
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    others = dict(profiles or {})
    default = "Quick (default)" if others else "Default"
    head = f"| Parameter | Type | {default} | " + "".join(f"{n.capitalize()} | " for n in others)
    lines = []
    for p in paths:
        stem = Path(p).stem
        lines += [
            f"### `{stem}`",
            "",
            head + "Meaning |",
            "|---|---|---|" + "---|" * len(others) + "---|",
        ]
        for row in notebook_parameters(p):
            cells = [f"`{_md_cell(row['name'])}`", _md_cell(row["type"])]
            cells.append(f"`{_md_cell(_default_text(row))}`")
            for overrides in others.values():
                mine = overrides.get(stem, {})
                if row["name"] not in mine:
                    cells.append("same")
                    continue
                value = f"`{_md_cell(repr(mine[row['name']]))}`"
                cells.append(f"**{value}**" if mine[row["name"]] != row["default"] else value)
            cells.append(_md_cell(row["comment"]))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m polycstr_lib.book.provenance",
        description="Write the Markdown table of the notebooks' parameters cells.",
    )
    ap.add_argument("notebooks", help="a notebook or a directory of notebooks")
    ap.add_argument("out", nargs="?", help="output .md file (default: stdout)")
    args = ap.parse_args(argv)
    table = parameters_markdown(args.notebooks)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table, encoding="utf-8")
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
