"""The Ray driver: actors that load the model once each explain groups of units; the driver alone
reads inputs and writes files and the manifest (:mod:`rdex.batch.writer`), so the outputs are those
of a local run and resume works across both. Inputs travel as bytes: no shared file system."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rdex.batch.inputs import _reason
from rdex.batch.plan import _groups, _load_group, _Pending
from rdex.batch.worker import _Explainer, _load_model, _Outcome, _Settings, _Unit
from rdex.batch.writer import _Writer


@dataclass(frozen=True)
class RayOptions:
    """How to run a batch on Ray.

    Attributes:
        address: Address of a running cluster (``"auto"``, ``"ray://host:10001"``, ...); ``None``
            starts a local runtime.
        num_cpus: CPUs of a local runtime (``None``: all).
        num_gpus: GPUs of a local runtime (``None``: all Ray finds).
        cpus_per_task: CPUs each worker reserves.
        gpus_per_task: GPUs each worker reserves (fractions share a GPU between workers).
        images_per_task: Images sent to a worker at once.
        workers: Number of workers (actors); ``None``: as many as the cluster's resources allow.
    """

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    images_per_task: int = 4
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.cpus_per_task < 0 or self.gpus_per_task < 0:
            raise ValueError("cpus_per_task and gpus_per_task must be non-negative")
        if self.cpus_per_task == 0 and self.gpus_per_task == 0:
            raise ValueError("a task needs some CPU or GPU (cpus_per_task or gpus_per_task > 0)")
        if self.images_per_task < 1:
            raise ValueError("images_per_task must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise ValueError("workers must be at least 1")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError(
            "running on Ray needs the 'dist' extra: pip install 'rdex[dist]' (or pip install 'ray[default]')"
        ) from None
    return ray


class _RayWorker:
    """A Ray actor: loads the model once, then explains the groups it is sent."""

    def __init__(self, model: Any, settings: _Settings) -> None:
        import ray

        from rdex.inference import keep_freed_memory

        keep_freed_memory()  # the worker process is rdex's own, as the rdex command's is
        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        gpus = ray.get_gpu_ids()
        device = torch.device("cuda") if gpus and torch.cuda.is_available() else torch.device("cpu")
        net = _load_model(model, settings.weights).to(device)
        self.explainer = _Explainer(net, settings, device)

    def run(self, units: list[_Unit]) -> list[_Outcome]:
        return self.explainer.run(units)


def _worker_count(ray: Any, options: RayOptions) -> int:
    if options.workers is not None:
        return options.workers
    resources = ray.cluster_resources()
    counts = []
    if options.cpus_per_task > 0:
        counts.append(int(resources.get("CPU", 1) // options.cpus_per_task))
    if options.gpus_per_task > 0:
        counts.append(int(resources.get("GPU", 0) // options.gpus_per_task))
        if counts[-1] == 0:
            raise ValueError(
                f"--gpus-per-task {options.gpus_per_task:g} but the Ray cluster has "
                f"{resources.get('GPU', 0):g} GPUs"
            )
    return max(1, min(counts))


def _run_ray(
    todo: list[_Pending],
    writer: _Writer,
    settings: _Settings,
    model: Any,
    options: RayOptions,
) -> None:
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        if options.address is not None:
            ray.init(address=options.address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=options.num_cpus,
                num_gpus=options.num_gpus,
                include_dashboard=False,
                log_to_driver=False,
            )
        started = True
    try:
        n_workers = _worker_count(ray, options)
        model_arg = ray.put(model) if isinstance(model, nn.Module) else model
        actor_cls = ray.remote(_RayWorker).options(
            num_cpus=options.cpus_per_task, num_gpus=options.gpus_per_task
        )
        actors = [actor_cls.remote(model_arg, settings) for _ in range(n_workers)]
        _drive(ray, actors, todo, writer, options.images_per_task)
        for actor in actors:
            ray.kill(actor)
    finally:
        if started:
            ray.shutdown()


def _ray_cause(exc: BaseException) -> str:
    """The root cause in a Ray error's text (its last ``SomeError: message`` line)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    causes = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    return causes[-1] if causes else _reason(exc)


def _drive(
    ray: Any, actors: list[Any], todo: list[_Pending], writer: _Writer, per_task: int
) -> None:
    """Keep two tasks per actor in flight; write each result as soon as it arrives."""
    from ray.exceptions import RayActorError, WorkerCrashedError

    groups = _groups(todo, per_task)
    load = {id(a): 0 for a in actors}
    alive = list(actors)
    in_flight: dict[Any, tuple[Any, list[_Pending]]] = {}
    exhausted = False
    succeeded = False
    cause: str | None = None
    while True:
        while not exhausted and alive:
            actor = min(alive, key=lambda a: load[id(a)])
            if load[id(actor)] >= 2:
                break
            group = next(groups, None)
            if group is None:
                exhausted = True
                break
            ref = actor.run.remote(_load_group(group))
            in_flight[ref] = (actor, group)
            load[id(actor)] += 1
        if not in_flight:
            if not exhausted and not alive:
                for group in groups:
                    writer.lost(group, "no Ray workers left")
            if not succeeded and cause is not None:
                # Not one task ran: a setup problem (model not loadable on the workers, ...).
                raise ValueError(f"the Ray workers could not start: {cause}")
            return
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in ready:
            actor, group = in_flight.pop(ref)
            load[id(actor)] -= 1
            try:
                outcomes = ray.get(ref)
            except (RayActorError, WorkerCrashedError) as exc:
                if actor in alive:
                    alive.remove(actor)
                cause = _ray_cause(exc)
                writer.lost(group, f"worker died: {cause}")
                continue
            succeeded = True
            writer.write(group, outcomes)
