"""Blur IG for a TF1 graph (Xu et al. 2020, arXiv 2004.03383)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core import blur_ig as core_blur_ig
from .base import TF1CoreSaliency

__all__ = ["BlurIG"]


class BlurIG(TF1CoreSaliency):
    """Integrated gradients along a path of ever stronger Gaussian blurs of the image.

    ``BlurIG(graph, session, y, x)``; see :class:`~saliencykit.tf1.base.TF1Saliency`
    for the arguments.
    """

    core_instance: core_blur_ig.BlurIG

    def __init__(self, graph: Any, session: Any, y: Any, x: Any) -> None:
        super().__init__(graph, session, y, x)
        self.core_instance = core_blur_ig.BlurIG()

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        feed_dict: Mapping[Any, Any] | None = None,
        max_sigma: float = 50,
        steps: int = 100,
        grad_step: float = 0.01,
        sqrt: bool = False,
        batch_size: int = 1,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the Blur IG mask of an image.

        Args:
          x_value: an image, ``[H, W, C]`` or ``[H, W]``, without the batch dimension.
          feed_dict: further entries for ``session.run``; copied, never changed.
          max_sigma: the blur's standard deviation at the path's end (> 0).
          steps: number of gradient evaluations along the path (>= 1).
          grad_step: the sigma step of the finite-difference path derivative (> 0).
          sqrt: space the sigmas as square roots of a linear ramp.
          batch_size: the most path points per ``session.run``.
          **kwargs: passed to :meth:`saliencykit.core.BlurIG.GetMask`.

        Returns:
          The attribution, ``x_value``'s shape.

        Raises:
          ValueError: ``x``/``y`` shapes that cannot take batches of
            ``batch_size`` (see :meth:`validate_xy_tensor_shape`), or bad arguments.
          TypeError: arguments of a wrong type.
        """
        self._check_batching({"steps": steps, "batch_size": batch_size})
        return self.core_instance.GetMask(
            x_value,
            self.call_model_function,
            call_model_args=feed_dict,
            max_sigma=max_sigma,
            steps=steps,
            grad_step=grad_step,
            sqrt=sqrt,
            batch_size=batch_size,
            **kwargs,
        )

    def _check_batching(self, arguments: Mapping[str, Any], nsamples: int | None = None) -> None:
        """``steps`` path points in batches of ``batch_size``, per mask."""
        self.validate_xy_tensor_shape(arguments["steps"], arguments["batch_size"], steps_name="steps")
