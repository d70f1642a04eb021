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

The package's parts:

- :mod:`.segments`: regions as sorted flat pixel lists (:class:`SegmentPixels`)
  and the disk dilation of every segment of a label image at once;
- :mod:`.felzenszwalb`: the default segmentation (six scales, concurrently);
- :mod:`.cache`: every :class:`XRAI` instance's cache of default segments, per image;
- :mod:`.search`: the 'full' and 'fast' searches;
- :mod:`.method`: the public classes :class:`XRAI`, :class:`XRAIParameters`,
  :class:`XRAIOutput`;
- :mod:`.reference_helpers`: helpers kept only for the original's private names.

Every name is available from ``saliencykit.core.xrai`` itself, as when XRAI
was one module; log messages go to the logger ``saliencykit.core.xrai``.

How this differs from the reference (same inputs give the same segments, the
same ranking and the same map, bit for bit): segments are pixel lists, never
a boolean image per mask; the 'full' search updates every mask's
not-yet-covered count and sum incrementally and computes the reference's exact
densities only for a shortlist; Felzenszwalb runs once per scale, on the image
resized once.

FIX over the reference: a constant image does not produce a NaN image for the
segmentation (every pixel maps to the range's lower end); the 'fast' algorithm
accepts an empty list of segments (the reference crashes); with
``min_pixel_diff <= 0`` the 'full' algorithm drops masks that add no pixel (the
reference loops until it fails on a missing key); NaN or infinite attributions
are a ``ValueError`` instead of a failure deep in the search.
"""

# This module re-exports its parts: the public names (__all__) and the private
# names of the single module XRAI was before the split (tests and code written
# against the original's private helpers import them from here).
# ruff: noqa: F401
from .felzenszwalb import (
    _DEFAULT_DILATION_RADIUS,
    _FELZENSZWALB_IM_RESIZE,
    _FELZENSZWALB_IM_VALUE_RANGE,
    _FELZENSZWALB_MIN_SEGMENT_SIZE,
    _FELZENSZWALB_SCALE_VALUES,
    _FELZENSZWALB_SIGMA_VALUES,
    _normalize_image,
    default_segmentation_workers,
    felzenszwalb_label_images,
)
from .method import XRAI, XRAIOutput, XRAIParameters, _logger
from .reference_helpers import (
    _attr_aggregation_max,
    _check_gain_function,
    _gain_density,
    _get_segments_felzenszwalb,
    _unpack_segs_to_masks,
)
from .search import (
    FAST,
    FULL,
    XRAI_ALGORITHMS,
    _density,
    _exact_densities,
    _finish_search,
    _gather_ranges,
    _incidence_matrices,
    _mean_precisions,
    _SearchResult,
    xrai_fast_search,
    xrai_full_search,
)
from .segments import (
    SegmentPixels,
    _disk_half_widths,
    _index_dtype,
    _pixels_to_mask,
    _radix_order,
    concatenate_segment_pixels,
    dilated_segment_pixels,
    segment_pixels_from_masks,
)

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
