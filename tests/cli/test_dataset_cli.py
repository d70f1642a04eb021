"""``saliencykit explain`` on many images: stored maps, manifest, gallery, resume, failures, engines."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from ..runs.conftest import write_images
from .conftest import run_main, tiny_model_args

CHEAP = ["--methods", "gradients,ig", "--steps", "3"]


def explain(monkeypatch, capsys, tmp_path: Path, tiny_model: Path, *args: str) -> tuple[int, dict]:
    """Runs ``explain --json`` in this process; returns the exit status and the summary (or stderr)."""
    status = run_main(
        monkeypatch, "explain", *tiny_model_args(tiny_model), *CHEAP, *args, "--json", cwd=tmp_path
    )
    captured = capsys.readouterr()
    return status, (json.loads(captured.out) if captured.out.strip() else {"stderr": captured.err})


def manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_folder_writes_maps_manifest_gallery_and_rerun_reuses(monkeypatch, capsys, tmp_path, tiny_model):
    write_images(tmp_path / "images", 3)
    status, summary = explain(monkeypatch, capsys, tmp_path, tiny_model, "images", "--out", "run")
    assert status == 0, summary
    out = tmp_path / "run"
    assert summary["images"] == 3 and summary["maps"] == 6
    assert summary["computed"] == 6 and summary["reused"] == 0 and summary["failed_images"] == 0
    rows = manifest(out)
    assert len(rows) == 6 and {row["status"] for row in rows} == {"ok"}
    assert {row["method"] for row in rows} == {"gradients", "ig"}
    assert all((out / row["map_path"]).is_file() for row in rows)
    assert json.loads(next(r for r in rows if r["method"] == "ig")["parameters"])["x_steps"] == 3
    assert (out / "gallery.html").is_file()
    assert summary["outputs"] == {"manifest": "run/manifest.csv", "gallery": "run/gallery.html"}
    before = (out / "manifest.csv").read_bytes()

    status, again = explain(monkeypatch, capsys, tmp_path, tiny_model, "images", "--out", "run")
    assert status == 0
    assert again["computed"] == 0 and again["reused"] == 6
    assert (out / "manifest.csv").read_bytes() == before

    status, forced = explain(monkeypatch, capsys, tmp_path, tiny_model, "images", "--out", "run", "--force")
    assert status == 0 and forced["computed"] == 6


def test_several_files_glob_and_list(monkeypatch, capsys, tmp_path, tiny_model):
    paths = write_images(tmp_path / "images", 3)
    (tmp_path / "list.txt").write_text(f"images/{paths[2].name}\n", encoding="utf-8")
    status, summary = explain(
        monkeypatch, capsys, tmp_path, tiny_model, str(paths[0]), "images/image01.*", "list.txt", "--out", "r"
    )
    assert status == 0, summary
    assert summary["images"] == 3 and summary["computed"] == 6


def test_unreadable_image_is_counted_failed_and_others_done(monkeypatch, capsys, tmp_path, tiny_model):
    write_images(tmp_path / "images", 2)
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    status, summary = explain(monkeypatch, capsys, tmp_path, tiny_model, "images", "--out", "run")
    assert status == 4, summary
    assert summary["failed_images"] == 1 and summary["failed"][0].endswith("broken.png")
    rows = manifest(tmp_path / "run")
    assert sum(row["status"] == "ok" for row in rows) == 4
    failed = [row for row in rows if row["status"] == "failed"]
    assert len(failed) == 2 and all(row["error"] and "\n" not in row["error"] for row in failed)

    status, again = explain(monkeypatch, capsys, tmp_path, tiny_model, "images", "--out", "run")
    assert status == 4 and again["computed"] == 0  # failed rows are kept, not retried
    status, retried = explain(
        monkeypatch, capsys, tmp_path, tiny_model, "images", "--out", "run", "--retry-failed"
    )
    assert status == 4 and retried["computed"] == 2


def test_human_summary_says_failed_and_reused(monkeypatch, capsys, tmp_path, tiny_model):
    write_images(tmp_path / "images", 1)
    (tmp_path / "images" / "broken.png").write_bytes(b"")
    arguments = ["explain", "images", "--out", "run", *tiny_model_args(tiny_model), *CHEAP, "--float16"]
    assert run_main(monkeypatch, *arguments, cwd=tmp_path) == 4
    output = capsys.readouterr()
    assert "4 computed, 0 reused" in output.out and "failed:     1 of 2 images" in output.out
    assert "manifest.csv" in output.out and "gallery.html" in output.out
    assert run_main(monkeypatch, *arguments, cwd=tmp_path) == 4
    assert "0 computed, 4 reused" in capsys.readouterr().out


def test_engine_ray_without_ray_is_one_line_with_pip_command(monkeypatch, capsys, tmp_path, tiny_model):
    write_images(tmp_path / "images", 2)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: find_spec is None, import fails
    status, summary = explain(monkeypatch, capsys, tmp_path, tiny_model, "images", "--engine", "ray")
    assert status == 3
    lines = summary["stderr"].strip().splitlines()
    assert len(lines) == 1 and "pip install" in lines[0] and "saliencykit[ray]" in lines[0], lines
    assert not (tmp_path / "saliencykit-run").exists()


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["images", "--workers", "2"], "--workers: only with --engine ray"),
        (["images", "missing/"], "no such file, folder or pattern"),
        (["images/*.gif"], "matches no file"),
        (["images", "--methods", "nope"], "unknown method 'nope'"),
        (["images", "--param", "ig.nope=1"], "ig has no parameter 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_status_2(monkeypatch, capsys, tmp_path, tiny_model, arguments, fragment):
    write_images(tmp_path / "images", 1)
    status, summary = explain(monkeypatch, capsys, tmp_path, tiny_model, *arguments)
    assert status == 2
    lines = summary["stderr"].strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "saliencykit-run" / "manifest.csv").exists()


def test_one_image_file_keeps_the_one_image_run(monkeypatch, tmp_path):
    from saliencykit.cli import build_parser
    from saliencykit.cli.dataset import is_dataset_run

    write_images(tmp_path / "images", 1)
    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    assert not is_dataset_run(parser.parse_args(["explain", "images/image00.png"]))
    assert not is_dataset_run(parser.parse_args(["explain"]))
    assert is_dataset_run(parser.parse_args(["explain", "images/image00.png", "--force"]))
    assert is_dataset_run(parser.parse_args(["explain", "images"]))


def test_ray_options_reach_the_engine_and_gallery_limit(monkeypatch, capsys, tmp_path, tiny_model):
    import saliencykit.runs
    from saliencykit.runs import LocalEngine

    made = {}

    def fake_get_engine(name, **options):
        made.update(name=name, **options)
        return LocalEngine()

    monkeypatch.setattr(saliencykit.runs, "get_engine", fake_get_engine)
    write_images(tmp_path / "images", 3)
    arguments = ["images", "--engine", "ray", "--workers", "2", "--gpus-per-worker", "0.5"]
    status, summary = explain(
        monkeypatch, capsys, tmp_path, tiny_model, *arguments, "--ray-address", "auto", "--gallery-limit", "1"
    )
    assert status == 0, summary
    assert made == {"name": "ray", "workers": 2, "gpus_per_worker": 0.5, "address": "auto"}
    assert summary["engine"] == "ray"
    gallery = (tmp_path / "saliencykit-run" / "gallery.html").read_text(encoding="utf-8")
    assert "image00" in gallery and "image02" not in gallery


def test_evaluate_run_scores_stored_maps_with_intervals(monkeypatch, capsys, tmp_path, tiny_model):
    write_images(tmp_path / "images", 4)
    status, _ = explain(monkeypatch, capsys, tmp_path, tiny_model, "images", "--out", "run")
    assert status == 0
    stored = sorted((tmp_path / "run" / "maps").rglob("*.npz"))
    evaluate = ["evaluate", "--run", "run", *tiny_model_args(tiny_model), "--n-bootstrap", "50"]
    assert run_main(monkeypatch, *evaluate, "--json", cwd=tmp_path) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sorted((tmp_path / "run" / "maps").rglob("*.npz")) == stored  # the stored maps, reused
    assert set(summary["methods"]) == {"gradients", "ig", "random"}
    assert summary["counts"]["computed"] > 0 and summary["differences"]
    assert run_main(monkeypatch, *evaluate, cwd=tmp_path) == 0
    text = capsys.readouterr().out
    assert "0 computed" in text and "random" in text and "gradients - ig SIC" in text
    assert "95% bootstrap interval" in text and "evaluation.json" in text


def test_evaluate_run_options_need_run(monkeypatch, capsys, tmp_path):
    assert run_main(monkeypatch, "evaluate", "--force", cwd=tmp_path) == 2
    assert "--force: only with --run OUT" in capsys.readouterr().err
    assert run_main(monkeypatch, "evaluate", "--run", "nowhere", cwd=tmp_path) == 2
    assert "no such folder" in capsys.readouterr().err
