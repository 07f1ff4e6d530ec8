"""The numbers glued into a build's pages: reading them back and comparing two builds."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from pathlib import Path

from polycstr_lib.book.profiles import EXECUTED_DIR, RUNS


def literal_value(text: str) -> object:
    """A glued value from its text: a Python literal, or ``nan``/``inf``/``-inf``.

    Raises:
        ValueError: anything else.
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if text in ("nan", "inf", "-inf"):
            return float(text)
        raise ValueError(f"not a Python literal: {text!r}") from None


def read_glue(path: str | Path) -> dict:
    """All values glued (myst-nb ``glue``) in an executed notebook, by name (glued figures
    are left out: they are images, not numbers).

    Raises:
        FileNotFoundError: when the notebook is missing.
        ValueError: when a glued value cannot be parsed as a Python literal.
    """
    nb = json.loads(Path(path).read_text())
    values = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            data = out.get("data", {})
            prefix = meta.get("mime_prefix", "")
            if any(k.startswith(prefix + "image/") for k in data):
                continue  # a glued figure: pasted into a page, not a number
            text = data.get(prefix + "text/plain", data.get("text/plain"))
            if isinstance(text, list):
                text = "".join(text)
            try:
                values[meta["name"]] = literal_value(text)
            except ValueError:
                raise ValueError(f"{path}: cannot parse glued {meta['name']}={text!r}") from None
    return values


def glued_numbers(executed_dir: Path | None = None) -> dict[str, dict]:
    """Every value glued into the prose, per executed page in the book's order.

    What a reviewer checks against the paper, and what two builds of one commit must agree
    on bit for bit (:func:`differing_numbers`). Pages not executed are left out.

    Args:
        executed_dir: Where the executed pages are (default :data:`EXECUTED_DIR`).

    Returns:
        ``{page stem: {glue name: value}}``, values parsed as Python literals.

    Raises:
        FileNotFoundError: when the folder does not exist.
        ValueError: when a page holds a glued value that is not a Python literal.
    """
    from polycstr_lib.book.glue import read_glue

    folder = executed_dir or EXECUTED_DIR
    if not folder.is_dir():
        raise FileNotFoundError(f"no executed pages at {folder}: run `make book` first")
    pages = [folder / f"{run.page}.ipynb" for run in RUNS]
    return {page.stem: read_glue(page) for page in pages if page.is_file()}


#: The file holding a build's glued values, in a bundle and in the built site.
NUMBERS_FILE = "numbers.json"


def numbers_json(pages: Mapping[str, Mapping[str, object]], profile: str, commit: str) -> bytes:
    """The table of a build's glued values as :data:`NUMBERS_FILE` holds it.

    ``{"profile", "commit", "pages": {page: {name: repr(value)}}}``: each value as its
    ``repr`` (what the executed page shows), read back with :func:`literal_value`, so tuples
    stay tuples and floats keep every bit.
    """
    table = {
        page: {name: repr(value) for name, value in values.items()}
        for page, values in pages.items()
    }
    return json.dumps({"profile": profile, "commit": commit, "pages": table}, indent=1).encode()


def write_numbers_json(executed_dir: Path, path: Path) -> Path | None:
    """Writes :func:`numbers_json` of the executed pages in ``executed_dir`` to ``path``
    (the build's profile and commit from the pages' banners, several comma-separated).

    Returns:
        ``path``, or None when ``executed_dir`` holds no executed page (nothing written).
    """
    if not Path(executed_dir).is_dir():
        return None
    pages = glued_numbers(Path(executed_dir))
    if not pages:
        return None
    found = build_provenance(executed_dir)
    profile, commit = (", ".join(sorted(found[k])) for k in ("profile", "commit"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(numbers_json(pages, profile, commit))
    return path


def _same_value(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN on both sides
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    return a == b


MISSING = "(missing)"


def differing_numbers(
    first: Mapping[str, Mapping], second: Mapping[str, Mapping]
) -> list[tuple[str, str, object, object]]:
    """The glued values two builds disagree on, as ``(page, name, first, second)``.

    Values compare exactly (floats bit for bit, NaN equal to NaN, containers element by
    element); a page or value present on one side only differs, shown as :data:`MISSING`.
    """
    differences = []
    for page in dict.fromkeys([*first, *second]):
        a, b = first.get(page, {}), second.get(page, {})
        for name in dict.fromkeys([*a, *b]):
            left, right = a.get(name, MISSING), b.get(name, MISSING)
            if not _same_value(left, right):
                differences.append((page, name, left, right))
    return differences


_BANNER = re.compile(r"Run provenance: profile (\S+), commit (\S+),")


def build_provenance(executed_dir: Path | None = None) -> dict[str, set[str]]:
    """The profiles and commits that the pages of a build were executed at.

    Read from each page's provenance banner (its plain-text rendering). A complete build made
    in one go has one of each; a build whose pages come from several runs has more.

    Returns:
        ``{"profile": {...}, "commit": {...}}``, empty sets when no page has a banner.
    """
    folder = Path(executed_dir) if executed_dir is not None else EXECUTED_DIR
    found: dict[str, set[str]] = {"profile": set(), "commit": set()}
    for page in sorted(folder.glob("*.ipynb")):
        if page.name.endswith((".partial.ipynb", ".failed.ipynb")):
            continue
        for cell in json.loads(page.read_text()).get("cells", []):
            for out in cell.get("outputs", []):
                text = out.get("data", {}).get("text/plain", "")
                match = _BANNER.search("".join(text) if isinstance(text, list) else text)
                if match:
                    found["profile"].add(match.group(1))
                    found["commit"].add(match.group(2))
    return found
