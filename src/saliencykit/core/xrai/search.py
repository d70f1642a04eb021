"""XRAI's two searches over the candidate regions: 'full' (greedy) and 'fast' (one ranking).

Both add regions in order of attribution *density* (the mean attribution of
the pixels a region newly covers) and give every added region's new pixels
that density, so the map sums to the attribution's sum; :func:`_finish_search`
fills the pixels no region covered and orders the regions.

The 'full' search keeps every mask's not-yet-covered pixel count (exact
integers) and attribution sum (float64) and updates them, when a region is
added, only for the pixels it newly covers (``np.bincount`` over the
pixel -> mask incidence). The running sums only shortlist the masks whose
density could be the best; the shortlisted masks' densities are then computed
exactly as the reference does (the same NumPy mean over the same pixels in
the same order), so ties and rounding resolve identically.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from .segments import SegmentPixels, _pixels_to_mask

__all__ = ["FAST", "FULL", "XRAI_ALGORITHMS", "xrai_fast_search", "xrai_full_search"]

#: The package's logger (``saliencykit.core.xrai``), as before the package split.
_logger = logging.getLogger(__name__.rpartition(".")[0])

FULL = "full"
FAST = "fast"
#: The values ``XRAIParameters.algorithm`` accepts.
XRAI_ALGORITHMS = (FULL, FAST)


def _density(values: np.ndarray) -> Any:
    """The reference's gain: ``values.mean()`` (NumPy's own rounding), ``-inf`` when empty."""
    return values.mean() if values.size else -np.inf


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
