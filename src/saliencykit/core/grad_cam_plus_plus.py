"""Grad-CAM++ (Chattopadhay, Sarkar, Howlader and Balasubramanian 2018, "Grad-CAM++:
Generalized Gradient-based Visual Explanations for Deep Convolutional Networks",
WACV 2018, arXiv 1710.11063).

Grad-CAM weights every channel by the spatial mean of its gradients; Grad-CAM++
weights each position's positive gradient by a coefficient ``alpha`` built from
second and third derivatives, so that several instances of a class, or a large
object, all count. With the exponential of the class score as the explained
output (the paper's eq. 19), the higher derivatives are powers of the first, and
for channel ``c`` at position ``ij``, with ``g = G[ij, c]`` and
``S_c = sum_ab A[ab, c]``::

    alpha[ij, c] = g**2 / (2 g**2 + S_c g**3)        (0 where g = 0)
    w_c          = sum_ij alpha[ij, c] * ReLU(g)
    map          = ReLU(sum_c w_c A[..., c])

The constant factor ``exp(score)`` of the paper's weights is left out: it does
not change the normalised map.
"""

from __future__ import annotations

import numpy as np

from .base import check_number
from .grad_cam import GradCam

__all__ = ["PYTORCH_GRAD_CAM_EPSILON", "GradCamPlusPlus"]

#: pytorch-grad-cam's (1.5.7) stabiliser of ``alpha``'s denominator: ``epsilon=`` this matches its maps.
PYTORCH_GRAD_CAM_EPSILON = 1e-6


class GradCamPlusPlus(GradCam):
    """Grad-CAM++: a class activation map with second-order channel weights.

    Works like :class:`~saliencykit.core.grad_cam.GradCam` (the same
    :meth:`GetMask` arguments, 1-D, 2-D and 3-D layers, :meth:`GetMaskBatch`,
    :meth:`GetSmoothedMask`); only the channel weights differ (see the module
    docstring). ``call_model_function`` answers ``CONVOLUTION_LAYER_VALUES``
    ``A`` and ``CONVOLUTION_OUTPUT_GRADIENTS`` ``G``, channel-last
    ``[batch, ..spatial.., C]``; the map has ``A``'s spatial shape (or the
    input's when ``should_resize``). Cost: one model input (one forward and
    backward pass) per mask.

    Args:
      epsilon: added to the denominator of ``alpha`` (>= 0). The default,
        ``0``, is the paper's formula exactly (``alpha = 0`` where the
        denominator is 0). :data:`PYTORCH_GRAD_CAM_EPSILON` (``1e-6``) is
        pytorch-grad-cam's, whose ``GradCAMPlusPlus`` this then matches; with
        gradients of order ``1e-3`` (usual for a logit) it is of the size of
        ``2 g**2`` and changes the weights noticeably, hence not the default.

    Raises:
      TypeError, ValueError: an ``epsilon`` that is not a finite number >= 0.
    """

    def __init__(self, epsilon: float = 0.0) -> None:
        self.epsilon = check_number("epsilon", epsilon, minimum=0.0)

    def channel_weights(self, layer_values: np.ndarray, layer_gradients: np.ndarray) -> np.ndarray:
        """Grad-CAM++'s weight of every channel, float64 ``[C]`` (module docstring).

        Args:
          layer_values: ``A`` of one example, ``[..spatial.., C]``.
          layer_gradients: ``G`` of one example, the same shape.
        """
        spatial = tuple(range(layer_values.ndim - 1))
        gradients = layer_gradients.astype(np.float64)
        squared = gradients**2
        channel_sums = layer_values.sum(axis=spatial, dtype=np.float64)
        denominator = 2 * squared + channel_sums * squared * gradients + self.epsilon
        usable = (gradients != 0) & (denominator != 0)
        alpha = np.divide(squared, denominator, out=np.zeros_like(squared), where=usable)
        return (alpha * np.maximum(gradients, 0.0)).sum(axis=spatial)
