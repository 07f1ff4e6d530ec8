"""Markdown the build writes for the reader pages: what each profile trains, and the bundle.

Nothing here is typed into a page: :func:`training_markdown` reads the profiles' overrides
(:data:`~polycstr_lib.book.profiles.PROFILES`) and the notebooks' parameters cells, and
:func:`bundle_markdown` describes the bundle that ``bundle export --record`` has just
written (its name, size and SHA-256), for the "Verify these numbers" page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from polycstr_lib.book.profiles import (
    BUDGETS_FROM_CURVES,
    NOTEBOOK_DIR,
    PROFILES,
    RUNS,
    effective_parameters,
)

__all__ = [
    "TRAINING_PARAMETER",
    "bundle_markdown",
    "write_bundle_record",
    "training_markdown",
    "training_rows",
]

#: Names of the parameters that say what a page trains and evaluates: scenarios, algorithms,
#: seeds, steps and checkpoints per algorithm, episodes.
TRAINING_PARAMETER = re.compile(
    r"(^|_)(scenarios|algorithms|seeds|steps|checkpoints|extend_to|episodes)$"
)


def _shown(value: Any) -> str:
    """A value as the table shows it: a run of consecutive seeds as ``0–9 (10)``."""
    if (
        isinstance(value, list)
        and len(value) > 3
        and all(isinstance(v, int) for v in value)
        and value == list(range(value[0], value[0] + len(value)))
    ):
        return f"{value[0]}–{value[-1]} ({len(value)})"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return repr(value)


def training_rows(profile: str = "paper") -> list[tuple[str, str, Any, Any, str]]:
    """The training and evaluation parameters ``profile`` overrides, notebook by notebook.

    Args:
        profile: a profile of :data:`PROFILES` other than the defaults.

    Returns:
        ``(notebook, parameter, quick value, profile's value, meaning)`` for every parameter
        of :data:`TRAINING_PARAMETER` that ``profile`` sets to another value than the
        notebook's default, in the book's order.

    Raises:
        ValueError: an unknown profile.
    """
    from polycstr_lib.book.provenance import notebook_parameters

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    rows = []
    for notebook in dict.fromkeys(run.notebook for run in RUNS):
        overrides = PROFILES[profile].get(notebook, {})
        if not overrides:
            continue
        quick = effective_parameters(notebook, "quick")
        meaning = {
            row["name"]: row["comment"]
            for row in notebook_parameters(NOTEBOOK_DIR / f"{notebook}.ipynb")
        }
        for name, value in overrides.items():
            if TRAINING_PARAMETER.search(name) and value != quick.get(name):
                rows.append((notebook, name, quick.get(name), value, meaning.get(name, "")))
    return rows


def training_markdown(profile: str = "paper") -> str:
    """A table of what ``profile`` trains and evaluates beside the quick profile
    (:func:`training_rows`), with a sentence on where the results pages' budgets come from
    and where the build's duration is recorded."""
    if BUDGETS_FROM_CURVES.get(profile, False):
        budgets = (
            "The results pages and the correction-support chapter train each algorithm, on "
            "each scenario, at the budget its learning curve picks there (the "
            "`<algorithm>_steps` and `agent_steps` below apply where no curve was measured)."
        )
    else:
        budgets = (
            "The results pages train each algorithm at the profile's fixed "
            "`<algorithm>_steps` below."
        )
    lines = [
        f"What the **{profile}** profile trains and evaluates, beside the **quick** profile "
        "(every notebook's own defaults); the other parameters it changes are in the table of "
        "every notebook's parameters ({ref}`rerun-parameters`). " + budgets,
        "",
        f"| Page | Parameter | Quick | {profile.capitalize()} | Meaning |",
        "|---|---|---|---|---|",
    ]
    for notebook, name, quick, value, meaning in training_rows(profile):
        cells = [f"`{notebook}`", f"`{name}`", f"`{_shown(quick)}`", f"`{_shown(value)}`"]
        cells.append(meaning.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "How long a build takes is measured, not estimated: each page's execution time is "
        "recorded by papermill in the executed notebook and listed in the build's timings "
        "table ({ref}`rerun-timings`), the last row being the whole book.",
        "",
    ]
    return "\n".join(lines)


def _size(size: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def bundle_markdown(report: Any, repository: str | None = None) -> str:
    """What the "Verify these numbers" page says of the bundle an export has just written.

    Args:
        report: the :class:`~polycstr_lib.book.bundle.ExportReport` of the export.
        repository: ``owner/name`` on GitHub, whose book workflow publishes the bundle
            (:func:`~polycstr_lib.book.site.public_repository`), or None.

    Returns:
        Markdown: the file's name, size, entries, values and build, the line
        ``sha256sum --check`` reads, and where to download it.
    """
    name = Path(report.path).name
    if repository:
        where = (
            f"The book's workflow publishes it with the run that built this site: the "
            f"artifact `bundle` of the latest [book workflow run]"
            f"(https://github.com/{repository}/actions/workflows/book.yml)."
        )
    else:
        where = "This copy names no public repository: the bundle is the file the build wrote."
    return "\n".join(
        [
            f"The bundle of this build is `{name}`: {_size(report.size)}, "
            f"{report.entries:,} cache entries and the {report.values:,} glued values of its "
            f"{report.pages} pages (profile {report.profile}, commit {report.commit}). "
            f"{where} A local build writes it to `_build/bundle/{name}`.",
            "",
            "Its SHA-256, as `sha256sum --check` reads it:",
            "",
            "```text",
            f"{report.sha256}  {name}",
            "```",
            "",
        ]
    )


def write_bundle_record(
    report: Any, record: str | Path | None = None, repository: str | None = None
) -> Path:
    """Writes ``<archive>.sha256`` beside the bundle (the line ``sha256sum --check``
    reads) and, when ``record`` is given, :func:`bundle_markdown` there.

    Args:
        report: the :class:`~polycstr_lib.book.bundle.ExportReport` of the export.
        record: the Markdown file the "Verify these numbers" page includes, or None.
        repository: as for :func:`bundle_markdown`.

    Returns:
        The ``.sha256`` file.
    """
    archive = Path(report.path)
    checksum = archive.with_name(archive.name + ".sha256")
    checksum.write_text(f"{report.sha256}  {archive.name}\n", encoding="utf-8")
    if record is not None:
        Path(record).parent.mkdir(parents=True, exist_ok=True)
        Path(record).write_text(bundle_markdown(report, repository), encoding="utf-8")
    return checksum
