"""The side-by-side PNG panel of ``saliencykit explain`` (matplotlib, no pyplot state).

One tile per method, up to eight tiles a row: the map on top, the map on the
image below. The first tile shows the input and the model's five most
probable classes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .display import MapPictures
from .methods import MethodResult
from .models import Prediction
from .outputs import write_atomically

__all__ = ["panel_png", "save_panel"]

TILES_PER_ROW = 8
TILE_INCHES = 2.2


def _shorten(text: str, length: int = 22) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def panel_png(
    image: np.ndarray,
    image_name: str,
    prediction: Prediction,
    results: Sequence[MethodResult],
    pictures: Sequence[MapPictures],
    dpi: int = 100,
) -> bytes:
    """Draws the panel; returns it as PNG bytes.

    Args:
      image: the explained image ``[H, W, 3]`` in [0, 255].
      image_name: its name, for the first tile's title.
      prediction: the model's prediction and the explained class.
      results: the methods' results, in panel order.
      pictures: each result's pictures (:func:`saliencykit.cli.display.pictures_of`).
      dpi: the resolution; a tile is 2.2 inches wide.
    """
    from matplotlib.figure import Figure

    n_tiles = 1 + len(results)
    columns = min(n_tiles, TILES_PER_ROW)
    tile_rows = math.ceil(n_tiles / columns)
    height = tile_rows * 2 * TILE_INCHES + 0.6
    figure = Figure(figsize=(columns * TILE_INCHES, height), dpi=dpi)
    grid = figure.add_gridspec(
        2 * tile_rows, columns, hspace=0.2, wspace=0.05, top=1 - 0.6 / height, bottom=0
    )
    figure.suptitle(
        f"class {prediction.class_index}: {prediction.label} (p = {prediction.probability:.2f})",
        fontsize=13,
        y=1 - 0.1 / height,
    )

    def axes_of(tile: int, lower: bool) -> Any:
        row, column = divmod(tile, columns)
        return figure.add_subplot(grid[2 * row + int(lower), column])

    top_axes = axes_of(0, False)
    top_axes.imshow(np.clip(image, 0, 255).astype(np.uint8))
    top_axes.set_title(_shorten(image_name), fontsize=9)
    top_axes.axis("off")
    bars = axes_of(0, True)
    names = [f"{_shorten(label, 18)} ({index})" for index, label, _ in prediction.top]
    probabilities = [probability for _, _, probability in prediction.top]
    colors = ["tab:red" if index == prediction.class_index else "tab:gray" for index, _, _ in prediction.top]
    positions = np.arange(len(names))[::-1]
    bars.barh(positions, probabilities, color=colors, alpha=0.6)
    for position, name, probability in zip(positions, names, probabilities, strict=True):
        bars.text(0.02, position, f"{probability:.2f} {name}", va="center", fontsize=7)
    bars.set_xlim(0, 1)
    bars.set_xticks([])
    bars.set_yticks([])
    bars.set_title("top-5 probabilities", fontsize=9)

    for tile, (result, picture) in enumerate(zip(results, pictures, strict=True), start=1):
        upper = axes_of(tile, False)
        upper.imshow(picture.saliency_map)
        upper.set_title(f"{result.title} ({result.seconds:.1f} s)", fontsize=9)
        upper.axis("off")
        lower = axes_of(tile, True)
        lower.imshow(picture.with_image)
        lower.set_title(picture.with_image_caption, fontsize=8)
        lower.axis("off")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def save_panel(
    path: Path,
    image: np.ndarray,
    image_name: str,
    prediction: Prediction,
    results: Sequence[MethodResult],
    pictures: Sequence[MapPictures],
    dpi: int = 100,
) -> Path:
    """Draws the panel and saves it as a PNG (atomically: a temporary file, then ``os.replace``).

    Args:
      path: the PNG to write.
      image, image_name, prediction, results, pictures, dpi: as for :func:`panel_png`.

    Returns:
      ``path``.
    """
    return write_atomically(path, panel_png(image, image_name, prediction, results, pictures, dpi))
