"""The self-contained HTML report of ``saliencykit explain``.

One file, no external resource: every picture is a PNG embedded as a
``data:image/png;base64,...`` URI, styles are inline. It shows the model's
prediction, the panel, and for each method its two pictures, its parameters
and its time.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .display import MapPictures
from .methods import MethodResult
from .models import Prediction
from .outputs import write_atomically

__all__ = ["png_data_uri", "report_html", "save_report"]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
.methods { display: flex; flex-wrap: wrap; gap: 1.5em; }
.method { border: 1px solid #ddd; border-radius: 6px; padding: 0.8em; }
.method img { width: 224px; height: 224px; image-rendering: auto; }
.panel { max-width: 100%; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def png_data_uri(pixels: np.ndarray | bytes) -> str:
    """An RGB ``uint8`` array (or PNG bytes) as a ``data:image/png;base64`` URI."""
    if isinstance(pixels, np.ndarray):
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
        pixels = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(pixels).decode("ascii")


def _image(uri: str, alt: str, css_class: str = "") -> str:
    klass = f' class="{css_class}"' if css_class else ""
    return f'<img src="{uri}" alt="{html.escape(alt)}"{klass}>'


def _parameters_table(parameters: dict[str, Any]) -> str:
    if not parameters:
        return "<p>no parameters</p>"
    rows = "".join(
        f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(json.dumps(value))}</td></tr>"
        for name, value in parameters.items()
    )
    return f"<table>{rows}</table>"


def report_html(
    *,
    image: np.ndarray,
    image_name: str,
    model_description: str,
    prediction: Prediction,
    results: Sequence[MethodResult],
    pictures: Sequence[MapPictures],
    panel_png: bytes,
    skipped: dict[str, str],
    notes: Sequence[str],
    gradcam_layer: str | None = None,
    device: str | None = None,
) -> str:
    """Returns the HTML report as text.

    Args:
      image: the explained image ``[H, W, 3]`` in [0, 255].
      image_name: its name.
      model_description: the model's description.
      prediction: the prediction and the explained class.
      results, pictures: each method's result and pictures, in the same order.
      panel_png: the panel, as PNG bytes.
      skipped: ``method -> reason`` for methods the model does not support.
      notes: notes on the input (conversions made).
      gradcam_layer: the layer Grad-CAM used (``None``: none).
      device: where the model ran (``None``: not said, e.g. Keras).
    """
    escape = html.escape
    top_rows = "".join(
        f"<tr><td>{index}</td><td>{escape(label)}</td><td>{probability:.4f}</td></tr>"
        for index, label, probability in prediction.top
    )
    cards = []
    for result, picture in zip(results, pictures, strict=True):
        cards.append(
            f'<div class="method"><h3>{escape(result.title)} <small>(<code>{escape(result.name)}</code>, '
            f"{result.seconds:.2f} s)</small></h3>"
            f"{_image(png_data_uri(picture.saliency_map), result.title + ' map')} "
            f"{_image(png_data_uri(picture.with_image), result.title + ' ' + picture.with_image_caption)}"
            f"{_parameters_table(result.parameters)}</div>"
        )
    skipped_html = "".join(f"<li><code>{escape(n)}</code>: {escape(r)}</li>" for n, r in skipped.items())
    notes_html = "".join(f"<li>{escape(note)}</li>" for note in notes)
    total = sum(result.seconds for result in results)
    layer_html = f"<code>{escape(gradcam_layer)}</code>" if gradcam_layer else "none"
    device_html = f" &nbsp; <b>Device:</b> <code>{escape(device)}</code>" if device else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>saliencykit explain: {escape(image_name)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>saliencykit explain</h1>
<p><b>Image:</b> {escape(image_name)} &nbsp; <b>Model:</b> {escape(model_description)}{device_html}
&nbsp; <b>Grad-CAM layer:</b> {layer_html}</p>
<h2>Prediction</h2>
<p>Explained class <b>{prediction.class_index}: {escape(prediction.label)}</b>,
probability {prediction.probability:.4f}.</p>
<table><tr><th>class</th><th>label</th><th>probability</th></tr>{top_rows}</table>
{f"<h3>Notes</h3><ul>{notes_html}</ul>" if notes else ""}
<h2>All methods</h2>
{_image(png_data_uri(panel_png), "panel of all methods", "panel")}
<h2>Each method</h2>
<p>{len(results)} methods, {total:.1f} s in all.
Maps of gradient-type methods show absolute values (<code>VisualizeImageGrayscale</code>);
Occlusion's is signed (red: evidence for the class, blue: against, white: none; scaled by the
99th percentile of absolute values); XRAI's shows its regions' density.</p>
<div class="methods">{"".join(cards)}</div>
{f"<h3>Not run</h3><ul>{skipped_html}</ul>" if skipped else ""}
<p><small>Input image as the model saw it:</small><br>{_image(png_data_uri(image), "input image")}</p>
</body>
</html>
"""


def save_report(path: Path, **contents: Any) -> Path:
    """Writes the HTML report (atomically: a temporary file, then ``os.replace``).

    Args:
      path: the ``.html`` file to write.
      **contents: the keyword arguments of :func:`report_html`.

    Returns:
      ``path``.
    """
    return write_atomically(path, report_html(**contents).encode("utf-8"))
