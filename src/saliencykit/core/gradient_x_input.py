"""Gradient x Input: the input gradient multiplied elementwise by the input.

Shrikumar, Greenside, Shcherbina and Kundaje 2016, "Not Just a Black Box:
Learning Important Features Through Propagating Activation Differences"
(arXiv 1605.01713); for a linear model it is each feature's contribution
``w * x`` to the output.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Steps, as_float_array
from .gradients import GradientSaliency

__all__ = ["GradientXInput"]


class GradientXInput(GradientSaliency):
    """Saliency mask = ``x * grad f(x)``, from one model call.

    ``call_model_function`` must answer ``INPUT_OUTPUT_GRADIENTS`` with the
    batch's exact shape. ``GetMask``, ``GetMaskBatch`` and ``GetSmoothedMask``
    (``batch_size`` noisy samples in one call) work as for
    :class:`~saliencykit.core.GradientSaliency`, at the same cost of one model
    input per mask; each sample's mask is that sample times its gradient. The
    mask has ``x_value``'s shape, in the widest of ``x_value``'s dtype, the
    gradient's and float32.
    """

    def _mask_steps(self, x_value: Any) -> Steps:
        x_value = as_float_array("x_value", x_value)
        gradient = yield from super()._mask_steps(x_value)
        dtype = np.result_type(x_value.dtype, gradient.dtype, np.float32)
        return x_value.astype(dtype, copy=False) * gradient.astype(dtype, copy=False)
