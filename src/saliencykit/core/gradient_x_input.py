"""Gradient x Input: the input gradient multiplied elementwise by the input.

Shrikumar, Greenside, Shcherbina and Kundaje 2016, "Not Just a Black Box:
Learning Important Features Through Propagating Activation Differences"
(arXiv 1605.01713); for a linear model it is each feature's contribution
``w * x`` to the output.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import (
    INPUT_OUTPUT_GRADIENTS,
    CallModelFunction,
    CoreSaliency,
    Request,
    Steps,
    as_float_array,
    check_int,
)

__all__ = ["GradientXInput"]


class GradientXInput(CoreSaliency):
    """Saliency mask = ``x * grad f(x)``, from one model call.

    ``call_model_function`` must answer ``INPUT_OUTPUT_GRADIENTS`` with the
    batch's exact shape. Like :class:`~saliencykit.core.GradientSaliency`,
    :meth:`GetSmoothedMask` sends ``batch_size`` noisy samples to the model
    in one call; each sample's mask is that sample times its gradient.
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
        """Returns ``x_value * gradient`` of the explained output at ``x_value``.

        Cost: one model input (one call).

        Args:
          x_value: the un-batched input, any shape; integers and booleans
            become floats (float32 where they fit).
          call_model_function: answers ``INPUT_OUTPUT_GRADIENTS``.
          call_model_args: passed to ``call_model_function`` unchanged.
          batch_size: unused for a single input; see :meth:`GetSmoothedMask`.

        Returns:
          The mask, ``x_value``'s shape, in the widest of ``x_value``'s dtype,
          the gradient's and float32.

        Raises:
          TypeError: a non-numeric ``x_value`` or a bad ``batch_size`` type.
          ValueError: an empty or non-finite ``x_value``, ``batch_size < 1``,
            or a missing, misshapen or non-finite gradient.
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
        answer = yield Request(1, lambda start, stop: x_value[None], self.expected_keys)
        gradient = answer[INPUT_OUTPUT_GRADIENTS][0]
        dtype = np.result_type(x_value.dtype, gradient.dtype, np.float32)
        return x_value.astype(dtype, copy=False) * gradient.astype(dtype, copy=False)
