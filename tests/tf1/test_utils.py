"""Tests of :func:`saliencykit.tf1.create_tf1_call_model_function` on real TF1 graphs."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from saliencykit.core import (  # noqa: E402
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    GUIDED_INPUT_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
)
from saliencykit.tf1 import MissingTensorError, create_tf1_call_model_function  # noqa: E402

from .nets import (  # noqa: E402
    DEFAULT_CLASS,
    build_conv_net,
    build_tiny_relu_net,
    hand_call_model_function,
    random_image,
    tiny_net_gradients,
)

ALL_KEYS = [
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
]


class RecordingSession:
    """Wraps a session and records the fetches of every ``run``."""

    def __init__(self, session):
        self.session = session
        self.graph = session.graph
        self.fetches = []

    def run(self, fetches, feed_dict=None):
        self.fetches.append(fetches)
        return self.session.run(fetches, feed_dict=feed_dict)


def test_every_key_matches_a_hand_written_call(net):
    batch = np.stack([random_image(1), random_image(2)])
    call = create_tf1_call_model_function(net.graph, net.session, net.y, net.x, net.conv)
    ours = call(batch, {net.class_index: 4}, ALL_KEYS)
    theirs = hand_call_model_function(net)(batch, {net.class_index: 4}, ALL_KEYS)
    assert set(ours) == set(ALL_KEYS)
    for key in ALL_KEYS:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-6, atol=1e-7)
    assert ours[INPUT_OUTPUT_GRADIENTS].shape == batch.shape
    assert ours[CONVOLUTION_LAYER_VALUES].shape == (2, 8, 8, 4)
    logits = net.session.run(net.logits, {net.x: batch})
    np.testing.assert_allclose(ours[OUTPUT_LAYER_VALUES], logits[:, 4], rtol=1e-6)


def test_input_gradient_is_the_exact_gradient(tiny_net):
    # The tiny net is float64 and piecewise linear: its gradient is known by hand.
    features = np.array([[0.3, 0.8, -0.2]])
    call = create_tf1_call_model_function(tiny_net.graph, tiny_net.session, tiny_net.y, tiny_net.x)
    gradient = call(features, expected_keys=[INPUT_OUTPUT_GRADIENTS])[INPUT_OUTPUT_GRADIENTS]
    np.testing.assert_allclose(
        gradient[0], tiny_net_gradients(tiny_net, features[0], guided=False), rtol=1e-12
    )


def test_expected_keys_default_to_input_gradients(net):
    call = create_tf1_call_model_function(net.graph, net.session, net.y, net.x)
    assert set(call(random_image()[None])) == {INPUT_OUTPUT_GRADIENTS}


def test_only_the_requested_tensors_are_run(net):
    session = RecordingSession(net.session)
    call = create_tf1_call_model_function(net.graph, session, net.y, net.x, net.conv)
    call(random_image()[None], expected_keys=[OUTPUT_LAYER_VALUES])
    assert session.fetches == [[net.y]]  # a list of fetches, as the reference ran
    call(random_image()[None], expected_keys=[CONVOLUTION_LAYER_VALUES, OUTPUT_LAYER_VALUES])
    assert session.fetches[-1] == [net.conv, net.y]


def test_gradient_ops_are_built_once_per_graph_and_tensors(net):
    create_tf1_call_model_function(net.graph, net.session, net.y, net.x, net.conv)
    op_count = len(net.graph.get_operations())
    for _ in range(3):
        call = create_tf1_call_model_function(net.graph, net.session, net.y, net.x, net.conv)
        call(random_image()[None], expected_keys=ALL_KEYS)
    assert len(net.graph.get_operations()) == op_count


def test_feed_dict_is_honoured_and_not_changed(net):
    call = create_tf1_call_model_function(net.graph, net.session, net.y, net.x)
    batch = random_image()[None]
    feed = {net.class_index: 0}
    selected = call(batch, feed, [OUTPUT_LAYER_VALUES])[OUTPUT_LAYER_VALUES]
    default = call(batch, None, [OUTPUT_LAYER_VALUES])[OUTPUT_LAYER_VALUES]
    logits = net.session.run(net.logits, {net.x: batch})
    np.testing.assert_allclose(selected, logits[:, 0], rtol=1e-6)
    np.testing.assert_allclose(default, logits[:, DEFAULT_CLASS], rtol=1e-6)
    assert feed == {net.class_index: 0}


def test_feed_dict_entry_for_x_is_replaced_by_the_batch(net):
    call = create_tf1_call_model_function(net.graph, net.session, net.y, net.x)
    batch = random_image()[None]
    stale = {net.x.name: np.zeros((3, 8, 8, 3), np.float32)}
    values = call(batch, stale, [OUTPUT_LAYER_VALUES])[OUTPUT_LAYER_VALUES]
    assert values.shape == (1,)


def test_conv_keys_without_conv_layer_raise(net):
    call = create_tf1_call_model_function(net.graph, net.session, net.y, net.x)
    with pytest.raises(MissingTensorError, match=r"CONVOLUTION_LAYER_VALUES.*conv_layer") as raised:
        call(random_image()[None], expected_keys=[CONVOLUTION_LAYER_VALUES])
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, RuntimeError)


@pytest.mark.parametrize(
    ("key", "message"),
    [("NOT_A_KEY", r"'NOT_A_KEY'.*answers"), (GUIDED_INPUT_OUTPUT_GRADIENTS, r"GuidedBackprop")],
)
def test_unknown_keys_raise(net, key, message):
    call = create_tf1_call_model_function(net.graph, net.session, net.y, net.x)
    with pytest.raises(ValueError, match=message):
        call(random_image()[None], expected_keys=[key])


def test_call_model_args_must_be_a_dict(net):
    call = create_tf1_call_model_function(net.graph, net.session, net.y, net.x)
    with pytest.raises(TypeError, match=r"feed_dict.*dict.*got list"):
        call(random_image()[None], [1, 2])


def test_bad_graph_session_and_tensors_raise(net):
    other = build_tiny_relu_net()
    try:
        with pytest.raises(TypeError, match=r"graph must be a tf.Graph, got str"):
            create_tf1_call_model_function("graph", net.session, net.y, net.x)
        with pytest.raises(TypeError, match=r"session must be .*got NoneType"):
            create_tf1_call_model_function(net.graph, None, net.y, net.x)
        with pytest.raises(TypeError, match=r"session must be .*got object"):
            create_tf1_call_model_function(net.graph, object(), net.y, net.x)
        with pytest.raises(TypeError, match=r"x must be a tf.Tensor of graph, got ndarray"):
            create_tf1_call_model_function(net.graph, net.session, net.y, np.zeros(3))
        # A real tf.compat.v1.Session of another graph can never run graph: refused up front.
        with pytest.raises(ValueError, match=r"session must run graph.*Session of another tf.Graph"):
            create_tf1_call_model_function(net.graph, other.session, net.y, net.x)
        with pytest.raises(ValueError, match=r"y \(.*\) must be a tensor of graph"):
            create_tf1_call_model_function(net.graph, net.session, other.y, net.x)
    finally:
        other.close()


def test_gradients_built_before_finalize_are_used_after(net):
    before = create_tf1_call_model_function(net.graph, net.session, net.y, net.x)
    net.graph.finalize()
    after = create_tf1_call_model_function(net.graph, net.session, net.y, net.x)
    batch = random_image()[None]
    np.testing.assert_array_equal(after(batch)[INPUT_OUTPUT_GRADIENTS], before(batch)[INPUT_OUTPUT_GRADIENTS])


def test_cached_gradients_do_not_keep_a_dropped_graph_alive():
    conv_net = build_conv_net()
    call = create_tf1_call_model_function(conv_net.graph, conv_net.session, conv_net.y, conv_net.x)
    call(random_image()[None])
    graph_reference = weakref.ref(conv_net.graph)
    conv_net.close()
    del conv_net, call
    gc.collect()
    assert graph_reference() is None


def test_eager_mode_is_left_on():
    assert tf.executing_eagerly()
