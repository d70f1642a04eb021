"""Shared pieces of the adapter benchmarks: result rows, the report, the command line.

The benchmarks:

- ``bench_adapter_overhead.py``: ``make_call_model_function`` of the PyTorch,
  Keras and JAX adapters against the same computation written by hand
  (sections ``torch``, ``jax``, ``keras``);
- ``bench_torch_layout.py``: which memory layout the PyTorch adapter feeds the
  model, and whether it is the faster one (section ``layout``);
- ``bench_captum.py``: saliencykit against Captum on the same model (section ``captum``);
- ``bench_adapters.py``: all of them in one run and one table (the model is loaded once).

Every one prints the table of :func:`print_report` with PASS/FAIL per target and
exits with status 1 when a target fails.

Timing: every figure is the median over ``--repeat`` samples; within a
comparison the variants are interleaved (their order rotates every repeat) so
that they share the machine's load. A sample is enough back-to-back calls to
last at least ``--min-sample-s``; the time shown is per call. The 1-minute load
average is printed at the start of every section; ``--max-wait-s`` first waits
(polling every 30 s) until it drops below ``--load-threshold``. Verdicts use
the ratio of medians; the "paired" column (median of the per-repeat ratios,
samples taken next to each other in time) is a cross-check that is less
sensitive to load changing during the run, and "noisy" marks a comparison whose
samples spread by more than 10%, too much to resolve a 5% target. On this
2-core machine PyTorch's two OpenMP threads slow down by 10-100x whenever
another process competes for the cores, so run it on a quiet machine.

``--quick`` (2 repeats, batch 8 instead of 32, batch 4 for the layout, short
samples) is a smoke test, not the measurement of the targets.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402 (the benchmarks folder is not a package)
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_OUTPUT_GRADIENTS,
    NOISY_SPREAD,
    Samples,
    environment_header,
    load_image,
    load_model,
    load_text,
    noise_flag,
    paired_ratio,
    verdict,
    wait_for_quiet_machine,
)

GRADIENT_KEYS = [INPUT_OUTPUT_GRADIENTS]
#: Attributions "agree" when ||ours - theirs|| / ||theirs|| is at most this, Captum being run on
#: the memory layout ours feeds the model (the layout alone changes the float32 round-off, and
#: with 2 threads Captum's own NCHW and channels-last vanilla gradients differ by ~2.5e-3).
#: Round-off is amplified by the ReLU6 kinks of the 17 layers: IG path points that differ by one
#: float32 ulp (alpha * x computed in float64 then rounded, or in float32) already give ~7e-4.
AGREEMENT_L2_TOLERANCE = 2e-3
OVERHEAD_TARGET = 0.05
CAPTUM_RATIO_TARGET = 1.0
TORCH_THREADS = 2
LAYOUT_STEM = "_conv_stem"
FRAMEWORK_ORDER = ("PyTorch", "Keras", "JAX")


# --------------------------------------------------------------------------
# PyTorch helpers shared by the layout and Captum benchmarks.
# --------------------------------------------------------------------------


def normalise(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of an N x C x H x W batch in [0, 1]."""
    return (images - IMAGENET_MEAN) / IMAGENET_STD


def layout_name(tensor: torch.Tensor) -> str:
    """``NCHW-contiguous``, ``channels-last``, or the strides of a rank-4 tensor."""
    if tensor.ndim != 4:
        return f"rank {tensor.ndim}"
    if tensor.is_contiguous():
        return "NCHW-contiguous"
    if tensor.is_contiguous(memory_format=torch.channels_last):
        return "channels-last"
    return f"strides {tuple(tensor.stride())}"


def stem_input_layout(model: nn.Module, run: Callable[[], Any]) -> str:
    """The memory layout of the tensor reaching the model's first convolution during ``run()``."""
    seen: list[str] = []
    stem = dict(model.named_modules()).get(LAYOUT_STEM)
    if stem is None:
        return "?"
    handle = stem.register_forward_pre_hook(lambda module, inputs: seen.append(layout_name(inputs[0])))
    try:
        run()
    finally:
        handle.remove()
    return seen[0] if seen else "?"


# --------------------------------------------------------------------------
# Results.
# --------------------------------------------------------------------------


@dataclass
class OverheadRow:
    framework: str
    model: str
    batch: int
    raw: Samples
    adapter: Samples
    max_error: float
    trivial_raw: Samples
    trivial_adapter: Samples
    extra: dict[str, Samples] = field(default_factory=dict)

    @property
    def overhead(self) -> float:
        return (self.adapter.median_s - self.raw.median_s) / self.raw.median_s

    @property
    def adapter_cost_s(self) -> float:
        """What the adapter adds to one call, measured on the trivial model with the same input."""
        return self.trivial_adapter.median_s - self.trivial_raw.median_s

    @property
    def estimated_overhead(self) -> float:
        """:attr:`adapter_cost_s` as a fraction of the real model's raw time."""
        return self.adapter_cost_s / self.raw.median_s

    @property
    def passed(self) -> bool:
        return self.overhead <= OVERHEAD_TARGET


@dataclass
class LayoutResult:
    batch: int
    timings: dict[str, Samples]
    adapter_layout: str
    faster_layout: str

    @property
    def passed(self) -> bool:
        return self.adapter_layout == self.faster_layout


@dataclass
class CaptumRow:
    method: str
    ours: Samples
    captum_nchw: Samples
    captum_channels_last: Samples
    ours_in_model_fraction: float
    agreement: str
    agreement_passed: bool | None
    extra: dict[str, Samples] = field(default_factory=dict)

    def ratio(self, captum: Samples) -> float:
        return self.ours.median_s / captum.median_s

    @property
    def passed(self) -> bool:
        return self.ratio(self.captum_nchw) <= CAPTUM_RATIO_TARGET

    @property
    def passed_channels_last(self) -> bool:
        return self.ratio(self.captum_channels_last) <= CAPTUM_RATIO_TARGET


@dataclass
class Report:
    overhead: list[OverheadRow] = field(default_factory=list)
    layout: LayoutResult | None = None
    captum: list[CaptumRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    section_loads: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# The table.
# --------------------------------------------------------------------------


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f}"


def print_overhead(rows: list[OverheadRow], verdicts: list[tuple[str, str]]) -> None:
    """Part 1 of the table: adapter against raw framework code."""
    print()
    print(f"1. Adapter overhead vs raw framework forward+backward (target <= {OVERHEAD_TARGET:.0%})")
    print(
        "   overhead = (median adapter - median raw) / median raw; paired = median of per-repeat ratios - 1"
    )
    print(
        "   adapter cost = adapter - raw per call on a trivial model (global average pool, dense, tanh) "
        "with the same input; est. = that cost / raw"
    )
    print(
        f"   {'framework':10} {'model':22} {'batch':>5} {'raw ms':>9} {'adapter ms':>10} "
        f"{'overhead':>9} {'paired':>8} {'spread':>7} {'adapter cost':>12} {'est.':>6} "
        f"{'max rel diff':>12}  result"
    )
    for row in sorted(rows, key=lambda row: FRAMEWORK_ORDER.index(row.framework)):
        result = verdict(row.passed)
        print(
            f"   {row.framework:10} {row.model:22} {row.batch:5d} {milliseconds(row.raw.median_s)} "
            f"{milliseconds(row.adapter.median_s):>10} {row.overhead:+9.1%} "
            f"{paired_ratio(row.adapter, row.raw) - 1:+8.1%} "
            f"{max(row.raw.spread, row.adapter.spread):7.0%} "
            f"{row.adapter_cost_s * 1e6:9.0f} us {row.estimated_overhead:+6.1%} "
            f"{row.max_error:12.1e}  {result} "
            f"{noise_flag(row.raw, row.adapter)}".rstrip()
        )
        for name, samples in row.extra.items():
            print(
                f"   {'':10} {'':22} {'':5} {'':9} {milliseconds(samples.median_s):>10} "
                f"{(samples.median_s - row.raw.median_s) / row.raw.median_s:+9.1%} "
                f"{paired_ratio(samples, row.raw) - 1:+8.1%}  <- {name}"
            )
        verdicts.append((f"1. overhead {row.framework} batch {row.batch}", result))
        verdicts.append(
            (
                f"1. overhead {row.framework} batch {row.batch}, trivial-model estimate",
                verdict(row.estimated_overhead <= OVERHEAD_TARGET),
            )
        )


def print_layout(layout: LayoutResult, verdicts: list[tuple[str, str]]) -> None:
    """Part 2 of the table: the PyTorch memory layouts."""
    print()
    print(f"2. EfficientNet-Lite0 forward+backward at batch {layout.batch}, per image")
    for name, samples in layout.timings.items():
        print(
            f"   {name:45} {milliseconds(samples.median_s / layout.batch)} ms/image  "
            f"(spread {samples.spread:.0%})"
        )
    result = verdict(layout.passed)
    print(
        f"   faster layout: {layout.faster_layout}; the adapter feeds the model: {layout.adapter_layout}"
        f"  -> {result}"
    )
    verdicts.append(("2. adapter uses the faster layout", result))


def print_captum(rows: list[CaptumRow], verdicts: list[tuple[str, str]]) -> None:
    """Part 3 of the table: saliencykit against Captum, times and agreement."""
    print()
    print(f"3. saliencykit vs Captum, EfficientNet-Lite0, 224x224, torch threads {TORCH_THREADS}")
    print("   (ratio = ours / captum; target <= 1.0; 'in model' = our share inside call_model_function)")
    print(
        f"   {'method':22} {'ours ms':>9} {'captum NCHW':>11} {'ratio':>6} {'paired':>6} {'':4} "
        f"{'captum CL':>9} {'ratio':>6} {'paired':>6} {'':4} {'in model':>8} {'spread':>6}"
    )
    for row in rows:
        result = verdict(row.passed)
        result_cl = verdict(row.passed_channels_last)
        nchw, channels_last = row.captum_nchw, row.captum_channels_last
        print(
            f"   {row.method:22} {milliseconds(row.ours.median_s)} "
            f"{milliseconds(nchw.median_s):>11} {row.ratio(nchw):6.2f} "
            f"{paired_ratio(row.ours, nchw):6.2f} {result:4} "
            f"{milliseconds(channels_last.median_s)} {row.ratio(channels_last):6.2f} "
            f"{paired_ratio(row.ours, channels_last):6.2f} {result_cl:4} "
            f"{row.ours_in_model_fraction:8.1%} "
            f"{max(row.ours.spread, nchw.spread, channels_last.spread):6.0%} "
            f"{noise_flag(row.ours, nchw, channels_last)}".rstrip()
        )
        for name, samples in row.extra.items():
            ratio = row.ratio(samples)
            print(
                f"   {'':22} {name}: {milliseconds(samples.median_s)} ms, ratio {ratio:.2f} "
                f"(paired {paired_ratio(row.ours, samples):.2f}) {verdict(ratio <= CAPTUM_RATIO_TARGET)} "
                "(real guided backprop in Captum)"
            )
        verdicts.append((f"3. {row.method} vs captum (NCHW input)", result))
        verdicts.append((f"3. {row.method} vs captum (channels-last input)", result_cl))
    print(
        "   agreement (rel. L2 = ||ours - theirs|| / ||theirs||; "
        f"agree when <= {AGREEMENT_L2_TOLERANCE:.0e}):"
    )
    for row in rows:
        result = "info" if row.agreement_passed is None else verdict(row.agreement_passed)
        print(f"   - {row.method} [{result}]: {row.agreement}")
        if row.agreement_passed is not None:
            verdicts.append((f"3. {row.method}: results agree with captum", result))


def print_report(
    report: Report, title: str, header: list[str], wait_text: str, quick: bool
) -> list[tuple[str, str]]:
    """Prints the table of whatever parts ``report`` holds; returns ``(target, PASS/FAIL)`` pairs."""
    verdicts: list[tuple[str, str]] = []
    print()
    print("=" * 110)
    print(title)
    for line in header:
        print(line)
    print(f"wait    : {wait_text}")
    for line in report.section_loads:
        print(f"load    : {line}")
    if quick:
        print("QUICK RUN (smoke test: fewer repeats, smaller batches) -- not the measurement of the targets")
    print("=" * 110)

    if report.overhead:
        print_overhead(report.overhead, verdicts)
    if report.layout is not None:
        print_layout(report.layout, verdicts)
    if report.captum:
        print_captum(report.captum, verdicts)

    if report.notes:
        print()
        print("notes:")
        for note in report.notes:
            print(f" - {note}")

    print()
    print(
        f"'noisy': a variant's samples spread by more than {NOISY_SPREAD:.0%} (max - min over median); "
        "a verdict within that spread of its target is not resolved by this run."
    )
    print("summary:")
    for name, result in verdicts:
        print(f"  {result}  {name}")
    print(f"end     : {load_text()}")
    return verdicts


# --------------------------------------------------------------------------
# The command line and the run.
# --------------------------------------------------------------------------


@dataclass
class Context:
    """What a section works with: the options, the image, the model, and the report it adds to."""

    arguments: argparse.Namespace
    image: np.ndarray
    report: Report = field(default_factory=Report)

    @functools.cached_property
    def model(self) -> nn.Module:
        """The pretrained EfficientNet-Lite0, loaded on first use."""
        return load_model()

    @property
    def repeats(self) -> int:
        return self.arguments.repeat

    @property
    def min_sample_s(self) -> float:
        return self.arguments.min_sample_s

    @property
    def batch_sizes(self) -> tuple[int, int]:
        """The two batch sizes of the overhead sections: 1 and 32 (8 with ``--quick``)."""
        return (1, 8 if self.arguments.quick else 32)

    @property
    def layout_batch(self) -> int:
        """The batch of the layout section: 20 (4 with ``--quick``)."""
        return 4 if self.arguments.quick else 20


#: A section: runs its measurements and adds them to ``context.report``.
Section = Callable[[Context], None]


def parse_arguments(
    description: str, sections: Sequence[str], argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """The options every adapter benchmark takes; ``--sections`` where it has more than one."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeat", type=int, default=None, help="timed samples per variant (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 repeats, small batches")
    parser.add_argument("--min-sample-s", type=float, default=None, help="shortest sample (default 0.3 s)")
    parser.add_argument(
        "--max-wait-s", type=float, default=0.0, help="wait up to this long for a quiet machine first"
    )
    parser.add_argument("--load-threshold", type=float, default=1.0, help="1-minute load average to wait for")
    if len(sections) > 1:
        parser.add_argument(
            "--sections", default=",".join(sections), help=f"comma-separated subset of {','.join(sections)}"
        )
    arguments = parser.parse_args(argv)
    if arguments.repeat is None:
        arguments.repeat = 2 if arguments.quick else 5
    if arguments.min_sample_s is None:
        arguments.min_sample_s = 0.1 if arguments.quick else 0.3
    if len(sections) > 1:
        arguments.sections = [name.strip() for name in arguments.sections.split(",") if name.strip()]
        unknown = sorted(set(arguments.sections) - set(sections))
        if unknown:
            parser.error(f"unknown sections {unknown}; choose from {tuple(sections)}")
    else:
        arguments.sections = list(sections)
    return arguments


def run_benchmark(
    name: str,
    title: str,
    description: str,
    sections: Mapping[str, Section],
    argv: Sequence[str] | None = None,
    model_sections: Sequence[str] = (),
) -> int:
    """Parses the options, runs the chosen ``sections`` in their order, prints the table.

    Args:
      name: the script's name, printed first with the load average.
      title: the table's title line.
      description: the ``--help`` text.
      sections: section name -> the function that runs it, in the order they run.
      argv: the options (default: the command line).
      model_sections: the sections that use the pretrained model; it is loaded before the
        wait for a quiet machine when one of them runs.

    Returns:
      The exit status: 0 when every target passes, else 1.
    """
    arguments = parse_arguments(description, list(sections), argv)
    start_load = load_text()
    print(f"{name}: {start_load} at start", flush=True)
    torch.set_num_threads(TORCH_THREADS)
    context = Context(arguments, load_image())
    if set(model_sections) & set(arguments.sections):
        context.model  # noqa: B018 (loaded now, not inside the first section)
    wait_text = wait_for_quiet_machine(arguments.load_threshold, arguments.max_wait_s)
    print(f"  {wait_text}", flush=True)
    header = environment_header()
    header.insert(0, f"start   : {start_load} (before any wait)")

    for section_name, section in sections.items():
        if section_name in arguments.sections:
            context.report.section_loads.append(f"{section_name:7} section starts with {load_text()}")
            print(f"section {section_name} ({load_text()})", flush=True)
            section(context)

    verdicts = print_report(context.report, title, header, wait_text, arguments.quick)
    return 0 if all(result == "PASS" for _, result in verdicts) else 1
