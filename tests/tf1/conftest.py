"""Fixtures of the saliencykit.tf1 tests: fresh TF1 graphs and sessions, closed after each test."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("tensorflow") is not None:
    from .nets import build_conv_net, build_tiny_relu_net

    @pytest.fixture
    def net():
        """The conv net of :func:`build_conv_net`, batch dimension None."""
        conv_net = build_conv_net()
        yield conv_net
        conv_net.close()

    @pytest.fixture
    def tiny_net():
        """The two-ReLU float64 net of :func:`build_tiny_relu_net`."""
        tiny = build_tiny_relu_net()
        yield tiny
        tiny.close()
