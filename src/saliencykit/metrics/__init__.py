"""Evaluation of saliency maps: the PIC metrics (SIC and AIC) of the XRAI paper.

``import saliencykit.metrics as pic`` replaces ``from saliency.metrics import pic``:
same functions, same numbers, about 2x faster, and ``pred_func`` called as the
reference calls it (one image at a time) unless told otherwise. New: seeds for
the random mask, ``batch_size`` / ``n_jobs`` / ``memory_limit`` for
:func:`compute_pic_metric`, clear errors for images too large
(:class:`PicMemoryError`, :class:`PicInterpolationError`), the SIC and AIC helpers
(which batch by default) and :func:`plot_pic_curves` (matplotlib, ``saliencykit[plot]``).
"""

from .pic import (
    DEFAULT_SALIENCY_THRESHOLDS,
    AggregateMetricResult,
    ComputePicMetricError,
    ImageDtypeError,
    PicInterpolationError,
    PicMemoryError,
    PicMetricResult,
    aggregate_individual_pic_results,
    compute_pic_metric,
    create_blurred_image,
    estimate_image_entropy,
    generate_random_mask,
)
from .plotting import plot_pic_curves
from .sic_aic import compute_aic, compute_sic, make_aic_pred_func, make_sic_pred_func

__all__ = [
    "DEFAULT_SALIENCY_THRESHOLDS",
    "AggregateMetricResult",
    "ComputePicMetricError",
    "ImageDtypeError",
    "PicInterpolationError",
    "PicMemoryError",
    "PicMetricResult",
    "aggregate_individual_pic_results",
    "compute_aic",
    "compute_pic_metric",
    "compute_sic",
    "create_blurred_image",
    "estimate_image_entropy",
    "generate_random_mask",
    "make_aic_pred_func",
    "make_sic_pred_func",
    "plot_pic_curves",
]
