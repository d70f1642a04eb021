"""Occlusion sensitivity for a TF1 graph (Zeiler and Fergus 2014, arXiv 1311.2901)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core import occlusion as core_occlusion
from .base import TF1CoreSaliency

__all__ = ["Occlusion"]


class Occlusion(TF1CoreSaliency):
    """Occlusion: how much ``y`` drops when a square window of the image is filled with a value.

    ``Occlusion(graph, session, y, x)``; see :class:`~saliencykit.tf1.base.TF1Saliency`
    for the arguments. ``y`` must be one scalar per example. Only forward
    passes are run: ``y`` need not be differentiable with respect to ``x``, no
    op is added to ``graph``, and a finalized graph (a ``MonitoredSession``'s)
    is fine.
    """

    gradients_needed: tuple[str, ...] = ()

    core_instance: core_occlusion.Occlusion

    def __init__(self, graph: Any, session: Any, y: Any, x: Any) -> None:
        super().__init__(graph, session, y, x)
        self.core_instance = core_occlusion.Occlusion()

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        feed_dict: Mapping[Any, Any] | None = None,
        size: int = 15,
        value: float = 0,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the occlusion mask of ``x_value``.

        Args:
          x_value: an image, ``[H, W, C]`` or ``[H, W]``, without the batch dimension.
          feed_dict: further entries for ``session.run``; copied, never changed.
          size: the window's height and width (at most the image's).
          value: the number written into the window, every channel.
          **kwargs: passed to :meth:`saliencykit.core.Occlusion.GetMask`:
            ``stride``, and ``batch_size`` (occluded copies per ``session.run``;
            other than 1 it needs ``None`` batch dimensions in ``x`` and ``y``).

        Returns:
          ``x_value``'s shape: per pixel, the summed drops ``y(x) - y(x_occluded)``
          of the windows covering it.

        Raises:
          ValueError: ``x``/``y`` shapes that cannot take the batches, a window
            larger than the image, or more than one value of ``y`` per example.
          TypeError: arguments of a wrong type.
        """
        self._check_batching(kwargs)
        return self.core_instance.GetMask(
            x_value, self.call_model_function, call_model_args=feed_dict, size=size, value=value, **kwargs
        )
