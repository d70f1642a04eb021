"""saliencykit: saliency maps and their evaluation for any differentiable model.

A faster, batched, NumPy-2-ready reimplementation of PAIR's *saliency* library
with the same API: ``import saliencykit.core as saliency``.
"""

__version__ = "0.1.0"
