"""Stems, embeddings and heads shared by several families."""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from nas.config import Params
from nas.domains import Choice, IntRange, Seq, param
from nas.layers import ConvNormAct, Dim, LayerNorm2d, bn_cost, conv_cost, conv_norm_act_cost, hw, linear_cost, ln_cost
from nas.registry import Cost, Geometry, register

NORMS = ("none", "bn", "ln", "gn")


def make_norm2d(kind: str, channels: int) -> nn.Module:
    """A norm for NCHW maps: BatchNorm, LayerNorm over channels, or GroupNorm with one group."""
    return {"none": nn.Identity, "bn": lambda c: nn.BatchNorm2d(c), "ln": lambda c: LayerNorm2d(c),
            "gn": lambda c: nn.GroupNorm(1, c)}[kind](channels)


def norm2d_cost(kind: str, channels: int, size: tuple[int, int]) -> Cost:
    if kind == "none":
        return Cost()
    return bn_cost(channels, size) if kind == "bn" else ln_cost(channels, hw(size))


# ------------------------------------------------------------------------------ patch stem
@dataclass(frozen=True)
class PatchStemParams(Params):
    """One strided convolution: patchify (kernel = patch) or overlapping (kernel > patch)."""

    patch_size: int = param(4, Choice(2, 4, 8, 16), "stride of the stem")
    kernel_size: int = param(4, Choice(2, 3, 4, 7, 8, 16), "kernel; larger than the patch overlaps")
    norm: str = param("none", Choice(*NORMS), "norm after the conv")
    bias: bool = param(True, Choice(True, False))

    def check(self, geo: Geometry) -> Optional[str]:
        if self.kernel_size < self.patch_size:
            return f"kernel_size {self.kernel_size} is smaller than patch_size {self.patch_size}"
        return None


def _patch_padding(p: PatchStemParams) -> int:
    return (p.kernel_size - p.patch_size + 1) // 2


def _patch_stem_cost(geo: Geometry, p: PatchStemParams) -> Cost:
    out = geo.out_size
    return (conv_cost(geo.in_channels, geo.out_channels, p.kernel_size, out, bias=p.bias)
            + norm2d_cost(p.norm, geo.out_channels, out))


@register("stem", "patch", PatchStemParams, count=_patch_stem_cost, stride=lambda p: p.patch_size)
def build_patch_stem(geo: Geometry, p: PatchStemParams) -> nn.Module:
    """Patch embedding: one conv of stride ``patch_size`` (ViT_P, Swin, PoolFormer, sMLPNet)."""
    return nn.Sequential(
        nn.Conv2d(geo.in_channels, geo.out_channels, p.kernel_size, p.patch_size, _patch_padding(p), bias=p.bias),
        make_norm2d(p.norm, geo.out_channels))


# ------------------------------------------------------------------------------ conv-stack stem
@dataclass(frozen=True)
class ConvStackStemParams(Params):
    """Stacked 3x3 convs (norm + act after each), optionally closed by a 1x1 projection.

    Covers the early-convolution ViT_C stem (3x3 s2 x4 + 1x1), the two-conv stems of CoAtNet
    and EfficientFormer, and the single-conv stems of MobileViT, Mobile-Former and EfficientViT.
    Without ``project`` the last 3x3 conv outputs the stem width (``widths[-1]`` must equal it).
    """

    widths: tuple = param((32, 64), Seq(IntRange(8, 1024, 4), 1, 6), "output channels of each 3x3 conv")
    strides: tuple = param((2, 2), Seq(Choice(1, 2), 1, 6), "stride of each 3x3 conv")
    act: str = param("relu", Choice("relu", "relu6", "gelu", "silu", "hswish"))
    norm: str = param("bn", Choice("bn", "none"))
    last_norm_act: bool = param(True, Choice(True, False), "norm + act after the last 3x3 conv")
    project: bool = param(False, Choice(False, True), "close with a 1x1 conv (with bias) to the stem width")
    bias: bool = param(False, Choice(False, True), "bias in the 3x3 convs")

    @property
    def stride(self) -> int:
        return math.prod(self.strides)

    def check(self, geo: Geometry) -> Optional[str]:
        if len(self.widths) != len(self.strides):
            return f"widths {self.widths} and strides {self.strides} must have the same length"
        if not self.project and self.widths[-1] != geo.out_channels:
            return f"the last 3x3 conv width {self.widths[-1]} must equal the stem width {geo.out_channels} (or set project)"
        return None


def _conv_layers(p: ConvStackStemParams, cin: int):
    """(cin, cout, stride, normed, activated) of each 3x3 conv."""
    n = len(p.widths)
    for i, (w, s) in enumerate(zip(p.widths, p.strides)):
        plain = i == n - 1 and not p.last_norm_act and not p.project
        yield cin, w, s, p.norm == "bn" and not plain, not plain
        cin = w


def _conv_stack_cost(geo: Geometry, p: ConvStackStemParams) -> Cost:
    cost, size = Cost(), geo.size
    for cin, cout, s, normed, _ in _conv_layers(p, geo.in_channels):
        size = (-(-size[0] // s), -(-size[1] // s))
        cost += conv_norm_act_cost(cin, cout, 3, size, norm=normed, bias=p.bias)
    if p.project:
        cost += conv_cost(p.widths[-1], geo.out_channels, 1, size, bias=True)
    return cost


@register("stem", "conv_stack", ConvStackStemParams, count=_conv_stack_cost, stride=lambda p: p.stride)
def build_conv_stack_stem(geo: Geometry, p: ConvStackStemParams) -> nn.Module:
    """3x3 convs with BN + activation (the convolutional stems of ViT_C, CoAtNet, EfficientFormer, ...)."""
    layers = [ConvNormAct(cin, cout, 3, s, act=p.act if activated else "none", norm=normed, bias=p.bias)
              for cin, cout, s, normed, activated in _conv_layers(p, geo.in_channels)]
    if p.project:
        layers.append(nn.Conv2d(p.widths[-1], geo.out_channels, 1))
    return nn.Sequential(*layers)


# ------------------------------------------------------------------------------ embeddings
@dataclass(frozen=True)
class NoEmbedParams(Params):
    pass


@register("embed", "none", NoEmbedParams, count=lambda geo, p: Cost())
def build_no_embed(geo: Geometry, p: NoEmbedParams) -> nn.Module:
    """No embedding: the stage's first block downsamples and changes width itself."""
    return nn.Identity()


@dataclass(frozen=True)
class ConvEmbedParams(Params):
    kernel_size: int = param(3, Choice(2, 3), "3 overlaps (PoolFormer, EfficientFormer); 2 = stride (sMLPNet)")
    norm: str = param("none", Choice(*NORMS))
    bias: bool = param(True, Choice(True, False))


def _conv_embed_cost(geo: Geometry, p: ConvEmbedParams) -> Cost:
    out = geo.out_size
    return (conv_cost(geo.in_channels, geo.out_channels, p.kernel_size, out, bias=p.bias)
            + norm2d_cost(p.norm, geo.out_channels, out))


@register("embed", "conv", ConvEmbedParams, count=_conv_embed_cost)
def build_conv_embed(geo: Geometry, p: ConvEmbedParams) -> nn.Module:
    """One strided conv between stages, optionally normalised."""
    k = max(p.kernel_size, geo.stride)
    pad = (k - geo.stride + 1) // 2
    return nn.Sequential(nn.Conv2d(geo.in_channels, geo.out_channels, p.kernel_size, geo.stride, pad, bias=p.bias),
                         make_norm2d(p.norm, geo.out_channels))


@dataclass(frozen=True)
class PatchMergingParams(Params):
    def check(self, geo: Geometry) -> Optional[str]:
        if geo.stride != 2:
            return f"patch merging halves the resolution; the stage stride must be 2, got {geo.stride}"
        return None


def _patch_merging_cost(geo: Geometry, p: PatchMergingParams) -> Cost:
    n = hw(geo.out_size)
    c4 = 4 * geo.in_channels
    return ln_cost(c4, n) + linear_cost(c4, geo.out_channels, n, bias=False)


class PatchMerging(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * cin)
        self.reduction = nn.Linear(4 * cin, cout, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            x = nn.functional.pad(x, (0, w % 2, 0, h % 2))
        x = x.permute(0, 2, 3, 1)
        # Swin's order: (0,0), (1,0), (0,1), (1,1)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x)).permute(0, 3, 1, 2)

    def slice_layout(self) -> dict:
        neighbours = Dim((4, -1))  # the 2x2 neighbours' channels, concatenated
        return {"norm.weight": (neighbours,), "norm.bias": (neighbours,), "reduction.weight": (None, neighbours)}


@register("embed", "patch_merging", PatchMergingParams, count=_patch_merging_cost)
def build_patch_merging(geo: Geometry, p: PatchMergingParams) -> nn.Module:
    """Swin's patch merging: concatenate 2x2 neighbours, LayerNorm(4C), Linear(4C -> C') without bias."""
    return PatchMerging(geo.in_channels, geo.out_channels)


# ------------------------------------------------------------------------------ heads
@dataclass(frozen=True)
class PoolHeadParams(Params):
    """Norm, pool, (optional distillation head), classifier."""

    norm: str = param("ln", Choice(*NORMS), "norm before pooling")
    pool: str = param("mean", Choice("mean", "token"), "mean of the map, or the first global token (ViT's cls)")
    distillation: bool = param(False, Choice(False, True), "a second classifier averaged at eval (DeiT, EfficientFormer)")

    def check(self, geo: Geometry) -> Optional[str]:
        if self.pool == "token" and geo.tokens is None:
            return "pool='token' needs global tokens (set global_tokens.num >= 1)"
        if self.pool == "token" and geo.tokens.dim != geo.in_channels:
            return (f"pool='token' needs global tokens as wide as the last stage ({geo.in_channels}), "
                    f"got {geo.tokens.dim}")
        return None


def _pool_head_cost(geo: Geometry, p: PoolHeadParams) -> Cost:
    c, k = geo.in_channels, geo.out_channels
    if p.pool == "token":
        cost = ln_cost(c, 1) if p.norm == "ln" else Cost()
    else:
        cost = norm2d_cost(p.norm, c, geo.size)
    return cost + linear_cost(c, k, 1) * (2 if p.distillation else 1)


class PoolHead(nn.Module):
    def __init__(self, cin: int, classes: int, p: PoolHeadParams):
        super().__init__()
        self.pool = p.pool
        if p.pool == "token":
            self.norm = nn.LayerNorm(cin) if p.norm == "ln" else nn.Identity()
        else:
            self.norm = make_norm2d(p.norm, cin)
        self.fc = nn.Linear(cin, classes)
        self.dist_fc = nn.Linear(cin, classes) if p.distillation else None

    def forward(self, x: torch.Tensor, tokens: Optional[torch.Tensor]) -> torch.Tensor:
        if self.pool == "token":
            x = self.norm(tokens[:, 0])
        else:
            x = self.norm(x).mean((2, 3))
        if self.dist_fc is not None:
            return (self.fc(x) + self.dist_fc(x)) / 2
        return self.fc(x)


@register("head", "pool", PoolHeadParams, count=_pool_head_cost)
def build_pool_head(geo: Geometry, p: PoolHeadParams) -> nn.Module:
    """Norm -> global mean (or class token) -> Linear: PoolFormer, Swin, sMLPNet, ViT, EfficientFormer."""
    return PoolHead(geo.in_channels, geo.out_channels, p)

