"""Tests of :class:`saliencykit.tf1.IntegratedGradients`."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import saliency.tf1 as reference  # noqa: E402

import saliencykit.core as core  # noqa: E402
import saliencykit.tf1 as saliency  # noqa: E402

from .nets import hand_call_model_function, random_image  # noqa: E402


@pytest.mark.parametrize(("x_steps", "batch_size"), [(5, 1), (6, 3), (5, 2)])
def test_mask_equals_the_reference(net, x_steps, batch_size):
    image, baseline, feed = random_image(1), random_image(2) * 0.1, {net.class_index: 0}
    ours = saliency.IntegratedGradients(net.graph, net.session, net.y, net.x).GetMask(
        image, feed, x_baseline=baseline, x_steps=x_steps, batch_size=batch_size
    )
    theirs = reference.IntegratedGradients(net.graph, net.session, net.y, net.x).GetMask(
        image, dict(feed), x_baseline=baseline, x_steps=x_steps, batch_size=batch_size
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6 * np.abs(theirs).max())


def test_core_keyword_arguments_pass_through(net):
    image, feed = random_image(), {net.class_index: 4}
    ours = saliency.IntegratedGradients(net.graph, net.session, net.y, net.x).GetMask(
        image, feed, x_steps=4, batch_size=4, integration_rule="riemann_middle"
    )
    expected = core.IntegratedGradients().GetMask(
        image, hand_call_model_function(net), feed, x_steps=4, batch_size=4, integration_rule="riemann_middle"
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
