"""XRAI for a TF1 graph (Kapishnikov et al. 2019, arXiv 1906.02825)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..core import xrai as core_xrai
from ..core.xrai import XRAIOutput, XRAIParameters
from .base import TF1CoreSaliency

__all__ = ["XRAI", "XRAIOutput", "XRAIParameters"]


class XRAI(TF1CoreSaliency):
    """XRAI: image regions ranked by their Integrated Gradients attribution density.

    ``XRAI(graph, session, y, x)``; see :class:`~saliencykit.tf1.base.TF1Saliency`
    for the arguments. The attribution is Integrated Gradients over the
    baselines, ``extra_parameters.steps`` points each, in batches of
    ``batch_size`` per ``session.run``.
    """

    core_instance: core_xrai.XRAI

    def __init__(self, graph: Any, session: Any, y: Any, x: Any) -> None:
        super().__init__(graph, session, y, x)
        self.core_instance = core_xrai.XRAI()

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        feed_dict: Mapping[Any, Any] | None = None,
        baselines: Sequence[np.ndarray] | None = None,
        segments: Sequence[np.ndarray] | None = None,
        base_attribution: np.ndarray | None = None,
        batch_size: int = 1,
        extra_parameters: XRAIParameters | None = None,
    ) -> np.ndarray:
        """Returns the XRAI map of an image, float ``[H, W]``.

        See :meth:`GetMaskWithDetails` for the arguments and errors.
        """
        return self.GetMaskWithDetails(
            x_value, feed_dict, baselines, segments, base_attribution, batch_size, extra_parameters
        ).attribution_mask

    def GetMaskWithDetails(  # noqa: N802
        self,
        x_value: np.ndarray,
        feed_dict: Mapping[Any, Any] | None = None,
        baselines: Sequence[np.ndarray] | None = None,
        segments: Sequence[np.ndarray] | None = None,
        base_attribution: np.ndarray | None = None,
        batch_size: int = 1,
        extra_parameters: XRAIParameters | None = None,
    ) -> XRAIOutput:
        """Runs XRAI on one image and returns the map with the details asked for.

        Args:
          x_value: the image, ``[H, W, C]`` or ``[H, W]``, without the batch dimension.
          feed_dict: further entries for ``session.run``; copied, never changed.
          baselines: Integrated Gradients baselines, each ``x_value``'s shape;
            default an all-``min(x)`` and an all-``max(x)`` image.
          segments: candidate regions, ``[H, W]`` boolean masks; default
            Felzenszwalb segments of the image.
          base_attribution: a precomputed attribution, ``x_value``'s shape (no
            model call is made then).
          batch_size: the most Integrated Gradients path points per ``session.run``.
          extra_parameters: an :class:`XRAIParameters` (default ``XRAIParameters()``).

        Returns:
          An :class:`XRAIOutput` (``attribution_mask``, ``baselines``,
          ``ig_attribution``, ``segments``).

        Raises:
          ValueError: ``x``/``y`` shapes that cannot take batches of
            ``batch_size`` (see :meth:`validate_xy_tensor_shape`), mismatched
            shapes of ``baselines``, ``segments`` or ``base_attribution``, or an
            unknown algorithm.
          TypeError: arguments of a wrong type.
        """
        self._check_batching({"batch_size": batch_size, "extra_parameters": extra_parameters})
        return self.core_instance.GetMaskWithDetails(
            x_value,
            call_model_function=self.call_model_function,
            call_model_args=feed_dict,
            baselines=baselines,
            segments=segments,
            base_attribution=base_attribution,
            batch_size=batch_size,
            extra_parameters=extra_parameters,
        )

    def _check_batching(self, arguments: Mapping[str, Any], nsamples: int | None = None) -> None:
        """``extra_parameters.steps`` path points per baseline, in batches of ``batch_size``."""
        parameters = arguments["extra_parameters"] or XRAIParameters()
        self.validate_xy_tensor_shape(
            parameters.steps, arguments["batch_size"], steps_name="extra_parameters.steps"
        )
