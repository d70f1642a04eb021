"""Performance Information Curves (PIC): the SIC and AIC metrics of the XRAI paper.

Kapishnikov, Bolukbasi, Viegas, Terry, "XRAI: Better Attributions Through
Regions", ICCV 2019, https://arxiv.org/abs/1906.02825.

A saliency map is scored by revealing its most salient pixels of an image in
steps (every other pixel is filled in by linear interpolation, a "blurred"
image), and plotting how fast the model's prediction comes back against how
much information the revealed image holds (its lossless WebP size). With a
softmax-probability ``pred_func`` the curve is the Softmax Information Curve
(SIC); with a correct-class 0/1 ``pred_func`` it is the Accuracy Information
Curve (AIC). A better saliency map gives a larger area under the curve.

Usage (one saliency method over a data set):

1. per image, ``random_mask = generate_random_mask(h, w, seed=...)`` (the same
   mask for every method on that image, a new one for each image);
2. ``result = compute_pic_metric(img, saliency_map, random_mask, pred_func,
   saliency_thresholds)``; skip the image on :class:`ComputePicMetricError`;
3. ``aggregate_individual_pic_results(results)`` for the data-set curve.

Same API and the same numbers as ``saliency.metrics`` (PAIR's *saliency* 0.2.1),
several times faster (``benchmarks/bench_pic.py``): each blurred image is
triangulated once for all of its channels instead of once per channel, the
triangulation's barycentric transforms are computed vectorised instead of by
three LAPACK calls per triangle (:mod:`._barycentric`, bit-identical), the
blurred images and their WebP sizes are computed in threads (Qhull and the WebP
encoder release the GIL), as many at once as memory allows, and the model can see
the images in batches (``batch_size``; the default, like the reference, is one
image per ``pred_func`` call). SIC and AIC together:
:func:`saliencykit.metrics.sic_aic.compute_pic_metrics` (one set of blurred
images and model calls for both).

The module's parts: the random mask, the blurred images, their memory
estimate and errors are in :mod:`._blur`, the entropy (WebP size) in
:mod:`._entropy`, the threads in :mod:`._parallel`; this module holds the
curve, its area and the aggregation over images, and re-exports every public
name of the other two (import them from here or from :mod:`saliencykit.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..core.base import check_int, check_number
from ._blur import _INTERPOLATORS as _INTERPOLATORS  # the interpolation methods, read by tests
from ._blur import (
    PicInterpolationError,
    PicMemoryError,
    _blur_memory_estimate,
    _check_image,
    _check_pixel_mask,
    _gib,
    create_blurred_image,
    generate_random_mask,
)
from ._entropy import ImageDtypeError, _check_webp_size, estimate_image_entropy
from ._parallel import default_memory_limit, default_n_jobs, plan_n_jobs, run_jobs, total_memory

__all__ = [
    "DEFAULT_SALIENCY_THRESHOLDS",
    "AggregateMetricResult",
    "ComputePicMetricError",
    "ImageDtypeError",
    "PicInterpolationError",
    "PicMemoryError",
    "PicMetricResult",
    "aggregate_individual_pic_results",
    "compute_pic_metric",
    "create_blurred_image",
    "estimate_image_entropy",
    "generate_random_mask",
]

#: The saliency thresholds of the reference's notebook (fractions of the most salient pixels revealed).
DEFAULT_SALIENCY_THRESHOLDS: tuple[float, ...] = (
    0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.10, 0.13, 0.21, 0.34, 0.5, 0.75,
)  # fmt: skip

PredFunc = Callable[[np.ndarray], np.ndarray | Sequence[float]]


class ComputePicMetricError(Exception):
    """The PIC metric cannot be computed on this image: skip it.

    Raised by :func:`compute_pic_metric` when the model's prediction on the
    original image is below ``min_pred_value``, or when the fully blurred image
    is not lower than the original in entropy or in prediction.
    """


class PicMetricResult(NamedTuple):
    """The PIC curve of one image and saliency map (:func:`compute_pic_metric`).

    Attributes:
      curve_x: the x (normalised entropy) of the curve's points, shape
        ``(num_data_points + 1,)``, from 0.0 to 1.0.
      curve_y: the y (normalised prediction) of the curve's points, same shape.
      blurred_images: the fully blurred image first, then one image per saliency
        threshold, then the original image.
      predictions: the model's prediction on each image of ``blurred_images``.
      thresholds: ``[0.0] + saliency_thresholds + [1.0]``, one per image.
      auc: the area under the curve (trapezoid rule).
    """

    curve_x: np.ndarray | Sequence[float]
    curve_y: np.ndarray | Sequence[float]
    blurred_images: Sequence[np.ndarray]
    predictions: Sequence[float]
    thresholds: Sequence[float]
    auc: float


class AggregateMetricResult(NamedTuple):
    """The data-set curve of :func:`aggregate_individual_pic_results`.

    Attributes:
      curve_x: the x of the curve's points (shared by every image's curve).
      curve_y: the mean or median over images of their curves' y.
      auc: the area under the aggregated curve (trapezoid rule).
    """

    curve_x: np.ndarray | Sequence[float]
    curve_y: np.ndarray | Sequence[float]
    auc: float


def _check_thresholds(saliency_thresholds: Any) -> np.ndarray:
    thresholds = np.asarray(saliency_thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or thresholds.size == 0:
        raise ValueError(
            f"saliency_thresholds must be a non-empty 1-D sequence, got shape {thresholds.shape}"
        )
    if not np.all((thresholds > 0) & (thresholds < 1)):
        raise ValueError(f"saliency_thresholds must lie in (0, 1), got {thresholds.tolist()}")
    if np.any(np.diff(thresholds) <= 0):
        raise ValueError(f"saliency_thresholds must be strictly increasing, got {thresholds.tolist()}")
    return thresholds


def _checked_predictions(values: Any, batch: int, source: str = "pred_func") -> np.ndarray:
    """``values`` as a ``[batch]`` array of finite reals; ValueError/TypeError naming ``source`` otherwise."""
    predictions = np.asarray(values)
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions[:, 0]
    if predictions.shape != (batch,):
        raise ValueError(
            f"{source} must return one prediction per image: expected shape ({batch},) "
            f"for a batch of {batch}, got shape {predictions.shape}"
        )
    if predictions.dtype.kind not in "biuf":
        raise TypeError(f"{source} must return real numbers, got dtype {predictions.dtype}")
    if predictions.dtype.kind in "biu":
        predictions = predictions.astype(np.float64)
    if not np.isfinite(predictions).all():
        raise ValueError(f"{source} returned NaN or inf: {predictions.tolist()}")
    return predictions


def _predict(pred_func: PredFunc, images: np.ndarray) -> np.ndarray:
    """Calls ``pred_func`` on a batch and checks that it gave one finite number per image."""
    return _checked_predictions(pred_func(images), len(images))


#: Several curves' predictions from one model call: a batch -> one checked ``[B]`` array per curve.
_MultiPredict = Callable[[np.ndarray], Sequence[np.ndarray]]


def _predict_in_batches(
    predict: _MultiPredict, images: Sequence[np.ndarray], batch_size: int
) -> list[np.ndarray]:
    """Every curve's predictions on ``images``, at most ``batch_size`` images per call of ``predict``."""
    batches = [
        predict(np.stack(images[start : start + batch_size])) for start in range(0, len(images), batch_size)
    ]
    return [np.concatenate(column) for column in zip(*batches, strict=True)]


def _interpolate_curve(x_points: np.ndarray, y_points: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation exactly as ``scipy.interpolate.interp1d`` (the reference) does it.

    interp1d sorts the points with a stable sort and calls ``np.interp``; points
    that share an x (a threshold whose normalised entropy is clipped to 0 or 1,
    next to the (0, 0) and (1, 1) anchors) resolve the same way.
    """
    order = np.argsort(x_points, kind="mergesort")
    return np.interp(x_new, x_points[order], y_points[order])


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    # np.trapz is gone from NumPy 2.x (the reference crashes there); same formula.
    return float(np.add.reduce(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _blur_and_measure(img: np.ndarray, pixel_mask: np.ndarray) -> tuple[np.ndarray, int]:
    blurred_image = create_blurred_image(img, pixel_mask)
    return blurred_image, estimate_image_entropy(blurred_image)


def _check_memory(image_shape: tuple[int, ...], estimate: int, n_kept: int) -> None:
    """Refuses, before any work, a blur that needs more memory than the machine has."""
    machine = total_memory()
    if machine is not None and estimate > machine:
        size = "x".join(str(side) for side in image_shape)
        raise PicMemoryError(
            f"img is too large for PIC on this machine: blurring the {size} image at the largest"
            f" saliency threshold ({n_kept} pixels kept) needs about {_gib(estimate)}, more than its"
            f" {_gib(machine)} of memory; resize the image (memory grows with the number of pixels)"
            " or use a smaller largest threshold"
        )


def compute_pic_metric(
    img: np.ndarray,
    saliency_map: np.ndarray,
    random_mask: np.ndarray,
    pred_func: PredFunc,
    saliency_thresholds: Sequence[float],
    min_pred_value: float = 0.8,
    keep_monotonous: bool = True,
    num_data_points: int = 1000,
    *,
    batch_size: int | None = 1,
    n_jobs: int | None = None,
    memory_limit: int | None = None,
) -> PicMetricResult:
    """Computes the Performance Information Curve (SIC or AIC) of one image and saliency map.

    For each threshold ``t`` the pixels whose saliency is at least the
    ``1 - t`` quantile, plus ``random_mask``, are kept and the rest
    interpolated (:func:`create_blurred_image`). Each image's entropy
    (:func:`estimate_image_entropy`) and prediction are normalised between the
    fully blurred image's (0) and the original's (1), clipped to [0, 1]; the
    (entropy, prediction) points, plus (0, 0) and (1, 1), are interpolated
    linearly at ``num_data_points`` evenly spaced x in [0, 1) and x = 1.

    The result equals the reference's (``saliency.metrics.compute_pic_metric``)
    for the same inputs, and by default ``pred_func`` is called exactly as the
    reference calls it: on one image at a time, ``image[np.newaxis, ...]``
    (shape ``[1, H, W, C]``), in the same order (the original image, the fully
    blurred one, then one per threshold). It is computed several times faster:
    one triangulation per blurred image for all channels, its barycentric
    transforms vectorised, and the blurred images and their WebP sizes computed
    in ``n_jobs`` threads, as many at once as ``memory_limit`` allows. Opt in to
    batches with ``batch_size`` (the original and the fully blurred image are
    still sent alone, so that an image below ``min_pred_value`` costs one
    prediction and nothing else). Predictions of a real model can differ in the
    last bits between batch sizes. For SIC and AIC together, see
    :func:`saliencykit.metrics.sic_aic.compute_pic_metrics`.

    Everything that can be checked is checked before any work: shapes and
    dtypes, and the image's size (WebP encodes at most 16383 pixels per side).
    One blur's memory grows with the number of pixels it keeps (about 2 kB per
    kept pixel: 6.7 GB for a 2048 x 2048 image at the reference notebook's
    largest threshold), so fewer blurs run at once on large images.

    Args:
      img: the image, ``uint8``, ``[H, W, C]`` (C = 1, 3 or 4) or ``[H, W]``.
      saliency_map: ``[H, W]`` saliency; higher means more important. Reduce
        channels (and take ``abs`` if wanted) before calling. A boolean map is
        taken as 0/1 (FIX: the reference's ``np.quantile`` raises NumPy's
        ``TypeError`` on booleans).
      random_mask: ``[H, W]`` boolean mask of pixels always kept
        (:func:`generate_random_mask`).
      pred_func: called with a ``uint8`` batch ``[B, H, W, C]`` (or
        ``[B, H, W]``), returns B numbers: the softmax probability of the class
        for SIC, 1.0 if the class is predicted and 0.0 otherwise for AIC
        (see :func:`saliencykit.metrics.make_sic_pred_func`). B is 1 unless
        ``batch_size`` says otherwise.
      saliency_thresholds: fractions of the most salient pixels to reveal,
        strictly increasing in (0, 1), e.g. :data:`DEFAULT_SALIENCY_THRESHOLDS`.
      min_pred_value: images whose prediction is below this are skipped
        (:class:`ComputePicMetricError`).
      keep_monotonous: make the prediction part of the curve non-decreasing
        (the paper's choice).
      num_data_points: the number of curve points before x = 1.0, >= 1.
      batch_size: the most images per ``pred_func`` call, default 1 (the
        reference's one image per call, for ``pred_func``s written for it);
        ``None`` puts all the thresholds' images in one call (fastest for a
        model that takes batches).
      n_jobs: threads computing blurred images and WebP sizes; ``None`` uses
        every core available, 1 computes them in the calling thread. The
        result is the same. Fewer run at once when memory is short.
      memory_limit: the most memory in bytes that the blurs running at once
        may take, by estimate (``n_jobs`` is reduced to fit it; one blur always
        runs, even if it alone exceeds it). ``None``: half the memory available
        when called (2 GiB where it cannot be read).

    Returns:
      A :class:`PicMetricResult`.

    Raises:
      ComputePicMetricError: the prediction on ``img`` is below
        ``min_pred_value``, or the fully blurred image is not lower than
        ``img`` in entropy or in prediction. Skip the image.
      TypeError, ValueError: for an ``img`` that is not ``uint8`` or is wider
        or higher than 16383 pixels, shapes that do not match, NaN in
        ``saliency_map``, thresholds out of order or range, or a ``pred_func``
        that does not return one finite number per image.
      PicMemoryError: before any work, when one blur is estimated to need more
        memory than the machine has (RAM and swap, or the container's limit),
        or when memory runs out.
      PicInterpolationError: Qhull failed to triangulate a blurred image.
    """
    arguments = _checked_arguments(
        img, saliency_map, random_mask, saliency_thresholds, num_data_points, batch_size, n_jobs, memory_limit
    )
    if not callable(pred_func):
        raise TypeError(f"pred_func must be callable, got {type(pred_func).__name__}")
    min_pred_value = check_number("min_pred_value", min_pred_value)
    (result,) = _pic_curves(
        arguments, lambda images: [_predict(pred_func, images)], [min_pred_value], [""], keep_monotonous
    )
    if isinstance(result, ComputePicMetricError):  # never: one curve's error is raised at once
        raise result
    return result


class _Arguments(NamedTuple):
    """The checked arguments of a PIC computation (:func:`_checked_arguments`)."""

    img: np.ndarray
    saliency_map: np.ndarray
    random_mask: np.ndarray
    thresholds: np.ndarray
    num_data_points: int
    batch_size: int
    n_jobs: int
    memory_limit: int


def _checked_arguments(
    img: Any,
    saliency_map: Any,
    random_mask: Any,
    saliency_thresholds: Any,
    num_data_points: Any,
    batch_size: Any,
    n_jobs: Any,
    memory_limit: Any,
) -> _Arguments:
    """The arguments of :func:`compute_pic_metric` checked (see its errors), with the defaults resolved."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ImageDtypeError(
            f"img must be a uint8 image, got dtype {img.dtype}; convert it (e.g. np.uint8(x * 255))"
        )
    img = _check_image("img", img)
    if img.ndim == 3 and img.shape[2] not in (1, 3, 4):
        raise ValueError(f"img must have 1, 3 or 4 channels, got shape {img.shape}")
    _check_webp_size("img", img.shape)
    saliency_map = np.asarray(saliency_map)
    if saliency_map.shape != img.shape[:2]:
        raise ValueError(
            f"saliency_map must have shape [H, W] = {img.shape[:2]}, got {saliency_map.shape}"
            " (reduce the channel axis first, e.g. np.abs(mask).sum(axis=-1))"
        )
    if saliency_map.dtype.kind not in "biuf":
        raise TypeError(f"saliency_map must be a real numeric array, got dtype {saliency_map.dtype}")
    if saliency_map.dtype == bool:
        saliency_map = saliency_map.astype(np.float64)
    if not np.isfinite(saliency_map).all():
        raise ValueError("saliency_map must be finite, but it holds NaN or inf values")
    random_mask = _check_pixel_mask("random_mask", random_mask, img.shape)
    thresholds = _check_thresholds(saliency_thresholds)
    return _Arguments(
        img,
        saliency_map,
        random_mask,
        thresholds,
        check_int("num_data_points", num_data_points),
        len(thresholds) if batch_size is None else check_int("batch_size", batch_size),
        default_n_jobs() if n_jobs is None else check_int("n_jobs", n_jobs),
        default_memory_limit() if memory_limit is None else check_int("memory_limit", memory_limit),
    )


def _skip(errors: dict[int, str], labels: Sequence[str]) -> ComputePicMetricError:
    """One error for curves that all skip the image: the message as it is for one curve, labelled for more."""
    if len(labels) == 1:
        return ComputePicMetricError(errors[0])
    return ComputePicMetricError("; ".join(f"{labels[index]}: {errors[index]}" for index in sorted(errors)))


def _pic_curves(
    arguments: _Arguments,
    predict: _MultiPredict,
    min_pred_values: Sequence[float],
    labels: Sequence[str],
    keep_monotonous: bool,
) -> list[PicMetricResult | ComputePicMetricError]:
    """The PIC curves of one image for every column ``predict`` returns, from one set of blurred images.

    The blurred images and their entropies are computed once; each model call
    gives every curve its prediction (``predict`` returns one checked ``[B]``
    array per curve). A curve that must skip the image gets its
    :class:`ComputePicMetricError` in the list; when every curve must, that error
    is raised, as soon as it is known (one curve: exactly as the reference).
    """
    img, saliency_map, random_mask, thresholds, num_data_points, batch_size, n_jobs, memory_limit = arguments
    # All quantiles at once: the same values as one np.quantile call per threshold.
    quantiles = np.quantile(saliency_map, 1 - thresholds)
    pixel_masks = [(saliency_map >= quantile) | random_mask for quantile in quantiles]
    height, width = img.shape[:2]
    channels = img.shape[2] if img.ndim == 3 else 1
    memory = [_blur_memory_estimate(height, width, channels, int(mask.sum())) for mask in pixel_masks]
    _check_memory(img.shape, max(memory), int(pixel_masks[-1].sum()))

    errors: dict[int, str] = {}
    original_preds = [column[0] for column in predict(img[np.newaxis])]
    for index, (original_pred, min_pred_value) in enumerate(
        zip(original_preds, min_pred_values, strict=True)
    ):
        if original_pred < min_pred_value:
            errors[index] = (
                "The model prediction score on the original image is lower than `min_pred_value`. Skip this"
                " image or decrease the value of `min_pred_value` argument. min_pred_value ="
                f" {min_pred_value}, the image prediction = {original_pred}."
            )
    if len(errors) == len(labels):
        raise _skip(errors, labels)

    # The model is never called while the threads run: a framework's own threads
    # (PyTorch's OpenMP pool) slow down many times when they compete for the cores.
    first_memory = [
        _blur_memory_estimate(height, width, channels, 0),  # the WebP size alone
        _blur_memory_estimate(height, width, channels, int(random_mask.sum())),
    ]
    (original_entropy, (fully_blurred_image, fully_blurred_entropy)) = run_jobs(
        [(estimate_image_entropy, (img,)), (_blur_and_measure, (img, random_mask))],
        plan_n_jobs(first_memory, n_jobs, memory_limit),
    )
    fully_blurred_preds = [column[0] for column in predict(fully_blurred_image[np.newaxis])]
    if fully_blurred_entropy >= original_entropy:
        raise ComputePicMetricError(
            "The entropy in the completely blurred image is not lower than the entropy in the"
            " original image. Catch the error and exclude this image from evaluation. Blurred"
            f" entropy: {fully_blurred_entropy}, original entropy {original_entropy}"
        )
    for index, (blurred_pred, original_pred) in enumerate(
        zip(fully_blurred_preds, original_preds, strict=True)
    ):
        if index not in errors and blurred_pred >= original_pred:
            errors[index] = (
                "The model prediction score on the completely blurred image is not lower than the"
                " score on the original image. Catch the error and exclude this image from the"
                f" evaluation. Blurred score: {blurred_pred}, original score {original_pred}"
            )
    if len(errors) == len(labels):
        raise _skip(errors, labels)
    # The largest masks take longest to triangulate: start them first.
    jobs = [(_blur_and_measure, (img, pixel_mask)) for pixel_mask in reversed(pixel_masks)]
    n_threads = plan_n_jobs(memory, n_jobs, memory_limit)
    blurred_images, entropies = zip(*reversed(run_jobs(jobs, n_threads)), strict=True)
    predictions = _predict_in_batches(predict, blurred_images, batch_size)

    normalized_entropy = np.clip(
        (np.asarray(entropies) - fully_blurred_entropy) / (original_entropy - fully_blurred_entropy), 0.0, 1.0
    )
    entropy_points = np.concatenate([normalized_entropy, [0.0, 1.0]])
    curve_x = np.linspace(0.0, 1.0, num=num_data_points, endpoint=False)
    results: list[PicMetricResult | ComputePicMetricError] = []
    for index, column in enumerate(predictions):
        if index in errors:
            results.append(ComputePicMetricError(errors[index]))
            continue
        original_pred, fully_blurred_pred = original_preds[index], fully_blurred_preds[index]
        normalized_pred = np.clip(
            (column - fully_blurred_pred) / (original_pred - fully_blurred_pred), 0.0, 1.0
        )
        if keep_monotonous:
            normalized_pred = np.maximum.accumulate(normalized_pred)
        pred_points = np.concatenate([normalized_pred.astype(np.float64), [0.0, 1.0]])
        curve_y = np.append(_interpolate_curve(entropy_points, pred_points, curve_x), 1.0)
        results.append(
            PicMetricResult(
                curve_x=np.append(curve_x, 1.0),
                curve_y=curve_y,
                blurred_images=[fully_blurred_image, *blurred_images, img],
                predictions=[fully_blurred_pred, *column, original_pred],
                thresholds=[0.0, *thresholds.tolist(), 1.0],
                auc=_trapezoid(curve_y, np.append(curve_x, 1.0)),
            )
        )
    return results


def aggregate_individual_pic_results(
    compute_pic_metrics_results: Sequence[PicMetricResult], method: str = "median"
) -> AggregateMetricResult:
    """Aggregates the PIC curves of many images (one saliency method) into one curve.

    Args:
      compute_pic_metrics_results: the :class:`PicMetricResult` of each image
        (images that raised :class:`ComputePicMetricError` left out).
      method: ``'median'`` (the paper's choice for SIC) or ``'mean'`` (for AIC)
        over images, point by point.

    Returns:
      An :class:`AggregateMetricResult` with the aggregated curve and its AUC.

    Raises:
      ValueError: for an empty list, curves with different x points (FIX: the
        reference's check never fires), or an unknown ``method``.
    """
    if method not in ("mean", "median"):
        raise ValueError(f"method must be 'mean' or 'median', got {method!r}")
    results = list(compute_pic_metrics_results)
    if not results:
        raise ValueError("compute_pic_metrics_results must hold at least one PicMetricResult, got none")
    curve_x = np.asarray(results[0].curve_x, dtype=np.float64)
    for index, result in enumerate(results):
        x_points = np.asarray(result.curve_x, dtype=np.float64)
        if not np.array_equal(x_points, curve_x):
            raise ValueError(
                f"Individual results have different x-axis data points: result {index} has "
                f"{x_points.size} points, result 0 has {curve_x.size} (or their values differ); "
                "compute every curve with the same num_data_points"
            )
        if np.shape(result.curve_y) != curve_x.shape:
            raise ValueError(
                f"result {index} has {np.size(result.curve_y)} curve_y points "
                f"for {curve_x.size} curve_x points"
            )
    curve_ys = np.asarray([result.curve_y for result in results], dtype=np.float64)
    curve_y = np.mean(curve_ys, axis=0) if method == "mean" else np.median(curve_ys, axis=0)
    return AggregateMetricResult(curve_x=curve_x, curve_y=curve_y, auc=_trapezoid(curve_y, curve_x))
