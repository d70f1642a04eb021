"""Small NumPy models with exact gradients, shared by the tests of saliencykit.core.

Each model is a ``call_model_function``: ``model(x_batch, call_model_args=None,
expected_keys=None)`` returns a dict with ``INPUT_OUTPUT_GRADIENTS`` (the exact
gradient of the model's scalar output) and ``OUTPUT_LAYER_VALUES`` (that output,
one value per example). Every model records the batches it received (and the
``call_model_args`` and ``expected_keys`` of each call), so tests can count calls
and check batch sizes. :class:`ConstantOutputModel` answers the same whatever the
input; :func:`never_called` fails the test if it is called at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from saliencykit.core import INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES


class RecordingModel:
    """Base class: records each call's batch, arguments and keys."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []
        self.call_model_args: list[Any] = []
        self.expected_keys: list[Any] = []

    @property
    def num_calls(self) -> int:
        return len(self.batches)

    @property
    def batch_sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]

    def value(self, x_batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def gradient(self, x_batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def record(self, x_value_batch, call_model_args, expected_keys) -> np.ndarray:
        """Records one call; returns the batch as an array."""
        x_value_batch = np.asarray(x_value_batch)
        self.batches.append(x_value_batch.copy())
        self.call_model_args.append(call_model_args)
        self.expected_keys.append(expected_keys)
        return x_value_batch

    def __call__(self, x_value_batch, call_model_args=None, expected_keys=None):
        x_value_batch = self.record(x_value_batch, call_model_args, expected_keys)
        x64 = x_value_batch.astype(np.float64)
        return {INPUT_OUTPUT_GRADIENTS: self.gradient(x64), OUTPUT_LAYER_VALUES: self.value(x64)}


def _per_example_sum(values: np.ndarray) -> np.ndarray:
    return values.reshape(len(values), -1).sum(axis=1)


class LinearModel(RecordingModel):
    """f(x) = sum(w * x) + c; gradient w everywhere."""

    def __init__(self, weights: np.ndarray, offset: float = 0.0) -> None:
        super().__init__()
        self.weights = np.asarray(weights, dtype=np.float64)
        self.offset = offset

    def value(self, x_batch):
        return _per_example_sum(self.weights * x_batch) + self.offset

    def gradient(self, x_batch):
        return np.broadcast_to(self.weights, x_batch.shape).copy()


class QuadraticModel(RecordingModel):
    """f(x) = sum(w * x**2); gradient 2 w x. With w = 1/2 the gradient is x itself."""

    def __init__(self, weights: np.ndarray | float = 0.5) -> None:
        super().__init__()
        self.weights = np.asarray(weights, dtype=np.float64)

    def value(self, x_batch):
        return _per_example_sum(np.broadcast_to(self.weights, x_batch.shape[1:]) * x_batch**2)

    def gradient(self, x_batch):
        return 2 * self.weights * x_batch


class TanhModel(RecordingModel):
    """f(x) = sum(tanh(w * x)); gradient w (1 - tanh(w x)**2). Smooth and nonlinear."""

    def __init__(self, weights: np.ndarray) -> None:
        super().__init__()
        self.weights = np.asarray(weights, dtype=np.float64)

    def value(self, x_batch):
        return _per_example_sum(np.tanh(self.weights * x_batch))

    def gradient(self, x_batch):
        return self.weights * (1 - np.tanh(self.weights * x_batch) ** 2)


class MLPModel(RecordingModel):
    """f(x) = v . tanh(W flatten(x) + b): a one-hidden-layer network, exact gradient."""

    def __init__(self, input_shape: tuple[int, ...], hidden: int = 16, seed: int = 0) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        n_in = int(np.prod(input_shape))
        self.input_shape = tuple(input_shape)
        self.w = rng.normal(size=(hidden, n_in)) / np.sqrt(n_in)
        self.b = rng.normal(size=hidden) * 0.1
        self.v = rng.normal(size=hidden)

    def _hidden(self, x_batch):
        return np.tanh(x_batch.reshape(len(x_batch), -1) @ self.w.T + self.b)

    def value(self, x_batch):
        return self._hidden(x_batch) @ self.v

    def gradient(self, x_batch):
        hidden = self._hidden(x_batch)
        return ((self.v * (1 - hidden**2)) @ self.w).reshape(x_batch.shape)


class ConstantOutputModel(RecordingModel):
    """Returns the same answer whatever the input, and records each call like the models above.

    For fixed layer values and gradients (Grad-CAM) or a malformed answer (for
    testing output checks). A dict answer is returned as a new dict each call,
    holding the same arrays, so that a caller that modifies the dict it gets
    changes nothing for the next call.
    """

    def __init__(self, output: Any) -> None:
        super().__init__()
        self.output = output

    def __call__(self, x_value_batch, call_model_args=None, expected_keys=None):
        self.record(x_value_batch, call_model_args, expected_keys)
        return dict(self.output) if isinstance(self.output, Mapping) else self.output


def never_called(x_value_batch, call_model_args=None, expected_keys=None):
    """A call_model_function for arguments that must be refused before any model call."""
    raise AssertionError("bad arguments must be refused before the first model call")
