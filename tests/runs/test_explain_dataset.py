"""``explain_dataset`` with the local engine (issue 14): stored maps and rows, resume, failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from saliencykit.runs import (
    COLUMNS,
    EngineUnavailableError,
    LocalEngine,
    ModelSpec,
    RunStore,
    expand_images,
    explain_dataset,
    get_engine,
)

from .conftest import CHEAP, METHODS, Counts, RecordingEngine, write_images

pd = pytest.importorskip("pandas")


def test_a_run_writes_one_map_and_one_row_per_image_and_method(
    tmp_path: Path, images: list[Path], spec: ModelSpec
) -> None:
    out = tmp_path / "out"
    table = explain_dataset(images, spec, METHODS, out, parameters=CHEAP)
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.columns) == list(COLUMNS)
    assert len(manifest) == len(table) == len(images) * len(METHODS)
    assert set(manifest.status) == {"ok"}
    assert sorted(zip(manifest.image_path, manifest.method, strict=True)) == sorted(
        (str(image), method) for image in images for method in METHODS
    )
    assert list(table.image_path) == [str(image) for image in images for _ in METHODS]
    assert len(list((out / "rows").glob("*.json"))) == len(manifest)
    store = RunStore(out)
    for row in manifest.itertuples():
        assert row.map_path == f"maps/{row.method}/{row.key}.npz"
        saliency_map = store.load_map(row.key)
        assert saliency_map.shape == (32, 32, 3) and saliency_map.dtype == np.float32
        assert json.loads(row.parameters) == json.loads(table.parameters[table.key == row.key].iloc[0])
        assert row.model == spec.model and row.probability > 0.3 and pd.isna(row.error)
    assert json.loads(manifest.parameters[manifest.method == "ig"].iloc[0])["x_steps"] == 3
    # The smooth third image is the tiny model's class 1, the noisy ones class 0.
    assert list(table.class_index[table.method == "ig"]) == [0, 0, 1]


def test_each_map_explains_its_own_image_and_class(
    tmp_path: Path, images: list[Path], spec: ModelSpec
) -> None:
    """The batch (several images, different classes, shared model calls) gives each image's own map."""
    from saliencykit.cli.images import load_image, resize_image
    from saliencykit.cli.methods import METHODS as SPECS
    from saliencykit.runs.api import resolve_parameters

    out = tmp_path / "out"
    table = explain_dataset(images, spec, METHODS, out, parameters=CHEAP)
    model = spec.load()
    parameters = resolve_parameters(METHODS, (32, 32), CHEAP)
    store = RunStore(out)
    for row in table.itertuples():
        image = resize_image(load_image(row.image_path).pixels, (32, 32))
        alone = SPECS[row.method].compute(
            image, model.make_call_model_function(int(row.class_index)), parameters[row.method]
        )
        np.testing.assert_allclose(store.load_map(row.key), alone, rtol=1e-5, atol=1e-6)


def test_a_rerun_computes_nothing_and_force_recomputes(
    tmp_path: Path, images: list[Path], spec: ModelSpec, counted: Counts
) -> None:
    out = tmp_path / "out"
    first = explain_dataset(images, spec, METHODS, out, parameters=CHEAP)
    assert counted.loads == 1 and counted.calls > 0
    calls = counted.calls
    stamps = {p: p.stat().st_mtime_ns for p in (out / "maps").rglob("*.npz")}
    again = explain_dataset(images, spec, METHODS, out, parameters=CHEAP)
    assert (counted.loads, counted.calls) == (1, calls)  # nothing loaded, nothing computed
    assert {p: p.stat().st_mtime_ns for p in (out / "maps").rglob("*.npz")} == stamps
    pd.testing.assert_frame_equal(first, again)
    forced = explain_dataset(images, spec, METHODS, out, parameters=CHEAP, force=True)
    assert (counted.loads, counted.calls) == (2, 2 * calls)
    assert list(forced.key) == list(first.key)
    # Other parameters are other maps: only they are computed.
    explain_dataset(images, spec, ["ig"], out, parameters={"ig": {"x_steps": 4}})
    assert counted.loads == 3
    assert len(pd.read_csv(out / "manifest.csv")) == len(images) * (len(METHODS) + 1)


def test_float16_maps_are_float16_with_their_own_keys(
    tmp_path: Path, images: list[Path], spec: ModelSpec
) -> None:
    out = tmp_path / "out"
    full = explain_dataset(images[:1], spec, ["gradients"], out)
    half = explain_dataset(images[:1], spec, ["gradients"], out, float16=True)
    store = RunStore(out)
    assert half.key[0] != full.key[0]
    assert store.load_map(half.key[0]).dtype == np.float16
    assert store.load_map(full.key[0]).dtype == np.float32
    np.testing.assert_allclose(store.load_map(half.key[0]), store.load_map(full.key[0]), rtol=1e-3, atol=1e-4)


def test_an_unreadable_image_fails_alone_and_retry_failed_retries_it(
    tmp_path: Path, images: list[Path], spec: ModelSpec
) -> None:
    bad = images[0].parent / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    table = explain_dataset(images[0].parent, spec, METHODS, out, parameters=CHEAP)
    failed = table[table.status == "failed"]
    assert list(failed.image_path) == [str(bad)] * len(METHODS)
    assert all("broken.png" in error and "\n" not in error for error in failed.error)
    assert failed.map_path.eq("").all() and failed.class_index.isna().all()
    assert set(table.status[table.image_path != str(bad)]) == {"ok"}
    assert not any((out / "maps").rglob(f"{failed.key.iloc[0]}.npz"))
    manifest = pd.read_csv(out / "manifest.csv")
    assert (manifest.status == "failed").sum() == len(METHODS)

    engine = RecordingEngine()
    explain_dataset(images[0].parent, spec, METHODS, out, parameters=CHEAP, engine=engine)
    assert engine.keys == []  # failed items are not retried unless asked
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(bad)  # now readable, new content
    retried = explain_dataset(images[0].parent, spec, METHODS, out, parameters=CHEAP, engine=engine)
    assert set(retried.status) == {"ok"}  # a new file is a new image: computed
    bad.write_bytes(b"broken again")
    engine.keys.clear()
    table = explain_dataset(images[0].parent, spec, METHODS, out, parameters=CHEAP, engine=engine)
    assert len(engine.keys) == len(METHODS)
    engine.keys.clear()
    table = explain_dataset(
        images[0].parent, spec, METHODS, out, parameters=CHEAP, engine=engine, retry_failed=True
    )
    assert sorted(engine.keys) == sorted(table.key[table.status == "failed"])
    assert len(engine.keys) == len(METHODS)


def test_a_missing_listed_image_is_recorded_as_failed(
    tmp_path: Path, images: list[Path], spec: ModelSpec
) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"# images\n{images[0]}\nimages/{images[1].name}\n\nmissing.png\n")
    table = explain_dataset(listing, spec, ["gradients"], tmp_path / "out")
    assert list(table.status) == ["ok", "ok", "failed"]
    assert "missing.png" in table.error[2] and table.image_sha256[2] == ""


def test_a_method_that_fails_on_one_image_fails_for_that_image_only(
    tmp_path: Path, images: list[Path], spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    import saliencykit.cli.methods as methods

    original = methods.run_method_batch

    def fails_on_class_1(name, images, call, parameters, call_model_args, batch_size):  # noqa: ANN001, ANN202
        if 1 in list(call_model_args):
            raise methods.CliError(f"{name}: class 1 is refused\nsecond line")
        return original(name, images, call, parameters, call_model_args, batch_size)

    monkeypatch.setattr(methods, "run_method_batch", fails_on_class_1)
    table = explain_dataset(images, spec, ["gradients"], tmp_path / "out")
    assert list(table.status) == ["ok", "ok", "failed"]
    assert table.error[2] == "gradients: class 1 is refused"
    assert table.class_index[2] == 1 and table.label[2] == "class 1"


def test_class_index_is_explained_and_part_of_the_key(
    tmp_path: Path, images: list[Path], spec: ModelSpec
) -> None:
    out = tmp_path / "out"
    top = explain_dataset(images, spec, ["gradients"], out)
    chosen = explain_dataset(images, spec, ["gradients"], out, class_index=2)
    assert list(chosen.class_index) == [2, 2, 2] and set(chosen.key).isdisjoint(top.key)
    by_name = explain_dataset(images, spec, ["gradients"], out, class_index={images[1].name: 1})
    assert list(by_name.class_index) == [0, 1, 1]
    wrong = explain_dataset(images[:1], spec, ["gradients"], out, class_index=7)
    assert wrong.status[0] == "failed" and "from 0 to 2" in wrong.error[0]


def test_an_interrupted_run_stores_what_it_finished_and_rebuilds_the_manifest(
    tmp_path: Path, spec: ModelSpec, counted: Counts
) -> None:
    images = write_images(tmp_path / "images", 4)
    out = tmp_path / "out"

    def interrupt(row, done, total) -> None:  # noqa: ANN001
        assert total == len(images)
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        explain_dataset(images, spec, ["gradients"], out, progress=interrupt, images_per_batch=1)
    assert len(pd.read_csv(out / "manifest.csv")) == 2
    engine = RecordingEngine()
    table = explain_dataset(images, spec, ["gradients"], out, engine=engine)
    assert len(engine.keys) == 2 and set(table.status) == {"ok"}
    assert len(pd.read_csv(out / "manifest.csv")) == 4


def test_without_pandas_the_rows_are_a_list_of_dicts(
    tmp_path: Path, images: list[Path], spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    rows = explain_dataset(images[:2], spec, ["gradients"], tmp_path / "out")
    assert isinstance(rows, list) and [row["status"] for row in rows] == ["ok", "ok"]
    assert list(rows[0]) == list(COLUMNS)


def test_expand_images_takes_files_folders_globs_and_lists(tmp_path: Path) -> None:
    first = write_images(tmp_path / "a", 2)
    second = write_images(tmp_path / "b" / "c", 2, seed=1)
    (tmp_path / "a" / "notes.md").write_text("not an image")
    listing = tmp_path / "list.txt"
    listing.write_text(f"b/c/{second[0].name}\n  # comment\n{first[1]}\n")
    assert expand_images(tmp_path / "a") == first
    assert expand_images(str(tmp_path / "*" / "*.png")) == first
    assert expand_images(str(tmp_path / "**" / "*.png")) == [*first, *second]
    assert expand_images(tmp_path / "b", recursive=True) == second
    assert expand_images([listing, first[1], str(first[0])]) == [second[0], first[1], first[0]]
    for bad, match in (
        (tmp_path / "nothing.png", "no such file"),
        (str(tmp_path / "*.jpg"), "matches no file"),
        (tmp_path / "b", "no image file"),
        ([], "at least one image"),
    ):
        with pytest.raises(ValueError, match=match):
            expand_images(bad)
    with pytest.raises(TypeError, match="images"):
        expand_images([1])  # type: ignore[list-item]


def test_bad_methods_parameters_and_engines_are_refused(
    tmp_path: Path, images: list[Path], spec: ModelSpec
) -> None:
    for kwargs, error, match in (
        ({"methods": ["ig", "nope"]}, ValueError, "unknown method 'nope'"),
        ({"methods": 3}, TypeError, "methods"),
        ({"methods": ["ig"], "parameters": {"xrai": {"steps": 2}}}, ValueError, "not among the methods"),
        ({"methods": ["ig"], "parameters": {"ig": {"steps": 2}}}, ValueError, "no parameter 'steps'"),
        ({"methods": ["ig"], "parameters": {"ig": {"x_steps": object()}}}, TypeError, "JSON"),
        ({"methods": ["ig"], "engine": "spark"}, ValueError, "engine"),
        ({"methods": ["ig"], "engine": LocalEngine(), "images_per_batch": 2}, TypeError, "engine options"),
        ({"methods": ["ig"], "batch_size": 0}, ValueError, "batch_size"),
        ({"methods": ["ig"], "images_per_batch": 0}, ValueError, "images_per_batch"),
    ):
        with pytest.raises(error, match=match):
            explain_dataset(images, spec, out=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_methods_default_to_those_the_model_supports(
    tmp_path: Path, images: list[Path], spec: ModelSpec
) -> None:
    from saliencykit.runs.api import resolve_methods

    assert "gradcam" not in resolve_methods(None, spec) and "xrai" in resolve_methods(None, spec)
    assert "gradcam" in resolve_methods(None, ModelSpec())
    assert resolve_methods("IG, blur_ig,ig", spec) == ["ig", "blur-ig"]
    table = explain_dataset(images[:1], spec, ["gradcam"], tmp_path / "out")
    assert table.status[0] == "failed" and "not available" in table.error[0]


def test_get_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    engine = get_engine("local", images_per_batch=3)
    assert isinstance(engine, LocalEngine) and engine.images_per_batch == 3
    with pytest.raises(ValueError, match="expected one of local, ray"):
        get_engine("dask")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    with pytest.raises(EngineUnavailableError) as raised:
        get_engine("ray")
    assert isinstance(raised.value, ImportError)
    message = str(raised.value)
    assert "\n" not in message and message.endswith('pip install "saliencykit[ray]"')


def test_importing_saliencykit_runs_imports_no_framework() -> None:
    code = (
        "import sys, saliencykit.runs; "
        "print([m for m in ('torch', 'tensorflow', 'jax', 'ray', 'pandas', 'pyarrow') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_model_key_follows_the_model_file(tmp_path: Path, tiny_model: Path) -> None:
    copy = tmp_path / "model.pt"
    copy.write_bytes(tiny_model.read_bytes())
    before = ModelSpec(str(copy), input_size=32).identity()
    assert before["model"].startswith("model.pt:sha256:")
    copy.write_bytes(tiny_model.read_bytes() + b"\0")
    assert ModelSpec(str(copy), input_size=32).identity() != before
    assert ModelSpec(str(copy), input_size=32, device="cpu").identity() == ModelSpec(str(copy), 32).identity()


def test_an_item_the_engine_drops_is_recorded_as_failed(
    tmp_path: Path, images: list[Path], spec: ModelSpec
) -> None:
    class Dropping(LocalEngine):
        def run(self, spec, items, batch_size, on_result) -> None:  # noqa: ANN001
            super().run(
                spec, items, batch_size, lambda r: None if r.image_path == str(images[1]) else on_result(r)
            )

    table = explain_dataset(images, spec, ["gradients"], tmp_path / "out", engine=Dropping())
    assert list(table.status) == ["ok", "failed", "ok"]
    assert table.error[1] == "the engine returned no map for this image and method"
