"""The shared adapter template (saliencykit._adapter) with a fourth "framework": NumPy.

The NumPy adapter below is the whole framework part of an adapter: input
conversion, a forward pass and analytic gradients. Keys, targets, the
``call_model_args`` override, the answer and its checks come from the template.
"""

from __future__ import annotations

import inspect
import threading
import time

import numpy as np
import pytest

import saliencykit.core as saliency
from saliencykit import _adapter
from saliencykit._adapter import Adapter, Gradients, Holds

GRADIENTS = saliency.INPUT_OUTPUT_GRADIENTS
OUTPUTS = saliency.OUTPUT_LAYER_VALUES
LAYER_VALUES = saliency.CONVOLUTION_LAYER_VALUES
LAYER_GRADIENTS = saliency.CONVOLUTION_OUTPUT_GRADIENTS


class NumpyAdapter(Adapter):
    """A linear model: a 1x1 "convolution" ``features = x @ mix`` (the layer), ``sum(features) @ head``."""

    guided_unsupported = "a linear model has no ReLU to guide"

    def __init__(self, mix: np.ndarray, head: np.ndarray, target: int, layer: bool = False) -> None:
        super().__init__(target, has_layer=layer)
        self.mix, self.head = mix, head
        self.forward_calls = 0

    def convert(self, x_value_batch):
        return np.asarray(x_value_batch, np.float64)

    def forward(self, inputs, target):
        self.forward_calls += 1
        return self.select((inputs @ self.mix).sum(axis=(1, 2)) @ self.head, target)

    def gradients(self, inputs, target, *, want_input, want_layer):
        features = inputs @ self.mix
        selected = self.select(features.sum(axis=(1, 2)) @ self.head, target)  # checks the target too
        layer_gradients = np.broadcast_to(self.head[:, target], features.shape)
        return Gradients(selected, layer_gradients @ self.mix.T, features, layer_gradients)

    @staticmethod
    def select(outputs, target):
        is_array = lambda value: isinstance(value, np.ndarray)  # noqa: E731
        return _adapter.select_target(outputs, target, is_array=is_array, flatten=np.reshape)


def make_model(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3, 4)), rng.normal(size=(4, 5)), rng.uniform(size=(2, 6, 7, 3))


def test_the_framework_part_is_short() -> None:
    assert len(inspect.getsource(NumpyAdapter).splitlines()) <= 30


def test_keys_and_targets_come_from_the_template() -> None:
    mix, head, images = make_model()
    call = NumpyAdapter(mix, head, target=2, layer=True)
    answer = call(images, expected_keys=[OUTPUTS, GRADIENTS, LAYER_VALUES, LAYER_GRADIENTS])
    assert list(answer) == [OUTPUTS, GRADIENTS, LAYER_VALUES, LAYER_GRADIENTS]
    np.testing.assert_allclose(answer[OUTPUTS], (images @ mix).sum(axis=(1, 2)) @ head[:, 2])
    np.testing.assert_allclose(answer[GRADIENTS], np.broadcast_to(mix @ head[:, 2], images.shape))
    assert call.forward_calls == 0  # the values came with the gradients
    assert list(call(images)) == [GRADIENTS]  # the default key, and only the keys asked for
    only_outputs = call(images, call_model_args={"target": -1}, expected_keys=[OUTPUTS])
    np.testing.assert_allclose(only_outputs[OUTPUTS], (images @ mix).sum(axis=(1, 2)) @ head[:, -1])
    assert call.forward_calls == 1


def test_core_methods_run_through_a_template_adapter() -> None:
    mix, head, images = make_model(1)
    call = NumpyAdapter(mix, head, target=1, layer=True)
    attribution = saliency.IntegratedGradients().GetMask(images[0], call, x_steps=4, batch_size=4)
    np.testing.assert_allclose(attribution, images[0] * (mix @ head[:, 1]), rtol=1e-12)  # exact for linear f
    grad_cam = saliency.GradCam().GetMask(images[0], call, should_resize=False, three_dims=False)
    assert grad_cam.shape == (6, 7)


@pytest.mark.parametrize(
    ("target", "keys", "error", "match"),
    [
        (0, ["NOT_A_KEY"], ValueError, "unknown expected_keys"),
        (0, [LAYER_VALUES], ValueError, "CONVOLUTION_\\* keys need the layer= argument"),
        (0, [saliency.GUIDED_INPUT_OUTPUT_GRADIENTS], ValueError, "no ReLU to guide"),
        (5, [OUTPUTS], ValueError, "target class 5 is out of range for a model with 5 outputs"),
    ],
)
def test_errors_come_from_the_template(target, keys, error, match) -> None:
    mix, head, images = make_model()
    with pytest.raises(error, match=match):
        NumpyAdapter(mix, head, target=target)(images, expected_keys=keys)


def test_targets_are_checked_at_construction_and_per_call() -> None:
    mix, head, images = make_model()
    with pytest.raises(TypeError, match="target must be a class index"):
        NumpyAdapter(mix, head, target=True)
    with pytest.raises(TypeError, match="target must be a class index"):
        NumpyAdapter(mix, head, target=0)(images, call_model_args=1.5)


def test_a_missing_gradient_is_an_error() -> None:
    class NoGradient(NumpyAdapter):
        def gradients(self, inputs, target, *, want_input, want_layer):
            return (
                super()
                .gradients(inputs, target, want_input=want_input, want_layer=want_layer)
                ._replace(input_gradients=None)
            )

    mix, head, images = make_model()
    with pytest.raises(ValueError, match="does not depend differentiably on the input"):
        NoGradient(mix, head, target=0)(images)


def test_per_row_targets_and_predicted_come_from_the_template() -> None:
    """The template's default row operations (NumPy's): no framework code for per-row targets."""
    mix, head, images = make_model()
    images = np.concatenate([images, -images])  # rows with different top classes
    outputs = (images @ mix).sum(axis=(1, 2)) @ head
    call = NumpyAdapter(mix, head, target=0)
    rows = np.arange(len(images))
    twice = lambda o: 2 * o[:, 1]  # noqa: E731
    answer = call(images, call_model_args=[3, twice, "predicted", -1], expected_keys=[OUTPUTS])[OUTPUTS]
    np.testing.assert_allclose(answer, [outputs[0, 3], 2 * outputs[1, 1], outputs[2].max(), outputs[3, -1]])
    top = outputs.argmax(axis=1)
    assert len(set(top.tolist())) > 1
    np.testing.assert_array_equal(call.predicted_classes(images), top)
    predicted = call(images, call_model_args="predicted", expected_keys=[OUTPUTS])[OUTPUTS]
    np.testing.assert_allclose(predicted, outputs[rows, top])
    assert call.resolve_call_model_args(images, ["predicted", 1, None, {"target": "predicted"}], 3) == [
        top[0],
        1,
        None,
        {"target": top[3]},
    ]
    packed = call.pack_call_model_args([None, 4, {"target": 2}, twice])
    assert packed == {"target": [0, 4, 2, twice]} and Adapter.SUPPORTS_ROW_TARGETS
    with pytest.raises(
        ValueError, match=r"target has 3 per-row entries, expected one per row of the batch \(4\)"
    ):
        call(images, call_model_args=np.array([0, 1, 2]), expected_keys=[OUTPUTS])


def test_one_did_you_mean_rule_for_layer_names() -> None:
    layers = [object(), object(), object()]
    named = list(zip(["features.conv1", "features.conv2", "head"], layers, strict=True))
    assert _adapter.find_layer("head", named, object, kind="a layer", member="layer") is layers[2]
    with pytest.raises(
        ValueError, match=r"'features.conv3' is not a layer of the model; similar: \['features"
    ):
        _adapter.find_layer("features.conv3", named, object, kind="a layer", member="layer")
    with pytest.raises(ValueError, match="shared by 2 layers"):
        _adapter.find_layer("x", [("x", layers[0]), ("x", layers[1])], object, kind="a layer", member="layer")
    with pytest.raises(TypeError, match="layer must be a layer of the model or its name, got int"):
        _adapter.find_layer(3, named, str, kind="a layer", member="layer")


class Part:
    """A stand-in for a submodule: one piece of state a call changes."""

    def __init__(self) -> None:
        self.state = "original"


def test_holds_save_on_the_first_call_and_restore_on_the_last() -> None:
    holds, part = Holds(), Part()

    def save(p: Part) -> str:
        state, p.state = p.state, "changed"
        return state

    def restore(p: Part, state: str) -> None:
        p.state = state

    with holds.hold([part], "a", save, restore):
        with holds.hold([part], "a", save, restore):  # a concurrent call of the same kind shares the hold
            assert (part.state, holds.users(part)) == ("changed", 2)
        assert part.state == "changed"
    assert (part.state, holds.users(part)) == ("original", 0)

    with pytest.raises(RuntimeError, match="boom"), holds.hold([part], "a", save, restore, then=_fail):
        pass
    assert (part.state, holds.users(part)) == ("original", 0)


def _fail(parts: list) -> None:
    raise RuntimeError("boom")


def test_holds_of_another_kind_wait() -> None:
    holds, part = Holds(), Part()
    events: list[str] = []

    def other_kind() -> None:
        with holds.hold([part], "b"):
            events.append("b")

    with holds.hold([part], "a"):
        thread = threading.Thread(target=other_kind)
        thread.start()
        time.sleep(0.1)  # the other kind waits for this hold to end
        events.append("a done")
    thread.join(timeout=5)
    assert events == ["a done", "b"]
