"""Integrated Gradients for a TF1 graph (Sundararajan et al. 2017, arXiv 1703.01365)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core import integrated_gradients as core_integrated_gradients
from .base import TF1CoreSaliency

__all__ = ["IntegratedGradients"]


class IntegratedGradients(TF1CoreSaliency):
    """Integrated Gradients: ``(x - baseline)`` times the mean gradient on the straight path.

    ``IntegratedGradients(graph, session, y, x)``; see
    :class:`~saliencykit.tf1.base.TF1Saliency` for the arguments.
    """

    core_instance: core_integrated_gradients.IntegratedGradients

    def __init__(self, graph: Any, session: Any, y: Any, x: Any) -> None:
        super().__init__(graph, session, y, x)
        self.core_instance = core_integrated_gradients.IntegratedGradients()

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        feed_dict: Mapping[Any, Any] | None = None,
        x_baseline: np.ndarray | None = None,
        x_steps: int = 25,
        batch_size: int = 1,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the Integrated Gradients mask of ``x_value``.

        Args:
          x_value: the input, without the batch dimension (``x.shape[1:]``).
          feed_dict: further entries for ``session.run``; copied, never changed.
          x_baseline: the path's start, ``x_value``'s shape; zeros if None.
          x_steps: number of gradient evaluations along the path (>= 1).
          batch_size: the most path points per ``session.run``.
          **kwargs: passed to :meth:`saliencykit.core.IntegratedGradients.GetMask`
            (e.g. ``integration_rule``).

        Returns:
          The attribution, ``x_value``'s shape.

        Raises:
          ValueError: ``x``/``y`` shapes that cannot take batches of
            ``batch_size`` (see :meth:`validate_xy_tensor_shape`), or bad arguments.
          TypeError: arguments of a wrong type.
        """
        self._check_batching({"x_steps": x_steps, "batch_size": batch_size})
        return self.core_instance.GetMask(
            x_value,
            self.call_model_function,
            call_model_args=feed_dict,
            x_baseline=x_baseline,
            x_steps=x_steps,
            batch_size=batch_size,
            **kwargs,
        )

    def _check_batching(self, arguments: Mapping[str, Any], nsamples: int | None = None) -> None:
        """``x_steps`` path points in batches of ``batch_size``, per mask."""
        self.validate_xy_tensor_shape(arguments["x_steps"], arguments["batch_size"])
