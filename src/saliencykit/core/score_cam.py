"""Score-CAM (Wang, Wang, Du, Yang, Zhang, Ding, Mardziel and Hu 2020, "Score-CAM:
Score-Weighted Visual Explanations for Convolutional Neural Networks", CVPR
Workshops 2020, arXiv 1910.01279).

A class activation map without gradients. Every channel ``k`` of a
convolutional layer's activations ``A`` at the input ``x`` becomes a mask: it is
upsampled to the input's spatial size and min-max normalised to ``[0, 1]``,
``H_k = (up(A_k) - min) / (max - min)``. The model scores the input seen
through each mask, ``s_k = f(b + H_k * (x - b))`` (baseline ``b``, zeros by
default: ``x * H_k``), the weights are their softmax over the channels, and::

    map = ReLU(sum_k softmax(s)_k A[..., k])

(the paper's ``f(x * H_k) - f(b)`` gives the same softmax, so ``f(b)`` is not
evaluated). Faster Score-CAM keeps only the ``top_k`` channels whose
activation maps vary the most (spatial variance), the softmax and the sum
running over those. The masked inputs are built lazily, ``batch_size`` at a
time, so memory holds about ``batch_size`` inputs whatever the number of channels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .base import (
    CONVOLUTION_LAYER_VALUES,
    DEFAULT_BATCH_SIZE,
    OUTPUT_LAYER_VALUES,
    CallModelFunction,
    CoreSaliency,
    Request,
    Steps,
    as_float_array,
    baseline_like,
    check_evaluation_count,
    check_int,
    scalar_outputs,
)
from .grad_cam import _axis_resize_operator, cam_output

__all__ = ["ScoreCam", "upsampling_operator"]


@functools.lru_cache(maxsize=32)
def _align_corners_operator(input_length: int, output_length: int) -> np.ndarray:
    """The ``[output_length, input_length]`` matrix of linear interpolation with aligned corners.

    Output sample ``j`` sits at input position ``j (n_in - 1) / (n_out - 1)``
    (0 for one output sample): PyTorch's ``align_corners=True``
    (``nn.UpsamplingBilinear2d``), which pytorch-grad-cam's Score-CAM uses.
    """
    scale = (input_length - 1) / (output_length - 1) if output_length > 1 else 0.0
    positions = np.arange(output_length) * scale
    lower = np.minimum(np.floor(positions).astype(int), input_length - 1)
    upper = np.minimum(lower + 1, input_length - 1)
    fraction = positions - lower
    operator = np.zeros((output_length, input_length))
    rows = np.arange(output_length)
    np.add.at(operator, (rows, lower), 1.0 - fraction)
    np.add.at(operator, (rows, upper), fraction)
    operator.setflags(write=False)
    return operator


def upsampling_operator(input_length: int, output_length: int, align_corners: bool) -> np.ndarray:
    """The ``[output_length, input_length]`` matrix that resamples one axis linearly.

    Args:
      input_length, output_length: the axis' lengths (>= 1).
      align_corners: False: ``skimage.transform.resize``'s resampling, as
        :class:`~saliencykit.core.grad_cam.GradCam` resizes its map:
        half-pixel centres like PyTorch's ``align_corners=False`` (the Score-CAM
        authors' choice), except beyond the outer samples, where skimage
        mirrors the map and PyTorch repeats the edge value (the outermost half
        cell differs); anti-aliased when shrinking. True: the end samples
        aligned, PyTorch's ``align_corners=True`` (pytorch-grad-cam's choice).

    Returns:
      A read-only float64 matrix (cached).
    """
    if align_corners:
        return _align_corners_operator(input_length, output_length)
    return _axis_resize_operator(input_length, output_length)


def _normalised_masks(channels: np.ndarray, operators: list[np.ndarray]) -> np.ndarray:
    """Upsamples activation maps and scales each to ``[0, 1]``.

    Args:
      channels: ``[..layer spatial.., k]`` activations, float64.
      operators: one ``[out, in]`` matrix per spatial axis.

    Returns:
      ``[k, ..input spatial..]``: ``(up - min) / (max - min)`` per channel; zeros
      for a channel whose upsampled map is constant.
    """
    masks = np.moveaxis(channels, -1, 0)
    for axis, operator in enumerate(operators):
        masks = np.moveaxis(np.tensordot(operator, masks, axes=(1, axis + 1)), 0, axis + 1)
    axes = tuple(range(1, masks.ndim))
    low = masks.min(axis=axes, keepdims=True)
    spread = masks.max(axis=axes, keepdims=True) - low
    scale = np.divide(1.0, spread, out=np.zeros_like(spread), where=spread > 0)
    return (masks - low) * scale


class ScoreCam(CoreSaliency):
    """Score-CAM: channels weighted by the model's score on the input masked by each of them.

    ``call_model_function`` must answer ``CONVOLUTION_LAYER_VALUES`` (the layer's
    activations, channel-last ``[batch, ..spatial.., C]``, as for
    :class:`~saliencykit.core.grad_cam.GradCam`; no gradients are used) and
    ``OUTPUT_LAYER_VALUES`` (the explained score, one scalar per example). The
    layer may have one, two or three spatial axes: they match the input's
    leading axes, and the masks cover the remaining (channel) axes whole.

    Cost in model calls: one input for the activations, then one per channel
    used (``C``, or ``top_k``), in calls of ``batch_size``: ``1 + ceil(C /
    batch_size)`` calls, the input and the masked inputs asking for different
    keys. pytorch-grad-cam's ``ScoreCAM`` makes the same evaluations (in
    batches of 16); with :meth:`GetMaskBatch` the evaluations of several
    examples share calls.
    """

    expected_keys = [CONVOLUTION_LAYER_VALUES, OUTPUT_LAYER_VALUES]
    per_example_arguments = ("x_baseline",)

    def GetMask(  # noqa: N802 (the reference API's name)
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        should_resize: bool = True,
        three_dims: bool = True,
        batch_size: int = DEFAULT_BATCH_SIZE,
        top_k: int | None = None,
        x_baseline: np.ndarray | None = None,
        align_corners: bool = False,
    ) -> np.ndarray:
        """Returns the Score-CAM mask of ``x_value``.

        Args:
          x_value: the un-batched input, ``[..spatial.., C]`` (or without the
            channel axis) whose leading axes the layer's spatial axes
            correspond to (``[H, W, C]`` for a 2-D layer); integers become floats.
          call_model_function: answers ``CONVOLUTION_LAYER_VALUES`` (``[batch,
            ..spatial.., C_layer]``) and ``OUTPUT_LAYER_VALUES`` (``[batch]`` or
            ``[batch, 1]``); each call asks for one of them.
          call_model_args: passed to every call unchanged.
          should_resize, three_dims: as for
            :meth:`GradCam.GetMask <saliencykit.core.grad_cam.GradCam.GetMask>`:
            divide the map by its maximum and resize it to the input's spatial
            shape; stack three copies on a new last axis.
          batch_size: the most masked inputs in one call (>= 1); memory holds
            about that many.
          top_k: None uses every channel; an integer between 1 and the layer's
            channel count keeps the ``top_k`` channels of largest spatial
            variance of their activations (Faster Score-CAM): ``top_k`` masked
            inputs instead of ``C``.
          x_baseline: what the input shows where a mask is 0, ``x_value``'s
            shape; zeros if None (the paper's ``x * H_k``). With a
            ``call_model_function`` that normalises its input, zeros are black
            pixels; pass the normalisation's mean image for grey.
          align_corners: how activation maps are upsampled to the input: False
            (default) as :class:`~saliencykit.core.grad_cam.GradCam` resizes
            its map (``skimage.transform.resize``, half-pixel centres); True
            with aligned corners, pytorch-grad-cam's choice (see
            :func:`upsampling_operator`).

        Returns:
          A ``float32`` array: the map, of the layer's spatial shape (or the
          input's when ``should_resize``), with a last axis of 3 when
          ``three_dims``. Non-negative; at most 1 when ``should_resize``.

        Raises:
          TypeError, ValueError: bad arguments (``batch_size`` or ``top_k``
            not an integer >= 1, ``top_k`` above the layer's channel count, a
            baseline of another shape); a missing, misshapen or non-finite
            answer; a layer answer without a spatial axis, or with more spatial
            axes than ``x_value`` has axes; an answer with more than one score
            per example.
        """
        batch_size = check_int("batch_size", batch_size)
        steps = self._mask_steps(x_value, should_resize, three_dims, top_k, x_baseline, align_corners)
        return self._run_one(steps, x_value, call_model_function, call_model_args, batch_size)

    def _mask_steps(
        self,
        x_value: Any,
        should_resize: bool,
        three_dims: bool,
        top_k: int | None,
        x_baseline: Any,
        align_corners: bool,
    ) -> Steps:
        x_value = as_float_array("x_value", x_value)
        x_baseline = baseline_like("x_baseline", x_baseline, x_value)
        if top_k is not None:
            top_k = check_evaluation_count("top_k", top_k)
        answer = yield Request(1, lambda start, stop: x_value[None], [CONVOLUTION_LAYER_VALUES])
        layer_values = answer[CONVOLUTION_LAYER_VALUES][0].astype(np.float64)
        spatial_shape = self._check_layer(layer_values, x_value.shape)
        channels = self._channels(layer_values, top_k)
        operators = [
            upsampling_operator(n_in, n_out, align_corners)
            for n_in, n_out in zip(layer_values.shape[:-1], spatial_shape, strict=True)
        ]
        masked_inputs = self._masked_inputs(layer_values, channels, operators, x_value, x_baseline)
        scores = np.empty(len(channels), dtype=np.float64)

        def store(start: int, stop: int, output: dict[str, np.ndarray]) -> None:
            scores[start:stop] = scalar_outputs(output[OUTPUT_LAYER_VALUES])

        yield Request(len(channels), masked_inputs, [OUTPUT_LAYER_VALUES], store)
        weights = np.exp(scores - scores.max())
        weights /= weights.sum()
        cam = np.maximum(layer_values[..., channels] @ weights, 0.0)
        return cam_output(cam, x_value.shape, should_resize, three_dims)

    @staticmethod
    def _masked_inputs(
        layer_values: np.ndarray,
        channels: np.ndarray,
        operators: list[np.ndarray],
        x_value: np.ndarray,
        x_baseline: np.ndarray,
    ) -> Callable[[int, int], np.ndarray]:
        """``make_inputs(start, stop)``: ``b + H_k * (x - b)`` for the used channels ``start..stop-1``."""
        compute_dtype = np.result_type(x_value.dtype, np.float32)
        difference = x_value.astype(compute_dtype) - x_baseline.astype(compute_dtype)
        trailing = (None,) * (x_value.ndim - len(operators))

        def make_inputs(start: int, stop: int) -> np.ndarray:
            masks = _normalised_masks(layer_values[..., channels[start:stop]], operators)
            masks = masks.astype(difference.dtype, copy=False)[(...,) + trailing]
            return (x_baseline + masks * difference).astype(x_value.dtype, copy=False)

        return make_inputs

    @staticmethod
    def _check_layer(layer_values: np.ndarray, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input's spatial shape for this layer answer ``[..spatial.., C]``.

        Raises:
          ValueError: no spatial axis, or more spatial axes than the input has axes.
        """
        if layer_values.ndim < 2:
            raise ValueError(
                "CONVOLUTION_LAYER_VALUES must have at least one spatial axis and a channel "
                f"axis per example ([..spatial.., C], channel-last), got shape {layer_values.shape}"
            )
        n_spatial = layer_values.ndim - 1
        if n_spatial > len(x_shape):
            raise ValueError(
                f"the convolution layer has {n_spatial} spatial axes but x_value has shape "
                f"{tuple(x_shape)}: cannot upsample its activations to the input's spatial size"
            )
        return tuple(x_shape[:n_spatial])

    @staticmethod
    def _channels(layer_values: np.ndarray, top_k: int | None) -> np.ndarray:
        """The indices of the channels used, ascending: all, or the ``top_k`` of largest spatial variance.

        Raises:
          ValueError: ``top_k`` above the layer's channel count.
        """
        n_channels = layer_values.shape[-1]
        if top_k is None:
            return np.arange(n_channels)
        if top_k > n_channels:
            raise ValueError(
                f"top_k must be at most the layer's number of channels {n_channels} "
                f"(CONVOLUTION_LAYER_VALUES of shape {layer_values.shape} per example), got {top_k}"
            )
        variances = layer_values.reshape(-1, n_channels).var(axis=0)
        return np.sort(np.argsort(-variances, kind="stable")[:top_k])

    def n_model_inputs(
        self,
        x_shape: tuple[int, ...],
        *,
        top_k: int | None = None,
        layer_channels: int | None = None,
        **other: Any,
    ) -> int:
        """The input, then one masked input per channel used: ``1 + top_k``, or ``1 + layer_channels``.

        The layer's channel count is known only from the model's answer: pass
        it as ``layer_channels`` when ``top_k`` is None (with both, ``top_k``
        must not exceed it). ``**other``: :meth:`GetMask`'s other parameters,
        which do not change the count.

        Raises:
          TypeError, ValueError: a bad ``top_k`` or ``layer_channels``;
            neither given; ``top_k > layer_channels``.
        """
        if layer_channels is not None:
            layer_channels = check_evaluation_count("layer_channels", layer_channels)
        if top_k is not None:
            top_k = check_evaluation_count("top_k", top_k)
            if layer_channels is not None and top_k > layer_channels:
                raise ValueError(f"top_k must be at most layer_channels ({layer_channels}), got {top_k}")
            return 1 + top_k
        if layer_channels is None:
            raise ValueError(
                "ScoreCam's count of model inputs depends on the layer's number of channels: "
                "pass layer_channels=C (or top_k), got neither"
            )
        return 1 + layer_channels
