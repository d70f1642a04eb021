"""SIC and AIC: the two PIC metrics for a classifier, from one probability function.

The Softmax Information Curve (SIC) follows the softmax probability of the
explained class; the Accuracy Information Curve (AIC) follows whether the class
is still the top prediction (1.0 or 0.0). Both are :func:`compute_pic_metric`
with a particular ``pred_func``; these helpers build it from a function that
returns class probabilities for a batch of ``uint8`` images.

Since that function takes batches, :func:`compute_sic` and :func:`compute_aic`
(new names, not in the reference) send all the thresholds' images in one call
by default (``batch_size=None``); :func:`compute_pic_metric` itself keeps the
reference's one image per call unless told otherwise.

Users almost always want both curves: :func:`compute_pic_metrics` returns SIC
and AIC from one set of blurred images, their entropies and one model call per
batch, the same numbers as :func:`compute_sic` and :func:`compute_aic` at about
half the cost of the two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..core.base import check_int, check_number
from .pic import (
    DEFAULT_SALIENCY_THRESHOLDS,
    ComputePicMetricError,
    PicMetricResult,
    _checked_arguments,
    _checked_predictions,
    _pic_curves,
    compute_pic_metric,
)

__all__ = [
    "PicMetrics",
    "compute_aic",
    "compute_pic_metrics",
    "compute_sic",
    "make_aic_pred_func",
    "make_sic_pred_func",
]

#: ``predict_probabilities(images)``: a ``uint8`` batch ``[B, H, W, C]`` -> ``[B, n_classes]`` probabilities.
PredictProbabilities = Callable[[np.ndarray], Any]


def _class_probabilities(predict_probabilities: PredictProbabilities, images: np.ndarray) -> np.ndarray:
    probabilities = np.asarray(predict_probabilities(images))
    if probabilities.ndim != 2 or probabilities.shape[0] != len(images):
        raise ValueError(
            "predict_probabilities must return an array [batch, n_classes]: expected "
            f"({len(images)}, n_classes), got shape {probabilities.shape}"
        )
    if probabilities.dtype.kind not in "f":
        raise TypeError(f"predict_probabilities must return floats, got dtype {probabilities.dtype}")
    if not np.isfinite(probabilities).all():
        raise ValueError("predict_probabilities returned NaN or inf")
    return probabilities


def _check_class_index(class_index: int, n_classes: int) -> None:
    if class_index >= n_classes:
        raise ValueError(f"class_index must be < the number of classes {n_classes}, got {class_index}")


def make_sic_pred_func(
    predict_probabilities: PredictProbabilities, class_index: int
) -> Callable[[np.ndarray], np.ndarray]:
    """Returns the SIC ``pred_func``: the probability of ``class_index`` for each image.

    Args:
      predict_probabilities: ``uint8`` batch ``[B, H, W, C]`` -> ``[B, n_classes]``
        softmax probabilities (do the model's preprocessing inside it).
      class_index: the class the saliency map explains, >= 0.

    Returns:
      ``pred_func(images) -> [B]`` probabilities, for :func:`compute_pic_metric`.

    Raises:
      TypeError, ValueError: when called, if ``predict_probabilities`` does not
        return finite floats of shape ``[B, n_classes]`` or ``class_index`` is
        out of range (and at once for a negative or non-integer ``class_index``).
    """
    class_index = check_int("class_index", class_index, minimum=0)

    def sic_pred_func(images: np.ndarray) -> np.ndarray:
        probabilities = _class_probabilities(predict_probabilities, images)
        _check_class_index(class_index, probabilities.shape[1])
        return probabilities[:, class_index]

    return sic_pred_func


def make_aic_pred_func(
    predict_probabilities: PredictProbabilities, class_index: int
) -> Callable[[np.ndarray], np.ndarray]:
    """Returns the AIC ``pred_func``: 1.0 where ``class_index`` is the top prediction, else 0.0.

    Arguments and errors as for :func:`make_sic_pred_func`.
    """
    class_index = check_int("class_index", class_index, minimum=0)

    def aic_pred_func(images: np.ndarray) -> np.ndarray:
        probabilities = _class_probabilities(predict_probabilities, images)
        _check_class_index(class_index, probabilities.shape[1])
        return (np.argmax(probabilities, axis=1) == class_index).astype(np.float64)

    return aic_pred_func


def compute_sic(
    img: np.ndarray,
    saliency_map: np.ndarray,
    random_mask: np.ndarray,
    predict_probabilities: PredictProbabilities,
    class_index: int,
    saliency_thresholds: Sequence[float] = DEFAULT_SALIENCY_THRESHOLDS,
    min_pred_value: float = 0.5,
    **kwargs: Any,
) -> PicMetricResult:
    """The Softmax Information Curve of one image: :func:`compute_pic_metric` with the SIC ``pred_func``.

    Args:
      img, saliency_map, random_mask: as for :func:`compute_pic_metric`.
      predict_probabilities: ``uint8`` batch -> ``[B, n_classes]`` softmax probabilities.
      class_index: the explained class.
      saliency_thresholds: defaults to the reference notebook's 13 thresholds.
      min_pred_value: images whose class probability is below this are skipped;
        0.5 (the class is surely the top one) rather than the low-level default 0.8.
      **kwargs: ``keep_monotonous``, ``num_data_points``, ``batch_size``, ``n_jobs``,
        ``memory_limit`` (see :func:`compute_pic_metric`). ``batch_size`` defaults
        to ``None`` here: ``predict_probabilities`` gets the original image, the
        fully blurred one, then every threshold's image in one call (pass an
        int to bound the batches).

    Returns:
      A :class:`PicMetricResult`. Aggregate SIC curves with ``method='median'``.

    Raises:
      ComputePicMetricError: the image must be skipped (see :func:`compute_pic_metric`).
    """
    pred_func = make_sic_pred_func(predict_probabilities, class_index)
    kwargs.setdefault("batch_size", None)
    return compute_pic_metric(
        img,
        saliency_map,
        random_mask,
        pred_func,
        saliency_thresholds,
        min_pred_value=min_pred_value,
        **kwargs,
    )


def compute_aic(
    img: np.ndarray,
    saliency_map: np.ndarray,
    random_mask: np.ndarray,
    predict_probabilities: PredictProbabilities,
    class_index: int,
    saliency_thresholds: Sequence[float] = DEFAULT_SALIENCY_THRESHOLDS,
    **kwargs: Any,
) -> PicMetricResult:
    """The Accuracy Information Curve of one image: :func:`compute_pic_metric` with the AIC ``pred_func``.

    The image is skipped (:class:`ComputePicMetricError`) unless ``class_index``
    is the model's top prediction on it and not on the fully blurred image.
    Arguments as for :func:`compute_sic` (all the thresholds' images in one
    call unless ``batch_size`` says otherwise); aggregate AIC curves with
    ``method='mean'``.
    """
    pred_func = make_aic_pred_func(predict_probabilities, class_index)
    kwargs.setdefault("min_pred_value", 0.5)
    kwargs.setdefault("batch_size", None)
    return compute_pic_metric(img, saliency_map, random_mask, pred_func, saliency_thresholds, **kwargs)


class PicMetrics(NamedTuple):
    """SIC and AIC of one image and saliency map (:func:`compute_pic_metrics`).

    Attributes:
      sic: the Softmax Information Curve, as :func:`compute_sic` returns it, or
        ``None`` when SIC must skip this image.
      aic: the Accuracy Information Curve, as :func:`compute_aic` returns it, or
        ``None`` when AIC must skip this image.
      skipped: for each curve that is ``None`` (``"sic"``, ``"aic"``), the
        :class:`ComputePicMetricError` that :func:`compute_sic` or
        :func:`compute_aic` would have raised.
    """

    sic: PicMetricResult | None
    aic: PicMetricResult | None
    skipped: dict[str, ComputePicMetricError]


def compute_pic_metrics(
    img: np.ndarray,
    saliency_map: np.ndarray,
    random_mask: np.ndarray,
    predict_probabilities: PredictProbabilities,
    class_index: int,
    saliency_thresholds: Sequence[float] = DEFAULT_SALIENCY_THRESHOLDS,
    min_pred_value: float = 0.5,
    *,
    keep_monotonous: bool = True,
    num_data_points: int = 1000,
    batch_size: int | None = None,
    n_jobs: int | None = None,
    memory_limit: int | None = None,
) -> PicMetrics:
    """SIC and AIC of one image from one set of blurred images, entropies and model calls.

    The same curves as :func:`compute_sic` and :func:`compute_aic` with the same
    arguments (bit for bit: the same images reach ``predict_probabilities`` in
    the same batches), at about half the cost of calling both: the blurred
    images (a Delaunay triangulation each) and their WebP sizes are computed
    once, and each call of ``predict_probabilities`` gives both curves their
    value, the class's probability (SIC) and whether it is the top class (AIC).
    ``predict_probabilities`` gets the original image, then the fully blurred
    one, then the thresholds' images (in one call by default).

    Args:
      img, saliency_map, random_mask: as for
        :func:`~saliencykit.metrics.compute_pic_metric`.
      predict_probabilities: ``uint8`` batch ``[B, H, W, C]`` -> ``[B, n_classes]``
        softmax probabilities (do the model's preprocessing inside it).
      class_index: the class the saliency map explains, >= 0.
      saliency_thresholds: defaults to the reference notebook's 13 thresholds.
      min_pred_value: a curve skips the image when its value on ``img`` is below
        this: SIC when the class's probability is, AIC unless the class is the
        top one (any value in (0, 1]). The default of both helpers, 0.5.
      keep_monotonous, num_data_points, n_jobs, memory_limit: as for
        :func:`~saliencykit.metrics.compute_pic_metric`.
      batch_size: the most images per ``predict_probabilities`` call; ``None``
        (the default) sends all the thresholds' images in one call.

    Returns:
      A :class:`PicMetrics`: both curves, or ``None`` and the reason for a curve
      that skips the image. Aggregate SIC curves with ``method='median'``, AIC
      curves with ``method='mean'``.

    Raises:
      ComputePicMetricError: both curves skip the image (its message gives both
        reasons), or the fully blurred image is not lower than ``img`` in
        entropy. Skip the image.
      TypeError, ValueError: bad arguments (as for
        :func:`~saliencykit.metrics.compute_pic_metric`), a negative
        ``class_index``, or a ``predict_probabilities`` that does not return
        finite floats ``[B, n_classes]`` with ``class_index < n_classes``.
      PicMemoryError, PicInterpolationError: as for
        :func:`~saliencykit.metrics.compute_pic_metric`.
    """
    arguments = _checked_arguments(
        img, saliency_map, random_mask, saliency_thresholds, num_data_points, batch_size, n_jobs, memory_limit
    )
    if not callable(predict_probabilities):
        raise TypeError(f"predict_probabilities must be callable, got {type(predict_probabilities).__name__}")
    class_index = check_int("class_index", class_index, minimum=0)
    min_pred_value = check_number("min_pred_value", min_pred_value)

    def predict(images: np.ndarray) -> list[np.ndarray]:
        probabilities = _class_probabilities(predict_probabilities, images)
        _check_class_index(class_index, probabilities.shape[1])
        on_top = (np.argmax(probabilities, axis=1) == class_index).astype(np.float64)
        return [
            _checked_predictions(probabilities[:, class_index], len(images), "predict_probabilities"),
            _checked_predictions(on_top, len(images), "predict_probabilities"),
        ]

    labels = ["SIC", "AIC"]
    sic, aic = _pic_curves(arguments, predict, [min_pred_value] * 2, labels, keep_monotonous)
    skipped = {
        label.lower(): outcome
        for label, outcome in zip(labels, (sic, aic), strict=True)
        if isinstance(outcome, ComputePicMetricError)
    }
    return PicMetrics(
        sic=None if isinstance(sic, ComputePicMetricError) else sic,
        aic=None if isinstance(aic, ComputePicMetricError) else aic,
        skipped=skipped,
    )
