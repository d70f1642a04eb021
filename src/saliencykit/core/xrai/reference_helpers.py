"""Helpers kept only for the original's private names (``saliency.core.xrai``).

Code written against the original library sometimes calls its private
helpers: ``_get_segments_felzenszwalb``, ``_unpack_segs_to_masks``,
``_attr_aggregation_max``, ``_gain_density`` and the static methods
``XRAI._xrai`` / ``XRAI._xrai_fast``. They are kept here, with the original's
signatures and results, on top of this package's own parts (boolean masks in,
boolean masks out); :class:`~saliencykit.core.xrai.XRAI` itself does not use
them. New code should use :func:`~saliencykit.core.xrai.felzenszwalb_label_images`,
:func:`~saliencykit.core.xrai.dilated_segment_pixels`,
:func:`~saliencykit.core.xrai.xrai_full_search` and
:func:`~saliencykit.core.xrai.xrai_fast_search`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .felzenszwalb import _DEFAULT_DILATION_RADIUS, felzenszwalb_label_images
from .search import FAST, FULL, _density, _finish_search, xrai_fast_search, xrai_full_search
from .segments import dilated_segment_pixels, segment_pixels_from_masks

__all__: list[str] = []


def _get_segments_felzenszwalb(
    im: np.ndarray,
    resize_image: bool = True,
    scale_range: Sequence[float] | None = None,
    dilation_rad: int | None = _DEFAULT_DILATION_RADIUS,
) -> list[np.ndarray]:
    """XRAI's candidate regions of ``im`` as a list of ``[H, W]`` boolean masks.

    Kept only for the original's private name; XRAI itself keeps the regions
    as pixel lists (:func:`~saliencykit.core.xrai.dilated_segment_pixels`).

    Args:
      im: ``[H, W]`` or ``[H, W, C]`` image.
      resize_image, scale_range: see :func:`~saliencykit.core.xrai.felzenszwalb_label_images`.
      dilation_rad: radius of the disk each segment is dilated with; 0 or
        ``None`` for none.

    Returns:
      One mask per segment, label image by label image (see
      :func:`~saliencykit.core.xrai.dilated_segment_pixels` for the order).
    """
    label_images = felzenszwalb_label_images(im, resize_image, scale_range)
    return dilated_segment_pixels(label_images, dilation_rad or 0).to_masks()


def _unpack_segs_to_masks(segs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """One boolean mask per label ``min..max`` of every label image in ``segs``.

    Kept only for the original's private name.
    """
    masks: list[np.ndarray] = []
    for labels in segs:
        labels = np.asarray(labels)
        masks.extend(labels == label for label in range(int(labels.min()), int(labels.max()) + 1))
    return masks


def _attr_aggregation_max(attr: np.ndarray, axis: int = -1) -> np.ndarray:
    """Merges the channels of an attribution by their maximum (kept only for the original's private name)."""
    return attr.max(axis=axis)


def _gain_density(mask1: np.ndarray, attr: np.ndarray, mask2: np.ndarray | None = None) -> Any:
    """Mean attribution over ``mask1`` (minus ``mask2`` if given); ``-inf`` if empty.

    Kept only for the original's private name (the default ``gain_fun`` of
    :func:`_xrai` and :func:`_xrai_fast`).
    """
    added = mask1 if mask2 is None else np.logical_and(mask1, np.logical_not(mask2))
    return _density(attr[added])


def _check_gain_function(gain_fun: Any) -> None:
    """Only the density gain is implemented (the reference never uses another).

    Raises:
      ValueError: ``gain_fun`` is neither ``None`` nor :func:`_gain_density`.
    """
    if gain_fun is not None and gain_fun is not _gain_density:
        raise ValueError(f"gain_fun must be the density (_gain_density), got {gain_fun!r}")


def _xrai(
    attr: np.ndarray,
    segs: Sequence[np.ndarray],
    gain_fun: Any = _gain_density,
    area_perc_th: float = 1.0,
    min_pixel_diff: float = 50,
    integer_segments: bool = True,
) -> tuple[np.ndarray, np.ndarray | list[np.ndarray]]:
    """The reference's full search on ``[H, W]`` ``attr`` and a list of boolean masks.

    Kept only for the original's private name ``XRAI._xrai`` (a static method
    there and here). Returns ``(attribution_map, ranks or ranked masks)``; see
    :func:`~saliencykit.core.xrai.xrai_full_search`.

    Raises:
      ValueError: if ``gain_fun`` is not the density (the only gain the reference uses).
    """
    return _search_masks(FULL, attr, segs, gain_fun, area_perc_th, min_pixel_diff, integer_segments)


def _xrai_fast(
    attr: np.ndarray,
    segs: Sequence[np.ndarray],
    gain_fun: Any = _gain_density,
    area_perc_th: float = 1.0,
    min_pixel_diff: float = 50,
    integer_segments: bool = True,
) -> tuple[np.ndarray, np.ndarray | list[np.ndarray]]:
    """The reference's fast search (``area_perc_th`` is ignored, as there).

    Kept only for the original's private name ``XRAI._xrai_fast``; see
    :func:`~saliencykit.core.xrai.xrai_fast_search`.

    Raises:
      ValueError: if ``gain_fun`` is not the density.
    """
    return _search_masks(FAST, attr, segs, gain_fun, area_perc_th, min_pixel_diff, integer_segments)


def _search_masks(
    algorithm: str,
    attr: np.ndarray,
    segs: Sequence[np.ndarray],
    gain_fun: Any,
    area_perc_th: float,
    min_pixel_diff: float,
    integer_segments: bool,
) -> tuple[np.ndarray, np.ndarray | list[np.ndarray]]:
    """:func:`_xrai` (``algorithm`` 'full') or :func:`_xrai_fast` ('fast') on boolean masks."""
    _check_gain_function(gain_fun)
    attr = np.asarray(attr)
    segments = segment_pixels_from_masks(segs, attr.shape)
    if algorithm == FULL:
        search = xrai_full_search(attr, segments, area_perc_th, min_pixel_diff)
    else:
        search = xrai_fast_search(attr, segments, min_pixel_diff)
    return _finish_search(attr, search, integer_segments)
