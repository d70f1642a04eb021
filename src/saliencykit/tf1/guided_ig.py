"""Guided Integrated Gradients for a TF1 graph (Kapishnikov et al. 2021, arXiv 2106.09788)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core import guided_ig as core_guided_ig
from .base import TF1CoreSaliency

__all__ = ["GuidedIG"]


class GuidedIG(TF1CoreSaliency):
    """Guided IG: integrated gradients along an adaptive path that moves low-gradient features first.

    ``GuidedIG(graph, session, y, x)``; see :class:`~saliencykit.tf1.base.TF1Saliency`
    for the arguments. One input per ``session.run``.
    """

    core_instance: core_guided_ig.GuidedIG

    def __init__(self, graph: Any, session: Any, y: Any, x: Any) -> None:
        super().__init__(graph, session, y, x)
        self.core_instance = core_guided_ig.GuidedIG()

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        feed_dict: Mapping[Any, Any] | None = None,
        x_baseline: np.ndarray | None = None,
        x_steps: int = 200,
        fraction: float = 0.25,
        max_dist: float = 0.02,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the Guided IG attribution of ``x_value``.

        Args:
          x_value: the input, without the batch dimension (``x.shape[1:]``).
          feed_dict: further entries for ``session.run``; copied, never changed.
          x_baseline: the path's start, ``x_value``'s shape; zeros if None.
          x_steps: number of steps, one ``session.run`` each (>= 1).
          fraction: fraction in (0, 1] of the features with the smallest
            absolute gradient moved at each step.
          max_dist: the most a feature may deviate from the straight line, as a
            fraction of the path, in [0, 1]; 0 gives straight-line IG.
          **kwargs: passed to :meth:`saliencykit.core.GuidedIG.GetMask`.

        Returns:
          The attribution, ``x_value``'s shape.

        Raises:
          TypeError, ValueError: bad arguments, or non-finite gradients.
        """
        return self.core_instance.GetMask(
            x_value,
            self.call_model_function,
            call_model_args=feed_dict,
            x_baseline=x_baseline,
            x_steps=x_steps,
            fraction=fraction,
            max_dist=max_dist,
            **kwargs,
        )
