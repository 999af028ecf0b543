"""The one way models are made: ``build_model(arch)``; and the same walk, counted analytically.

Both walk the architecture once through :func:`components`, which hands every component its
geometry, so the model and its analytic cost cannot disagree about shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Optional

import torch
from torch import nn

from nas.config import ArchConfig, ConfigError, Params
from nas.layers import set_drop_path
from nas.registry import ComponentSpec, Cost, Geometry, Tokens, lookup, out_size


@dataclass(frozen=True)
class Placed:
    """A component with its geometry: ``where`` is a dotted path such as ``stages.2.embed``."""

    where: str
    spec: Optional[ComponentSpec]  # None for the built-in token projection
    geometry: Geometry
    params: Optional[Params]
    depth: int = 1


def components(arch: ArchConfig, resolution: Optional[int] = None, num_classes: int = 1000) -> Iterator[Placed]:
    """Every component of ``arch`` in forward order, with its geometry at ``resolution``."""
    res = resolution or arch.resolution
    size, dsize = (res, res), (arch.resolution, arch.resolution)
    stem = lookup("stem", arch.stem.type)
    stem_geo = Geometry(3, arch.stem.width, stem.stride(arch.stem.params), size, dsize)
    yield Placed("stem", stem, stem_geo, arch.stem.params)
    size, dsize, channels = stem_geo.out_size, stem_geo.design_out_size, arch.stem.width
    tokens = None
    if arch.global_tokens is not None:
        tokens = Tokens(arch.global_tokens.num, arch.global_tokens.dim or channels)
    for i, st in enumerate(arch.stages):
        geo = Geometry(channels, st.width, st.stride, size, dsize, tokens)
        if st.embed.type != "none":
            yield Placed(f"stages.{i}.embed", lookup("embed", st.embed.type), geo, st.embed.params)
            geo = geo.after(st.stride, st.width)
        if tokens is not None and arch.global_tokens.dim is None and tokens.dim != st.width:
            yield Placed(f"stages.{i}.token_proj", None, replace(geo, in_channels=tokens.dim, out_channels=st.width), None)
            tokens = Tokens(tokens.num, st.width)
            geo = replace(geo, tokens=tokens)
        yield Placed(f"stages.{i}", lookup("block", st.block), geo, st.params, st.depth)
        size, dsize, channels = out_size(size, st.stride), out_size(dsize, st.stride), st.width
    head = lookup("head", arch.head.type)
    yield Placed("head", head, Geometry(channels, num_classes, 1, size, dsize, tokens), arch.head.params)


def network_stride(arch: ArchConfig) -> int:
    """The total down-sampling factor: the stem's stride times every stage's."""
    total = lookup("stem", arch.stem.type).stride(arch.stem.params)
    for st in arch.stages:
        total *= st.stride
    return total


def scale_widths(arch: ArchConfig, mult: float) -> ArchConfig:
    """``arch`` with the stem and every stage ``mult`` times as wide, for cheaper proxy training.

    Equal widths stay equal (a stage that cannot change the width keeps its input's). Each width
    becomes the valid one nearest ``mult`` times it, multiples of 8 first, since heads, groups and
    head sizes must still divide it; a width that no smaller value fits is kept. Depths, layout and
    every other field are kept."""
    if not 0 < mult <= 1:
        raise ConfigError(f"width_mult must be in (0, 1], got {mult}")
    if mult == 1:
        return arch

    def rescaled(mapping: dict[int, int]) -> ArchConfig:
        return arch.replace(stem=replace(arch.stem, width=mapping.get(arch.stem.width, arch.stem.width)),
                            stages=tuple(replace(st, width=mapping.get(st.width, st.width)) for st in arch.stages))

    mapping: dict[int, int] = {}
    for width in sorted({arch.stem.width, *(st.width for st in arch.stages)}):
        for w in sorted(range(1, width + 1), key=lambda w: (w % 8 != 0, abs(w - width * mult), -w)):
            try:
                valid = check_arch(rescaled({**mapping, width: w})) is None
            except ConfigError:
                valid = False
            if valid:
                mapping[width] = w
                break
    return rescaled(mapping)


def check_arch(arch: ArchConfig) -> Optional[str]:
    """The first rule ``arch`` breaks, as a sentence naming the value, or None if it is valid."""
    try:
        if not arch.stages:
            return "an architecture needs at least one stage"
        for i, st in enumerate(arch.stages):
            if st.depth < 1:
                return f"stages.{i}.depth must be >= 1, got {st.depth}"
            if st.width < 1:
                return f"stages.{i}.width must be >= 1, got {st.width}"
            if st.stride not in (1, 2, 4):
                return f"stages.{i}.stride must be 1, 2 or 4, got {st.stride}"
        total = network_stride(arch)
        if arch.resolution % total:
            return f"resolution {arch.resolution} is not divisible by the network stride {total}"
        if arch.global_tokens is not None and arch.global_tokens.num < 1:
            return f"global_tokens.num must be >= 1, got {arch.global_tokens.num}"
        for p in components(arch):
            if p.spec is None:
                continue
            if p.spec.kind == "block":
                g = p.geometry
                if (g.stride > 1 or g.in_channels != g.out_channels) and not p.spec.can_downsample:
                    i = p.where.split(".")[1]
                    return (f"{p.where}: block {p.spec.name!r} cannot change stride or width itself "
                            f"(stride {g.stride}, {g.in_channels}->{g.out_channels} channels); give stages.{i}.embed a type")
            reason = p.params.check(p.geometry)
            if reason:
                return f"{p.where} ({p.spec.name}): {reason}"
    except ConfigError as e:
        return str(e)
    return None


def _validated(arch: ArchConfig) -> None:
    if not isinstance(arch, ArchConfig):
        raise TypeError(f"expected an ArchConfig, got {type(arch).__name__}; use nas.get_arch(name) or nas.load_config(path)")
    reason = check_arch(arch)
    if reason:
        raise ConfigError(f"invalid architecture: {reason}")


class TokenProjection(nn.Module):
    """Carries global tokens to a new width: LayerNorm then a bias-free Linear (as in LightViT)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(tokens))


def token_projection_cost(in_dim: int, out_dim: int, num: int) -> Cost:
    return Cost(2 * in_dim + in_dim * out_dim, num * (5 * in_dim + in_dim * out_dim))


class Stage(nn.Module):
    def __init__(self, embed: nn.Module, token_proj: Optional[nn.Module], blocks: nn.Module):
        super().__init__()
        self.embed = embed
        self.token_proj = token_proj
        self.blocks = blocks

    def forward(self, x: torch.Tensor, tokens: Optional[torch.Tensor]):
        x = self.embed(x)
        if self.token_proj is not None:
            tokens = self.token_proj(tokens)
        return self.blocks(x, tokens)


class Network(nn.Module):
    """A plain module: stem, stages, head, and optional learned global tokens."""

    def __init__(self, stem: nn.Module, stages: list[Stage], head: nn.Module, global_tokens: Optional[Tokens]):
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.head = head
        if global_tokens is not None:
            self.global_tokens = nn.Parameter(torch.zeros(1, global_tokens.num, global_tokens.dim))
            nn.init.trunc_normal_(self.global_tokens, std=0.02)
        else:
            self.global_tokens = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        tokens = self.global_tokens.expand(x.shape[0], -1, -1) if self.global_tokens is not None else None
        for stage in self.stages:
            x, tokens = stage(x, tokens)
        return self.head(x, tokens)


def build_component(p: Placed) -> nn.Module:
    """The module of one component; ``module_path(p)`` is where the network holds it."""
    g = p.geometry
    if p.spec is None:
        return TokenProjection(g.in_channels, g.out_channels)
    if p.spec.kind == "block":
        return p.spec.build(g, p.depth, p.params)
    return p.spec.build(g, p.params)


def module_path(p: Placed) -> str:
    """Where ``build_model``'s network holds component ``p`` (its state_dict prefix)."""
    return f"{p.where}.blocks" if p.spec is not None and p.spec.kind == "block" else p.where


def build_model(arch: ArchConfig, num_classes: int = 1000, drop_path_rate: float = 0.0) -> nn.Module:
    """Build the plain PyTorch module for ``arch`` (a pure function of the config).

    ``drop_path_rate`` > 0 gives every residual block of the stages stochastic depth, rising
    linearly from 0 at the first block to the rate at the last (training only; the parameters,
    state_dict keys, counts and eval-mode graph do not change with it).

    >>> import nas, torch
    >>> model = nas.build_model(nas.get_arch("poolformer_s12"), num_classes=10)
    >>> model(torch.randn(1, 3, 64, 64)).shape
    torch.Size([1, 10])
    """
    _validated(arch)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if not 0.0 <= drop_path_rate < 1.0:
        raise ConfigError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
    stem, head, stages = None, None, []
    embed, token_proj = nn.Identity(), None
    for p in components(arch, num_classes=num_classes):
        module = build_component(p)
        if p.where == "stem":
            stem = module
        elif p.where == "head":
            head = module
        elif p.where.endswith(".embed"):
            embed = module
        elif p.where.endswith(".token_proj"):
            token_proj = module
        else:
            stages.append(Stage(embed, token_proj, module))
            embed, token_proj = nn.Identity(), None
    tokens = None
    if arch.global_tokens is not None:
        tokens = Tokens(arch.global_tokens.num, arch.global_tokens.dim or arch.stem.width)
    network = Network(stem, stages, head, tokens)
    if drop_path_rate:
        set_drop_path(network.stages, drop_path_rate)
    return network


def analytic_cost(arch: ArchConfig, resolution: Optional[int] = None, num_classes: int = 1000) -> Cost:
    """Params and MACs from the config alone, no module built (agrees with fvcore within 1%)."""
    _validated(arch)
    total = Cost()
    if arch.global_tokens is not None:
        total += Cost(arch.global_tokens.num * (arch.global_tokens.dim or arch.stem.width), 0)
    for p in components(arch, resolution, num_classes):
        g = p.geometry
        if p.spec is None:
            total += token_projection_cost(g.in_channels, g.out_channels, g.tokens.num)
        elif p.spec.kind == "block":
            total += p.spec.count(g, p.depth, p.params)
        else:
            total += p.spec.count(g, p.params)
    return total
