"""The work of one group of units: decode, classify, explain (in the driver or in a Ray worker)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rdex.batch.inputs import _reason
from rdex.io import result_record
from rdex.rde import RDEConfig, RDEResult


@dataclass
class _Unit:
    """One image and method to explain (what a worker gets)."""

    name: str
    method: str
    key: str
    true_label: str | None
    data: bytes | None = None


@dataclass
class _Outcome:
    """What explaining a unit produced (what a worker returns)."""

    key: str
    status: Literal["ok", "error", "not_selected"]
    error: str | None = None
    record: dict[str, Any] = field(default_factory=dict)
    image: Tensor | None = None
    result: RDEResult | None = None


@dataclass
class _Settings:
    """Everything a worker needs besides the model."""

    methods: tuple[str, ...]
    configs: dict[str, RDEConfig]
    obfuscation: str
    size: int
    fit: str
    target: str
    only_misclassified: bool
    batch_size: int
    model_name: str
    weights: str | None
    metrics: bool = False
    #: With seeds, every image is explained once per seed and by the median of the masks.
    seeds: tuple[int, ...] | None = None

    def for_key(self, method: str, true_label: str | None) -> dict[str, Any]:
        # Runs with metric values or over seeds are distinct units, so asking for them later
        # redoes the work.
        extra: dict[str, Any] = {"metrics": True} if self.metrics else {}
        if self.seeds is not None:
            extra["seeds"] = list(self.seeds)
        return extra | {
            "model": self.model_name,
            "weights": self.weights,
            "config": dataclasses.asdict(self.configs[method]),
            "obfuscation": self.obfuscation,
            "size": self.size,
            "fit": self.fit,
            "target": self.target,
            "true_label": true_label,
        }


def _decode(data: bytes, name: str, size: int, fit: str) -> Tensor:
    """Bytes of an image file to ``(3, size, size)`` in ``[0, 1]`` with :func:`rdex.images.load_image`.

    The bytes go through a private temporary file so that decoding is exactly that of
    ``rdex explain``; its name in error messages is replaced by the input's.
    """
    import tempfile

    from rdex.images import load_image

    with tempfile.TemporaryDirectory(prefix="rdex-batch-") as tmp:
        path = Path(tmp) / ("input" + Path(name).suffix.lower())
        path.write_bytes(data)
        try:
            return load_image(path, size=size, fit=fit)  # type: ignore[arg-type]
        except (ValueError, FileNotFoundError) as exc:
            raise ValueError(str(exc).replace(str(path), name)) from None


def _label_lookup(model: nn.Module, label: str | None, *, strict: bool = False) -> int | None:
    """Class index of a label (index, name, synonym or WordNet id) by :func:`rdex.models.resolve_label`.

    Unknown labels give ``None`` (a true label the model does not know), or a ``ValueError``
    when ``strict`` (a target the user asked for).
    """
    from rdex.models import resolve_label

    if label is None:
        return None
    try:
        return resolve_label(model, label)
    except (KeyError, ValueError, IndexError) as exc:
        if strict:
            raise ValueError(f"unknown target label {label!r}: {exc}") from None
        return None


def _model_labels(model: nn.Module) -> list[str] | None:
    labels = getattr(model, "labels", None)
    return list(labels) if labels is not None else None


class _Explainer:
    """Explains groups of units with one model (owned by the driver or by one Ray worker)."""

    def __init__(self, model: nn.Module, settings: _Settings, device: torch.device) -> None:
        self.model = model
        self.settings = settings
        self.device = device
        self.labels = _model_labels(model)
        self.fixed_target = (
            None
            if settings.target in ("pred", "true")
            else _label_lookup(model, settings.target, strict=True)
        )
        self._methods: dict[str, Any] = {}

    def _method(self, name: str) -> Any:
        if name not in self._methods:
            from rdex.methods import METHODS

            cls = METHODS[name]
            method: Any = cls(
                self.model,
                config=self.settings.configs[name],
                obfuscation=self.settings.obfuscation,
            )
            if self.settings.seeds is not None:
                from rdex.seeds import SeedEnsemble

                method = SeedEnsemble(method, seeds=self.settings.seeds)
            self._methods[name] = method
        return self._methods[name]

    def run(self, units: Sequence[_Unit]) -> list[_Outcome]:
        """Explain units of one method; bad images become error outcomes."""
        s = self.settings
        outcomes: dict[int, _Outcome] = {}
        images: dict[int, Tensor] = {}
        good: list[int] = []
        for i, unit in enumerate(units):
            if unit.data is None:
                outcomes[i] = _Outcome(unit.key, "error", "could not read the file")
                continue
            try:
                images[i] = _decode(unit.data, unit.name, s.size, s.fit)
                good.append(i)
            except Exception as exc:  # any decoder failure is a bad input, not a crashed run
                outcomes[i] = _Outcome(unit.key, "error", _reason(exc))
        for lo in range(0, len(good), s.batch_size):
            idx = good[lo : lo + s.batch_size]
            x = torch.stack([images[i] for i in idx]).to(self.device)
            try:
                for i, out in zip(idx, self._explain(x, [units[i] for i in idx]), strict=True):
                    outcomes[i] = out
            except Exception as exc:
                if isinstance(exc, torch.cuda.OutOfMemoryError):
                    torch.cuda.empty_cache()
                for i in idx:
                    outcomes[i] = _Outcome(
                        units[i].key, "error", f"explaining failed: {_reason(exc)}"
                    )
        return [outcomes[i] for i in range(len(units))]

    def _explain(self, x: Tensor, units: list[_Unit]) -> list[_Outcome]:
        s = self.settings
        method = self._method(units[0].method)
        with torch.no_grad():
            was_training = [(m, m.training) for m in self.model.modules()]
            self.model.eval()
            try:
                probs = torch.softmax(self.model(x).float(), dim=1)
            finally:
                for m, mode in was_training:
                    m.training = mode
        preds = probs.argmax(dim=1).tolist()
        true = [_label_lookup(self.model, u.true_label) for u in units]
        wrong = [t is not None and t != p for t, p in zip(true, preds, strict=True)]
        chosen = [i for i in range(len(units)) if wrong[i] or not s.only_misclassified]
        outcomes: list[_Outcome] = [_Outcome(u.key, "not_selected") for u in units]
        if not chosen:
            return outcomes
        targets: list[int] = []
        for i in chosen:
            if s.target == "pred":
                targets.append(preds[i])
            elif s.target == "true":
                known = true[i]
                targets.append(known if known is not None else preds[i])
            else:
                assert self.fixed_target is not None
                targets.append(self.fixed_target)
        xs = x[chosen]
        result = method.explain(xs, target=torch.tensor(targets, device=x.device))
        scores: list[dict[str, float] | None] = [None] * len(chosen)
        if s.metrics:
            from rdex.metrics import manifest_metrics

            # Scored where the model, the images and the masks are (CPU or GPU alike).
            rde = getattr(method, "explainer", method)  # a SeedEnsemble's method
            scores = [
                manifest_metrics(self.model, xs, result, j, explainer=rde, curves=False)
                for j in range(len(chosen))
            ]
        result = result.to("cpu")
        for j, i in enumerate(chosen):
            record = result_record(result, j, self.labels)
            known = true[i]
            record["true_label"] = known
            if known is not None and self.labels is not None and 0 <= known < len(self.labels):
                record["true_label_name"] = self.labels[known]
            record["misclassified"] = wrong[i] if known is not None else None
            record["probabilities"] = _rounded_probs(result.probs[j])
            if scores[j] is not None:
                record["metrics"] = scores[j]
            outcomes[i] = _Outcome(
                units[i].key, "ok", record=record, image=xs[j].detach().cpu(), result=result[j]
            )
        return outcomes


def _rounded_probs(probs: Tensor, limit: int = 20) -> dict[str, float]:
    """The largest probabilities, index -> value (at most ``limit``)."""
    top = probs.topk(min(limit, probs.numel()))
    return {str(int(i)): float(p) for p, i in zip(*top, strict=True)}


def _load_model(model: Any, weights: str | None) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, str):
        from rdex.models import load_classifier

        return load_classifier(model, weights=weights)
    if callable(model):
        built = model()
        if not isinstance(built, nn.Module):
            raise ValueError("the model factory must return a torch.nn.Module")
        return built
    raise ValueError(f"model must be a name, an nn.Module or a factory, got {type(model).__name__}")


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
