"""Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization", arXiv 1610.02391), and the base of
class-activation-map methods.

For a convolutional layer with activations ``A`` (channel-last, ``[..spatial.., C]``)
and the gradients ``G`` of the explained output with respect to ``A``, the
weight of channel ``c`` is the spatial mean of ``G[..., c]`` and the map is
``ReLU(sum_c w_c A[..., c])``. Optionally the map is scaled to a maximum of 1
and resized (bilinear) to the input's spatial size. The layer may have one
(sequences), two (images) or three (volumes) spatial axes.

:class:`BaseCam` holds what every CAM method shares (the keys it asks for,
the checks of the layer's answer, the scaling and resizing to the input);
a variant overrides one hook. Grad-CAM++ (Chattopadhay et al. 2018), for
example, is only its channel weights::

    class GradCamPlusPlus(GradCam):
        def channel_weights(self, layer_values, layer_gradients):
            ...  # [C] weights from A and G

and Layer-CAM or HiRes-CAM, whose weights are per position, override
:meth:`BaseCam.cam_map` instead.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from skimage.transform import resize

from .base import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    CallModelFunction,
    CoreSaliency,
    Request,
    Steps,
    as_float_array,
)

__all__ = [
    "BaseCam",
    "GradCam",
    "cam_output",
    "channel_weighted_activation_map",
    "input_sized_map",
    "resize_map",
]

#: Number of copies of the map stacked on a new last axis when ``three_dims``.
COLOR_CHANNELS = 3

#: Largest ``input_length * output_length`` for which :func:`resize_map` uses a
#: cached dense operator per axis; larger axes go through ``skimage`` directly.
MAX_OPERATOR_SIZE = 1 << 20


@functools.lru_cache(maxsize=32)
def _axis_resize_operator(input_length: int, output_length: int) -> np.ndarray:
    """The ``[output_length, input_length]`` matrix of ``skimage.transform.resize`` along one axis.

    ``resize`` at its defaults (linear interpolation, Gaussian anti-aliasing
    only when shrinking, reflect mode) is linear and acts on each axis
    separately, so resizing the identity matrix along its first axis gives the
    operator itself: column ``j`` is the resized unit impulse at ``j``.
    """
    operator = resize(np.eye(input_length), (output_length, input_length), clip=False)
    operator.setflags(write=False)
    return operator


def resize_map(saliency_map: np.ndarray, output_shape: tuple[int, ...]) -> np.ndarray:
    """Returns ``skimage.transform.resize(saliency_map, output_shape)`` (defaults), faster.

    The same linear resampling the reference applies (bilinear for a 2-D map,
    linear along each axis in general, anti-aliased when shrinking, values
    clipped to the input's range), applied as one small cached matrix per axis
    (see :func:`_axis_resize_operator`): a 7x7 map goes to 224x224 in tens of
    microseconds instead of about a millisecond. The result equals ``resize``'s
    up to floating-point rounding. Axes too large for a dense operator
    (:data:`MAX_OPERATOR_SIZE`) fall back to ``resize`` itself.

    Args:
      saliency_map: a float64 array with one axis per spatial axis.
      output_shape: the wanted shape, one length per axis of ``saliency_map``.

    Returns:
      The resized map, ``float64``, of shape ``output_shape``.
    """
    pairs = list(zip(saliency_map.shape, output_shape, strict=True))
    if any(n_in * n_out > MAX_OPERATOR_SIZE for n_in, n_out in pairs):
        return resize(saliency_map, output_shape)
    resized = saliency_map
    for axis, (n_in, n_out) in enumerate(pairs):
        if n_in != n_out:  # an axis of unchanged length is left exactly as it is
            operator = _axis_resize_operator(n_in, n_out)
            resized = np.moveaxis(np.tensordot(operator, resized, axes=(1, axis)), 0, axis)
    if resized is saliency_map:
        return saliency_map.copy()
    return np.clip(resized, saliency_map.min(), saliency_map.max(), out=resized)


def _check_layer_answer(layer_values: np.ndarray, layer_gradients: np.ndarray) -> None:
    """Checks one example's activations ``A`` and gradients ``G``: ``[..spatial.., C]``, the same shape.

    Raises:
      ValueError: if the shapes differ or there is no spatial axis.
    """
    if layer_values.ndim < 2:
        raise ValueError(
            "CONVOLUTION_LAYER_VALUES must have at least one spatial axis and a channel "
            f"axis per example ([..spatial.., C], channel-last), got shape {layer_values.shape}"
        )
    if layer_gradients.shape != layer_values.shape:
        raise ValueError(
            "CONVOLUTION_OUTPUT_GRADIENTS must have the shape of CONVOLUTION_LAYER_VALUES "
            f"per example: expected {layer_values.shape}, got {layer_gradients.shape}"
        )


def _grad_cam_weights(layer_gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM's channel weights: the spatial mean of ``G[..., c]``, float64 ``[C]``."""
    return layer_gradients.mean(axis=tuple(range(layer_gradients.ndim - 1)), dtype=np.float64)


def _channel_weighted_sum(layer_values: np.ndarray, channel_weights: np.ndarray) -> np.ndarray:
    """``ReLU(sum_c w_c A[..., c])`` in float64, ``A``'s spatial shape."""
    weighted_sum = np.matmul(layer_values.astype(np.float64, copy=False), channel_weights)
    return np.maximum(weighted_sum, 0.0)


def channel_weighted_activation_map(layer_values: np.ndarray, layer_gradients: np.ndarray) -> np.ndarray:
    """Returns ``ReLU(sum_c mean_spatial(G[..., c]) * A[..., c])`` in float64.

    Args:
      layer_values: activations ``A`` of one example, ``[..spatial.., C]``.
      layer_gradients: gradients ``G`` of the explained output with respect to
        ``A``, the same shape.

    Returns:
      The map, ``A``'s spatial shape, non-negative, ``float64``.

    Raises:
      ValueError: if the shapes differ or there is no spatial axis.
    """
    _check_layer_answer(layer_values, layer_gradients)
    return _channel_weighted_sum(layer_values, _grad_cam_weights(layer_gradients))


def input_sized_map(cam: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    """Scales a layer's map to a maximum of 1 (when that is > 0) and resizes it to the input.

    The map's ``k`` axes are resized to ``x_shape[:k]`` with
    ``skimage.transform.resize`` at its defaults (bilinear for 2-D), applied
    as cached per-axis matrices (:func:`resize_map`): what the reference's
    Grad-CAM does with ``should_resize``.

    Args:
      cam: the layer's map, one axis per spatial axis of the layer (float64).
      x_shape: the un-batched input's shape.

    Returns:
      The scaled map, ``x_shape[:cam.ndim]``, float64.

    Raises:
      ValueError: the layer has more spatial axes than the input has axes.
    """
    n_spatial = cam.ndim
    if len(x_shape) < n_spatial:
        raise ValueError(
            f"the convolution layer has {n_spatial} spatial axes but x_value has shape "
            f"{tuple(x_shape)}: cannot resize the map to the input's spatial size"
        )
    peak = cam.max()
    if peak > 0:
        cam = cam / peak
    return resize_map(cam, tuple(x_shape[:n_spatial]))


def cam_output(
    cam: np.ndarray, x_shape: tuple[int, ...], should_resize: bool, three_dims: bool
) -> np.ndarray:
    """The mask a CAM method returns from the layer's map: :meth:`GradCam.GetMask`'s convention.

    Shared by every CAM method (Grad-CAM and its variants, Score-CAM).

    Args:
      cam: the layer's map, float64, one axis per spatial axis of the layer.
      x_shape: the un-batched input's shape.
      should_resize: divide by the maximum (when > 0) and resize to the
        input's spatial shape (:func:`input_sized_map`).
      three_dims: stack three copies of the map on a new last axis.

    Returns:
      A ``float32`` array: the map (resized or not), with a last axis of 3 when ``three_dims``.

    Raises:
      ValueError: when resizing, a layer with more spatial axes than the input has axes.
    """
    if should_resize:
        cam = input_sized_map(cam, x_shape)
    if not three_dims:
        return cam.astype(np.float32)
    mask = np.empty(cam.shape + (COLOR_CHANNELS,), dtype=np.float32)
    mask[...] = cam[..., None]
    return mask


class BaseCam(CoreSaliency):
    """What every class-activation-map method shares; alone it computes nothing.

    It asks for ``CONVOLUTION_LAYER_VALUES`` ``A`` and
    ``CONVOLUTION_OUTPUT_GRADIENTS`` ``G`` (channel-last,
    ``[batch, ..spatial.., C]``), checks them, and turns them into the layer's
    map with two hooks that a variant overrides:

    - :meth:`channel_weights`: one weight per channel (Grad-CAM: the spatial
      mean of ``G``); the map is ``ReLU(sum_c w_c A[..., c])``;
    - :meth:`cam_map`: the whole map, for variants whose weights are per
      position (Layer-CAM, HiRes-CAM).

    :func:`input_sized_map` scales and resizes the map to the input.
    """

    expected_keys = [CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS]

    def channel_weights(self, layer_values: np.ndarray, layer_gradients: np.ndarray) -> np.ndarray:
        """The weight of every channel, float64 ``[C]``: here Grad-CAM's, the spatial mean of ``G``.

        Args:
          layer_values: ``A`` of one example, ``[..spatial.., C]`` (checked).
          layer_gradients: ``G`` of one example, the same shape (checked).
        """
        return _grad_cam_weights(layer_gradients)

    def cam_map(self, layer_values: np.ndarray, layer_gradients: np.ndarray) -> np.ndarray:
        """The layer's map, float64, ``A``'s spatial shape: ``ReLU(sum_c w_c A[..., c])``.

        ``w`` from :meth:`channel_weights`. Arguments as for :meth:`channel_weights`.
        """
        return _channel_weighted_sum(layer_values, self.channel_weights(layer_values, layer_gradients))

    def n_model_inputs(self, x_shape: tuple[int, ...], **parameters: Any) -> int:
        """One model input, ``x_value`` itself: one call answers every key, whatever ``**parameters``."""
        return 1

    def layer_map(self, output: dict[str, np.ndarray]) -> np.ndarray:
        """The map of the first example of a checked model answer (:meth:`cam_map` after the checks).

        Raises:
          ValueError: activations and gradients of different shapes, or without a spatial axis.
        """
        layer_values = output[CONVOLUTION_LAYER_VALUES][0]
        layer_gradients = output[CONVOLUTION_OUTPUT_GRADIENTS][0]
        _check_layer_answer(layer_values, layer_gradients)
        return self.cam_map(layer_values, layer_gradients)


class GradCam(BaseCam):
    """Grad-CAM: a class-discriminative map from one convolutional layer.

    ``call_model_function`` must answer ``CONVOLUTION_LAYER_VALUES`` (the
    layer's activations) and ``CONVOLUTION_OUTPUT_GRADIENTS`` (the gradients of
    the explained output with respect to them), both channel-last,
    ``[batch, ..spatial.., C]``, like the reference library. The paper suggests
    the last convolutional layer of the network. One model call per mask.
    A CAM variant subclasses it and overrides :meth:`~BaseCam.channel_weights`
    or :meth:`~BaseCam.cam_map`.
    """

    def GetMask(  # noqa: N802 (the reference API's name)
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        should_resize: bool = True,
        three_dims: bool = True,
    ) -> np.ndarray:
        """Returns the Grad-CAM mask of ``x_value`` (a variant's own map: :meth:`~BaseCam.cam_map`).

        Args:
          x_value: the un-batched input; its leading axes are the spatial axes
            that the layer's spatial axes correspond to (``[H, W, C]`` or
            ``[H, W]`` for a 2-D layer, ``[L, C]`` for a 1-D layer,
            ``[D, H, W, C]`` for a 3-D layer). Integers become floats.
          call_model_function: answers ``CONVOLUTION_LAYER_VALUES`` and
            ``CONVOLUTION_OUTPUT_GRADIENTS``, each ``[1, ..spatial.., C]`` for
            the batch of one it receives.
          call_model_args: passed to ``call_model_function`` unchanged.
          should_resize: if True, divide the map by its maximum (when that is
            > 0) and resize it to ``x_value.shape[:k]`` for a layer with ``k``
            spatial axes: ``skimage.transform.resize`` at its defaults
            (bilinear, reflect mode, anti-aliasing only when shrinking, clipped
            to the map's range), what the reference does, applied as cached
            per-axis matrices (:func:`input_sized_map`).
          three_dims: if True, stack three copies of the map on a new last
            axis (``[H, W] -> [H, W, 3]``, like the reference; ``[L, 3]`` or
            ``[D, H, W, 3]`` for 1-D or 3-D layers).

        Returns:
          A ``float32`` array: the map, of the layer's spatial shape (or the
          input's when ``should_resize``), with a last axis of 3 when
          ``three_dims``. Non-negative; at most 1 when ``should_resize``.

        Raises:
          TypeError, ValueError: bad input; a missing, misshapen or non-finite
            answer; activations and gradients of different shapes; a layer
            with more spatial axes than ``x_value`` has axes.
        """
        steps = self._mask_steps(x_value, should_resize, three_dims)
        return self._run_one(steps, x_value, call_model_function, call_model_args, 1)

    def _mask_steps(self, x_value: Any, should_resize: bool, three_dims: bool) -> Steps:
        x_value = as_float_array("x_value", x_value)
        output = yield Request(1, lambda start, stop: x_value[None], self.expected_keys)
        return cam_output(self.layer_map(output), x_value.shape, should_resize, three_dims)
