"""Tests of plot_pic_curves."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from saliencykit import metrics as pic  # noqa: E402


def aggregate(height: float) -> pic.AggregateMetricResult:
    curve_x = np.linspace(0.0, 1.0, 11)
    curve_y = np.minimum(1.0, curve_x * height)
    return pic.AggregateMetricResult(curve_x, curve_y, float(np.trapezoid(curve_y, curve_x)))


def test_several_curves_with_their_auc_in_the_legend(tmp_path) -> None:
    curves = {"IG": aggregate(3.0), "Random": aggregate(1.0)}
    ax = pic.plot_pic_curves(curves, title="SIC")
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == [f"IG, AUC={curves['IG'].auc:.3f}", f"Random, AUC={curves['Random'].auc:.3f}"]
    assert ax.get_title() == "SIC" and len(ax.get_lines()) == 2
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), curves["IG"].curve_y)
    ax.figure.savefig(tmp_path / "sic.png")
    assert (tmp_path / "sic.png").stat().st_size > 1000
    plt.close(ax.figure)


def test_a_single_result_on_given_axes() -> None:
    figure, ax = plt.subplots()
    assert pic.plot_pic_curves(aggregate(2.0), ax=ax) is ax
    assert ax.get_legend().get_texts()[0].get_text() == "AUC=0.750"
    plt.close(figure)


def test_bad_curves() -> None:
    with pytest.raises(ValueError, match="at least one"):
        pic.plot_pic_curves({})
    broken = pic.AggregateMetricResult([0.0, 1.0], [0.0, 0.5, 1.0], 0.5)
    with pytest.raises(ValueError, match="curve_x has shape"):
        pic.plot_pic_curves({"broken": broken})
    plt.close("all")
