"""The Ray engine: images sharded to Ray workers that each load the model once (``saliencykit[ray]``).

How it runs (Ray's own mechanisms, no scheduler of ours):

- the work items become a Ray Dataset (``ray.data.from_items``), mapped with
  ``map_batches`` over a fixed pool of ``workers`` actors
  (:class:`ExplainActor`, ``ActorPoolStrategy(size=workers)``, ``num_cpus`` /
  ``num_gpus`` per actor): each actor loads the model once, in its
  constructor, and computes each batch of ``images_per_batch`` images with the
  local engine's code (:meth:`~saliencykit.runs.local.LocalEngine.run_loaded`),
  so the two engines give the same maps;
- each batch comes back to the driver as pickled
  :class:`~saliencykit.runs.engines.WorkResult` s, maps as NumPy arrays
  inside (workers write no file); the driver iterates them and calls
  ``on_result``, which stores them: the driver is the only writer;
- a worker process that dies (killed, out of memory, a crash in native code)
  is restarted by Ray (``max_restarts``) and its batch run again
  (``max_task_retries``), up to ``max_retries`` times (a worker that dies while
  loading the model is restarted the same way; one that keeps dying fails the
  run, and every map not yet done is reported ``"failed"``); a batch that still
  fails is skipped by Ray Data (``max_errored_blocks = -1``: the other
  batches go on). Each actor holds one batch at a time, so a batch waiting
  for a worker never dies with it. When Ray Data is done, the images of the
  lost batches run once more, one image per batch, on a fresh pool of
  workers: the images that shared a batch with one that kills its worker are
  computed, and only the maps that fail again are reported ``"failed"`` with
  a one-line error, so that ``--retry-failed`` runs them again. The driver drops a result
  whose key it has already passed on (or never asked for): no map is reported
  twice, none is lost.

The cluster: ``address`` joins an existing one (``ray.init(address=...)``,
e.g. ``"auto"`` on a node of a cluster started with ``ray start``); without
it, a Ray already initialised in this process is used as it is, else a local
cluster with ``workers * cpus_per_worker`` CPUs is started for the run and
shut down at its end. Every node needs saliencykit (and the model's framework
and file, at the same path) installed.

Ray is imported only when a run starts: this module imports without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import pickle
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..allocator import reuse_freed_memory
from .engines import RAY_INSTALL, EngineUnavailableError, ModelSpec, WorkItem, WorkResult
from .local import DEFAULT_IMAGES_PER_BATCH, LocalEngine, one_line_error

if TYPE_CHECKING:
    from types import ModuleType

    from ..cli.models import LoadedModel

__all__ = ["CRASH_MARKER_VARIABLE", "ExplainActor", "RayEngine"]

#: TEST-ONLY fault injection. When this environment variable names a file path
#: in the driver's environment as a run starts, the first worker to receive a
#: batch while that file does not exist creates it and kills its own process
#: (``os._exit(1)``), as a crash would; Ray restarts it and runs the batch again.
#: Never set it outside tests.
CRASH_MARKER_VARIABLE = "SALIENCYKIT_RAY_TEST_CRASH_MARKER"
#: Colour codes in Ray's error messages.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Pickle protocol of the results (5: NumPy arrays travel as out-of-band buffers).
_PROTOCOL = 5


def _import_ray() -> ModuleType:
    """``ray`` with ``ray.data`` imported.

    Raises:
      EngineUnavailableError: Ray (or a package Ray Data needs) is missing; one line with the pip command.
    """
    try:
        import ray
        import ray.data
    except ImportError as error:
        missing = getattr(error, "name", None) or "ray"
        raise EngineUnavailableError(
            f"the Ray engine needs the package {missing!r}, which is not installed: {RAY_INSTALL}"
        ) from None
    return ray


def _positive_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def _non_negative_number(value: Any, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name}: expected a number {'>' if positive else '>='} 0, got {value!r}")
    return float(value)


class _LoadFailure:
    """A worker's answer to each batch when the model does not load there: the error, raised by the driver."""

    def __init__(self, error: BaseException) -> None:
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:  # an exception that does not pickle travels as its one line
            error = RuntimeError(one_line_error(error))
        self.error = error


class ExplainActor:
    """One Ray worker: loads the model once, then explains the batches of work items Ray Data gives it.

    Ray Data calls it with a batch ``{"item": [pickled WorkItem, ...]}`` and
    gets back ``{"result": [pickled WorkResult, ...]}`` (one per item and
    method). A model that does not load is not raised here (Ray would retry the
    worker, then fail the run with its own traceback): each batch answers the
    error instead, and the driver raises it, as the local engine would.

    Args:
      spec: how to load the model.
      batch_size: the most inputs per model call (as :meth:`Engine.run`'s).
      crash_marker: TEST-ONLY (see :data:`CRASH_MARKER_VARIABLE`); ``None`` in real runs.
    """

    def __init__(self, spec: ModelSpec, batch_size: int, crash_marker: str | None = None) -> None:
        reuse_freed_memory()  # the worker's process is the run's own, as the CLI's is
        self.batch_size = batch_size
        self.crash_marker = crash_marker
        self.engine = LocalEngine()
        self.model: LoadedModel | None = None
        self.load_failure: _LoadFailure | None = None
        try:
            self.model = spec.load()
        except Exception as error:
            self.load_failure = _LoadFailure(error)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[bytes]]:
        items: list[WorkItem] = [pickle.loads(data) for data in batch["item"]]
        self._maybe_crash()
        if self.model is None:
            return {"result": [pickle.dumps(self.load_failure, protocol=_PROTOCOL)]}
        results: list[WorkResult] = []
        self.engine.run_loaded(self.model, items, self.batch_size, results.append)
        return {"result": [pickle.dumps(result, protocol=_PROTOCOL) for result in results]}

    def _maybe_crash(self) -> None:
        """TEST-ONLY: dies once, the first time, given a crash marker (see :data:`CRASH_MARKER_VARIABLE`)."""
        if not self.crash_marker:
            return
        try:
            os.close(os.open(self.crash_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os._exit(1)


class _Collector:
    """The driver's side: passes each expected result to ``on_result`` once, and reports the missing ones.

    Args:
      items: the work asked for; a result whose key is not among their methods' keys is dropped.
      on_result: the driver's callback.
    """

    def __init__(self, items: Sequence[WorkItem], on_result: Callable[[WorkResult], None]) -> None:
        self.expected: dict[str, tuple[WorkItem, str, dict[str, Any]]] = {
            key: (item, name, parameters) for item in items for name, key, parameters in item.methods
        }
        self.reported: set[str] = set()
        self.on_result = on_result

    def add(self, result: WorkResult) -> None:
        """Passes ``result`` on unless its key was already reported or never asked for."""
        if result.key not in self.expected or result.key in self.reported:
            return
        self.reported.add(result.key)
        self.on_result(result)

    def missing_items(self) -> list[WorkItem]:
        """The items with a method not yet reported, each holding only those methods."""
        missing: dict[int, tuple[WorkItem, list[tuple[str, str, dict[str, Any]]]]] = {}
        for key, (item, name, parameters) in self.expected.items():
            if key not in self.reported:
                missing.setdefault(id(item), (item, []))[1].append((name, key, parameters))
        return [dataclasses.replace(item, methods=tuple(methods)) for item, methods in missing.values()]

    def fail_missing(self, error: str) -> int:
        """Reports every expected key not yet reported as ``"failed"`` with ``error``; returns how many."""
        missing = [key for key in self.expected if key not in self.reported]
        for key in missing:
            item, name, parameters = self.expected[key]
            self.add(
                WorkResult(
                    item.image_path,
                    item.image_sha256,
                    name,
                    key,
                    dict(parameters),
                    "failed",
                    error=error,
                    class_index=item.class_index,
                )
            )
        return len(missing)


@contextlib.contextmanager
def _quiet_ray_data() -> Iterator[None]:
    """Ray Data's INFO and WARNING lines off (its errors still show), restored afterwards."""
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class RayEngine:
    """Computes maps on Ray workers (see the module's docstring); needs ``pip install "saliencykit[ray]"``.

    Args:
      workers: the number of Ray workers (actors), each loading the model once.
      gpus_per_worker: GPUs each worker takes (``0``: none; fractions share a GPU).
        A PyTorch model then runs on the GPU Ray gives it, unless the
        :class:`ModelSpec` names a device.
      address: a Ray cluster to join (``"auto"``, ``"ray://host:10001"``...);
        ``None``: the Ray already initialised in this process, else a local
        cluster started (and shut down) for the run.
      max_retries: how many times a worker that dies is restarted and its batch
        run again; a batch that fails more often is reported ``"failed"``.
      cpus_per_worker: CPUs each worker takes (Ray sets its ``OMP_NUM_THREADS``
        to that number, rounded up, unless the environment already sets it).
      images_per_batch: images per batch sent to a worker (read, predicted and
        explained together, as the local engine's); ``None``: at most
        :data:`~saliencykit.runs.local.DEFAULT_IMAGES_PER_BATCH`, fewer so that
        each worker gets at least two batches.

    Raises:
      ValueError: an argument out of range (named in the message).
    """

    #: The actor class the workers run (a subclass may be set on an instance, e.g. by tests).
    actor_class: type[ExplainActor] = ExplainActor

    def __init__(
        self,
        workers: int = 1,
        gpus_per_worker: float = 0,
        address: str | None = None,
        max_retries: int = 3,
        *,
        cpus_per_worker: float = 1,
        images_per_batch: int | None = None,
    ) -> None:
        self.workers = _positive_int(workers, "workers", 1)
        self.gpus_per_worker = _non_negative_number(gpus_per_worker, "gpus_per_worker")
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ValueError(f"address: expected a Ray cluster address such as 'auto', got {address!r}")
        self.address = address
        self.max_retries = _positive_int(max_retries, "max_retries", 0)
        self.cpus_per_worker = _non_negative_number(cpus_per_worker, "cpus_per_worker", positive=True)
        if images_per_batch is not None:
            images_per_batch = _positive_int(images_per_batch, "images_per_batch", 1)
        self.images_per_batch = images_per_batch

    def batch_images(self, n_items: int) -> int:
        """The images per batch for ``n_items`` items (see ``images_per_batch``)."""
        if self.images_per_batch is not None:
            return self.images_per_batch
        return max(1, min(DEFAULT_IMAGES_PER_BATCH, math.ceil(n_items / (2 * self.workers))))

    def run(
        self,
        spec: ModelSpec,
        items: Sequence[WorkItem],
        batch_size: int,
        on_result: Callable[[WorkResult], None],
    ) -> None:
        """Computes every (item, method) on the Ray workers; passes each result to ``on_result`` once, here.

        Raises:
          EngineUnavailableError: Ray is not installed.
          CliError, MissingDependencyError: the model does not load on a worker (the worker's error).
          ray.exceptions.RaySystemError, ConnectionError: the cluster cannot be started or joined.
        """
        if not items:
            return
        ray = _import_ray()
        started = self._connect(ray)
        try:
            self._run(ray, spec, items, batch_size, on_result)
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray: ModuleType) -> bool:
        """Joins ``address`` or starts a local cluster unless Ray is initialised; True: it started one."""
        if ray.is_initialized():
            return False
        quiet: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
        if self.address is not None:
            ray.init(address=self.address, **quiet)
            return True
        cpus = max(1, math.ceil(self.workers * self.cpus_per_worker))
        ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
        return True

    def _run(
        self,
        ray: ModuleType,
        spec: ModelSpec,
        items: Sequence[WorkItem],
        batch_size: int,
        on_result: Callable[[WorkResult], None],
    ) -> None:
        collector = _Collector(items, on_result)
        crash_marker = os.environ.get(CRASH_MARKER_VARIABLE) or None
        lost = (
            f"lost: its Ray batch failed {self.max_retries + 1} times "
            "(a worker that died each time?); rerun with --retry-failed"
        )
        first_batches = self.batch_images(len(items))
        failure = self._run_pass(ray, spec, items, batch_size, first_batches, crash_marker, collector)
        if failure is None:
            # Batches lost to dying workers take their neighbours with them (the other images of the batch,
            # a batch queued on the actor that died): those run once more, one image per batch, on a fresh
            # pool, so that only the images that kill their worker themselves are reported failed.
            again = collector.missing_items()
            if again:
                failure = self._run_pass(ray, spec, again, batch_size, 1, crash_marker, collector)
        collector.fail_missing(failure or lost)

    def _run_pass(
        self,
        ray: ModuleType,
        spec: ModelSpec,
        items: Sequence[WorkItem],
        batch_size: int,
        images_per_batch: int,
        crash_marker: str | None,
        collector: _Collector,
    ) -> str | None:
        """One Ray Data run over ``items``; returns its error (one line) if the whole run failed."""
        pool_size = min(self.workers, math.ceil(len(items) / images_per_batch))
        with _quiet_ray_data():
            with warnings.catch_warnings():
                # Ray 2.60 warns of its own deprecated settings when it copies a DataContext, and calls
                # extra remote arguments (max_restarts, max_task_retries) deprecated: nothing to act on.
                warnings.simplefilter("ignore", DeprecationWarning)
                dataset = ray.data.from_items(
                    [{"item": pickle.dumps(item, protocol=_PROTOCOL)} for item in items]
                )
                context = dataset.context  # this data set's own copy
                context.enable_progress_bars = False
                context.print_on_execution_start = False
                context.max_errored_blocks = -1  # a batch failing after its retries: the others go on
                results = dataset.map_batches(
                    self.actor_class,
                    fn_constructor_args=(spec, int(batch_size), crash_marker),
                    # one batch in flight per actor: a batch queued behind one that kills its worker waits
                    # in Ray Data's queue, not on the dying actor
                    compute=ray.data.ActorPoolStrategy(size=pool_size, max_tasks_in_flight_per_actor=1),
                    batch_size=images_per_batch,
                    num_cpus=self.cpus_per_worker,
                    num_gpus=self.gpus_per_worker or None,
                    max_restarts=self.max_retries,
                    max_task_retries=self.max_retries,
                )
            rows = iter(results.iter_rows())
            try:
                while True:
                    try:
                        row = next(rows)
                    except StopIteration:
                        return None
                    except Exception as error:  # the run as a whole failed: what is left is reported failed
                        return f"the Ray run failed: {_ANSI.sub('', one_line_error(error))}"
                    result = pickle.loads(row["result"])  # outside the try: on_result's errors propagate
                    if isinstance(result, _LoadFailure):
                        raise result.error  # no model: nothing computed, as with the local engine
                    collector.add(result)
            finally:  # stops the execution now, while Ray is up, when the loop ends early
                close = getattr(rows, "close", None)
                if close is not None:
                    close()
