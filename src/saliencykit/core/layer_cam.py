"""Layer-CAM (Jiang, Zhang, Hou, Cheng and Wei 2021, "LayerCAM: Exploring
Hierarchical Class Activation Maps for Localization", IEEE Transactions on Image
Processing 30).

Every position keeps its own weight, the positive part of its gradient, instead
of one weight per channel, so that layers early in the network give fine maps::

    map = ReLU(sum_c ReLU(G[..., c]) * A[..., c])

The paper combines maps of several layers after scaling shallow ones with
``tanh``; this class gives one layer's map (run it per layer to combine).
"""

from __future__ import annotations

import numpy as np

from .grad_cam import GradCam

__all__ = ["LayerCam"]


class LayerCam(GradCam):
    """Layer-CAM: activations weighted position by position by their positive gradients.

    Works like :class:`~saliencykit.core.grad_cam.GradCam` (the same
    :meth:`GetMask` arguments, 1-D, 2-D and 3-D layers, :meth:`GetMaskBatch`,
    :meth:`GetSmoothedMask`); only the map differs (see the module docstring).
    ``call_model_function`` answers ``CONVOLUTION_LAYER_VALUES`` ``A`` and
    ``CONVOLUTION_OUTPUT_GRADIENTS`` ``G``, channel-last
    ``[batch, ..spatial.., C]``; the map has ``A``'s spatial shape (or the
    input's when ``should_resize``). Cost: one model input (one forward and
    backward pass) per mask. Matches pytorch-grad-cam's ``LayerCAM`` before its
    min-max scaling.
    """

    def cam_map(self, layer_values: np.ndarray, layer_gradients: np.ndarray) -> np.ndarray:
        """``ReLU(sum_c ReLU(G) * A)``, float64, ``A``'s spatial shape.

        Args:
          layer_values: ``A`` of one example, ``[..spatial.., C]``.
          layer_gradients: ``G`` of one example, the same shape.
        """
        weights = np.maximum(layer_gradients.astype(np.float64), 0.0)
        return np.maximum(np.einsum("...c,...c->...", weights, layer_values), 0.0)
