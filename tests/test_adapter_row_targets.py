"""Per-row targets, ``target="predicted"`` and the batch scheduler's protocol of the adapters.

One tiny network, ``conv 3x3 (4 channels) -> ReLU -> global average pool ->
dense (5 classes)``, with the same NumPy weights in PyTorch, Keras and JAX. A
batch whose row i has its own target must answer row i exactly as a call on
that row alone with that target does, for every key; ``"predicted"`` is each
row's own top class; ``pack_call_model_args`` and ``resolve_call_model_args``
are what the batch scheduler (``GetMaskBatch``) relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import saliencykit.core as saliency
from saliencykit._adapter import Adapter

GRADIENTS = saliency.INPUT_OUTPUT_GRADIENTS
OUTPUTS = saliency.OUTPUT_LAYER_VALUES
LAYER_VALUES = saliency.CONVOLUTION_LAYER_VALUES
LAYER_GRADIENTS = saliency.CONVOLUTION_OUTPUT_GRADIENTS
GUIDED = saliency.GUIDED_INPUT_OUTPUT_GRADIENTS
PLAIN_KEYS = [GRADIENTS, OUTPUTS, LAYER_VALUES, LAYER_GRADIENTS]

HEIGHT, WIDTH, IN_CHANNELS, CONV_CHANNELS, N_CLASSES = 5, 6, 3, 4, 5
N_ROWS = 6
FRAMEWORKS = ("torch", "keras", "jax")


def make_weights(seed: int = 13) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "kernel": rng.normal(0, 0.5, (3, 3, IN_CHANNELS, CONV_CHANNELS)).astype(np.float32),  # HWIO
        "bias": rng.normal(0, 0.2, CONV_CHANNELS).astype(np.float32),
        "dense": rng.normal(0, 2.0, (CONV_CHANNELS, N_CLASSES)).astype(np.float32),
        "dense_bias": rng.normal(0, 0.2, N_CLASSES).astype(np.float32),
    }


WEIGHTS = make_weights()


class Framework:
    """One framework's adapter factory and its own callables on an output batch."""

    def __init__(
        self,
        name: str,
        make: Callable[[Any], Adapter],
        softmax: Callable[[Any], Any],
        forward_rows: list[int],
    ) -> None:
        self.name, self.make, self.softmax, self.forward_rows = name, make, softmax, forward_rows
        self.call = make(2)
        self.keys = PLAIN_KEYS + ([GUIDED] if name != "jax" else [])

    def probability(self, index: int) -> Callable[[Any], Any]:
        """A callable target: the softmax probability of class ``index``, shape ``[k]``."""
        return lambda outputs: self.softmax(outputs)[:, index]


def build_torch() -> Framework:
    torch = pytest.importorskip("torch")
    from torch import nn

    from saliencykit.torch import make_call_model_function

    conv = nn.Conv2d(IN_CHANNELS, CONV_CHANNELS, 3, padding=1)
    dense = nn.Linear(CONV_CHANNELS, N_CLASSES)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(WEIGHTS["kernel"].transpose(3, 2, 0, 1)))
        conv.bias.copy_(torch.from_numpy(WEIGHTS["bias"]))
        dense.weight.copy_(torch.from_numpy(WEIGHTS["dense"].T))
        dense.bias.copy_(torch.from_numpy(WEIGHTS["dense_bias"]))
    relu = nn.ReLU()
    model = nn.Sequential(conv, relu, nn.AdaptiveAvgPool2d(1), nn.Flatten(), dense).eval()
    forward_rows: list[int] = []
    model.register_forward_pre_hook(lambda module, args: forward_rows.append(int(args[0].shape[0])))
    return Framework(
        "torch",
        lambda target: make_call_model_function(model, target, layer=relu),
        lambda outputs: torch.softmax(outputs, dim=1),
        forward_rows,
    )


def build_keras() -> Framework:
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    try:
        from saliencykit.keras import make_call_model_function
    except ImportError as error:
        pytest.skip(f"saliencykit.keras is not available: {error}")
    import tensorflow as tf

    conv = keras.layers.Conv2D(CONV_CHANNELS, 3, padding="same", activation="relu")
    dense = keras.layers.Dense(N_CLASSES)
    inputs = keras.Input((HEIGHT, WIDTH, IN_CHANNELS))
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(conv(inputs))))
    conv.set_weights([WEIGHTS["kernel"], WEIGHTS["bias"]])
    dense.set_weights([WEIGHTS["dense"], WEIGHTS["dense_bias"]])
    return Framework(
        "keras",
        lambda target: make_call_model_function(model, target, layer=conv),
        lambda outputs: tf.nn.softmax(outputs, axis=1),
        [],
    )


def build_jax() -> Framework:
    jax = pytest.importorskip("jax")
    from saliencykit.jax import make_call_model_function

    traces: list[int] = []

    def features_fn(params: dict, x: Any) -> Any:
        traces.append(int(x.shape[0]))  # runs once per trace, not per call
        convolved = jax.lax.conv_general_dilated(
            x, params["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jax.nn.relu(convolved + params["bias"])

    def head_fn(params: dict, features: Any) -> Any:
        return features.mean(axis=(1, 2)) @ params["dense"] + params["dense_bias"]

    def apply_fn(params: dict, x: Any) -> Any:
        return head_fn(params, features_fn(params, x))

    return Framework(
        "jax",
        lambda target: make_call_model_function(
            apply_fn, target, params=WEIGHTS, layer=(features_fn, head_fn)
        ),
        lambda outputs: jax.nn.softmax(outputs, axis=1),
        traces,
    )


BUILDERS = {"torch": build_torch, "keras": build_keras, "jax": build_jax}


@pytest.fixture(scope="module")
def built() -> dict[str, Framework | str]:
    frameworks: dict[str, Framework | str] = {}
    for name, build in BUILDERS.items():
        try:
            frameworks[name] = build()
        except pytest.skip.Exception as skipped:
            frameworks[name] = str(skipped)
    return frameworks


@pytest.fixture(params=FRAMEWORKS)
def fw(request: pytest.FixtureRequest, built: dict[str, Framework | str]) -> Framework:
    framework = built[request.param]
    if isinstance(framework, str):
        pytest.skip(framework)
    return framework


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.normal(0.0, 1.5, (N_ROWS, HEIGHT, WIDTH, IN_CHANNELS)).astype(np.float32)


def logits(fw: Framework, images: np.ndarray) -> np.ndarray:
    """The model's ``[N, classes]`` outputs, one class-index call per class."""
    return np.stack(
        [fw.call(images, call_model_args=c, expected_keys=[OUTPUTS])[OUTPUTS] for c in range(N_CLASSES)], 1
    )


def assert_rows_match_single_calls(
    fw: Framework, images: np.ndarray, answer: dict[str, np.ndarray], row_args: list[Any], keys: list[str]
) -> None:
    """Row i of ``answer`` equals a call on ``images[i:i+1]`` with ``call_model_args=row_args[i]``."""
    for row, args in enumerate(row_args):
        alone = fw.call(images[row : row + 1], call_model_args=args, expected_keys=keys)
        for key in keys:
            assert answer[key].shape[0] == len(row_args)
            np.testing.assert_allclose(
                answer[key][row], alone[key][0], rtol=1e-4, atol=1e-6, err_msg=f"{fw.name} {key} row {row}"
            )


# --------------------------------------------------------------------------
# Per-row targets.
# --------------------------------------------------------------------------


def per_row_forms(fw: Framework) -> dict[str, list[Any] | np.ndarray]:
    probability_1, probability_3 = fw.probability(1), fw.probability(3)
    column = lambda outputs: outputs[:, 4:5] * 2.0  # noqa: E731  ([k, 1], flattened)
    return {
        "int array": np.array([0, 3, 1, 3, 4, 2]),
        "list of ints, negative ones too": [4, -1, 0, -5, 2, 2],
        "tuple of callables and ints": (probability_1, 2, probability_3, probability_1, column, 0),
        "with predicted": ["predicted", probability_1, 3, "predicted", 0, probability_1],
    }


@pytest.mark.parametrize(
    "form", ["int array", "list of ints, negative ones too", "tuple of callables and ints", "with predicted"]
)
def test_per_row_targets_answer_each_row_as_a_call_on_that_row(fw, images, form) -> None:
    targets = per_row_forms(fw)[form]
    answer = fw.call(images, call_model_args={"target": targets}, expected_keys=fw.keys)
    assert_rows_match_single_calls(fw, images, answer, list(targets), fw.keys)
    outputs_only = fw.call(images, call_model_args=targets, expected_keys=[OUTPUTS])  # the forward pass
    np.testing.assert_allclose(outputs_only[OUTPUTS], answer[OUTPUTS], rtol=1e-5, atol=1e-6)


def test_per_row_targets_given_at_construction(fw, images) -> None:
    targets = np.array([1, 0, 4, 4, 2, 3])
    call = fw.make(targets)
    expected = fw.call(images, call_model_args=targets, expected_keys=[GRADIENTS, OUTPUTS])
    answer = call(images, expected_keys=[GRADIENTS, OUTPUTS])
    for key in (GRADIENTS, OUTPUTS):
        np.testing.assert_allclose(answer[key], expected[key], rtol=1e-6)
    np.testing.assert_allclose(answer[OUTPUTS], logits(fw, images)[np.arange(N_ROWS), targets], rtol=1e-5)


def test_a_callable_gets_the_rows_that_share_it_only(fw, images) -> None:
    seen: list[tuple[str, int]] = []

    def recording(name: str, index: int) -> Callable[[Any], Any]:
        probability = fw.probability(index)

        def target(outputs: Any) -> Any:
            seen.append((name, int(outputs.shape[0])))
            return probability(outputs)

        return target

    first, second = recording("first", 0), recording("second", 2)
    answer = fw.call(images, call_model_args=[first, 1, second, first, first, 4], expected_keys=[OUTPUTS])
    assert sorted(seen) == [("first", 3), ("second", 1)]
    probabilities = np.exp(logits(fw, images))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    for row, index in [(0, 0), (2, 2), (3, 0), (4, 0)]:
        np.testing.assert_allclose(answer[OUTPUTS][row], probabilities[row, index], rtol=1e-5)


def test_per_row_targets_that_agree_are_one_target(fw, images) -> None:
    same = fw.call(images, call_model_args=np.full(N_ROWS, 3), expected_keys=[GRADIENTS])
    scalar = fw.call(images, call_model_args=3, expected_keys=[GRADIENTS])
    np.testing.assert_array_equal(same[GRADIENTS], scalar[GRADIENTS])


def test_predicted_explains_each_rows_own_top_class(fw, images) -> None:
    top = logits(fw, images).argmax(axis=1)
    assert len(set(top.tolist())) >= 2, "the test needs rows with different top classes"
    np.testing.assert_array_equal(fw.call.predicted_classes(images), top)
    expected = fw.call(images, call_model_args=top, expected_keys=fw.keys)
    for call, args in [
        (fw.call, "predicted"),
        (fw.call, {"target": "predicted"}),
        (fw.make("predicted"), None),
    ]:
        answer = call(images, call_model_args=args, expected_keys=fw.keys)
        for key in fw.keys:
            np.testing.assert_allclose(answer[key], expected[key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_public_select_target_takes_per_row_targets(fw) -> None:
    module = __import__(f"saliencykit.{fw.name}", fromlist=["select_target"])
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    if fw.name == "torch":
        import torch

        outputs: Any = torch.from_numpy(values)
    elif fw.name == "keras":
        import tensorflow as tf

        outputs = tf.constant(values)
    else:
        import jax.numpy as jnp

        outputs = jnp.asarray(values)
    np.testing.assert_array_equal(np.asarray(module.select_target(outputs, [1, -1, 0])), [1.0, 7.0, 8.0])
    np.testing.assert_array_equal(np.asarray(module.select_target(outputs, "predicted")), [3.0, 7.0, 11.0])
    picked = module.select_target(outputs, (lambda o: o[:, 0] * 10, 2, "predicted"))
    np.testing.assert_array_equal(np.asarray(picked), [0.0, 6.0, 11.0])


def test_jax_compiles_per_row_classes_once(built, images) -> None:
    fw = built["jax"]
    if isinstance(fw, str):
        pytest.skip(fw)
    expected = logits(fw, images)
    fw.call(images, call_model_args=np.array([0, 1, 2, 3, 4, 0]), expected_keys=[GRADIENTS, OUTPUTS])
    fw.call(images, call_model_args=np.array([0, 1, 2, 3, 4, 0]), expected_keys=[OUTPUTS])
    traces = len(fw.forward_rows)
    for classes in ([4, 4, 1, 0, 2, 3], [1, 2, 3, 4, 0, 1], [-1, 0, 0, 0, 0, 0]):
        answer = fw.call(images, call_model_args=np.array(classes), expected_keys=[GRADIENTS, OUTPUTS])
        np.testing.assert_allclose(
            answer[OUTPUTS], expected[np.arange(N_ROWS), classes], rtol=1e-5, atol=1e-6
        )
        forward = fw.call(images, call_model_args=list(classes), expected_keys=[OUTPUTS])
        np.testing.assert_allclose(forward[OUTPUTS], answer[OUTPUTS], rtol=1e-6)
    assert len(fw.forward_rows) == traces  # new classes are new arguments, not a new compiled function


# --------------------------------------------------------------------------
# Bad per-row targets.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "match"),
    [
        (np.array([0, 1, 2]), r"target has 3 per-row entries, expected one per row of the batch \(6\)"),
        ([0, 1, 2, 3, 4, 0, 1], r"target has 7 per-row entries, expected one per row of the batch \(6\)"),
        (np.array([0, 1, 7, 1, 1, 1]), r"target\[2\] = 7 is out of range for a model with 5 outputs"),
        ([0, 1, 2, -6, 1, 1], r"target\[3\] = -6 is out of range .* expected a class index in \[-5, 5\)"),
        (np.array([0.0, 1, 2, 3, 4, 0]), "an array must have an integer dtype .* got dtype float64"),
        (np.array([True, False] * 3), "must have an integer dtype .* got dtype bool"),
        (np.zeros((6, 1), int), r"target as an array must have shape \[N\] .* got shape \(6, 1\)"),
        ([0, 1, 2.5, 3, 4, 0], r"target\[2\] must be a class index \(int\), a callable or 'predicted'"),
        ([0, 1, "cat", 3, 4, 0], r"target\[2\] must be a class index .* got str 'cat'"),
    ],
)
def test_bad_per_row_targets(fw, images, target, match) -> None:
    with pytest.raises(ValueError, match=match):
        fw.call(images, call_model_args={"target": target}, expected_keys=[GRADIENTS])
    with pytest.raises(ValueError, match=match):
        fw.call(images, call_model_args=target, expected_keys=[OUTPUTS])


def test_a_bad_per_row_target_is_refused_at_construction(fw) -> None:
    with pytest.raises(ValueError, match="integer dtype"):
        fw.make(np.array([0.5, 1.0]))


def test_predicted_needs_a_class_output(built, images) -> None:
    fw = built["torch"]
    if isinstance(fw, str):
        pytest.skip(fw)
    from saliencykit.torch import select_target

    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"a 'predicted' target needs a \[batch, classes\] model output"):
        select_target(torch.zeros(3, 2, 2), "predicted")
    with pytest.raises(TypeError, match="target must be a class index"):
        fw.call(images, call_model_args="best")


# --------------------------------------------------------------------------
# The batch scheduler's protocol.
# --------------------------------------------------------------------------


def test_every_adapter_says_it_takes_per_row_targets(fw) -> None:
    assert fw.call.SUPPORTS_ROW_TARGETS is True
    assert callable(fw.call.pack_call_model_args) and callable(fw.call.resolve_call_model_args)


def test_pack_call_model_args_forms(fw) -> None:
    call = fw.call  # default target 2
    probability = fw.probability(0)
    shared = {"target": 3}
    assert call.pack_call_model_args([shared, shared, shared]) is shared
    assert call.pack_call_model_args([None, 2, {"target": 2}]) == {"target": 2}
    packed = call.pack_call_model_args([None, 4, {"target": -1}])
    assert list(packed) == ["target"]
    np.testing.assert_array_equal(packed["target"], [2, 4, -1])
    assert packed["target"].dtype == np.int64
    assert call.pack_call_model_args([probability, {"target": probability}]) == {"target": probability}
    assert call.pack_call_model_args(["predicted", {"target": "predicted"}]) == {"target": "predicted"}
    assert call.pack_call_model_args([None, probability, "predicted"]) == {
        "target": [2, probability, "predicted"]
    }
    extras = call.pack_call_model_args([{"target": 1, "note": "a"}, {"target": 0, "note": "a"}])
    assert extras["note"] == "a" and extras["target"].tolist() == [1, 0]


def test_a_packed_call_answers_each_row_as_its_own_args(fw, images) -> None:
    probability = fw.probability(1)
    row_args = [None, 3, {"target": 0}, probability, "predicted", {"target": probability}]
    packed = fw.call.pack_call_model_args(row_args)
    answer = fw.call(images, call_model_args=packed, expected_keys=fw.keys)
    assert_rows_match_single_calls(fw, images, answer, row_args, fw.keys)


@pytest.mark.parametrize(
    ("row_args", "error", "match"),
    [
        ([], ValueError, "row_args must hold one call_model_args per row of the batch, got none"),
        ([1, np.array([1, 2])], ValueError, r"row_args\[1\] must give its row one target .* got per-row"),
        ([{"target": [1, 2]}], ValueError, r"row_args\[0\] must give its row one target"),
        (
            [{"target": 1, "note": "a"}, {"target": 2, "note": "b"}],
            ValueError,
            r"equal entries other than 'target': expected .*'note': 'a'.* got row_args\[1\] .*'note': 'b'",
        ),
        ([{"target": 1, "note": "a"}, 2], ValueError, r"got row_args\[1\] \{\}"),
        ([1, 2.5], TypeError, "target must be a class index"),
    ],
)
def test_pack_call_model_args_errors(fw, row_args, error, match) -> None:
    with pytest.raises(error, match=match):
        fw.call.pack_call_model_args(row_args)


def test_resolve_call_model_args_finds_each_examples_top_class(fw, images) -> None:
    call = fw.make("predicted")
    top = logits(fw, images).argmax(axis=1)
    kept = {"target": 1, "note": "x"}
    example_args = [None, 3, {"target": "predicted", "note": "y"}, kept, "predicted", None]
    fw.forward_rows.clear()
    resolved = call.resolve_call_model_args(images, example_args, batch_size=2)
    assert resolved == [int(top[0]), 3, {"target": int(top[2]), "note": "y"}, kept, int(top[4]), int(top[5])]
    assert resolved[3] is kept and example_args[2] == {"target": "predicted", "note": "y"}  # not changed
    assert all(type(value) is int for value in (resolved[0], resolved[2]["target"], resolved[4]))
    if fw.name == "torch":  # forward passes on the four "predicted" examples only, at most two at a time
        assert fw.forward_rows == [2, 2]
    unchanged = fw.call.resolve_call_model_args(images[:2], [None, {"target": 0}], batch_size=1)
    assert unchanged == [None, {"target": 0}]


def test_resolve_call_model_args_takes_a_sequence_of_examples(fw, images) -> None:
    resolved = fw.call.resolve_call_model_args(list(images[:3]), ["predicted"] * 3, batch_size=8)
    assert resolved == logits(fw, images[:3]).argmax(axis=1).tolist()


@pytest.mark.parametrize(
    ("example_args", "batch_size", "match"),
    [
        ([None] * 2, 4, r"example_args must hold one call_model_args per example \(3\), got 2"),
        ([None] * 3, 0, "batch_size must be a positive integer, got 0"),
        ([None] * 3, 2.0, "batch_size must be a positive integer, got 2.0"),
    ],
)
def test_resolve_call_model_args_errors(fw, images, example_args, batch_size, match) -> None:
    with pytest.raises(ValueError, match=match):
        fw.call.resolve_call_model_args(images[:3], example_args, batch_size)
