"""Bootstrap intervals over images for the AUC of aggregate PIC curves (used by :mod:`.evaluate`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["BOOTSTRAP_BYTES", "aggregate_aucs", "bootstrap_aucs", "percentile_interval"]

#: The most bytes of resampled curves held at once by :func:`bootstrap_aucs`.
BOOTSTRAP_BYTES = 64 * 1024 * 1024


def aggregate_aucs(curves: np.ndarray, curve_x: np.ndarray, aggregation: str) -> np.ndarray:
    """``curves [k, n, points]`` -> ``[k]``: the AUC of each set's aggregate curve (trapezoid rule)."""
    curve_y = np.median(curves, axis=1) if aggregation == "median" else np.mean(curves, axis=1)
    return np.sum(np.diff(curve_x) * (curve_y[:, 1:] + curve_y[:, :-1]) / 2.0, axis=1)


def bootstrap_aucs(
    curve_sets: Sequence[np.ndarray],
    curve_x: np.ndarray,
    aggregation: str,
    n_bootstrap: int,
    seed: int,
    max_bytes: int = BOOTSTRAP_BYTES,
) -> np.ndarray:
    """The AUC of the aggregate curve of ``n_bootstrap`` resamples of images, for each set of curves.

    Every set is resampled with the same image indices (drawn with replacement,
    ``np.random.default_rng(seed)``), so the sets must hold the same images in
    the same order: the difference of two rows is a paired bootstrap. The
    resamples are processed in chunks of at most about ``max_bytes`` of curves.

    Args:
      curve_sets: arrays ``[n_images, n_points]`` (one row per image), same shape.
      curve_x: the curves' shared x, ``[n_points]``.
      aggregation: ``"median"`` or ``"mean"`` over images.
      n_bootstrap: the number of resamples, >= 1.
      seed: the resampling seed.

    Returns:
      ``[len(curve_sets), n_bootstrap]`` AUCs.

    Raises:
      ValueError: no set, sets of different shapes or without images, or an unknown aggregation.
    """
    if aggregation not in ("median", "mean"):
        raise ValueError(f"aggregation: expected 'median' or 'mean', got {aggregation!r}")
    sets = [np.asarray(curves, dtype=np.float64) for curves in curve_sets]
    if not sets or any(curves.shape != sets[0].shape or curves.ndim != 2 for curves in sets):
        raise ValueError("curve_sets: expected one or more [n_images, n_points] arrays of the same shape")
    n_images, n_points = sets[0].shape
    if n_images == 0:
        raise ValueError("curve_sets: expected at least one image, got none")
    x_points = np.asarray(curve_x, dtype=np.float64)
    generator = np.random.default_rng(seed)
    chunk = max(1, int(max_bytes) // max(1, n_images * n_points * 8))
    aucs = np.empty((len(sets), n_bootstrap))
    for start in range(0, n_bootstrap, chunk):
        stop = min(n_bootstrap, start + chunk)
        indices = generator.integers(0, n_images, size=(stop - start, n_images))
        for row, curves in enumerate(sets):
            aucs[row, start:stop] = aggregate_aucs(curves[indices], x_points, aggregation)
    return aucs


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval holding ``confidence`` of ``values`` (equal tails)."""
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(np.asarray(values, dtype=np.float64), [tail, 100.0 - tail])
    return float(low), float(high)
