"""Framework adapters: their overhead, the PyTorch input layout, and saliencykit against Captum.

All three adapter benchmarks in one run and one table with PASS/FAIL per
target (the model is loaded once):

1. adapter overhead of the PyTorch, Keras and JAX adapters against raw
   framework code (sections ``torch``, ``jax``, ``keras``):
   ``bench_adapter_overhead.py``;
2. the PyTorch input memory layout (section ``layout``): ``bench_torch_layout.py``;
3. saliencykit against Captum (section ``captum``): ``bench_captum.py``.

Each of those files says what it measures and can run alone; timing, waiting
for a quiet machine and the table are described in ``_adapters_common.py``.

Usage::

    python benchmarks/bench_adapters.py [--repeat 5] [--quick] [--max-wait-s 600]
        [--sections torch,layout,captum,jax,keras]

``--quick`` (2 repeats, batch 8 instead of 32, batch 4 for the layout, short
samples) is a smoke test, not the measurement of the targets.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_adapter_overhead  # noqa: E402 (the benchmarks folder is not a package)
import bench_captum  # noqa: E402
import bench_torch_layout  # noqa: E402
from _adapters_common import run_benchmark  # noqa: E402

TITLE = "bench_adapters: adapter overhead, PyTorch input layout, saliencykit vs Captum"

#: In the order they run (JAX before Keras: see bench_adapter_overhead.SECTIONS).
SECTIONS = {
    "torch": bench_adapter_overhead.torch_section,
    "layout": bench_torch_layout.layout_section,
    "captum": bench_captum.captum_section,
    "jax": bench_adapter_overhead.jax_section,
    "keras": bench_adapter_overhead.keras_section,
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(
        "bench_adapters",
        TITLE,
        __doc__.split("\n\n")[0],
        SECTIONS,
        argv,
        model_sections=("torch", "layout", "captum"),
    )


if __name__ == "__main__":
    sys.exit(main())
