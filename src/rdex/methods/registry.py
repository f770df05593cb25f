"""The one registry of explanation methods: the RDE presets and the baselines alike.

Every fact about a method (its name, display title, aliases, kind, default ``lambda_k``, how its
pictures are coloured, whether it is in the paper's comparison) is written once, where the method
is defined, by :func:`register_method`::

    @register_method("cartoonx", title="CartoonX", paper=True)
    class CartoonX(MethodPreset): ...

    @register_method("integrated-gradients", title="Integrated Gradients", kind="attribution",
                     aliases=("ig",), paper=True)
    def integrated_gradients(model, x, *, target=None, **settings): ...

Everything else reads it: :func:`list_methods` and :func:`get_method` (names or aliases), the
views :data:`rdex.methods.METHODS` and :data:`rdex.baselines.ATTRIBUTIONS`, figure and report
titles, the CLI's ``--method`` help and the generic tests (``tests/test_registry.py``), so adding
a method is one registration.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from torch import Tensor, nn

if TYPE_CHECKING:
    from rdex.rde import RDEConfig

__all__ = [
    "MethodKind",
    "MethodInfo",
    "Attribution",
    "RegistryView",
    "AliasView",
    "register_method",
    "get_method",
    "list_methods",
    "method_title",
    "method_cmap",
    "method_choices",
    "resolve_methods",
    "paper_methods",
]

#: ``"rde"``: an RDE preset class (``cls(model, **options).explain(x)``); ``"attribution"``: a
#: baseline function ``fn(model, x, *, target=None, **settings) -> (B, C, H, W)``.
MethodKind = Literal["rde", "attribution"]

T = TypeVar("T")


class Attribution(Protocol):
    """The common signature of every method: ``(model, x, *, target=None, **settings)`` to a
    per-pixel picture ``(B, 1, H, W)``."""

    def __call__(
        self, model: nn.Module, x: Tensor, *, target: Any = None, **settings: Any
    ) -> Tensor: ...


@dataclass(frozen=True)
class MethodInfo:
    """What rdex knows about one method.

    Attributes:
        name: The name users type (``--method``, ``compare_methods(methods=...)``).
        title: Display title (figure columns, report cards).
        kind: ``"rde"`` or ``"attribution"`` (see :data:`MethodKind`).
        factory: The RDE class, or the baseline function.
        aliases: Other accepted names (``"ig"``).
        default_lambda_k: Default sparsity ``lambda * k`` of an RDE method (``None`` otherwise).
        cmap: Colour map of the RDE picture (attributions are drawn as heat maps).
        paper: Part of the paper's comparison (Figures 5 and 6), the default method set.
    """

    name: str
    title: str
    kind: MethodKind
    factory: Callable[..., Any]
    aliases: tuple[str, ...] = ()
    default_lambda_k: float | None = None
    cmap: str = "gray"
    paper: bool = False
    attribution: Attribution = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        maker = _rde_attribution if self.kind == "rde" else _baseline_attribution
        object.__setattr__(self, "attribution", maker(self))

    @property
    def is_rde(self) -> bool:
        """Whether this is an RDE method (an optimised mask) rather than a baseline."""
        return self.kind == "rde"

    def config(self, preset_name: str | None = None, **overrides: Any) -> RDEConfig:
        """The method's :class:`~rdex.rde.RDEConfig` under a named preset with its default
        ``lambda_k`` (what the batch runner and ``rdex batch`` start from); ``preset_name``
        defaults to :data:`rdex.config.DEFAULT_PRESET`.

        Raises:
            ValueError: For a baseline, which has no RDE config.
        """
        if not self.is_rde:
            raise ValueError(f"{self.name!r} is not an RDE method")
        from rdex.config import DEFAULT_PRESET, preset

        overrides.setdefault("lambda_k", self.default_lambda_k)
        return preset(preset_name or DEFAULT_PRESET, **overrides)


_REGISTRY: dict[str, MethodInfo] = {}
_ALIASES: dict[str, str] = {}


def register_method(
    name: str,
    *,
    title: str,
    kind: MethodKind = "rde",
    aliases: Sequence[str] = (),
    cmap: str = "gray",
    paper: bool = False,
) -> Callable[[T], T]:
    """Register an RDE class or a baseline function under ``name`` (a decorator).

    An RDE class's ``default_lambda_k`` attribute is read from the class (and the class's
    ``method`` attribute is set to ``name``).

    Raises:
        ValueError: When the name or an alias is taken.
    """

    def decorate(obj: T) -> T:
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                raise ValueError(f"method name {key!r} is already registered")
        lam = getattr(obj, "default_lambda_k", None) if kind == "rde" else None
        if kind == "rde":
            obj.method = name  # type: ignore[attr-defined]
        _REGISTRY[name] = MethodInfo(
            name=name,
            title=title,
            kind=kind,
            factory=obj,  # type: ignore[arg-type]
            aliases=tuple(aliases),
            default_lambda_k=None if lam is None else float(lam),
            cmap=cmap,
            paper=paper,
        )
        _ALIASES.update(dict.fromkeys(aliases, name))
        return obj

    return decorate


def _load() -> None:
    """Import the modules that register methods (the baselines register on import)."""
    import rdex.baselines  # noqa: F401
    import rdex.methods  # noqa: F401


def list_methods(
    pattern: str = "*", *, kind: MethodKind | None = None, paper: bool | None = None
) -> list[MethodInfo]:
    """Registered methods in registration order (RDE methods first), filtered.

    Args:
        pattern: Shell-style pattern on the name (``"*x"``).
        kind: Only this kind.
        paper: Only methods in (``True``) or out of (``False``) the paper's comparison.
    """
    _load()
    return [
        info
        for info in _REGISTRY.values()
        if fnmatch.fnmatchcase(info.name, pattern)
        and (kind is None or info.kind == kind)
        and (paper is None or info.paper == paper)
    ]


def get_method(name: str) -> MethodInfo:
    """The entry of a method name or alias.

    Raises:
        ValueError: For an unknown name (the message lists the choices).
    """
    _load()
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise ValueError(
            f"unknown method {name!r}; choose from {', '.join(_REGISTRY)} "
            f"(or {', '.join(_ALIASES)})"
        )
    return _REGISTRY[key]


def method_title(name: str) -> str:
    """Display title of a method (its name when it is not registered)."""
    _load()
    info = _REGISTRY.get(_ALIASES.get(name, name))
    return info.title if info else name


def method_cmap(name: str) -> str:
    """Colour map of a method's explanation picture (``"gray"`` when not registered)."""
    _load()
    info = _REGISTRY.get(_ALIASES.get(name, name))
    return info.cmap if info else "gray"


def method_choices(kind: MethodKind | None = None) -> str:
    """The registered methods (of one kind if given) for help texts, aliases in brackets:
    ``"cartoonx, pixel-rde (pixel), ..."``."""
    return ", ".join(
        i.name + (f" ({', '.join(i.aliases)})" if i.aliases else "")
        for i in list_methods(kind=kind)
    )


def paper_methods(kind: MethodKind | None = None) -> list[str]:
    """Names of the methods of the paper's comparison (Figures 5 and 6), in order, of one kind
    if given."""
    return [info.name for info in list_methods(kind=kind, paper=True)]


def resolve_methods(value: str | Sequence[str], *, kind: MethodKind | None = None) -> list[str]:
    """Method names from a comma-separated string or a list, aliases expanded, checked.

    Args:
        value: Names or aliases.
        kind: Accept only methods of this kind.

    Raises:
        ValueError: For an unknown name or one of another kind, or when no name is given.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    infos = list_methods(kind=kind)
    known = {key: info.name for info in infos for key in (info.name, *info.aliases)}
    names = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item not in known:
            choices = ", ".join(i.name for i in infos)
            aliases = ", ".join(a for i in infos for a in i.aliases)
            raise ValueError(
                f"unknown method {item!r}; choose from {choices}"
                + (f" (or {aliases})" if aliases else "")
            )
        names.append(known[item])
    if not names:
        raise ValueError("no methods given")
    return names


class RegistryView(Mapping[str, T], Generic[T]):
    """A read-only mapping over the registry, always current: ``name -> get(info)``."""

    def __init__(self, get: Callable[[MethodInfo], T], kind: MethodKind | None = None) -> None:
        self._get = get
        self._kind = kind

    def _infos(self) -> list[MethodInfo]:
        return list_methods(kind=self._kind)

    def __getitem__(self, name: str) -> T:
        _load()
        info = _REGISTRY.get(name)
        if info is None or (self._kind is not None and info.kind != self._kind):
            raise KeyError(name)
        return self._get(info)

    def __iter__(self) -> Iterator[str]:
        return iter([info.name for info in self._infos()])

    def __len__(self) -> int:
        return len(self._infos())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)})"


class AliasView(Mapping[str, str]):
    """A read-only mapping ``alias -> name`` over the registry, always current."""

    def __getitem__(self, alias: str) -> str:
        _load()
        return _ALIASES[alias]

    def __iter__(self) -> Iterator[str]:
        _load()
        return iter(list(_ALIASES))

    def __len__(self) -> int:
        _load()
        return len(_ALIASES)


def _rde_attribution(info: MethodInfo) -> Attribution:
    def attribution(
        model: nn.Module,
        x: Tensor,
        *,
        target: Any = None,
        config: RDEConfig | None = None,
        preset: str | None = None,
        progress: bool = False,
        desc: str | None = None,
        **settings: Any,
    ) -> Tensor:
        from rdex.baselines import _check_input
        from rdex.config import DEFAULT_PRESET

        explainer = info.factory(model, preset=preset or DEFAULT_PRESET, config=config, **settings)
        return explainer.explain(
            _check_input(x), target=target, progress=progress, desc=desc
        ).explanation

    attribution.__name__ = info.name.replace("-", "_")
    attribution.__doc__ = (
        f"The {info.title} explanation picture ``(B, 1, H, W)``; ``config`` (an RDEConfig) or "
        "``preset`` (default :data:`rdex.config.DEFAULT_PRESET`) plus overrides such as ``lambda_k``, ``steps``, "
        "``obfuscation``, ``distortion``; ``progress`` shows a bar with the current loss."
    )
    return attribution


def _baseline_attribution(info: MethodInfo) -> Attribution:
    fn = info.factory

    def attribution(
        model: nn.Module,
        x: Tensor,
        *,
        target: Any = None,
        channels: Any = "sum",
        **settings: Any,
    ) -> Tensor:
        from rdex.baselines import reduce_channels

        return reduce_channels(fn(model, x, target=target, **settings), channels)

    attribution.__name__ = fn.__name__
    attribution.__doc__ = (
        f"``{fn.__name__}`` reduced to a per-pixel map ``(B, 1, H, W)`` (``channels``: see "
        f":func:`rdex.baselines.reduce_channels`; other settings go to :func:`{fn.__name__}`)."
    )
    return attribution
