"""The scheduler: the requests of many computations packed into shared model calls.

Part of :mod:`saliencykit.core.base`, which re-exports every public name here.
A method's computation of one mask is a generator (:data:`Steps`) that yields
:class:`Request` and :class:`Fork` objects; :func:`run_steps` runs many of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arguments import check_evaluation_count, check_int
from .model_calls import CallModelFunction, check_call_model_output

# --------------------------------------------------------------------------
# The scheduler: the evaluations of many examples packed into shared calls.
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """Model evaluations that one computation needs before it can go on.

    A method's computation is a generator (:data:`Steps`) that yields
    requests: ``answer = yield Request(...)``. :func:`run_steps` builds the
    inputs lazily, in chunks, packs the chunks of many computations into calls
    of at most ``batch_size`` inputs, checks every answer once and hands each
    computation the rows of its own inputs.

    Attributes:
      n_inputs: how many inputs, between 1 and :data:`MAX_MODEL_EVALUATIONS`.
      make_inputs: ``make_inputs(start, stop)`` returns inputs ``start..stop-1``
        as one array ``[stop - start, ...]``; called once per chunk, chunks in
        order, before the call that takes them: while the previous call runs,
        on the scheduler's worker thread, when the chunk continues a request
        that call does not finish (see :func:`run_steps`). It must therefore
        depend only on the request's own state, not on answers still to come.
      keys: the keys asked for (and checked) in the answer.
      consume: ``consume(start, stop, answer)`` receives the checked answer on
        inputs ``start..stop-1`` (a dict key -> array with ``stop - start``
        rows) after each call; the generator then gets ``None`` back. Without
        it, the answers are collected and the generator gets one dict with
        ``n_inputs`` rows per key (fine for a few inputs; a long path should
        consume its answers chunk by chunk to keep memory bounded).
    """

    n_inputs: int
    make_inputs: Callable[[int, int], np.ndarray]
    keys: Sequence[str]
    consume: Callable[[int, int, dict[str, np.ndarray]], None] | None = None


@dataclass(frozen=True)
class Fork:
    """Computations that one computation runs as its children: ``results = yield Fork(...)``.

    Attributes:
      children: an iterable of :data:`Steps` generators, pulled lazily, in
        order, when the scheduler has room for them (so a million SmoothGrad
        samples are never all built at once).
      on_result: ``on_result(index, result)`` receives each child's result as
        it finishes; the generator then gets ``None`` back. Without it, the
        results come back as a list in the children's order.
      sequential: run one child at a time (the next starts when the previous
        one is done) instead of packing the children's requests into shared
        calls.
      args: one ``call_model_args`` per child (by default the children use
        this computation's).
    """

    children: Iterable[Steps]
    on_result: Callable[[int, Any], None] | None = None
    sequential: bool = False
    args: Sequence[Any] | None = None


#: A method's computation for one input: a generator that yields
#: :class:`Request` and :class:`Fork` objects and returns its result (the mask).
Steps = Generator["Request | Fork", Any, Any]


_PLAIN_VALUE_TYPES = (type(None), bool, int, float, complex, str, bytes)

#: Whether :func:`run_steps` builds the next call's inputs on a worker thread
#: while the model runs (its ``prefetch=None``): ``None`` (the default) decides
#: per run from the first call, which is timed (see :func:`model_leaves_a_core_idle`);
#: True always; False never (every input is built on the calling thread). The
#: results are the same either way.
PREFETCH_INPUTS: bool | None = None

#: Building beside the model pays only where the model leaves at least this
#: many of the process's CPUs idle on average during its calls (its process
#: CPU seconds per wall second at most ``CPUs - IDLE_CPUS_FOR_PREFETCH``).
IDLE_CPUS_FOR_PREFETCH = 0.5


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def model_leaves_a_core_idle(cpu_seconds: float, wall_seconds: float, n_cpus: int | None = None) -> bool:
    """Whether a model call that used ``cpu_seconds`` of process CPU time in ``wall_seconds`` left a CPU idle.

    A model that computes on this machine's CPUs (PyTorch, TensorFlow and JAX
    on the CPU use every core by default) keeps them busy: the library's work
    on another thread then competes with the model's threads, whose parallel
    sections wait for the slowest. Measured on EfficientNet-Lite0 (2 cores),
    seeded SmoothGrad's noise drawn beside the model slowed the model by about
    2.8 times the work moved (Blur IG's FFT blurs: 0.8 times, a small gain).
    A model on a GPU, or behind a network call, leaves the CPUs idle while it
    runs: there the work hides behind the model for free.

    Args:
      cpu_seconds: the process's CPU time during the call (all threads).
      wall_seconds: the call's wall time.
      n_cpus: the CPUs to compare with (default :func:`available_cpus`).

    Returns:
      True when at least :data:`IDLE_CPUS_FOR_PREFETCH` CPUs were idle on average.
    """
    if wall_seconds <= 0.0:
        return False
    cpus = available_cpus() if n_cpus is None else n_cpus
    return cpus - cpu_seconds / wall_seconds >= IDLE_CPUS_FOR_PREFETCH


def same_call_model_args(first: Any, second: Any) -> bool:
    """Whether two examples' ``call_model_args`` may share a call of a plain ``call_model_function``.

    The same object, or equal plain values (``None``, numbers, strings) of one
    type. Containers (dicts, lists, arrays) must be the same object: their
    ``==`` may be costly, elementwise or ambiguous.
    """
    if first is second:
        return True
    return type(first) is type(second) and isinstance(first, _PLAIN_VALUE_TYPES) and first == second


class _Task:
    """One running computation (a :data:`Steps` generator) and what it waits for."""

    def __init__(self, steps: Steps, parent: _Task | None, index: int, args: Any) -> None:
        self.steps = steps
        self.parent = parent
        self.index = index  # its place among its parent's children
        self.args = args
        # Waiting for a request: how many of its inputs have been answered, and the answers.
        self.request: Request | None = None
        self.answered = 0
        self.answers: list[dict[str, np.ndarray]] = []
        # Waiting for a fork: its children not yet started, how many run, the results.
        self.fork: Fork | None = None
        self.children: Iterator[Steps] | None = None
        self.started = 0
        self.running = 0
        self.results: list[Any] | None = None


class _Scheduler:
    """Runs computations and packs their requests into calls (see :func:`run_steps`)."""

    def __init__(
        self,
        call_model_function: CallModelFunction,
        batch_size: int,
        worker: ThreadPoolExecutor | None,
        prefetch: bool | None = True,
    ) -> None:
        self.call_model_function = call_model_function
        self.batch_size = batch_size
        self.worker = worker
        # True: build beside the model; None: not yet, the next call is timed to decide.
        self.prefetch = prefetch if worker is not None else False
        # Inputs being built beside the model: task -> (start, stop, the future array).
        self.prefetched: dict[_Task, tuple[int, int, Future[np.ndarray]]] = {}
        self.pack_args = getattr(call_model_function, "pack_call_model_args", None)
        self.pending: list[_Task] = []  # computations waiting for a request, oldest first
        self.forks: list[_Task] = []  # parallel forks with children to start, innermost last
        self.new: list[_Task] = []  # requests made since the last look

    # Moving computations along.

    def advance(self, task: _Task, value: Any) -> None:
        """Resumes ``task`` with ``value`` until it (or the computation it unblocks) waits again."""
        while True:
            try:
                item = task.steps.send(value)
            except StopIteration as stop:
                parent = task.parent
                if parent is None:
                    return
                self.record_result(parent, task.index, stop.value)
                if parent.running:
                    return
                assert parent.fork is not None
                if not parent.fork.sequential and parent.children is not None:
                    return  # more children start when a call has room for them
                task, value = self.next_of(parent)
                continue
            if isinstance(item, Request):
                check_evaluation_count("number of model inputs", item.n_inputs)
                task.request, task.answered, task.answers = item, 0, []
                self.pending.append(task)
                self.new.append(task)
                return
            if not isinstance(item, Fork):
                raise TypeError(f"a computation yielded {type(item).__name__}, not a Request or a Fork")
            task.fork, task.children = item, iter(item.children)
            task.started = task.running = 0
            task.results = None if item.on_result is not None else []
            if not item.sequential:
                self.forks.append(task)
                return
            task, value = self.next_of(task)

    def next_of(self, task: _Task) -> tuple[_Task, Any]:
        """For a fork with no child running: its next child to start, or itself with the fork's result."""
        child = self.new_child(task)
        if child is not None:
            return child, None
        results, task.fork, task.results = task.results, None, None
        return task, results

    def new_child(self, task: _Task) -> _Task | None:
        """``task``'s next child as a task not yet started, or None when there is none left."""
        fork = task.fork
        child_steps = None if task.children is None else next(task.children, None)
        if child_steps is None or fork is None:
            task.children = None
            return None
        index = task.started
        task.started += 1
        task.running += 1
        if task.results is not None:
            task.results.append(None)
        return _Task(child_steps, task, index, task.args if fork.args is None else fork.args[index])

    def record_result(self, task: _Task, index: int, result: Any) -> None:
        """Hands a finished child's result to its parent ``task``."""
        fork = task.fork
        assert fork is not None
        task.running -= 1
        if fork.on_result is not None:
            fork.on_result(index, result)
        else:
            assert task.results is not None
            task.results[index] = result

    def start_from_forks(self) -> None:
        """Starts one child of the innermost parallel fork that has children left (or resumes a done fork)."""
        while self.forks:
            task = self.forks[-1]
            child = self.new_child(task)
            if child is not None:
                self.advance(child, None)
                return
            self.forks.pop()
            if task.running == 0:
                self.advance(*self.next_of(task))
                return

    # Calls.

    def compatible(self, head: _Task, task: _Task) -> bool:
        """Whether ``task``'s next inputs may share a call with ``head``'s."""
        assert head.request is not None and task.request is not None
        if list(head.request.keys) != list(task.request.keys):
            return False
        return self.pack_args is not None or same_call_model_args(head.args, task.args)

    def next_call(self) -> list[tuple[_Task, int, int]]:
        """The chunks of the next call: pending requests first, then new children while room is left."""
        chunks: list[tuple[_Task, int, int]] = []
        room = self.batch_size
        head: _Task | None = None
        skipped = False

        def take(task: _Task) -> bool:
            nonlocal room, head
            if head is None:
                head = task
            elif not self.compatible(head, task):
                return False
            assert task.request is not None
            size = min(room, task.request.n_inputs - task.answered)
            chunks.append((task, task.answered, task.answered + size))
            room -= size
            return True

        for task in self.pending:
            if room == 0:
                break
            skipped = not take(task) or skipped
        self.new = []
        # New computations only while they fill this call: memory stays bounded by
        # about batch_size computations in flight.
        while room > 0 and self.forks and not skipped:
            self.start_from_forks()
            for task in self.new:
                if room == 0 or not take(task):
                    skipped = True
                    break
            self.new = []
        return chunks

    def call(self, chunks: list[tuple[_Task, int, int]]) -> None:
        """Makes one call on ``chunks``, hands each its answer rows, resumes the finished requests."""
        head = chunks[0][0]
        assert head.request is not None
        keys = list(head.request.keys)
        inputs = self.inputs_of(chunks)
        if all(task.args is head.args for task, _, _ in chunks) or self.pack_args is None:
            args = head.args
        else:
            args = self.pack_args([task.args for task, start, stop in chunks for _ in range(stop - start)])
        self.prefetch_after(chunks)
        deciding = self.prefetch is None
        wall, cpu = (time.perf_counter(), time.process_time()) if deciding else (0.0, 0.0)
        try:
            output = self.call_model_function(inputs, call_model_args=args, expected_keys=keys)
            if deciding:
                self.prefetch = model_leaves_a_core_idle(
                    time.process_time() - cpu, time.perf_counter() - wall
                )
        finally:
            for _, _, future in self.prefetched.values():  # the worker's work done before any state moves
                future.exception()
        answer = check_call_model_output(output, inputs.shape, keys)
        offset = 0
        finished = []
        for task, start, stop in chunks:
            rows = {key: value[offset : offset + stop - start] for key, value in answer.items()}
            offset += stop - start
            request = task.request
            assert request is not None
            if request.consume is not None:
                request.consume(start, stop, rows)
            else:
                task.answers.append(rows)
            task.answered = stop
            if stop == request.n_inputs:
                finished.append(task)
        if finished:
            self.pending = [task for task in self.pending if task not in finished]
        for task in finished:
            answers, task.request, task.answers = task.answers, None, []
            if not answers:
                self.advance(task, None)
            elif len(answers) == 1:
                self.advance(task, answers[0])
            else:
                self.advance(task, {key: np.concatenate([a[key] for a in answers]) for key in keys})

    def inputs_of(self, chunks: list[tuple[_Task, int, int]]) -> np.ndarray:
        """The call's inputs: each chunk's, built beside the previous call or now."""
        parts = []
        for task, start, stop in chunks:
            assert task.request is not None
            prefetched = self.prefetched.pop(task, None)
            if prefetched is None:
                parts.append(task.request.make_inputs(start, stop))
                continue
            # The plan of prefetch_after is the next call's exact prefix (see there).
            assert prefetched[:2] == (start, stop), (prefetched[:2], (start, stop))
            parts.append(prefetched[2].result())
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def prefetch_after(self, chunks: list[tuple[_Task, int, int]]) -> None:
        """Starts building, on the worker thread, the inputs of the next call that do not depend on this one.

        The next call (:meth:`next_call`) starts with the requests still
        pending after this call, in order, before anything this call's answers
        create: those that continue past this call, and those left out of it.
        Their chunks are planned here exactly as :meth:`next_call` will choose
        them, and their ``make_inputs`` runs while the model answers this
        call. The rest of the next call is built after the answer, as before.
        """
        if self.worker is None or not self.prefetch:
            return
        answered = {task: stop for task, _, stop in chunks}
        room = self.batch_size
        head: _Task | None = None
        plan = []
        for task in self.pending:
            if room == 0:
                break
            assert task.request is not None
            start = answered.get(task, task.answered)
            if start == task.request.n_inputs:
                continue  # finished by this call
            if head is None:
                head = task
            elif not self.compatible(head, task):
                continue
            stop = start + min(room, task.request.n_inputs - start)
            plan.append((task, start, stop))
            room -= stop - start
        for task, start, stop in plan:
            assert task.request is not None
            future = self.worker.submit(task.request.make_inputs, start, stop)
            self.prefetched[task] = (start, stop, future)

    def run(self, root: _Task) -> None:
        self.advance(root, None)
        while self.pending or self.forks:
            chunks = self.next_call()
            if chunks:
                self.call(chunks)


def run_steps(
    call_model_function: CallModelFunction,
    computations: Iterable[Steps],
    call_model_args: Sequence[Any],
    batch_size: int,
    on_result: Callable[[int, Any], None] | None = None,
    prefetch: bool | None = None,
) -> list[Any]:
    """Runs computations, packing their model evaluations into shared calls; returns their results.

    Each computation is a :data:`Steps` generator (one example's mask) with
    its own ``call_model_args``. Its :class:`Request` inputs are built lazily,
    one chunk per call, and the chunks of several computations go into one
    call of at most ``batch_size`` inputs (concatenated along axis 0; the
    answer is checked once, with :func:`check_call_model_output`, and split
    back by rows). Computations are started, in order, only when the call
    being filled has room, and the oldest requests are served first, so at
    most about ``batch_size`` computations are in flight and memory stays
    bounded by about ``batch_size`` inputs (plus each computation's own state)
    whatever the number of computations.

    Rows of computations with different ``call_model_args`` share a call only
    if ``call_model_function`` has a ``pack_call_model_args(row_args)`` method
    (the adapters do): it receives one ``call_model_args`` per row and returns
    the call's. Otherwise only computations whose arguments are the same
    (:func:`same_call_model_args`) share calls. A call whose rows all have the
    same arguments object gets that object unchanged.

    Work beside the model: while ``call_model_function`` runs (on the calling
    thread, where the user's framework state lives), one worker thread builds
    the inputs of the next call that do not depend on its answer (the next
    chunks of long requests: path points, blurred images, occluded copies).
    The calls, their inputs and every result are the same as without it; the
    library's own time then hides behind the model's where NumPy and SciPy
    release the GIL (large array arithmetic, FFTs). The worker never runs
    while the computations handle answers. It pays only where the model
    leaves a CPU idle (a GPU, a remote model): a model computing on every
    core of this machine can be slowed by more than the work moved beside
    it (see :func:`model_leaves_a_core_idle`).
    So by default the first call is made with nothing beside it and timed,
    and the rest of the run builds ahead only if that call left at least
    half a CPU idle (:func:`model_leaves_a_core_idle`).

    Args:
      call_model_function: the user's model function.
      computations: the computations, pulled lazily.
      call_model_args: one ``call_model_args`` per computation.
      batch_size: the most inputs in one call (>= 1).
      on_result: ``on_result(index, result)`` receives each result as it
        finishes; the returned list is then empty.
      prefetch: True: build the next call's inputs beside the model (above)
        from the first call on; False: every input is built on the calling
        thread just before its call; None: :data:`PREFETCH_INPUTS`, whose
        default ``None`` decides from the first call's CPU use (above).

    Returns:
      The results in order (empty with ``on_result``).

    Raises:
      TypeError, ValueError: a bad ``batch_size``, a bad answer, or whatever
        a computation raises.
    """
    batch_size = check_int("batch_size", batch_size)
    results: list[Any] = []

    def root() -> Steps:
        collected = yield Fork(computations, on_result, args=call_model_args)
        if collected is not None:
            results.extend(collected)

    mode = PREFETCH_INPUTS if prefetch is None else prefetch
    if mode is False:
        _Scheduler(call_model_function, batch_size, None).run(_Task(root(), None, 0, None))
        return results
    with ThreadPoolExecutor(1, thread_name_prefix="saliencykit-inputs") as worker:  # its thread starts lazily
        _Scheduler(call_model_function, batch_size, worker, mode).run(_Task(root(), None, 0, None))
    return results
