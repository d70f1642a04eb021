"""HiRes-CAM (Draelos and Carin 2020, "Use HiResCAM instead of Grad-CAM for
faithful explanations of convolutional neural networks", arXiv 2011.08891).

The element-wise product of the gradients and the activations, summed over the
channels::

    map = ReLU(sum_c G[..., c] * A[..., c])

Grad-CAM averages the gradients over space first, which can show regions the
model did not use; for a network that ends in a global average pooling and one
linear layer, HiRes-CAM's map summed over positions is exactly the explained
score (up to the ReLU and the layer's bias).
"""

from __future__ import annotations

import numpy as np

from .grad_cam import GradCam

__all__ = ["HiResCam"]


class HiResCam(GradCam):
    """HiRes-CAM: gradient times activation at each position, summed over the channels.

    Works like :class:`~saliencykit.core.grad_cam.GradCam` (the same
    :meth:`GetMask` arguments, 1-D, 2-D and 3-D layers, :meth:`GetMaskBatch`,
    :meth:`GetSmoothedMask`); only the map differs (see the module docstring).
    ``call_model_function`` answers ``CONVOLUTION_LAYER_VALUES`` ``A`` and
    ``CONVOLUTION_OUTPUT_GRADIENTS`` ``G``, channel-last
    ``[batch, ..spatial.., C]``; the map has ``A``'s spatial shape (or the
    input's when ``should_resize``). Cost: one model input (one forward and
    backward pass) per mask. Matches pytorch-grad-cam's ``HiResCAM`` before its
    min-max scaling.
    """

    def cam_map(self, layer_values: np.ndarray, layer_gradients: np.ndarray) -> np.ndarray:
        """``ReLU(sum_c G * A)``, float64, ``A``'s spatial shape.

        Args:
          layer_values: ``A`` of one example, ``[..spatial.., C]``.
          layer_gradients: ``G`` of one example, the same shape.
        """
        products = np.einsum("...c,...c->...", layer_gradients.astype(np.float64), layer_values)
        return np.maximum(products, 0.0)
