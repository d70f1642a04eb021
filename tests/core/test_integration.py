"""Tests of the quadrature rules in saliencykit.core.integration."""

from __future__ import annotations

import numpy as np
import pytest

from saliencykit.core import INTEGRATION_RULES
from saliencykit.core.integration import LINSPACE, integration_points

ALL_RULES = list(INTEGRATION_RULES)


def _integrate(rule: str, n: int, f) -> float:
    alphas, weights = integration_points(rule, n)
    return float(np.dot(weights, f(alphas)))


def test_rules_listed() -> None:
    assert LINSPACE == "linspace"
    assert set(ALL_RULES) == {
        "linspace",
        "riemann_left",
        "riemann_right",
        "riemann_middle",
        "riemann_trapezoid",
        "gausslegendre",
    }


@pytest.mark.parametrize("rule", ALL_RULES)
@pytest.mark.parametrize("n", [2, 3, 10, 25, 200])
def test_points_and_weights(rule: str, n: int) -> None:
    alphas, weights = integration_points(rule, n)
    assert alphas.shape == weights.shape == (n,)
    assert weights.sum() == pytest.approx(1.0, abs=1e-13)
    assert np.all(weights > 0)
    assert np.all((alphas >= 0) & (alphas <= 1))
    assert np.all(np.diff(alphas) > 0)


def test_linspace_is_the_reference_rule() -> None:
    alphas, weights = integration_points("linspace", 25)
    np.testing.assert_array_equal(alphas, np.linspace(0, 1, 25))
    np.testing.assert_allclose(weights, 1 / 25)


def test_explicit_points_of_each_rule() -> None:
    np.testing.assert_allclose(integration_points("riemann_left", 4)[0], [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(integration_points("riemann_right", 4)[0], [0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(integration_points("riemann_middle", 4)[0], [0.125, 0.375, 0.625, 0.875])
    alphas, weights = integration_points("riemann_trapezoid", 5)
    np.testing.assert_allclose(alphas, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(weights, [0.125, 0.25, 0.25, 0.25, 0.125])
    alphas, weights = integration_points("gausslegendre", 2)
    np.testing.assert_allclose(alphas, [0.5 - 0.5 / np.sqrt(3), 0.5 + 0.5 / np.sqrt(3)])
    np.testing.assert_allclose(weights, [0.5, 0.5])


@pytest.mark.parametrize("rule", ALL_RULES)
def test_one_step_where_allowed(rule: str) -> None:
    if rule == "riemann_trapezoid":
        with pytest.raises(ValueError, match="x_steps"):
            integration_points(rule, 1)
        return
    alphas, weights = integration_points(rule, 1)
    assert weights.tolist() == [1.0]
    expected = {"linspace": 0.0, "riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    assert alphas[0] == pytest.approx(expected.get(rule, 0.5))


@pytest.mark.parametrize("rule", ALL_RULES)
def test_every_rule_integrates_constants_and_linear_functions_exactly(rule: str) -> None:
    for n in (2, 7, 30):
        assert _integrate(rule, n, lambda t: 3.0 + 0 * t) == pytest.approx(3.0, abs=1e-13)
        if rule in ("riemann_left", "riemann_right"):
            continue  # first order: not exact for t
        assert _integrate(rule, n, lambda t: 2 * t - 0.25) == pytest.approx(0.75, abs=1e-13)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_gausslegendre_is_exact_to_degree_2n_minus_1(n: int) -> None:
    for degree in range(2 * n):
        assert _integrate("gausslegendre", n, lambda t, k=degree: t**k) == pytest.approx(
            1 / (degree + 1), rel=1e-12
        )
    # ... and not beyond: degree 2n is integrated with an error.
    error = _integrate("gausslegendre", n, lambda t: t ** (2 * n)) - 1 / (2 * n + 1)
    assert abs(error) > 1e-10


@pytest.mark.parametrize(
    ("rule", "order"),
    [
        ("linspace", 1),
        ("riemann_left", 1),
        ("riemann_right", 1),
        ("riemann_middle", 2),
        ("riemann_trapezoid", 2),
    ],
)
def test_error_order_of_uniform_rules(rule: str, order: int) -> None:
    """Doubling the steps divides the error on a smooth integrand by about 2**order."""

    def f(t):
        return np.exp(t) * np.cos(3 * t)

    exact = (np.exp(1) * (np.cos(3) + 3 * np.sin(3)) - 1) / 10
    errors = [abs(_integrate(rule, n, f) - exact) for n in (20, 40, 80)]
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    for ratio in ratios:
        assert 2**order * 0.8 < ratio < 2**order * 1.25


def test_known_errors_on_t_squared() -> None:
    """Closed forms of each rule's error on t^2: a precise check of points and weights."""
    for n in (3, 10, 41):
        third = 1 / 3
        assert _integrate("linspace", n, np.square) - third == pytest.approx(1 / (6 * (n - 1)))
        assert _integrate("riemann_left", n, np.square) - third == pytest.approx(
            -1 / (2 * n) + 1 / (6 * n**2)
        )
        assert _integrate("riemann_right", n, np.square) - third == pytest.approx(
            1 / (2 * n) + 1 / (6 * n**2)
        )
        assert _integrate("riemann_middle", n, np.square) - third == pytest.approx(-1 / (12 * n**2))
        assert _integrate("riemann_trapezoid", n, np.square) - third == pytest.approx(1 / (6 * (n - 1) ** 2))


def test_gausslegendre_beats_uniform_rules_on_smooth_integrand() -> None:
    def f(t):
        return np.tanh(3 * t - 1)

    exact = (np.log(np.cosh(2.0)) - np.log(np.cosh(-1.0))) / 3
    gauss_error = abs(_integrate("gausslegendre", 10, f) - exact)
    assert gauss_error < 1e-6
    for rule in ALL_RULES:
        if rule != "gausslegendre":
            assert abs(_integrate(rule, 10, f) - exact) > 100 * gauss_error


@pytest.mark.parametrize("rule", ["simpson", "", "Linspace", None])
def test_unknown_rule(rule) -> None:
    with pytest.raises(ValueError, match="integration_rule"):
        integration_points(rule, 5)


@pytest.mark.parametrize("rule", ALL_RULES)
@pytest.mark.parametrize(
    ("n", "error"), [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_bad_number_of_steps(rule: str, n, error) -> None:
    with pytest.raises(error, match="x_steps"):
        integration_points(rule, n)
