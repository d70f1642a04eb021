"""Tests of :class:`saliencykit.tf1.Occlusion`."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import saliency.tf1 as reference  # noqa: E402

import saliencykit.tf1 as saliency  # noqa: E402

from .nets import random_image  # noqa: E402


def test_mask_equals_the_reference(net):
    image, feed = random_image(), {net.class_index: 2}
    ours = saliency.Occlusion(net.graph, net.session, net.y, net.x).GetMask(image, feed, size=3, value=0.5)
    theirs = reference.Occlusion(net.graph, net.session, net.y, net.x).GetMask(
        image, dict(feed), size=3, value=0.5
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max())


def test_batched_occlusion_equals_one_window_per_call(net):
    method = saliency.Occlusion(net.graph, net.session, net.y, net.x)
    one_by_one = method.GetMask(random_image(), size=4)
    batched = method.GetMask(random_image(), size=4, batch_size=8)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-6)
