"""Tests of saliencykit.core.base: keys, output checks, batching, the base class."""

from __future__ import annotations

import re

import numpy as np
import pytest

import saliencykit.core as sk
from saliencykit.core import base
from saliencykit.core.base import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
    CoreSaliency,
    call_model,
    call_model_in_batches,
    check_call_model_output,
)

from .models import LinearModel

ALL_KEYS = [
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
]
NON_FULL_SHAPE_KEYS = [CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES]


# --------------------------------------------------------------------------
# Keys.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "CONVOLUTION_LAYER_VALUES",
        "CONVOLUTION_OUTPUT_GRADIENTS",
        "INPUT_OUTPUT_GRADIENTS",
        "OUTPUT_LAYER_VALUES",
    ],
)
def test_key_value_equals_its_name_and_matches_reference(name: str) -> None:
    import saliency.core as reference

    assert getattr(base, name) == name
    assert getattr(sk, name) == name
    assert getattr(sk, name) == getattr(reference, name)


# --------------------------------------------------------------------------
# check_call_model_output and CoreSaliency.format_and_check_call_model_output.
# --------------------------------------------------------------------------


def _good_output(batch: int = 2, shape: tuple[int, ...] = (3, 4)) -> dict:
    return {
        INPUT_OUTPUT_GRADIENTS: np.ones((batch, *shape)),
        OUTPUT_LAYER_VALUES: [1.0] * batch,
        CONVOLUTION_LAYER_VALUES: np.zeros((batch, 5, 5, 7), dtype=np.float32),
        CONVOLUTION_OUTPUT_GRADIENTS: np.zeros((batch, 5, 5, 7), dtype=np.float32),
    }


def test_check_accepts_good_output_and_returns_arrays() -> None:
    output = _good_output()
    checked = check_call_model_output(output, (2, 3, 4), ALL_KEYS)
    assert set(checked) == set(ALL_KEYS)
    for key in ALL_KEYS:
        assert isinstance(checked[key], np.ndarray)
        np.testing.assert_array_equal(checked[key], np.asarray(output[key]))


def test_check_returns_only_expected_keys_and_ignores_others() -> None:
    output = _good_output()
    output["SOMETHING_ELSE"] = "not an array"
    checked = check_call_model_output(output, (2, 3, 4), [OUTPUT_LAYER_VALUES])
    assert list(checked) == [OUTPUT_LAYER_VALUES]


def test_check_other_keys_only_check_leading_dimension() -> None:
    output = {key: np.zeros((2, 9)) for key in NON_FULL_SHAPE_KEYS}
    checked = check_call_model_output(output, (2, 3, 4), NON_FULL_SHAPE_KEYS)
    assert all(value.shape == (2, 9) for value in checked.values())


@pytest.mark.parametrize("key", ALL_KEYS)
def test_check_missing_key_is_value_error_naming_key(key: str) -> None:
    output = _good_output()
    del output[key]
    with pytest.raises(ValueError, match=key):
        check_call_model_output(output, (2, 3, 4), ALL_KEYS)


@pytest.mark.parametrize("bad_shape", [(2, 4, 3), (1, 3, 4), (2, 12), (3, 4), (2, 3, 4, 1)])
def test_check_wrong_gradient_shape_names_key_and_shapes(bad_shape: tuple[int, ...]) -> None:
    output = {INPUT_OUTPUT_GRADIENTS: np.zeros(bad_shape)}
    with pytest.raises(ValueError) as info:
        check_call_model_output(output, (2, 3, 4), [INPUT_OUTPUT_GRADIENTS])
    message = str(info.value)
    assert INPUT_OUTPUT_GRADIENTS in message
    assert "(2, 3, 4)" in message
    assert str(bad_shape) in message


def test_check_gradient_shape_message_matches_reference_template() -> None:
    """The reference's tests match SHAPE_ERROR_MESSAGE formatted with the shapes."""
    import saliency.core.base as reference_base

    expected = reference_base.SHAPE_ERROR_MESSAGE[INPUT_OUTPUT_GRADIENTS].format((1, 3), (3,))
    with pytest.raises(ValueError, match=re.escape(expected)):
        check_call_model_output({INPUT_OUTPUT_GRADIENTS: np.zeros(3)}, (1, 3), [INPUT_OUTPUT_GRADIENTS])


@pytest.mark.parametrize("key", NON_FULL_SHAPE_KEYS)
def test_check_wrong_leading_dimension_names_key_and_sizes(key: str) -> None:
    output = {key: np.zeros((5, 2))}
    with pytest.raises(ValueError) as info:
        check_call_model_output(output, (3, 7), [key])
    message = str(info.value)
    assert key in message
    assert "expected 3" in message
    assert "actual 5" in message


@pytest.mark.parametrize("key", NON_FULL_SHAPE_KEYS)
def test_check_scalar_for_batched_key_is_value_error(key: str) -> None:
    with pytest.raises(ValueError, match=key):
        check_call_model_output({key: 1.0}, (3, 7), [key])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("key", ALL_KEYS)
def test_check_non_finite_values_name_key(key: str, bad: float) -> None:
    output = _good_output()
    values = np.array(output[key], dtype=np.float64)
    values.flat[-1] = bad
    output[key] = values
    with pytest.raises(ValueError, match=key) as info:
        check_call_model_output(output, (2, 3, 4), ALL_KEYS)
    assert re.search(r"NaN|inf|finite", str(info.value))


@pytest.mark.parametrize("output", [None, [np.zeros((1, 3))], np.zeros((1, 3)), ("a", "b"), 3.0])
def test_check_non_mapping_output_is_type_error(output) -> None:
    with pytest.raises(TypeError, match="dict"):
        check_call_model_output(output, (1, 3), [INPUT_OUTPUT_GRADIENTS])


@pytest.mark.parametrize(
    "value",
    [np.array([["a", "b", "c"]]), np.array([[None, None, None]]), np.zeros((1, 3), dtype=complex)],
    ids=["strings", "objects", "complex"],
)
def test_check_non_numeric_values_is_type_error_naming_key(value) -> None:
    with pytest.raises(TypeError, match=INPUT_OUTPUT_GRADIENTS):
        check_call_model_output({INPUT_OUTPUT_GRADIENTS: value}, (1, 3), [INPUT_OUTPUT_GRADIENTS])


def test_check_accepts_integer_and_list_values() -> None:
    checked = check_call_model_output(
        {INPUT_OUTPUT_GRADIENTS: [[1, 2, 3]], OUTPUT_LAYER_VALUES: [7]},
        (1, 3),
        [INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES],
    )
    np.testing.assert_array_equal(checked[INPUT_OUTPUT_GRADIENTS], [[1, 2, 3]])
    np.testing.assert_array_equal(checked[OUTPUT_LAYER_VALUES], [7])


def test_format_and_check_converts_in_place_like_reference() -> None:
    output = {INPUT_OUTPUT_GRADIENTS: [[1.0, 2.0, 3.0]], "extra": "kept"}
    result = CoreSaliency().format_and_check_call_model_output(output, (1, 3), [INPUT_OUTPUT_GRADIENTS])
    assert result is None
    assert isinstance(output[INPUT_OUTPUT_GRADIENTS], np.ndarray)
    np.testing.assert_array_equal(output[INPUT_OUTPUT_GRADIENTS], [[1.0, 2.0, 3.0]])
    assert output["extra"] == "kept"


def test_format_and_check_raises_on_bad_output() -> None:
    core = CoreSaliency()
    with pytest.raises(ValueError, match=OUTPUT_LAYER_VALUES):
        core.format_and_check_call_model_output(
            {OUTPUT_LAYER_VALUES: np.zeros(4)}, (2, 3), [OUTPUT_LAYER_VALUES]
        )
    with pytest.raises(ValueError, match=INPUT_OUTPUT_GRADIENTS):
        core.format_and_check_call_model_output({}, (2, 3), [INPUT_OUTPUT_GRADIENTS])
    with pytest.raises(ValueError, match="NaN|inf|finite"):
        core.format_and_check_call_model_output(
            {INPUT_OUTPUT_GRADIENTS: np.full((2, 3), np.nan)}, (2, 3), [INPUT_OUTPUT_GRADIENTS]
        )


# --------------------------------------------------------------------------
# call_model and call_model_in_batches.
# --------------------------------------------------------------------------


def test_call_model_passes_args_and_keys_and_checks() -> None:
    model = LinearModel(np.arange(3.0))
    args = {"foo": "bar"}
    out = call_model(model, np.ones((2, 3)), args, [INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES])
    assert model.num_calls == 1
    assert model.call_model_args[0] is args
    assert model.expected_keys[0] == [INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES]
    np.testing.assert_array_equal(out[INPUT_OUTPUT_GRADIENTS], [[0, 1, 2], [0, 1, 2]])
    np.testing.assert_array_equal(out[OUTPUT_LAYER_VALUES], [3.0, 3.0])

    def bad_model(x, call_model_args=None, expected_keys=None):
        return {INPUT_OUTPUT_GRADIENTS: np.zeros(3)}

    with pytest.raises(ValueError, match=INPUT_OUTPUT_GRADIENTS):
        call_model(bad_model, np.ones((2, 3)))


@pytest.mark.parametrize(
    ("n_inputs", "batch_size", "expected_sizes"),
    [
        (25, 10, [10, 10, 5]),
        (25, 25, [25]),
        (25, 100, [25]),
        (25, 1, [1] * 25),
        (20, 10, [10, 10]),
        (1, 1, [1]),
        (1, 7, [1]),
        (7, 3, [3, 3, 1]),
    ],
)
def test_call_model_in_batches_sizes(n_inputs: int, batch_size: int, expected_sizes: list[int]) -> None:
    inputs = np.arange(n_inputs * 2, dtype=np.float64).reshape(n_inputs, 2)
    model = LinearModel(np.ones(2))
    results = list(
        call_model_in_batches(model, lambda start, stop: inputs[start:stop], n_inputs, batch_size, "args")
    )
    assert model.batch_sizes == expected_sizes
    bounds = [(start, stop) for start, stop, _ in results]
    edges = np.cumsum([0, *expected_sizes])
    assert bounds == list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))
    # Every input went to the model exactly once, in order.
    np.testing.assert_array_equal(np.concatenate(model.batches), inputs)
    assert all(args == "args" for args in model.call_model_args)
    for start, stop, output in results:
        assert output[INPUT_OUTPUT_GRADIENTS].shape == (stop - start, 2)


def test_call_model_in_batches_is_lazy() -> None:
    """make_inputs is called once per batch, just before that batch's model call."""
    events: list[tuple] = []

    def make_inputs(start, stop):
        events.append(("make", start, stop))
        return np.zeros((stop - start, 3))

    def model(x, call_model_args=None, expected_keys=None):
        events.append(("call", len(x)))
        return {INPUT_OUTPUT_GRADIENTS: np.zeros_like(x)}

    iterator = call_model_in_batches(model, make_inputs, 25, 10)
    assert events == []  # nothing built before the first batch is requested
    next(iterator)
    assert events == [("make", 0, 10), ("call", 10)]
    list(iterator)
    assert events == [
        ("make", 0, 10),
        ("call", 10),
        ("make", 10, 20),
        ("call", 10),
        ("make", 20, 25),
        ("call", 5),
    ]


def test_call_model_in_batches_passes_expected_keys() -> None:
    model = LinearModel(np.ones(2))
    keys = (OUTPUT_LAYER_VALUES,)
    results = list(call_model_in_batches(model, lambda a, b: np.ones((b - a, 2)), 3, 2, None, keys))
    assert model.expected_keys == [[OUTPUT_LAYER_VALUES], [OUTPUT_LAYER_VALUES]]
    assert all(set(out) == {OUTPUT_LAYER_VALUES} for _, _, out in results)


def test_call_model_in_batches_accepts_numpy_integer_batch_size() -> None:
    model = LinearModel(np.ones(2))
    list(call_model_in_batches(model, lambda a, b: np.ones((b - a, 2)), 5, np.int64(2)))
    assert model.batch_sizes == [2, 2, 1]


@pytest.mark.parametrize(
    ("batch_size", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (2.5, TypeError),
        (True, TypeError),
        ("4", TypeError),
        (None, TypeError),
    ],
)
def test_call_model_in_batches_bad_batch_size(batch_size, error) -> None:
    model = LinearModel(np.ones(2))
    with pytest.raises(error, match="batch_size"):
        list(call_model_in_batches(model, lambda a, b: np.ones((b - a, 2)), 5, batch_size))
    assert model.num_calls == 0


@pytest.mark.parametrize("n_inputs", [0, -3])
def test_call_model_in_batches_bad_n_inputs(n_inputs: int) -> None:
    with pytest.raises(ValueError):
        list(call_model_in_batches(LinearModel(np.ones(2)), lambda a, b: np.ones((b - a, 2)), n_inputs, 2))


def test_call_model_in_batches_checks_every_answer() -> None:
    calls = []

    def model(x, call_model_args=None, expected_keys=None):
        calls.append(len(x))
        grads = np.zeros_like(x)
        if len(calls) == 2:
            grads[0, 0] = np.nan
        return {INPUT_OUTPUT_GRADIENTS: grads}

    with pytest.raises(ValueError, match=INPUT_OUTPUT_GRADIENTS):
        list(call_model_in_batches(model, lambda a, b: np.ones((b - a, 2)), 9, 3))
    assert calls == [3, 3]


# --------------------------------------------------------------------------
# The base class.
# --------------------------------------------------------------------------


def test_base_get_mask_not_implemented() -> None:
    with pytest.raises(NotImplementedError):
        CoreSaliency().GetMask(np.zeros(3), LinearModel(np.ones(3)))


def test_base_get_smoothed_mask_needs_get_mask() -> None:
    with pytest.raises(NotImplementedError):
        CoreSaliency().GetSmoothedMask(np.zeros(3), LinearModel(np.ones(3)), seed=0)


class _ConstantMask(CoreSaliency):
    """A derived class whose GetMask ignores the model: checks the generic SmoothGrad loop."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask
        self.inputs: list[np.ndarray] = []
        self.kwargs: list[dict] = []

    def GetMask(self, x_value, call_model_function, call_model_args=None, **kwargs):  # noqa: N802
        self.inputs.append(np.array(x_value))
        self.kwargs.append(kwargs)
        return self.mask


def test_generic_smoothed_mask_calls_get_mask_per_sample_on_int_input() -> None:
    """Mirrors the reference's testGetSmoothedMaskDtype: int input, one GetMask per sample."""
    method = _ConstantMask(np.array([0.5, 0.2, 0.1]))
    smoothed = method.GetSmoothedMask(np.array([3, 2, 1]), None, nsamples=20, seed=0, extra=7)
    assert len(method.inputs) == 20
    assert all(kwargs == {"extra": 7} for kwargs in method.kwargs)
    assert all(x.dtype.kind == "f" for x in method.inputs)
    np.testing.assert_allclose(smoothed, np.array([0.5, 0.2, 0.1]) ** 2)
    plain = method.GetSmoothedMask(np.array([3, 2, 1]), None, nsamples=4, magnitude=False, seed=0)
    np.testing.assert_allclose(plain, [0.5, 0.2, 0.1])


def test_check_ragged_value_names_key() -> None:
    with pytest.raises((TypeError, ValueError), match=INPUT_OUTPUT_GRADIENTS):
        check_call_model_output(
            {INPUT_OUTPUT_GRADIENTS: [[1.0, 2.0], [3.0]]}, (2, 2), [INPUT_OUTPUT_GRADIENTS]
        )


# --------------------------------------------------------------------------
# Answers that are not NumPy arrays; huge counts (issue 11, item 13).
# --------------------------------------------------------------------------


def _never_called(x_value_batch, call_model_args=None, expected_keys=None):
    raise AssertionError("the count must be refused before the first model call")


class _TensorLike:
    """Stands for a framework tensor whose ``__array__`` refuses (a torch tensor requiring grad)."""

    def __init__(self, values: np.ndarray, refuse: bool) -> None:
        self.values, self.refuse = values, refuse

    def __array__(self, dtype=None, copy=None):
        if self.refuse:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad.")
        return self.values if dtype is None else self.values.astype(dtype)


def test_unconvertible_answer_is_a_type_error_saying_to_return_numpy() -> None:
    output = {INPUT_OUTPUT_GRADIENTS: _TensorLike(np.ones((1, 3)), refuse=True)}
    with pytest.raises(TypeError) as info:
        check_call_model_output(output, (1, 3), [INPUT_OUTPUT_GRADIENTS])
    message = str(info.value)
    assert INPUT_OUTPUT_GRADIENTS in message and "_TensorLike" in message
    assert "return NumPy arrays (e.g. tensor.detach().cpu().numpy())" in message
    # What converts cleanly (CPU tensors, JAX arrays...) keeps working.
    good = {INPUT_OUTPUT_GRADIENTS: _TensorLike(np.ones((1, 3)), refuse=False)}
    np.testing.assert_array_equal(
        check_call_model_output(good, (1, 3), [INPUT_OUTPUT_GRADIENTS])[INPUT_OUTPUT_GRADIENTS],
        np.ones((1, 3)),
    )


def test_torch_tensors_requiring_grad_get_the_numpy_advice() -> None:
    torch = pytest.importorskip("torch")
    weights = torch.ones(3, requires_grad=True)

    def torch_model(x_batch, call_model_args=None, expected_keys=None):
        return {INPUT_OUTPUT_GRADIENTS: torch.as_tensor(x_batch) * weights}  # still requires grad

    with pytest.raises(TypeError, match=r"INPUT_OUTPUT_GRADIENTS as torch\.Tensor.*return NumPy arrays"):
        sk.IntegratedGradients().GetMask(np.ones(3), torch_model, x_steps=2)

    def detached_model(x_batch, call_model_args=None, expected_keys=None):
        return {INPUT_OUTPUT_GRADIENTS: torch.full(np.shape(x_batch), 2.0, dtype=torch.float64)}

    # A tensor that does not require grad converts cleanly and is accepted: IG = (x - 0) * 2.
    np.testing.assert_allclose(sk.IntegratedGradients().GetMask(np.ones(3), detached_model, x_steps=2), 2.0)


class _MustNotRun(CoreSaliency):
    def GetMask(self, x_value, call_model_function, call_model_args=None, **kwargs):  # noqa: N802
        raise AssertionError("bad arguments must be refused before the first mask")


def test_huge_nsamples_and_overflowing_noise_are_refused() -> None:
    method = _MustNotRun()
    with pytest.raises(ValueError, match=r"nsamples must be an integer <= 10000000"):
        method.GetSmoothedMask(np.ones(3), None, nsamples=10**12, seed=0)
    with pytest.raises(
        ValueError, match=r"stdev_spread \* \(max\(x_value\) - min\(x_value\)\) must be finite"
    ):
        method.GetSmoothedMask(np.array([0.0, 1e300]), None, nsamples=2, stdev_spread=1e10, seed=0)
    with pytest.raises(ValueError, match=r"overflows the noisy inputs to inf"):
        near_max = np.full(100, 1.79e308)
        near_max[0] = 0.0  # noise of standard deviation 1.79e308: about half the entries overflow
        method.GetSmoothedMask(near_max, None, nsamples=2, stdev_spread=1.0, seed=0)


def test_smoothed_float16_masks_are_squared_in_float32() -> None:
    method = _ConstantMask(np.array([300.0, -2.0], dtype=np.float16))  # 300**2 overflows float16
    smoothed = method.GetSmoothedMask(np.array([0.0, 1.0], dtype=np.float16), None, nsamples=3, seed=0)
    assert smoothed.dtype == np.float32
    np.testing.assert_allclose(smoothed, [90000.0, 4.0])


def test_counts_beyond_the_limit_are_refused_in_the_batching_helper() -> None:
    with pytest.raises(ValueError, match=r"number of model inputs must be an integer <= 10000000"):
        next(call_model_in_batches(_never_called, lambda a, b: np.ones((b - a, 2)), 10**7 + 1, 2))
    assert sk.base.MAX_MODEL_EVALUATIONS == 10**7


def test_check_number_of_an_integer_too_large_for_a_float() -> None:
    with pytest.raises(ValueError, match="min_pixel_diff must be finite"):
        base.check_number("min_pixel_diff", 10**400)
