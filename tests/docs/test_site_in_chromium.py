"""Every page of the built site loads in headless Chromium with all its images and no console error.

The site (built once by ``conftest.built_site``) is copied, and a small script is put first in the
``<head>`` of every page: it records ``console.error`` calls, uncaught exceptions, unhandled
promise rejections and resources that fail to load (images, scripts, stylesheets). The copy is
served over HTTP on localhost (as ``mkdocs serve`` would; the search index is fetched, which
``file://`` forbids), and one Chromium run opens a driver page that loads every page in turn in an
iframe and collects, per page, the images that did not decode and the errors recorded. Chromium
runs with ``--dump-dom``, so the driver's results come back in the printed DOM. A control test runs
the same check on a page with a broken image and a console error. Skipped when Chromium is not
installed (Debian: ``apt-get install chromium``; ``.ci/run`` installs it when it can).
"""

from __future__ import annotations

import contextlib
import functools
import html
import http.server
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import BuiltSite

CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install chromium")

ERROR_HOOK = """<script>
(function () {
  var errors = [];
  window.__docsErrors = errors;
  var consoleError = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.map.call(arguments, String).join(" "));
    return consoleError.apply(console, arguments);
  };
  window.addEventListener("error", function (event) {
    var target = event.target;
    if (target && target !== window && (target.src || target.href)) {
      errors.push("failed to load " + (target.src || target.href));
    } else {
      errors.push("uncaught: " + event.message);
    }
  }, true);
  window.addEventListener("unhandledrejection", function (event) {
    errors.push("unhandled rejection: " + String(event.reason));
  });
})();
</script>"""

DRIVER = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><pre id="results"></pre><script>
var pages = %s, results = {}, index = 0;
var frame = document.createElement("iframe");
frame.width = 1280; frame.height = 1000;
document.body.appendChild(frame);
function next() {
  if (index >= pages.length) {
    document.getElementById("results").textContent = "RESULTS" + JSON.stringify(results) + "END";
    return;
  }
  var page = pages[index++];
  frame.onload = function () {
    setTimeout(function () {
      var images = Array.prototype.slice.call(frame.contentDocument.images);
      results[page] = {
        images: images.length,
        broken: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                      .map(function (i) { return i.getAttribute("src").slice(0, 80); }),
        errors: (frame.contentWindow.__docsErrors || ["the error hook did not run"]).slice()
      };
      next();
    }, 500);
  };
  frame.src = page;
}
window.addEventListener("load", next);
</script></body></html>"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[str]:
    """Serves ``folder`` on a free localhost port; yields the base URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def add_error_hook(folder: Path) -> list[str]:
    """Puts the error hook first in the ``<head>`` of every HTML page; returns the pages' paths."""
    pages = []
    for page in sorted(folder.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        head = re.search(r"<head[^>]*>", text)
        assert head, f"{page} has no <head>"
        page.write_text(text[: head.end()] + ERROR_HOOK + text[head.end() :], encoding="utf-8")
        pages.append(page.relative_to(folder).as_posix())
    return pages


def check_pages(folder: Path, work: Path) -> dict[str, dict[str, Any]]:
    """Loads every HTML page of ``folder`` (modified in place) in Chromium; returns each page's result."""
    pages = add_error_hook(folder)
    (folder / "__driver__.html").write_text(DRIVER % json.dumps(pages), encoding="utf-8")
    with serving(folder) as url:
        completed = subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",  # tests may run as root
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={work / 'profile'}",
                f"--virtual-time-budget={20000 + 2000 * len(pages)}",
                "--dump-dom",
                url + "__driver__.html",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert completed.returncode == 0, completed.stderr[-2000:]
    found = re.search(r'<pre id="results">RESULTS(.*?)END</pre>', completed.stdout, re.S)
    assert found, f"the driver did not finish; DOM starts with {completed.stdout[:300]!r}"
    results: dict[str, dict[str, Any]] = json.loads(html.unescape(found.group(1)))
    assert sorted(results) == pages
    return results


def test_every_page_loads_with_its_images_and_no_console_error(built_site: BuiltSite, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(built_site.path, site)
    results = check_pages(site, tmp_path)
    problems = {page: r for page, r in results.items() if r["broken"] or r["errors"]}
    assert not problems, json.dumps(problems, indent=1)[:4000]
    images = {page: r["images"] for page, r in results.items()}
    assert images["index.html"] >= 1  # the gallery
    assert images["methods/integrated-gradients.html"] >= 1
    assert images["examples/core_pytorch.html"] >= 2  # the notebook's figures, inline


def test_the_check_sees_a_broken_image_and_console_errors(tmp_path: Path) -> None:
    """The check can fail: a missing image, a console.error call and an uncaught exception are caught."""
    site = tmp_path / "site"
    site.mkdir()
    good = "<!DOCTYPE html><html><head><title>good</title></head><body><p>fine</p></body></html>"
    bad = (
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        '<img src="missing.png"><script>console.error("boom"); undefinedFunction();</script></body></html>'
    )
    (site / "good.html").write_text(good, encoding="utf-8")
    (site / "bad.html").write_text(bad, encoding="utf-8")
    results = check_pages(site, tmp_path)
    assert results["good.html"] == {"images": 0, "broken": [], "errors": []}
    assert results["bad.html"]["broken"] == ["missing.png"]
    errors = results["bad.html"]["errors"]
    assert any("missing.png" in e for e in errors)
    assert any(e == "console.error: boom" for e in errors)
    assert any("undefinedFunction" in e for e in errors)
