"""The PyTorch adapter leaves the user's model, arrays and devices as it found them.

Modes restored module by module, concurrent calls from several threads, models
that need contiguous input, half precision, devices, in-place ``preprocess``.
(The Keras and JAX counterparts are in ``test_keras.py`` and ``test_jax.py``.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import saliencykit.core as saliency  # noqa: E402
import saliencykit.torch as saliency_torch  # noqa: E402
from saliencykit.torch import make_call_model_function  # noqa: E402

from .threads import run_in_threads  # noqa: E402

GRADIENTS = saliency.INPUT_OUTPUT_GRADIENTS
OUTPUTS = saliency.OUTPUT_LAYER_VALUES
GUIDED = saliency.GUIDED_INPUT_OUTPUT_GRADIENTS
LAYER_KEYS = [saliency.CONVOLUTION_LAYER_VALUES, saliency.CONVOLUTION_OUTPUT_GRADIENTS]


class BatchNormNet(nn.Module):
    """conv -> batch norm -> ReLU -> conv -> ReLU -> flatten -> linear, on 8 x 8 x 3 inputs.

    ``view=True`` flattens with ``x.view(x.size(0), -1)``, which needs contiguous memory.
    """

    def __init__(self, seed: int = 0, view: bool = False) -> None:
        super().__init__()
        self.view = view
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(4 * 4 * 4, 3)
        with torch.no_grad():  # non-trivial running statistics
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.relu2(self.conv2(self.relu1(self.bn(self.conv1(x)))))
        return self.fc(hidden.view(hidden.size(0), -1) if self.view else hidden.flatten(1))


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).random((3, 8, 8, 3), dtype=np.float32)


def flags(model: nn.Module) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


def buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in model.named_buffers()}


def assert_same_buffers(before: dict[str, torch.Tensor], model: nn.Module) -> None:
    after = dict(model.named_buffers())
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert torch.equal(value, after[name]), name


# --------------------------------------------------------------------------
# 1. Every submodule's train/eval flag comes back exactly.
# --------------------------------------------------------------------------


def test_an_eval_submodule_of_a_train_mode_model_stays_in_eval(images: np.ndarray) -> None:
    net = BatchNormNet().eval()
    wrapper = nn.Sequential(nn.Identity(), net)  # a new Sequential is in train mode
    before = flags(wrapper)
    assert before[""] and not before["1"] and not before["1.bn"]
    call = make_call_model_function(wrapper, target=0, layer=net.conv2)
    call(images, expected_keys=[GRADIENTS, OUTPUTS, GUIDED, *LAYER_KEYS])
    call(images, expected_keys=[OUTPUTS])
    assert flags(wrapper) == before


def test_a_frozen_batch_norm_stays_frozen(images: np.ndarray) -> None:
    model = BatchNormNet().train()
    model.bn.eval()  # fine-tuning with frozen statistics
    before = flags(model)
    make_call_model_function(model, target=1)(images)
    assert flags(model) == before and not model.bn.training and model.training
    statistics = buffers(model)
    model(torch.tensor(images).permute(0, 3, 1, 2).contiguous())  # the user's next training step
    assert_same_buffers(statistics, model)


def test_eval_mode_false_restores_the_buffers_a_train_mode_pass_changes(images: np.ndarray) -> None:
    model = BatchNormNet().train()
    statistics = buffers(model)
    call = make_call_model_function(model, target=1, eval_mode=False)
    call(images, expected_keys=[GRADIENTS, OUTPUTS])
    call(images, expected_keys=[OUTPUTS])
    assert_same_buffers(statistics, model)
    assert flags(model) == {name: True for name in flags(model)}


# --------------------------------------------------------------------------
# 2. Several threads on one model.
# --------------------------------------------------------------------------


def concurrent_tasks(model: nn.Module, images: np.ndarray, kind: str) -> list[Callable[[], np.ndarray]]:
    """Four calls on ``model`` for four threads; ``kind`` says which mix."""
    call = make_call_model_function(model, target=2, layer=model.conv2)
    other_call = make_call_model_function(model, target=0)  # a second adapter on the same model
    plain = lambda: call(images)[GRADIENTS]  # noqa: E731
    guided = lambda: call(images, expected_keys=[GUIDED])[GUIDED]  # noqa: E731
    grad_cam = lambda: call(images, expected_keys=LAYER_KEYS)[saliency.CONVOLUTION_OUTPUT_GRADIENTS]  # noqa: E731
    ig = lambda: saliency.IntegratedGradients().GetMask(images[0], other_call, x_steps=8, batch_size=4)  # noqa: E731
    return {
        "plain beside guided": [plain, guided, plain, guided],
        "grad-cam": [grad_cam, grad_cam, plain, grad_cam],
        "integrated gradients": [ig, ig, ig, ig],
        "all": [plain, guided, grad_cam, ig],
    }[kind]


@pytest.mark.parametrize("kind", ["plain beside guided", "grad-cam", "integrated gradients", "all"])
def test_concurrent_calls_on_one_model_match_serial_calls(images: np.ndarray, kind: str) -> None:
    model = BatchNormNet().train()
    model_flags, statistics = flags(model), buffers(model)
    tasks = concurrent_tasks(model, images, kind)
    serial = [task() for task in tasks]
    assert flags(model) == model_flags
    for index, outputs in enumerate(run_in_threads(tasks, repeats=30)):
        for output in outputs:
            np.testing.assert_allclose(output, serial[index], rtol=1e-5, atol=1e-6)
    assert flags(model) == model_flags
    assert_same_buffers(statistics, model)  # num_batches_tracked, running statistics
    assert all(not module._forward_hooks for module in model.modules())


def test_concurrent_eval_and_train_mode_calls_do_not_mix(images: np.ndarray) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 8 * 3, 2)).train()
    deterministic = make_call_model_function(model, target=0)
    noisy = make_call_model_function(model, target=0, eval_mode=False)
    expected = deterministic(images)[GRADIENTS]
    results = run_in_threads([lambda: deterministic(images)[GRADIENTS], lambda: noisy(images)[GRADIENTS]], 10)
    for output in results[0]:
        np.testing.assert_array_equal(output, expected)
    assert all(model[1].training for _ in results[1]) and model.training


# --------------------------------------------------------------------------
# 3. Models that flatten with .view after a convolution.
# --------------------------------------------------------------------------


def test_a_model_flattening_with_view_works_with_batches(images: np.ndarray) -> None:
    model = BatchNormNet(view=True).eval()
    call = make_call_model_function(model, target=1)
    ig = saliency.IntegratedGradients()
    one_at_a_time = ig.GetMask(images[0], call, x_steps=8, batch_size=1)
    batched = ig.GetMask(images[0], call, x_steps=8, batch_size=4)
    np.testing.assert_allclose(batched, one_at_a_time, rtol=1e-5, atol=1e-7)
    x = torch.tensor(images, requires_grad=True)
    model(x.permute(0, 3, 1, 2).contiguous())[:, 1].sum().backward()
    np.testing.assert_allclose(call(images)[GRADIENTS], x.grad.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        call(images, expected_keys=[OUTPUTS])[OUTPUTS],
        model(torch.tensor(images).permute(0, 3, 1, 2).contiguous())[:, 1].detach().numpy(),
        rtol=1e-6,
    )


def test_models_that_take_the_channels_last_view_still_get_it(images: np.ndarray) -> None:
    layouts = []

    class Spy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            layouts.append(x.is_contiguous(memory_format=torch.channels_last))
            return x.mean(dim=(2, 3))

    make_call_model_function(Spy(), target=0)(images)
    assert layouts == [True]


# --------------------------------------------------------------------------
# 4. Devices and half precision.
# --------------------------------------------------------------------------


def test_half_precision_gradients_do_not_overflow() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        model[0].weight.fill_(300.0)
        model[0].bias.zero_()
        model[2].weight.fill_(300.0)
        model[2].bias.zero_()
    x = np.full((2, 4), 1e-3, dtype=np.float32)
    expected = make_call_model_function(model, target=0)(x, expected_keys=[GRADIENTS, OUTPUTS])
    np.testing.assert_allclose(expected[GRADIENTS], np.full((2, 4), 4 * 300.0 * 300.0), rtol=1e-5)
    half = make_call_model_function(model.half(), target=0)(x, expected_keys=[GRADIENTS, OUTPUTS])
    assert half[GRADIENTS].dtype == np.float32 and half[OUTPUTS].dtype == np.float32
    assert np.isfinite(half[GRADIENTS]).all()
    np.testing.assert_allclose(half[GRADIENTS], expected[GRADIENTS], rtol=1e-2)
    np.testing.assert_allclose(half[OUTPUTS], expected[OUTPUTS], rtol=1e-2)


def test_bfloat16_models_answer_float32(images: np.ndarray) -> None:
    model = BatchNormNet().eval()
    expected = make_call_model_function(model, target=0, layer=model.conv2)(
        images, expected_keys=[GRADIENTS, OUTPUTS, *LAYER_KEYS]
    )
    answer = make_call_model_function(model.to(torch.bfloat16), target=0, layer=model.conv2)(
        images, expected_keys=[GRADIENTS, OUTPUTS, *LAYER_KEYS]
    )
    for key, value in answer.items():
        assert value.dtype == np.float32, key
        scale = np.abs(expected[key]).max()
        np.testing.assert_allclose(value, expected[key], atol=0.15 * scale)


def test_a_device_without_the_model_is_refused() -> None:
    model = nn.Linear(3, 2).to("meta")
    with pytest.raises(ValueError, match=r"device='cpu' but the model's parameters are on \['meta'\]"):
        make_call_model_function(model, target=0, device="cpu")
    make_call_model_function(model, target=0, device="meta")  # where it is: fine


@pytest.mark.parametrize(
    "message",
    [  # torch's words for a CPU constant meeting a CUDA input, in an elementwise op and in a convolution
        "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!",
        "Input type (torch.FloatTensor) and weight type (torch.cuda.FloatTensor) should be the same or "
        "input should be a MKLDNN tensor and weight is a dense tensor",
    ],
)
def test_preprocess_constants_on_another_device_get_a_clear_error(images: np.ndarray, message: str) -> None:
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(message)

    call = make_call_model_function(BatchNormNet().eval(), target=0, preprocess=preprocess)
    for keys in ([OUTPUTS], [GRADIENTS]):
        with pytest.raises(saliency_torch.DeviceMismatchError, match="normalize") as caught:
            call(images, expected_keys=keys)
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, RuntimeError)
        assert message in str(caught.value)


def test_other_runtime_errors_are_not_called_device_errors(images: np.ndarray) -> None:
    call = make_call_model_function(BatchNormNet().eval(), target=0, preprocess=lambda x: x.double())
    with pytest.raises(RuntimeError, match="should be the same") as caught:
        call(images)
    assert not isinstance(caught.value, ValueError)


def test_normalize_follows_the_input_dtype(images: np.ndarray) -> None:
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    preprocess = saliency_torch.normalize(mean, std, scale=1 / 255)
    x = torch.tensor(images * 255).permute(0, 3, 1, 2)
    expected = (x / 255 - torch.tensor(mean).reshape(1, 3, 1, 1)) / torch.tensor(std).reshape(1, 3, 1, 1)
    torch.testing.assert_close(preprocess(x), expected)
    assert preprocess(x.double()).dtype == torch.float64
    assert preprocess(x.half()).dtype == torch.float16
    with pytest.raises(ValueError, match="std must be non-zero"):
        saliency_torch.normalize(mean, [1.0, 0.0, 1.0])
    model = BatchNormNet().eval()
    with_helper = make_call_model_function(model, target=0, preprocess=preprocess)(images * 255)
    by_hand = make_call_model_function(
        model,
        target=0,
        preprocess=lambda x: (
            (x / 255 - torch.tensor(mean).reshape(1, 3, 1, 1)) / torch.tensor(std).reshape(1, 3, 1, 1)
        ),
    )(images * 255)
    np.testing.assert_allclose(with_helper[GRADIENTS], by_hand[GRADIENTS], rtol=1e-5, atol=1e-9)


# --------------------------------------------------------------------------
# 5. The caller's array.
# --------------------------------------------------------------------------


def test_an_in_place_preprocess_never_writes_into_the_callers_batch(images: np.ndarray) -> None:
    model = BatchNormNet().eval()
    mean = torch.tensor([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1)
    in_place = make_call_model_function(model, target=1, preprocess=lambda x: x.sub_(mean).mul_(2))
    out_of_place = make_call_model_function(model, target=1, preprocess=lambda x: (x - mean) * 2)
    original = images.copy()
    values = in_place(images, expected_keys=[OUTPUTS])[OUTPUTS]
    np.testing.assert_array_equal(images, original)
    np.testing.assert_allclose(values, out_of_place(images, expected_keys=[OUTPUTS])[OUTPUTS], rtol=1e-6)
    gradients = in_place(images, expected_keys=[GRADIENTS, GUIDED])
    np.testing.assert_array_equal(images, original)
    expected = out_of_place(images, expected_keys=[GRADIENTS, GUIDED])
    for key in (GRADIENTS, GUIDED):
        np.testing.assert_allclose(gradients[key], expected[key], rtol=1e-5, atol=1e-7)


def test_a_model_working_in_place_on_its_input_never_writes_into_the_callers_batch(
    images: np.ndarray,
) -> None:
    class ScalesInPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = BatchNormNet().eval()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.mul_(2))

    model = ScalesInPlace()
    call = make_call_model_function(model, target=1)
    original = images.copy()
    values = call(images, expected_keys=[OUTPUTS])[OUTPUTS]
    np.testing.assert_array_equal(images, original)
    gradients = call(images)[GRADIENTS]  # autograd refused an in-place op on the leaf before
    np.testing.assert_array_equal(images, original)
    expected = make_call_model_function(model.net, target=1)(images * 2, expected_keys=[GRADIENTS, OUTPUTS])
    np.testing.assert_allclose(values, expected[OUTPUTS], rtol=1e-6)
    np.testing.assert_allclose(gradients, expected[GRADIENTS] * 2, rtol=1e-5, atol=1e-7)


def test_flipped_images_with_negative_strides_are_accepted(images: np.ndarray) -> None:
    model = BatchNormNet().eval()
    call = make_call_model_function(model, target=0)
    flipped = images[:, :, ::-1]
    np.testing.assert_array_equal(call(flipped)[GRADIENTS], call(np.ascontiguousarray(flipped))[GRADIENTS])
    assert saliency.GradientSaliency().GetMask(flipped[0], call).shape == flipped[0].shape


def test_normalize_first_used_in_a_forward_only_call_still_serves_gradient_calls():
    """Its cached constants are not inference tensors, whichever call makes them first."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    call = make_call_model_function(
        model.eval(),
        "predicted",
        preprocess=saliency_torch.normalize([0.5, 0.4, 0.3], [0.2, 0.2, 0.2], scale=1 / 255),
    )
    image = np.random.default_rng(0).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    call(image[None], expected_keys=[saliency.OUTPUT_LAYER_VALUES])  # forward only, first use
    mask = saliency.IntegratedGradients().GetMask(image, call, x_steps=3)
    assert mask.shape == image.shape and np.isfinite(mask).all()
