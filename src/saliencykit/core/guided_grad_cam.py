"""Guided Grad-CAM: Guided Backprop sharpened by the Grad-CAM map.

Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization" (arXiv 1610.02391), section 3.2: the pixel-space
guided backpropagation map multiplied element-wise by the (upsampled) Grad-CAM
map, so that it is both high-resolution and class-discriminative. The
reference library has no such method outside TF1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import (
    GUIDED_INPUT_OUTPUT_GRADIENTS,
    CallModelFunction,
    Request,
    Steps,
    as_float_array,
)
from .grad_cam import BaseCam, input_sized_map

__all__ = ["GuidedGradCam"]


class GuidedGradCam(BaseCam):
    """Guided Backprop times the Grad-CAM map, from one call of the model function.

    ``call_model_function`` must answer ``GUIDED_INPUT_OUTPUT_GRADIENTS`` and
    the two Grad-CAM keys (``CONVOLUTION_LAYER_VALUES``,
    ``CONVOLUTION_OUTPUT_GRADIENTS``, channel-last): the PyTorch and Keras
    adapters built with ``layer=`` do. The CAM is Grad-CAM's; a subclass may
    override :meth:`~saliencykit.core.grad_cam.BaseCam.channel_weights` or
    :meth:`~saliencykit.core.grad_cam.BaseCam.cam_map` like any CAM variant.
    """

    expected_keys = [GUIDED_INPUT_OUTPUT_GRADIENTS, *BaseCam.expected_keys]

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
    ) -> np.ndarray:
        """Returns the Guided Grad-CAM mask of ``x_value``.

        Args:
          x_value: the un-batched input, ``[..spatial.., C]`` (or ``[H, W]``);
            integers become floats.
          call_model_function: answers the three expected keys.
          call_model_args: passed to ``call_model_function`` unchanged.

        Returns:
          ``x_value``'s shape: the guided gradients times the Grad-CAM map
          (scaled to a maximum of 1, resized bilinearly to the input's spatial
          size, repeated over channels).

        Raises:
          TypeError, ValueError: bad input or a bad model answer, or a layer
            with more spatial axes than the input.
        """
        return self._run_one(self._mask_steps(x_value), x_value, call_model_function, call_model_args, 1)

    def _mask_steps(self, x_value: Any) -> Steps:
        x_value = as_float_array("x_value", x_value)
        output = yield Request(1, lambda start, stop: x_value[None], self.expected_keys)
        grad_cam = input_sized_map(self.layer_map(output), x_value.shape)
        guided = output[GUIDED_INPUT_OUTPUT_GRADIENTS][0]
        extra_axes = (None,) * (x_value.ndim - grad_cam.ndim)
        return (guided * grad_cam[(...,) + extra_axes]).astype(np.result_type(guided.dtype, np.float32))
