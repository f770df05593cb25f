"""Running a batch: :func:`run_batch` checks the options, holds the output folder's lock, plans
and hands the work to the local driver (here) or to the Ray driver (:mod:`rdex.batch.ray_driver`)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdex.batch.inputs import InputItem, LabelMode, find_inputs
from rdex.batch.manifest import MANIFEST_NAME, _locked, _Manifest, _remove_stale_temporaries
from rdex.batch.plan import BatchSummary, _groups, _load_group, _Pending, _plan
from rdex.batch.ray_driver import RayOptions, _run_ray
from rdex.batch.worker import _Explainer, _load_model, _model_device, _Settings
from rdex.batch.writer import _Writer
from rdex.rde import RDEConfig


def _resolve_configs(
    methods: Sequence[str], configs: Mapping[str, RDEConfig] | RDEConfig | None
) -> dict[str, RDEConfig]:
    from rdex.methods import METHODS
    from rdex.methods.registry import get_method

    resolved = {}
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
        if isinstance(configs, RDEConfig):
            resolved[m] = configs
        elif configs is not None and m in configs:
            resolved[m] = configs[m]
        else:
            resolved[m] = get_method(m).config()
    return resolved


def _model_name(model: Any, explicit: str | None) -> str:
    if explicit:
        return explicit
    if isinstance(model, str):
        return model
    name = getattr(model, "name", None)
    if isinstance(name, str) and name:
        return name
    return (
        type(model).__name__
        if isinstance(model, nn.Module)
        else getattr(model, "__name__", "model")
    )


def run_batch(
    inputs: str | os.PathLike[str] | Sequence[InputItem],
    out_dir: str | os.PathLike[str],
    *,
    model: str | nn.Module | Callable[[], nn.Module] = "efficientnet_lite0",
    weights: str | None = None,
    model_name: str | None = None,
    methods: Sequence[str] = ("cartoonx",),
    configs: Mapping[str, RDEConfig] | RDEConfig | None = None,
    obfuscation: str = "gaussian",
    size: int = 256,
    fit: str = "resize",
    target: str = "pred",
    labels: LabelMode = "auto",
    only_misclassified: bool = False,
    retry_errors: bool = False,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    ray: RayOptions | None = None,
    progress: bool = True,
    metrics: bool = False,
    seeds: Sequence[int] | str | None = None,
) -> BatchSummary:
    """Explain many images, resumably, on this machine or on Ray.

    Args:
        inputs: A folder, a list file, an image, or :class:`InputItem` objects (see
            :func:`find_inputs`).
        out_dir: Output folder; created if needed. Rerunning into it resumes.
        model: A model name for :func:`rdex.models.load_classifier`, a classifier taking images
            ``(B, 3, H, W)`` in ``[0, 1]``, or a factory returning one (called once per worker).
        weights: State-dict file for a named model.
        model_name: Name recorded in the manifest (default: the model name or ``model.name``).
        methods: RDE methods (``"cartoonx"``, ``"pixel-rde"``).
        configs: One :class:`~rdex.rde.RDEConfig` for all methods, or one per method; default
            the ``fast`` preset with each method's default ``lambda_k``.
        obfuscation: Obfuscation name (see :func:`rdex.obfuscations.make_obfuscation`).
        size: Side of the square the images are resized to.
        fit: ``"resize"`` or ``"crop"``.
        target: ``"pred"`` (the predicted label), ``"true"`` (the true label where known), or a
            label index or name explained for every image.
        labels: How folders give true labels: ``"auto"``, ``"folders"``, ``"none"``.
        only_misclassified: Explain only images whose prediction differs from their true label.
        retry_errors: Redo units recorded with status ``error`` (e.g. after fixing a file).
        batch_size: Images optimised together in one RDE loop.
        device: Device of a local run (default: the model's, or CUDA when available for a name).
        ray: Run on Ray with these options instead of locally.
        progress: Show a progress bar over the images with the estimated time left.
        metrics: Add the cheap metric values of :func:`rdex.metrics.manifest_metrics` (sparsity,
            smoothness, CP and hallucination scores) to every manifest line, under ``metrics``.
        seeds: Explain every image once per seed (at least two) with the median of their masks
            (:class:`rdex.seeds.SeedEnsemble`); each manifest line gets ``seeds``, the seeds'
            agreement (SSIM between their pictures), and the ``.npz`` every seed's mask. Costs
            one run per seed.

    Returns:
        A :class:`BatchSummary`; ``summary.exit_code`` is 1 when some units failed.

    Raises:
        ValueError: Bad options, no images, or another run holding the output folder.
        FileNotFoundError: ``inputs`` does not exist.
    """
    import time

    start = time.perf_counter()
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    from rdex.images import MAX_SIZE, MIN_SIDE

    if not MIN_SIDE <= size <= MAX_SIZE:
        raise ValueError(f"size must be between {MIN_SIDE} and {MAX_SIZE} pixels, got {size}")
    if fit not in ("resize", "crop"):
        raise ValueError(f"unknown fit {fit!r}; choose resize or crop")
    methods = tuple(dict.fromkeys(methods))
    if not methods:
        raise ValueError("no method given")
    resolved = _resolve_configs(methods, configs)
    from rdex.seeds import parse_seeds

    chosen_seeds = None if seeds is None else parse_seeds(seeds)
    items = (
        list(inputs)
        if isinstance(inputs, Sequence) and not isinstance(inputs, str)
        else find_inputs(inputs, labels=labels)
    )  # type: ignore[arg-type]
    if only_misclassified and not any(item.true_label is not None for item in items):
        raise ValueError(
            "--only-misclassified needs true labels: an ImageFolder tree (class folders) or a "
            "list file with labels"
        )
    if target == "true" and not any(item.true_label is not None for item in items):
        raise ValueError("target 'true' needs true labels (an ImageFolder tree or a labelled list)")
    settings = _Settings(
        methods=methods,
        configs=resolved,
        obfuscation=obfuscation,
        size=size,
        fit=fit,
        target=str(target),
        only_misclassified=only_misclassified,
        batch_size=batch_size,
        model_name=_model_name(model, model_name),
        weights=weights,
        metrics=metrics,
        seeds=chosen_seeds,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = BatchSummary(out_dir=out, total=len(items) * len(methods))
    with _locked(out):
        _remove_stale_temporaries(out)
        manifest = _Manifest(out / MANIFEST_NAME)
        try:
            _run_locked(
                out, items, manifest, settings, summary, model, device, ray, progress, retry_errors
            )
        finally:
            manifest.close()
    summary.runtime_s = time.perf_counter() - start
    return summary


def _run_locked(
    out: Path,
    items: Sequence[InputItem],
    manifest: _Manifest,
    settings: _Settings,
    summary: BatchSummary,
    model: Any,
    device: str | torch.device | None,
    ray_options: RayOptions | None,
    progress: bool,
    retry_errors: bool,
) -> None:
    todo = _plan(out, items, manifest, settings, summary, retry_errors, progress)
    n_todo = sum(len(p.items) for p in todo)
    bar = None
    if progress and n_todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_todo, desc="rdex batch", unit="img", dynamic_ncols=True)
    writer = _Writer(out, manifest, settings, summary, bar)
    try:
        if not todo:
            return
        if ray_options is None:
            _run_local(todo, writer, settings, model, device)
        else:
            _run_ray(todo, writer, settings, model, ray_options)
    finally:
        if bar is not None:
            bar.close()


def _run_local(
    todo: list[_Pending],
    writer: _Writer,
    settings: _Settings,
    model: Any,
    device: str | torch.device | None,
) -> None:
    net = _load_model(model, settings.weights)
    if device is None:
        dev = (
            _model_device(net)
            if isinstance(model, nn.Module)
            else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
    else:
        dev = torch.device(device)
    if _model_device(net) != dev:
        # Never move the caller's model: work on a copy when it lives elsewhere.
        net = (copy.deepcopy(net) if isinstance(model, nn.Module) else net).to(dev)
    explainer = _Explainer(net, settings, dev)
    for group in _groups(todo, settings.batch_size):
        units = _load_group(group)
        writer.write(group, explainer.run(units))
