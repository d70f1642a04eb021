"""Saliency-map visualisation, the same functions as :mod:`saliencykit.core.visualization`."""

from __future__ import annotations

from ..core.visualization import VisualizeImageDiverging, VisualizeImageGrayscale

__all__ = ["VisualizeImageDiverging", "VisualizeImageGrayscale"]
