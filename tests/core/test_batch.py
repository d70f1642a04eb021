"""Many examples at once: GetMaskBatch / GetSmoothedMaskBatch and the scheduler that packs calls.

Every mask of a batch must equal GetMask on its example; the evaluations of all
examples must share calls of at most ``batch_size`` inputs (the tests count
the calls); per-example ``call_model_args`` share calls only when the model
function can pack them; memory stays bounded by ``batch_size`` inputs.
"""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import numpy as np
import pytest

import saliencykit.core as sk
from saliencykit.core import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    GUIDED_INPUT_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
)
from saliencykit.core.base import CoreSaliency, Fork, Request, run_steps

SHAPE = (8, 6, 3)
N = 5


def _scales(call_model_args: Any, n_rows: int) -> np.ndarray:
    """The per-row output scale that ``call_model_args`` asks for (1 by default)."""
    if isinstance(call_model_args, dict) and "rows" in call_model_args:  # packed by pack_call_model_args
        return np.array([_scales(args, 1)[0] for args in call_model_args["rows"]], dtype=np.float64)
    if isinstance(call_model_args, dict):
        return np.full(n_rows, float(call_model_args["scale"]))
    if isinstance(call_model_args, (int, float)):
        return np.full(n_rows, float(call_model_args))
    return np.ones(n_rows)


class RowModel:
    """Answers every key; each row's answer depends only on that row and its ``call_model_args``.

    f(x) = scale * sum(tanh(w * x)); the "layer" is ``|x|`` with gradient ``df/dx``.
    A scale from ``call_model_args`` (an int, ``{"scale": s}``) multiplies the output,
    so a row explained with another example's arguments gives another answer.
    """

    def __init__(self, shape: tuple[int, ...] = SHAPE) -> None:
        self.weights = np.random.default_rng(0).normal(size=shape)
        self.calls: list[tuple[int, Any, list[str]]] = []

    @property
    def sizes(self) -> list[int]:
        return [size for size, _, _ in self.calls]

    def __call__(self, x_value_batch: Any, call_model_args: Any = None, expected_keys: Any = None) -> dict:
        batch = np.asarray(x_value_batch, dtype=np.float64)
        self.calls.append((len(batch), call_model_args, list(expected_keys or [])))
        scale = _scales(call_model_args, len(batch)).reshape((-1,) + (1,) * (batch.ndim - 1))
        tanh = np.tanh(batch * self.weights)
        gradients = scale * self.weights * (1 - tanh**2)
        return {
            INPUT_OUTPUT_GRADIENTS: gradients,
            GUIDED_INPUT_OUTPUT_GRADIENTS: np.maximum(gradients, 0.0),
            OUTPUT_LAYER_VALUES: (scale * tanh).reshape(len(batch), -1).sum(axis=1),
            CONVOLUTION_LAYER_VALUES: np.abs(batch),
            CONVOLUTION_OUTPUT_GRADIENTS: gradients,
        }


class PackingRowModel(RowModel):
    """A RowModel that packs rows of different arguments, as the adapters do."""

    def __init__(self, shape: tuple[int, ...] = SHAPE) -> None:
        super().__init__(shape)
        self.packed: list[list[Any]] = []

    def pack_call_model_args(self, row_args: list[Any]) -> dict:
        self.packed.append(list(row_args))
        return {"rows": list(row_args)}


def _images(n: int = N, shape: tuple[int, ...] = SHAPE, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, *shape))


def _square_segments(shape: tuple[int, ...] = SHAPE) -> list[np.ndarray]:
    masks = []
    for top in (0, 4):
        for left in (0, 3):
            mask = np.zeros(shape[:2], dtype=bool)
            mask[top : top + 4, left : left + 3] = True
            masks.append(mask)
    return masks


# (method, GetMask parameters, model inputs per mask)
METHODS = [
    (sk.GradientSaliency, {}, 1),
    (sk.GuidedBackprop, {}, 1),
    (sk.GradCam, {}, 1),
    (sk.GradCam, {"should_resize": False, "three_dims": False}, 1),
    (sk.GuidedGradCam, {}, 1),
    (sk.IntegratedGradients, {"x_steps": 7}, 7),
    (sk.IntegratedGradients, {"x_steps": 6, "integration_rule": "gausslegendre"}, 6),
    (sk.BlurIG, {"steps": 6, "max_sigma": 3.0}, 6),
    (sk.BlurIG, {"steps": 5, "max_sigma": 4.0, "sqrt": True}, 5),
    (sk.Occlusion, {"size": 3, "stride": 2}, 4 * 3 + 1),
    (sk.GuidedIG, {"x_steps": 4}, 4),
    (sk.XRAI, {"segments": _square_segments(), "extra_parameters": sk.XRAIParameters(steps=4)}, 8),
]
IDS = [f"{method.__name__}-{index}" for index, (method, _, _) in enumerate(METHODS)]
# Methods whose evaluations are all known up front: ceil(total / batch_size) calls.
PACKED = [case for case in METHODS if case[0] not in (sk.GuidedIG, sk.XRAI)]
PACKED_IDS = [f"{method.__name__}-{index}" for index, (method, _, _) in enumerate(PACKED)]


# --------------------------------------------------------------------------
# Same results as GetMask, packed calls.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "parameters", "per_mask"), METHODS, ids=IDS)
def test_each_mask_equals_get_mask(method: type[CoreSaliency], parameters: dict, per_mask: int) -> None:
    images = _images()
    masks = method().GetMaskBatch(images, RowModel(), batch_size=4, **parameters)
    expected = np.stack([method().GetMask(image, RowModel(), **parameters) for image in images])
    assert masks.shape == expected.shape and masks.dtype == expected.dtype
    np.testing.assert_allclose(masks, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 64])
@pytest.mark.parametrize(("method", "parameters", "per_mask"), PACKED, ids=PACKED_IDS)
def test_calls_are_packed_across_examples(
    method: type[CoreSaliency], parameters: dict, per_mask: int, batch_size: int
) -> None:
    model = RowModel()
    method().GetMaskBatch(_images(), model, batch_size=batch_size, **parameters)
    total = N * per_mask
    assert sum(model.sizes) == total
    assert len(model.calls) == math.ceil(total / batch_size)
    assert max(model.sizes) <= batch_size
    assert all(keys == list(method.expected_keys) for _, _, keys in model.calls)


def test_call_counts_measured() -> None:
    """The numbers quoted in the report: 5 images 8x6x3, IG 25 steps, batch_size 16."""
    loop, batch = RowModel(), RowModel()
    for image in _images():
        sk.IntegratedGradients().GetMask(image, loop, x_steps=25, batch_size=16)
    sk.IntegratedGradients().GetMaskBatch(_images(), batch, x_steps=25, batch_size=16)
    assert (len(loop.calls), len(batch.calls)) == (10, 8)  # 5 x ceil(25/16) vs ceil(125/16)
    assert batch.sizes == [16] * 7 + [13]


@pytest.mark.parametrize(("n_examples", "batch_size"), [(4, 8), (4, 4), (5, 2)])
def test_guided_ig_sends_step_k_of_every_example_in_one_call(n_examples: int, batch_size: int) -> None:
    model = RowModel()
    images = _images(n_examples)
    masks = sk.GuidedIG().GetMaskBatch(images, model, batch_size=batch_size, x_steps=6)
    groups = math.ceil(n_examples / batch_size)
    assert len(model.calls) == 6 * groups
    if n_examples <= batch_size:
        assert model.sizes == [n_examples] * 6
    for image, mask in zip(images, masks, strict=True):
        np.testing.assert_allclose(mask, sk.GuidedIG().GetMask(image, RowModel(), x_steps=6), rtol=1e-10)


def test_xrai_packs_integrated_gradients_across_images() -> None:
    """2 baselines x 5 steps per image, one after the other within an image, packed across images."""
    images = _images(3)
    params = sk.XRAIParameters(steps=5, algorithm="fast")
    loop = RowModel()
    expected = [
        sk.XRAI().GetMask(image, loop, segments=_square_segments(), batch_size=4, extra_parameters=params)
        for image in images
    ]
    model = RowModel()
    masks = sk.XRAI().GetMaskBatch(
        images, model, segments=_square_segments(), batch_size=4, extra_parameters=params
    )
    assert masks.shape == (3, 8, 6)
    np.testing.assert_allclose(masks, np.stack(expected), rtol=1e-10)
    assert sum(model.sizes) == 3 * 2 * 5
    # 3 x 2 x ceil(5/4) calls one image at a time; packed: full calls until the last image,
    # whose second baseline starts only when its first is done (two calls not full).
    assert (len(loop.calls), len(model.calls)) == (12, 9)
    assert model.sizes == [4] * 6 + [1, 4, 1]


def test_xrai_default_segmentation_and_details_per_image() -> None:
    images = _images(2, shape=(12, 10, 3))
    params = sk.XRAIParameters(steps=3, return_xrai_segments=True, return_ig_attributions=True)
    masks, details = sk.XRAI().GetMaskBatch(
        images, RowModel((12, 10, 3)), batch_size=5, extra_parameters=params, return_details=True
    )
    assert masks.shape == (2, 12, 10) and len(details) == 2
    for image, mask, output in zip(images, masks, details, strict=True):
        expected = sk.XRAI().GetMaskWithDetails(image, RowModel((12, 10, 3)), extra_parameters=params)
        assert isinstance(output, sk.XRAIOutput)
        np.testing.assert_allclose(mask, expected.attribution_mask, rtol=1e-10)
        np.testing.assert_allclose(output.attribution_mask, expected.attribution_mask, rtol=1e-10)
        np.testing.assert_array_equal(output.segments, expected.segments)
        np.testing.assert_allclose(output.ig_attribution, expected.ig_attribution, rtol=1e-10)


def test_xrai_per_image_segments_base_attribution_and_baselines() -> None:
    images = _images(2)
    segments = [_square_segments(), _square_segments()[:2]]
    attributions = np.random.default_rng(3).normal(size=(2, *SHAPE))
    masks, details = sk.XRAI().GetMaskBatch(
        images,
        None,
        segments=segments,
        base_attribution=attributions,
        return_details=True,
        extra_parameters=sk.XRAIParameters(return_xrai_segments=True, flatten_xrai_segments=False),
    )
    for index in range(2):
        expected = sk.XRAI().GetMask(
            images[index], None, segments=segments[index], base_attribution=attributions[index]
        )
        np.testing.assert_allclose(masks[index], expected)
    assert len(details[1].segments) <= 3  # two segments and the rest
    baselines = np.stack([np.zeros((1, *SHAPE)), np.ones((1, *SHAPE))])  # [N, B, ...]
    params = sk.XRAIParameters(steps=3)
    masks = sk.XRAI().GetMaskBatch(
        images, RowModel(), baselines=baselines, segments=_square_segments(), extra_parameters=params
    )
    for index in range(2):
        expected = sk.XRAI().GetMask(
            images[index],
            RowModel(),
            baselines=list(baselines[index]),
            segments=_square_segments(),
            extra_parameters=params,
        )
        np.testing.assert_allclose(masks[index], expected, rtol=1e-10)


@pytest.mark.parametrize("method", [sk.IntegratedGradients, sk.GuidedIG])
def test_per_example_and_shared_baselines(method: type[CoreSaliency]) -> None:
    images = _images(3)
    baselines = np.random.default_rng(4).uniform(-0.2, 0.2, (3, *SHAPE))
    steps = {"x_steps": 4}
    per_example = method().GetMaskBatch(images, RowModel(), x_baseline=baselines, **steps)
    shared = method().GetMaskBatch(images, RowModel(), x_baseline=baselines[1], **steps)
    for index, image in enumerate(images):
        own = method().GetMask(image, RowModel(), x_baseline=baselines[index], **steps)
        np.testing.assert_allclose(per_example[index], own, rtol=1e-10)
        common = method().GetMask(image, RowModel(), x_baseline=baselines[1], **steps)
        np.testing.assert_allclose(shared[index], common, rtol=1e-10)


def test_a_sequence_of_arrays_is_a_batch() -> None:
    images = _images(3)
    as_list = [images[0].astype(np.float32), images[1], images[2]]  # promoted to float64 together
    masks = sk.IntegratedGradients().GetMaskBatch(as_list, RowModel(), x_steps=3)
    np.testing.assert_allclose(masks, sk.IntegratedGradients().GetMaskBatch(images, RowModel(), x_steps=3))
    assert masks.dtype == np.float64


def test_get_mask_is_the_batch_of_one() -> None:
    """GetMask and GetMaskBatch of one example make the same calls and give the same mask."""
    image = _images(1)
    single, batch = RowModel(), RowModel()
    expected = sk.IntegratedGradients().GetMask(image[0], single, x_steps=10, batch_size=4)
    mask = sk.IntegratedGradients().GetMaskBatch(image, batch, x_steps=10, batch_size=4)
    np.testing.assert_array_equal(mask[0], expected)
    assert single.sizes == batch.sizes == [4, 4, 2]


# --------------------------------------------------------------------------
# SmoothGrad.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "parameters", "per_mask"),
    [
        (sk.GradientSaliency, {}, 1),
        (sk.IntegratedGradients, {"x_steps": 5}, 5),
        (sk.Occlusion, {"size": 4, "stride": 4}, 5),
    ],
    ids=["gradients", "ig", "occlusion"],
)
def test_smoothgrad_batch_packs_every_sample(
    method: type[CoreSaliency], parameters: dict, per_mask: int
) -> None:
    model = RowModel()
    masks = method().GetSmoothedMaskBatch(_images(), model, nsamples=6, seed=10, batch_size=8, **parameters)
    total = N * 6 * per_mask
    assert sum(model.sizes) == total and len(model.calls) == math.ceil(total / 8)
    for index, image in enumerate(_images()):
        expected = method().GetSmoothedMask(image, RowModel(), nsamples=6, seed=10 + index, **parameters)
        np.testing.assert_allclose(masks[index], expected, rtol=1e-10, atol=1e-12)


def test_smoothgrad_batch_of_one_equals_get_smoothed_mask_with_the_same_seed() -> None:
    image = _images(1)
    method = sk.GradientSaliency()
    for seed in (3, np.random.default_rng(3)):
        batch = method.GetSmoothedMaskBatch(image, RowModel(), nsamples=5, seed=seed, magnitude=False)
        fresh = np.random.default_rng(3) if isinstance(seed, np.random.Generator) else seed
        single = method.GetSmoothedMask(image[0], RowModel(), nsamples=5, seed=fresh, magnitude=False)
        np.testing.assert_allclose(batch[0], single, rtol=1e-12)


def test_smoothgrad_batch_noise_of_each_example() -> None:
    """int s: example i gets seed s + i; Generator g: g, then g.spawn(N - 1); a list: one seed each."""
    images = _images(3)
    method = sk.GradientSaliency()

    def one(index: int, seed: Any) -> np.ndarray:
        return method.GetSmoothedMask(images[index], RowModel(), nsamples=4, seed=seed)

    from_int = method.GetSmoothedMaskBatch(images, RowModel(), nsamples=4, seed=7)
    for index in range(3):
        np.testing.assert_allclose(from_int[index], one(index, 7 + index), rtol=1e-12)
    from_generator = method.GetSmoothedMaskBatch(
        images, RowModel(), nsamples=4, seed=np.random.default_rng(7)
    )
    children = np.random.default_rng(7).spawn(2)
    np.testing.assert_allclose(from_generator[0], one(0, np.random.default_rng(7)), rtol=1e-12)
    np.testing.assert_allclose(from_generator[1], one(1, children[0]), rtol=1e-12)
    np.testing.assert_allclose(from_generator[2], one(2, children[1]), rtol=1e-12)
    from_list = method.GetSmoothedMaskBatch(images, RowModel(), nsamples=4, seed=[5, 1, 9])
    np.testing.assert_allclose(from_list[1], one(1, 1), rtol=1e-12)
    # None: NumPy's global state, reproducible for the same call.
    np.random.seed(0)
    first = method.GetSmoothedMaskBatch(images, RowModel(), nsamples=4)
    np.random.seed(0)
    np.testing.assert_array_equal(method.GetSmoothedMaskBatch(images, RowModel(), nsamples=4), first)
    with pytest.raises(ValueError, match=r"seed must be .* expected 3 entries .* got 2"):
        method.GetSmoothedMaskBatch(images, RowModel(), seed=[1, 2])
    with pytest.raises(TypeError, match="seed"):
        method.GetSmoothedMaskBatch(images, RowModel(), seed="1")


def test_get_smoothed_mask_keeps_its_calls() -> None:
    """Vanilla gradients pack samples into batch_size; IG runs its samples one after the other."""
    model = RowModel()
    sk.GradientSaliency().GetSmoothedMask(_images(1)[0], model, nsamples=7, batch_size=3, seed=0)
    assert model.sizes == [3, 3, 1]
    model = RowModel()
    sk.IntegratedGradients().GetSmoothedMask(
        _images(1)[0], model, nsamples=2, x_steps=5, batch_size=3, seed=0
    )
    assert model.sizes == [3, 2, 3, 2]


# --------------------------------------------------------------------------
# call_model_args per example.
# --------------------------------------------------------------------------


def test_plain_function_shares_calls_only_among_examples_with_the_same_arguments() -> None:
    first, second = {"scale": 2.0}, {"scale": -1.0}
    args = [first, first, second, second, first]
    model = RowModel()
    masks = sk.IntegratedGradients().GetMaskBatch(_images(), model, args, x_steps=3, batch_size=4)
    for _, call_args, _ in model.calls:
        assert call_args is first or call_args is second
    # Rows of one arguments object only: example 4 (first) cannot join 2 and 3 (second).
    assert [call_args is first for _, call_args, _ in model.calls] == [True, True, False, False, True]
    assert model.sizes == [4, 2, 4, 2, 3]
    for index, image in enumerate(_images()):
        expected = sk.IntegratedGradients().GetMask(image, RowModel(), args[index], x_steps=3)
        np.testing.assert_allclose(masks[index], expected, rtol=1e-10)


def test_plain_function_packs_equal_plain_values_and_one_value_for_all() -> None:
    model = RowModel()
    sk.GradientSaliency().GetMaskBatch(_images(), model, [3, 3, 3, 3, 3], batch_size=8)
    assert model.sizes == [5] and model.calls[0][1] == 3
    model = RowModel()
    shared = {"scale": 2.0}
    sk.GradientSaliency().GetMaskBatch(_images(), model, shared, batch_size=8)
    assert model.sizes == [5] and model.calls[0][1] is shared
    model = RowModel()
    sk.GradientSaliency().GetMaskBatch(_images(), model, [1, 2, 3, 4, 5], batch_size=8)
    assert model.sizes == [1] * 5  # one example per call group


def test_packing_function_gets_one_argument_per_row() -> None:
    args = [1, 2, {"scale": 3.0}, -1, 2]
    model = PackingRowModel()
    masks = sk.IntegratedGradients().GetMaskBatch(_images(), model, args, x_steps=3, batch_size=4)
    assert len(model.calls) == math.ceil(5 * 3 / 4)
    rows = []
    for size, call_args, _ in model.calls:  # packed rows, or one arguments object for the call
        rows += (
            call_args["rows"] if isinstance(call_args, dict) and "rows" in call_args else [call_args] * size
        )
    assert rows == [arg for arg in args for _ in range(3)]
    assert len(model.packed) == 3  # the last call holds rows of example 4 only: its own arguments
    for index, image in enumerate(_images()):
        expected = sk.IntegratedGradients().GetMask(image, RowModel(), args[index], x_steps=3)
        np.testing.assert_allclose(masks[index], expected, rtol=1e-10)
    # Rows all with one arguments object: that object, unpacked.
    model = PackingRowModel()
    shared = {"scale": 2.0}
    sk.GradientSaliency().GetMaskBatch(_images(), model, shared, batch_size=8)
    assert model.packed == [] and model.calls[0][1] is shared


def test_resolve_call_model_args_is_called_once_first() -> None:
    class Resolving(RowModel):
        def __init__(self) -> None:
            super().__init__()
            self.resolved: list[tuple] = []

        def resolve_call_model_args(self, x_values: Any, example_args: list, batch_size: int) -> list:
            self.resolved.append((np.shape(x_values), list(example_args), batch_size, len(self.calls)))
            return [{"scale": float(index + 1)} for index in range(len(example_args))]

    model = Resolving()
    masks = sk.GradientSaliency().GetMaskBatch(_images(), model, "predicted", batch_size=2)
    assert model.resolved == [((N, *SHAPE), ["predicted"] * N, 2, 0)]
    for index, image in enumerate(_images()):
        expected = sk.GradientSaliency().GetMask(image, RowModel(), {"scale": index + 1.0})
        np.testing.assert_allclose(masks[index], expected)
    model = Resolving()
    sk.GradientSaliency().GetMask(_images(1)[0], model, "predicted")  # the batch of one too
    assert model.resolved == [((1, *SHAPE), ["predicted"], 1, 0)]


# --------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------


def test_bad_batches_are_value_errors_naming_the_argument() -> None:
    method, model = sk.IntegratedGradients(), RowModel()
    with pytest.raises(ValueError, match=r"x_values .* at least one example .* got shape \(0, 8, 6, 3\)"):
        method.GetMaskBatch(np.zeros((0, *SHAPE)), model)
    with pytest.raises(ValueError, match=r"x_values must hold at least one example .* empty"):
        method.GetMaskBatch([], model)
    with pytest.raises(
        ValueError,
        match=r"x_values must hold examples of one shape: .*\(8, 6, 3\), got x_values\[1\] .*\(8, 6\)",
    ):
        method.GetMaskBatch([np.zeros(SHAPE), np.zeros((8, 6))], model)
    with pytest.raises(ValueError, match=r"call_model_args .* expected 5 entries .* got 2"):
        method.GetMaskBatch(_images(), model, [1, 2])
    with pytest.raises(ValueError, match=r"x_baseline must have the shape of one example \(8, 6, 3\) .*"):
        method.GetMaskBatch(_images(), model, x_baseline=np.zeros((4, *SHAPE)))
    with pytest.raises(ValueError, match=r"\(5, 8, 6, 3\) \(one per example\), got \(8, 6\)"):
        method.GetMaskBatch(_images(), model, x_baseline=np.zeros((8, 6)))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        method.GetMaskBatch(_images(), model, batch_size=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'x_stepz'"):
        method.GetMaskBatch(_images(), model, x_stepz=3)
    with pytest.raises(ValueError, match=r"segments must be .* expected 5 sequences .* got 2"):
        sk.XRAI().GetMaskBatch(_images(), model, segments=[_square_segments()] * 2)
    assert model.calls == []


# --------------------------------------------------------------------------
# Memory.
# --------------------------------------------------------------------------


def test_memory_is_bounded_by_batch_size_not_by_n() -> None:
    """200 images, 50 path points each, batch_size=2: the paths (~61 MB) never exist at once."""
    shape, n_images, steps = (16, 16, 3), 200, 50
    images = np.random.default_rng(0).uniform(size=(n_images, *shape))

    def counting(x_value_batch: Any, call_model_args: Any = None, expected_keys: Any = None) -> dict:
        counting.calls += 1  # type: ignore[attr-defined]
        return {INPUT_OUTPUT_GRADIENTS: np.ones(np.shape(x_value_batch))}

    counting.calls = 0  # type: ignore[attr-defined]
    tracemalloc.start()
    masks = sk.IntegratedGradients().GetMaskBatch(images, counting, x_steps=steps, batch_size=2)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak {peak / 1e6:.2f} MB, output {masks.nbytes / 1e6:.2f} MB")
    all_paths = n_images * steps * images[0].nbytes  # 61 MB
    assert counting.calls == n_images * steps // 2  # type: ignore[attr-defined]
    # The output (and its list before stacking) is 2 x 1.2 MB; everything else is a few images.
    assert peak < 3 * masks.nbytes + 50 * images[0].nbytes
    assert peak < all_paths / 10


# --------------------------------------------------------------------------
# Classes that implement only GetMask; the scheduler itself.
# --------------------------------------------------------------------------


class _OwnGetMask(CoreSaliency):
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def GetMask(self, x_value, call_model_function, call_model_args=None, **kwargs):  # noqa: N802
        self.calls.append((call_model_args, kwargs))
        return np.asarray(x_value) * 2


def test_a_class_with_only_get_mask_runs_one_example_at_a_time() -> None:
    method = _OwnGetMask()
    masks = method.GetMaskBatch(_images(3), None, ["a", "b", "c"], extra=1)
    np.testing.assert_allclose(masks, _images(3) * 2)
    assert method.calls == [("a", {"extra": 1}), ("b", {"extra": 1}), ("c", {"extra": 1})]
    smoothed = _OwnGetMask().GetSmoothedMaskBatch(_images(2), None, nsamples=3, seed=4, magnitude=False)
    expected = _OwnGetMask().GetSmoothedMask(_images(2)[1], None, nsamples=3, seed=5, magnitude=False)
    np.testing.assert_allclose(smoothed[1], expected)


def test_a_subclass_overriding_get_mask_keeps_its_get_mask() -> None:
    class Doubled(sk.GradientSaliency):
        def GetMask(self, x_value, call_model_function, call_model_args=None, batch_size=1):  # noqa: N802
            return 2 * super().GetMask(x_value, call_model_function, call_model_args, batch_size)

    masks = Doubled().GetMaskBatch(_images(2), RowModel())
    np.testing.assert_allclose(masks[0], 2 * sk.GradientSaliency().GetMask(_images(2)[0], RowModel()))


def _echo(x_value_batch: Any, call_model_args: Any = None, expected_keys: Any = None) -> dict:
    batch = np.asarray(x_value_batch, dtype=np.float64)
    return {OUTPUT_LAYER_VALUES: batch.reshape(len(batch), -1).sum(axis=1)}


def test_scheduler_forks_sequential_and_parallel_children() -> None:
    log: list[str] = []

    def leaf(value: float, n_inputs: int) -> Any:
        answer = yield Request(n_inputs, lambda a, b: np.full((b - a, 1), value), [OUTPUT_LAYER_VALUES])
        log.append(f"leaf {value}")
        return float(answer[OUTPUT_LAYER_VALUES].sum())

    def instant(value: float) -> Any:
        return value
        yield  # a computation that needs no model call

    def parent(sequential: bool) -> Any:
        results = yield Fork([leaf(1.0, 3), instant(5.0), leaf(2.0, 2)], sequential=sequential)
        empty = yield Fork([])
        return results, empty

    calls: list[int] = []

    def model(x: Any, call_model_args: Any = None, expected_keys: Any = None) -> dict:
        calls.append(len(x))
        return _echo(x, call_model_args, expected_keys)

    assert run_steps(model, [parent(False)], [None], 8) == [([3.0, 5.0, 4.0], [])]
    assert calls == [5]  # the parallel children share one call
    calls.clear()
    assert run_steps(model, [parent(True)], [None], 8) == [([3.0, 5.0, 4.0], [])]
    assert calls == [3, 2]  # one child after the other
    assert log == ["leaf 1.0", "leaf 2.0"] * 2


def test_scheduler_refuses_bad_computations() -> None:
    def yields_junk() -> Any:
        yield "junk"

    def empty_request() -> Any:
        yield Request(0, lambda a, b: np.zeros((0, 1)), [OUTPUT_LAYER_VALUES])

    with pytest.raises(TypeError, match="not a Request or a Fork"):
        run_steps(_echo, [yields_junk()], [None], 2)
    with pytest.raises(ValueError, match="number of model inputs must be an integer >= 1"):
        run_steps(_echo, [empty_request()], [None], 2)
