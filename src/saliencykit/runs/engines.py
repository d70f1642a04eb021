"""What an engine computes, and how to get one: the interface between the driver and its engines.

The driver (:func:`saliencykit.runs.explain_dataset`, in the main process)
plans :class:`WorkItem` s (one image with the methods still missing for it),
hands them to an :class:`Engine`, and stores each :class:`WorkResult` the
engine passes to ``on_result``: engines compute, only the driver writes, so
nothing is written twice and a killed worker cannot leave a half-written file.

Engines: ``"local"`` (:class:`~saliencykit.runs.local.LocalEngine`, this
process) and ``"ray"`` (``saliencykit.runs.ray_engine``, the optional extra
``saliencykit[ray]``), or any object with :meth:`Engine.run`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..cli.errors import MissingDependencyError
from .store import canonical_json, file_sha256

if TYPE_CHECKING:
    from ..cli.models import LoadedModel

__all__ = [
    "ENGINES",
    "Engine",
    "EngineUnavailableError",
    "ModelSpec",
    "WorkItem",
    "WorkResult",
    "get_engine",
]

#: The engines :func:`get_engine` knows by name.
ENGINES = ("local", "ray")
#: The command that installs the Ray engine's packages.
RAY_INSTALL = 'pip install "saliencykit[ray]"'
_DEFAULT_MODEL = "efficientnet-lite0"
_TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")


class EngineUnavailableError(MissingDependencyError, ImportError):
    """An engine whose optional packages are not installed (the message is one line with the pip command)."""


@dataclass(frozen=True)
class ModelSpec:
    """How each worker loads the model (once per worker); picklable.

    Attributes:
      model: ``"efficientnet-lite0"`` (the default) or a TorchScript / Keras
        file, as the command line's ``--model``.
      input_size: the images' side (or ``(height, width)``); default 224
        (Keras: the model's own).
      preprocess: a key of :data:`saliencykit.cli.models.PREPROCESSING`.
      layer: the Grad-CAM layer, as ``--layer``.
      labels: a text file with one class name per line, as ``--labels``.
      device: where a PyTorch model runs, as ``--device``.
    """

    model: str = _DEFAULT_MODEL
    input_size: int | tuple[int, int] | None = None
    preprocess: str = "imagenet"
    layer: str | None = None
    labels: str | None = None
    device: str | None = None

    @classmethod
    def of(cls, model: ModelSpec | str | Path | None) -> ModelSpec:
        """``model`` as a spec: a spec as it is, a name or file path with the other fields' defaults.

        Raises:
          TypeError: anything else.
        """
        if isinstance(model, ModelSpec):
            return model
        if model is None:
            return cls()
        if isinstance(model, (str, Path)):
            return cls(model=str(model))
        raise TypeError(
            f"model: expected a ModelSpec, a model name or a file path, got {type(model).__name__}"
        )

    @property
    def size(self) -> tuple[int, int] | None:
        """``input_size`` as ``(height, width)``, or ``None``."""
        if self.input_size is None:
            return None
        if isinstance(self.input_size, int):
            return (self.input_size, self.input_size)
        height, width = self.input_size
        return (int(height), int(width))

    @property
    def is_file(self) -> bool:
        """Whether the model is a file (not the default pretrained model)."""
        return self.model != _DEFAULT_MODEL

    def identity(self) -> dict[str, Any]:
        """What the maps depend on, for the stored maps' keys (JSON).

        A model file is named by the sha256 of its bytes, so a retrained file
        at the same path gets new keys; the device and the labels do not change
        the maps and are left out.
        """
        model = self.model
        if self.is_file:
            try:
                model = f"{Path(self.model).name}:sha256:{file_sha256(self.model)}"
            except OSError:
                model = str(self.model)  # the load reports it
        size = self.size
        return {
            "model": model,
            "input_size": list(size) if size else None,
            "preprocess": self.preprocess,
            "layer": self.layer,
        }

    def identity_text(self) -> str:
        """:meth:`identity` as canonical JSON."""
        return canonical_json(self.identity())

    def load(self) -> LoadedModel:
        """Loads the model (:func:`saliencykit.cli.models.load_model`).

        Raises:
          CliError: a missing or unloadable model file, bad labels, a device this machine lacks.
          MissingDependencyError: the framework is not installed.
        """
        from ..cli.models import load_model

        loaded, _notes = load_model(
            self.model,
            input_size=self.size,
            preprocess=self.preprocess,
            layer=self.layer,
            labels=self.labels,
            device=self.device,
        )
        return loaded

    def known_unsupported(self) -> frozenset[str]:
        """What this kind of model lacks (``"gradcam"``, ``"guided"``), known without loading it.

        TorchScript modules cannot be hooked; other models are only known once loaded.
        """
        if self.is_file and Path(self.model).suffix.lower() in _TORCHSCRIPT_SUFFIXES:
            return frozenset({"gradcam", "guided"})
        return frozenset()


@dataclass(frozen=True)
class WorkItem:
    """One image and all the methods still missing for it.

    Attributes:
      image_path: the image file.
      image_sha256: the sha256 of its bytes (when the driver planned the work).
      methods: ``(method name, key, parameters)`` for each map to compute.
      class_index: the class to explain; ``None``: the image's top class.
    """

    image_path: str
    image_sha256: str
    methods: tuple[tuple[str, str, dict[str, Any]], ...]
    class_index: int | None = None


@dataclass
class WorkResult:
    """One (image, method): its map, or why there is none.

    Attributes:
      status: ``"ok"`` (``saliency_map`` set) or ``"failed"`` (``error``: one line).
      seconds: the map's share of the time of the batch that computed it.
    """

    image_path: str
    image_sha256: str
    method: str
    key: str
    parameters: dict[str, Any]
    status: str
    error: str = ""
    saliency_map: np.ndarray | None = None
    class_index: int | None = None
    label: str = ""
    probability: float | None = None
    seconds: float = 0.0


@runtime_checkable
class Engine(Protocol):
    """Computes the maps of work items and passes each result to ``on_result`` (in the calling process).

    ``on_result`` is called exactly once per (item, method); an image that
    cannot be read or explained gives ``"failed"`` results and the run goes on.
    ``batch_size`` is the most inputs per model call for methods without a
    ``batch_size`` parameter of their own.
    """

    def run(
        self,
        spec: ModelSpec,
        items: Sequence[WorkItem],
        batch_size: int,
        on_result: Callable[[WorkResult], None],
    ) -> None: ...


def get_engine(name: str, **options: Any) -> Engine:
    """The engine called ``name``, made with ``options``.

    Args:
      name: ``"local"`` (:class:`~saliencykit.runs.local.LocalEngine`) or
        ``"ray"`` (needs ``pip install "saliencykit[ray]"``; Ray is imported
        only here, lazily).
      options: the engine's keyword arguments.

    Raises:
      ValueError: an unknown name.
      EngineUnavailableError: ``"ray"`` without Ray installed (a
        ``MissingDependencyError`` and an ``ImportError``; one line with the
        pip command).
    """
    if name == "local":
        from .local import LocalEngine

        return LocalEngine(**options)
    if name == "ray":
        if importlib.util.find_spec("ray") is None:
            raise EngineUnavailableError(f"the Ray engine needs Ray, which is not installed: {RAY_INSTALL}")
        try:
            module = importlib.import_module(".ray_engine", __package__)
        except ImportError as error:
            missing = getattr(error, "name", None) or str(error)
            raise EngineUnavailableError(
                f"the Ray engine needs the package {missing!r}, which is not installed: {RAY_INSTALL}"
            ) from None
        engine: Engine = module.RayEngine(**options)
        return engine
    raise ValueError(f"engine: expected one of {', '.join(ENGINES)} or an Engine object, got {name!r}")
