"""The gallery page of a stored run (issue 14): the first images and their maps, self-contained."""

from __future__ import annotations

import base64
import io
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

from saliencykit.runs import ModelSpec, explain_dataset, write_gallery

from .conftest import write_images

PNG_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def pictures(page: str) -> list[tuple[int, int]]:
    sizes = []
    for data in PNG_URI.findall(page):
        with Image.open(io.BytesIO(base64.b64decode(data))) as picture:
            picture.load()
            sizes.append(picture.size)
    return sizes


def test_the_gallery_shows_the_first_images_with_their_maps_and_errors(
    tmp_path: Path, spec: ModelSpec
) -> None:
    folder = tmp_path / "images"
    write_images(folder, 4)
    (folder / "a-broken.png").write_bytes(b"<b>not</b> an image")
    out = tmp_path / "out"
    table = explain_dataset(folder, spec, ["gradients", "occlusion"], out)
    path = write_gallery(out, table, limit=3)
    assert path == out / "gallery.html"
    page = path.read_text("utf-8")
    assert page.count("<tr><td") == 3 and "the first 3 of 5 images" in page
    assert "a-broken.png" in page and "&lt;b&gt;" not in page  # its error is shown, escaped
    assert "not an image Pillow can read" in page
    # Two readable images shown: each picture and its two maps, at the model's size.
    assert pictures(page) == [(32, 32)] * 6
    assert "<th>gradients</th><th>occlusion</th>" in page
    assert not list(out.glob(".*.tmp"))
    # Without rows: every stored row.
    everything = write_gallery(out, name="all.html").read_text("utf-8")
    assert everything.count("<tr><td") == 5 and len(pictures(everything)) == 4 * 3


def test_the_gallery_works_without_matplotlib(
    tmp_path: Path, spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = write_images(tmp_path / "images", 2)
    out = tmp_path / "out"
    explain_dataset(images, spec, ["gradients", "occlusion"], out)
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    page = write_gallery(out).read_text("utf-8")
    assert pictures(page) == [(32, 32)] * 6


def test_the_gallery_limit_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="limit"):
        write_gallery(tmp_path, limit=0)
