"""Quadrature rules for path integrals over alpha in [0, 1].

Each rule gives the points ``alphas`` at which the gradient is evaluated and
the ``weights`` that multiply those gradients; the weights sum to one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import MAX_MODEL_EVALUATIONS, check_int

#: The reference library's rule: ``linspace(0, 1, n)`` with equal weights 1/n.
LINSPACE = "linspace"
#: The quadrature rules ``integration_rule`` accepts; ``"linspace"`` is the reference's.
INTEGRATION_RULES = (
    LINSPACE,
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
)

__all__ = ["INTEGRATION_RULES", "LINSPACE", "check_integration_steps", "integration_points"]


def check_integration_steps(rule: str, n_steps: Any) -> int:
    """Returns ``n_steps`` as an ``int`` if ``rule`` is a known rule and ``n_steps`` suits it.

    Raises:
      TypeError: ``n_steps`` not an integer.
      ValueError: too few steps for ``rule`` (1, or 2 for ``"riemann_trapezoid"``),
        more than :data:`~saliencykit.core.base.MAX_MODEL_EVALUATIONS`, or an
        unknown rule.
    """
    n_steps = check_int(
        "x_steps",
        n_steps,
        minimum=2 if rule == "riemann_trapezoid" else 1,
        maximum=MAX_MODEL_EVALUATIONS,
        limit_reason="the most model evaluations one mask may ask for",
    )
    if rule not in INTEGRATION_RULES:
        raise ValueError(f"integration_rule must be one of {INTEGRATION_RULES}, got {rule!r}")
    return n_steps


def integration_points(rule: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(alphas, weights)``, both of length ``n_steps``, for ``rule``.

    Rules:
      - ``"linspace"`` (the reference): ``linspace(0, 1, n)``, weights ``1/n``.
        Both ends are included, so it is slightly biased; kept as the default
        for identical results.
      - ``"riemann_left"``: ``k/n`` for ``k = 0..n-1``, weights ``1/n``.
      - ``"riemann_right"``: ``k/n`` for ``k = 1..n``, weights ``1/n``.
      - ``"riemann_middle"``: ``(k + 1/2)/n``, weights ``1/n``.
      - ``"riemann_trapezoid"``: ``linspace(0, 1, n)``, trapezoid weights
        (``n >= 2``).
      - ``"gausslegendre"``: Gauss-Legendre nodes and weights mapped to [0, 1];
        exact for polynomial gradients of degree up to ``2n - 1``.

    Raises:
      ValueError: unknown rule, too few steps for it, or more than
        :data:`~saliencykit.core.base.MAX_MODEL_EVALUATIONS` (one model
        evaluation per point: larger counts are refused before any array is
        allocated).
      TypeError: ``n_steps`` not an integer.
    """
    n_steps = check_integration_steps(rule, n_steps)
    uniform = np.full(n_steps, 1.0 / n_steps)
    if rule == LINSPACE:
        return np.linspace(0, 1, n_steps), uniform
    if rule == "riemann_left":
        return np.arange(n_steps) / n_steps, uniform
    if rule == "riemann_right":
        return np.arange(1, n_steps + 1) / n_steps, uniform
    if rule == "riemann_middle":
        return (np.arange(n_steps) + 0.5) / n_steps, uniform
    if rule == "riemann_trapezoid":
        weights = np.full(n_steps, 1.0 / (n_steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0, 1, n_steps), weights
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)  # "gausslegendre"
    return (nodes + 1) / 2, weights / 2
