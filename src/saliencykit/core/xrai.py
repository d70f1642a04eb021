"""XRAI: region-based attribution built on Integrated Gradients.

Kapishnikov, Bolukbasi, Viegas and Terry 2019, "XRAI: Better Attributions
Through Regions" (arXiv 1906.02825).

XRAI turns a pixel attribution (by default the mean of Integrated Gradients over
a black-ish and a white-ish baseline, then the maximum over colour channels)
into a ranking of image regions. The candidate regions come from Felzenszwalb's
graph segmentation at six scales, each segment dilated by a disk of radius 5.
The 'full' algorithm greedily adds the region whose not-yet-covered pixels have
the highest mean attribution (the *density*); 'fast' ranks the regions once by
their own density. Every added region's new pixels get its density, so the map
sums to the attribution's sum.

How this file differs from the reference (same inputs give the same segments,
the same ranking and the same map, bit for bit):

- Segments are kept as label images and as one sorted flat pixel list per mask
  (:class:`SegmentPixels`, a CSR incidence matrix), never as a boolean image per
  mask. The disk dilation of every segment of a label image is computed at once
  from the label image's horizontal runs: a disk is a stack of horizontal
  segments, so a run ``[s, e]`` of label ``l`` in row ``r`` contributes
  ``[s - w(dy), e + w(dy)]`` to row ``r + dy``; the intervals of each
  (label, row) are merged after one sort.
- The 'full' search keeps every mask's not-yet-covered pixel count (exact
  integers) and attribution sum (float64) and updates them, when a region is
  added, only for the pixels it newly covers (``np.bincount`` over the
  pixel -> mask incidence). The running sums only shortlist the masks whose
  density could be the best; the shortlisted masks' densities are then
  computed exactly as the reference does (the same NumPy mean over the same
  pixels in the same order), so ties and rounding resolve identically.
- Felzenszwalb runs once per scale, on the image resized once.

FIX over the reference: a constant image does not produce a NaN image for the
segmentation (every pixel maps to the range's lower end); the 'fast' algorithm
accepts an empty list of segments (the reference crashes); with
``min_pixel_diff <= 0`` the 'full' algorithm drops masks that add no pixel (the
reference loops until it fails on a missing key); NaN or infinite attributions
are a ``ValueError`` instead of a failure deep in the search.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from skimage import segmentation, transform

from .base import (
    INPUT_OUTPUT_GRADIENTS,
    CallModelFunction,
    CoreSaliency,
    as_float_array,
    check_evaluation_count,
    check_int,
    check_number,
)
from .integrated_gradients import IntegratedGradients

__all__ = [
    "FAST",
    "FULL",
    "XRAI",
    "XRAI_ALGORITHMS",
    "SegmentPixels",
    "XRAIOutput",
    "XRAIParameters",
    "dilated_segment_pixels",
    "felzenszwalb_label_images",
    "segment_pixels_from_masks",
    "xrai_fast_search",
    "xrai_full_search",
]

_logger = logging.getLogger(__name__)

#: Felzenszwalb ``scale`` values; one segmentation per value (reference values).
_FELZENSZWALB_SCALE_VALUES = (50, 100, 150, 250, 500, 1200)
#: Felzenszwalb Gaussian pre-smoothing ``sigma`` values.
_FELZENSZWALB_SIGMA_VALUES = (0.8,)
#: The image is resized to this shape before segmentation.
_FELZENSZWALB_IM_RESIZE = (224, 224)
#: The image values are rescaled to this range before segmentation.
_FELZENSZWALB_IM_VALUE_RANGE = (-1.0, 1.0)
#: Felzenszwalb ``min_size``: smaller components are merged into a neighbour.
_FELZENSZWALB_MIN_SEGMENT_SIZE = 150
#: Radius of the disk every Felzenszwalb segment is dilated with.
_DEFAULT_DILATION_RADIUS = 5

FULL = "full"
FAST = "fast"
#: The values ``XRAIParameters.algorithm`` accepts.
XRAI_ALGORITHMS = (FULL, FAST)


# --------------------------------------------------------------------------
# Segments as pixel lists.
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SegmentPixels:
    """A list of masks over an ``[H, W]`` image (or any shape), as sorted flat pixel indices.

    Mask ``i`` holds the pixels ``indices[indptr[i]:indptr[i + 1]]`` (flat,
    row-major indices into the image, ascending, so in the order in which
    ``image[mask]`` visits them). This is the CSR form of the boolean
    ``[n_masks, H * W]`` incidence matrix. The searches work on any shape
    (``[L]`` sequences, ``[D, H, W]`` volumes); the Felzenszwalb segments and
    their dilation are ``[H, W]`` only.

    Attributes:
      image_shape: ``(H, W)``, or the shape of the attribution the masks cover.
      indptr: ``[n_masks + 1]`` offsets into ``indices``.
      indices: ``[nnz]`` flat pixel indices. Both are int32 (int64 only when
        the image or the number of entries needs it), as ``scipy.sparse`` uses.
    """

    image_shape: tuple[int, ...]
    indptr: np.ndarray
    indices: np.ndarray

    @property
    def n_masks(self) -> int:
        """Number of masks."""
        return len(self.indptr) - 1

    @property
    def sizes(self) -> np.ndarray:
        """``[n_masks]`` number of pixels of every mask."""
        return np.diff(self.indptr)

    def pixels(self, mask_index: int) -> np.ndarray:
        """Flat pixel indices of mask ``mask_index``, ascending."""
        return self.indices[self.indptr[mask_index] : self.indptr[mask_index + 1]]

    def to_masks(self) -> list[np.ndarray]:
        """Returns the masks as a list of boolean arrays of ``image_shape``."""
        return [_pixels_to_mask(self.pixels(i), self.image_shape) for i in range(self.n_masks)]


def _pixels_to_mask(pixels: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """Returns a boolean image of ``image_shape`` that is True at the flat ``pixels``."""
    mask = np.zeros(int(np.prod(image_shape)), dtype=bool)
    mask[pixels] = True
    return mask.reshape(image_shape)


def segment_pixels_from_masks(masks: Any, image_shape: tuple[int, ...]) -> SegmentPixels:
    """Converts user-given segments (a sequence of masks, e.g. ``[H, W]``) to :class:`SegmentPixels`.

    Args:
      masks: a sequence (list, tuple or ``[N, *image_shape]`` array) of masks,
        each of shape ``image_shape``, boolean or holding only 0 and 1.
      image_shape: the attribution's shape: ``(H, W)`` for an image, ``(L,)``
        for a sequence, any shape in general.

    Returns:
      The masks, in the given order.

    Raises:
      TypeError: if ``masks`` is not a sequence of arrays, or a mask is not
        numeric.
      ValueError: if a mask's shape differs from ``image_shape`` or a mask holds
        values other than 0 and 1.
    """
    image_shape = tuple(int(length) for length in image_shape)
    if isinstance(masks, np.ndarray):
        if masks.ndim != len(image_shape) + 1:
            expected = "[N, H, W]" if len(image_shape) == 2 else "[N, *attribution shape]"
            raise ValueError(
                f"segments given as one array must have shape {expected} = "
                f"[N, {', '.join(map(str, image_shape))}], got {masks.shape}"
            )
    elif not isinstance(masks, Sequence) or isinstance(masks, str):
        raise TypeError(
            f"segments must be a list of boolean masks of shape {image_shape}, got {type(masks).__name__}"
        )
    pixel_lists = []
    for index, mask in enumerate(masks):
        mask = np.asarray(mask)
        if mask.shape != image_shape:
            raise ValueError(
                f"segments[{index}] must have the shape of the image's attribution [H, W] (the "
                f"input's shape without its channel axis): expected {image_shape}, got {mask.shape}"
            )
        if mask.dtype != bool:
            if mask.dtype.kind not in "biuf":
                raise TypeError(f"segments[{index}] must be a boolean mask, got dtype {mask.dtype}")
            if not np.isin(mask, (0, 1)).all():
                raise ValueError(f"segments[{index}] must be a boolean mask (only 0 and 1), got other values")
        pixel_lists.append(np.flatnonzero(mask))
    sizes = np.array([len(pixels) for pixels in pixel_lists], dtype=np.int64)
    index_dtype = _index_dtype(int(np.prod(image_shape)), int(sizes.sum()))
    indptr = np.zeros(len(sizes) + 1, dtype=index_dtype)
    np.cumsum(sizes, out=indptr[1:], dtype=index_dtype)
    indices = np.concatenate(pixel_lists).astype(index_dtype) if pixel_lists else np.zeros(0, index_dtype)
    return SegmentPixels(image_shape, indptr, indices)


def _radix_order(keys: Sequence[np.ndarray]) -> np.ndarray:
    """Stable permutation sorting by ``keys[0]``, then ``keys[1]``... (non-negative integers).

    A least-significant-digit radix sort made of 16-bit stable ``np.argsort``
    passes, which NumPy runs as a counting sort: linear time, several times
    faster than a comparison sort of the combined key.
    """
    order = None
    for key in reversed(keys):
        key = np.asarray(key, dtype=np.int64)
        highest = int(key.max()) if len(key) else 0
        shift = 0
        while True:
            digit = ((key >> shift) & 0xFFFF).astype(np.uint16)
            if order is None:
                order = np.argsort(digit, kind="stable")
            else:
                order = order[np.argsort(digit[order], kind="stable")]
            shift += 16
            if highest >> shift == 0:
                break
    return order


def _disk_half_widths(radius: int) -> np.ndarray:
    """Half-width of every row of ``skimage.morphology.disk(radius)``, rows ``-radius..radius``.

    That disk holds the offsets ``(dy, dx)`` with ``dy**2 + dx**2 <= radius**2``,
    so row ``dy`` is the single centred run of column offsets ``-w..w`` with
    ``w = isqrt(radius**2 - dy**2)``.
    """
    return np.array(
        [math.isqrt(radius * radius - dy * dy) for dy in range(-radius, radius + 1)], dtype=np.int64
    )


def dilated_segment_pixels(label_images: Sequence[np.ndarray], dilation_radius: int) -> SegmentPixels:
    """Returns every segment of every label image, dilated by a disk, as :class:`SegmentPixels`.

    The masks come in the reference's order: label image by label image, and
    within one label image the labels ``min..max`` (a label absent from the
    image gives an empty mask). Mask ``l`` of a label image is
    ``skimage.morphology.dilation(labels == l, disk(dilation_radius))``.

    The dilation works on horizontal runs: the disk is the union over rows
    ``dy`` of the column offsets ``-w(dy)..w(dy)``, so a run ``[s, e]`` of
    label ``l`` in row ``r`` contributes the interval ``[s - w(dy), e + w(dy)]``
    (clipped to the image) to row ``r + dy`` of mask ``l``. The intervals of
    each (mask, row) are merged after a single sort of all intervals; the
    cost is proportional to the number of runs times ``2 * radius + 1`` plus
    the number of output pixels, independent of the number of segments.

    Args:
      label_images: integer label images, all of the same ``[H, W]`` shape.
      dilation_radius: radius of the disk (0: no dilation).

    Returns:
      The dilated masks.
    """
    height, width = label_images[0].shape
    dilation_radius = check_int("dilation_radius", dilation_radius, minimum=0)
    half_widths = _disk_half_widths(dilation_radius)
    row_offsets = np.arange(-dilation_radius, dilation_radius + 1, dtype=np.int64)

    # Global mask ids: label images one after the other, labels min..max each.
    global_labels = np.empty((len(label_images), height, width), dtype=np.int64)
    n_masks = 0
    for level, labels in enumerate(label_images):
        lowest, highest = int(labels.min()), int(labels.max())
        np.subtract(labels, lowest - n_masks, out=global_labels[level], casting="unsafe")
        n_masks += highest - lowest + 1

    # Horizontal runs of every row of every label image.
    rows = global_labels.reshape(-1, width)
    run_begins = np.empty(rows.shape, dtype=bool)
    run_begins[:, 0] = True
    np.not_equal(rows[:, 1:], rows[:, :-1], out=run_begins[:, 1:])
    run_start = np.flatnonzero(run_begins)
    run_label = rows.reshape(-1)[run_start]
    run_end = np.append(run_start[1:], rows.size) - 1
    run_row, run_first = np.divmod(run_start, width)
    run_last = run_end - run_row * width
    run_row %= height

    # One interval per run and disk row, in the rows of the image.
    target_row = run_row[None, :] + row_offsets[:, None]
    inside = (target_row >= 0) & (target_row < height)
    first = np.maximum(run_first[None, :] - half_widths[:, None], 0)[inside]
    last = np.minimum(run_last[None, :] + half_widths[:, None], width - 1)[inside]
    label = np.broadcast_to(run_label, inside.shape)[inside]
    target_row = target_row[inside]

    # Sort by (mask, row, first column) and merge the overlapping intervals of
    # each (mask, row). Positions are encoded as (mask * H + row) * (W + 1) +
    # column, so that one running maximum of the ends serves every group.
    order = _radix_order([label, target_row * width + first])
    stride = width + 1
    group_base = (label[order] * height + target_row[order]) * stride
    starts = group_base + first[order]
    ends = np.maximum.accumulate(group_base + last[order])
    new_interval = np.ones(len(starts), dtype=bool)
    np.greater(starts[1:], ends[:-1], out=new_interval[1:])
    begin = np.flatnonzero(new_interval)
    merged_start = starts[begin]
    merged_length = ends[np.append(begin[1:], len(starts)) - 1] - merged_start + 1
    merged_group, merged_first = np.divmod(merged_start, stride)
    merged_label, merged_row = np.divmod(merged_group, height)

    # Expand the intervals to flat pixel indices (mask by mask, row-major) with
    # one cumulative sum: +1 inside an interval, a jump at each interval start.
    index_dtype = _index_dtype(height * width, int(merged_length.sum()))
    merged_flat_first = merged_row * width + merged_first
    steps = np.ones(int(merged_length.sum()), dtype=index_dtype)
    interval_offsets = np.cumsum(merged_length) - merged_length
    steps[interval_offsets[1:]] = merged_flat_first[1:] - (merged_flat_first[:-1] + merged_length[:-1] - 1)
    if len(steps):
        steps[0] = merged_flat_first[0]
    indices = np.cumsum(steps, dtype=index_dtype)
    sizes = np.bincount(merged_label, weights=merged_length, minlength=n_masks).astype(index_dtype)
    indptr = np.zeros(n_masks + 1, dtype=index_dtype)
    np.cumsum(sizes, out=indptr[1:])
    return SegmentPixels((height, width), indptr, indices)


def _index_dtype(n_pixels: int, n_entries: int) -> type:
    """``np.int32`` when pixel indices and entry offsets fit in it, else ``np.int64``."""
    return np.int32 if max(n_pixels, n_entries) < 2**31 - 1 else np.int64


# --------------------------------------------------------------------------
# Felzenszwalb segmentation.
# --------------------------------------------------------------------------


def _normalize_image(
    im: np.ndarray, value_range: Sequence[float], resize_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Rescales ``im`` linearly to ``value_range`` and optionally resizes it (reference helper).

    Args:
      im: ``[H, W]`` or ``[H, W, C]`` image.
      value_range: ``(lowest, highest)`` values of the result.
      resize_shape: if given, the result is resized to this ``(H', W')`` with a
        cubic spline and anti-aliasing, as ``skimage.transform.resize(order=3)``.

    Returns:
      The rescaled (and resized) image, floating point.

    FIX over the reference: a constant image maps to ``value_range[0]``
    everywhere instead of NaN (division by zero).
    """
    lowest, highest = np.min(im), np.max(im)
    if highest == lowest:
        unit = np.zeros(np.shape(im), dtype=np.result_type(im, np.float32))
    else:
        unit = (im - lowest) / (highest - lowest)
    im = unit * (value_range[1] - value_range[0]) + value_range[0]
    if resize_shape is not None:
        im = transform.resize(
            im, resize_shape, order=3, mode="constant", preserve_range=True, anti_aliasing=True
        )
    return im


def felzenszwalb_label_images(
    im: np.ndarray,
    resize_image: bool = True,
    scale_range: Sequence[float] | None = None,
) -> list[np.ndarray]:
    """Felzenszwalb segmentations of ``im`` at XRAI's six scales, as label images.

    Felzenszwalb and Huttenlocher 2004, "Efficient graph-based image
    segmentation". The image is rescaled to ``scale_range`` (default
    ``[-1, 1]``) and, when ``resize_image``, resized to 224x224 so that the
    scale parameters mean the same for every image size; the labels are
    resized back with nearest-neighbour interpolation.

    Args:
      im: ``[H, W]`` or ``[H, W, C]`` image. Integer images are converted to
        float64 first (the same values as the reference for unsigned images;
        the reference subtracts in the integer type, which wraps around for
        signed images with a range wider than the type: FIX).
      resize_image: segment at 224x224 (True, the reference's default) or at
        the image's own size.
      scale_range: ``(lowest, highest)`` value range for the segmentation.

    Returns:
      Six ``[H, W]`` int64 label images (scales 50, 100, 150, 250, 500, 1200).
    """
    if scale_range is None:
        scale_range = _FELZENSZWALB_IM_VALUE_RANGE
    im = np.asarray(im)
    if im.dtype.kind != "f":
        im = im.astype(np.float64)
    original_shape = im.shape[:2]
    resize_shape = _FELZENSZWALB_IM_RESIZE if resize_image else None
    normalized = _normalize_image(im, scale_range, resize_shape)
    label_images = []
    for scale in _FELZENSZWALB_SCALE_VALUES:
        for sigma in _FELZENSZWALB_SIGMA_VALUES:
            labels = segmentation.felzenszwalb(
                normalized, scale=scale, sigma=sigma, min_size=_FELZENSZWALB_MIN_SEGMENT_SIZE
            )
            if resize_image and labels.shape != original_shape:
                labels = transform.resize(
                    labels,
                    original_shape,
                    order=0,
                    preserve_range=True,
                    mode="constant",
                    anti_aliasing=False,
                )
            label_images.append(labels.astype(np.int64))
    return label_images


def _get_segments_felzenszwalb(
    im: np.ndarray,
    resize_image: bool = True,
    scale_range: Sequence[float] | None = None,
    dilation_rad: int | None = _DEFAULT_DILATION_RADIUS,
) -> list[np.ndarray]:
    """XRAI's candidate regions of ``im`` as a list of ``[H, W]`` boolean masks (reference helper).

    Args:
      im: ``[H, W]`` or ``[H, W, C]`` image.
      resize_image, scale_range: see :func:`felzenszwalb_label_images`.
      dilation_rad: radius of the disk each segment is dilated with; 0 or
        ``None`` for none.

    Returns:
      One mask per segment, label image by label image (see
      :func:`dilated_segment_pixels` for the order).
    """
    label_images = felzenszwalb_label_images(im, resize_image, scale_range)
    return dilated_segment_pixels(label_images, dilation_rad or 0).to_masks()


def _unpack_segs_to_masks(segs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """One boolean mask per label ``min..max`` of every label image in ``segs`` (reference helper)."""
    masks = []
    for labels in segs:
        labels = np.asarray(labels)
        masks.extend(labels == label for label in range(int(labels.min()), int(labels.max()) + 1))
    return masks


def _attr_aggregation_max(attr: np.ndarray, axis: int = -1) -> np.ndarray:
    """Merges the channels of an attribution by their maximum (reference helper)."""
    return attr.max(axis=axis)


def _gain_density(mask1: np.ndarray, attr: np.ndarray, mask2: np.ndarray | None = None) -> Any:
    """Mean attribution over ``mask1`` (minus ``mask2`` if given); ``-inf`` if empty (reference helper)."""
    added = mask1 if mask2 is None else np.logical_and(mask1, np.logical_not(mask2))
    return _density(attr[added])


def _density(values: np.ndarray) -> Any:
    """The reference's gain: ``values.mean()`` (NumPy's own rounding), ``-inf`` when empty."""
    return values.mean() if values.size else -np.inf


# --------------------------------------------------------------------------
# The searches.
# --------------------------------------------------------------------------


@dataclass
class _SearchResult:
    """Map and added regions of one XRAI search (see :func:`xrai_full_search`)."""

    attribution_map: np.ndarray
    region_pixels: list[np.ndarray] = field(default_factory=list)
    region_gains: list[Any] = field(default_factory=list)


def _mean_precisions(dtype: np.dtype) -> tuple[float, float]:
    """Machine epsilons of ``np.mean`` on an array of ``dtype``: (accumulation, result).

    NumPy sums float16 in float32 and rounds the mean back to float16; other
    floating types are summed and returned in their own precision; integers
    and booleans in float64.
    """
    if dtype.kind != "f":
        return float(np.finfo(np.float64).eps), float(np.finfo(np.float64).eps)
    accumulation = np.float32 if dtype == np.float16 else dtype
    return float(np.finfo(accumulation).eps), float(np.finfo(dtype).eps)


def _incidence_matrices(segments: SegmentPixels) -> tuple[sparse.csr_array, sparse.csc_array]:
    """The ``[n_masks, H * W]`` mask/pixel incidence matrix in CSR and CSC form.

    The CSC form lists, for every pixel ``p``, the masks holding it:
    ``csc.indices[csc.indptr[p]:csc.indptr[p + 1]]``.
    """
    n_pixels = math.prod(segments.image_shape)
    ones = np.ones(len(segments.indices), dtype=np.float64)
    csr = sparse.csr_array((ones, segments.indices, segments.indptr), shape=(segments.n_masks, n_pixels))
    return csr, csr.tocsc()


def _gather_ranges(indptr: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``indptr[i]..indptr[i+1]-1`` for every ``i`` in ``items``, concatenated.

    Returns:
      ``(positions, repeats)`` where ``repeats[k]`` is the range length of ``items[k]``.
    """
    starts = indptr[items]
    repeats = indptr[items + 1] - starts
    total = int(repeats.sum())
    positions = np.repeat(starts - (np.cumsum(repeats) - repeats), repeats)
    positions += np.arange(total, dtype=np.int64)
    return positions, repeats


def _exact_densities(
    attr_flat: np.ndarray,
    covered: np.ndarray,
    segments: SegmentPixels,
    mask_ids: np.ndarray,
    new_counts: np.ndarray,
) -> dict[int, Any]:
    """The reference's density of the not-yet-covered pixels of each mask in ``mask_ids``.

    One gather for all the masks; then, per mask, ``np.mean`` of its slice of
    the gathered values (the same values in the same order as
    ``attr[mask & ~covered]``, hence the same result as the reference's mean).

    Returns:
      ``{mask id: density}``, densities as NumPy scalars.
    """
    if not len(mask_ids):
        return {}
    positions, _ = _gather_ranges(segments.indptr.astype(np.int64), mask_ids)
    pixels = segments.indices[positions]
    new_values = attr_flat[pixels[~covered[pixels]]]
    ends = np.cumsum(new_counts[mask_ids])
    starts = ends - new_counts[mask_ids]
    return {
        mask_index: new_values[start:end].mean()
        for mask_index, start, end in zip(mask_ids.tolist(), starts.tolist(), ends.tolist(), strict=True)
    }


def xrai_full_search(
    attr: np.ndarray,
    segments: SegmentPixels,
    area_threshold: float = 1.0,
    min_pixel_diff: float = 50,
) -> _SearchResult:
    """XRAI's greedy search: repeatedly add the mask of highest not-yet-covered density.

    At every step the masks that would add fewer than ``min_pixel_diff`` new
    pixels are dropped for good; among the others the one whose new pixels
    have the highest mean attribution is added (the first such mask on ties)
    and its new pixels get that mean. The search stops when the covered
    fraction of the image exceeds ``area_threshold`` or no mask is left; the
    pixels no mask covered are left at ``-inf`` (see :func:`_finish_search`).

    Every mask's new-pixel count (exact) and attribution sum (float64) are
    updated incrementally from the pixels each step covers. The sums only
    shortlist the masks whose density may be the largest: a mask is dropped
    from the shortlist only when a bound on the rounding of both the running
    sums and NumPy's mean (pairwise summation in the attribution's precision)
    proves its density below the leader's. The shortlisted densities are then
    computed exactly as the reference computes them (the same ``np.mean`` over
    the same pixels in the same order), so the chosen mask, ties included, and
    the map's values are the reference's.

    Args:
      attr: ``[H, W]`` finite attribution (any real dtype; densities are
        ``np.mean`` of it, so in its precision like the reference); any
        other shape works the same way (``[L]``, ``[D, H, W]``).
      segments: the candidate masks over ``attr``'s shape.
      area_threshold: stop once the covered fraction exceeds this.
      min_pixel_diff: the fewest new pixels a mask must add to stay a
        candidate (values below 1 act as 1: a mask that adds nothing is dropped).

    Returns:
      The float64 map of ``attr``'s shape (``-inf`` where no region was added),
      and the added regions' flat pixels and gains in the order they were added.
    """
    attr_flat = np.ravel(attr)
    n_pixels = attr_flat.size
    n_masks = segments.n_masks
    output = np.full(n_pixels, -np.inf)
    result = _SearchResult(output.reshape(attr.shape))
    min_new_pixels = max(min_pixel_diff, 1)

    attr64 = attr_flat.astype(np.float64)
    abs64 = np.abs(attr64)
    mask_sizes = segments.sizes.astype(np.int64)
    new_counts = mask_sizes.copy()
    by_mask, by_pixel = _incidence_matrices(segments)
    new_sums = by_mask @ attr64
    # sum |a| over the whole mask: an upper bound of it over the uncovered part.
    abs_sums = by_mask @ abs64
    pixel_indptr, pixel_masks = by_pixel.indptr.astype(np.int64), by_pixel.indices

    # Rounding bounds (each about four times the textbook first-order bound).
    # The running sums (float64; a sequential sum at the start and one per
    # update) are off by at most slack = eps64 * (4 * size + 4 * step + 16) *
    # sum|a| over the mask, so a running density by at most own = slack / n +
    # eps64 |g|. NumPy's mean sums pairwise (in buffered chunks of 8192 values
    # added one after the other when it casts, e.g. float16 -> float32), off by
    # at most sum_factor * sum|a| / n with sum_factor = (2 log2(n) + 70 +
    # n / 4096) * eps of the accumulation; it then divides and rounds to its
    # result type: at most eps_result * |mean| more.
    eps64 = float(np.finfo(np.float64).eps)
    eps_accumulation, eps_result = _mean_precisions(attr_flat.dtype)
    sum_factor = (2.0 * math.log2(max(n_pixels, 2)) + 70.0 + n_pixels / 4096) * eps_accumulation
    slack_base = eps64 * (4.0 * mask_sizes + 16.0) * abs_sums
    slack_per_step = 4.0 * eps64 * abs_sums

    covered = np.zeros(n_pixels, dtype=bool)
    n_covered = 0
    alive = np.ones(n_masks, dtype=bool)
    covered_fraction = 0.0
    step = 0
    debug = _logger.isEnabledFor(logging.DEBUG)
    covered_attr_sum = 0.0
    while covered_fraction <= area_threshold:
        alive &= new_counts >= min_new_pixels
        if not alive.any():
            break
        counts = np.maximum(new_counts, 1)
        gains = new_sums / counts
        slack = slack_base + step * slack_per_step
        own_error = slack / counts + eps64 * np.abs(gains)
        sum_error = sum_factor * (abs_sums + slack) / counts
        bound = 2.0 * (own_error + sum_error + eps_result * (np.abs(gains) + own_error + sum_error))
        leader = int(np.argmax(np.where(alive, gains, -np.inf)))
        reachable = np.where(alive, gains + bound, -np.inf)
        shortlist = np.flatnonzero(reachable >= gains[leader] - bound[leader])

        if len(shortlist) == 1:
            best_mask = int(shortlist[0])
        else:
            # A mask whose attribution is all zeros has the known density 0 (bound 0).
            unknown = shortlist[bound[shortlist] > 0]
            densities = dict(zip(shortlist.tolist(), gains[shortlist].tolist(), strict=True))
            densities.update(_exact_densities(attr_flat, covered, segments, unknown, new_counts))
            best_mask, best_density = -1, -np.inf
            for mask_index in shortlist.tolist():  # the first of the densest, as the reference
                if densities[mask_index] > best_density:
                    best_mask, best_density = mask_index, densities[mask_index]
        pixels = segments.pixels(best_mask)
        best_pixels = pixels[~covered[pixels]]
        best_gain = _density(attr_flat[best_pixels])

        alive[best_mask] = False
        output[best_pixels] = best_gain
        covered[best_pixels] = True
        result.region_pixels.append(best_pixels)
        result.region_gains.append(best_gain)
        n_covered += len(best_pixels)
        covered_fraction = n_covered / n_pixels
        step += 1

        positions, repeats = _gather_ranges(pixel_indptr, best_pixels)
        touched = pixel_masks[positions]
        new_counts -= np.bincount(touched, minlength=n_masks)
        new_sums -= np.bincount(touched, weights=np.repeat(attr64[best_pixels], repeats), minlength=n_masks)
        if debug:
            covered_attr_sum += float(attr64[best_pixels].sum())
            _logger.debug(
                "%d of %d masks added (mask %d, gain %.6g, %d shortlisted), attr_sum: %.6g, "
                "area: %.3g/%.3g, %d remaining masks",
                step,
                n_masks,
                best_mask,
                float(best_gain),
                len(shortlist),
                covered_attr_sum,
                covered_fraction,
                area_threshold,
                int(np.count_nonzero(alive & (new_counts >= min_new_pixels))),
            )
    return result


def xrai_fast_search(attr: np.ndarray, segments: SegmentPixels, min_pixel_diff: float = 50) -> _SearchResult:
    """XRAI's fast variant: rank the masks once by their own density, then add them in that order.

    Masks are sorted (stably) by the mean attribution over all their pixels,
    highest first; each mask that adds at least ``min_pixel_diff`` new pixels
    is added and its new pixels get their own mean. Pixels no mask covered are
    left at ``-inf`` (see :func:`_finish_search`). An empty list of masks is
    allowed (the reference fails on it: FIX).

    Args:
      attr: ``[H, W]`` (or any shape) finite attribution.
      segments: the candidate masks over ``attr``'s shape.
      min_pixel_diff: the fewest new pixels a mask must add to be used.

    Returns:
      The float64 map of ``attr``'s shape (``-inf`` where no region was added), and the
      added regions' flat pixels and gains in the order they were added.
    """
    attr_flat = np.ravel(attr)
    output = np.full(attr_flat.size, -np.inf)
    result = _SearchResult(output.reshape(attr.shape))
    own_gains = [_density(attr_flat[segments.pixels(i)]) for i in range(segments.n_masks)]
    order = np.argsort(-np.array(own_gains), kind="stable") if own_gains else np.zeros(0, dtype=np.intp)
    covered = np.zeros(attr_flat.size, dtype=bool)
    debug = _logger.isEnabledFor(logging.DEBUG)
    for position, mask_index in enumerate(order):
        pixels = segments.pixels(mask_index)
        new_pixels = pixels[~covered[pixels]]
        if len(new_pixels) < min_pixel_diff:
            if debug:
                _logger.debug("Skipping mask %d with pixel difference: %d", mask_index, len(new_pixels))
            continue
        gain = _density(attr_flat[new_pixels])
        result.region_pixels.append(new_pixels)
        result.region_gains.append(gain)
        output[new_pixels] = gain
        covered[new_pixels] = True
        if debug:
            _logger.debug(
                "%d of %d masks processed (mask %d, gain %.6g), area: %.3g",
                position + 1,
                segments.n_masks,
                mask_index,
                float(gain),
                np.count_nonzero(covered) / attr_flat.size,
            )
    return result


def _finish_search(
    attr: np.ndarray, result: _SearchResult, integer_segments: bool
) -> tuple[np.ndarray, np.ndarray | list[np.ndarray]]:
    """Fills the uncovered pixels and orders the regions by gain.

    The pixels no region covered get the mean attribution of those pixels (so
    the map sums to the attribution's sum); the regions are sorted by gain,
    highest first (stably), with the uncovered region last.

    Returns:
      ``(attribution_map, segments)``: ``segments`` is an int ``[H, W]`` image
      of ranks ``1..N`` when ``integer_segments``, else the list of ``[H, W]``
      boolean masks in rank order.
    """
    attribution_map = result.attribution_map
    flat_map = attribution_map.reshape(-1)
    attr_flat = np.ravel(attr)
    uncovered = np.flatnonzero(flat_map == -np.inf)
    flat_map[uncovered] = _density(attr_flat[uncovered])
    # NumPy scalars of the attribution's precision (or -inf): an exact sort key.
    gains = np.array(result.region_gains) if result.region_gains else np.zeros(0)
    order = np.argsort(-gains, kind="stable")
    regions = [result.region_pixels[i] for i in order]
    if len(uncovered):
        regions.append(uncovered)
    if integer_segments:
        ranks = np.zeros(attr_flat.size, dtype=int)
        for rank, pixels in enumerate(regions, start=1):
            ranks[pixels] = rank
        return attribution_map, ranks.reshape(attr.shape)
    return attribution_map, [_pixels_to_mask(pixels, attr.shape) for pixels in regions]


# --------------------------------------------------------------------------
# The saliency method.
# --------------------------------------------------------------------------


def _check_gain_function(gain_fun: Any) -> None:
    """Only the density gain is implemented (the reference never uses another)."""
    if gain_fun is not None and gain_fun is not _gain_density:
        raise ValueError(f"gain_fun must be the density (_gain_density), got {gain_fun!r}")


class XRAIParameters:
    """Parameters of :meth:`XRAI.GetMaskWithDetails` (the reference's class, same order).

    Attributes:
      steps: Integrated Gradients steps per baseline (>= 1).
      area_threshold: 'full' stops once this fraction of the image is covered;
        the rest becomes one region. 1.0 ranks the whole image ('fast' ignores
        it).
      return_ig_attributions: put the IG attribution of every baseline (or the
        given ``base_attribution``) in ``XRAIOutput.ig_attribution``.
      return_xrai_segments: put the ranked regions in ``XRAIOutput.segments``.
      flatten_xrai_segments: regions as an int ``[H, W]`` image of ranks
        ``1..N`` (1 most important); else a list of ``[H, W]`` boolean masks,
        most important first.
      algorithm: ``'full'`` or ``'fast'``.
      experimental_params: ``{'min_pixel_diff': int}``, the fewest new pixels a
        region must add (also reachable as the ``min_pixel_diff`` attribute).
    """

    def __init__(
        self,
        steps: int = 100,
        area_threshold: float = 1.0,
        return_baseline_predictions: bool = False,
        return_ig_attributions: bool = False,
        return_xrai_segments: bool = False,
        flatten_xrai_segments: bool = True,
        algorithm: str = FULL,
        min_pixel_diff: int = 50,
    ) -> None:
        self.steps = steps
        self.area_threshold = area_threshold
        # Accepted for compatibility; the reference does not implement it either.
        self.return_baseline_predictions = return_baseline_predictions
        self.return_ig_attributions = return_ig_attributions
        self.return_xrai_segments = return_xrai_segments
        self.flatten_xrai_segments = flatten_xrai_segments
        self.algorithm = algorithm
        self.experimental_params = {"min_pixel_diff": min_pixel_diff}

    @property
    def min_pixel_diff(self) -> Any:
        """``experimental_params['min_pixel_diff']``."""
        return self.experimental_params["min_pixel_diff"]

    @min_pixel_diff.setter
    def min_pixel_diff(self, value: Any) -> None:
        self.experimental_params["min_pixel_diff"] = value

    def __repr__(self) -> str:
        return (
            f"XRAIParameters(steps={self.steps!r}, area_threshold={self.area_threshold!r}, "
            f"return_ig_attributions={self.return_ig_attributions!r}, "
            f"return_xrai_segments={self.return_xrai_segments!r}, "
            f"flatten_xrai_segments={self.flatten_xrai_segments!r}, algorithm={self.algorithm!r}, "
            f"experimental_params={self.experimental_params!r})"
        )


@dataclass(eq=False)
class XRAIOutput:
    """What :meth:`XRAI.GetMaskWithDetails` returns (the reference's class).

    Attributes:
      attribution_mask: float64 ``[H, W]`` XRAI map (the attribution's shape:
        ``[L]`` for a sequence given with ``segments``).
      baselines: the IG baselines used (list of ``x_value``-shaped arrays), or
        ``None`` when ``base_attribution`` was given.
      ig_attribution: with ``return_ig_attributions``: the list of IG
        attributions (one per baseline), or the given ``base_attribution``.
      segments: with ``return_xrai_segments``: an int ``[H, W]`` image of ranks
        ``1..N``, or the list of ``[H, W]`` boolean masks in rank order (the
        attribution's shape in general).
    """

    attribution_mask: np.ndarray
    baselines: list[np.ndarray] | None = None
    ig_attribution: Any = None
    segments: Any = None


class XRAI(CoreSaliency):
    """XRAI (Kapishnikov et al. 2019, arXiv 1906.02825): attribution by ranked image regions.

    The pixel attribution (Integrated Gradients averaged over the baselines,
    or ``base_attribution``) is reduced to ``[H, W]`` by the maximum over
    channels, and regions (Felzenszwalb segments, dilated) are added in order
    of attribution density; see :func:`xrai_full_search` and
    :func:`xrai_fast_search`. Non-image inputs (sequences ``[L]``, volumes)
    work when their ``segments`` are given; see :meth:`GetMaskWithDetails`.

    Example::

        params = XRAIParameters(steps=50, algorithm="fast", return_xrai_segments=True)
        params.experimental_params["min_pixel_diff"] = 10  # or params.min_pixel_diff = 10
        output = XRAI().GetMaskWithDetails(image, call_model_function, extra_parameters=params)
        output.attribution_mask  # [H, W] map; output.segments: [H, W] ranks 1..N

    ``call_model_function`` must answer ``INPUT_OUTPUT_GRADIENTS`` (it is only
    called by Integrated Gradients, ``steps`` points per baseline in calls of
    at most ``batch_size``, and not at all when ``base_attribution`` is given).
    """

    expected_keys = [INPUT_OUTPUT_GRADIENTS]

    def __init__(self) -> None:
        super().__init__()
        self._integrated_gradients = IntegratedGradients()

    def _get_integrated_gradients(
        self,
        im: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any,
        baselines: Sequence[np.ndarray],
        steps: int,
        batch_size: int,
    ) -> list[np.ndarray]:
        """Integrated Gradients of ``im`` from every baseline (one list entry per baseline)."""
        return [
            self._integrated_gradients.GetMask(
                im,
                call_model_function,
                call_model_args=call_model_args,
                x_baseline=baseline,
                x_steps=steps,
                batch_size=batch_size,
            )
            for baseline in baselines
        ]

    @staticmethod
    def _xrai(
        attr: np.ndarray,
        segs: Sequence[np.ndarray],
        gain_fun: Any = _gain_density,
        area_perc_th: float = 1.0,
        min_pixel_diff: float = 50,
        integer_segments: bool = True,
    ) -> tuple[np.ndarray, np.ndarray | list[np.ndarray]]:
        """The reference's full search on ``[H, W]`` ``attr`` and a list of boolean masks.

        Returns ``(attribution_map, ranks or ranked masks)``; see :func:`xrai_full_search`.

        Raises:
          ValueError: if ``gain_fun`` is not the density (the only gain the reference uses).
        """
        _check_gain_function(gain_fun)
        attr = np.asarray(attr)
        search = xrai_full_search(
            attr, segment_pixels_from_masks(segs, attr.shape), area_perc_th, min_pixel_diff
        )
        return _finish_search(attr, search, integer_segments)

    @staticmethod
    def _xrai_fast(
        attr: np.ndarray,
        segs: Sequence[np.ndarray],
        gain_fun: Any = _gain_density,
        area_perc_th: float = 1.0,
        min_pixel_diff: float = 50,
        integer_segments: bool = True,
    ) -> tuple[np.ndarray, np.ndarray | list[np.ndarray]]:
        """The reference's fast search (``area_perc_th`` is ignored, as there); see :func:`xrai_fast_search`.

        Raises:
          ValueError: if ``gain_fun`` is not the density.
        """
        _check_gain_function(gain_fun)
        attr = np.asarray(attr)
        search = xrai_fast_search(attr, segment_pixels_from_masks(segs, attr.shape), min_pixel_diff)
        return _finish_search(attr, search, integer_segments)

    def _make_baselines(self, x_value: np.ndarray, x_baselines: Sequence[Any] | None) -> list[np.ndarray]:
        """The given baselines, checked, or an all-``min(x)`` and an all-``max(x)`` image.

        Raises:
          ValueError: if a baseline's shape differs from ``x_value``'s, a
            baseline is not finite, or the list is empty.
        """
        if x_baselines is None:
            return [np.full_like(x_value, np.min(x_value)), np.full_like(x_value, np.max(x_value))]
        checked = []
        for index, baseline in enumerate(x_baselines):
            baseline = as_float_array(f"baselines[{index}]", baseline, min_ndim=0)
            if baseline.shape != x_value.shape:
                raise ValueError(
                    f"Baseline size {baseline.shape} does not match input size {x_value.shape} "
                    f"(baselines[{index}]: expected shape {x_value.shape}, got {baseline.shape})"
                )
            checked.append(baseline)
        if not checked:
            raise ValueError("baselines must hold at least one baseline (or be None for the defaults)")
        return checked

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        baselines: Sequence[np.ndarray] | None = None,
        segments: Sequence[np.ndarray] | None = None,
        base_attribution: np.ndarray | None = None,
        batch_size: int = 1,
        extra_parameters: XRAIParameters | None = None,
    ) -> np.ndarray:
        """Returns the XRAI map of ``x_value``: float64 ``[H, W]`` (see :meth:`GetMaskWithDetails`).

        See :meth:`GetMaskWithDetails` for the arguments and errors.
        """
        return self.GetMaskWithDetails(
            x_value,
            call_model_function,
            call_model_args=call_model_args,
            baselines=baselines,
            segments=segments,
            base_attribution=base_attribution,
            batch_size=batch_size,
            extra_parameters=extra_parameters,
        ).attribution_mask

    def GetMaskWithDetails(  # noqa: N802
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        baselines: Sequence[np.ndarray] | None = None,
        segments: Sequence[np.ndarray] | None = None,
        base_attribution: np.ndarray | None = None,
        batch_size: int = 1,
        extra_parameters: XRAIParameters | None = None,
    ) -> XRAIOutput:
        """Runs XRAI on one image and returns the map with the details asked for.

        Input shapes (the reference's rules): the attribution (IG, or
        ``base_attribution``) of an input of rank 3 or more is reduced by the
        maximum over its last (channel) axis; rank 1 and 2 are kept as they
        are. Without ``segments``, ``x_value`` must be an image, ``[H, W]`` or
        ``[H, W, C]`` (Felzenszwalb segments images). With ``segments``, any
        input of rank >= 1 works: a sequence ``[L]`` with ``[L]`` masks, an
        ``[L, C]`` input with ``[L, C]`` masks (rank 2 is not reduced), a
        volume ``[D, H, W, C]`` with ``[D, H, W]`` masks.

        Args:
          x_value: the un-batched input, finite: an image ``[H, W]`` or
            ``[H, W, C]``; any rank >= 1 when ``segments`` is given.
          call_model_function: answers ``INPUT_OUTPUT_GRADIENTS`` for a batch
            ``[B, *x_value.shape]``; unused when ``base_attribution`` is given.
          call_model_args: passed to every model call unchanged.
          baselines: IG baselines, each of ``x_value``'s shape; default an
            all-``min(x)`` and an all-``max(x)`` image.
          segments: candidate regions, a sequence of boolean masks of the
            attribution's shape (``[H, W]`` for an image); default:
            Felzenszwalb segments of ``x_value`` at six scales, each dilated
            by a disk of radius 5.
          base_attribution: a precomputed attribution of ``x_value``'s shape to
            use instead of IG (then the model is not called).
          batch_size: the most IG path points per model call.
          extra_parameters: an :class:`XRAIParameters`; defaults if ``None``.

        Returns:
          An :class:`XRAIOutput`.

        Raises:
          ValueError: unknown algorithm; ``base_attribution``, a baseline or a
            segment of the wrong shape; NaN/inf in the image or attribution;
            without ``segments``, an input that is not ``[H, W]`` or
            ``[H, W, C]``; ``steps`` above
            :data:`~saliencykit.core.base.MAX_MODEL_EVALUATIONS`; a bad model
            answer.
          TypeError: non-numeric inputs or parameters of the wrong type.

        FIX over the reference: an input that is not an image without
        ``segments`` is a clear ``ValueError`` (the reference fails inside
        scikit-image).
        """
        params = XRAIParameters() if extra_parameters is None else extra_parameters
        algorithm = params.algorithm
        if algorithm not in XRAI_ALGORITHMS:
            raise ValueError(f"Unknown algorithm type: {algorithm!r} (expected one of {XRAI_ALGORITHMS})")
        area_threshold = check_number("extra_parameters.area_threshold", params.area_threshold)
        min_pixel_diff = check_number(
            "extra_parameters.experimental_params['min_pixel_diff']",
            params.experimental_params["min_pixel_diff"],
        )

        x_array = np.asarray(x_value)
        x_float = as_float_array("x_value", x_array, min_ndim=1)
        attribution_shape = x_array.shape if x_array.ndim <= 2 else x_array.shape[:-1]
        if segments is None and x_array.ndim not in (2, 3):
            raise ValueError(
                "without segments, x_value must be one image [H, W] or [H, W, C] without a batch "
                f"dimension (XRAI's default segmentation is Felzenszwalb's, for images), got shape "
                f"{x_array.shape}; for other data (sequences [L], volumes...) pass segments=: a "
                f"list of boolean masks of the attribution's shape {attribution_shape}"
            )

        if base_attribution is not None:
            base_attribution = np.asarray(base_attribution)
            if base_attribution.shape != x_array.shape:
                raise ValueError(
                    "The base attribution shape should be the same as the shape of `x_value`. "
                    f"Expected {x_array.shape}, got {base_attribution.shape} (base_attribution)"
                )
            if base_attribution.dtype.kind not in "biuf":
                raise TypeError(
                    f"base_attribution must be a real numeric array, got dtype {base_attribution.dtype}"
                )
            x_baselines = None
            ig_attributions: Any = base_attribution
            attr = base_attribution
        else:
            steps = check_evaluation_count("extra_parameters.steps", params.steps)
            _logger.debug("Computing IG...")
            x_baselines = self._make_baselines(x_float, baselines)
            ig_attributions = self._get_integrated_gradients(
                x_float,
                call_model_function,
                call_model_args=call_model_args,
                baselines=x_baselines,
                steps=steps,
                batch_size=batch_size,
            )
            attr = np.mean(ig_attributions, axis=0)
        if attr.ndim > 2:  # the reference's rule: the last axis of rank 3+ is channels
            attr = _attr_aggregation_max(attr)
        if attr.dtype.kind == "f" and not np.isfinite(attr).all():
            raise ValueError("The attribution (base_attribution or IG) holds NaN or inf values")

        _logger.debug("Done with IG. Computing XRAI...")
        if segments is not None:
            segment_pixels = segment_pixels_from_masks(segments, attr.shape)
        else:
            label_images = felzenszwalb_label_images(x_array)
            segment_pixels = dilated_segment_pixels(label_images, _DEFAULT_DILATION_RADIUS)

        if algorithm == FULL:
            search = xrai_full_search(attr, segment_pixels, area_threshold, min_pixel_diff)
        else:
            search = xrai_fast_search(attr, segment_pixels, min_pixel_diff)
        attribution_map, ranked_segments = _finish_search(attr, search, bool(params.flatten_xrai_segments))

        output = XRAIOutput(attribution_map, baselines=x_baselines)
        if params.return_xrai_segments:
            output.segments = ranked_segments
        if params.return_ig_attributions:
            output.ig_attribution = ig_attributions
        return output
