"""Expected Gradients: Integrated Gradients averaged over baselines drawn from a reference set.

Erion, Janizek, Sturmfels, Lundberg and Lee 2021, "Improving performance of
deep learning models with axiomatic attribution priors and expected
gradients", Nature Machine Intelligence 3, 620-631 (arXiv 1906.10670).

``EG(x) = E_{x' ~ D, alpha ~ U(0, 1)} [(x - x') * grad f(x' + alpha (x - x'))]``, estimated
with ``n_samples`` draws of a reference ``x'`` (uniformly from the rows of
``references``) and a point ``alpha`` on its path: one gradient per draw. For a
linear model with weights ``w`` it is ``(x - mean of the drawn references) *
w``, whose expectation is ``(x - mean(references)) * w``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arguments import make_generator
from .base import (
    INPUT_OUTPUT_GRADIENTS,
    CallModelFunction,
    CoreSaliency,
    Request,
    Steps,
    as_float_array,
    check_evaluation_count,
)

__all__ = ["ExpectedGradients"]


def _draws(seed: Any, n_references: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's reference index and path point ``alpha`` (see :meth:`ExpectedGradients.GetMask`)."""
    generator = make_generator(seed)
    if generator is None:
        return np.random.choice(n_references, n_samples), np.random.uniform(0.0, 1.0, n_samples)
    return generator.integers(0, n_references, n_samples), generator.random(n_samples)


class ExpectedGradients(CoreSaliency):
    """Expected Gradients (Erion et al. 2021): IG with random baselines and random path points.

    ``call_model_function`` must answer ``INPUT_OUTPUT_GRADIENTS``. The
    references are the baseline distribution (e.g. a sample of training
    images), ``[M, *x_shape]``. With :meth:`GetMaskBatch` they are either
    that (the same set for every example) or ``[N, M, *x_shape]`` (one set
    per example).
    """

    expected_keys = [INPUT_OUTPUT_GRADIENTS]
    per_example_arguments = ("references",)

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        references: np.ndarray | None = None,
        n_samples: int = 50,
        seed: int | np.random.Generator | None = None,
        batch_size: int = 1,
    ) -> np.ndarray:
        """Returns the Expected Gradients mask of ``x_value``.

        Sample ``k`` draws a reference ``r_k = references[i_k]`` and ``alpha_k``
        uniform in [0, 1), evaluates the gradient at ``alpha_k * x + (1 -
        alpha_k) * r_k`` and contributes ``(x - r_k) * gradient``; the mask is
        the mean over the samples. Cost: ``n_samples`` model inputs, in calls
        of at most ``batch_size``.

        Args:
          x_value: the un-batched input, any shape; integers become floats.
          call_model_function: answers ``INPUT_OUTPUT_GRADIENTS``.
          call_model_args: passed to every call unchanged.
          references: the baseline distribution, ``[M, *x_value.shape]``, M >= 1
            (required; a single baseline is ``baseline[None]``).
          n_samples: number of draws (gradient evaluations), between 1 and
            :data:`~saliencykit.core.base.MAX_MODEL_EVALUATIONS`.
          seed: where the draws come from. ``None``: NumPy's global random
            state, ``i = np.random.choice(M, n_samples)`` then ``alpha =
            np.random.uniform(0, 1, n_samples)``, the draws and order of
            Captum's ``GradientShap`` (with ``stdevs=0``) on one input, so the
            same ``np.random.seed`` gives both the same samples; an ``int`` or a
            ``np.random.Generator`` ``g`` (``np.random.default_rng(seed)`` for an
            int): ``i = g.integers(0, M, n_samples)`` then ``alpha =
            g.random(n_samples)``. In :meth:`GetMaskBatch` every example draws
            when it starts, in order: an int gives each example the same draws
            (its :meth:`GetMask`), a Generator the next ones. In
            :meth:`GetSmoothedMask` with a seed, the draws come from the noise's
            generator.
          batch_size: the most path points sent to the model in one call.

        Returns:
          The attribution, ``x_value``'s shape, in the widest of the
          gradients' dtype, ``x_value``'s and float32. The path points are
          computed in the widest of ``x_value``'s dtype, ``references``' and
          float32 and handed to the model in ``x_value``'s dtype.

        Raises:
          TypeError: a non-numeric ``x_value`` or ``references``, or a bad type
            of ``n_samples``, ``seed`` or ``batch_size``.
          ValueError: ``references`` missing or not ``[M, *x_value.shape]``,
            non-finite inputs, ``n_samples`` or ``batch_size`` out of range, or a
            bad model answer.
        """
        steps = self._mask_steps(x_value, references, n_samples, seed)
        return self._run_one(steps, x_value, call_model_function, call_model_args, batch_size)

    def n_model_inputs(self, x_shape: tuple[int, ...], *, n_samples: int = 50, **other: Any) -> int:
        """One model input per draw: ``n_samples``.

        ``**other``: :meth:`GetMask`'s other parameters, which do not change the count.

        Raises:
          TypeError, ValueError: a bad ``n_samples``.
        """
        return check_evaluation_count("n_samples", n_samples)

    def _split_argument(
        self, name: str, value: Any, n_examples: int, x_shape: tuple[int, ...]
    ) -> list[Any] | None:
        """``references`` of ``[N, M, *x_shape]`` is one set per example; anything else is for all."""
        if name == "references" and value is not None:
            shape = np.shape(value)
            if len(shape) == len(x_shape) + 2 and shape[0] == n_examples and shape[2:] == tuple(x_shape):
                return list(np.asarray(value))
            return None  # one set for every example, checked by _mask_steps
        return super()._split_argument(name, value, n_examples, x_shape)

    def _mask_steps(self, x_value: Any, references: Any, n_samples: int, seed: Any) -> Steps:
        x_value = as_float_array("x_value", x_value)
        expected = f"[M, *x_value.shape] = [M, {', '.join(map(str, x_value.shape))}]"
        if references is None:
            raise ValueError(f"references must be given: the baseline distribution, an array {expected}")
        references = as_float_array("references", references)
        if references.shape[1:] != x_value.shape or references.ndim != x_value.ndim + 1:
            raise ValueError(
                f"references must have the shape {expected} (or [N, M, ...] in GetMaskBatch, one set "
                f"per example), got {references.shape}"
            )
        n_samples = check_evaluation_count("n_samples", n_samples)
        indices, alphas = _draws(seed, len(references), n_samples)
        compute_dtype = np.result_type(x_value.dtype, references.dtype, np.float32)
        x = x_value.astype(compute_dtype, copy=False)
        references = references.astype(compute_dtype, copy=False)
        alphas = alphas.astype(compute_dtype)[(slice(None),) + (None,) * x.ndim]
        complements = 1 - alphas

        def path_points(start: int, stop: int) -> np.ndarray:
            # Captum's arithmetic, so that the same draws give the model the same inputs.
            points = alphas[start:stop] * x + complements[start:stop] * references[indices[start:stop]]
            return points.astype(x_value.dtype, copy=False)

        total = np.zeros(x.shape, dtype=np.float64)
        dtypes = [np.result_type(x_value.dtype, np.float32)]  # and the gradients' dtype, if wider

        def add_gradients(start: int, stop: int, output: dict[str, np.ndarray]) -> None:
            gradients = output[INPUT_OUTPUT_GRADIENTS]
            differences = x - references[indices[start:stop]]
            total[...] += (differences * gradients).sum(axis=0, dtype=np.float64)
            dtypes[0] = np.result_type(gradients.dtype, x_value.dtype, np.float32)

        yield Request(n_samples, path_points, self.expected_keys, add_gradients)
        return (total / n_samples).astype(dtypes[0])
