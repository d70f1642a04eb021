"""Tests of :class:`saliencykit.tf1.GradientSaliency`."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import saliency.tf1 as reference  # noqa: E402

import saliencykit.core as core  # noqa: E402
import saliencykit.tf1 as saliency  # noqa: E402

from .nets import hand_call_model_function, random_image  # noqa: E402


def test_mask_equals_the_reference_and_the_core_method(net):
    image, feed = random_image(), {net.class_index: 3}
    ours = saliency.GradientSaliency(net.graph, net.session, net.y, net.x).GetMask(image, feed)
    theirs = reference.GradientSaliency(net.graph, net.session, net.y, net.x).GetMask(image, dict(feed))
    core_mask = core.GradientSaliency().GetMask(image, hand_call_model_function(net), feed)
    assert ours.shape == image.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours, core_mask, rtol=1e-6, atol=1e-8)


def test_feed_dict_selects_the_explained_class(net):
    method = saliency.GradientSaliency(net.graph, net.session, net.y, net.x)
    image = random_image()
    class_1, class_4 = (
        method.GetMask(image, {net.class_index: 1}),
        method.GetMask(image, {net.class_index: 4}),
    )
    assert not np.allclose(class_1, class_4)
    np.testing.assert_allclose(
        class_4,
        core.GradientSaliency().GetMask(image, hand_call_model_function(net), {net.class_index: 4}),
        rtol=1e-6,
        atol=1e-8,
    )
