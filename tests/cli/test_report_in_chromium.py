"""The HTML report renders in a real browser, every image loaded (headless Chromium).

A test copy of the report gets a small script that, once the page has loaded,
writes on the ``<html>`` element how many images it has and how many decoded
(``img.complete && img.naturalWidth > 0``); Chromium runs it and prints the
resulting DOM (``--dump-dom`` after ``--virtual-time-budget``). Skipped when
Chromium is not installed (Debian: ``apt-get install chromium``; ``.ci/run``
installs it when it can).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from saliencykit.cli.methods import DEFAULT_METHODS
from saliencykit.cli.report import png_data_uri

from .conftest import CliRun

CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install chromium")

IMAGE_CHECK = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (image) { return image.complete && image.naturalWidth > 0; });
  document.documentElement.setAttribute("data-images", String(images.length));
  document.documentElement.setAttribute("data-images-loaded", String(loaded.length));
});
</script>"""


def images_in_chromium(html: str, work: Path) -> tuple[int, int]:
    """Loads ``html`` (with the image check added) in headless Chromium; returns (images, images loaded)."""
    assert "</body>" in html
    page = work / "page.html"
    page.write_text(html.replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
    completed = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # tests may run as root
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={work / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    found = re.search(r'data-images="(\d+)" data-images-loaded="(\d+)"', completed.stdout)
    assert found, f"the page's script did not run; DOM starts with {completed.stdout[:300]!r}"
    return int(found.group(1)), int(found.group(2))


def test_every_image_of_the_report_loads(default_explain: CliRun, tmp_path: Path) -> None:
    report = (default_explain.out / "report.html").read_text(encoding="utf-8")
    images, loaded = images_in_chromium(report, tmp_path)
    assert images == 2 + 2 * len(DEFAULT_METHODS)  # the panel, the input, two pictures per method
    assert loaded == images


def test_the_check_sees_a_broken_image(tmp_path: Path) -> None:
    """A data URI that is not a PNG counts as not loaded: the check above can fail."""
    valid = png_data_uri(np.zeros((2, 2, 3), np.uint8))
    broken = "data:image/png;base64,bm90IGEgcGljdHVyZQ=="  # "not a picture"
    page = f'<!DOCTYPE html><html><body><img src="{valid}"><img src="{broken}"></body></html>'
    assert images_in_chromium(page, tmp_path) == (2, 1)
