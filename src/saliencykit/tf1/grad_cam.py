"""Grad-CAM for a TF1 graph (Selvaraju et al. 2017, arXiv 1610.02391)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core import grad_cam as core_grad_cam
from .base import TF1CoreSaliency

__all__ = ["GradCam"]


class GradCam(TF1CoreSaliency):
    """Grad-CAM: a convolution layer's channels weighted by their mean gradient, then ReLU.

    ``GradCam(graph, session, y, x, conv_layer)``; see
    :class:`~saliencykit.tf1.base.TF1CoreSaliency`. ``conv_layer`` is a
    channel-last activation tensor ``[batch, H', W', C]``; the paper uses the
    last convolutional layer.
    """

    gradients_needed: tuple[str, ...] = ("conv_layer",)
    core_instance: core_grad_cam.GradCam

    def __init__(self, graph: Any, session: Any, y: Any, x: Any, conv_layer: Any) -> None:
        super().__init__(graph, session, y, x, conv_layer)
        self.core_instance = core_grad_cam.GradCam()

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        feed_dict: Mapping[Any, Any] | None = None,
        should_resize: bool = True,
        three_dims: bool = True,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the Grad-CAM map of ``x_value``.

        Args:
          x_value: an image, ``[H, W, C]``, without the batch dimension.
          feed_dict: further entries for ``session.run``; copied, never changed.
          should_resize: scale the map to a maximum of 1 and resize it
            (bilinear) to the image's ``H x W``.
          three_dims: repeat the 2-D map over 3 channels.
          **kwargs: passed to :meth:`saliencykit.core.GradCam.GetMask`.

        Returns:
          ``[H', W']`` (or ``[H, W]`` resized), with a trailing axis of 3 when
          ``three_dims``.

        Raises:
          TypeError, ValueError: bad arguments, or a ``conv_layer`` whose values
            are not ``[batch, ..spatial.., C]``.
        """
        return self.core_instance.GetMask(
            x_value,
            self.call_model_function,
            call_model_args=feed_dict,
            should_resize=should_resize,
            three_dims=three_dims,
            **kwargs,
        )
