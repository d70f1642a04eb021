"""``saliencykit evaluate`` computes each method's maps with one batch over the images (issue 13, item 2).

The maps (so the AUCs and the whole summary but the times) equal those of the
per-image path (``GetMask`` on one image at a time, each explained through its
own top class), in fewer model calls, with a progress bar per method whose
total is what the model evaluates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data

from .conftest import run_main, smooth_image, tiny_model_args

pytest.importorskip("saliencykit.metrics")

#: Every method a TorchScript model can run (no hooks), with cheap parameters.
METHODS = "gradients,smoothgrad,ig,blur-ig,guided-ig,xrai,occlusion"
CHEAP = ["--steps", "3", "--samples", "3"]
#: Occlusion's 4-pixel window (at 32 x 32) moved 4 pixels at a time: 8 x 8 windows.
COARSE_OCCLUSION = ["--param", "occlusion.stride=4"]


def red_image(size: int = 48) -> np.ndarray:
    """A smooth red image: the tiny model's class 2 ("red")."""
    image = np.zeros((size, size, 3))
    image[..., 0] = 255.0
    image[..., 1] = np.linspace(0.0, 40.0, size)[None]
    return image.astype(np.uint8)


@pytest.fixture
def mixed_images(tmp_path: Path) -> list[str]:
    """Four images the tiny model puts in three classes: two sharp photos (0), a ramp (1), a red image (2)."""
    names = ["chelsea.png", "ramp.png", "coffee.png", "red.png"]
    for name, pixels in zip(names, (data.chelsea(), smooth_image(), data.coffee(), red_image()), strict=True):
        Image.fromarray(pixels).save(tmp_path / name)
    return names


class RecordingBar:
    """A progress bar that records its total and its updates."""

    def __init__(self, bars: list[RecordingBar], options: dict[str, Any]) -> None:
        self.desc, self.total, self.unit = options["desc"], options["total"], options["unit"]
        self.done = 0
        bars.append(self)

    def update(self, n: int = 1) -> None:
        self.done += n

    def set_postfix_str(self, text: str) -> None:
        pass


def evaluate_json(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    cwd: Path,
    *arguments: str,
    per_image: bool = False,
    bars: list[RecordingBar] | None = None,
) -> dict[str, Any]:
    """Runs ``saliencykit evaluate --json`` in this process; ``per_image``: each map by GetMask alone.

    ``per_image`` replaces the batch (one ``GetMaskBatch`` per method) by the
    path before it: a Python loop of ``GetMask`` on one image, explained
    through its class (``call_model_args``), with the same counted model
    function, so that the summary's ``map_model_calls`` counts its calls.
    """
    import contextlib

    import saliencykit.cli.evaluate as evaluate
    from saliencykit.cli.methods import METHODS as SPECS

    def one_image_at_a_time(
        name: str, images: np.ndarray, call: Any, parameters: dict[str, Any], classes: Any, batch_size: int
    ) -> Any:
        from saliencykit.cli.methods import BatchResult

        def explaining(c: int) -> Any:
            return lambda x, call_model_args=None, expected_keys=None: call(x, c, expected_keys)

        maps = [
            SPECS[name].compute(image, explaining(c), parameters)
            for image, c in zip(images, classes, strict=True)
        ]
        return BatchResult(name, np.stack(maps), 1.0, batch_size)

    if per_image:
        monkeypatch.setattr(evaluate, "run_method_batch", one_image_at_a_time)
    if bars is not None:

        @contextlib.contextmanager
        def recording_bar(console: Any, **options: Any) -> Any:
            yield RecordingBar(bars, options)

        monkeypatch.setattr(evaluate, "progress_bar", recording_bar)
    capsys.readouterr()
    assert run_main(monkeypatch, "evaluate", *arguments, "--json", cwd=cwd) == 0
    summary = json.loads(capsys.readouterr().out)
    monkeypatch.undo()
    return summary


def assert_same_scores(batched: dict[str, Any], alone: dict[str, Any], methods: list[str]) -> None:
    """Both summaries hold the same classes, AUCs, skipped images and aggregates (to 1e-9)."""
    for got, expected in zip(batched["images"], alone["images"], strict=True):
        assert got["class_index"] == expected["class_index"]
        assert got["auc"].keys() == expected["auc"].keys()
        for name, aucs in expected["auc"].items():
            assert got["auc"][name] == pytest.approx(aucs, abs=1e-9), (got["image"], name)
    assert batched["skipped"] == alone["skipped"] and batched["images_used"] == alone["images_used"]
    for name in methods:
        got, expected = batched["methods"][name], alone["methods"][name]
        assert (got["sic"], got["aic"]) == pytest.approx((expected["sic"], expected["aic"]), abs=1e-9)
        assert got["map_model_calls"] < expected["map_model_calls"], name


def test_evaluate_batches_each_method_over_the_images_with_the_per_image_results(
    tiny_model: Path,
    mixed_images: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """Images of three classes: each method's maps in one batch equal the per-image path, in fewer calls."""
    methods = [name for name in METHODS.split(",") if name != "xrai"]  # XRAI: the next test (its time)
    images = ["chelsea.png", "ramp.png", "red.png"]
    arguments = [*images, *tiny_model_args(tiny_model), "--methods", ",".join(methods)]
    arguments += [*CHEAP, *COARSE_OCCLUSION, "--min-pred-value", "0"]
    batched = evaluate_json(monkeypatch, capsys, tmp_path, *arguments)
    alone = evaluate_json(monkeypatch, capsys, tmp_path, *arguments, per_image=True)
    assert [record["class_index"] for record in batched["images"]] == [0, 1, 2]  # rows' targets differ
    assert_same_scores(batched, alone, methods)
    assert "ramp.png" in batched["skipped"]["sic"]  # PIC skips it after its map, in both paths
    calls = {name: batched["methods"][name]["map_model_calls"] for name in methods}
    # 3 images: ceil(total inputs / batch size) calls (3 x 65 windows in 32s: 7 instead of 3 x 3;
    # 3 x 3 path points in 10s: 1 instead of 3); Guided IG: step k of every image in one call.
    assert calls == {"gradients": 1, "smoothgrad": 1, "ig": 1, "blur-ig": 1, "guided-ig": 3, "occlusion": 7}
    assert [alone["methods"][name]["map_model_calls"] for name in ("gradients", "occlusion")] == [3, 9]
    assert batched["methods"]["gradients"]["map_batch_size"] == 16  # CROSS_IMAGE_BATCH_SIZE: none of its own
    assert batched["methods"]["ig"]["map_batch_size"] == 10  # the method's own batch_size


def test_evaluate_xrai_batch_equals_the_per_image_path(
    tiny_model: Path,
    mixed_images: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """XRAI (IG from two baselines, then each image's segments): the same maps, in fewer calls."""
    images = ["chelsea.png", "red.png"]  # classes 0 and 2
    arguments = [*images, *tiny_model_args(tiny_model), "--methods", "xrai", *CHEAP, "--min-pred-value", "0"]
    batched = evaluate_json(monkeypatch, capsys, tmp_path, *arguments)
    alone = evaluate_json(monkeypatch, capsys, tmp_path, *arguments, per_image=True)
    assert [record["class_index"] for record in batched["images"]] == [0, 2]
    assert_same_scores(batched, alone, ["xrai"])
    # 2 images x 2 baselines x 3 steps in calls of 10: 2 instead of 2 x 2.
    assert (batched["methods"]["xrai"]["map_model_calls"], alone["methods"]["xrai"]["map_model_calls"]) == (
        2,
        4,
    )


def test_evaluate_maps_use_get_mask_batch_and_the_batch_size(
    tiny_model: Path,
    mixed_images: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """One GetMaskBatch per method over the kept images, their classes as per-image call_model_args."""
    from saliencykit.core.base import CoreSaliency

    seen = []
    real = CoreSaliency.GetMaskBatch

    def recording(self: Any, x_values: Any, call: Any, call_model_args: Any = None, **kwargs: Any) -> Any:
        seen.append((type(self).__name__, len(x_values), call_model_args, kwargs["batch_size"]))
        return real(self, x_values, call, call_model_args, **kwargs)

    monkeypatch.setattr(CoreSaliency, "GetMaskBatch", recording)
    arguments = [*mixed_images, *tiny_model_args(tiny_model), "--methods", "gradients,ig", *CHEAP]
    summary = evaluate_json(monkeypatch, capsys, tmp_path, *arguments, "--min-pred-value", "0.7")
    kept = [r["class_index"] for r in summary["images"] if r["probability"] >= 0.7]
    assert len(kept) == 3  # the ramp (p = 0.68) is skipped before its maps
    assert seen == [("GradientSaliency", 3, kept, 16), ("IntegratedGradients", 3, kept, 10)]
    seen.clear()
    monkeypatch.setattr(CoreSaliency, "GetMaskBatch", recording)
    evaluate_json(monkeypatch, capsys, tmp_path, *arguments, "--batch-size", "2")
    assert [batch_size for *_, batch_size in seen] == [2, 2]  # --batch-size: every method's


def test_evaluate_progress_bars_count_what_the_model_evaluates(
    tiny_model: Path,
    mixed_images: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """A bar per method: its maps (total: images x n_model_inputs, filled exactly), then its curves."""
    bars: list[RecordingBar] = []
    arguments = [*mixed_images, *tiny_model_args(tiny_model), "--methods", "gradients,ig,occlusion"]
    arguments += [*CHEAP, *COARSE_OCCLUSION, "--min-pred-value", "0"]
    evaluate_json(monkeypatch, capsys, tmp_path, *arguments, bars=bars)
    assert [bar.desc for bar in bars] == [
        f"{title} {part}"
        for title in ("Vanilla gradients", "Integrated Gradients", "Occlusion")
        for part in ("maps", "PIC")
    ]
    maps = [bar for bar in bars if bar.desc.endswith("maps")]
    # 4 images x (1, 3 steps, 8 x 8 windows of stride 4 and the unoccluded image)
    assert [bar.total for bar in maps] == [4 * 1, 4 * 3, 4 * 65]
    for bar in bars:
        assert bar.done == bar.total, bar.desc
    assert {bar.unit for bar in maps} == {"image"}


def test_evaluate_with_every_image_unsure_computes_no_map(
    tiny_model: Path,
    mixed_images: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """No image left after the confidence check: no batch (N = 0 is an error for GetMaskBatch), no calls."""
    arguments = [*mixed_images, *tiny_model_args(tiny_model), "--methods", "gradients,ig"]
    summary = evaluate_json(monkeypatch, capsys, tmp_path, *arguments, "--min-pred-value", "1")
    assert summary["images_used"] == {"sic": 0, "aic": 0}
    assert list(summary["skipped"]["sic"]) == mixed_images  # in the images' order
    for name in ("gradients", "ig"):
        assert summary["methods"][name]["map_model_calls"] == 0
        assert summary["methods"][name]["map_batch_size"] is None


def test_counting_calls_keeps_the_adapters_packing_protocol() -> None:
    """The CLI's counted model function still offers pack/resolve_call_model_args to the scheduler."""
    torch = pytest.importorskip("torch")
    from saliencykit.cli.methods import counting_calls
    from saliencykit.torch import make_call_model_function

    call = make_call_model_function(torch.nn.Linear(3, 2).eval(), 0)
    sizes: list[int] = []
    counted = counting_calls(call, sizes.append)
    assert np.array_equal(counted.pack_call_model_args([0, 1])["target"], [0, 1])
    assert counted.resolve_call_model_args(np.ones((2, 3)), [None, 1], 4)[1] == 1
    counted(np.ones((2, 3), np.float32), None, None)
    assert sizes == [2]
    plain = counting_calls(lambda x, args=None, keys=None: {}, sizes.append)
    assert not hasattr(plain, "pack_call_model_args")  # a plain function: nothing to forward
