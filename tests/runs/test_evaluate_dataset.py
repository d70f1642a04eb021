"""``evaluate_dataset`` (issue 14, item 3): PIC over stored maps, stored PIC results, bootstrap intervals."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from saliencykit.runs import ModelSpec
from saliencykit.runs.evaluate import (
    bootstrap_aucs,
    evaluate_dataset,
    percentile_interval,
    random_saliency_map,
)

from .conftest import write_images

METHODS = ["gradients"]
FAST = {"n_bootstrap": 200, "n_jobs": 1}


@pytest.fixture
def five(tmp_path: Path) -> list[Path]:
    """Five images: four noisy ones PIC scores, a smooth one it skips (fully blurred not less informative)."""
    return write_images(tmp_path / "images", 5)


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return [float(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_summary_structure_and_stored_results(tmp_path: Path, five: list[Path], spec: ModelSpec) -> None:
    out = tmp_path / "out"
    summary = evaluate_dataset(five, spec, METHODS, out, **FAST)
    assert json.loads((out / "evaluation.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["images"] == 5 and summary["metrics"] == ["sic", "aic"]
    assert summary["aggregation"] == {"sic": "median", "aic": "mean"}
    assert set(summary["methods"]) == {"gradients", "random"}
    assert all(math.isfinite(n) for n in _numbers(summary))
    for method in ("gradients", "random"):
        for metric in ("sic", "aic"):
            entry = summary["methods"][method][metric]
            assert entry["images"] == 4 and entry["skipped"] == 1
            assert 0.0 <= entry["ci_low"] <= entry["auc"] <= entry["ci_high"] <= 1.0
            assert len(summary["curves"][metric][method]) == len(summary["curves"][metric]["x"])
    # The smooth image is skipped by both methods and metrics, with PIC's reason.
    assert len(summary["skipped"]) == 2 * 2 and not summary["failed"]
    assert {s["image_path"] for s in summary["skipped"]} == {str(five[2])}
    assert all("blurred" in s["reason"] for s in summary["skipped"])
    # One difference per pair of methods and metric.
    assert [(d["metric"], d["a"], d["b"]) for d in summary["differences"]] == [
        ("sic", "gradients", "random"),
        ("aic", "gradients", "random"),
    ]
    for difference in summary["differences"]:
        assert difference["images"] == 4
        assert difference["ci_low"] <= difference["ci_high"]
        assert difference["excludes_zero"] == (difference["ci_low"] > 0 or difference["ci_high"] < 0)
    # One stored record per (map, metric), skipped ones included.
    assert summary["counts"] == {"computed": 20, "reused": 0, "skipped": 4, "failed": 0}
    stored = [json.loads(p.read_text()) for p in (out / "pic").glob("*/*.json")]
    assert len(stored) == 20 and {r["status"] for r in stored} == {"ok", "skipped"}


def test_a_rerun_computes_no_pic_and_gives_the_same_summary(
    tmp_path: Path, images: list[Path], spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    import saliencykit.metrics as pic

    out = tmp_path / "out"
    first = evaluate_dataset(images, spec, METHODS, out, **FAST)
    assert first["counts"]["computed"] == 12  # 3 images x (gradients, random) x (SIC, AIC)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("PIC computed again")

    monkeypatch.setattr(pic, "compute_sic", fail)
    monkeypatch.setattr(pic, "compute_aic", fail)
    monkeypatch.setattr(ModelSpec, "load", fail)  # nothing to compute: the model is not even loaded
    second = evaluate_dataset(images, spec, METHODS, out, **FAST)
    assert second["counts"] == {"computed": 0, "reused": 12, "skipped": 4, "failed": 0}
    for name in ("methods", "curves", "differences", "skipped"):
        assert second[name] == first[name]


def test_the_model_is_loaded_once_for_maps_and_pic(
    tmp_path: Path, images: list[Path], spec: ModelSpec, counted: Any
) -> None:
    evaluate_dataset(images, spec, METHODS, tmp_path / "out", **FAST)
    assert counted.loads == 1


def test_an_image_below_min_pred_value_is_recorded_as_skipped(
    tmp_path: Path, images: list[Path], spec: ModelSpec
) -> None:
    summary = evaluate_dataset(
        images[:1], spec, METHODS, tmp_path / "out", metrics="sic", min_pred_value=1.0, **FAST
    )
    assert summary["methods"]["gradients"]["sic"] == {
        "images": 0,
        "skipped": 1,
        "auc": None,
        "ci_low": None,
        "ci_high": None,
    }
    reasons = [s["reason"] for s in summary["skipped"]]
    assert len(reasons) == 2 and all("min_pred_value" in reason for reason in reasons)
    stored = [json.loads(p.read_text()) for p in (tmp_path / "out" / "pic" / "sic").glob("*.json")]
    assert [r["status"] for r in stored] == ["skipped", "skipped"]


def test_the_bootstrap_is_seeded_and_its_interval_holds_the_estimate() -> None:
    generator = np.random.default_rng(3)
    curve_x = np.linspace(0.0, 1.0, 11)
    curves = np.sort(generator.random((12, 11)), axis=1)
    for aggregation in ("median", "mean"):
        curve_y = getattr(np, aggregation)(curves, axis=0)
        point = np.sum(np.diff(curve_x) * (curve_y[1:] + curve_y[:-1]) / 2)
        aucs = bootstrap_aucs([curves], curve_x, aggregation, 500, seed=7)
        low, high = percentile_interval(aucs[0], 0.95)
        assert low < point < high
        again = bootstrap_aucs([curves], curve_x, aggregation, 500, seed=7, max_bytes=1)  # other chunks
        np.testing.assert_array_equal(again, aucs)
        assert not np.array_equal(bootstrap_aucs([curves], curve_x, aggregation, 500, seed=8), aucs)


def test_the_paired_difference_of_a_method_with_itself_is_zero() -> None:
    curves = np.random.default_rng(0).random((9, 6))
    aucs = bootstrap_aucs([curves, curves.copy()], np.linspace(0, 1, 6), "median", 300, seed=1)
    assert percentile_interval(aucs[0] - aucs[1], 0.95) == (0.0, 0.0)


def test_same_seed_same_intervals_and_random_baseline(
    tmp_path: Path, five: list[Path], spec: ModelSpec
) -> None:
    first = evaluate_dataset(five, spec, METHODS, tmp_path / "a", metrics="aic", **FAST)
    second = evaluate_dataset(list(reversed(five)), spec, METHODS, tmp_path / "b", metrics="aic", **FAST)
    assert second["methods"] == first["methods"]  # same seed: same masks, baseline and resamples
    other = evaluate_dataset(five, spec, METHODS, tmp_path / "a", metrics="aic", **{**FAST, "seed": 1})
    assert other["counts"]["reused"] == 0  # the seed is part of the stored results' keys
    digest, size = "ab" * 32, (4, 5)
    baseline = random_saliency_map(digest, size, 0)
    np.testing.assert_array_equal(random_saliency_map(digest, size, 0), baseline)
    assert not np.array_equal(random_saliency_map(digest, size, 1), baseline)
    assert not np.array_equal(random_saliency_map("cd" * 32, size, 0), baseline)


def test_bad_arguments_name_the_argument(tmp_path: Path, images: list[Path], spec: ModelSpec) -> None:
    for keywords, message in (
        ({"metrics": "auc"}, "metrics"),
        ({"n_bootstrap": 0}, "n_bootstrap"),
        ({"confidence": 1.0}, "confidence"),
        ({"min_pred_value": 2}, "min_pred_value"),
    ):
        with pytest.raises(ValueError, match=message):
            evaluate_dataset(images, spec, METHODS, tmp_path / "out", **keywords)
    assert not (tmp_path / "out").exists()  # checked before any work


def test_an_unreadable_image_is_listed_as_failed_and_the_others_scored(
    tmp_path: Path, images: list[Path], spec: ModelSpec
) -> None:
    broken = tmp_path / "images" / "broken.png"
    broken.write_bytes(b"not an image")
    summary = evaluate_dataset([*images, broken], spec, METHODS, tmp_path / "out", metrics="sic", **FAST)
    assert [(f["image_path"], f["method"], f["metric"]) for f in summary["failed"]] == [
        (str(broken), "gradients", None)
    ]
    assert summary["images"] == 3 and summary["methods"]["gradients"]["sic"]["images"] == 2
