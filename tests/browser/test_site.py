"""The built book (``_build/html``) checked statically and in headless Chromium.

* every internal ``<a href>`` (and the root's redirect) points to an existing file, and
  its ``#fragment`` to an id in that file;
* every ``<img>`` resolves to an existing file, and loads in the browser (naturalWidth > 0);
* nothing needed to render comes from the network: no external script, stylesheet or
  image, MathJax served from ``_static/mathjax``; the browser runs with every host but
  127.0.0.1 unresolvable;
* maths is typeset by MathJax on every page that has maths (``mjx-container`` elements,
  no raw TeX left in the text);
* at 1280 px, no code cell, code block or table of any page is wider than the box holding
  it (scrollWidth against clientWidth, collapsed cells opened);
* at 1280 px, the smallest text of every notebook figure (matplotlib PNGs under ``_images/``,
  resolution from the file's pHYs chunk) is shown at least 9 px high; at 390 px (a phone) no
  figure is wider than its column and none is squashed;
* at 390 px (a phone), no page scrolls sideways, and every table fits the window or scrolls
  inside its own box (an ancestor with overflow-x auto or scroll);
* every table reads as text for people (statically, on every page's HTML): no header cell
  (``<th>``) with an underscore or that is one lowercase word (a code name such as ``iqm``),
  no cell that is ``True``, ``False``, ``NaN`` or ``nan``; code and maths are exempt;
* screenshots of the home page and a results page (``_build/screenshots``).

Counts go to ``_build/screenshots/summary.json`` and to pytest's terminal summary.
"""

from __future__ import annotations

import html
import json
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from polycstr_lib.analysis.style import MIN_FONT_PT

# sphinx-thebe writes this constant into every page; thebe is off (_config.yml
# launch_buttons.thebe: false), so thebe's loader, the only reader, never fetches it.
ALLOWED_INLINE_URLS = {"https://unpkg.com/thebe@0.8.2/lib/index.js"}
MATHJAX_ENTRY = "_static/mathjax/tex-chtml-full.js"
RESULTS_PAGES = (
    "book/executed/05_results_grade_up.html",
    "book/executed/04_cost_models.html",
    "book/executed/01_environment.html",
)
SKIP_DIRS = {"_static", "_sources", "_images", "reports"}
RAW_TEX = ("$$", "\\begin{", "\\[", "\\(")
MIN_PNG_BYTES = 10_000
WINDOW = (1280, 1600)
PHONE = (390, 844)
#: Smallest readable text on screen, CSS px: MIN_FONT_PT of a figure must be shown this high.
MIN_TEXT_PX = 9.0
PROBE_ID = "__probe__"

EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
CSS_REMOTE = re.compile(r"(?:@import\s+(?:url\()?|url\()\s*[\"']?\s*(?:https?:)?//", re.I)
INLINE_URL = re.compile(r"https?://[^\s\"'<>`)]+")
NO_TEXT_TAGS = {"script", "style", "code", "pre", "kbd", "samp", "textarea", "noscript"}
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"}
CODE_NAME = re.compile(r"^[a-z][a-z0-9]*$")  # iqm, runs, startup: one lowercase word
RAW_CELLS = {"True", "False", "NaN", "nan"}


class Page(HTMLParser):
    """What a built page links to, loads and shows."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []
        self.preloads: list[str] = []
        self.inline_scripts: list[str] = []
        self.refresh: str | None = None
        self.math = 0
        self.text: list[str] = []
        self._skip = 0
        self._in_script = False
        self.feed(source)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "name" in a:
            self.ids.add(a["name"])
        if "math" in a.get("class", "").split():
            self.math += 1
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "script":
            if a.get("src"):
                self.scripts.append(a["src"])
            else:
                self._in_script = True
        elif tag == "link":
            rel = a.get("rel", "").lower().split()
            if "stylesheet" in rel:
                self.stylesheets.append(a.get("href", ""))
            elif {"preload", "modulepreload"} & set(rel):
                self.preloads.append(a.get("href", ""))
        elif tag == "meta" and a.get("http-equiv", "").lower() == "refresh":
            match = re.search(r"url\s*=\s*(\S+)", a.get("content", ""), re.I)
            self.refresh = match.group(1).strip("'\"") if match else None
        if tag in NO_TEXT_TAGS or tag.startswith("mjx-") or a.get("id") == PROBE_ID:
            self._skip += 1

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False
        if (tag in NO_TEXT_TAGS or tag.startswith("mjx-")) and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if self._in_script:
            self.inline_scripts.append(data)
        elif not self._skip:
            self.text.append(data)


class TableCells(HTMLParser):
    """The text of every table cell of a page, ``(tag, text)``, leaving out code (``<code>``,
    ``<pre>``...) and maths (class ``math``), which a page shows as such on purpose."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.cells: list[tuple[str, str]] = []
        self._open: list[tuple[str, bool]] = []  # (tag, exempt) of every open element
        self._cell: tuple[str, list[str]] | None = None
        self.feed(source)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag in ("th", "td"):
            self._cell = (tag, [])
        if tag in VOID_TAGS:
            return
        classes = dict(attrs).get("class", "") or ""
        exempt = tag in NO_TEXT_TAGS or tag.startswith("mjx-") or "math" in classes.split()
        self._open.append((tag, exempt))

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            kind, parts = self._cell
            self.cells.append((kind, " ".join("".join(parts).split())))
            self._cell = None
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                break

    def handle_data(self, data):
        if self._cell is not None and not any(exempt for _, exempt in self._open):
            self._cell[1].append(data)


def unreadable_cells(source: str) -> tuple[int, list[str]]:
    """How many table cells a page has, and those that show a code name or a raw value."""
    cells = TableCells(source).cells
    problems = []
    for tag, text in cells:
        if tag == "th" and "_" in text:
            problems.append(f"header {text!r} has an underscore")
        elif tag == "th" and CODE_NAME.match(text):
            problems.append(f"header {text!r} is a lowercase code name")
        elif tag == "td" and text in RAW_CELLS:
            problems.append(f"cell {text!r}")
    return len(cells), problems


@cache
def parse(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def resolve(site: Path, page: Path, ref: str) -> tuple[Path, str]:
    """The file a relative reference of ``page`` points to, and its fragment."""
    parts = urlsplit(ref)
    target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


def rel(site: Path, path: Path) -> str:
    try:
        return path.relative_to(site).as_posix()
    except ValueError:
        return str(path)


@pytest.fixture(scope="module")
def pages(site) -> dict[str, Path]:
    found = {
        p.relative_to(site).as_posix(): p.resolve()
        for p in sorted(site.rglob("*.html"))
        if not SKIP_DIRS & set(p.relative_to(site).parts[:-1])
    }
    assert "index.html" in found
    return found


def results_page(pages: dict[str, Path]) -> str:
    for name in RESULTS_PAGES:
        if name in pages:
            return name
    pytest.fail(f"none of {RESULTS_PAGES} was built")


def home_page(pages: dict[str, Path]) -> str:
    """The root page, or where its redirect points (jupyter-book writes one to the root)."""
    site = pages["index.html"].parent
    target = parse(pages["index.html"]).refresh
    return rel(site, resolve(site, pages["index.html"], target)[0]) if target else "index.html"


def test_internal_links_resolve(site, pages, summary):
    problems, checked, fragments = [], 0, 0
    for name, path in pages.items():
        page = parse(path)
        refs = page.links + ([page.refresh] if page.refresh else [])
        for href in refs:
            if not href or EXTERNAL.match(href):
                continue  # http(s), mailto, javascript, data: ... are not ours
            checked += 1
            target, fragment = resolve(site, path, href)
            if not target.is_file():
                problems.append(f"{name}: {href} -> missing {rel(site, target)}")
                continue
            if fragment and target.suffix == ".html":
                fragments += 1
                if fragment not in parse(target).ids:
                    problems.append(f"{name}: {href} -> no id {fragment!r} in {target.name}")
    summary.update(pages=len(pages), links_checked=checked, link_fragments_checked=fragments)
    assert checked > len(pages), "suspiciously few internal links"
    assert not problems, f"{len(problems)} broken internal links:\n" + "\n".join(problems[:40])


def test_images_exist(site, pages, summary):
    problems, checked = [], 0
    for name, path in pages.items():
        for src in parse(path).images:
            if src.startswith("data:"):
                continue
            checked += 1
            if EXTERNAL.match(src):
                problems.append(f"{name}: remote image {src} (the site must render offline)")
            elif not resolve(site, path, src)[0].is_file():
                problems.append(f"{name}: missing image {src}")
    summary["images_checked"] = checked
    assert checked, "no images in the built book"
    assert not problems, "\n".join(problems[:40])


def test_renders_without_network(site, pages, summary):
    """No remote scripts, stylesheets or preloads; MathJax from _static/mathjax."""
    problems, mathjax_pages = [], 0
    mathjax = (site / MATHJAX_ENTRY).resolve()  # absent without npm: then maths stays TeX
    for name, path in pages.items():
        page = parse(path)
        for kind, refs in (
            ("script", page.scripts),
            ("stylesheet", page.stylesheets),
            ("preload", page.preloads),
        ):
            for ref in refs:
                if EXTERNAL.match(ref):
                    problems.append(f"{name}: remote {kind} {ref}")
                    continue
                target = resolve(site, path, ref)[0]
                if kind == "stylesheet" and target.is_file():
                    if CSS_REMOTE.search(target.read_text(encoding="utf-8", errors="replace")):
                        problems.append(f"{name}: {rel(site, target)} imports a remote resource")
        for script in page.inline_scripts:
            for url in set(INLINE_URL.findall(script)) - ALLOWED_INLINE_URLS:
                problems.append(f"{name}: inline script refers to {url}")
        loaders = [s for s in page.scripts if "mathjax" in s.lower() or "tex-" in s.lower()]
        if page.math:
            mathjax_pages += 1
            if not loaders:
                problems.append(f"{name}: has maths but loads no MathJax")
        for src in loaders:
            if resolve(site, path, src)[0] != mathjax:
                problems.append(f"{name}: MathJax from {src}, not {MATHJAX_ENTRY}")
    summary["mathjax_pages"] = mathjax_pages
    assert not problems, "\n".join(problems[:40])


def test_tables_read_as_text(pages, summary):
    """No table shows a code name as its header, or True/False/NaN as a value."""
    problems, checked = [], 0
    for name, path in pages.items():
        cells, found = unreadable_cells(path.read_text(encoding="utf-8"))
        checked += cells
        problems += [f"{name}: {p}" for p in found]
    summary.update(table_cells_checked=checked, table_cells_raw=len(problems))
    assert checked, "no table cell in the built book"
    assert not problems, f"{len(problems)} unreadable table cells:\n" + "\n".join(problems[:60])


def render(pages, browse, window: tuple[int, int]) -> dict[str, tuple[dict | None, str]]:
    """Each page after its JavaScript ran in Chromium at ``window``: (probe report, text
    outside code)."""
    names = [n for n in pages if n != "index.html"]  # the root only redirects

    def dump(name: str) -> str:
        return browse(name + "?probe=1", "--dump-dom", f"--window-size={window[0]},{window[1]}")

    with ThreadPoolExecutor(max_workers=2) as pool:
        doms = dict(zip(names, pool.map(dump, names), strict=True))
    out = {}
    for name, dom in doms.items():
        match = re.search(rf'<pre id="{PROBE_ID}"[^>]*>(.*?)</pre>', dom, re.S)
        probe = json.loads(html.unescape(match[1])) if match else None
        out[name] = (probe, "".join(Page(dom).text))
    return out


@pytest.fixture(scope="module")
def rendered(pages, browse) -> dict[str, tuple[dict | None, str]]:
    """Each page at 1280 px after its JavaScript ran: (probe report, text outside code)."""
    return render(pages, browse, WINDOW)


def notebook_figure(src: str) -> bool:
    """A notebook's output image: myst-nb writes them to ``_images/`` (logos are elsewhere)."""
    return "_images/" in src and src.lower().endswith(".png")


@pytest.fixture(scope="module")
def rendered_phone(pages, emulate) -> dict[str, tuple[dict | None, str]]:
    """Each page at 390 px (a phone, emulated: see ``emulate``) after its JavaScript ran."""
    out = {}
    for name in (n for n in pages if n != "index.html"):
        dom = emulate(name, *PHONE)
        match = re.search(rf'<pre id="{PROBE_ID}"[^>]*>(.*?)</pre>', dom, re.S)
        probe = json.loads(html.unescape(match[1])) if match else None
        out[name] = (probe, "".join(Page(dom).text))
    return out


def test_browser_loads_images(pages, rendered, summary):
    """Every <img> of every page loads in Chromium (naturalWidth > 0); figures are shown."""
    problems, loaded = [], 0
    for name, (probe, _) in rendered.items():
        if probe is None:
            problems.append(f"{name}: the probe never reported (page load did not finish)")
            continue
        if probe["error"]:
            problems.append(f"{name}: {probe['error']}")
        for img in probe["images"]:
            if img["complete"] and img["width"] > 0:
                loaded += 1
            else:
                problems.append(f"{name}: image did not load in the browser: {img['src']}")
    res = results_page(pages)
    probe = rendered[res][0] or {"images": []}
    figures = [i for i in probe["images"] if "_images/" in i["src"] and i["width"] > 0]
    summary.update(
        browser_pages=len(rendered),
        images_loaded_in_browser=loaded,
        results_page=res,
        results_figures_loaded=len(figures),
    )
    assert not problems, "\n".join(problems[:40])
    assert figures, f"{res} shows no figures in the browser"


def test_browser_typesets_math(site, pages, rendered, summary):
    """Pages with maths: MathJax typeset every formula, no raw TeX is left in the text."""
    if not (site / MATHJAX_ENTRY).is_file():
        pytest.skip(f"{MATHJAX_ENTRY} not in the site: scripts/install_mathjax.sh found no npm")
    problems, math_pages, containers = [], [], 0
    for name, (probe, text) in rendered.items():
        expected = parse(pages[name]).math
        if not expected:
            continue
        math_pages.append(name)
        if probe is None:
            problems.append(f"{name}: the probe never reported (page load did not finish)")
            continue
        containers += probe["mjx"]
        if not probe["mathjax"] or probe["mjx"] < expected:
            problems.append(
                f"{name}: {probe['mjx']} mjx-container for {expected} maths "
                f"(MathJax loaded: {probe['mathjax']})"
            )
        for tex in RAW_TEX:
            at = text.find(tex)
            if at >= 0:
                problems.append(f"{name}: raw TeX left: ...{text[at : at + 60]!r}")
    summary.update(math_pages=math_pages, mjx_containers=containers)
    assert math_pages, 'no page with class="math": nothing to typeset'
    assert not problems, "\n".join(problems[:40])


def test_no_horizontal_overflow(rendered, summary):
    """At 1280 px no code cell, code block or table scrolls sideways or pokes out."""
    problems, checked = [], 0
    for name, (probe, _) in rendered.items():
        if probe is None:
            problems.append(f"{name}: the probe never reported (page load did not finish)")
            continue
        report = probe["overflow"]
        assert report["width"] == WINDOW[0], f"{name}: measured at {report['width']} px"
        checked += report["checked"]
        for item in report["found"]:
            problems.append(
                f"{name}: {item['what']} is {item['scroll']} px wide in {item['client']} px"
            )
    summary.update(overflow_checked=checked, overflow_found=len(problems))
    assert checked, "no code cell or table measured"
    assert not problems, f"{len(problems)} overflowing elements:\n" + "\n".join(problems[:60])


#: The first screen of a laptop: a finding must start above this (px from the page top).
FIRST_SCREEN_PX = 800
#: Pages that are chapters (open with a finding): the notebooks' pages and the intro.
CHAPTER = re.compile(r"^(book/executed/\d.*|book/intro|intro)\.html$")


def test_every_chapter_opens_with_its_finding(rendered, summary):
    """Each chapter shows its finding (the "What this page finds" box) on the first screen,
    with its glued sentences filled in."""
    problems, chapters = [], 0
    for name, (probe, _) in rendered.items():
        if not CHAPTER.match(name):
            continue
        chapters += 1
        finding = (probe or {}).get("finding")
        if finding is None:
            problems.append(f"{name}: no finding box")
            continue
        if finding["top"] > FIRST_SCREEN_PX:
            problems.append(f"{name}: the finding starts {finding['top']} px down")
        text = finding["text"]
        if len(text) < 60 or "{glue" in text or "glue:" in text:
            problems.append(f"{name}: the finding reads {text[:120]!r}")
    summary.update(chapters=chapters, findings_missing=len(problems))
    assert chapters >= 10, f"only {chapters} chapter pages found"
    assert not problems, "\n".join(problems)


def png_dpi(path: Path) -> float | None:
    """The resolution a PNG records in its pHYs chunk (dots per inch; matplotlib writes it),
    or None: not a PNG, no pHYs before the image data, or a unit other than the metre."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        if kind == b"pHYs" and length == 9:
            per_metre, _, unit = struct.unpack(">IIB", data[at + 8 : at + 17])
            return per_metre * 0.0254 if unit == 1 else None
        if kind in (b"IDAT", b"IEND"):
            return None
        at += 12 + length
    return None


def test_figure_text_is_legible(site, pages, rendered, summary):
    """At 1280 px every notebook figure shows its smallest text (MIN_FONT_PT) ≥ 9 px high.

    A figure's shown pixels per point are ``dpi / 72 × shown width / natural width``: the
    dpi from the PNG's own pHYs chunk (RETINA × figure.dpi for the book's retina PNGs), the
    widths as the browser lays the <img> out. Images that are no matplotlib PNG (no pHYs, or
    not a notebook output under ``_images/``) are skipped.
    """
    problems, measured, smallest = [], 0, None
    for name, (probe, _) in rendered.items():
        if probe is None:
            problems.append(f"{name}: the probe never reported (page load did not finish)")
            continue
        for img in probe["images"]:
            if not notebook_figure(img["src"]) or not img["width"] or not img["shown"]:
                continue  # a logo, or an image that did not load or is not laid out
            dpi = png_dpi(resolve(site, pages[name], img["src"])[0])
            if dpi is None:
                continue
            measured += 1
            scale = img["shown"] / img["width"]
            text_px = MIN_FONT_PT * dpi / 72 * scale
            smallest = text_px if smallest is None else min(smallest, text_px)
            if text_px < MIN_TEXT_PX:
                problems.append(
                    f"{name}: {img['src'].rsplit('/', 1)[-1][:16]}: {img['width']} px at "
                    f"{dpi:.0f} dpi shown {img['shown']} px wide: {MIN_FONT_PT:g} pt text is "
                    f"{text_px:.1f} px high (< {MIN_TEXT_PX:g}); draw it narrower"
                )
    summary.update(
        figures_measured=measured, smallest_text_px=round(smallest, 1) if smallest else None
    )
    assert measured, "no matplotlib figure (PNG with pHYs under _images/) measured"
    assert not problems, f"{len(problems)} illegible figures:\n" + "\n".join(problems[:40])


def test_figures_fit_a_phone(rendered_phone, summary):
    """At 390 px no notebook figure is wider than the box holding it, and none is squashed
    (its shown aspect ratio is the file's: CSS must let the inline height follow the width)."""
    problems, checked = [], 0
    for name, (probe, _) in rendered_phone.items():
        if probe is None:
            problems.append(f"{name}: the probe never reported (page load did not finish)")
            continue
        if probe["overflow"]["width"] != PHONE[0]:
            width = probe["overflow"]["width"]
            pytest.skip(f"this Chromium lays pages out at {width} px, not {PHONE[0]}")
        for img in probe["images"]:
            if not notebook_figure(img["src"]) or not img["width"] or not img["shown"]:
                continue
            checked += 1
            file = img["src"].rsplit("/", 1)[-1][:16]
            if img["shown"] > img["box"] + 1:
                problems.append(f"{name}: {file} is {img['shown']} px wide in {img['box']} px")
            natural, shown = img["height"] / img["width"], img["shownHeight"] / img["shown"]
            if abs(shown / natural - 1) > 0.03:
                problems.append(
                    f"{name}: {file} is squashed (aspect {shown:.2f}, file {natural:.2f})"
                )
    summary["phone_figures_checked"] = checked
    assert checked, "no notebook figure laid out at 390 px"
    assert not problems, f"{len(problems)} figures do not fit a phone:\n" + "\n".join(problems[:40])


def test_no_page_overflow_on_a_phone(rendered_phone, summary):
    """At 390 px no page scrolls sideways: a wide table scrolls inside its own box."""
    problems, tables = [], 0
    for name, (probe, _) in rendered_phone.items():
        if probe is None:
            problems.append(f"{name}: the probe never reported (page load did not finish)")
            continue
        report = probe["phone"]
        if report["width"] != PHONE[0]:
            problems.append(f"{name}: measured at {report['width']} px, not {PHONE[0]}")
            continue
        tables += report["tables"]
        if report["scroll_width"] > report["width"] + 1:
            wide = "; ".join(f"{w['what']} to {w['right']} px" for w in report["wide"][:5])
            problems.append(
                f"{name}: the page is {report['scroll_width']} px wide in a "
                f"{report['width']} px window ({wide or 'no element found'})"
            )
        for item in report["found"]:
            problems.append(
                f"{name}: {item['what']} spans {item['left']} to {item['right']} px "
                "outside any scroll box"
            )
    summary.update(
        phone_pages=len(rendered_phone), phone_tables=tables, phone_overflow_found=len(problems)
    )
    assert tables, "no table measured at 390 px"
    assert not problems, f"{len(problems)} overflows at {PHONE[0]} px:\n" + "\n".join(problems[:60])


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_screenshots(site, pages, browse, emulate, summary):
    """First screens of the reader's pages at a laptop's width (Chromium's window) and a
    phone's (390 px, emulated), and the results page down to its first figures."""
    out = site.parent / "screenshots"  # _build/screenshots
    out.mkdir(parents=True, exist_ok=True)
    res = results_page(pages)
    shots = {"home.png": (home_page(pages), WINDOW), "results.png": (res, WINDOW)}
    # the results page down to its first figures (a #fragment screenshot does not scroll)
    shots["results_full.png"] = (res, (WINDOW[0], 3 * WINDOW[1]))
    for stem, page in (
        ("intro", home_page(pages)),
        ("results", res),
        ("claims", "book/executed/07_claims.html"),
        ("deviations", "book/deviations.html"),
    ):
        if page in pages:
            shots[f"{stem}_1280.png"] = (page, (1280, 900))
            shots[f"{stem}_390.png"] = (page, PHONE)
    for file, (page, window) in shots.items():
        path = out / file
        path.unlink(missing_ok=True)
        if window[0] < 500:  # narrower than headless Chromium lays a window out
            emulate(page, *window, screenshot=path, probe=False)
        else:
            browse(page, f"--window-size={window[0]},{window[1]}", f"--screenshot={path}")
        assert path.is_file(), f"no screenshot of {page}"
        size = path.stat().st_size
        assert size > MIN_PNG_BYTES, f"{path} is only {size} bytes"
        assert png_size(path) == window, f"{path} is {png_size(path)}, not {window}"
    summary["screenshots"] = {f: p for f, (p, _) in shots.items()}
