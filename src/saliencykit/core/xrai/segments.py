"""XRAI's candidate regions as sorted flat pixel lists, and their disk dilation.

Segments are kept as label images and as one sorted flat pixel list per mask
(:class:`SegmentPixels`, a CSR incidence matrix), never as a boolean image per
mask. The disk dilation of every segment of a label image is computed at once
from the label image's horizontal runs: a disk is a stack of horizontal
segments, so a run ``[s, e]`` of label ``l`` in row ``r`` contributes
``[s - w(dy), e + w(dy)]`` to row ``r + dy``; the intervals of each
(label, row) are merged after one sort.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base import check_int

__all__ = [
    "SegmentPixels",
    "concatenate_segment_pixels",
    "dilated_segment_pixels",
    "segment_pixels_from_masks",
]


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
    order: np.ndarray | None = None
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
    if order is None:
        raise ValueError("_radix_order needs at least one key")
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


def concatenate_segment_pixels(parts: Sequence[SegmentPixels]) -> SegmentPixels:
    """The masks of every part, part after part, as one :class:`SegmentPixels` (same image shape).

    ``dilated_segment_pixels(label_images, r)`` equals the concatenation of
    ``dilated_segment_pixels([labels], r)`` for each of the label images, in
    order (the masks come label image by label image).
    """
    image_shape = parts[0].image_shape
    n_entries = sum(len(part.indices) for part in parts)
    index_dtype = _index_dtype(math.prod(image_shape), n_entries)
    indptr = np.zeros(sum(part.n_masks for part in parts) + 1, dtype=index_dtype)
    np.cumsum(np.concatenate([part.sizes for part in parts]), out=indptr[1:], dtype=index_dtype)
    indices = np.concatenate([part.indices for part in parts]).astype(index_dtype, copy=False)
    return SegmentPixels(image_shape, indptr, indices)


def _index_dtype(n_pixels: int, n_entries: int) -> np.dtype[Any]:
    """``int32`` when pixel indices and entry offsets fit in it, else ``int64``."""
    return np.dtype(np.int32 if max(n_pixels, n_entries) < 2**31 - 1 else np.int64)
