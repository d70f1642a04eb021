"""Tests of :class:`saliencykit.tf1.XRAI`."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import saliency.tf1 as reference  # noqa: E402

import saliencykit.tf1 as saliency  # noqa: E402

from .nets import build_conv_net, random_image  # noqa: E402


def test_mask_and_details_equal_the_reference(net):
    image, feed = random_image(), {net.class_index: 1}
    ours = saliency.XRAI(net.graph, net.session, net.y, net.x).GetMaskWithDetails(
        image,
        feed,
        batch_size=2,
        extra_parameters=saliency.XRAIParameters(steps=4, return_ig_attributions=True),
    )
    theirs = reference.XRAI(net.graph, net.session, net.y, net.x).GetMaskWithDetails(
        image,
        dict(feed),
        batch_size=2,
        extra_parameters=reference.XRAIParameters(steps=4, return_ig_attributions=True),
    )
    assert isinstance(ours, saliency.XRAIOutput)
    np.testing.assert_allclose(ours.ig_attribution, theirs.ig_attribution, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.attribution_mask, theirs.attribution_mask, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(ours.segments, theirs.segments)


def test_get_mask_is_the_attribution_mask_and_checks_shapes(net):
    method = saliency.XRAI(net.graph, net.session, net.y, net.x)
    segments = [np.arange(64).reshape(8, 8) < 32, np.arange(64).reshape(8, 8) >= 32]
    mask = method.GetMask(
        random_image(), extra_parameters=saliency.XRAIParameters(steps=2), segments=segments
    )
    assert mask.shape == (8, 8)
    fixed = build_conv_net(batch=4)
    try:
        fixed_method = saliency.XRAI(fixed.graph, fixed.session, fixed.y, fixed.x)
        with pytest.raises(
            ValueError,
            match=r"y must hold .*for 100 model inputs \(extra_parameters.steps\) in batches of 3; "
            r"got y of shape \[4\]",
        ):
            fixed_method.GetMask(random_image(), batch_size=3)
    finally:
        fixed.close()
