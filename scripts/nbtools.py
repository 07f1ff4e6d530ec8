"""Write a notebook from a list of (kind, source, tags) cells, outputs stripped.

The notebooks in notebooks/ are the source of truth; this helper only makes it easy to
write one from a script: `python scripts/nbtools.py strip notebooks/*.ipynb` strips outputs.
"""

from __future__ import annotations

import sys

import nbformat

from polycstr_lib.book.site import INSTALL_TAG, install_cell_source, public_repository

# The install cell of the address this checkout resolves (GITHUB_REPOSITORY, else the
# origin remote, else a local-clone instruction): see polycstr_lib.book.site.
INSTALL_CELL = install_cell_source(public_repository())


def build(cells: list[tuple], path: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    install_tags = [INSTALL_TAG, "hide-input"]
    out = [nbformat.v4.new_code_cell(INSTALL_CELL, metadata={"tags": install_tags})]
    for cell in cells:
        kind, source = cell[0], cell[1].strip("\n")
        tags = list(cell[2]) if len(cell) > 2 else []
        meta = {"tags": tags} if tags else {}
        if kind == "md":
            out.append(nbformat.v4.new_markdown_cell(source, metadata=meta))
        else:
            out.append(nbformat.v4.new_code_cell(source, metadata=meta))
    nb.cells = out
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:02d}"
    nbformat.write(nb, path)


def strip(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nbformat.write(nb, path)


if __name__ == "__main__":
    if sys.argv[1] == "strip":
        for p in sys.argv[2:]:
            strip(p)
