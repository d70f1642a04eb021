"""Integrated Gradients (Sundararajan, Taly and Yan 2017, arXiv 1703.01365).

Attribution = ``(x - baseline) * integral_0^1 grad f(baseline + alpha (x - baseline)) d alpha``,
the integral approximated by a quadrature rule (:mod:`.integration`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import (
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
    CallModelFunction,
    CoreSaliency,
    Request,
    Steps,
    as_float_array,
    baseline_like,
    scalar_outputs,
)
from .integration import LINSPACE, check_integration_steps, integration_points

__all__ = ["IntegratedGradients", "IntegratedGradientsOutput"]


@dataclass
class IntegratedGradientsOutput:
    """What :meth:`IntegratedGradients.GetMaskWithDetails` returns.

    Attributes:
      attribution: the IG mask, ``x_value``'s shape.
      output_at_input: f(x), from ``OUTPUT_LAYER_VALUES``.
      output_at_baseline: f(baseline).
      completeness_error: ``sum(attribution) - (f(x) - f(baseline))``; it tends
        to zero as ``x_steps`` grows (the completeness axiom of IG).
    """

    attribution: np.ndarray
    output_at_input: float
    output_at_baseline: float
    completeness_error: float


class IntegratedGradients(CoreSaliency):
    """Integrated Gradients on the straight line from a baseline to the input.

    ``call_model_function`` must answer ``INPUT_OUTPUT_GRADIENTS``; for
    :meth:`GetMaskWithDetails` it must also answer ``OUTPUT_LAYER_VALUES`` with
    one scalar (the explained output) per example.
    """

    expected_keys = [INPUT_OUTPUT_GRADIENTS]
    per_example_arguments = ("x_baseline",)

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        x_baseline: np.ndarray | None = None,
        x_steps: int = 25,
        batch_size: int = 1,
        integration_rule: str = LINSPACE,
    ) -> np.ndarray:
        """Returns the Integrated Gradients mask of ``x_value``.

        Args:
          x_value: the un-batched input, any shape; integers become floats (the
            reference wraps uint8 differences around: FIX). The path points
            handed to the model are in ``x_value``'s dtype; ``x - baseline``,
            the gradient average and the product are computed in float32 at
            least (float16 overflows from 65504 on: the reference returns
            ``inf``; FIX).
          call_model_function: answers ``INPUT_OUTPUT_GRADIENTS``.
          call_model_args: passed to every call unchanged.
          x_baseline: the path's start, ``x_value``'s shape; zeros if ``None``.
          x_steps: number of gradient evaluations, between 1 and
            :data:`~saliencykit.core.base.MAX_MODEL_EVALUATIONS` (the
            reference accepts 0 and divides by zero, and tries to allocate
            its path for any count: FIX).
          batch_size: the most path points sent to the model in one call
            (values above ``x_steps`` act as ``x_steps``).
          integration_rule: one of :data:`~saliencykit.core.integration.INTEGRATION_RULES`;
            the default ``"linspace"`` is the reference's rule.

        Returns:
          The attribution, ``x_value``'s shape, in the widest of the
          gradients' dtype, ``x_value``'s and float32 (float32 for float32 or
          float16 inputs and gradients, float64 when either is float64). For a
          linear model with weights ``w`` it is exactly ``(x - baseline) * w``
          under every rule.

        Raises:
          TypeError, ValueError: bad arguments, or a bad model answer.
        """
        steps = self._mask_steps(x_value, x_baseline, x_steps, integration_rule)
        return self._run_one(steps, x_value, call_model_function, call_model_args, batch_size)

    def _mask_steps(self, x_value: Any, x_baseline: Any, x_steps: int, integration_rule: str) -> Steps:
        x_value = as_float_array("x_value", x_value)
        x_baseline = baseline_like("x_baseline", x_baseline, x_value)
        alphas, weights = integration_points(integration_rule, x_steps)
        # float32 at least: a float16 difference (and the final product) overflows
        # from 65504 on. float32 and float64 inputs compute as the reference.
        compute_dtype = np.result_type(x_value.dtype, x_baseline.dtype, np.float32)
        x_diff = x_value.astype(compute_dtype, copy=False) - x_baseline.astype(compute_dtype, copy=False)
        expand = (slice(None),) + (None,) * x_value.ndim

        def path_points(start: int, stop: int) -> np.ndarray:
            points = x_baseline + alphas[start:stop][expand] * x_diff
            return points.astype(x_value.dtype, copy=False)

        average_gradient = np.zeros(x_value.shape, dtype=np.float64)
        dtypes = [np.result_type(x_value.dtype, np.float32)]  # and the gradients' dtype, if wider

        def add_gradients(start: int, stop: int, output: dict[str, np.ndarray]) -> None:
            gradients = output[INPUT_OUTPUT_GRADIENTS]
            # einsum, not tensordot: a BLAS call between model calls leaves BLAS
            # threads spinning into the next call (measured 2.4x slower model calls).
            average_gradient[...] += np.einsum("b,b...->...", weights[start:stop], gradients)
            dtypes[0] = np.result_type(gradients.dtype, x_value.dtype, np.float32)

        yield Request(len(alphas), path_points, self.expected_keys, add_gradients)
        return (x_diff * average_gradient).astype(dtypes[0])

    def n_model_inputs(
        self, x_shape: tuple[int, ...], *, x_steps: int = 25, integration_rule: str = LINSPACE, **other: Any
    ) -> int:
        """One model input per path point: ``x_steps`` (:meth:`GetMaskWithDetails` adds 2).

        ``**other``: :meth:`GetMask`'s other parameters, which do not change the count.

        Raises:
          TypeError, ValueError: a bad ``x_steps`` or ``integration_rule``.
        """
        return check_integration_steps(integration_rule, x_steps)

    def GetMaskWithDetails(  # noqa: N802
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        x_baseline: np.ndarray | None = None,
        **kwargs: Any,
    ) -> IntegratedGradientsOutput:
        """Returns the IG mask with f(x), f(baseline) and the completeness error.

        Makes the calls of :meth:`GetMask` plus calls on ``[baseline, x]``
        (one call unless ``batch_size`` is 1) asking only for
        ``OUTPUT_LAYER_VALUES``.

        Args:
          x_value, call_model_function, call_model_args, x_baseline, **kwargs:
            as for :meth:`GetMask`.

        Raises:
          ValueError: also when ``OUTPUT_LAYER_VALUES`` is missing or is not one
            scalar per example.
        """
        parameters, batch_size = self._mask_parameters(
            {**kwargs, "x_baseline": x_baseline}, "GetMaskWithDetails"
        )
        steps = self._details_steps(x_value, **parameters)
        return self._run_one(steps, x_value, call_model_function, call_model_args, batch_size)

    def _details_steps(self, x_value: Any, x_baseline: Any, x_steps: int, integration_rule: str) -> Steps:
        x_value = as_float_array("x_value", x_value)
        x_baseline = baseline_like("x_baseline", x_baseline, x_value)
        attribution = yield from self._mask_steps(x_value, x_baseline, x_steps, integration_rule)
        ends = np.stack([x_baseline, x_value])
        answer = yield Request(2, lambda start, stop: ends[start:stop], [OUTPUT_LAYER_VALUES])
        f_baseline, f_input = scalar_outputs(answer[OUTPUT_LAYER_VALUES])
        error = float(attribution.sum(dtype=np.float64) - (f_input - f_baseline))
        return IntegratedGradientsOutput(attribution, float(f_input), float(f_baseline), error)
