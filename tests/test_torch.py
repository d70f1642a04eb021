"""Tests of the PyTorch adapter (saliencykit.torch) on small real PyTorch models."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import saliencykit.core as saliency  # noqa: E402
from saliencykit.torch import make_call_model_function  # noqa: E402

ALL_GRADIENT_KEYS = [
    saliency.INPUT_OUTPUT_GRADIENTS,
    saliency.CONVOLUTION_LAYER_VALUES,
    saliency.CONVOLUTION_OUTPUT_GRADIENTS,
    saliency.OUTPUT_LAYER_VALUES,
]


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    )


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).random((2, 8, 9, 3), dtype=np.float32)


def manual_gradients(model: nn.Module, images: np.ndarray, target: int) -> np.ndarray:
    x = torch.tensor(images, requires_grad=True)
    model(x.permute(0, 3, 1, 2))[:, target].sum().backward()
    return x.grad.numpy()


def test_input_gradients_and_outputs_match_autograd(images: np.ndarray) -> None:
    model = small_cnn().eval()
    call = make_call_model_function(model, target=3)
    answer = call(images, expected_keys=[saliency.INPUT_OUTPUT_GRADIENTS, saliency.OUTPUT_LAYER_VALUES])
    np.testing.assert_allclose(
        answer[saliency.INPUT_OUTPUT_GRADIENTS], manual_gradients(model, images, 3), rtol=1e-5, atol=1e-7
    )
    with torch.no_grad():
        expected = model(torch.tensor(images).permute(0, 3, 1, 2))[:, 3].numpy()
    np.testing.assert_allclose(answer[saliency.OUTPUT_LAYER_VALUES], expected, rtol=1e-6)


def test_output_values_alone_run_without_autograd(images: np.ndarray) -> None:
    grad_modes = []

    class Spy(nn.Module):
        def forward(self, x):
            grad_modes.append(torch.is_grad_enabled())
            return x.mean(dim=(2, 3))

    call = make_call_model_function(Spy(), target=0)
    values = call(images, expected_keys=[saliency.OUTPUT_LAYER_VALUES])[saliency.OUTPUT_LAYER_VALUES]
    assert grad_modes == [False]
    np.testing.assert_allclose(values, images[..., 0].mean(axis=(1, 2)), rtol=1e-6)


def test_model_state_is_left_as_found(images: np.ndarray) -> None:
    model = small_cnn().train()
    before = [p.detach().clone() for p in model.parameters()]
    call = make_call_model_function(model, target=1, layer=model[2])
    call(images, expected_keys=ALL_GRADIENT_KEYS + [saliency.GUIDED_INPUT_OUTPUT_GRADIENTS])
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(not m._forward_hooks for m in model.modules())


def test_eval_mode_is_used_during_calls(images: np.ndarray) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 9 * 3, 2)).train()
    call = make_call_model_function(model, target=0, channels_last_input=False)
    first = call(images)[saliency.INPUT_OUTPUT_GRADIENTS]
    second = call(images)[saliency.INPUT_OUTPUT_GRADIENTS]
    np.testing.assert_array_equal(first, second)  # no dropout noise
    assert model.training


@pytest.mark.parametrize(
    ("conv", "input_shape", "layer_shape"),
    [
        (nn.Conv1d(3, 4, 3, padding=1), (2, 10, 3), (2, 10, 4)),
        (nn.Conv2d(3, 4, 3, padding=1), (2, 6, 7, 3), (2, 6, 7, 4)),
        (nn.Conv3d(3, 4, 3, padding=1), (2, 4, 5, 6, 3), (2, 4, 5, 6, 4)),
    ],
)
def test_conv_layer_keys_are_channel_last_for_any_rank(conv, input_shape, layer_shape) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    batch = np.random.default_rng(1).random(input_shape, dtype=np.float32)
    model(torch.tensor(batch).movedim(-1, 1))  # materialise the lazy layer
    answer = make_call_model_function(model, target=2, layer=conv)(batch, expected_keys=ALL_GRADIENT_KEYS)
    assert answer[saliency.CONVOLUTION_LAYER_VALUES].shape == layer_shape
    assert answer[saliency.CONVOLUTION_OUTPUT_GRADIENTS].shape == layer_shape

    activation = conv(torch.tensor(batch).movedim(-1, 1)).detach().requires_grad_(True)
    model[2:](model[1](activation))[:, 2].sum().backward()
    np.testing.assert_allclose(
        answer[saliency.CONVOLUTION_LAYER_VALUES],
        activation.detach().movedim(1, -1).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        answer[saliency.CONVOLUTION_OUTPUT_GRADIENTS],
        activation.grad.movedim(1, -1).numpy(),
        rtol=1e-5,
        atol=1e-7,
    )


def test_layer_by_name(images: np.ndarray) -> None:
    model = small_cnn()
    by_name = make_call_model_function(model, target=0, layer="2")(images, expected_keys=ALL_GRADIENT_KEYS)
    by_module = make_call_model_function(model, target=0, layer=model[2])(
        images, expected_keys=ALL_GRADIENT_KEYS
    )
    for key in ALL_GRADIENT_KEYS:
        np.testing.assert_array_equal(by_name[key], by_module[key])


def test_guided_backprop_matches_a_hand_computation() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    x = np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32)
    w1, b1, w2, b2, w3 = (p.detach().numpy() for p in list(model.parameters())[:5])
    h1 = x @ w1.T + b1
    h2 = np.maximum(h1, 0) @ w2.T + b2
    upstream = np.broadcast_to(w3[1], (4, 8))  # d output[:, 1] / d relu(h2)
    grad_h2 = np.clip(upstream, 0, None) * (h2 > 0)
    grad_h1 = np.clip(grad_h2 @ w2, 0, None) * (h1 > 0)
    expected = grad_h1 @ w1

    call = make_call_model_function(model, target=1)
    guided = call(x, expected_keys=[saliency.GUIDED_INPUT_OUTPUT_GRADIENTS])[
        saliency.GUIDED_INPUT_OUTPUT_GRADIENTS
    ]
    np.testing.assert_allclose(guided, expected, rtol=1e-5, atol=1e-6)
    plain = call(x)[saliency.INPUT_OUTPUT_GRADIENTS]
    assert not np.allclose(plain, guided)
    np.testing.assert_allclose(
        saliency.GuidedBackprop().GetMask(x[0], call), expected[0], rtol=1e-5, atol=1e-6
    )
    assert all(not m._forward_hooks for m in model.modules())


def test_hooks_are_removed_when_a_call_raises(images: np.ndarray) -> None:
    model = small_cnn()
    call = make_call_model_function(model, target=0, layer=model[2])
    with pytest.raises(ValueError, match="out of range"):
        call(images, call_model_args=99, expected_keys=[saliency.GUIDED_INPUT_OUTPUT_GRADIENTS])
    with pytest.raises(ValueError, match="out of range"):
        call(images, call_model_args=99, expected_keys=ALL_GRADIENT_KEYS)
    assert all(not m._forward_hooks for m in model.modules())


def test_call_model_args_override_the_target(images: np.ndarray) -> None:
    model = small_cnn().eval()
    call = make_call_model_function(model, target=0)
    expected = manual_gradients(model, images, 4)
    for override in (4, {"target": 4}, lambda outputs: outputs[:, 4]):
        np.testing.assert_allclose(
            call(images, call_model_args=override)[saliency.INPUT_OUTPUT_GRADIENTS],
            expected,
            rtol=1e-5,
            atol=1e-7,
        )


def test_softmax_target_and_preprocess_are_differentiated(images: np.ndarray) -> None:
    model = small_cnn().eval()
    probability = make_call_model_function(model, target=lambda outputs: torch.softmax(outputs, 1)[:, 2])
    scaled = make_call_model_function(
        model, target=lambda outputs: torch.softmax(outputs, 1)[:, 2], preprocess=lambda x: x / 255
    )
    grad_probability = probability(images)[saliency.INPUT_OUTPUT_GRADIENTS]
    grad_scaled = scaled(images * 255)[saliency.INPUT_OUTPUT_GRADIENTS]
    np.testing.assert_allclose(grad_scaled * 255, grad_probability, rtol=1e-4, atol=1e-9)
    x = torch.tensor(images, requires_grad=True)
    torch.softmax(model(x.permute(0, 3, 1, 2)), 1)[:, 2].sum().backward()
    np.testing.assert_allclose(grad_probability, x.grad.numpy(), rtol=1e-5, atol=1e-9)


def test_uint8_images_and_core_methods_run_through_the_adapter() -> None:
    model = small_cnn().eval()
    image = (np.random.default_rng(4).random((8, 9, 3)) * 255).astype(np.uint8)
    call = make_call_model_function(model, target=0, preprocess=lambda x: x / 255)
    ig = saliency.IntegratedGradients().GetMaskWithDetails(
        image, call, x_steps=64, batch_size=64, integration_rule="gausslegendre"
    )
    assert ig.attribution.shape == image.shape
    assert abs(ig.completeness_error) < 1e-3 * max(1.0, abs(ig.output_at_input - ig.output_at_baseline))
    smooth = saliency.GradientSaliency().GetSmoothedMask(image, call, nsamples=6, batch_size=6, seed=0)
    assert smooth.shape == image.shape and np.isfinite(smooth).all()


def test_linear_model_ig_is_exact() -> None:
    model = nn.Linear(5, 2, bias=True)
    x = np.random.default_rng(5).normal(size=5).astype(np.float32)
    call = make_call_model_function(model, target=1)
    attribution = saliency.IntegratedGradients().GetMask(x, call, x_steps=3, batch_size=3)
    np.testing.assert_allclose(attribution, x * model.weight[1].detach().numpy(), rtol=1e-5)


@pytest.mark.parametrize(
    ("make", "keys", "error", "match"),
    [
        (lambda m: make_call_model_function(m, target=5), None, ValueError, "target class 5 is out of range"),
        (lambda m: make_call_model_function(m, target="cat"), None, TypeError, "target must be"),
        (
            lambda m: make_call_model_function(m, target=lambda o: o),
            None,
            ValueError,
            "one scalar per example",
        ),
        (lambda m: make_call_model_function(m, target=0), ["NOT_A_KEY"], ValueError, "unknown expected_keys"),
        (
            lambda m: make_call_model_function(m, target=0),
            [saliency.CONVOLUTION_LAYER_VALUES],
            ValueError,
            "layer=",
        ),
    ],
)
def test_errors_in_calls(images, make, keys, error, match) -> None:
    with pytest.raises(error, match=match):
        make(small_cnn())(images, expected_keys=keys)


def test_bad_layers() -> None:
    model = small_cnn()
    with pytest.raises(ValueError, match="not a module of the model"):
        make_call_model_function(model, target=0, layer="conv_that_does_not_exist")
    with pytest.raises(ValueError, match="not a module of the model"):
        make_call_model_function(model, target=0, layer=nn.Conv2d(3, 3, 1))
    with pytest.raises(TypeError, match="nn.Module"):
        make_call_model_function(model, target=0, layer=3)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        make_call_model_function(lambda x: x, target=0)


def test_models_without_gradients_are_reported(images: np.ndarray) -> None:
    class Detached(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3)).detach()

    class Rounded(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3)).round().long()

    for model in (Detached(), Rounded()):
        with pytest.raises(ValueError, match="does not depend differentiably"):
            make_call_model_function(model, target=0)(images)


def test_guided_backprop_needs_relu_modules(images: np.ndarray) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(8 * 9 * 3, 2))
    with pytest.raises(ValueError, match="nn.ReLU"):
        make_call_model_function(model, target=0, channels_last_input=False)(
            images, expected_keys=[saliency.GUIDED_INPUT_OUTPUT_GRADIENTS]
        )


def test_channels_first_input_passes_unchanged(images: np.ndarray) -> None:
    model = small_cnn().eval()
    nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    from_nchw = make_call_model_function(model, target=2, channels_last_input=False)(nchw)
    from_nhwc = make_call_model_function(model, target=2)(images)
    np.testing.assert_allclose(
        from_nchw[saliency.INPUT_OUTPUT_GRADIENTS].transpose(0, 2, 3, 1),
        from_nhwc[saliency.INPUT_OUTPUT_GRADIENTS],
        rtol=1e-5,
        atol=1e-8,
    )


def test_gradients_inside_no_grad_and_inference_mode(images: np.ndarray) -> None:
    model = small_cnn().eval()
    call = make_call_model_function(model, target=1)
    expected = manual_gradients(model, images, 1)
    with torch.no_grad():
        np.testing.assert_allclose(
            call(images)[saliency.INPUT_OUTPUT_GRADIENTS], expected, rtol=1e-5, atol=1e-7
        )
    with torch.inference_mode():
        np.testing.assert_allclose(
            call(images)[saliency.INPUT_OUTPUT_GRADIENTS], expected, rtol=1e-5, atol=1e-7
        )


def test_grad_cam_layer_followed_by_an_inplace_relu(images: np.ndarray) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    values = make_call_model_function(model, target=0, layer=conv)(images, expected_keys=ALL_GRADIENT_KEYS)
    expected = conv(torch.tensor(images).permute(0, 3, 1, 2)).detach().movedim(1, -1).numpy()
    assert expected.min() < 0  # the pre-ReLU values, not the rectified ones
    np.testing.assert_allclose(values[saliency.CONVOLUTION_LAYER_VALUES], expected, rtol=1e-5, atol=1e-6)


def test_read_only_batches_are_accepted(images: np.ndarray) -> None:
    model = small_cnn().eval()
    read_only = np.broadcast_to(images[:1], images.shape)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradients = make_call_model_function(model, target=0)(read_only)[saliency.INPUT_OUTPUT_GRADIENTS]
    np.testing.assert_allclose(gradients[1], gradients[0], rtol=1e-6)
