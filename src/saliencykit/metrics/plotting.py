"""Plots of the metrics' curves (needs matplotlib: ``pip install saliencykit[plot]``).

PIC curves (:func:`plot_pic_curves`), deletion and insertion curves
(:func:`plot_deletion_insertion_curves`) and the similarities of the
model-parameter randomisation test (:func:`plot_randomisation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .deletion_insertion import DeletionInsertionResult
from .pic import AggregateMetricResult, PicMetricResult
from .randomisation import RandomisationResult

__all__ = ["plot_deletion_insertion_curves", "plot_pic_curves", "plot_randomisation"]


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
    _plot_curves_with_auc(ax, curves)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("Normalized entropy (unblurred amount)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return ax


def _plot_curves_with_auc(ax: Any, curves: Mapping[str, Any]) -> None:
    """Draws each ``{label: result}`` curve (``curve_x``, ``curve_y``) with its AUC in the legend.

    Raises:
      ValueError: a curve's x and y differ in shape.
    """
    for label, result in curves.items():
        curve_x, curve_y = np.asarray(result.curve_x), np.asarray(result.curve_y)
        if curve_x.shape != curve_y.shape:
            raise ValueError(f"curve {label!r}: curve_x has shape {curve_x.shape}, curve_y {curve_y.shape}")
        legend = f"{label}, AUC={result.auc:.3f}" if label else f"AUC={result.auc:.3f}"
        ax.plot(curve_x, curve_y, label=legend)


def _pyplot(caller: str) -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(f"{caller} needs matplotlib: pip install 'saliencykit[plot]'") from error
    return plt


def plot_deletion_insertion_curves(
    curves: Mapping[str, DeletionInsertionResult] | DeletionInsertionResult,
    ax: Any = None,
    title: str | None = None,
    ylabel: str = "Model score",
) -> Any:
    """Draws one or several deletion or insertion curves, each with its AUC in the legend.

    Like :func:`plot_pic_curves`: x is the fraction of pixels deleted (or
    inserted), y the model's score (Petsiuk et al. 2018's figures).

    Args:
      curves: ``{label: result}`` (e.g. ``{"IG": deletion_ig, "RISE": deletion_rise}``) of one
        kind, or a single :class:`~saliencykit.metrics.DeletionInsertionResult`.
      ax: the matplotlib ``Axes`` to draw on; ``None`` makes a new figure.
      title: the axes' title; default ``"Deletion"`` or ``"Insertion"``.
      ylabel: the y-axis label.

    Returns:
      The matplotlib ``Axes``.

    Raises:
      ImportError: if matplotlib is not installed.
      ValueError: if ``curves`` is empty, mixes deletion and insertion curves,
        or a curve's x and y differ in length.
    """
    plt = _pyplot("plot_deletion_insertion_curves")
    if isinstance(curves, DeletionInsertionResult):
        curves = {"": curves}
    if not curves:
        raise ValueError("curves must hold at least one curve, got none")
    kinds = {result.kind for result in curves.values()}
    if len(kinds) != 1:
        raise ValueError(f"curves must be all deletion or all insertion curves, got kinds {sorted(kinds)}")
    (kind,) = kinds
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5))
    _plot_curves_with_auc(ax, curves)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(f"Fraction of pixels {'deleted' if kind == 'deletion' else 'inserted'}")
    ax.set_ylabel(ylabel)
    ax.set_title(title if title is not None else kind.capitalize())
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right" if kind == "deletion" else "lower right")
    return ax


#: The similarities of a :class:`RandomisationResult` that :func:`plot_randomisation` can draw.
RANDOMISATION_SIMILARITIES = {
    "rank_correlation_abs": "Rank correlation (absolute maps)",
    "rank_correlation": "Rank correlation (signed maps)",
    "ssim": "SSIM",
}


def plot_randomisation(
    results: Mapping[str, RandomisationResult] | RandomisationResult,
    similarity: str = "rank_correlation_abs",
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Draws the similarity to the trained model's map at each randomisation step, one line per method.

    Adebayo et al. 2018's figure: x is the randomisation step, labelled with
    the layer randomised (last), y the similarity; a method whose line stays
    high does not depend on the weights.

    Args:
      results: ``{method label: result}`` over the same layers, or a single
        :class:`~saliencykit.metrics.RandomisationResult`.
      similarity: ``"rank_correlation_abs"``, ``"rank_correlation"`` or ``"ssim"``.
      ax: the matplotlib ``Axes`` to draw on; ``None`` makes a new figure.
      title: the axes' title; default "Model-parameter randomisation".

    Returns:
      The matplotlib ``Axes``.

    Raises:
      ImportError: if matplotlib is not installed.
      ValueError: an unknown ``similarity``, no results, or results over different layers.
    """
    plt = _pyplot("plot_randomisation")
    if similarity not in RANDOMISATION_SIMILARITIES:
        raise ValueError(
            f"similarity must be one of {sorted(RANDOMISATION_SIMILARITIES)}, got {similarity!r}"
        )
    if isinstance(results, RandomisationResult):
        results = {"": results}
    if not results:
        raise ValueError("results must hold at least one RandomisationResult, got none")
    layer_names = list(next(iter(results.values())).layer_names)
    for label, result in results.items():
        if list(result.layer_names) != layer_names:
            raise ValueError(
                f"results must share their layers: {label!r} has {list(result.layer_names)}, "
                f"the first {layer_names}"
            )
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(layer_names)), 4.5))
    steps = np.arange(1, len(layer_names) + 1)
    for label, result in results.items():
        ax.plot(steps, np.asarray(getattr(result, similarity)), marker="o", label=label or None)
    ax.set_xticks(steps, layer_names, rotation=45, ha="right")
    ax.set_xlabel("Randomised layer (cascading: and every layer before it)")
    ax.set_ylabel(RANDOMISATION_SIMILARITIES[similarity])
    ax.set_ylim(-1.05 if similarity == "rank_correlation" else -0.05, 1.05)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_title(title if title is not None else "Model-parameter randomisation")
    ax.grid(alpha=0.3)
    if any(results):
        ax.legend(loc="best")
    return ax
