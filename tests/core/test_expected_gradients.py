"""Tests of ExpectedGradients: analytic answers, seeds, batching, and Captum's ``GradientShap``.

The oracle: Captum 0.9's ``GradientShap`` with ``stdevs=0.0`` is Expected
Gradients. On one input it draws, from NumPy's global random state,
``np.random.choice(M, n_samples)`` (the references) and then
``np.random.uniform(0, 1, n_samples)`` (the path points); ours with
``seed=None`` draws the same, in the same order. So ``np.random.seed(s)``
before each run drives both with the same baselines and alphas, and ours
computes the path points with Captum's arithmetic (``alpha * x + (1 - alpha)
* baseline`` in float32), so the model sees the same inputs.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from skimage import data, transform

from saliencykit.core.base import INPUT_OUTPUT_GRADIENTS
from saliencykit.core.expected_gradients import ExpectedGradients

from .models import LinearModel, MLPModel, QuadraticModel, never_called
from .test_gradient_x_input import (
    CASES,
    ORACLE_TOLERANCE,
    TorchCase,
    captum_attribution,
    relative_error,
)

SHAPE = (4, 3, 2)


def _x_and_references(n_references: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=SHAPE), rng.normal(size=(n_references, *SHAPE))


def _generator_draws(seed: int, n_references: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The draws GetMask documents for an int seed."""
    generator = np.random.default_rng(seed)
    return generator.integers(0, n_references, n_samples), generator.random(n_samples)


def _path_points(x, references, indices, alphas) -> np.ndarray:
    a = alphas[:, None, None, None]
    return a * x + (1 - a) * references[indices]


# --------------------------------------------------------------------------
# Analytic answers.
# --------------------------------------------------------------------------


def test_linear_model_is_exact_for_the_draws() -> None:
    """grad f = w everywhere: the mask is (x - mean of the drawn references) * w."""
    x, references = _x_and_references()
    weights = np.random.default_rng(1).normal(size=SHAPE)
    model = LinearModel(weights)
    mask = ExpectedGradients().GetMask(x, model, references=references, n_samples=7, seed=3, batch_size=7)
    indices, alphas = _generator_draws(3, len(references), 7)
    np.testing.assert_allclose(mask, (x - references[indices].mean(axis=0)) * weights, rtol=1e-12)
    np.testing.assert_allclose(model.batches[0], _path_points(x, references, indices, alphas), rtol=1e-15)


def test_quadratic_model_is_exact_for_the_draws() -> None:
    """f = sum(x**2 / 2), gradient = the path point: mask = mean_k (x - r_k) * point_k."""
    x, references = _x_and_references()
    mask = ExpectedGradients().GetMask(x, QuadraticModel(0.5), references=references, n_samples=9, seed=4)
    indices, alphas = _generator_draws(4, len(references), 9)
    points = _path_points(x, references, indices, alphas)
    np.testing.assert_allclose(mask, ((x - references[indices]) * points).mean(axis=0), rtol=1e-12)


def test_linear_model_expectation_within_the_sampling_error() -> None:
    """E[mask] = (x - mean(references)) * w; each element's error has sd w * sd(references) / sqrt(n)."""
    x, references = _x_and_references(n_references=10, seed=5)
    weights = np.random.default_rng(6).uniform(0.5, 2.0, size=SHAPE)
    n_samples = 4000
    mask = ExpectedGradients().GetMask(
        x, LinearModel(weights), references=references, n_samples=n_samples, seed=7, batch_size=4000
    )
    expected = (x - references.mean(axis=0)) * weights
    standard_error = weights * references.std(axis=0) / np.sqrt(n_samples)
    assert (np.abs(mask - expected) <= 5 * standard_error).all()
    # And the error is of that size, not far smaller: the draws are random.
    assert np.abs(mask - expected).max() > 0.1 * standard_error.max()


def test_a_single_reference_and_the_input_itself() -> None:
    x, references = _x_and_references(n_references=1)
    weights = np.ones(SHAPE)
    mask = ExpectedGradients().GetMask(x, LinearModel(weights), references=references, n_samples=3, seed=0)
    np.testing.assert_allclose(mask, x - references[0], rtol=1e-12)
    # The input as its own reference: every path is one point, the attribution 0.
    zero = ExpectedGradients().GetMask(x, MLPModel(SHAPE), references=x[None], n_samples=4, seed=0)
    np.testing.assert_array_equal(zero, np.zeros(SHAPE))


def test_dtypes() -> None:
    x, references = _x_and_references()
    uint8 = ExpectedGradients().GetMask(
        (x > 0).astype(np.uint8), LinearModel(np.ones(SHAPE)), references=references, n_samples=2, seed=0
    )
    assert uint8.dtype == np.float64  # float64 gradients
    model = MLPModel(SHAPE)
    half = ExpectedGradients().GetMask(
        x.astype(np.float16), model, references=references.astype(np.float16), n_samples=2, seed=0
    )
    assert model.batches[0].dtype == np.float16
    assert half.dtype == np.float64


# --------------------------------------------------------------------------
# Seeds, batching, the method's interface.
# --------------------------------------------------------------------------


def test_seeds() -> None:
    x, references = _x_and_references()
    method = ExpectedGradients()

    def run(seed):
        return method.GetMask(x, MLPModel(SHAPE), references=references, n_samples=6, seed=seed)

    np.random.seed(0)
    first = run(11)
    state = np.random.get_state()[1].copy()
    np.random.seed(99)
    np.testing.assert_array_equal(run(11), first)
    np.random.seed(0)
    run(11)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global state untouched
    np.testing.assert_array_equal(run(np.random.default_rng(11)), first)
    assert not np.allclose(run(12), first)
    # None: NumPy's global state, choice(M, n) then uniform(0, 1, n) (Captum GradientShap's order).
    np.random.seed(5)
    model = MLPModel(SHAPE)
    method.GetMask(x, model, references=references, n_samples=6, batch_size=6)
    np.random.seed(5)
    indices = np.random.choice(len(references), 6)
    alphas = np.random.uniform(0.0, 1.0, 6)
    np.testing.assert_allclose(model.batches[0], _path_points(x, references, indices, alphas), rtol=1e-15)


@pytest.mark.parametrize(
    ("n_samples", "batch_size", "sizes"), [(7, 3, [3, 3, 1]), (4, 10, [4]), (2, 1, [1, 1])]
)
def test_batches_and_n_model_inputs(n_samples: int, batch_size: int, sizes: list[int]) -> None:
    x, references = _x_and_references()
    model = MLPModel(SHAPE)
    method = ExpectedGradients()
    method.GetMask(x, model, references=references, n_samples=n_samples, seed=0, batch_size=batch_size)
    assert model.batch_sizes == sizes
    assert all(keys == [INPUT_OUTPUT_GRADIENTS] for keys in model.expected_keys)
    assert list(method.expected_keys) == [INPUT_OUTPUT_GRADIENTS]
    assert method.n_model_inputs(SHAPE, n_samples=n_samples, batch_size=batch_size, seed=0) == n_samples
    assert method.n_model_inputs(SHAPE) == 50


def test_get_mask_batch() -> None:
    rng = np.random.default_rng(8)
    images, shared, own = (
        rng.normal(size=(3, *SHAPE)),
        rng.normal(size=(4, *SHAPE)),
        rng.normal(size=(3, 2, *SHAPE)),
    )
    method = ExpectedGradients()
    model = MLPModel(SHAPE)
    masks = method.GetMaskBatch(images, model, references=shared, n_samples=5, seed=2, batch_size=4)
    assert model.batch_sizes == [4, 4, 4, 3]
    for image, mask in zip(images, masks, strict=True):
        expected = method.GetMask(image, MLPModel(SHAPE), references=shared, n_samples=5, seed=2)
        np.testing.assert_allclose(mask, expected, rtol=1e-12)
    # [N, M, ...]: one reference set per example.
    masks = method.GetMaskBatch(images, MLPModel(SHAPE), references=own, n_samples=5, seed=2)
    for image, references, mask in zip(images, own, masks, strict=True):
        expected = method.GetMask(image, MLPModel(SHAPE), references=references, n_samples=5, seed=2)
        np.testing.assert_allclose(mask, expected, rtol=1e-12)


def test_smoothed_mask_with_a_seed_is_reproducible() -> None:
    """GetSmoothedMask's seed also feeds the draws of the references and alphas."""
    x, references = _x_and_references()
    method = ExpectedGradients()

    def smoothed(seed):
        return method.GetSmoothedMask(
            x, MLPModel(SHAPE), nsamples=3, seed=seed, aggregation="mean", references=references, n_samples=4
        )

    np.random.seed(1)
    first = smoothed(21)
    np.random.seed(2)
    np.testing.assert_array_equal(smoothed(21), first)
    assert not np.allclose(smoothed(22), first)
    assert method.n_smoothed_model_inputs(SHAPE, nsamples=3, references=references, n_samples=4) == 12


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, r"references must be given: .* \[M, \*x_value.shape\] = \[M, 4, 3, 2\]"),
        ({"references": np.zeros(SHAPE)}, ValueError, r"references must have the shape .* got \(4, 3, 2\)"),
        (
            {"references": np.zeros((2, 4, 3, 1))},
            ValueError,
            r"references must have the shape .* got \(2, 4, 3, 1\)",
        ),
        ({"references": np.full((2, *SHAPE), np.nan)}, ValueError, "references must be finite"),
        (
            {"references": np.zeros((2, *SHAPE)), "n_samples": 0},
            ValueError,
            "n_samples must be an integer >= 1",
        ),
        ({"references": np.zeros((2, *SHAPE)), "n_samples": 2.0}, TypeError, "n_samples must be an integer"),
        (
            {"references": np.zeros((2, *SHAPE)), "seed": "1"},
            TypeError,
            "seed must be None, an int or a numpy",
        ),
        (
            {"references": np.zeros((2, *SHAPE)), "batch_size": 0},
            ValueError,
            "batch_size must be an integer >= 1",
        ),
    ],
)
def test_bad_input_is_refused_before_any_model_call(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        ExpectedGradients().GetMask(np.zeros(SHAPE), never_called, **kwargs)


def test_bad_per_example_references_in_a_batch() -> None:
    with pytest.raises(ValueError, match=r"references must have the shape .* got \(2, 2, 4, 3, 2\)"):
        ExpectedGradients().GetMaskBatch(
            np.zeros((3, *SHAPE)), never_called, references=np.zeros((2, 2, *SHAPE))
        )


# --------------------------------------------------------------------------
# Captum's GradientShap (stdevs=0) on real models, with the same draws.
# --------------------------------------------------------------------------


@functools.cache
def _references(size: int) -> np.ndarray:
    """Four real references: black, and three other photos of scikit-image, float32 in [0, 1]."""
    photos = [data.astronaut(), data.coffee(), data.rocket()]
    resized = [transform.resize(photo, (size, size), anti_aliasing=True) for photo in photos]
    return np.stack([np.zeros((size, size, 3)), *resized]).astype(np.float32)


@pytest.mark.parametrize("case_name", list(CASES))
def test_matches_captum_gradient_shap_with_the_same_draws(case_name: str) -> None:
    captum_attr = pytest.importorskip("captum.attr")
    torch = pytest.importorskip("torch")
    case: TorchCase = CASES[case_name]()
    references = _references(case.image.shape[0])
    n_samples = 6
    np.random.seed(123)
    ours = ExpectedGradients().GetMask(
        case.image, case.call, references=references, n_samples=n_samples, batch_size=n_samples
    )
    np.random.seed(123)
    theirs = captum_attribution(
        captum_attr.GradientShap,
        case,
        case.image[None],
        baselines=torch.from_numpy(references),
        n_samples=n_samples,
        stdevs=0.0,
    )[0]
    assert relative_error(ours, theirs) <= ORACLE_TOLERANCE
