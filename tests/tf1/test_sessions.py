"""Sessions of the TF1 wrappers: proxies, wrappers and monitored sessions work as in the reference.

The reference library (``saliency.tf1``) only calls ``session.run``; so does
saliencykit: a ``unittest.mock`` wrapper, a hand-written proxy or a
``MonitoredSession`` (which finalizes the graph) must work.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any
from unittest import mock

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import saliency.tf1 as reference  # noqa: E402

import saliencykit.tf1 as saliency  # noqa: E402

from .nets import v1  # noqa: E402


@dataclasses.dataclass
class SmallImageNet:
    """``y = sum(relu(x * w - 0.2))`` over 4x4x1 images, ``w`` a variable; its graph and session."""

    graph: Any
    session: Any
    x: Any
    y: Any
    conv: Any


@pytest.fixture
def small():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, (None, 4, 4, 1), name="images")
        weights = v1.get_variable("w", initializer=np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4, 1))
        conv = tf.nn.relu(x * weights - 0.2, name="activation")
        y = tf.reduce_sum(conv, axis=(1, 2, 3), name="explained")
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph)
    session.run(init)
    yield SmallImageNet(graph, session, x, y, conv)
    session.close()


def image() -> np.ndarray:
    return np.random.default_rng(3).uniform(0, 1, (4, 4, 1)).astype(np.float32)


class Proxy:
    """A minimal session proxy (as user code may write): ``run`` only, and a ``graph`` of its own."""

    graph = "not a tf.Graph"

    def __init__(self, session: Any) -> None:
        self._session = session
        self.calls = 0

    def run(self, fetches: Any, feed_dict: Any = None) -> Any:
        self.calls += 1
        return self._session.run(fetches, feed_dict=feed_dict)


def masks(net: SmallImageNet, session: Any) -> list[np.ndarray]:
    """Masks of a gradient method, a forward-only one, Grad-CAM and Guided Backprop through ``session``."""
    guided = saliency.GuidedBackprop(net.graph, session, net.y, net.x)
    try:
        return [
            saliency.GradientSaliency(net.graph, session, net.y, net.x).GetMask(image()),
            saliency.Occlusion(net.graph, session, net.y, net.x).GetMask(image(), size=2),
            saliency.GradCam(net.graph, session, net.y, net.x, net.conv).GetMask(image()),
            guided.GetMask(image()),
        ]
    finally:
        guided.close()


@pytest.mark.parametrize("wrap", ["magic_mock", "proxy"], ids=["MagicMock(wraps=session)", "proxy"])
def test_wrapped_sessions_are_accepted_and_give_the_same_masks(small, wrap):
    wrapped = mock.MagicMock(wraps=small.session) if wrap == "magic_mock" else Proxy(small.session)
    expected = masks(small, small.session)
    got = masks(small, wrapped)
    for ours, plain in zip(got, expected, strict=True):
        np.testing.assert_array_equal(ours, plain)
    assert (wrapped.run.call_count if wrap == "magic_mock" else wrapped.calls) > 0
    # The reference accepts the same session and agrees.
    np.testing.assert_allclose(
        reference.GradientSaliency(small.graph, wrapped, small.y, small.x).GetMask(image()), expected[0]
    )


def test_mock_with_the_session_as_spec_is_a_proxy_too(small):
    wrapped = mock.MagicMock(spec=small.session, wraps=small.session)
    mask = saliency.GradientSaliency(small.graph, wrapped, small.y, small.x).GetMask(image())
    np.testing.assert_array_equal(
        mask, saliency.GradientSaliency(small.graph, small.session, small.y, small.x).GetMask(image())
    )


def test_monitored_session_works_for_methods_built_before_and_forward_only_ones(small):
    plain = saliency.GradientSaliency(small.graph, small.session, small.y, small.x)  # gradient ops added now
    expected = plain.GetMask(image())
    with small.graph.as_default():
        doubled = tf.multiply(small.y, 2.0, name="doubled")  # no gradient op is ever built for it
        monitored = v1.train.MonitoredSession()  # finalizes the graph
    try:
        assert small.graph.finalized
        gradient = saliency.GradientSaliency(small.graph, monitored, small.y, small.x).GetMask(image())
        np.testing.assert_allclose(gradient, expected)
        occlusion = saliency.Occlusion(small.graph, monitored, doubled, small.x).GetMask(image(), size=2)
        np.testing.assert_allclose(
            occlusion,
            2 * saliency.Occlusion(small.graph, small.session, small.y, small.x).GetMask(image(), size=2),
        )
        with saliency.GuidedBackprop(small.graph, monitored, small.y, small.x) as guided:
            np.testing.assert_allclose(guided.GetMask(image()), expected)  # no negative gradients here
    finally:
        monitored.close()


def test_a_method_on_a_finalized_graph_raises_runtime_error_as_the_reference(small):
    small.graph.finalize()
    for module in (reference, saliency):
        with pytest.raises(RuntimeError, match=r"Graph is finalized"):
            module.IntegratedGradients(small.graph, small.session, small.y, small.x)
        with pytest.raises(RuntimeError, match=r"Graph is finalized"):
            module.GradCam(small.graph, small.session, small.y, small.x, small.conv)
    with pytest.raises(saliency.GraphFinalizedError, match=r"before calling graph.finalize") as raised:
        saliency.GradientSaliency(small.graph, small.session, small.y, small.x)
    assert isinstance(raised.value, ValueError)  # as saliencykit raised before


def test_guided_backprop_with_a_session_that_returns_no_values_says_why(small):
    broken = mock.MagicMock()  # run returns a MagicMock, not the variables' values
    with pytest.raises(TypeError, match=r"GuidedBackprop copies the values .* must return a list of 1 arr"):
        saliency.GuidedBackprop(small.graph, broken, small.y, small.x)


def test_a_session_without_run_is_refused(small):
    with pytest.raises(TypeError, match=r"session must be .*callable run method, got SimpleNamespace"):
        saliency.GradientSaliency(small.graph, types.SimpleNamespace(run=1), small.y, small.x)


def test_a_tf_debug_wrapper_session_works(small, tmp_path):
    tf_debug = pytest.importorskip("tensorflow.python.debug")
    wrapped = tf_debug.DumpingDebugWrapperSession(small.session, str(tmp_path))
    for ours, plain in zip(masks(small, wrapped), masks(small, small.session), strict=True):
        np.testing.assert_array_equal(ours, plain)
