"""Evaluation of saliency maps: PIC (SIC and AIC), deletion and insertion, randomisation, robustness.

``import saliencykit.metrics as pic`` replaces ``from saliency.metrics import pic``:
same functions, same numbers, 3.6-3.9x faster with two free cores, and ``pred_func`` called as the
reference calls it (one image at a time) unless told otherwise. New: seeds for
the random mask, ``batch_size`` / ``n_jobs`` / ``memory_limit`` for
:func:`compute_pic_metric`, clear errors for images too large
(:class:`PicMemoryError`, :class:`PicInterpolationError`), the SIC and AIC helpers
(which batch by default) and :func:`plot_pic_curves` (matplotlib, ``saliencykit[plot]``).

Beyond the reference: deletion and insertion (Petsiuk et al. 2018),
model-parameter randomisation (Adebayo et al. 2018; the randomised model
copies come from :mod:`saliencykit.torch` and :mod:`saliencykit.keras`), and
sensitivity-max and infidelity (Yeh et al. 2019).
"""

from .deletion_insertion import (
    DeletionInsertionResult,
    aggregate_deletion_insertion_results,
    blurred_baseline,
    compute_deletion_metric,
    compute_insertion_metric,
    make_output_pred_func,
)
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
from .plotting import plot_deletion_insertion_curves, plot_pic_curves, plot_randomisation
from .randomisation import (
    RANDOMISATION_MODES,
    MapSimilarity,
    RandomisationResult,
    compare_saliency_maps,
    compute_model_randomisation,
)
from .robustness import InfidelityResult, SensitivityResult, infidelity, sensitivity_max
from .sic_aic import (
    PicMetrics,
    compute_aic,
    compute_pic_metrics,
    compute_sic,
    make_aic_pred_func,
    make_sic_pred_func,
)

__all__ = [
    "DEFAULT_SALIENCY_THRESHOLDS",
    "RANDOMISATION_MODES",
    "DeletionInsertionResult",
    "InfidelityResult",
    "MapSimilarity",
    "PicMetrics",
    "RandomisationResult",
    "SensitivityResult",
    "aggregate_deletion_insertion_results",
    "blurred_baseline",
    "compare_saliency_maps",
    "compute_deletion_metric",
    "compute_insertion_metric",
    "compute_model_randomisation",
    "infidelity",
    "make_output_pred_func",
    "plot_deletion_insertion_curves",
    "plot_randomisation",
    "sensitivity_max",
    "AggregateMetricResult",
    "ComputePicMetricError",
    "ImageDtypeError",
    "PicInterpolationError",
    "PicMemoryError",
    "PicMetricResult",
    "aggregate_individual_pic_results",
    "compute_aic",
    "compute_pic_metric",
    "compute_pic_metrics",
    "compute_sic",
    "create_blurred_image",
    "estimate_image_entropy",
    "generate_random_mask",
    "make_aic_pred_func",
    "make_sic_pred_func",
    "plot_pic_curves",
]
