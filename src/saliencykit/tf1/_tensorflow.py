"""The one place :mod:`saliencykit.tf1` imports TensorFlow.

TensorFlow is an optional extra: ``import saliencykit`` and
``import saliencykit.core`` never import it, and ``import saliencykit.tf1``
fails with an :class:`ImportError` that says how to install it.
"""

from __future__ import annotations

try:
    import tensorflow as tf
except ImportError as error:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "saliencykit.tf1 needs TensorFlow (TF1-style graphs run through tf.compat.v1), "
        "which is not installed: pip install saliencykit[tf1]"
    ) from error

#: ``tf.compat.v1``: placeholders, sessions, graph-mode gradients.
tf1 = tf.compat.v1

__all__ = ["tf", "tf1"]
