"""Guided Grad-CAM for a TF1 graph (Selvaraju et al. 2017, arXiv 1610.02391, section 3.2).

New: the reference library has no TF1 Guided Grad-CAM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..core import guided_grad_cam as core_guided_grad_cam
from ..core.base import GUIDED_INPUT_OUTPUT_GRADIENTS
from .base import TF1CoreSaliency
from .guided_backprop import GuidedBackprop

__all__ = ["GuidedGradCam"]


class GuidedGradCam(TF1CoreSaliency):
    """Guided Backprop times the Grad-CAM map: sharp and class-discriminative.

    ``GuidedGradCam(graph, session, y, x, conv_layer)``: the Grad-CAM part runs
    on ``graph`` (see :class:`~saliencykit.tf1.GradCam`), the guided gradients
    on a private copy (see :class:`~saliencykit.tf1.GuidedBackprop`).

    Attributes:
      guided_backprop: the :class:`~saliencykit.tf1.GuidedBackprop` giving the
        guided gradients; ``close()`` closes its session.
    """

    gradients_needed: tuple[str, ...] = ("conv_layer",)
    core_instance: core_guided_grad_cam.GuidedGradCam

    def __init__(self, graph: Any, session: Any, y: Any, x: Any, conv_layer: Any) -> None:
        super().__init__(graph, session, y, x, conv_layer)
        self.guided_backprop = GuidedBackprop(graph, session, y, x)
        self._graph_call_model_function = self.call_model_function
        self.call_model_function = self._call_both_graphs
        self.core_instance = core_guided_grad_cam.GuidedGradCam()

    def GetMask(  # noqa: N802
        self, x_value: np.ndarray, feed_dict: Mapping[Any, Any] | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Returns the Guided Grad-CAM mask of ``x_value``.

        Args:
          x_value: an image, ``[H, W, C]``, without the batch dimension.
          feed_dict: further entries for ``session.run``, keyed by tensors of
            ``graph`` (or their names); copied, never changed.
          **kwargs: passed to :meth:`saliencykit.core.GuidedGradCam.GetMask`.

        Returns:
          ``x_value``'s shape: the guided gradients times the resized Grad-CAM map.

        Raises:
          TypeError, ValueError: bad arguments or ``feed_dict`` keys.
        """
        return self.core_instance.GetMask(
            x_value, self.call_model_function, call_model_args=feed_dict, **kwargs
        )

    def close(self) -> None:
        """Closes the session of the guided copy."""
        self.guided_backprop.close()

    def _call_both_graphs(
        self,
        x_value_batch: np.ndarray,
        call_model_args: Any = None,
        expected_keys: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Guided gradients from the copy, every other key from ``graph``."""
        keys = list(expected_keys) if expected_keys is not None else [GUIDED_INPUT_OUTPUT_GRADIENTS]
        graph_keys = [key for key in keys if key != GUIDED_INPUT_OUTPUT_GRADIENTS]
        output: dict[str, np.ndarray] = {}
        if graph_keys:
            output.update(self._graph_call_model_function(x_value_batch, call_model_args, graph_keys))
        if GUIDED_INPUT_OUTPUT_GRADIENTS in keys:
            output.update(
                self.guided_backprop.call_model_function(
                    x_value_batch, call_model_args, [GUIDED_INPUT_OUTPUT_GRADIENTS]
                )
            )
        return output
