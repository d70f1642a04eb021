"""The TF1 visualization functions are those of saliencykit.core."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorflow")

import saliencykit.core as core  # noqa: E402
import saliencykit.tf1 as saliency  # noqa: E402


def test_visualizations_are_reexported_from_the_core():
    assert saliency.VisualizeImageGrayscale is core.VisualizeImageGrayscale
    assert saliency.VisualizeImageDiverging is core.VisualizeImageDiverging
