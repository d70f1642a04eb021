"""The local engine: every map computed in this process, with the batch API.

The model is loaded once per run. Images are read and resized as the command
line does (:func:`saliencykit.cli.images.load_image`, then
:func:`~saliencykit.cli.images.resize_image` to the model's input size) and
taken ``images_per_batch`` at a time: their classes come from one batched
prediction (each image's top class, unless its :class:`WorkItem` names one),
then each method runs once over them all with ``GetMaskBatch`` (model calls
packed across images, each image's row explaining its own class through the
adapter's per-row targets). Results are handed over after each method of
each group of images, so that a run killed mid-way has stored what it
finished.

An image that cannot be read, or whose class is out of range, gives
``"failed"`` results for its methods; a method that fails on a group of
images is retried on each image alone, so that one bad image fails alone.
The run goes on in both cases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .engines import ModelSpec, WorkItem, WorkResult
from .store import canonical_json

if TYPE_CHECKING:
    from ..cli.models import LoadedModel

__all__ = ["DEFAULT_IMAGES_PER_BATCH", "LocalEngine", "one_line_error"]

#: Images read, predicted and explained together (their maps are held in memory until stored).
DEFAULT_IMAGES_PER_BATCH = 16


def one_line_error(error: BaseException) -> str:
    """``Type: first line of the message`` (CliError: its message alone)."""
    from ..cli.errors import CliError

    lines = str(error).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if isinstance(error, CliError):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass
class _Ready:
    """An image read, resized and predicted."""

    item: WorkItem
    pixels: np.ndarray
    class_index: int
    label: str
    probability: float


class LocalEngine:
    """Computes maps in this process (see the module's docstring).

    Args:
      images_per_batch: how many images are read and explained together
        (memory: their pixels and maps); results are stored after each group.
    """

    def __init__(self, images_per_batch: int = DEFAULT_IMAGES_PER_BATCH) -> None:
        if (
            isinstance(images_per_batch, bool)
            or not isinstance(images_per_batch, int)
            or images_per_batch < 1
        ):
            raise ValueError(f"images_per_batch: expected an integer >= 1, got {images_per_batch!r}")
        self.images_per_batch = images_per_batch

    def run(
        self,
        spec: ModelSpec,
        items: Sequence[WorkItem],
        batch_size: int,
        on_result: Callable[[WorkResult], None],
    ) -> None:
        """Computes every (item, method) and passes each result to ``on_result``, once.

        Raises:
          CliError, MissingDependencyError: the model cannot be loaded (nothing is computed).
        """
        if not items:
            return
        model = spec.load()
        for start in range(0, len(items), self.images_per_batch):
            self.run_loaded(model, items[start : start + self.images_per_batch], batch_size, on_result)

    def run_loaded(
        self,
        model: LoadedModel,
        items: Sequence[WorkItem],
        batch_size: int,
        on_result: Callable[[WorkResult], None],
    ) -> None:
        """Computes the items with a loaded model, together (for engines that load the model themselves)."""
        ready: list[_Ready] = []
        for item, outcome in zip(items, _prepare(model, items, batch_size), strict=True):
            if isinstance(outcome, str):
                for name, key, parameters in item.methods:
                    on_result(_failed(item, name, key, parameters, outcome))
            else:
                ready.append(outcome)
        groups: dict[tuple[str, str], list[tuple[_Ready, str, dict[str, Any]]]] = {}
        for image in ready:
            for name, key, parameters in image.item.methods:
                groups.setdefault((name, canonical_json(parameters)), []).append((image, key, parameters))
        for (name, _), members in groups.items():
            _run_group(model, name, members, batch_size, on_result)


def _failed(
    item: WorkItem, name: str, key: str, parameters: dict[str, Any], error: str, image: _Ready | None = None
) -> WorkResult:
    return WorkResult(
        item.image_path,
        item.image_sha256,
        name,
        key,
        dict(parameters),
        "failed",
        error=error,
        class_index=None if image is None else image.class_index,
        label="" if image is None else image.label,
        probability=None if image is None else image.probability,
    )


def _predictions(model: LoadedModel, pixels: list[np.ndarray], batch_size: int) -> list[np.ndarray | str]:
    """Each image's class probabilities, in batches; where a batch fails, each image alone (or its error)."""
    step = max(1, int(batch_size))
    try:
        return [
            row
            for start in range(0, len(pixels), step)
            for row in model.predict_probabilities(np.stack(pixels[start : start + step]))
        ]
    except Exception:  # find the image the model fails on
        pass
    rows: list[np.ndarray | str] = []
    for image in pixels:
        try:
            rows.append(model.predict_probabilities(image[None])[0])
        except Exception as error:
            rows.append(f"the model fails on this image: {one_line_error(error)}")
    return rows


def _prepare(model: LoadedModel, items: Sequence[WorkItem], batch_size: int) -> list[_Ready | str]:
    """Each item's image read, resized and predicted, or the one-line reason it cannot be."""
    from ..cli.images import load_image, resize_image

    read: list[np.ndarray | str] = []
    for item in items:
        try:
            read.append(resize_image(load_image(item.image_path, "image").pixels, model.input_size))
        except Exception as error:  # an unreadable image fails alone
            read.append(one_line_error(error))
    pixels = [image for image in read if not isinstance(image, str)]
    predicted = iter(_predictions(model, pixels, batch_size))
    prepared: list[_Ready | str] = []
    for item, image in zip(items, read, strict=True):
        if isinstance(image, str):
            prepared.append(image)
            continue
        row = next(predicted)
        if isinstance(row, str):
            prepared.append(row)
            continue
        index = int(np.argmax(row)) if item.class_index is None else int(item.class_index)
        if not 0 <= index < model.n_classes:
            prepared.append(
                f"class_index: expected a class index from 0 to {model.n_classes - 1} "
                f"(the model has {model.n_classes} outputs), got {index}"
            )
            continue
        prepared.append(_Ready(item, image, index, model.label_of(index), float(row[index])))
    return prepared


def _unavailable(model: LoadedModel, name: str) -> str:
    """Why ``model`` cannot run method ``name``, or ``""``."""
    from ..cli.methods import METHODS

    reasons = [model.unsupported[need] for need in sorted(METHODS[name].needs) if need in model.unsupported]
    return f"{name} is not available for this model: {reasons[0]}" if reasons else ""


def _run_group(
    model: LoadedModel,
    name: str,
    members: list[tuple[_Ready, str, dict[str, Any]]],
    batch_size: int,
    on_result: Callable[[WorkResult], None],
) -> None:
    """One method (one set of parameters) over several images: one batch, else each image alone."""
    from ..cli.methods import batch_size_of, run_method_batch

    unavailable = _unavailable(model, name)
    if unavailable:
        for image, key, parameters in members:
            on_result(_failed(image.item, name, key, parameters, unavailable, image))
        return
    parameters = members[0][2]
    calls = batch_size_of(name, parameters, batch_size)

    def compute(group: list[tuple[_Ready, str, dict[str, Any]]]) -> tuple[np.ndarray, float]:
        classes = [image.class_index for image, _, _ in group]
        call = model.make_call_model_function(classes[0])
        images = np.stack([image.pixels for image, _, _ in group]).astype(np.float32)
        result = run_method_batch(name, images, call, dict(parameters), classes, calls)
        return result.maps, result.seconds / len(group)

    batches: list[tuple[list[tuple[_Ready, str, dict[str, Any]]], np.ndarray, float]] = []
    try:
        batches.append((members, *compute(members)))
    except Exception as error:  # one image may be the cause: each alone, so that the others get their maps
        if len(members) == 1:
            image, key, member_parameters = members[0]
            on_result(_failed(image.item, name, key, member_parameters, one_line_error(error), image))
        else:
            for member in members:
                try:
                    batches.append(([member], *compute([member])))
                except Exception as single_error:
                    image, key, member_parameters = member
                    failure = one_line_error(single_error)
                    on_result(_failed(image.item, name, key, member_parameters, failure, image))
    for group, maps, seconds in batches:
        for (image, key, member_parameters), saliency_map in zip(group, maps, strict=True):
            on_result(
                WorkResult(
                    image.item.image_path,
                    image.item.image_sha256,
                    name,
                    key,
                    dict(member_parameters),
                    "ok",
                    saliency_map=np.asarray(saliency_map),
                    class_index=image.class_index,
                    label=image.label,
                    probability=image.probability,
                    seconds=seconds,
                )
            )
