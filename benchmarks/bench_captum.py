"""saliencykit against Captum on the pretrained EfficientNet-Lite0: times and agreement.

Same model, same image (``skimage.data.chelsea()`` at 224 x 224, class 285),
``torch.set_num_threads(2)``: vanilla gradients (``captum.attr.Saliency(abs=False)``
/ ``GradientSaliency``), Integrated Gradients (``n_steps=25, internal_batch_size=25``,
Gauss-Legendre, Captum's default, with ``x_steps=25, batch_size=25,
integration_rule="gausslegendre"``: the same 25 gradients in one batch),
SmoothGrad (``NoiseTunnel(Saliency)``, 25 samples in one batch of 25, stdev
``0.15 * (max - min)``, against ``GetSmoothedMask(nsamples=25, batch_size=25,
magnitude=False, seed=0)``) and Guided Backprop. Captum gets what a typical
Captum user gives it: an N x C x H x W contiguous tensor and a wrapper model
that normalises; for fairness it is also timed on a channels-last tensor.
saliencykit goes through the PyTorch adapter with the H x W x C image. Target:
ours / Captum <= 1.0 for every method. The results are compared too (vanilla
gradients and IG must agree to float32 round-off after the layout change;
SmoothGrad uses different noise, so only the correlation of the maps is shown).

EfficientNet-Lite0's activations are ``nn.ReLU6`` modules. Captum's
``GuidedBackprop`` hooks only ``isinstance(module, nn.ReLU)`` modules, and
``nn.ReLU6`` derives from ``nn.Hardtanh``, not ``nn.ReLU``: on this model
Captum silently returns the plain gradient. The script checks that, and also
times Captum on a copy of the model whose ReLU6 modules are replaced by an
``nn.ReLU`` subclass computing relu6 (which Captum does hook): that is real
guided backpropagation, and must agree with saliencykit's.

Timing, waiting for a quiet machine and the table: see ``_adapters_common.py``.

Usage::

    python benchmarks/bench_captum.py [--repeat 5] [--quick] [--max-wait-s 600]
"""

from __future__ import annotations

import copy
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

import saliencykit.core as saliency
import saliencykit.torch as saliency_torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _adapters_common import (  # noqa: E402 (the benchmarks folder is not a package)
    AGREEMENT_L2_TOLERANCE,
    CaptumRow,
    Context,
    Report,
    layout_name,
    normalise,
    run_benchmark,
    stem_input_layout,
)
from _common import (  # noqa: E402
    DEFAULT_CLASS_INDEX,
    TimedCall,
    load_text,
    measure_interleaved,
    relative_l2_error,
    relative_max_error,
)

TITLE = "bench_captum: saliencykit vs Captum"
IG_STEPS = 25
SMOOTHGRAD_SAMPLES = 25
STDEV_SPREAD = 0.15


def difference_text(ours: np.ndarray, theirs: np.ndarray) -> str:
    return f"rel. L2 {relative_l2_error(ours, theirs):.1e} (max {relative_max_error(ours, theirs):.1e})"


def map_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson correlation of two H x W x C maps summed over channels."""
    return float(np.corrcoef(first.sum(axis=-1).ravel(), second.sum(axis=-1).ravel())[0, 1])


def nchw_to_nhwc(tensor: torch.Tensor) -> np.ndarray:
    """A [1, C, H, W] attribution as an H x W x C array."""
    return tensor.detach()[0].permute(1, 2, 0).numpy()


class Normalise(nn.Module):
    """The normalisation as a module, for the wrapper model a Captum user builds."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return normalise(images)


class CaptumVisibleReLU6(nn.ReLU):
    """relu6 as an ``nn.ReLU`` subclass, so that Captum's GuidedBackprop hooks it."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return functional.relu6(inputs)


def with_relu6_visible_to_captum(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` whose ``nn.ReLU6`` modules are :class:`CaptumVisibleReLU6`; and their number."""
    patched = copy.deepcopy(model)
    replaced = 0
    for parent in list(patched.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, CaptumVisibleReLU6())
                replaced += 1
    return patched.eval(), replaced


def captum_comparison(
    model: nn.Module, image: np.ndarray, repeats: int, min_sample_s: float, report: Report
) -> list[CaptumRow]:
    import captum
    from captum.attr import GuidedBackprop as CaptumGuidedBackprop
    from captum.attr import IntegratedGradients as CaptumIntegratedGradients
    from captum.attr import NoiseTunnel, Saliency

    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
    warnings.filterwarnings("ignore", message=".*Input Tensor 0 did not already require gradients.*")
    report.notes.append(f"captum {captum.__version__}")

    wrapped = nn.Sequential(Normalise(), model).eval()
    relu_modules = sum(isinstance(module, nn.ReLU) for module in model.modules())
    relu6_modules = sum(isinstance(module, nn.ReLU6) for module in model.modules())
    patched_model, replaced = with_relu6_visible_to_captum(model)
    wrapped_patched = nn.Sequential(Normalise(), patched_model).eval()

    inputs = {
        # What a Captum user has after ToTensor() / a CHW conversion: NCHW-contiguous memory.
        "NCHW": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None],
        # The same values with channels-last memory (a permuted H x W x C array).
        "channels-last": torch.from_numpy(np.ascontiguousarray(image)[None]).permute(0, 3, 1, 2),
    }
    for name, tensor in inputs.items():
        assert layout_name(tensor) == ("NCHW-contiguous" if name == "NCHW" else "channels-last")

    timed_call = TimedCall(
        saliency_torch.make_call_model_function(model, DEFAULT_CLASS_INDEX, preprocess=normalise)
    )
    stdev = STDEV_SPREAD * float(image.max() - image.min())

    ours_methods: dict[str, Callable[[], np.ndarray]] = {
        "vanilla gradients": lambda: saliency.GradientSaliency().GetMask(image, timed_call),
        "Integrated Gradients": lambda: saliency.IntegratedGradients().GetMask(
            image, timed_call, x_steps=IG_STEPS, batch_size=IG_STEPS, integration_rule="gausslegendre"
        ),
        "SmoothGrad": lambda: saliency.GradientSaliency().GetSmoothedMask(
            image,
            timed_call,
            stdev_spread=STDEV_SPREAD,
            nsamples=SMOOTHGRAD_SAMPLES,
            magnitude=False,
            seed=0,
            batch_size=SMOOTHGRAD_SAMPLES,
        ),
        "Guided Backprop": lambda: saliency.GuidedBackprop().GetMask(image, timed_call),
    }

    def captum_methods(tensor: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
        return {
            "vanilla gradients": lambda: Saliency(wrapped).attribute(
                tensor, target=DEFAULT_CLASS_INDEX, abs=False
            ),
            "Integrated Gradients": lambda: CaptumIntegratedGradients(wrapped).attribute(
                tensor,
                target=DEFAULT_CLASS_INDEX,
                n_steps=IG_STEPS,
                internal_batch_size=IG_STEPS,
                method="gausslegendre",
            ),
            "SmoothGrad": lambda: NoiseTunnel(Saliency(wrapped)).attribute(
                tensor,
                nt_type="smoothgrad",
                nt_samples=SMOOTHGRAD_SAMPLES,
                nt_samples_batch_size=SMOOTHGRAD_SAMPLES,
                stdevs=stdev,
                target=DEFAULT_CLASS_INDEX,
                abs=False,
            ),
            "Guided Backprop": lambda: CaptumGuidedBackprop(wrapped).attribute(
                tensor, target=DEFAULT_CLASS_INDEX
            ),
        }

    captum_by_input = {name: captum_methods(tensor) for name, tensor in inputs.items()}

    # ---- results and the layouts reaching the model -------------------------
    ours_results = {name: run() for name, run in ours_methods.items()}
    captum_results = {
        name: {method: nchw_to_nhwc(run()) for method, run in methods.items()}
        for name, methods in captum_by_input.items()
    }
    layouts = {
        method: {
            "ours": stem_input_layout(model, ours_methods[method]),
            **{name: stem_input_layout(model, captum_by_input[name][method]) for name in inputs},
        }
        for method in ours_methods
    }
    captum_guided_patched = nchw_to_nhwc(
        CaptumGuidedBackprop(wrapped_patched).attribute(inputs["NCHW"], target=DEFAULT_CLASS_INDEX)
    )
    trapezoid_ours = saliency.IntegratedGradients().GetMask(
        image, timed_call, x_steps=IG_STEPS, batch_size=IG_STEPS, integration_rule="riemann_trapezoid"
    )
    trapezoid_captum = nchw_to_nhwc(
        CaptumIntegratedGradients(wrapped).attribute(
            inputs["NCHW"],
            target=DEFAULT_CLASS_INDEX,
            n_steps=IG_STEPS,
            internal_batch_size=IG_STEPS,
            method="riemann_trapezoid",
        )
    )

    smoothgrad_other_seed = saliency.GradientSaliency().GetSmoothedMask(
        image,
        timed_call,
        stdev_spread=STDEV_SPREAD,
        nsamples=SMOOTHGRAD_SAMPLES,
        magnitude=False,
        seed=1,
        batch_size=SMOOTHGRAD_SAMPLES,
    )

    def agreement(method: str) -> tuple[str, bool | None]:
        """A description of how ours and Captum's results compare, and whether they agree."""
        ours = ours_results[method]
        theirs = captum_results["NCHW"][method]
        theirs_cl = captum_results["channels-last"][method]
        if method == "SmoothGrad":
            return (
                "different noise, so only correlations of channel-summed maps: ours(seed 0) vs captum "
                f"{map_correlation(ours, theirs):.3f}; ours(seed 0) vs ours(seed 1) "
                f"{map_correlation(ours, smoothgrad_other_seed):.3f} (25 samples are that noisy)",
                None,
            )
        if method == "Guided Backprop":
            plain = captum_results["NCHW"]["vanilla gradients"]
            unguided = (
                "identical: Captum guided no ReLU6" if relative_l2_error(theirs, plain) == 0 else "differ"
            )
            return (
                f"captum GBP vs captum vanilla gradients {difference_text(theirs, plain)} ({unguided}); "
                f"ours vs captum GBP {difference_text(ours, theirs)}; ours vs captum on the "
                f"ReLU6-as-nn.ReLU copy {difference_text(ours, captum_guided_patched)}",
                relative_l2_error(ours, captum_guided_patched) <= AGREEMENT_L2_TOLERANCE,
            )
        same_layout = relative_l2_error(ours, theirs_cl)
        return (
            f"ours vs captum on channels-last (the layout ours feeds) {difference_text(ours, theirs_cl)}; "
            f"vs captum NCHW {difference_text(ours, theirs)}; captum's own NCHW vs channels-last "
            f"{difference_text(theirs_cl, theirs)}",
            same_layout <= AGREEMENT_L2_TOLERANCE,
        )

    # ---- timings ------------------------------------------------------------
    rows = []
    for method, ours_run in ours_methods.items():
        variants: dict[str, Callable[[], Any]] = {
            "ours": ours_run,
            "captum NCHW": captum_by_input["NCHW"][method],
            "captum channels-last": captum_by_input["channels-last"][method],
        }
        if method == "Guided Backprop":
            # Real guided backpropagation in Captum: the copy whose ReLU6 modules Captum hooks.
            for name, tensor in inputs.items():
                variants[f"captum {name}, ReLU6 hooked"] = lambda tensor=tensor: CaptumGuidedBackprop(
                    wrapped_patched
                ).attribute(tensor, target=DEFAULT_CLASS_INDEX)
        timings = measure_interleaved(variants, repeats, min_sample_s)
        rows.append(
            CaptumRow(
                method,
                timings["ours"],
                timings["captum NCHW"],
                timings["captum channels-last"],
                math.nan,
                *agreement(method),
                {name: samples for name, samples in timings.items() if name.endswith("ReLU6 hooked")},
            )
        )
        # The share of our time spent inside call_model_function (model + adapter), from one extra run.
        timed_call.seconds = 0.0
        start = time.perf_counter()
        ours_run()
        rows[-1].ours_in_model_fraction = timed_call.seconds / (time.perf_counter() - start)
        print(f"  captum {method}: done ({load_text()})", flush=True)

    report.notes.append(
        f"EfficientNet-Lite0 has {relu6_modules} nn.ReLU6 and {relu_modules} nn.ReLU modules; "
        f"nn.ReLU6 subclasses {nn.ReLU6.__mro__[1].__name__}, not nn.ReLU, so Captum's GuidedBackprop "
        "(hooks isinstance(module, nn.ReLU)) hooks nothing and returns the plain gradient. "
        f"The 'ReLU6 hooked' copy replaces {replaced} ReLU6 modules by an nn.ReLU subclass computing relu6."
    )
    factor = IG_STEPS / (IG_STEPS - 1)
    report.notes.append(
        "IG riemann_trapezoid: Captum's step sizes are 1/n with halved ends (they sum to (n-1)/n = "
        f"{(IG_STEPS - 1) / IG_STEPS:.2f}), saliencykit's 1/(n-1) (sum 1): ours vs captum "
        f"{difference_text(trapezoid_ours, trapezoid_captum)}, ours vs captum x n/(n-1) "
        f"{difference_text(trapezoid_ours, trapezoid_captum * factor)}"
    )
    layout_text = "; ".join(
        f"{method}: " + ", ".join(f"{who} -> {layout}" for who, layout in seen.items())
        for method, seen in layouts.items()
    )
    report.notes.append(f"layout reaching the model's stem conv: {layout_text}")
    return rows


def captum_section(context: Context) -> None:
    context.report.captum = captum_comparison(
        context.model, context.image, context.repeats, context.min_sample_s, context.report
    )


SECTIONS = {"captum": captum_section}


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(
        "bench_captum", TITLE, __doc__.split("\n\n")[0], SECTIONS, argv, model_sections=("captum",)
    )


if __name__ == "__main__":
    sys.exit(main())
