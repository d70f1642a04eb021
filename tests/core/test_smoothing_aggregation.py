"""Tests of ``GetSmoothedMask(..., aggregation=...)`` and of SmoothGrad's noise streams.

``aggregation`` combines the masks of the noisy samples: ``"mean"``
(SmoothGrad), ``"square"`` (SmoothGrad², the reference's ``magnitude=True``)
or ``"variance"`` (VarGrad). The oracle is Captum 0.9's ``NoiseTunnel``
(``smoothgrad``, ``smoothgrad_sq``, ``vargrad``) around ``Saliency`` and
``InputXGradient``, fed the same noise: our noisy samples are recorded as the
model receives them (one call of ``nsamples`` inputs), and Captum's
``NoiseTunnel._add_noise_to_input`` (the static method that draws its noise:
``input.repeat_interleave(n) + torch.normal(0, stdev)``) is replaced, for the
test only, by one that returns those samples, so both see the same inputs.

The noise: ``seed=None`` draws from NumPy's global state exactly as
``saliency`` 0.2.1 does (its noisy inputs bit for bit); a seed draws float32
``Generator.standard_normal`` (see ``NoiseSource``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import saliency.core as reference

import saliencykit.core as sk
from saliencykit.core.base import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    GUIDED_INPUT_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
    SMOOTHING_AGGREGATIONS,
    CoreSaliency,
)
from saliencykit.core.expected_gradients import ExpectedGradients
from saliencykit.core.gradient_x_input import GradientXInput

from .models import MLPModel, QuadraticModel, RecordingModel, never_called
from .test_gradient_x_input import CASES as TORCH_CASES
from .test_gradient_x_input import ORACLE_TOLERANCE, Recorder, captum_attribution, relative_error
from .test_method_interface import CASES as METHOD_CASES
from .test_method_interface import SHAPE

#: Captum's NoiseTunnel name of each aggregation.
NT_TYPES = {"mean": "smoothgrad", "square": "smoothgrad_sq", "variance": "vargrad"}


def _image(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, shape)


# --------------------------------------------------------------------------
# What each aggregation computes, and the reference's magnitude.
# --------------------------------------------------------------------------


def test_aggregations_of_the_noisy_samples() -> None:
    """Gradient = the input (f = sum(x**2 / 2)): the masks are the noisy samples themselves."""
    x = _image()
    results = {}
    for aggregation in SMOOTHING_AGGREGATIONS:
        model = QuadraticModel(0.5)
        results[aggregation] = sk.GradientSaliency().GetSmoothedMask(
            x, model, nsamples=9, batch_size=9, seed=3, aggregation=aggregation
        )
        (samples,) = model.batches
    np.testing.assert_allclose(results["mean"], samples.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(results["square"], (samples**2).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(results["variance"], samples.var(axis=0), rtol=1e-9)


def test_magnitude_keeps_its_meaning() -> None:
    x = _image()

    def smoothed(**kwargs: Any) -> np.ndarray:
        return sk.GradientSaliency().GetSmoothedMask(x, MLPModel(SHAPE), nsamples=4, seed=1, **kwargs)

    default = smoothed()
    np.testing.assert_array_equal(smoothed(magnitude=True), default)
    np.testing.assert_array_equal(smoothed(aggregation="square"), default)
    np.testing.assert_array_equal(smoothed(magnitude=True, aggregation="square"), default)
    mean = smoothed(magnitude=False)
    np.testing.assert_array_equal(smoothed(aggregation="mean"), mean)
    np.testing.assert_array_equal(smoothed(magnitude=False, aggregation="mean"), mean)
    assert not np.allclose(mean, default)


@pytest.mark.parametrize(
    ("magnitude", "aggregation"), [(True, "mean"), (False, "square"), (True, "variance"), (False, "variance")]
)
def test_magnitude_and_aggregation_that_disagree_are_refused(magnitude: bool, aggregation: str) -> None:
    message = rf"magnitude={magnitude} asks for aggregation=.* but aggregation='{aggregation}' was given"
    method = sk.GradientSaliency()
    with pytest.raises(ValueError, match=message):
        method.GetSmoothedMask(_image(), never_called, magnitude=magnitude, aggregation=aggregation)
    with pytest.raises(ValueError, match=message):
        method.GetSmoothedMaskBatch(
            _image()[None], never_called, magnitude=magnitude, aggregation=aggregation
        )
    with pytest.raises(ValueError, match=message):
        method.n_smoothed_model_inputs(SHAPE, magnitude=magnitude, aggregation=aggregation)


@pytest.mark.parametrize(
    ("aggregation", "error", "match"),
    [
        ("median", ValueError, r"aggregation must be one of 'mean', 'square', 'variance', got 'median'"),
        ("Mean", ValueError, r"aggregation must be one of .* got 'Mean'"),
        (2, TypeError, r"aggregation must be one of .* or None, got int 2"),
    ],
)
def test_bad_aggregation_is_refused(aggregation: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        sk.GradientSaliency().GetSmoothedMask(_image(), never_called, aggregation=aggregation)
    with pytest.raises(error, match=match):
        sk.IntegratedGradients().GetSmoothedMaskBatch(_image()[None], never_called, aggregation=aggregation)


class NonlinearEveryKeyModel:
    """Answers every key for ``[B, H, W, C]`` batches, nonlinearly: f = sum(w * x**2) / 2, gradient w * x.

    The "layer" is ``|x|`` with gradient ``w * x``, so every method's mask
    changes with the noise (a linear model would give VarGrad zero).
    """

    def __init__(self) -> None:
        self.weights = np.linspace(-1.0, 1.0, int(np.prod(SHAPE))).reshape(SHAPE)

    def __call__(self, x_value_batch: Any, call_model_args: Any = None, expected_keys: Any = None) -> dict:
        batch = np.asarray(x_value_batch, dtype=np.float64)
        gradients = self.weights * batch
        return {
            INPUT_OUTPUT_GRADIENTS: gradients,
            GUIDED_INPUT_OUTPUT_GRADIENTS: np.maximum(gradients, 0.0),
            OUTPUT_LAYER_VALUES: (gradients * batch).reshape(len(batch), -1).sum(axis=1) / 2,
            CONVOLUTION_LAYER_VALUES: np.abs(batch),
            CONVOLUTION_OUTPUT_GRADIENTS: gradients,
        }


_REFERENCES = np.random.default_rng(9).uniform(0.0, 1.0, (3, *SHAPE))
EVERY_METHOD = [
    *METHOD_CASES,
    (GradientXInput, {}),
    (ExpectedGradients, {"references": _REFERENCES, "n_samples": 3, "batch_size": 3}),
]


@pytest.mark.parametrize(
    ("method", "parameters"), EVERY_METHOD, ids=lambda case: getattr(case, "__name__", "")
)
def test_every_method_takes_every_aggregation(method: type[CoreSaliency], parameters: dict) -> None:
    """Same seed, same masks: variance = mean of squares - square of the mean, for every method.

    Up to rounding: "square" squares float32 masks (Grad-CAM's) in float32, as the reference does.
    A method's own ``seed`` (RISE) is left out: GetSmoothedMask's seed feeds it.
    """
    parameters = {name: value for name, value in parameters.items() if name != "seed"}
    results = {
        aggregation: method().GetSmoothedMask(
            _image(), NonlinearEveryKeyModel(), nsamples=3, seed=5, aggregation=aggregation, **parameters
        )
        for aggregation in SMOOTHING_AGGREGATIONS
    }
    square, mean = results["square"], results["mean"]
    np.testing.assert_allclose(
        results["variance"], np.maximum(square - mean**2, 0), rtol=1e-6, atol=1e-6 * np.abs(square).max()
    )
    if "base_attribution" not in parameters:  # XRAI with a fixed attribution: the same mask every sample
        assert results["variance"].max() > 0
    batch = method().GetSmoothedMaskBatch(
        _image()[None], NonlinearEveryKeyModel(), nsamples=3, seed=5, aggregation="variance", **parameters
    )
    np.testing.assert_allclose(batch[0], results["variance"], rtol=1e-7, atol=1e-12)


class _OwnGetMask(CoreSaliency):
    """A method written for the reference: GetMask only (the mask is the input squared)."""

    def GetMask(self, x_value, call_model_function, call_model_args=None, **kwargs):  # noqa: N802
        return np.asarray(x_value) ** 2


def test_a_method_with_only_get_mask_takes_every_aggregation() -> None:
    x = _image()
    mean = _OwnGetMask().GetSmoothedMask(x, None, nsamples=5, seed=2, aggregation="mean")
    square = _OwnGetMask().GetSmoothedMask(x, None, nsamples=5, seed=2, aggregation="square")
    variance = _OwnGetMask().GetSmoothedMask(x, None, nsamples=5, seed=2, aggregation="variance")
    np.testing.assert_allclose(variance, square - mean**2, rtol=1e-6, atol=1e-12)
    assert variance.max() > 0


class _OwnGetMaskWithSeed(CoreSaliency):
    """GetMask only, with a seed of its own: records the seed it gets."""

    def __init__(self) -> None:
        self.seeds: list[Any] = []

    def GetMask(self, x_value, call_model_function, call_model_args=None, seed=None):  # noqa: N802
        self.seeds.append(seed)
        return np.asarray(x_value)


def test_a_method_seed_draws_from_the_noise_generator() -> None:
    method = _OwnGetMaskWithSeed()
    method.GetSmoothedMask(_image(), None, nsamples=2, seed=3)
    assert len(method.seeds) == 2 and all(isinstance(seed, np.random.Generator) for seed in method.seeds)
    method = _OwnGetMaskWithSeed()
    method.GetSmoothedMask(_image(), None, nsamples=2)
    assert method.seeds == [None, None]


# --------------------------------------------------------------------------
# The noise: the reference's stream for seed=None, float32 normals for a seed.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_size", [1, 7])
def test_seed_none_sends_the_reference_noisy_inputs_bit_for_bit(dtype: type, batch_size: int) -> None:
    x = _image(seed=4).astype(dtype)
    reference_model, our_model = QuadraticModel(0.5), QuadraticModel(0.5)
    np.random.seed(31)
    reference.GradientSaliency().GetSmoothedMask(x, reference_model, nsamples=7, stdev_spread=0.2)
    np.random.seed(31)
    sk.GradientSaliency().GetSmoothedMask(
        x, our_model, nsamples=7, stdev_spread=0.2, batch_size=batch_size, aggregation="variance"
    )
    theirs, ours = np.concatenate(reference_model.batches), np.concatenate(our_model.batches)
    assert ours.dtype == theirs.dtype == np.float64
    np.testing.assert_array_equal(ours, theirs)


def test_a_seed_draws_float32_standard_normals() -> None:
    x32 = _image(seed=5).astype(np.float32)
    model = QuadraticModel(0.5)
    sk.GradientSaliency().GetSmoothedMask(x32, model, nsamples=4, batch_size=4, seed=8)
    stdev = np.float32(0.15) * (x32.max() - x32.min())
    expected = np.random.default_rng(8).standard_normal((4, *SHAPE), dtype=np.float32) * stdev + x32
    assert model.batches[0].dtype == np.float32
    np.testing.assert_array_equal(model.batches[0], expected)
    # A float64 input gets the same noise (in float64).
    model64 = QuadraticModel(0.5)
    sk.GradientSaliency().GetSmoothedMask(x32.astype(np.float64), model64, nsamples=4, batch_size=4, seed=8)
    assert model64.batches[0].dtype == np.float64
    np.testing.assert_allclose(model64.batches[0], expected, rtol=1e-6, atol=1e-7)


def test_the_same_seed_gives_the_same_result_and_the_batch_seed_rules_hold() -> None:
    images = np.stack([_image(seed=index).astype(np.float32) for index in range(3)])
    method = GradientXInput()

    def one(index: int, seed: Any) -> np.ndarray:
        return method.GetSmoothedMask(
            images[index], _RowModel(), nsamples=4, seed=seed, aggregation="variance"
        )

    np.testing.assert_array_equal(one(0, 17), one(0, 17))
    from_int = method.GetSmoothedMaskBatch(images, _RowModel(), nsamples=4, seed=17, aggregation="variance")
    for index in range(3):
        np.testing.assert_array_equal(from_int[index], one(index, 17 + index))
    generator = np.random.default_rng(17)
    from_generator = method.GetSmoothedMaskBatch(
        images, _RowModel(), nsamples=4, seed=generator, aggregation="variance", batch_size=5
    )
    spawned = np.random.default_rng(17).spawn(2)
    np.testing.assert_array_equal(from_generator[0], one(0, np.random.default_rng(17)))
    np.testing.assert_array_equal(from_generator[2], one(2, spawned[1]))


class _RowModel(RecordingModel):
    """Gradient = x**2 row by row: exactly the same whatever the batch it comes in."""

    def __call__(self, x_value_batch, call_model_args=None, expected_keys=None):
        batch = self.record(x_value_batch, call_model_args, expected_keys)
        return {INPUT_OUTPUT_GRADIENTS: batch * batch}


# --------------------------------------------------------------------------
# Captum's NoiseTunnel on real models, with the same noise.
# --------------------------------------------------------------------------


def _captum_noise_tunnel(
    case: Any, method: Any, samples: np.ndarray, nt_type: str, monkeypatch
) -> np.ndarray:
    """Captum's ``NoiseTunnel(method)`` on ``case.image`` whose noisy inputs are ``samples``."""
    torch = pytest.importorskip("torch")
    captum_attr = pytest.importorskip("captum.attr")
    noisy = torch.from_numpy(samples.astype(np.float32))

    def same_noise(input: Any, stdev: float, nt_samples_partition: int) -> Any:
        assert nt_samples_partition == len(samples) and len(input) == 1
        return noisy.clone()

    monkeypatch.setattr(captum_attr.NoiseTunnel, "_add_noise_to_input", staticmethod(same_noise))
    extra = {"abs": False} if method is captum_attr.Saliency else {}

    def noise_tunnel(forward: Any) -> Any:
        return captum_attr.NoiseTunnel(method(forward))

    return captum_attribution(
        noise_tunnel, case, case.image[None], nt_type=nt_type, nt_samples=len(samples), stdevs=1.0, **extra
    )[0]


@pytest.mark.parametrize("case_name", list(TORCH_CASES))
@pytest.mark.parametrize("method_name", ["GradientSaliency", "GradientXInput"])
def test_matches_captum_noise_tunnel_with_the_same_noise(
    case_name: str, method_name: str, monkeypatch
) -> None:
    captum_attr = pytest.importorskip("captum.attr")
    case = TORCH_CASES[case_name]()
    ours_class, theirs_class = {
        "GradientSaliency": (sk.GradientSaliency, captum_attr.Saliency),
        "GradientXInput": (GradientXInput, captum_attr.InputXGradient),
    }[method_name]
    nsamples = 4
    for aggregation, nt_type in NT_TYPES.items():
        recorder = Recorder(case.call)
        ours = ours_class().GetSmoothedMask(
            case.image, recorder, nsamples=nsamples, batch_size=nsamples, seed=7, aggregation=aggregation
        )
        (samples,) = recorder.batches
        theirs = _captum_noise_tunnel(case, theirs_class, samples, nt_type, monkeypatch)
        assert relative_error(ours, theirs) <= ORACLE_TOLERANCE, aggregation
