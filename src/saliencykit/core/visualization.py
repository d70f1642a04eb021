"""Turning a saliency mask into a 2-D image for display."""

from __future__ import annotations

import numpy as np

from .base import check_number

__all__ = ["VisualizeImageDiverging", "VisualizeImageGrayscale"]


def _as_3d(image_3d: np.ndarray) -> np.ndarray:
    image_3d = np.asarray(image_3d)
    if image_3d.ndim != 3:
        raise ValueError(f"image_3d must have 3 dimensions (H x W x C), got shape {image_3d.shape}")
    if image_3d.dtype.kind not in "biuf":
        raise TypeError(f"image_3d must be a real numeric array, got dtype {image_3d.dtype}")
    if image_3d.size == 0:
        raise ValueError(f"image_3d must not be empty, got shape {image_3d.shape}")
    if not np.isfinite(image_3d).all():
        raise ValueError("image_3d holds NaN or inf values")
    return image_3d.astype(np.float64)


def VisualizeImageGrayscale(image_3d: np.ndarray, percentile: float = 99) -> np.ndarray:  # noqa: N802
    """Returns an H x W x C mask as an H x W image in [0, 1] of absolute saliency.

    Sums the absolute values over the last axis, then scales from the minimum
    (0) to the ``percentile``-th percentile (1), clipping above.

    Args:
      image_3d: the mask, H x W x C.
      percentile: in [0, 100]; the value that maps to 1.

    Returns:
      float64 array H x W in [0, 1].

    Raises:
      ValueError, TypeError: wrong rank, dtype, NaN/inf or percentile.

    FIX over the reference: a constant map (all zeros, say) gives zeros, not NaN.
    """
    percentile = check_number("percentile", percentile, minimum=0.0, maximum=100.0)
    image_2d = np.sum(np.abs(_as_3d(image_3d)), axis=2)
    vmax = np.percentile(image_2d, percentile)
    vmin = np.min(image_2d)
    if vmax <= vmin:
        return (image_2d > vmax).astype(np.float64)
    return np.clip((image_2d - vmin) / (vmax - vmin), 0, 1)


def VisualizeImageDiverging(image_3d: np.ndarray, percentile: float = 99) -> np.ndarray:  # noqa: N802
    """Returns an H x W x C mask as an H x W image of signed saliency.

    Sums the channels, takes ``span = |percentile(values, percentile)|`` and
    returns ``(v + span) / (2 span)`` clipped to [-1, 1]. Note that this maps
    0 to 0.5, ``span`` to 1 and ``-span`` to 0 (values below ``-span`` go
    negative down to -1): the reference's formula, kept because existing
    plotting code (``cmap`` with ``vmin=-1, vmax=1`` or ``0..1``) expects it.

    Args:
      image_3d: the mask, H x W x C.
      percentile: in [0, 100].

    Returns:
      float64 array H x W in [-1, 1].

    Raises:
      ValueError, TypeError: wrong rank, dtype, NaN/inf or percentile.

    FIX over the reference: when ``span`` is 0 (an all-zero map, say) zeros map
    to 0.5 and other values to the clip limits (1 or -1) instead of NaN.
    """
    percentile = check_number("percentile", percentile, minimum=0.0, maximum=100.0)
    image_2d = np.sum(_as_3d(image_3d), axis=2)
    span = abs(np.percentile(image_2d, percentile))
    if span == 0:
        limit = np.full(image_2d.shape, 0.5)
        limit[image_2d > 0] = 1.0
        limit[image_2d < 0] = -1.0
        return limit
    return np.clip((image_2d + span) / (2 * span), -1, 1)
