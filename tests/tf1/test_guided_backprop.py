"""Tests of :class:`saliencykit.tf1.GuidedBackprop`: hand-computed guided gradients, an untouched graph."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import saliency.tf1 as reference  # noqa: E402

import saliencykit.core as core  # noqa: E402
import saliencykit.tf1 as saliency  # noqa: E402
from saliencykit.core import GUIDED_INPUT_OUTPUT_GRADIENTS, INPUT_OUTPUT_GRADIENTS  # noqa: E402

from .nets import build_conv_net, build_tiny_relu_net, random_image, tiny_net_gradients, v1  # noqa: E402

FEATURES = [np.array([0.3, 0.8, -0.2]), np.array([1.0, 1.0, 1.0]), np.array([-0.6, 1.2, 0.9])]


def graph_snapshot(net):
    """The graph's definition and the values of its variables."""
    with net.graph.as_default():
        variables = v1.global_variables()
    return (
        net.graph.as_graph_def(),
        [op.name for op in net.graph.get_operations()],
        net.session.run(variables),
    )


@pytest.mark.parametrize("features", FEATURES)
def test_guided_gradient_equals_the_hand_computation(tiny_net, features):
    method = saliency.GuidedBackprop(tiny_net.graph, tiny_net.session, tiny_net.y, tiny_net.x)
    guided = method.GetMask(features)
    plain = saliency.GradientSaliency(tiny_net.graph, tiny_net.session, tiny_net.y, tiny_net.x).GetMask(
        features
    )
    np.testing.assert_allclose(
        guided, tiny_net_gradients(tiny_net, features, guided=True), rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(
        plain, tiny_net_gradients(tiny_net, features, guided=False), rtol=1e-12, atol=1e-14
    )
    method.close()


def test_guided_differs_from_plain_where_negative_gradients_are_cut(tiny_net):
    method = saliency.GuidedBackprop(tiny_net.graph, tiny_net.session, tiny_net.y, tiny_net.x)
    features = FEATURES[2]  # the second layer's gradient is negative at an active first-layer unit
    assert not np.allclose(method.GetMask(features), tiny_net_gradients(tiny_net, features, guided=False))
    method.close()


def test_relu6_is_guided_too():
    tiny = build_tiny_relu_net("relu6")
    try:
        features = np.array([1.0, 1.0, 1.0])  # one second-layer ReLU6 input is above 6
        method = saliency.GuidedBackprop(tiny.graph, tiny.session, tiny.y, tiny.x)
        expected = tiny_net_gradients(tiny, features, guided=True, upper=6.0)
        np.testing.assert_allclose(method.GetMask(features), expected, rtol=1e-12, atol=1e-14)
        assert not np.allclose(expected, tiny_net_gradients(tiny, features, guided=False, upper=6.0))
        method.close()
    finally:
        tiny.close()


def test_mask_equals_the_reference(tmp_path):
    # The reference saves a checkpoint and adds saver ops to the graph: give it its own net and path.
    ours_net, reference_net = build_conv_net(), build_conv_net()
    try:
        image = random_image()
        ours = saliency.GuidedBackprop(ours_net.graph, ours_net.session, ours_net.y, ours_net.x)
        theirs = reference.GuidedBackprop(
            reference_net.graph,
            reference_net.session,
            reference_net.y,
            reference_net.x,
            tmp_ckpt_path=str(tmp_path / "guided_ckpt"),
        )
        ours_mask = ours.GetMask(image, {ours_net.class_index: 3})
        theirs_mask = theirs.GetMask(image, {reference_net.class_index: 3})
        np.testing.assert_allclose(ours_mask, theirs_mask, rtol=1e-6, atol=1e-8)
        plain = saliency.GradientSaliency(ours_net.graph, ours_net.session, ours_net.y, ours_net.x)
        assert not np.allclose(ours_mask, plain.GetMask(image, {ours_net.class_index: 3}))
        ours.close()
        theirs.guided_sess.close()
    finally:
        ours_net.close()
        reference_net.close()


def test_graph_session_and_disk_are_left_untouched(net, tmp_path, monkeypatch):
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    system_tmp_before = set(os.listdir("/tmp"))
    graph_def, op_names, values = graph_snapshot(net)

    method = saliency.GuidedBackprop(net.graph, net.session, net.y, net.x, tmp_ckpt_path="/tmp/ignored")
    method.GetMask(random_image(), {net.class_index: 1})
    method.GetSmoothedMask(random_image(), nsamples=2, seed=0)

    graph_def_after, op_names_after, values_after = graph_snapshot(net)
    assert op_names_after == op_names
    assert graph_def_after == graph_def
    for before, after in zip(values, values_after, strict=True):
        np.testing.assert_array_equal(before, after)
    assert not net.graph.finalized and method.guided_graph.finalized
    assert os.listdir(private_tmp) == []
    new_in_tmp = set(os.listdir("/tmp")) - system_tmp_before
    assert not [name for name in new_in_tmp if "ckpt" in name or "checkpoint" in name or name == "ignored"]
    method.close()


def test_copy_is_a_snapshot_of_both_variable_kinds(net):
    method = saliency.GuidedBackprop(net.graph, net.session, net.y, net.x)
    image = random_image()
    before = method.GetMask(image)
    with net.graph.as_default():
        kernel = [v for v in v1.global_variables() if v.name.startswith("conv/kernel")][0]
        bias = [v for v in v1.global_variables() if v.name.startswith("conv/bias")][0]
        zero_bias = bias.assign(tf.zeros_like(bias))
    # The copy holds the values of the resource kernel and of the ref bias.
    copied = method.guided_sess.run(["conv/bias:0", "conv/kernel/Read/ReadVariableOp:0"])
    np.testing.assert_array_equal(copied[0], net.session.run(bias))
    np.testing.assert_array_equal(copied[1], net.session.run(kernel))
    net.session.run(zero_bias)
    np.testing.assert_array_equal(method.GetMask(image), before)
    method.close()


def test_feed_dict_keys_by_tensor_or_name_select_the_class(net):
    method = saliency.GuidedBackprop(net.graph, net.session, net.y, net.x)
    image = random_image()
    by_tensor = method.GetMask(image, {net.class_index: 0})
    by_name = method.GetMask(image, {net.class_index.name: 0})
    default = method.GetMask(image)
    np.testing.assert_array_equal(by_tensor, by_name)
    assert not np.allclose(by_tensor, default)
    np.testing.assert_array_equal(method.GetMask(image, {net.class_index: 2}), default)
    method.close()


def test_bad_feed_dict_keys_raise(net, tiny_net):
    method = saliency.GuidedBackprop(net.graph, net.session, net.y, net.x)
    with pytest.raises(TypeError, match=r"feed_dict keys must be tensors of graph or tensor names, got int"):
        method.GetMask(random_image(), {3: 0})
    with pytest.raises(ValueError, match=r"feed_dict key .* belongs to another graph"):
        method.GetMask(random_image(), {tiny_net.x: np.zeros((1, 3))})
    with pytest.raises(ValueError, match=r"feed_dict key 'no_such_tensor:0' is not a tensor of graph"):
        method.GetMask(random_image(), {"no_such_tensor:0": 0})
    method.close()


def test_smoothed_mask_batches_noisy_samples(net):
    with saliency.GuidedBackprop(net.graph, net.session, net.y, net.x) as method:
        one_by_one = method.GetSmoothedMask(random_image(), nsamples=4, seed=1)
        batched = method.GetSmoothedMask(random_image(), nsamples=4, seed=1, batch_size=4)
        np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-9)
        expected = core.GuidedBackprop().GetSmoothedMask(
            random_image(), method.call_model_function, nsamples=4, seed=1
        )
        np.testing.assert_allclose(one_by_one, expected, rtol=1e-6)


def test_call_model_function_answers_guided_keys_only(net):
    with saliency.GuidedBackprop(net.graph, net.session, net.y, net.x) as method:
        answer = method.call_model_function(random_image()[None])
        assert set(answer) == {GUIDED_INPUT_OUTPUT_GRADIENTS}
        with pytest.raises(ValueError, match=r"'INPUT_OUTPUT_GRADIENTS'.*answers"):
            method.call_model_function(random_image()[None], expected_keys=[INPUT_OUTPUT_GRADIENTS])


def test_close_closes_the_private_session(net):
    method = saliency.GuidedBackprop(net.graph, net.session, net.y, net.x)
    method.close()
    method.close()  # closing twice is fine
    with pytest.raises(RuntimeError, match="closed Session"):
        method.GetMask(random_image())
    assert net.session.run(net.y, {net.x: random_image()[None]}).shape == (1,)


def test_graph_without_relu_warns_and_gives_plain_gradients():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float64, (None, 2))
        y = tf.reduce_sum(tf.tanh(x) * tf.constant([1.0, -1.0], tf.float64), axis=1)
    with v1.Session(graph=graph) as session:
        with pytest.warns(UserWarning, match="no Relu or Relu6"):
            method = saliency.GuidedBackprop(graph, session, y, x)
        point = np.array([0.3, -0.5])
        np.testing.assert_allclose(method.GetMask(point), [1 - np.tanh(0.3) ** 2, -(1 - np.tanh(-0.5) ** 2)])
        method.close()
