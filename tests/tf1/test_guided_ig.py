"""Tests of :class:`saliencykit.tf1.GuidedIG` (the reference's crashes on NumPy >= 2.4)."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import saliencykit.core as core  # noqa: E402
import saliencykit.tf1 as saliency  # noqa: E402

from .nets import hand_call_model_function, random_image  # noqa: E402


def test_mask_equals_the_core_method(net):
    image, feed = random_image(), {net.class_index: 3}
    arguments = {"x_baseline": np.zeros_like(image), "x_steps": 6, "fraction": 0.5, "max_dist": 0.1}
    ours = saliency.GuidedIG(net.graph, net.session, net.y, net.x).GetMask(image, feed, **arguments)
    expected = core.GuidedIG().GetMask(image, hand_call_model_function(net), feed, **arguments)
    assert ours.shape == image.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
