"""One registry of components, one constructor contract.

Four kinds of component make a model; each registered type supplies its typed ``Params``,
a builder and an analytic cost function with the same signature for every type of its kind:

=========  ====================================================  =============================
kind       build(...) -> nn.Module                               module's forward
=========  ====================================================  =============================
stem       ``build(geo: Geometry, params)``                      ``x -> x``
embed      ``build(geo: Geometry, params)``                      ``x -> x`` (NCHW)
block      ``build(geo: Geometry, depth: int, params)``          ``(x, tokens) -> (x, tokens)``
head       ``build(geo: Geometry, params)``, out = classes       ``(x, tokens) -> logits``
=========  ====================================================  =============================

``count`` takes the same arguments and returns a :class:`Cost` computed from arithmetic
alone (no module built). It must agree with fvcore on the built module (MACs within 1%,
params exactly); the contract tests enforce this for every registered type.

Between stages the feature map is always NCHW; token-based blocks reshape internally.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

from nas.config import ConfigError, Params

KINDS = ("stem", "embed", "block", "head")
BLOCK_CODES = ("C", "T", "MLP", "Pool")


@dataclass(frozen=True)
class Tokens:
    """Shape of the global tokens reaching a component: ``num`` tokens of ``dim`` channels."""

    num: int
    dim: int


@dataclass(frozen=True)
class Geometry:
    """Where a component sits. ``size`` is the input (H, W) at the resolution being run or
    counted; ``design_size`` the same at the architecture's design resolution, which sizes
    resolution-tied parameters. ``stride`` is what this component itself must downsample."""

    in_channels: int
    out_channels: int
    stride: int
    size: tuple[int, int]
    design_size: tuple[int, int]
    tokens: Optional[Tokens] = None

    @property
    def out_size(self) -> tuple[int, int]:
        return out_size(self.size, self.stride)

    @property
    def design_out_size(self) -> tuple[int, int]:
        return out_size(self.design_size, self.stride)

    def after(self, stride_done: int, channels: int) -> "Geometry":
        """The geometry left for the next component once ``stride_done`` and ``channels`` are reached."""
        return replace(self, in_channels=channels, stride=self.stride // stride_done,
                       size=out_size(self.size, stride_done), design_size=out_size(self.design_size, stride_done))


def out_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    # every downsampling layer here pads so that the output is ceil(input / stride)
    return (-(-size[0] // stride), -(-size[1] // stride))


@dataclass(frozen=True)
class Cost:
    """Parameters and multiply-accumulates (fvcore's convention, attention matmuls included)."""

    params: int = 0
    macs: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.macs + other.macs)

    def __mul__(self, k: int) -> "Cost":
        return Cost(self.params * k, self.macs * k)

    __rmul__ = __mul__


@dataclass(frozen=True)
class ComponentSpec:
    kind: str
    name: str
    params: type
    build: Callable
    count: Callable
    doc: str = ""
    code: str = ""  # blocks: C, T, MLP or Pool
    # blocks: can the first block take the stage's stride and width change itself?
    can_downsample: bool = False
    # stems: total stride as a function of params
    stride: Optional[Callable[[Params], int]] = None


_REGISTRY: dict[str, dict[str, ComponentSpec]] = {k: {} for k in KINDS}


def register(kind: str, name: str, params: type, *, count: Callable, doc: str = "", code: str = "",
             can_downsample: bool = False, stride: Optional[Callable] = None) -> Callable:
    """Decorator registering ``build`` for component ``name`` of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; kinds: {KINDS}")
    if kind == "block" and code not in BLOCK_CODES:
        raise ValueError(f"block {name!r} needs a code in {BLOCK_CODES}, got {code!r}")
    if kind == "stem" and stride is None:
        raise ValueError(f"stem {name!r} must declare its stride")

    def wrap(build: Callable) -> Callable:
        if name in _REGISTRY[kind]:
            raise ValueError(f"{kind} {name!r} is registered twice")
        _REGISTRY[kind][name] = ComponentSpec(kind, name, params, build, count, doc or (build.__doc__ or "").strip(),
                                              code, can_downsample, stride)
        return build

    return wrap


def lookup(kind: str, name: str) -> ComponentSpec:
    _load()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        raise ConfigError(f"unknown {kind} type {name!r}; choose from {sorted(_REGISTRY[kind])}") from None


def names(kind: str) -> list[str]:
    _load()
    return sorted(_REGISTRY[kind])


def specs(kind: str) -> list[ComponentSpec]:
    _load()
    return [_REGISTRY[kind][n] for n in sorted(_REGISTRY[kind])]


def _load() -> None:
    import nas.blocks  # noqa: F401  (registers every component on first use)
