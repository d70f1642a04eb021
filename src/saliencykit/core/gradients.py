"""Vanilla gradients: the gradient of the explained output with respect to the input.

Simonyan, Vedaldi and Zisserman 2013, "Deep Inside Convolutional Networks"
(arXiv 1312.6034).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import (
    GUIDED_INPUT_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    CallModelFunction,
    CoreSaliency,
    Request,
    Steps,
    as_float_array,
    check_int,
)

__all__ = ["GradientSaliency", "GuidedBackprop"]


class GradientSaliency(CoreSaliency):
    """Saliency mask = the model's input gradient, from one model call.

    ``call_model_function`` must answer ``INPUT_OUTPUT_GRADIENTS`` with the
    batch's exact shape. With :meth:`GetSmoothedMask`, ``batch_size`` noisy
    samples go to the model in one call (``nsamples=25, batch_size=25`` is a
    single call); the reference makes one call per sample.
    """

    expected_keys = [INPUT_OUTPUT_GRADIENTS]
    smoothing_packs_samples = True

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        batch_size: int = 1,
    ) -> np.ndarray:
        """Returns the gradient of the output with respect to ``x_value``.

        Args:
          x_value: the un-batched input, any shape; integers become floats.
          call_model_function: answers ``INPUT_OUTPUT_GRADIENTS``.
          call_model_args: passed to ``call_model_function`` unchanged.
          batch_size: unused for a single input; see :meth:`GetSmoothedMask`.

        Returns:
          The gradient, ``x_value``'s shape.

        Raises:
          TypeError, ValueError: bad input, or a missing, misshapen or
            non-finite gradient.
        """
        batch_size = check_int("batch_size", batch_size)
        return self._run_one(
            self._mask_steps(x_value), x_value, call_model_function, call_model_args, batch_size
        )

    def n_model_inputs(self, x_shape: tuple[int, ...], *, batch_size: int = 1) -> int:
        """One model input: the gradient at ``x_value``.

        Raises:
          TypeError, ValueError: a bad ``batch_size``.
        """
        check_int("batch_size", batch_size)
        return 1

    def _mask_steps(self, x_value: Any) -> Steps:
        x_value = as_float_array("x_value", x_value)
        (key,) = self.expected_keys
        answer = yield Request(1, lambda start, stop: x_value[None], self.expected_keys)
        return answer[key][0]


class GuidedBackprop(GradientSaliency):
    """Guided Backpropagation (Springenberg et al. 2014, arXiv 1412.6806), any framework.

    The mask is the input gradient with every ReLU's backward pass letting
    through only positive gradients where its forward input was positive.
    ``call_model_function`` must answer ``GUIDED_INPUT_OUTPUT_GRADIENTS``: the
    adapters of :mod:`saliencykit.torch` and :mod:`saliencykit.keras` do. The
    reference offers this only for TF1 graphs. ``GetMask`` and
    ``GetSmoothedMask`` (with ``batch_size``) work as for
    :class:`GradientSaliency`.
    """

    expected_keys = [GUIDED_INPUT_OUTPUT_GRADIENTS]
