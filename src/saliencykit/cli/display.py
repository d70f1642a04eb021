"""Turning saliency maps into pictures, the way the reference notebooks show them.

Each method gives two RGB pictures:

- the map: gradient-type maps (gradients, SmoothGrad, IG, Blur IG, Guided IG,
  Guided Backprop, Grad-CAM, Guided Grad-CAM) as ``VisualizeImageGrayscale``
  in gray; Occlusion's signed map (summed over channels) in a blue-white-red
  colour map, zero at the centre (white: no effect, red: evidence for the
  class, blue: against it), scaled by the 99th percentile of the absolute
  values (:func:`diverging_scale`), so that a map of one sign is not a solid
  colour;
  XRAI as a heat map (``inferno``);
- with the image: the map laid over the image, more opaque where it is
  stronger; for XRAI, the image's most salient 30% (the rest blacked out),
  as in the XRAI notebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import core as saliency

__all__ = ["OVERLAY_COLORMAP", "MapPictures", "diverging_scale", "pictures_of", "saliency_2d"]

#: Colour map of the overlays.
OVERLAY_COLORMAP = "jet"
#: The XRAI notebook shows the top 30% of the map.
XRAI_TOP_FRACTION = 0.3
#: Signed maps are scaled by this percentile of their absolute values.
DIVERGING_PERCENTILE = 99.0


@dataclass
class MapPictures:
    """The two ``uint8`` RGB pictures ``[H, W, 3]`` of one map and the caption of the second."""

    saliency_map: np.ndarray
    with_image: np.ndarray
    with_image_caption: str


def _colormap(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` in [0, 1] through the matplotlib colour map ``name``, as float RGB [H, W, 3]."""
    import matplotlib

    return matplotlib.colormaps[name](np.clip(values, 0.0, 1.0))[..., :3]


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def _as_3d(saliency_map: np.ndarray) -> np.ndarray:
    return saliency_map[..., None] if saliency_map.ndim == 2 else saliency_map


def saliency_2d(saliency_map: np.ndarray, display: str) -> np.ndarray:
    """One importance value per pixel (higher: more important), e.g. for PIC.

    Grayscale-type maps: the sum of absolute values over channels; diverging
    (Occlusion): the signed sum; heat maps (XRAI): the map itself.
    """
    values = np.asarray(saliency_map, dtype=np.float64)
    if values.ndim == 2:
        return values
    return values.sum(axis=-1) if display != "grayscale" else np.abs(values).sum(axis=-1)


def diverging_scale(saliency_map: np.ndarray, percentile: float = DIVERGING_PERCENTILE) -> np.ndarray:
    """A signed map as values in [0, 1] with zero at 0.5, for a diverging colour map.

    The channels are summed; ``span`` is the ``percentile`` of the absolute
    values, and ``v`` becomes ``0.5 + v / (2 span)``, clipped to [0, 1]: ``-span``
    and below are 0, ``+span`` and above are 1. Unlike
    ``VisualizeImageDiverging`` (whose span is the percentile of the signed
    values), a map with one sign keeps its gradations. An all-zero map is 0.5.

    Returns:
      float64 ``[H, W]``.
    """
    values = np.asarray(saliency_map, dtype=np.float64)
    if values.ndim == 3:
        values = values.sum(axis=-1)
    span = float(np.percentile(np.abs(values), percentile)) if values.size else 0.0
    if span == 0.0:  # fewer than 1% of the values are non-zero: scale by the largest
        span = float(np.abs(values).max()) if values.size else 0.0
    if span == 0.0:
        return np.full(values.shape, 0.5)
    return np.clip(0.5 + values / (2.0 * span), 0.0, 1.0)


def _overlay(image: np.ndarray, intensity: np.ndarray) -> np.ndarray:
    """The image under the colour-mapped intensity, whose opacity grows with it (up to 70%)."""
    alpha = 0.7 * np.clip(intensity, 0.0, 1.0)[..., None]
    return (1.0 - alpha) * (image / 255.0) + alpha * _colormap(OVERLAY_COLORMAP, intensity)


def pictures_of(saliency_map: np.ndarray, display: str, image: np.ndarray) -> MapPictures:
    """Returns the pictures of one method's map.

    Args:
      saliency_map: the method's map, ``[H, W]`` or ``[H, W, C]``.
      display: ``"grayscale"``, ``"diverging"`` or ``"heatmap"``.
      image: the explained image, ``[H, W, 3]`` with values in [0, 255].
    """
    if display == "heatmap":
        values = saliency_2d(saliency_map, display)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
        top = values >= np.percentile(values, 100 * (1 - XRAI_TOP_FRACTION))
        top_region = np.where(top[..., None], image / 255.0, 0.0)
        return MapPictures(_to_uint8(_colormap("inferno", scaled)), _to_uint8(top_region), "top 30%")
    if display == "diverging":
        diverging = diverging_scale(saliency_map)
        evidence_for = 2.0 * np.clip(diverging, 0.5, 1.0) - 1.0
        return MapPictures(
            _to_uint8(_colormap("bwr", diverging)),
            _to_uint8(_overlay(image, evidence_for)),
            "positive evidence on the image",
        )
    gray = saliency.VisualizeImageGrayscale(_as_3d(saliency_map))
    return MapPictures(_to_uint8(_colormap("gray", gray)), _to_uint8(_overlay(image, gray)), "on the image")
