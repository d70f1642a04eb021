"""A self-contained HTML page of a stored run's first images and their maps (``out/gallery.html``).

One table row per image (at most ``limit``, in the manifest's order): the
image as the model saw it, then each method's map drawn as the command
line's report draws it (:func:`saliencykit.cli.display.pictures_of`, with
matplotlib's colour maps; without matplotlib, gray levels of the map's
importance). Failed items show their error. Pictures are PNG data URIs, so
the page needs no other file.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .store import RunStore, atomic_write_bytes

__all__ = ["DEFAULT_GALLERY_IMAGES", "write_gallery"]

#: Images shown when no ``limit`` is given.
DEFAULT_GALLERY_IMAGES = 24

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 4px; vertical-align: top; text-align: center; font-size: 12px; }
th { background: #f4f4f4; }
img { width: 128px; height: auto; image-rendering: auto; display: block; margin: auto; }
.failed { color: #a00; max-width: 128px; word-wrap: break-word; }
.name { max-width: 160px; word-wrap: break-word; }
"""


def _png_uri(pixels: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _map_picture(saliency_map: np.ndarray, method: str, image: np.ndarray | None) -> np.ndarray:
    """The map as the command line draws it; gray importance levels without matplotlib."""
    from ..cli.display import pictures_of, saliency_2d
    from ..cli.methods import METHODS

    display = METHODS[method].display if method in METHODS else "grayscale"
    values = np.asarray(saliency_map, dtype=np.float32)
    if image is None or image.shape[:2] != values.shape[:2]:
        image = np.zeros((*values.shape[:2], 3), np.float32)
    try:
        return pictures_of(values, display, image).saliency_map
    except ImportError:
        importance = saliency_2d(values, display)
        low, high = float(importance.min()), float(importance.max())
        scaled = (importance - low) / (high - low) if high > low else np.zeros_like(importance)
        return np.repeat(np.round(255 * scaled).astype(np.uint8)[..., None], 3, axis=2)


def _image_picture(path: str, size: tuple[int, int] | None) -> tuple[np.ndarray | None, str]:
    """The image at ``size`` (the maps' size) or at most 224 pixels, or why it cannot be read."""
    from ..cli.images import load_image, resize_image

    try:
        pixels = load_image(path, "image").pixels
    except Exception as error:
        return None, str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if size is None:
        scale = min(1.0, 224 / max(pixels.shape[:2]))
        size = (max(1, round(pixels.shape[0] * scale)), max(1, round(pixels.shape[1] * scale)))
    return resize_image(pixels, size), ""


def _records(rows: Any) -> list[dict[str, Any]]:
    if hasattr(rows, "to_dict"):  # a pandas DataFrame
        records: list[dict[str, Any]] = rows.to_dict("records")
        return records
    return [dict(row) for row in rows]


def write_gallery(
    out: str | os.PathLike[str],
    rows: Iterable[Mapping[str, Any]] | Any | None = None,
    *,
    limit: int = DEFAULT_GALLERY_IMAGES,
    name: str = "gallery.html",
) -> Path:
    """Writes ``out/<name>``: the first ``limit`` images of a stored run with their maps, atomically.

    Args:
      out: the run's output folder (:class:`~saliencykit.runs.store.RunStore`).
      rows: the manifest rows to show (a list of dicts or the DataFrame
        :func:`~saliencykit.runs.explain_dataset` returns); default every stored row.
      limit: the most images shown (>= 1); the page says how many there are.
      name: the page's file name in ``out``.

    Returns:
      The page's path.

    Raises:
      ValueError: ``limit`` below 1.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit: expected an integer >= 1, got {limit!r}")
    store = RunStore(out)
    records = store.rows() if rows is None else _records(rows)
    by_image: dict[str, list[dict[str, Any]]] = {}
    methods: list[str] = []
    for row in records:
        by_image.setdefault(str(row.get("image_path", "")), []).append(row)
        if row.get("method") not in methods:
            methods.append(str(row.get("method")))
    shown = list(by_image.items())[:limit]
    header = "".join(f"<th>{html.escape(method)}</th>" for method in methods)
    lines = []
    for image_path, image_rows in shown:
        cells: dict[str, str] = {}
        maps: dict[str, np.ndarray] = {}
        for row in image_rows:
            if row.get("status") == "ok":
                try:
                    maps[str(row["method"])] = store.load_map(str(row["key"]))
                except Exception as error:  # missing or damaged
                    cells[str(row["method"])] = (
                        f'<div class="failed">map unreadable: {html.escape(str(error))}</div>'
                    )
            else:
                cells[str(row.get("method"))] = (
                    f'<div class="failed">{html.escape(str(row.get("error") or ""))}</div>'
                )
        size = next((tuple(m.shape[:2]) for m in maps.values() if m.ndim >= 2), None)
        image, problem = _image_picture(image_path, size)
        for method, saliency_map in maps.items():
            picture = _map_picture(saliency_map, method, image)
            cells[method] = f'<img src="{_png_uri(picture)}" alt="{html.escape(method)}">'
        first = image_rows[0]
        caption = html.escape(Path(image_path).name)
        if first.get("label"):
            probability = first.get("probability")
            chance = f" ({float(probability):.2f})" if probability not in (None, "") else ""
            caption += f"<br>{html.escape(str(first['label']))}{html.escape(chance)}"
        picture_cell = (
            f'<img src="{_png_uri(image)}" alt="image">'
            if image is not None
            else f'<div class="failed">{html.escape(problem)}</div>'
        )
        row_cells = "".join(f"<td>{cells.get(method, '')}</td>" for method in methods)
        lines.append(f'<tr><td class="name">{picture_cell}{caption}</td>{row_cells}</tr>')
    count = (
        f"the first {len(shown)} of {len(by_image)} images"
        if len(by_image) > len(shown)
        else (f"{len(by_image)} images")
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>saliencykit run: {html.escape(str(store.out))}</title><style>{_STYLE}</style></head><body>"
        f"<h1>saliencykit run</h1><p>{html.escape(str(store.out))}: {count}, {len(methods)} methods.</p>"
        f"<table><thead><tr><th>image</th>{header}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
        "</body></html>\n"
    )
    return atomic_write_bytes(store.out / name, page.encode("utf-8"))
