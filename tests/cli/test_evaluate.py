"""``saliencykit evaluate``: PIC (SIC, AIC) over images, with skipped images counted, not fatal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from .conftest import assert_valid_png, run_cli, run_main, smooth_image, tiny_model_args

pytest.importorskip("saliencykit.metrics")


def test_default_photos(tiny_model: Path, tmp_path: Path) -> None:
    """Without images, the five scikit-image photos are scored (with a small model, to stay quick).

    The pretrained default model runs end to end in the explain tests; here the
    photos, the table of AUCs, the aggregate curves and the summary are checked.
    """
    run = run_cli(
        "evaluate",
        *tiny_model_args(tiny_model),
        "--methods",
        "gradients",
        "--json",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    summary = run.json()
    names = [record["image"] for record in summary["images"]]
    assert names == [
        f"skimage.data.{name}()" for name in ("chelsea", "coffee", "camera", "astronaut", "rocket")
    ]
    for metric in ("sic", "aic"):
        assert summary["images_used"][metric] == 5 - len(summary["skipped"][metric]) > 0
        assert 0.0 <= summary["methods"]["gradients"][metric] <= 1.0
    assert summary["methods"]["gradients"]["parameters"] == {}
    assert summary["pic"]["aggregation"] == {"sic": "median", "aic": "mean"}
    for record in summary["images"]:
        assert record["class_index"] == 0 and record["label"] == "class 0"  # the photos are sharp
    assert_valid_png(tmp_path / "saliencykit-out" / "pic-curves.png", min_size=(600, 300))
    assert (tmp_path / "saliencykit-out" / "pic.json").is_file()


def test_folder_with_a_custom_model(tiny_model: Path, tmp_path: Path) -> None:
    """Unreadable files and images PIC must skip are reported; the others are scored."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(data.coffee()).save(folder / "coffee.jpg")
    Image.fromarray(smooth_image()).save(folder / "smooth.png")
    (folder / "broken.png").write_text("not a picture")
    (folder / "readme.txt").write_text("not an image name: ignored")
    run = run_cli(
        "evaluate", "photos", "--model", str(tiny_model), "--input-size", "32", "--steps", "4", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    table = run.stdout
    assert "Integrated Gradients" in table and "XRAI" in table and "Grad-CAM" not in table
    assert "SIC: 2 of 3 images used, 1 skipped: smooth.png (" in table
    assert "AIC: 2 of 3 images used, 1 skipped: smooth.png (" in table
    assert "unreadable files: 1" in table
    for row in ("Integrated Gradients", "XRAI"):
        line = next(line for line in table.splitlines() if line.startswith(row))
        sic, aic = (float(value) for value in line.split()[-2:])
        assert 0.0 <= sic <= 1.0 and 0.0 <= aic <= 1.0
    assert "note: gradcam left out: TorchScript modules cannot be hooked" in run.stderr
    assert "note: skipping photos/broken.png" in run.stderr
    assert_valid_png(tmp_path / "saliencykit-out" / "pic-curves.png")


def test_every_image_skipped_is_not_fatal(tiny_model: Path, tmp_path: Path) -> None:
    Image.fromarray(smooth_image()).save(tmp_path / "smooth.png")
    run = run_cli(
        "evaluate",
        "smooth.png",
        *tiny_model_args(tiny_model),
        "--methods",
        "gradients",
        "--json",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    summary = run.json()
    assert summary["images_used"] == {"sic": 0, "aic": 0}
    assert summary["methods"]["gradients"]["sic"] is None and summary["methods"]["gradients"]["aic"] is None
    assert_valid_png(tmp_path / "saliencykit-out" / "pic-curves.png")


def test_unsure_images_are_skipped_before_their_maps(
    tiny_model: Path,
    photo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """chelsea (p = 0.84 < 0.9) is skipped by both metrics without a map; coffee (p = 0.94) is scored."""
    import saliencykit.cli.evaluate as evaluate

    Image.fromarray(data.chelsea()).save(tmp_path / "chelsea.png")
    explained = []
    real_run_method_batch = evaluate.run_method_batch

    def counting_run_method_batch(name: str, images: np.ndarray, *args: object) -> object:
        explained.extend(float(image.mean()) for image in images)
        return real_run_method_batch(name, images, *args)

    monkeypatch.setattr(evaluate, "run_method_batch", counting_run_method_batch)
    arguments = [str(photo), "chelsea.png", *tiny_model_args(tiny_model), "--methods", "gradients", "--json"]
    status = run_main(monkeypatch, "evaluate", *arguments, "--min-pred-value", "0.9", cwd=tmp_path)
    assert status == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(explained) == 1  # coffee's map only
    records = {record["image"]: record for record in summary["images"]}
    assert records["chelsea.png"]["probability"] < 0.9 < records["coffee.jpg"]["probability"]
    assert records["chelsea.png"]["auc"] == {} and records["chelsea.png"]["seconds"] == {}
    for metric in ("sic", "aic"):
        assert list(summary["skipped"][metric]) == ["chelsea.png"]  # counted and listed, as PIC's skips are
        assert "lower than `min_pred_value`" in summary["skipped"][metric]["chelsea.png"]
        assert summary["images_used"][metric] == 1
    assert summary["methods"]["gradients"]["map_seconds"] > 0.0


def test_pic_predictions_are_batched(
    tiny_model: Path, photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command opts into batches whatever compute_pic_metric's default (one image per call) is."""
    import saliencykit.metrics.sic_aic as sic_aic
    from saliencykit.metrics import DEFAULT_SALIENCY_THRESHOLDS

    batch_sizes = []
    real_compute = sic_aic.compute_pic_metric

    def recording_compute(*args: object, **kwargs: object) -> object:
        batch_sizes.append(kwargs.get("batch_size", "default"))
        return real_compute(*args, **kwargs)

    monkeypatch.setattr(sic_aic, "compute_pic_metric", recording_compute)
    arguments = [str(photo), *tiny_model_args(tiny_model), "--methods", "gradients", "-q"]
    assert run_main(monkeypatch, "evaluate", *arguments, cwd=tmp_path) == 0
    assert batch_sizes == [len(DEFAULT_SALIENCY_THRESHOLDS)] * 2  # SIC and AIC, all thresholds at once
    batch_sizes.clear()
    assert run_main(monkeypatch, "evaluate", *arguments, "--batch-size", "4", cwd=tmp_path) == 0
    assert batch_sizes == [4, 4]
    summary = json.loads((tmp_path / "saliencykit-out" / "pic.json").read_text())
    assert summary["pic"]["batch_size"] == 4
    torch = pytest.importorskip("torch")
    assert summary["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # the default device
