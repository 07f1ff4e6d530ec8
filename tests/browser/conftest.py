"""Fixtures for checking the built book in headless Chromium.

The checks need a built site (``make book`` -> ``_build/html``) and a Chromium binary
(Debian's ``chromium``; ``.ci/run`` installs it when it can). Without either, every test
here is skipped with the reason. Chromium is driven through its command-line modes
(``--dump-dom``, ``--screenshot``) and, for a phone's width, through the DevTools protocol
(``emulate``: headless Chromium lays no window out narrower than 500 px, so a 390-px phone is
emulated), against a local ``http.server`` on 127.0.0.1, with every host other than
127.0.0.1 unresolvable, so the pages must render without the network.
"""

from __future__ import annotations

import base64
import functools
import http.server
import itertools
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
SUMMARY: dict = {}
BROWSERS = ("chromium", "chromium-browser", "google-chrome")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    # network off: only the local server resolves; any CDN fetch fails
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # virtual time runs until the page is idle, so MathJax finishes typesetting
    "--virtual-time-budget=10000",
)

# Appended to a page served with ``?probe=1``: once the page has loaded and MathJax (if
# any) has typeset, it writes what the browser sees into <pre id="__probe__"> for
# --dump-dom. Images are switched to eager loading so lazy ones below the fold load too.
PROBE_ID = "__probe__"
PROBE_SCRIPT = """
<script>
(function () {
  function eager() {
    Array.prototype.forEach.call(document.images, function (i) { i.loading = "eager"; });
  }
  function settled(img) {
    if (img.complete) { return Promise.resolve(); }
    return new Promise(function (ok) {
      img.addEventListener("load", ok); img.addEventListener("error", ok);
    });
  }
  // Horizontal overflow of every code cell, code block and table at the window's width,
  // with every collapsed cell (<details>) opened: [{what, scroll, client}] where the
  // content (scrollWidth) is wider than the box (clientWidth), or a table is wider than
  // the element holding it.
  function describe(el) {
    var cell = el.closest("div.cell");
    var where = cell ? "cell " + (Array.prototype.indexOf.call(
      document.querySelectorAll("div.cell"), cell) + 1) : "page";
    var cls = (el.getAttribute("class") || "").trim().split(/\\s+/).slice(0, 2).join(".");
    return where + ": " + el.tagName.toLowerCase() + (cls ? "." + cls : "");
  }
  function overflow() {
    Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) {
      d.open = true;
    });
    var found = [], checked = 0;
    var sel = "pre, div.highlight, div.cell_input, div.cell_output, div.output, table, " +
      "div.pst-scrollable-table-container, div.table-wrapper";
    Array.prototype.forEach.call(document.querySelectorAll(sel), function (el) {
      if (el.closest("#__probe__") || !el.getClientRects().length) { return; }
      checked += 1;
      var scroll = el.scrollWidth, client = el.clientWidth;
      if (el.tagName === "TABLE" && el.parentElement) {
        scroll = Math.ceil(el.getBoundingClientRect().width);
        client = el.parentElement.clientWidth;
      }
      if (scroll > client + 1) {
        found.push({what: describe(el), scroll: scroll, client: client});
      }
    });
    return {checked: checked, found: found, width: window.innerWidth};
  }
  // At the window's width (tests/browser/test_site.py runs it at 390 px): how wide the
  // page scrolls, and every table that is neither inside a box that scrolls sideways
  // (overflow-x auto or scroll) nor within the window. "wide" names the outermost visible
  // elements that reach past the window's right edge outside any scroll box.
  function scroller(el) {
    for (var p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      var o = getComputedStyle(p).overflowX;
      if (o === "auto" || o === "scroll") { return p; }
    }
    return null;
  }
  function clipped(el) {
    for (var p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      var o = getComputedStyle(p).overflowX;
      if (o !== "visible") { return true; }
    }
    return false;
  }
  function pageWidth() {
    var width = window.innerWidth, tables = 0, found = [], wide = [];
    var doc = document.scrollingElement || document.documentElement;
    Array.prototype.forEach.call(document.querySelectorAll("table"), function (el) {
      if (el.closest("#__probe__") || !el.getClientRects().length) { return; }
      tables += 1;
      var r = el.getBoundingClientRect(), box = scroller(el);
      if (box) {
        var b = box.getBoundingClientRect();
        if (b.left < -1 || b.right > width + 1) {
          found.push({what: describe(el) + " in a scroll box wider than the window",
                      left: Math.floor(b.left), right: Math.ceil(b.right)});
        }
      } else if (r.left < -1 || r.right > width + 1) {
        found.push({what: describe(el), left: Math.floor(r.left), right: Math.ceil(r.right)});
      }
    });
    Array.prototype.forEach.call(document.body.querySelectorAll("*"), function (el) {
      if (wide.length >= 20 || el.closest("#__probe__") || !el.getClientRects().length) {
        return;
      }
      var r = el.getBoundingClientRect();
      if (r.right <= width + 1 || getComputedStyle(el).visibility === "hidden") { return; }
      if (getComputedStyle(el).position === "fixed" || clipped(el)) { return; }
      var parent = el.parentElement;
      if (parent && parent !== document.body &&
          parent.getBoundingClientRect().right > width + 1) { return; }  // outermost only
      wide.push({what: describe(el), right: Math.ceil(r.right)});
    });
    return {width: width, scroll_width: doc.scrollWidth, tables: tables, found: found,
            wide: wide};
  }
  function report(error) {
    var over = overflow();  // opens every <details> first
    var out = {
      overflow: over,
      phone: pageWidth(),
      // natural size (the file's pixels) and shown size (CSS px), and the width of the box
      // holding the image: a figure's shown scale and whether it fits its column
      images: Array.prototype.map.call(document.images, function (i) {
        return {src: i.getAttribute("src"), complete: i.complete,
                width: i.naturalWidth, height: i.naturalHeight,
                shown: i.clientWidth, shownHeight: i.clientHeight,
                box: (i.parentElement && i.parentElement.closest(
                  "div, figure, p, section, td")  || document.body).clientWidth};
      }),
      mjx: document.querySelectorAll("mjx-container").length,
      finding: (function () {
        var box = document.querySelector(".finding");
        if (!box) { return null; }
        return {top: Math.round(box.getBoundingClientRect().top + window.scrollY),
                text: box.textContent.replace(/\\s+/g, " ").trim()};
      })(),
      mathjax: !!(window.MathJax && window.MathJax.startup),
      error: error ? String(error) : null
    };
    var pre = document.createElement("pre");
    pre.id = "__probe__";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  document.addEventListener("DOMContentLoaded", eager);
  window.addEventListener("load", function () {
    eager();
    var mj = (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise)
      || Promise.resolve();
    Promise.all([mj].concat(Array.prototype.map.call(document.images, settled)))
      .then(function () { report(null); }, report);
  });
})();
</script>
"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from the site; ``*.html?probe=1`` gets the probe script appended."""

    def log_message(self, format, *args):  # noqa: A002 - keep the test output quiet
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if "probe=1" not in url.query or not url.path.endswith(".html"):
            return super().do_GET()
        path = Path(self.translate_path(url.path))
        if not path.is_file():
            return self.send_error(404)
        html = path.read_text(encoding="utf-8")
        cut = html.rfind("</body>")
        cut = len(html) if cut < 0 else cut
        body = (html[:cut] + PROBE_SCRIPT + html[cut:]).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="session")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        pytest.skip(f"{SITE / 'index.html'} does not exist: run `make book` first")
    return SITE


@pytest.fixture(scope="session")
def chromium() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "no headless browser (chromium, chromium-browser or google-chrome) on PATH: "
        "`apt-get install chromium` to run the browser checks"
    )


@pytest.fixture(scope="session")
def server(site):
    """Base URL of the built site served on a random free port of 127.0.0.1."""
    handler = functools.partial(_Handler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def browse(chromium, server, tmp_path_factory):
    """``browse(page, *args)``: run headless Chromium on a site page, return its stdout."""

    def run(page: str, *args: str, timeout: float = 60) -> str:
        profile = tmp_path_factory.mktemp("chromium-profile")
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, server + page]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise AssertionError(
                f"chromium exited {proc.returncode} on {page}:\n{proc.stderr[-2000:]}"
            )
        return proc.stdout

    return run


@pytest.fixture(scope="session")
def emulate(chromium, server, tmp_path_factory):
    """``emulate(page, width, height, screenshot=None, probe=True) -> dom``: a site page in
    one Chromium tab whose viewport is set through the DevTools protocol
    (``Emulation.setDeviceMetricsOverride``, a mobile viewport of ``width`` CSS px). With
    ``probe`` the page gets the probe script and the call returns once it reported; else
    once the page and MathJax are done. ``screenshot``: a PNG path for the viewport."""
    websocket = pytest.importorskip("websocket", reason="websocket-client drives Chromium's tab")
    profile = tmp_path_factory.mktemp("chromium-devtools")
    flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--virtual-time-budget")]
    proc = subprocess.Popen(
        [chromium, *flags, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--remote-allow-origins=*", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.skip("Chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            tab = next(t for t in json.load(r) if t["type"] == "page")
        ws = websocket.create_connection(
            tab["webSocketDebuggerUrl"], suppress_origin=True, timeout=60
        )
        ids = itertools.count(1)

        def call(method: str, **params):
            number = next(ids)
            ws.send(json.dumps({"id": number, "method": method, "params": params}))
            while True:
                message = json.loads(ws.recv())
                if message.get("id") == number:
                    if "error" in message:
                        raise AssertionError(f"{method}: {message['error']}")
                    return message.get("result", {})

        def evaluate(expression: str, wait: bool = False):
            result = call(
                "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=wait
            )
            return result.get("result", {}).get("value")

        def run(page: str, width: int, height: int, screenshot=None, probe: bool = True) -> str:
            call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,  # a fixed layout width: a wider page scrolls, never zooms out
            )
            call("Page.navigate", url=server + page + ("?probe=1" if probe else ""))
            ready = (
                "document.getElementById('__probe__') !== null"
                if probe
                else "document.readyState === 'complete'"
            )
            deadline = time.monotonic() + 60
            while not evaluate(ready):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{page} did not finish loading in 60 s at {width} px")
                time.sleep(0.2)
            evaluate(
                "(window.MathJax && MathJax.startup && MathJax.startup.promise"
                " || Promise.resolve()).then(() => true)",
                wait=True,
            )
            if screenshot is not None:
                data = call("Page.captureScreenshot", format="png")["data"]
                Path(screenshot).write_bytes(base64.b64decode(data))
            return evaluate("document.documentElement.outerHTML")

        yield run
        ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def summary(site):
    """Counts of what was checked: _build/screenshots/summary.json and pytest's summary."""
    yield SUMMARY
    if SUMMARY:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        text = json.dumps(SUMMARY, indent=2, sort_keys=True) + "\n"
        (SCREENSHOTS / "summary.json").write_text(text)


def pytest_terminal_summary(terminalreporter):
    s = SUMMARY
    parts = []
    if "pages" in s:
        parts.append(f"{s['pages']} pages")
    if "images_checked" in s:
        parts.append(f"{s['images_checked']} images")
    if "images_loaded_in_browser" in s:
        parts.append(f"{s['images_loaded_in_browser']} loaded in Chromium")
    if "links_checked" in s:
        parts.append(
            f"{s['links_checked']} internal links ({s['link_fragments_checked']} with #fragment)"
        )
    if "math_pages" in s:
        parts.append(
            f"maths typeset on {len(s['math_pages'])} pages ({s['mjx_containers']} mjx-container)"
        )
    if "figures_measured" in s:
        parts.append(
            f"{s['figures_measured']} figures' text measured at 1280 px "
            f"(smallest {s['smallest_text_px']} px)"
        )
    if "phone_figures_checked" in s:
        parts.append(f"{s['phone_figures_checked']} figures fitted at 390 px")
    if "overflow_checked" in s:
        parts.append(
            f"{s['overflow_checked']} code cells/tables measured at 1280 px, "
            f"{s['overflow_found']} overflowing"
        )
    if "phone_pages" in s:
        parts.append(
            f"{s['phone_pages']} pages and {s['phone_tables']} tables at 390 px, "
            f"{s['phone_overflow_found']} overflowing"
        )
    if "table_cells_checked" in s:
        parts.append(
            f"{s['table_cells_checked']} table cells read as text, "
            f"{s['table_cells_raw']} code names or raw values"
        )
    if "screenshots" in s:
        parts.append(f"{len(s['screenshots'])} screenshots")
    if parts:
        where = (SCREENSHOTS / "summary.json").relative_to(ROOT)
        terminalreporter.write_line(f"book site checked: {', '.join(parts)}; see {where}")
