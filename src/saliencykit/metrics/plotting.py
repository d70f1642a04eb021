"""Plots of aggregated PIC curves (needs matplotlib: ``pip install saliencykit[plot]``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .pic import AggregateMetricResult, PicMetricResult

__all__ = ["plot_pic_curves"]


def plot_pic_curves(
    curves: Mapping[str, AggregateMetricResult | PicMetricResult] | AggregateMetricResult | PicMetricResult,
    ax: Any = None,
    title: str | None = None,
    ylabel: str = "Normalized prediction",
) -> Any:
    """Draws one or several PIC curves, each with its AUC in the legend.

    Like the reference notebook's figure: x is the normalised entropy of the
    revealed image ("unblurred amount"), y the normalised prediction.

    Args:
      curves: ``{label: result}`` (e.g. ``{"IG": aggregate_ig, "XRAI": aggregate_xrai}``),
        or a single :class:`AggregateMetricResult` / :class:`PicMetricResult`.
      ax: the matplotlib ``Axes`` to draw on; ``None`` makes a new figure.
      title: the axes' title (e.g. ``"SIC"`` or ``"AIC"``).
      ylabel: the y-axis label.

    Returns:
      The matplotlib ``Axes``.

    Raises:
      ImportError: if matplotlib is not installed.
      ValueError: if ``curves`` is empty or a curve's x and y differ in length.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("plot_pic_curves needs matplotlib: pip install 'saliencykit[plot]'") from error

    if isinstance(curves, (AggregateMetricResult, PicMetricResult)):
        curves = {"": curves}
    if not curves:
        raise ValueError("curves must hold at least one curve, got none")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5))
    for label, result in curves.items():
        curve_x, curve_y = np.asarray(result.curve_x), np.asarray(result.curve_y)
        if curve_x.shape != curve_y.shape:
            raise ValueError(f"curve {label!r}: curve_x has shape {curve_x.shape}, curve_y {curve_y.shape}")
        legend = f"{label}, AUC={result.auc:.3f}" if label else f"AUC={result.auc:.3f}"
        ax.plot(curve_x, curve_y, label=legend)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("Normalized entropy (unblurred amount)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return ax
