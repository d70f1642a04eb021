"""The scheduler builds the next call's inputs beside the model: same calls, same results, real overlap."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import pytest

import saliencykit.core as saliency
from saliencykit.core import INPUT_OUTPUT_GRADIENTS, scheduler
from saliencykit.core.scheduler import Fork, Request, Steps, run_steps

from .models import MLPModel

SHAPE = (6, 5, 3)


def images(n: int) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 1, size=(n, *SHAPE)).astype(np.float32)


CASES: dict[str, Any] = {
    "ig": lambda xs, f: saliency.IntegratedGradients().GetMaskBatch(xs, f, x_steps=7, batch_size=5),
    "ig-one": lambda xs, f: saliency.IntegratedGradients().GetMask(xs[0], f, x_steps=9, batch_size=4),
    "blur-ig": lambda xs, f: saliency.BlurIG().GetMaskBatch(xs, f, steps=6, max_sigma=3, batch_size=4),
    "guided-ig": lambda xs, f: saliency.GuidedIG().GetMaskBatch(xs, f, x_steps=5, batch_size=3),
    "occlusion": lambda xs, f: saliency.Occlusion().GetMaskBatch(xs, f, size=2, stride=2, batch_size=7),
    "smoothgrad": lambda xs, f: saliency.IntegratedGradients().GetSmoothedMaskBatch(
        xs, f, nsamples=3, seed=[0, 1, 2], x_steps=4, batch_size=5
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_calls_and_the_results_are_the_same_with_and_without_prefetch(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    xs = images(3)
    runs = {}
    for prefetch in (False, True):
        monkeypatch.setattr(scheduler, "PREFETCH_INPUTS", prefetch)
        model = MLPModel(SHAPE)
        runs[prefetch] = (CASES[name](xs, model), model.batches)
    masks_off, batches_off = runs[False]
    masks_on, batches_on = runs[True]
    np.testing.assert_array_equal(masks_on, masks_off)
    assert [b.shape for b in batches_on] == [b.shape for b in batches_off]
    for on, off in zip(batches_on, batches_off, strict=True):
        np.testing.assert_array_equal(on, off)


class SlowModel:
    """Sleeps in every call (releasing the GIL, as a framework does); records each call's chunk events.

    Call ``k`` waits (up to 5 s) for ``built[k + 1]``: set when chunk ``k + 1``
    is built, which happens during call ``k`` only when it is built beside the model.
    """

    def __init__(self, n_calls: int = 0) -> None:
        self.built = [threading.Event() for _ in range(n_calls + 1)]
        self.overlapped: list[bool] = []

    def __call__(self, x: np.ndarray, call_model_args: Any = None, expected_keys: Any = None) -> Any:
        time.sleep(0.01)
        k = len(self.overlapped)
        following = k + 1 < len(self.built) - 1
        self.overlapped.append(self.built[k + 1].wait(5) if following else True)
        return {INPUT_OUTPUT_GRADIENTS: np.ones_like(x)}


def one_long_request(n_inputs: int, built: list[tuple[int, int, str]], model: SlowModel) -> Steps:
    def make_inputs(start: int, stop: int) -> np.ndarray:
        built.append((start, stop, threading.current_thread().name))
        if start // 2 < len(model.built):
            model.built[start // 2].set()
        return np.full((stop - start, 2), float(start))

    answer = yield Request(n_inputs, make_inputs, [INPUT_OUTPUT_GRADIENTS])
    return answer[INPUT_OUTPUT_GRADIENTS].sum()


def test_the_next_chunk_is_built_on_the_worker_thread_while_the_model_runs() -> None:
    built: list[tuple[int, int, str]] = []
    model = SlowModel(n_calls=4)
    (result,) = run_steps(model, [one_long_request(8, built, model)], [None], batch_size=2, prefetch=True)
    assert result == 16
    assert [(start, stop) for start, stop, _ in built] == [(0, 2), (2, 4), (4, 6), (6, 8)]  # in order
    assert built[0][2] == threading.current_thread().name  # the first chunk: nothing to overlap with
    assert all(name.startswith("saliencykit-inputs") for _, _, name in built[1:])
    assert model.overlapped == [True, True, True, True]  # chunk k + 1 was built while call k ran


def test_without_prefetch_every_chunk_is_built_on_the_calling_thread() -> None:
    built: list[tuple[int, int, str]] = []
    model = SlowModel()
    run_steps(model, [one_long_request(6, built, model)], [None], batch_size=2, prefetch=False)
    assert {name for _, _, name in built} == {threading.current_thread().name}


def test_an_error_while_building_ahead_is_raised_to_the_caller() -> None:
    def failing(n_inputs: int) -> Steps:
        def make_inputs(start: int, stop: int) -> np.ndarray:
            if start >= 2:
                raise ValueError("x_baseline: broken chunk")
            return np.zeros((stop - start, 2))

        yield Request(n_inputs, make_inputs, [INPUT_OUTPUT_GRADIENTS])
        return None

    model = SlowModel()
    with pytest.raises(ValueError, match="broken chunk"):
        run_steps(model, [failing(6)], [None], batch_size=2, prefetch=True)
    assert len(model.overlapped) == 1  # the failing chunk's call was never made


@pytest.mark.parametrize("method", [saliency.GradientSaliency(), saliency.GradientXInput()], ids=type)
@pytest.mark.parametrize("seed", [3, np.random.default_rng(3)], ids=["int", "generator"])
def test_seeded_smoothgrad_draws_its_noise_beside_the_model_with_the_same_results(
    method: Any, seed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One-input methods draw the next call's noisy samples on the worker thread: same calls, same masks."""
    from saliencykit.core import base

    def one_child_per_sample(method: Any, samples: Any, nsamples: int, total: Any, parameters: Any) -> Steps:
        yield Fork((method._mask_steps(sample, **parameters) for sample in samples), total.add, False)
        return total.mean(nsamples)

    xs = images(2)
    runs = {}
    for packed in (False, True):
        model = MLPModel(SHAPE)
        if not packed:  # the path before: one child computation per sample, packed into shared calls
            monkeypatch.setattr(base, "packed_samples_steps", one_child_per_sample)
        else:
            monkeypatch.undo()
        this_seed = seed if isinstance(seed, int) else np.random.default_rng(3)
        options = {"seed": this_seed, "batch_size": 3, "aggregation": "variance"}
        one = method.GetSmoothedMask(xs[0], model, nsamples=7, **options)
        many = method.GetSmoothedMaskBatch(xs, model, nsamples=5, seed=[1, 2], batch_size=4)
        runs[packed] = (one, many, model.batches)
    np.testing.assert_array_equal(runs[True][0], runs[False][0])
    np.testing.assert_array_equal(runs[True][1], runs[False][1])
    assert [b.shape for b in runs[True][2][:3]] == [(3, *SHAPE)] * 2 + [(1, *SHAPE)]
    for on, off in zip(runs[True][2], runs[False][2], strict=True):  # the same calls, the same inputs
        np.testing.assert_array_equal(on, off)


def test_seeded_noise_is_drawn_on_the_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from saliencykit.core import examples

    threads = []
    noisy = examples.NoiseSource.noisy

    def recording(self: Any, x_value: np.ndarray, stdev: Any) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return noisy(self, x_value, stdev)

    monkeypatch.setattr(examples.NoiseSource, "noisy", recording)
    monkeypatch.setattr(scheduler, "PREFETCH_INPUTS", True)
    saliency.GradientSaliency().GetSmoothedMask(
        images(1)[0], MLPModel(SHAPE), nsamples=6, seed=0, batch_size=2
    )
    assert threads[:2] == [threading.current_thread().name] * 2  # the first call's samples
    assert all(name.startswith("saliencykit-inputs") for name in threads[2:]) and len(threads) == 6


class SpinningModel:
    """Keeps one CPU busy (a Python loop, holding the GIL) for ``seconds`` in every call."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds

    def __call__(self, x: np.ndarray, call_model_args: Any = None, expected_keys: Any = None) -> Any:
        end = time.process_time() + self.seconds
        while time.process_time() < end:
            pass
        return {INPUT_OUTPUT_GRADIENTS: np.ones_like(x)}


def test_by_default_a_model_that_leaves_the_cpus_idle_gets_the_next_inputs_built_beside_it() -> None:
    assert scheduler.PREFETCH_INPUTS is None  # the default: decided from the first call
    built: list[tuple[int, int, str]] = []
    run_steps(SlowModel(), [one_long_request(8, built, SlowModel())], [None], batch_size=2)
    here = threading.current_thread().name
    # Chunks 0 and 1 on this thread (the first call is timed with nothing beside it); the model
    # slept through it, so chunks 2 and 3 are built beside calls 1 and 2.
    assert [name == here for _, _, name in built] == [True, True, False, False]
    assert all(name.startswith("saliencykit-inputs") for _, _, name in built[2:])


def test_by_default_a_model_that_keeps_every_cpu_busy_gets_nothing_beside_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scheduler, "available_cpus", lambda: 1)  # the spinning model fills the one CPU
    built: list[tuple[int, int, str]] = []
    run_steps(SpinningModel(), [one_long_request(8, built, SlowModel())], [None], batch_size=2)
    assert {name for _, _, name in built} == {threading.current_thread().name}
    # With prefetch=True the same model still gets its inputs built beside it.
    built.clear()
    run_steps(SpinningModel(), [one_long_request(8, built, SlowModel())], [None], batch_size=2, prefetch=True)
    assert all(name.startswith("saliencykit-inputs") for _, _, name in built[1:])


@pytest.mark.parametrize(
    ("cpu_seconds", "wall_seconds", "n_cpus", "idle"),
    [
        (0.05, 1.0, 2, True),  # a GPU model: the CPUs wait
        (1.0, 1.0, 2, True),  # one of two CPUs busy
        (1.6, 1.0, 2, False),  # a CPU model on both cores (PyTorch's default threads)
        (1.9, 1.0, 2, False),
        (7.0, 1.0, 8, True),  # a model on 7 of 8 cores leaves one
        (7.8, 1.0, 8, False),
        (0.0, 0.0, 2, False),  # an instant call: nothing to hide behind
    ],
)
def test_model_leaves_a_core_idle(cpu_seconds: float, wall_seconds: float, n_cpus: int, idle: bool) -> None:
    assert scheduler.model_leaves_a_core_idle(cpu_seconds, wall_seconds, n_cpus) is idle


def test_available_cpus_are_those_the_process_may_run_on(monkeypatch: pytest.MonkeyPatch) -> None:
    if hasattr(os, "sched_getaffinity"):
        assert scheduler.available_cpus() == len(os.sched_getaffinity(0))
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one, never zero
    assert scheduler.available_cpus() == 1
