"""The Ray engine: the same maps as the local engine, a worker killed mid-run, and no Ray installed.

One local Ray cluster (2 CPUs) serves the whole module; the engine uses it
as it finds it initialised (and leaves it running).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from saliencykit.runs import EngineUnavailableError, LocalEngine, ModelSpec, WorkItem, WorkResult, get_engine
from saliencykit.runs.ray_engine import CRASH_MARKER_VARIABLE, RayEngine, _Collector

from .conftest import write_images

#: Cheap methods of the tiny TorchScript model, and Grad-CAM, which it cannot run (failed on both engines).
METHODS = ("gradients", "ig", "gradcam")
PARAMETERS: dict[str, dict[str, Any]] = {
    "gradients": {},
    "ig": {"x_steps": 4, "batch_size": 8},
    "gradcam": {},
}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A local Ray cluster with 2 CPUs for this module's tests, shut down after them."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    if ray.is_initialized():  # someone else's: left alone
        yield ray
        return
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        object_store_memory=256 * 2**20,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def work_items(paths: list[Path], methods: tuple[str, ...] = METHODS) -> list[WorkItem]:
    """One item per image with every method (keys: ``<image number>-<method>``)."""
    return [
        WorkItem(
            str(path),
            f"sha-{number}",
            tuple((name, f"{number}-{name}", PARAMETERS[name]) for name in methods),
        )
        for number, path in enumerate(paths)
    ]


def collect(engine: Any, spec: ModelSpec, items: list[WorkItem]) -> list[WorkResult]:
    results: list[WorkResult] = []
    engine.run(spec, items, 8, results.append)
    return results


def test_ray_engine_gives_the_local_engines_maps(ray_cluster: Any, spec: ModelSpec, tmp_path: Path) -> None:
    items = work_items(write_images(tmp_path / "images", 4))
    local = {result.key: result for result in collect(LocalEngine(images_per_batch=2), spec, items)}
    distributed = collect(RayEngine(workers=2, images_per_batch=2), spec, items)

    assert Counter(result.key for result in distributed) == Counter(list(local))  # each once
    for result in distributed:
        expected = local[result.key]
        assert (result.status, result.method, result.image_path) == (
            expected.status,
            expected.method,
            expected.image_path,
        )
        assert (result.class_index, result.label) == (expected.class_index, expected.label)
        if result.method == "gradcam":  # TorchScript cannot be hooked: failed on both, with the same reason
            assert result.status == "failed" and result.error == expected.error and result.error
            continue
        assert result.status == "ok", result.error
        assert isinstance(result.saliency_map, np.ndarray)
        assert expected.saliency_map is not None
        assert result.saliency_map.shape == expected.saliency_map.shape
        np.testing.assert_allclose(result.saliency_map, expected.saliency_map, rtol=0, atol=1e-6)


def test_a_worker_killed_mid_run_loses_no_image_and_reports_none_twice(
    ray_cluster: Any, spec: ModelSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saliencykit.runs import explain_dataset

    paths = write_images(tmp_path / "images", 4)
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_MARKER_VARIABLE, str(marker))  # the first batch's worker dies (test-only hook)
    table = explain_dataset(
        [str(path) for path in paths],
        spec,
        ["gradients", "ig"],
        tmp_path / "out",
        parameters={"ig": {"x_steps": 3}},
        engine="ray",
        workers=2,
        images_per_batch=1,
    )

    assert marker.exists()  # a worker did die
    assert len(table) == 8 and set(table["status"]) == {"ok"}, table[["status", "error"]]
    assert Counter(zip(table["image_path"], table["method"], strict=True)) == Counter(
        {(str(path), method): 1 for path in paths for method in ("gradients", "ig")}
    )
    manifest = (tmp_path / "out" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 1 + 8  # header and one row per (image, method)
    for map_path in table["map_path"]:
        with np.load(tmp_path / "out" / map_path) as stored:
            assert stored["map"].shape[:2] == (32, 32)


@pytest.mark.parametrize("images_per_batch", [1, 2])
def test_a_batch_that_keeps_killing_its_worker_is_reported_failed_and_the_others_done(
    ray_cluster: Any, spec: ModelSpec, tmp_path: Path, images_per_batch: int
) -> None:
    """With 2 images per batch, image00 shares the fatal batch: the second pass computes it alone."""
    from saliencykit.runs.ray_engine import ExplainActor

    class DiesOnImage01(ExplainActor):  # local: pickled by value, so Ray's workers run it
        def __call__(self, batch: dict[str, Any]) -> dict[str, list[bytes]]:
            import os
            import pickle

            if any("image01" in pickle.loads(data).image_path for data in batch["item"]):
                os._exit(1)  # every attempt at this batch kills its worker
            return super().__call__(batch)

    engine = RayEngine(workers=2, images_per_batch=images_per_batch, max_retries=1)
    engine.actor_class = DiesOnImage01
    items = work_items(write_images(tmp_path / "images", 3), ("gradients", "ig"))
    results = collect(engine, spec, items)

    assert sorted((r.key, r.status) for r in results) == [
        ("0-gradients", "ok"),
        ("0-ig", "ok"),
        ("1-gradients", "failed"),
        ("1-ig", "failed"),
        ("2-gradients", "ok"),
        ("2-ig", "ok"),
    ]
    for lost in [r for r in results if r.status == "failed"]:
        assert lost.error.startswith("lost: its Ray batch failed 2 times") and "\n" not in lost.error
        assert lost.image_path.endswith("image01.png") and lost.saliency_map is None


@pytest.mark.parametrize("always", [False, True], ids=["once", "always"])
def test_a_worker_dying_while_it_loads_the_model_is_restarted_up_to_max_retries(
    ray_cluster: Any, spec: ModelSpec, tmp_path: Path, always: bool
) -> None:
    from saliencykit.runs.ray_engine import ExplainActor

    marker = str(tmp_path / "died")

    class DiesLoading(ExplainActor):  # local: pickled by value, so Ray's workers run it
        def __init__(self, *arguments: Any) -> None:
            import os

            if always or not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            super().__init__(*arguments)

    engine = RayEngine(workers=1, max_retries=1)
    engine.actor_class = DiesLoading
    items = work_items(write_images(tmp_path / "images", 2), ("gradients",))
    results = collect(engine, spec, items)

    assert sorted(r.key for r in results) == ["0-gradients", "1-gradients"]  # each once
    if always:  # the run gives up: every map is reported failed, in one line
        assert {r.status for r in results} == {"failed"}
        assert all(r.error.startswith("the Ray run failed: ") and "\n" not in r.error for r in results)
        assert all("\x1b" not in r.error for r in results)  # Ray's colour codes removed
    else:
        assert {r.status for r in results} == {"ok"}, [r.error for r in results]


def test_a_model_that_does_not_load_on_the_workers_is_raised_here_and_nothing_recorded(
    ray_cluster: Any, tmp_path: Path
) -> None:
    from saliencykit.cli.errors import CliError

    items = work_items(write_images(tmp_path / "images", 2), ("gradients",))
    missing = ModelSpec(str(tmp_path / "missing.pt"), input_size=32, device="cpu")
    with pytest.raises(CliError, match="no such file") as raised:
        RayEngine(workers=1).run(
            missing, items, 8, lambda result: pytest.fail(f"no result expected: {result}")
        )
    assert "\n" not in str(raised.value)


def test_collector_passes_each_key_once_and_reports_the_missing_ones_failed() -> None:
    items = [WorkItem("a.png", "sha-a", (("ig", "k1", {"x_steps": 3}), ("gradients", "k2", {})), 5)]
    seen: list[WorkResult] = []
    collector = _Collector(items, seen.append)

    def result(key: str, method: str) -> WorkResult:
        return WorkResult("a.png", "sha-a", method, key, {}, "ok", saliency_map=np.zeros((2, 2)))

    collector.add(result("k1", "ig"))
    collector.add(result("k1", "ig"))  # a batch run twice: reported once
    collector.add(result("stranger", "ig"))  # never asked for: dropped
    assert collector.fail_missing("lost: its Ray batch failed") == 1
    assert collector.fail_missing("again") == 0
    assert [(r.key, r.status) for r in seen] == [("k1", "ok"), ("k2", "failed")]
    assert seen[1].error == "lost: its Ray batch failed" and seen[1].method == "gradients"
    assert (seen[1].image_path, seen[1].image_sha256, seen[1].class_index) == ("a.png", "sha-a", 5)


def test_an_empty_run_starts_no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # no Ray needed when there is nothing to do
    RayEngine().run(ModelSpec(), [], 8, lambda result: pytest.fail("no result expected"))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"workers": 0}, "workers"),
        ({"workers": 1.5}, "workers"),
        ({"gpus_per_worker": -1}, "gpus_per_worker"),
        ({"max_retries": -1}, "max_retries"),
        ({"address": ""}, "address"),
        ({"cpus_per_worker": 0}, "cpus_per_worker"),
        ({"images_per_batch": 0}, "images_per_batch"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=f"^{named}: expected"):
        RayEngine(**options)


def test_images_per_batch_by_default_gives_each_worker_two_batches() -> None:
    assert RayEngine(workers=2).batch_images(8) == 2
    assert RayEngine(workers=1).batch_images(1000) == 16
    assert RayEngine(workers=4).batch_images(3) == 1
    assert RayEngine(images_per_batch=5).batch_images(1000) == 5


def test_without_ray_the_engine_is_a_one_line_error_with_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, spec: ModelSpec, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(EngineUnavailableError) as raised:
        get_engine("ray", workers=2)
    message = str(raised.value)
    assert "\n" not in message and 'pip install "saliencykit[ray]"' in message
    items = work_items(write_images(tmp_path / "images", 1), ("gradients",))
    with pytest.raises(EngineUnavailableError, match=r'pip install "saliencykit\[ray\]"'):
        RayEngine().run(spec, items, 8, lambda result: None)


class FakeRay:
    """Records what the engine asks of Ray (no cluster)."""

    def __init__(self, initialized: bool) -> None:
        self.initialized = initialized
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **options: Any) -> None:
        self.calls.append(("init", options))

    def shutdown(self) -> None:
        self.calls.append(("shutdown", {}))


@pytest.mark.parametrize(
    ("initialized", "options", "expected"),
    [
        (  # no cluster: a local one with workers * cpus_per_worker CPUs, shut down at the end
            False,
            {"workers": 3, "cpus_per_worker": 2},
            [
                (
                    "init",
                    {
                        "num_cpus": 6,
                        "include_dashboard": False,
                        "log_to_driver": False,
                        "configure_logging": False,
                    },
                ),
                ("shutdown", {}),
            ],
        ),
        (  # an address: joined, and left at the end
            False,
            {"address": "auto"},
            [
                ("init", {"address": "auto", "log_to_driver": False, "configure_logging": False}),
                ("shutdown", {}),
            ],
        ),
        (True, {"address": "auto"}, []),  # Ray already initialised here: used as it is, left running
    ],
)
def test_the_cluster_is_started_or_joined_and_only_ours_shut_down(
    monkeypatch: pytest.MonkeyPatch,
    spec: ModelSpec,
    initialized: bool,
    options: dict[str, Any],
    expected: list[tuple[str, dict[str, Any]]],
) -> None:
    from saliencykit.runs import ray_engine

    fake = FakeRay(initialized)
    monkeypatch.setattr(ray_engine, "_import_ray", lambda: fake)
    monkeypatch.setattr(RayEngine, "_run", lambda self, *arguments: fake.calls.append(("run", {})))
    RayEngine(**options).run(
        spec, [WorkItem("a.png", "sha", (("gradients", "k", {}),))], 8, lambda result: None
    )
    assert [call for call in fake.calls if call[0] != "run"] == expected
    assert ("run", {}) in fake.calls
