"""Tests of :class:`saliencykit.tf1.BlurIG`."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import saliency.tf1 as reference  # noqa: E402

import saliencykit.core as core  # noqa: E402
import saliencykit.tf1 as saliency  # noqa: E402

from .nets import hand_call_model_function, random_image  # noqa: E402


def test_mask_equals_the_reference(net):
    image, feed = random_image(), {net.class_index: 1}
    arguments = {"max_sigma": 4, "steps": 6, "batch_size": 3}
    ours = saliency.BlurIG(net.graph, net.session, net.y, net.x).GetMask(image, feed, **arguments)
    theirs = reference.BlurIG(net.graph, net.session, net.y, net.x).GetMask(image, dict(feed), **arguments)
    # The core blurs float32 images in float32: agreement to float32 precision.
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4 * np.abs(theirs).max())


def test_mask_equals_the_core_method(net):
    image, feed = random_image(), {net.class_index: 1}
    arguments = {"max_sigma": 4, "steps": 5, "sqrt": True, "batch_size": 2}
    ours = saliency.BlurIG(net.graph, net.session, net.y, net.x).GetMask(image, feed, **arguments)
    expected = core.BlurIG().GetMask(image, hand_call_model_function(net), feed, **arguments)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
