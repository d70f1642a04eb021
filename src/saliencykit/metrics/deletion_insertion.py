"""Deletion and insertion: the model's score as the most salient pixels are removed, or revealed.

Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for Explanation of
Black-box Models", BMVC 2018, https://arxiv.org/abs/1806.07421 (section 4.1).

*Deletion* removes the pixels of an image in order of decreasing saliency
(replacing them with a baseline, black by default) and records the model's
score after each step: a good saliency map makes the score fall fast, a small
area under the curve. *Insertion* starts from a blurred copy of the image and
puts the original pixels back in the same order: a good map makes the score
rise fast, a large area under the curve. The x axis is the fraction of pixels
deleted (inserted), from 0 to 1 in ``n_steps`` equal steps; the y axis is the
model's raw score (for a classifier, the softmax probability of the explained
class, as in the paper: :func:`saliencykit.metrics.make_sic_pred_func` builds
such a ``pred_func``).

Every step's image is built from one ranking of the pixels (ties broken in
raster order) with NumPy, one call's worth of images at a time, and the model
sees them in calls of ``batch_size`` images. Curves of many images (the same
``n_steps``) are averaged with :func:`aggregate_deletion_insertion_results`
and drawn with :func:`saliencykit.metrics.plot_deletion_insertion_curves`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage

from ..core.base import (
    DEFAULT_BATCH_SIZE,
    OUTPUT_LAYER_VALUES,
    CallModelFunction,
    call_model,
    check_int,
    check_number,
    scalar_outputs,
)
from .pic import _predict, _trapezoid

__all__ = [
    "DeletionInsertionResult",
    "aggregate_deletion_insertion_results",
    "blurred_baseline",
    "compute_deletion_metric",
    "compute_insertion_metric",
    "make_output_pred_func",
]

PredFunc = Callable[[np.ndarray], np.ndarray | Sequence[float]]

#: The blur of the paper's insertion baseline: an 11 x 11 Gaussian kernel of sigma 5.
DEFAULT_BLUR_SIGMA = 5.0
_BLUR_TRUNCATE = 1.0  # radius = sigma * truncate = 5 pixels: the paper's 11-tap kernel


class DeletionInsertionResult(NamedTuple):
    """The deletion or insertion curve of one image (or the aggregate of many).

    Attributes:
      curve_x: the fraction of pixels deleted (inserted) at each point,
        ``k / n_steps`` for k = 0..n_steps, shape ``(n_steps + 1,)``.
      curve_y: the model's score at each point, same shape. For deletion the
        first point is the original image and the last the baseline; for
        insertion the other way round.
      auc: the area under the curve (trapezoid rule over x in [0, 1]); lower
        is better for deletion, higher for insertion.
      kind: ``"deletion"`` or ``"insertion"``.
    """

    curve_x: np.ndarray
    curve_y: np.ndarray
    auc: float
    kind: str


def make_output_pred_func(
    call_model_function: CallModelFunction, call_model_args: Any = None
) -> Callable[[np.ndarray], np.ndarray]:
    """A ``pred_func`` from a ``call_model_function``: its ``OUTPUT_LAYER_VALUES``, one per image.

    So that the model wrapped once (an adapter of :mod:`saliencykit.torch`,
    :mod:`saliencykit.keras` or :mod:`saliencykit.jax`) serves the saliency
    methods and these metrics. The adapters' output is the target's logit;
    for the paper's softmax probability give the adapter a callable target,
    e.g. ``target=lambda logits: logits.softmax(1)[:, 285]`` (PyTorch).

    Args:
      call_model_function: answers ``OUTPUT_LAYER_VALUES`` (one scalar per input).
      call_model_args: passed to every call unchanged.

    Returns:
      ``pred_func(images [B, ...]) -> [B]`` float64 scores, one model call per ``pred_func`` call.

    Raises:
      TypeError: ``call_model_function`` is not callable (at once); in calls,
        the answer errors of :func:`saliencykit.core.call_model`.
    """
    if not callable(call_model_function):
        raise TypeError(f"call_model_function must be callable, got {type(call_model_function).__name__}")

    def pred_func(images: np.ndarray) -> np.ndarray:
        answer = call_model(call_model_function, np.asarray(images), call_model_args, [OUTPUT_LAYER_VALUES])
        return scalar_outputs(answer[OUTPUT_LAYER_VALUES])

    return pred_func


def _check_image(img: Any) -> np.ndarray:
    image = np.asarray(img)
    if image.dtype.kind not in "biuf":
        raise TypeError(f"img must be a real numeric image, got dtype {image.dtype}")
    if image.ndim not in (2, 3) or 0 in image.shape:
        raise ValueError(f"img must be a non-empty [H, W] or [H, W, C] image, got shape {image.shape}")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ValueError("img must be finite, but it holds NaN or inf values")
    return image


def _check_saliency_map(saliency_map: Any, image_shape: tuple[int, ...]) -> np.ndarray:
    saliency = np.asarray(saliency_map)
    if saliency.shape != image_shape[:2]:
        raise ValueError(
            f"saliency_map must have shape [H, W] = {image_shape[:2]}, got {saliency.shape}"
            " (reduce the channel axis first, e.g. np.abs(mask).sum(axis=-1))"
        )
    if saliency.dtype.kind not in "biuf":
        raise TypeError(f"saliency_map must be a real numeric array, got dtype {saliency.dtype}")
    if not np.isfinite(saliency).all():
        raise ValueError("saliency_map must be finite, but it holds NaN or inf values")
    return saliency.astype(np.float64)


def _as_image_dtype(name: str, values: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """``values`` in the image's dtype; rounded for an integer image, refused if out of its range."""
    if dtype.kind in "iu":
        limits = np.iinfo(dtype)
        values = np.round(values)
        if values.min() < limits.min or values.max() > limits.max:
            raise ValueError(
                f"{name} must fit the image's dtype {dtype} ([{limits.min}, {limits.max}]), "
                f"got values in [{values.min()}, {values.max()}]"
            )
    elif dtype.kind == "b":
        values = values != 0
    return values.astype(dtype)


def _baseline_image(baseline: Any, image: np.ndarray) -> np.ndarray:
    values = np.asarray(baseline)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"baseline must be a real number or array, got dtype {values.dtype}")
    try:
        values = np.broadcast_to(values, image.shape)
    except ValueError:
        raise ValueError(
            f"baseline must be a number or an array broadcastable to img's shape {image.shape} "
            f"(e.g. one value per channel), got shape {values.shape}"
        ) from None
    if not np.isfinite(values).all():
        raise ValueError("baseline must be finite, but it holds NaN or inf values")
    return _as_image_dtype("baseline", values.astype(np.float64), image.dtype)


def blurred_baseline(img: np.ndarray, sigma: float = DEFAULT_BLUR_SIGMA) -> np.ndarray:
    """The insertion metric's default start: ``img`` blurred over its two spatial axes.

    A Gaussian of ``sigma`` truncated at ``sigma`` pixels (sigma 5: the paper's
    11 x 11 kernel), no blur across channels, edges reflected; in ``img``'s
    dtype (rounded for integer images).

    Raises:
      TypeError, ValueError: a bad ``img`` or a ``sigma`` that is not > 0.
    """
    image = _check_image(img)
    sigma = check_number("blur_sigma", sigma, minimum=0.0, minimum_inclusive=False)
    sigmas = (sigma, sigma, 0.0)[: image.ndim]
    blurred = ndimage.gaussian_filter(image.astype(np.float64), sigmas, truncate=_BLUR_TRUNCATE)
    return _as_image_dtype("the blurred image", blurred, image.dtype)


def _pixel_ranks(saliency: np.ndarray) -> np.ndarray:
    """``[H, W]``: each pixel's position when sorted by decreasing saliency (ties in raster order)."""
    order = np.argsort(-saliency.ravel(), kind="stable")
    ranks = np.empty(order.size, dtype=np.int64)
    ranks[order] = np.arange(order.size)
    return ranks.reshape(saliency.shape)


def _curve(
    kind: str,
    start: np.ndarray,
    finish: np.ndarray,
    saliency_map: Any,
    pred_func: PredFunc,
    n_steps: int,
    batch_size: int,
) -> DeletionInsertionResult:
    """Moves from ``start`` to ``finish`` pixel by pixel in order of saliency, scoring each step."""
    saliency = _check_saliency_map(saliency_map, start.shape)
    if not callable(pred_func):
        raise TypeError(f"pred_func must be callable, got {type(pred_func).__name__}")
    n_steps = check_int("n_steps", n_steps)
    batch_size = check_int("batch_size", batch_size)
    ranks = _pixel_ranks(saliency)
    n_pixels = ranks.size
    counts = np.arange(n_steps + 1, dtype=np.int64) * n_pixels // n_steps  # pixels changed per step
    if start.ndim == 3:
        ranks = ranks[..., None]

    def images(first: int, stop: int) -> np.ndarray:
        changed = ranks[None] < counts[first:stop].reshape(-1, *([1] * ranks.ndim))
        return np.where(changed, finish[None], start[None])

    predictions = np.concatenate(
        [
            _predict(pred_func, images(first, min(first + batch_size, n_steps + 1)))
            for first in range(0, n_steps + 1, batch_size)
        ]
    )
    curve_x = np.arange(n_steps + 1, dtype=np.float64) / n_steps
    return DeletionInsertionResult(curve_x, predictions, _trapezoid(predictions, curve_x), kind)


def compute_deletion_metric(
    img: np.ndarray,
    saliency_map: np.ndarray,
    pred_func: PredFunc,
    *,
    n_steps: int = 100,
    baseline: float | np.ndarray = 0.0,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> DeletionInsertionResult:
    """The deletion curve of one image: the score as the most salient pixels are removed.

    Petsiuk et al. 2018 (RISE, arXiv 1806.07421). Step k (k = 0..n_steps)
    replaces the ``k * H * W // n_steps`` most salient pixels (all channels)
    with ``baseline``; the model's score on each image gives the curve, and
    its area (trapezoid rule, x from 0 to 1) the metric: lower is better
    (the map found the pixels the score depends on).

    Args:
      img: the image, ``[H, W, C]`` or ``[H, W]``, any real dtype (float
        images as the model's ``pred_func`` takes them, or ``uint8``); the
        images ``pred_func`` gets have this dtype.
      saliency_map: ``[H, W]`` saliency, higher is more important. Reduce the
        channels (and take ``abs`` if wanted) first. Ties are removed in
        raster order.
      pred_func: called with a batch ``[B, H, W(, C)]`` of ``img``'s dtype,
        returns B finite numbers (e.g. the softmax probability of the
        explained class: :func:`saliencykit.metrics.make_sic_pred_func`, or
        a ``call_model_function``'s output: :func:`make_output_pred_func`).
      n_steps: the number of deletion steps, >= 1; the curve has
        ``n_steps + 1`` points. The paper removes 224 pixels per step of a
        224 x 224 image (``n_steps=224``).
      baseline: what a removed pixel becomes: a number (default 0, black for
        an image in [0, 255]; the paper's zero of a normalised image is the
        mean colour: pass the mean), one value per channel, or an image of
        ``img``'s shape (e.g. :func:`blurred_baseline`). Cast to ``img``'s
        dtype (rounded for integer images).
      batch_size: the most images per ``pred_func`` call, >= 1.

    Returns:
      A :class:`DeletionInsertionResult` with ``kind="deletion"``.

    Cost:
      ``n_steps + 1`` images scored, in ``ceil((n_steps + 1) / batch_size)``
      ``pred_func`` calls.

    Raises:
      TypeError, ValueError: a non-numeric or NaN image or map, a map whose
        shape is not ``img``'s ``[H, W]``, a baseline that does not broadcast
        to ``img`` or does not fit its dtype, bad ``n_steps`` / ``batch_size``,
        or a ``pred_func`` that does not return one finite number per image.
    """
    image = _check_image(img)
    return _curve(
        "deletion", image, _baseline_image(baseline, image), saliency_map, pred_func, n_steps, batch_size
    )


def compute_insertion_metric(
    img: np.ndarray,
    saliency_map: np.ndarray,
    pred_func: PredFunc,
    *,
    n_steps: int = 100,
    baseline: float | np.ndarray | None = None,
    blur_sigma: float = DEFAULT_BLUR_SIGMA,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> DeletionInsertionResult:
    """The insertion curve of one image: the score as the most salient pixels are revealed.

    Petsiuk et al. 2018 (RISE, arXiv 1806.07421). Step k (k = 0..n_steps)
    starts from a blurred copy of the image and puts back the
    ``k * H * W // n_steps`` most salient original pixels; the area under the
    curve of the model's scores is the metric: higher is better.

    Args:
      img, saliency_map, pred_func, n_steps, batch_size: as for
        :func:`compute_deletion_metric`.
      baseline: the image the pixels are inserted into; ``None`` (default)
        blurs ``img`` (:func:`blurred_baseline` with ``blur_sigma``, the
        paper's choice). A number, one value per channel or an image of
        ``img``'s shape otherwise.
      blur_sigma: the blur's Gaussian sigma in pixels (> 0) when ``baseline``
        is ``None``; 5 as in the paper.

    Returns:
      A :class:`DeletionInsertionResult` with ``kind="insertion"``.

    Cost:
      ``n_steps + 1`` images scored, in ``ceil((n_steps + 1) / batch_size)``
      ``pred_func`` calls.

    Raises:
      TypeError, ValueError: as for :func:`compute_deletion_metric`, and a
        ``blur_sigma`` that is not > 0.
    """
    image = _check_image(img)
    start = blurred_baseline(image, blur_sigma) if baseline is None else _baseline_image(baseline, image)
    return _curve("insertion", start, image, saliency_map, pred_func, n_steps, batch_size)


def aggregate_deletion_insertion_results(
    results: Sequence[DeletionInsertionResult], method: str = "mean"
) -> DeletionInsertionResult:
    """Averages the deletion (or insertion) curves of many images into one.

    Args:
      results: the per-image results, all of one kind and one ``n_steps``.
      method: ``"mean"`` (the paper reports mean AUCs) or ``"median"``, point by point.

    Returns:
      A :class:`DeletionInsertionResult` with the aggregated curve, its AUC and the kind.

    Raises:
      ValueError: no results, results of different kinds or numbers of
        points, or an unknown ``method``.
    """
    if method not in ("mean", "median"):
        raise ValueError(f"method must be 'mean' or 'median', got {method!r}")
    results = list(results)
    if not results:
        raise ValueError("results must hold at least one DeletionInsertionResult, got none")
    first = results[0]
    curve_x = np.asarray(first.curve_x, dtype=np.float64)
    for index, result in enumerate(results):
        if result.kind != first.kind:
            raise ValueError(
                f"results must all be of one kind: result 0 is {first.kind!r}, result {index} is "
                f"{result.kind!r}"
            )
        same_x = np.array_equal(np.asarray(result.curve_x, dtype=np.float64), curve_x)
        if not same_x or np.shape(result.curve_y) != curve_x.shape:
            raise ValueError(
                f"results must share their x points: result {index} has {np.size(result.curve_x)} "
                f"points, result 0 has {curve_x.size}; compute every curve with the same n_steps"
            )
    curves = np.asarray([result.curve_y for result in results], dtype=np.float64)
    curve_y = curves.mean(axis=0) if method == "mean" else np.median(curves, axis=0)
    return DeletionInsertionResult(curve_x, curve_y, _trapezoid(curve_y, curve_x), first.kind)
