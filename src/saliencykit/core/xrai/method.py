"""XRAI's public classes: :class:`XRAI`, :class:`XRAIParameters` and :class:`XRAIOutput`.

The method computes the pixel attribution (Integrated Gradients averaged over
the baselines, or a given ``base_attribution``), reduces it to one value per
pixel, segments the image (:mod:`.felzenszwalb`, :mod:`.segments`) unless
``segments`` are given, and runs one of the searches (:mod:`.search`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base import (
    DEFAULT_BATCH_SIZE,
    INPUT_OUTPUT_GRADIENTS,
    CallModelFunction,
    CoreSaliency,
    Steps,
    as_float_array,
    check_evaluation_count,
    check_number,
)
from ..integrated_gradients import IntegratedGradients
from ..integration import LINSPACE
from .cache import SegmentCache, image_key
from .felzenszwalb import _DEFAULT_DILATION_RADIUS, LabelImagesJob, default_segmentation_workers
from .reference_helpers import _xrai as _reference_full_search
from .reference_helpers import _xrai_fast as _reference_fast_search
from .search import FULL, XRAI_ALGORITHMS, _finish_search, xrai_fast_search, xrai_full_search
from .segments import (
    SegmentPixels,
    concatenate_segment_pixels,
    dilated_segment_pixels,
    segment_pixels_from_masks,
)

__all__ = ["XRAI", "XRAIOutput", "XRAIParameters"]

#: The package's logger (``saliencykit.core.xrai``), as before the package split.
_logger = logging.getLogger(__name__.rpartition(".")[0])


def _dilated_segments(labels: np.ndarray) -> SegmentPixels:
    """Every segment of one label image, dilated by XRAI's disk (on the thread that segmented it)."""
    return dilated_segment_pixels([labels], _DEFAULT_DILATION_RADIUS)


def _attribution_shape(x_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The attribution's shape for an input of ``x_shape``: the last (channel) axis of rank 3+ dropped."""
    return tuple(x_shape) if len(x_shape) <= 2 else tuple(x_shape[:-1])


class XRAIParameters:
    """Parameters of :meth:`XRAI.GetMaskWithDetails` (the reference's class, same order).

    Attributes:
      steps: Integrated Gradients steps per baseline (>= 1).
      area_threshold: 'full' stops once this fraction of the image is covered;
        the rest becomes one region. 1.0 ranks the whole image ('fast' ignores
        it).
      return_ig_attributions: put the IG attribution of every baseline (or the
        given ``base_attribution``) in ``XRAIOutput.ig_attribution``.
      return_xrai_segments: put the ranked regions in ``XRAIOutput.segments``.
      flatten_xrai_segments: regions as an int ``[H, W]`` image of ranks
        ``1..N`` (1 most important); else a list of ``[H, W]`` boolean masks,
        most important first.
      algorithm: ``'full'`` or ``'fast'``.
      experimental_params: ``{'min_pixel_diff': int}``, the fewest new pixels a
        region must add (also reachable as the ``min_pixel_diff`` attribute).
    """

    def __init__(
        self,
        steps: int = 100,
        area_threshold: float = 1.0,
        return_baseline_predictions: bool = False,
        return_ig_attributions: bool = False,
        return_xrai_segments: bool = False,
        flatten_xrai_segments: bool = True,
        algorithm: str = FULL,
        min_pixel_diff: int = 50,
    ) -> None:
        self.steps = steps
        self.area_threshold = area_threshold
        # Accepted for compatibility; the reference does not implement it either.
        self.return_baseline_predictions = return_baseline_predictions
        self.return_ig_attributions = return_ig_attributions
        self.return_xrai_segments = return_xrai_segments
        self.flatten_xrai_segments = flatten_xrai_segments
        self.algorithm = algorithm
        self.experimental_params = {"min_pixel_diff": min_pixel_diff}

    @property
    def min_pixel_diff(self) -> Any:
        """``experimental_params['min_pixel_diff']``."""
        return self.experimental_params["min_pixel_diff"]

    @min_pixel_diff.setter
    def min_pixel_diff(self, value: Any) -> None:
        self.experimental_params["min_pixel_diff"] = value

    def __repr__(self) -> str:
        return (
            f"XRAIParameters(steps={self.steps!r}, area_threshold={self.area_threshold!r}, "
            f"return_ig_attributions={self.return_ig_attributions!r}, "
            f"return_xrai_segments={self.return_xrai_segments!r}, "
            f"flatten_xrai_segments={self.flatten_xrai_segments!r}, algorithm={self.algorithm!r}, "
            f"experimental_params={self.experimental_params!r})"
        )


@dataclass(eq=False)
class XRAIOutput:
    """What :meth:`XRAI.GetMaskWithDetails` returns (the reference's class).

    Attributes:
      attribution_mask: float64 ``[H, W]`` XRAI map (the attribution's shape:
        ``[L]`` for a sequence given with ``segments``).
      baselines: the IG baselines used (list of ``x_value``-shaped arrays), or
        ``None`` when ``base_attribution`` was given.
      ig_attribution: with ``return_ig_attributions``: the list of IG
        attributions (one per baseline), or the given ``base_attribution``.
      segments: with ``return_xrai_segments``: an int ``[H, W]`` image of ranks
        ``1..N``, or the list of ``[H, W]`` boolean masks in rank order (the
        attribution's shape in general).
    """

    attribution_mask: np.ndarray
    baselines: list[np.ndarray] | None = None
    ig_attribution: Any = None
    segments: Any = None


class XRAI(CoreSaliency):
    """XRAI (Kapishnikov et al. 2019, arXiv 1906.02825): attribution by ranked image regions.

    The pixel attribution (Integrated Gradients averaged over the baselines,
    or ``base_attribution``) is reduced to ``[H, W]`` by the maximum over
    channels, and regions (Felzenszwalb segments, dilated) are added in order
    of attribution density; see :func:`xrai_full_search` and
    :func:`xrai_fast_search`. Non-image inputs (sequences ``[L]``, volumes)
    work when their ``segments`` are given; see :meth:`GetMaskWithDetails`.

    Example::

        params = XRAIParameters(steps=50, algorithm="fast", return_xrai_segments=True)
        params.experimental_params["min_pixel_diff"] = 10  # or params.min_pixel_diff = 10
        output = XRAI().GetMaskWithDetails(image, call_model_function, extra_parameters=params)
        output.attribution_mask  # [H, W] map; output.segments: [H, W] ranks 1..N

    ``call_model_function`` must answer ``INPUT_OUTPUT_GRADIENTS`` (it is only
    called by Integrated Gradients, ``steps`` points per baseline in calls of
    at most ``batch_size``, and not at all when ``base_attribution`` is given).

    XRAI's own time is mostly the default segmentation, which depends on the
    image alone: it runs beside the model's IG calls (on one thread of its
    own), or, when ``base_attribution`` is given, its six scales run
    concurrently (:attr:`segmentation_threads`); and every instance keeps the
    segments of the last few images it explained
    (:class:`~saliencykit.core.xrai.cache.SegmentCache`: 8 images, 64 MB at
    most), so explaining an image again (another class, other baselines, the
    other algorithm) skips it. The results are the same in every case.
    """

    expected_keys = [INPUT_OUTPUT_GRADIENTS]
    per_example_arguments = ("baselines", "segments", "base_attribution")

    #: Threads for the six default segmentations when no model runs beside them
    #: (``base_attribution`` given; see
    #: :class:`~saliencykit.core.xrai.felzenszwalb.LabelImagesJob`); ``None``: one
    #: per scale, at most one per CPU; 1: one after the other.
    segmentation_threads: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self._integrated_gradients = IntegratedGradients()
        self._segment_cache = SegmentCache()

    @property
    def _segments_cache(self) -> SegmentCache:
        """This instance's :class:`SegmentCache` of default segments (made here for subclasses
        whose ``__init__`` does not call this one's)."""
        cache = self.__dict__.get("_segment_cache")
        if cache is None:
            cache = self._segment_cache = SegmentCache()
        return cache

    def _segmentation_threads(self, beside_model: bool) -> int:
        """Threads for the default segmentations of one image.

        Beside the model (while Integrated Gradients runs), one: the six
        segmentations take a fraction of a second, the IG calls seconds, and
        more threads would only compete with the model's own. Otherwise
        :attr:`segmentation_threads` or one per scale, at most one per CPU;
        0 (on the calling thread) when that is one.
        """
        if beside_model:
            return 1
        threads = self.segmentation_threads
        if threads is None:
            threads = default_segmentation_workers()
        return threads if threads > 1 else 0

    def _get_integrated_gradients(
        self,
        im: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any,
        baselines: Sequence[np.ndarray],
        steps: int,
        batch_size: int,
    ) -> list[np.ndarray]:
        """Integrated Gradients of ``im`` from every baseline (one list entry per baseline)."""
        return [
            self._integrated_gradients.GetMask(
                im,
                call_model_function,
                call_model_args=call_model_args,
                x_baseline=baseline,
                x_steps=steps,
                batch_size=batch_size,
            )
            for baseline in baselines
        ]

    # The original's private static methods (see .reference_helpers).
    _xrai = staticmethod(_reference_full_search)
    _xrai_fast = staticmethod(_reference_fast_search)

    def _make_baselines(self, x_value: np.ndarray, x_baselines: Sequence[Any] | None) -> list[np.ndarray]:
        """The given baselines, checked, or an all-``min(x)`` and an all-``max(x)`` image.

        Raises:
          ValueError: if a baseline's shape differs from ``x_value``'s, a
            baseline is not finite, or the list is empty.
        """
        if x_baselines is None:
            return [np.full_like(x_value, np.min(x_value)), np.full_like(x_value, np.max(x_value))]
        checked = []
        for index, baseline in enumerate(x_baselines):
            baseline = as_float_array(f"baselines[{index}]", baseline, min_ndim=0)
            if baseline.shape != x_value.shape:
                raise ValueError(
                    f"Baseline size {baseline.shape} does not match input size {x_value.shape} "
                    f"(baselines[{index}]: expected shape {x_value.shape}, got {baseline.shape})"
                )
            checked.append(baseline)
        if not checked:
            raise ValueError("baselines must hold at least one baseline (or be None for the defaults)")
        return checked

    def GetMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        baselines: Sequence[np.ndarray] | None = None,
        segments: Sequence[np.ndarray] | None = None,
        base_attribution: np.ndarray | None = None,
        batch_size: int = 1,
        extra_parameters: XRAIParameters | None = None,
    ) -> np.ndarray:
        """Returns the XRAI map of ``x_value``: float64 ``[H, W]`` (see :meth:`GetMaskWithDetails`).

        See :meth:`GetMaskWithDetails` for the arguments and errors.
        """
        return self.GetMaskWithDetails(
            x_value,
            call_model_function,
            call_model_args=call_model_args,
            baselines=baselines,
            segments=segments,
            base_attribution=base_attribution,
            batch_size=batch_size,
            extra_parameters=extra_parameters,
        ).attribution_mask

    def GetMaskWithDetails(  # noqa: N802
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        baselines: Sequence[np.ndarray] | None = None,
        segments: Sequence[np.ndarray] | None = None,
        base_attribution: np.ndarray | None = None,
        batch_size: int = 1,
        extra_parameters: XRAIParameters | None = None,
    ) -> XRAIOutput:
        """Runs XRAI on one image and returns the map with the details asked for.

        Input shapes (the reference's rules): the attribution (IG, or
        ``base_attribution``) of an input of rank 3 or more is reduced by the
        maximum over its last (channel) axis; rank 1 and 2 are kept as they
        are. Without ``segments``, ``x_value`` must be an image, ``[H, W]`` or
        ``[H, W, C]`` (Felzenszwalb segments images). With ``segments``, any
        input of rank >= 1 works: a sequence ``[L]`` with ``[L]`` masks, an
        ``[L, C]`` input with ``[L, C]`` masks (rank 2 is not reduced), a
        volume ``[D, H, W, C]`` with ``[D, H, W]`` masks.

        Args:
          x_value: the un-batched input, finite: an image ``[H, W]`` or
            ``[H, W, C]``; any rank >= 1 when ``segments`` is given.
          call_model_function: answers ``INPUT_OUTPUT_GRADIENTS`` for a batch
            ``[B, *x_value.shape]``; unused when ``base_attribution`` is given.
          call_model_args: passed to every model call unchanged.
          baselines: IG baselines, each of ``x_value``'s shape; default an
            all-``min(x)`` and an all-``max(x)`` image.
          segments: candidate regions, a sequence of boolean masks of the
            attribution's shape (``[H, W]`` for an image); default:
            Felzenszwalb segments of ``x_value`` at six scales, each dilated
            by a disk of radius 5.
          base_attribution: a precomputed attribution of ``x_value``'s shape to
            use instead of IG (then the model is not called).
          batch_size: the most IG path points per model call.
          extra_parameters: an :class:`XRAIParameters`; defaults if ``None``.

        Returns:
          An :class:`XRAIOutput`.

        Raises:
          ValueError: unknown algorithm; ``base_attribution``, a baseline or a
            segment of the wrong shape; NaN/inf in the image or attribution;
            without ``segments``, an input that is not ``[H, W]`` or
            ``[H, W, C]``; ``steps`` above
            :data:`~saliencykit.core.base.MAX_MODEL_EVALUATIONS`; a bad model
            answer.
          TypeError: non-numeric inputs or parameters of the wrong type.

        FIX over the reference: an input that is not an image without
        ``segments`` is a clear ``ValueError`` (the reference fails inside
        scikit-image).
        """
        steps = self._details_steps(x_value, baselines, segments, base_attribution, extra_parameters)
        return self._run_one(steps, x_value, call_model_function, call_model_args, batch_size)

    def _mask_steps(
        self,
        x_value: Any,
        baselines: Sequence[np.ndarray] | None,
        segments: Sequence[np.ndarray] | None,
        base_attribution: np.ndarray | None,
        extra_parameters: XRAIParameters | None,
    ) -> Steps:
        output = yield from self._details_steps(
            x_value, baselines, segments, base_attribution, extra_parameters
        )
        return output.attribution_mask

    def _details_steps(
        self,
        x_value: Any,
        baselines: Sequence[np.ndarray] | None,
        segments: Sequence[np.ndarray] | None,
        base_attribution: np.ndarray | None,
        extra_parameters: XRAIParameters | None,
    ) -> Steps:
        """:meth:`GetMaskWithDetails`'s computation: IG from each baseline in turn, then the search."""
        params = XRAIParameters() if extra_parameters is None else extra_parameters
        algorithm = params.algorithm
        if algorithm not in XRAI_ALGORITHMS:
            raise ValueError(f"Unknown algorithm type: {algorithm!r} (expected one of {XRAI_ALGORITHMS})")
        area_threshold = check_number("extra_parameters.area_threshold", params.area_threshold)
        min_pixel_diff = check_number(
            "extra_parameters.experimental_params['min_pixel_diff']",
            params.experimental_params["min_pixel_diff"],
        )

        x_array = np.asarray(x_value)
        x_float = as_float_array("x_value", x_array, min_ndim=1)
        attribution_shape = x_array.shape if x_array.ndim <= 2 else x_array.shape[:-1]
        if segments is None and x_array.ndim not in (2, 3):
            raise ValueError(
                "without segments, x_value must be one image [H, W] or [H, W, C] without a batch "
                f"dimension (XRAI's default segmentation is Felzenszwalb's, for images), got shape "
                f"{x_array.shape}; for other data (sequences [L], volumes...) pass segments=: a "
                f"list of boolean masks of the attribution's shape {attribution_shape}"
            )

        if base_attribution is not None:
            base_attribution = np.asarray(base_attribution)
            if base_attribution.shape != x_array.shape:
                raise ValueError(
                    "The base attribution shape should be the same as the shape of `x_value`. "
                    f"Expected {x_array.shape}, got {base_attribution.shape} (base_attribution)"
                )
            if base_attribution.dtype.kind not in "biuf":
                raise TypeError(
                    f"base_attribution must be a real numeric array, got dtype {base_attribution.dtype}"
                )
            x_baselines = None
            steps = 0
        else:
            steps = check_evaluation_count("extra_parameters.steps", params.steps)
            x_baselines = self._make_baselines(x_float, baselines)

        # The default segments depend on the image alone: from this instance's cache
        # when the image was segmented before, else started now on threads of their
        # own, so that they run beside the model's IG calls.
        cache = self._segments_cache
        cache_key = image_key(x_array) if segments is None else None
        default_segments = None if cache_key is None else cache.get(cache_key)
        label_job = None
        if cache_key is not None and default_segments is None:
            label_job = LabelImagesJob(
                x_array, threads=self._segmentation_threads(x_baselines is not None), then=_dilated_segments
            )
        try:
            if x_baselines is None:
                assert base_attribution is not None
                ig_attributions: Any = base_attribution
                attr = base_attribution
            else:
                _logger.debug("Computing IG...")
                ig_attributions = []
                for baseline in x_baselines:
                    attribution = yield from self._integrated_gradients._mask_steps(
                        x_float, baseline, steps, LINSPACE
                    )
                    ig_attributions.append(attribution)
                attr = np.mean(ig_attributions, axis=0)
            if attr.ndim > 2:  # the reference's rule: the last axis of rank 3+ is channels
                attr = attr.max(axis=-1)
            if attr.dtype.kind == "f" and not np.isfinite(attr).all():
                raise ValueError("The attribution (base_attribution or IG) holds NaN or inf values")

            _logger.debug("Done with IG. Computing XRAI...")
            if segments is not None:
                segment_pixels = segment_pixels_from_masks(segments, attr.shape)
            elif default_segments is not None:
                segment_pixels = default_segments
            else:
                assert label_job is not None and cache_key is not None
                segment_pixels = cache.put(cache_key, concatenate_segment_pixels(label_job.result()))
        finally:
            if label_job is not None:
                label_job.cancel()  # a computation given up: no segmentation left queued

        if algorithm == FULL:
            search = xrai_full_search(attr, segment_pixels, area_threshold, min_pixel_diff)
        else:
            search = xrai_fast_search(attr, segment_pixels, min_pixel_diff)
        attribution_map, ranked_segments = _finish_search(attr, search, bool(params.flatten_xrai_segments))

        output = XRAIOutput(attribution_map, baselines=x_baselines)
        if params.return_xrai_segments:
            output.segments = ranked_segments
        if params.return_ig_attributions:
            output.ig_attribution = ig_attributions
        return output

    def _split_argument(
        self, name: str, value: Any, n_examples: int, x_shape: tuple[int, ...]
    ) -> list[Any] | None:
        """XRAI's per-example arguments in :meth:`GetMaskBatch`.

        - ``base_attribution``: of the example's shape (the same for all) or
          ``[N, *x_shape]`` (one per example);
        - ``baselines``: a sequence of arrays of the example's shape (the same
          baselines for all), or N sequences of them (an array ``[N, B, *x_shape]``
          or a list of N lists);
        - ``segments``: a sequence of masks of the attribution's shape (the
          same segments for all), or N sequences of masks (one per example).

        Raises:
          ValueError: ``base_attribution`` of another shape; N sequences
            expected (entries of one more dimension) but another count given.
        """
        if name == "base_attribution":
            return super()._split_argument(name, value, n_examples, x_shape)
        if value is None or len(value) == 0:
            return None
        one_entry_ndim = len(x_shape) if name == "baselines" else len(_attribution_shape(x_shape))
        if np.ndim(value[0]) != one_entry_ndim + 1:
            return None  # one value for all examples; GetMask checks its entries
        if len(value) != n_examples:
            raise ValueError(
                f"{name} must be one sequence for every example or one per example: expected {n_examples} "
                f"sequences (x_values holds {n_examples} examples), got {len(value)}"
            )
        return list(value)

    def GetMaskBatch(  # noqa: N802
        self,
        x_values: Any,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        return_details: bool = False,
        **kwargs: Any,
    ) -> Any:
        """XRAI maps of many images ``[N, H, W]``, their IG evaluations packed into shared calls.

        As :meth:`CoreSaliency.GetMaskBatch`; each image runs IG from its
        baselines in turn, and the IG evaluations of several images share
        calls of at most ``batch_size`` inputs. Each image is segmented (and
        searched) when its attribution is complete. ``baselines``,
        ``segments`` and ``base_attribution`` may be given per image (see
        :meth:`_split_argument`).

        Args:
          x_values, call_model_function, call_model_args, batch_size, **kwargs:
            as for :meth:`CoreSaliency.GetMaskBatch` and :meth:`GetMaskWithDetails`.
          return_details: also return the :class:`XRAIOutput` of every image.

        Returns:
          The maps ``[N, H, W]`` (float64), or ``(maps, details)`` with
          ``return_details``: ``details[i]`` is what :meth:`GetMaskWithDetails`
          returns for image ``i``.

        Raises:
          TypeError, ValueError: as for :meth:`CoreSaliency.GetMaskBatch` and
            :meth:`GetMaskWithDetails`.
        """
        if not return_details:
            return super().GetMaskBatch(
                x_values, call_model_function, call_model_args, batch_size=batch_size, **kwargs
            )
        details = self._run_batch(
            "GetMaskBatch",
            x_values,
            call_model_function,
            call_model_args,
            batch_size,
            kwargs,
            lambda index, x_value, **parameters: self._details_steps(x_value, **parameters),
            lambda index, x_value, args: self.GetMaskWithDetails(
                x_value, call_model_function, args, **kwargs
            ),
        )
        return np.stack([output.attribution_mask for output in details]), details

    def n_model_inputs(
        self,
        x_shape: tuple[int, ...],
        *,
        baselines: Sequence[np.ndarray] | None = None,
        base_attribution: np.ndarray | None = None,
        extra_parameters: XRAIParameters | None = None,
        **other: Any,
    ) -> int:
        """``steps`` Integrated Gradients points per baseline (two by default); 0 with ``base_attribution``.

        ``**other``: :meth:`GetMask`'s other parameters, which do not change the count.

        Raises:
          TypeError, ValueError: a bad ``extra_parameters.steps``.
        """
        if base_attribution is not None:
            return 0
        params = XRAIParameters() if extra_parameters is None else extra_parameters
        steps = check_evaluation_count("extra_parameters.steps", params.steps)
        return steps * (2 if baselines is None else len(baselines))
