"""Vanilla gradients for a TF1 graph (Simonyan et al. 2013, arXiv 1312.6034)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core import gradients as core_gradients
from .base import TF1CoreSaliency

__all__ = ["GradientSaliency"]


class GradientSaliency(TF1CoreSaliency):
    """Saliency mask = the gradient of ``y`` with respect to ``x``, from one ``session.run``.

    ``GradientSaliency(graph, session, y, x)``; see :class:`~saliencykit.tf1.base.TF1Saliency`
    for the arguments. ``GetSmoothedMask(..., batch_size=n)`` sends ``n`` noisy
    samples to ``session.run`` at once (``x`` and ``y`` then need a ``None``
    batch dimension); the reference runs one sample at a time.
    """

    core_instance: core_gradients.GradientSaliency

    def __init__(self, graph: Any, session: Any, y: Any, x: Any) -> None:
        super().__init__(graph, session, y, x)
        self.core_instance = core_gradients.GradientSaliency()

    def GetMask(  # noqa: N802
        self, x_value: np.ndarray, feed_dict: Mapping[Any, Any] | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Returns the gradient of ``y`` with respect to ``x`` at ``x_value``.

        Args:
          x_value: the input, without the batch dimension (``x.shape[1:]``).
          feed_dict: further entries for ``session.run``; copied, never changed.
          **kwargs: passed to :meth:`saliencykit.core.GradientSaliency.GetMask`.

        Returns:
          The gradient, ``x_value``'s shape.

        Raises:
          TypeError, ValueError: a bad input or ``feed_dict``.
        """
        return self.core_instance.GetMask(
            x_value, self.call_model_function, call_model_args=feed_dict, **kwargs
        )

    def _check_batching(self, arguments: Mapping[str, Any], nsamples: int | None = None) -> None:
        """One input per ``GetMask``; SmoothGrad sends ``nsamples`` in batches of ``batch_size``."""
        batch_size = arguments.get("batch_size", 1)
        if nsamples is not None and batch_size != 1:
            self.validate_xy_tensor_shape(nsamples, batch_size, steps_name="nsamples")
