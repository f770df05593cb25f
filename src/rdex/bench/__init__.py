"""Speed and time-to-quality benchmarks of CartoonX (``rdex bench``).

Four modules, all usable from Python:

* :mod:`~rdex.bench.speed`: :func:`speed_benchmark`, the per-step time of rdex against the
  reference loop at identical settings, with peak memory.
* :mod:`~rdex.bench.reference`: :func:`reference_cartoonx`, Algorithm 1 written the
  straightforward way (fp32, NCHW model, one Python loop, a separate noise draw per band,
  ``.item()`` every step, parameters frozen), the yardstick rdex's optimised :class:`rdex.CartoonX` is timed against.
* :mod:`~rdex.bench.quality`: :class:`ObjectiveEvaluator`, one common scorer of the RDE objective
  ``distortion + lambda_k * mean(s)`` for any mask, with a fixed seed and a large noise sample.
  :func:`run_schedule` / :func:`score_runs`, snapshots of the mask along a run with their
  wall-clock times, scored afterwards, plus SSIM and retained-set overlap against a reference.
* :mod:`~rdex.bench.repeat`: :class:`RunRecord` (a run's masks as compressed ``.npz``, its settings
  as JSON) and :func:`score_repeatability`, several seeds of a schedule per image scored against
  the paper schedule's records (``rdex bench --mode repeat``).

References:
    Kolek et al., "Cartoon Explanations of Image Classifiers", ECCV 2022, Algorithm 1 and A.2.
"""

from rdex.bench.quality import (
    RD_FRACTIONS,
    ObjectiveEvaluator,
    cartoon_picture,
    checkpoint_steps,
    plot_quality,
    retained_overlap,
    run_schedule,
    score_runs,
    ssim,
)
from rdex.bench.reference import ReferenceResult, reference_cartoonx
from rdex.bench.repeat import RunRecord, load_records, run_record, score_repeatability
from rdex.bench.speed import SPEED_VARIANTS, peak_memory_mb, plot_speed, speed_benchmark

__all__ = [
    "RunRecord",
    "load_records",
    "run_record",
    "score_repeatability",
    "ReferenceResult",
    "reference_cartoonx",
    "ObjectiveEvaluator",
    "RD_FRACTIONS",
    "cartoon_picture",
    "ssim",
    "retained_overlap",
    "run_schedule",
    "checkpoint_steps",
    "peak_memory_mb",
    "SPEED_VARIANTS",
    "speed_benchmark",
    "score_runs",
    "plot_quality",
    "plot_speed",
]
