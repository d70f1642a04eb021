"""Tests of sensitivity-max and infidelity: Captum on the same perturbations, analytic values, batching."""

from __future__ import annotations

import numpy as np
import pytest

import saliencykit.core as saliency
from saliencykit.metrics.robustness import InfidelityResult, SensitivityResult, infidelity, sensitivity_max

GRADIENTS = saliency.INPUT_OUTPUT_GRADIENTS
OUTPUTS = saliency.OUTPUT_LAYER_VALUES


class NumpyModel:
    """f(x) = 0.5 * sum(x^2) + w . x for each row, with exact gradients x + w; counts its calls."""

    def __init__(self, weights: np.ndarray, quadratic: bool = True) -> None:
        self.weights = weights
        self.quadratic = quadratic
        self.batches: list[int] = []
        self.args: list[object] = []

    def __call__(self, x_batch, call_model_args=None, expected_keys=None):
        self.batches.append(len(x_batch))
        self.args.append(call_model_args)
        x = np.asarray(x_batch, dtype=np.float64)
        square = 0.5 * (x**2) if self.quadratic else 0.0 * x
        answer = {
            GRADIENTS: (x if self.quadratic else 0.0 * x) + self.weights,
            OUTPUTS: (square + self.weights * x).reshape(len(x), -1).sum(axis=1),
        }
        return {key: answer[key] for key in expected_keys}


@pytest.fixture
def x_value() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(6, 5, 3))


@pytest.fixture
def weights() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(6, 5, 3))


# --------------------------------------------------------------------------
# Sensitivity-max
# --------------------------------------------------------------------------


def test_sensitivity_of_the_gradient_of_a_quadratic_is_the_noise_norm(x_value, weights) -> None:
    """e(x) = x + w, so e(x + d) - e(x) = d: the default perturbation, redrawn from the seed."""
    model = NumpyModel(weights)
    result = sensitivity_max(
        saliency.GradientSaliency(), x_value, model, n_perturb_samples=7, perturb_radius=0.1, seed=3
    )
    noise = np.random.default_rng(3).uniform(-0.1, 0.1, size=(7, *x_value.shape))
    expected = np.linalg.norm(noise.reshape(7, -1), axis=1) / np.linalg.norm(x_value + weights)
    assert isinstance(result, SensitivityResult)
    np.testing.assert_allclose(result.sensitivities, expected, rtol=1e-12)
    assert result.sensitivity_max == pytest.approx(expected.max(), rel=1e-12)
    np.testing.assert_allclose(result.explanation, x_value + weights)
    infinity = sensitivity_max(
        saliency.GradientSaliency(),
        x_value,
        model,
        n_perturb_samples=7,
        perturb_radius=0.1,
        seed=3,
        norm_ord=np.inf,
    )
    assert 0.09 < infinity.sensitivity_max * np.abs(x_value + weights).max() <= 0.1


def test_sensitivity_seed_and_custom_perturbation(x_value, weights) -> None:
    model = NumpyModel(weights)
    method = saliency.GradientSaliency()
    first = sensitivity_max(method, x_value, model, seed=5)
    np.random.seed(0)
    again = sensitivity_max(method, x_value, model, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(first.sensitivities, again.sensitivities)
    assert not np.array_equal(
        first.sensitivities, sensitivity_max(method, x_value, model, seed=6).sensitivities
    )

    def shift(x_values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        assert x_values.shape == (4, *x_value.shape) and isinstance(rng, np.random.Generator)
        return x_values + np.arange(1, 5).reshape(4, 1, 1, 1)

    shifted = sensitivity_max(method, x_value, model, n_perturb_samples=4, perturb_func=shift, norm_ord=1)
    expected = np.arange(1, 5) * x_value.size / np.abs(x_value + weights).sum()
    np.testing.assert_allclose(shifted.sensitivities, expected, rtol=1e-12)


def test_sensitivity_of_a_zero_map_divides_by_one(x_value) -> None:
    """Captum's rule: ||e(x)|| = 0 is replaced by 1."""
    model = NumpyModel(-x_value)  # e(x) = x - x = 0, e(x + d) = d
    result = sensitivity_max(saliency.GradientSaliency(), x_value, model, n_perturb_samples=3, seed=0)
    noise = np.random.default_rng(0).uniform(-0.02, 0.02, size=(3, *x_value.shape))
    np.testing.assert_allclose(result.sensitivities, np.linalg.norm(noise.reshape(3, -1), axis=1), rtol=1e-12)


def test_sensitivity_packs_the_perturbed_inputs_into_calls(x_value, weights) -> None:
    model = NumpyModel(weights)
    args = ["a", "list"]  # a list is one call_model_args value, not one per example
    sensitivity_max(
        saliency.GradientSaliency(), x_value, model, args, n_perturb_samples=10, batch_size=4, seed=0
    )
    assert model.batches == [4, 4, 3] and all(arg == args for arg in model.args)
    model.batches.clear()
    integrated = sensitivity_max(
        saliency.IntegratedGradients(),
        x_value,
        model,
        n_perturb_samples=3,
        batch_size=8,
        seed=0,
        method_kwargs={"x_steps": 4},
    )
    assert model.batches == [8, 8] and integrated.explanation.shape == x_value.shape


def test_sensitivity_with_a_function_as_method(x_value, weights) -> None:
    model = NumpyModel(weights)
    calls = []

    def smoothed(x, call_model_function, call_model_args=None, **kwargs):
        calls.append(kwargs)
        return saliency.GradientSaliency().GetSmoothedMask(x, call_model_function, call_model_args, **kwargs)

    kwargs = {"nsamples": 3, "seed": 11}
    result = sensitivity_max(smoothed, x_value, model, n_perturb_samples=2, seed=0, method_kwargs=kwargs)
    assert calls == [kwargs] * 3 and result.sensitivities.shape == (2,)
    assert model.batches == [1] * 9


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_perturb_samples": 0}, ValueError, "n_perturb_samples must be an integer >= 1"),
        ({"perturb_radius": -1.0}, ValueError, "perturb_radius must be >= 0"),
        ({"norm_ord": "nuc"}, ValueError, "norm_ord must be 'fro', a number > 0 or inf"),
        ({"norm_ord": 0}, ValueError, "norm_ord must be 'fro'"),
        ({"seed": 1.5}, TypeError, "seed must be None, an int or a numpy Generator"),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
        (
            {"perturb_func": lambda x, rng: x[:1]},
            ValueError,
            r"perturb_func must return perturbed inputs of shape",
        ),
        (
            {"perturb_func": lambda x, rng: x * np.nan},
            ValueError,
            "perturb_func's perturbed inputs must be finite",
        ),
        ({"perturb_func": 3}, TypeError, "perturb_func must be callable"),
    ],
)
def test_sensitivity_bad_input(x_value, weights, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        sensitivity_max(saliency.GradientSaliency(), x_value, NumpyModel(weights), **kwargs)


def test_sensitivity_bad_method(x_value, weights) -> None:
    with pytest.raises(TypeError, match="method must be callable"):
        sensitivity_max("gradients", x_value, NumpyModel(weights))
    with pytest.raises(ValueError, match="x_value must be finite"):
        sensitivity_max(saliency.GradientSaliency(), x_value * np.nan, NumpyModel(weights))


# --------------------------------------------------------------------------
# Infidelity
# --------------------------------------------------------------------------


def test_infidelity_of_the_exact_attribution_of_a_linear_model_is_zero(x_value, weights) -> None:
    """f = w . x: sum(w * I) = f(x) - f(x - I) exactly; a map 2w is off by (w . I)^2, or 0 once rescaled."""
    model = NumpyModel(weights, quadratic=False)
    exact = infidelity(x_value, weights, model, n_perturb_samples=9, noise_stdev=0.5, seed=2)
    assert isinstance(exact, InfidelityResult)
    assert exact.infidelity == pytest.approx(0.0, abs=1e-20)
    noise = np.random.default_rng(2).normal(0.0, 0.5, size=(9, *x_value.shape))
    dots = noise.reshape(9, -1) @ weights.ravel()
    np.testing.assert_allclose(exact.output_differences, dots, rtol=1e-10)
    double = infidelity(x_value, 2 * weights, model, n_perturb_samples=9, noise_stdev=0.5, seed=2)
    assert double.infidelity == pytest.approx(np.mean(dots**2), rel=1e-10)
    rescaled = infidelity(
        x_value, 2 * weights, model, n_perturb_samples=9, noise_stdev=0.5, seed=2, normalize=True
    )
    assert rescaled.beta == pytest.approx(0.5) and rescaled.infidelity == pytest.approx(0.0, abs=1e-20)


def test_infidelity_quadratic_model(x_value, weights) -> None:
    """f(x) - f(x - I) = (x + w) . I - |I|^2 / 2: the gradient map's error is |I|^2 / 2."""
    model = NumpyModel(weights)
    result = infidelity(x_value, x_value + weights, model, n_perturb_samples=6, noise_stdev=0.3, seed=4)
    noise = np.random.default_rng(4).normal(0.0, 0.3, size=(6, *x_value.shape))
    expected = np.mean((0.5 * (noise**2).reshape(6, -1).sum(axis=1)) ** 2)
    assert result.infidelity == pytest.approx(expected, rel=1e-9)


def test_infidelity_batches_and_calls_perturb_func_per_call(x_value, weights) -> None:
    model = NumpyModel(weights)
    seen = []

    def perturb(x_values: np.ndarray, rng: np.random.Generator):
        seen.append(len(x_values))
        noise = rng.normal(size=x_values.shape)
        return noise, x_values - noise

    args = {"target": 1}
    result = infidelity(
        x_value, weights, model, args, n_perturb_samples=10, perturb_func=perturb, batch_size=4, seed=0
    )
    assert model.batches == [4, 4, 3] and seen == [3, 4, 3] and all(arg is args for arg in model.args)
    model.batches.clear()
    one = infidelity(
        x_value, weights, model, n_perturb_samples=10, perturb_func=perturb, batch_size=1, seed=0
    )
    assert model.batches == [1] * 11
    assert one.infidelity == pytest.approx(result.infidelity, rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"attribution": np.zeros((6, 5))}, ValueError, r"attribution must have x_value's shape \(6, 5, 3\)"),
        ({"n_perturb_samples": -1}, ValueError, "n_perturb_samples must be an integer >= 1"),
        ({"noise_stdev": float("inf")}, ValueError, "noise_stdev must be finite"),
        ({"batch_size": 1.0}, TypeError, "batch_size must be an integer"),
        ({"seed": "0"}, TypeError, "seed must be None, an int or a numpy Generator"),
        ({"perturb_func": lambda x, rng: x}, TypeError, r"perturb_func must return a tuple \(perturbations"),
        (
            {"perturb_func": lambda x, rng: (x[..., :1], x)},
            ValueError,
            "perturb_func must return perturbations of",
        ),
        ({"perturb_func": "noise"}, TypeError, "perturb_func must be callable"),
    ],
)
def test_infidelity_bad_input(x_value, weights, kwargs, error, match) -> None:
    arguments = {"attribution": weights, **kwargs}
    with pytest.raises(error, match=match):
        infidelity(x_value, arguments.pop("attribution"), NumpyModel(weights), **arguments)


def test_infidelity_needs_one_output_per_input(x_value, weights) -> None:
    def two_outputs(x_batch, call_model_args=None, expected_keys=None):
        return {OUTPUTS: np.zeros((len(x_batch), 2))}

    with pytest.raises(ValueError, match="OUTPUT_LAYER_VALUES must hold one scalar per example"):
        infidelity(x_value, weights, two_outputs)


# --------------------------------------------------------------------------
# Captum, driven by the same perturbations, on a small real CNN (float64)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn():
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 4, 3, stride=2, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
    ).double()


TARGET = 2


def stacked_noise(shape: tuple[int, ...], n: int, scale: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, size=(n, *shape))


def nchw(array: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, -1, 1)))


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
@pytest.mark.parametrize("norm_ord", ["fro", np.inf])
def test_sensitivity_max_equals_captums(cnn, norm_ord) -> None:
    captum_metrics = pytest.importorskip("captum.metrics")
    from captum.attr import Saliency

    from saliencykit.torch import make_call_model_function

    x_value = np.random.default_rng(7).random((8, 8, 3))
    noise = stacked_noise(x_value.shape, 6, 0.05, seed=8)
    ours = sensitivity_max(
        saliency.GradientSaliency(),
        x_value,
        make_call_model_function(cnn, target=TARGET),
        n_perturb_samples=6,
        perturb_func=lambda x_values, rng: x_values + noise,
        norm_ord=norm_ord,
        batch_size=3,
    )
    theirs = captum_metrics.sensitivity_max(
        Saliency(cnn).attribute,
        nchw(x_value[None]),
        perturb_func=lambda inputs: inputs + nchw(noise),
        n_perturb_samples=6,
        norm_ord=norm_ord,
        target=TARGET,
        abs=False,
    )
    assert ours.sensitivity_max == pytest.approx(float(theirs[0]), rel=1e-5)
    assert ours.sensitivity_max > 0.01  # the maps do change


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_equals_captums(cnn, normalize) -> None:
    captum_metrics = pytest.importorskip("captum.metrics")

    from saliencykit.torch import make_call_model_function

    x_value = np.random.default_rng(9).random((8, 8, 3))
    call = make_call_model_function(cnn, target=TARGET)
    attribution = saliency.GradientSaliency().GetMask(x_value, call) * x_value  # gradient x input
    noise = stacked_noise(x_value.shape, 12, 0.1, seed=10)
    position = [0]

    def ours_perturb(x_values: np.ndarray, rng: np.random.Generator):
        chunk = noise[position[0] : position[0] + len(x_values)]
        position[0] += len(x_values)
        return chunk, x_values - chunk

    ours = infidelity(
        x_value,
        attribution,
        call,
        n_perturb_samples=12,
        perturb_func=ours_perturb,
        normalize=normalize,
        batch_size=5,
    )
    theirs = captum_metrics.infidelity(
        cnn,
        lambda inputs: (nchw(noise), inputs - nchw(noise)),
        nchw(x_value[None]),
        nchw(attribution[None]),
        target=TARGET,
        n_perturb_samples=12,
        normalize=normalize,
    )
    assert ours.infidelity == pytest.approx(float(theirs[0]), rel=1e-5)
    assert ours.infidelity > 0
