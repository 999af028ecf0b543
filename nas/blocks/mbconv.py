"""The MBConv family: inverted residuals (MobileNetV2), CoAtNet's pre-norm MBConv, EfficientViT's
fewer-norm MBConv and DSConv, fused MBConv, and the convolutional embedding built from them.

One block, three norm styles (the only structural differences between those papers):

* ``post``  -- conv-BN-act after the expansion and the depthwise conv, conv-BN for the projection
  (MobileNetV2, MobileViT's MV2, EfficientViT without fewer-norm);
* ``pre``   -- BN on the block input, conv-BN-act, dw-BN-act, projection with a bias and no norm
  (CoAtNet, as timm's MbConvBlock);
* ``fewer`` -- conv+bias+act, dw+bias+act, projection-BN (EfficientViT's fewer-norm blocks).

An ``expand_ratio`` of 1 drops the expansion conv: a depthwise-separable conv (MobileNetV2's
first block, EfficientViT's DSConv).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from nas.config import Params
from nas.domains import Choice, IntRange, param
from nas.layers import (ConvNormAct, DropPath, SqueezeExcite, XStack, bn_cost, conv_cost, conv_norm_act_cost,
                        squeeze_excite_cost)
from nas.registry import Cost, Geometry, out_size, register

ACTS = ("relu", "relu6", "gelu", "silu", "hswish")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a width to a multiple of ``divisor`` without losing more than 10% (MobileNet rule)."""
    if divisor <= 1:
        return int(round(value))
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True)
class MBConvParams(Params):
    """Style of an inverted-residual block; widths and stride come from the stage."""

    expand_ratio: float = param(4.0, Choice(1.0, 2.0, 3.0, 4.0, 6.0),
                                "hidden width / the width named by expand_from; 1 = no expansion conv (DSConv)")
    expand_from: str = param("in", Choice("in", "out"), "input width (MobileNetV2) or output width (CoAtNet)")
    kernel_size: int = param(3, Choice(3, 5, 7), "depthwise kernel")
    se_ratio: float = param(0.0, Choice(0.0, 0.0625, 0.125, 0.25), "squeeze-excite width / se_from width; 0 = none")
    se_from: str = param("hidden", Choice("hidden", "in", "out"), "the width the SE reduction is a fraction of")
    se_act: str = param("silu", Choice("silu", "relu"), "activation inside the squeeze-excite")
    act: str = param("relu6", Choice(*ACTS))
    norm_style: str = param("post", Choice("post", "pre", "fewer"), "see the module docstring")
    stride_on: str = param("dw", Choice("dw", "expand"), "which conv of a downsampling block is strided")
    shortcut: str = param("none", Choice("none", "pool_proj"),
                          "when the shape changes: no residual, or avg-pool + 1x1 projection of the input")
    hidden_divisor: int = param(8, Choice(1, 8), "round the hidden width to a multiple of this")

    def check(self, geo: Geometry) -> Optional[str]:
        if geo.stride > 1 and self.kernel_size < geo.stride:
            return f"kernel_size {self.kernel_size} is smaller than the stride {geo.stride}"
        return None


@dataclass(frozen=True)
class FusedMBConvParams(Params):
    """Fused MBConv (EfficientNetV2): a full kxk expansion conv, then a 1x1 projection.

    With ``expand_ratio`` 1 the block is the single kxk conv-BN-act to the output width."""

    expand_ratio: float = param(4.0, Choice(1.0, 2.0, 3.0, 4.0, 6.0), "hidden width / the width named by expand_from")
    expand_from: str = param("in", Choice("in", "out"))
    kernel_size: int = param(3, Choice(3, 5))
    se_ratio: float = param(0.0, Choice(0.0, 0.0625, 0.125, 0.25))
    se_from: str = param("hidden", Choice("hidden", "in", "out"))
    se_act: str = param("silu", Choice("silu", "relu"))
    act: str = param("silu", Choice(*ACTS))
    norm_style: str = param("post", Choice("post", "pre", "fewer"))
    shortcut: str = param("none", Choice("none", "pool_proj"))
    hidden_divisor: int = param(8, Choice(1, 8))

    def check(self, geo: Geometry) -> Optional[str]:
        if geo.stride > 1 and self.kernel_size < geo.stride:
            return f"kernel_size {self.kernel_size} is smaller than the stride {geo.stride}"
        return None


@dataclass(frozen=True)
class MBConvEmbedParams(MBConvParams):
    """Convolutional embedding: ``depth`` MBConvs, the first strided and changing the width."""

    depth: int = param(1, IntRange(1, 7), "MBConvs in the embedding (CE depth)")


# ------------------------------------------------------------------------------ shared layout
def _hidden(cin: int, cout: int, p) -> int:
    base = cin if p.expand_from == "in" else cout
    return make_divisible(base * p.expand_ratio, p.hidden_divisor)


def _se_width(cin: int, cout: int, hidden: int, p) -> int:
    base = {"hidden": hidden, "in": cin, "out": cout}[p.se_from]
    return max(1, int(base * p.se_ratio))


def _mbconv_hidden(cin: int, cout: int, p: MBConvParams) -> int:
    # without an expansion conv the depthwise conv keeps the input width
    return cin if p.expand_ratio == 1 else _hidden(cin, cout, p)


def _identity(cin: int, cout: int, stride: int) -> bool:
    return cin == cout and stride == 1


class Shortcut(nn.Module):
    """The identity branch of a shape-changing block: average pool, then a 1x1 conv (with bias)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        # ceil_mode keeps the output at ceil(H / stride) like the strided convs
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.proj = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


def _make_shortcut(cin: int, cout: int, stride: int, kind: str) -> Optional[nn.Module]:
    if _identity(cin, cout, stride):
        return nn.Identity()
    return Shortcut(cin, cout, stride) if kind == "pool_proj" else None


def _shortcut_cost(cin: int, cout: int, stride: int, kind: str, out: tuple[int, int]) -> Cost:
    if kind == "pool_proj" and cin != cout:
        return conv_cost(cin, cout, 1, out, bias=True)
    return Cost()


class _Residual(nn.Module):
    def _residual(self, shortcut: Optional[nn.Module]) -> None:
        self.shortcut = shortcut
        # stochastic depth only where a shortcut carries the input past the body
        self.drop_path = DropPath() if shortcut is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y if self.shortcut is None else self.drop_path(y) + self.shortcut(x)


class MBConv(_Residual):
    """[BN] -> [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project, plus the residual."""

    def __init__(self, cin: int, cout: int, stride: int, p: MBConvParams):
        super().__init__()
        hidden = _mbconv_hidden(cin, cout, p)
        pre, fewer = p.norm_style == "pre", p.norm_style == "fewer"
        expands = p.expand_ratio != 1
        s_expand = stride if expands and p.stride_on == "expand" else 1
        layers = {"norm": nn.BatchNorm2d(cin)} if pre else {}
        if expands:
            layers["expand"] = ConvNormAct(cin, hidden, 1, s_expand, act=p.act, norm=not fewer, bias=fewer)
        layers["dw"] = ConvNormAct(hidden, hidden, p.kernel_size, stride // s_expand, groups=hidden, act=p.act,
                                   norm=not fewer, bias=fewer)
        if p.se_ratio:
            layers["se"] = SqueezeExcite(hidden, _se_width(cin, cout, hidden, p), p.se_act)
        layers["project"] = ConvNormAct(hidden, cout, 1, act="none", norm=not pre, bias=pre)
        self.body = nn.Sequential(OrderedDict(layers))  # named by role: a layer's key keeps its meaning
        self._residual(_make_shortcut(cin, cout, stride, p.shortcut))


def mbconv_cost(cin: int, cout: int, stride: int, size: tuple[int, int], p: MBConvParams) -> Cost:
    """One MBConv on a ``size`` input."""
    hidden, out = _mbconv_hidden(cin, cout, p), out_size(size, stride)
    pre, fewer = p.norm_style == "pre", p.norm_style == "fewer"
    cost = bn_cost(cin, size) if pre else Cost()
    if p.expand_ratio != 1:
        at = out if p.stride_on == "expand" else size
        cost += conv_norm_act_cost(cin, hidden, 1, at, norm=not fewer, bias=fewer)
    cost += conv_norm_act_cost(hidden, hidden, p.kernel_size, out, groups=hidden, norm=not fewer, bias=fewer)
    if p.se_ratio:
        cost += squeeze_excite_cost(hidden, _se_width(cin, cout, hidden, p))
    cost += conv_norm_act_cost(hidden, cout, 1, out, norm=not pre, bias=pre)
    return cost + _shortcut_cost(cin, cout, stride, p.shortcut, out)


class FusedMBConv(_Residual):
    """[BN] -> kxk expand conv -> [SE] -> 1x1 project, plus the residual."""

    def __init__(self, cin: int, cout: int, stride: int, p: FusedMBConvParams):
        super().__init__()
        hidden = _hidden(cin, cout, p)
        pre, fewer = p.norm_style == "pre", p.norm_style == "fewer"
        layers = {"norm": nn.BatchNorm2d(cin)} if pre else {}
        if p.expand_ratio == 1:  # one kxk conv to the output width: neither an expansion nor a projection
            layers["conv"] = ConvNormAct(cin, cout, p.kernel_size, stride, act=p.act)
        else:
            layers["expand"] = ConvNormAct(cin, hidden, p.kernel_size, stride, act=p.act, norm=not fewer, bias=fewer)
            if p.se_ratio:
                layers["se"] = SqueezeExcite(hidden, _se_width(cin, cout, hidden, p), p.se_act)
            layers["project"] = ConvNormAct(hidden, cout, 1, act="none", norm=not pre, bias=pre)
        self.body = nn.Sequential(OrderedDict(layers))
        self._residual(_make_shortcut(cin, cout, stride, p.shortcut))


def fused_mbconv_cost(cin: int, cout: int, stride: int, size: tuple[int, int], p: FusedMBConvParams) -> Cost:
    hidden, out = _hidden(cin, cout, p), out_size(size, stride)
    pre, fewer = p.norm_style == "pre", p.norm_style == "fewer"
    cost = bn_cost(cin, size) if pre else Cost()
    if p.expand_ratio == 1:
        cost += conv_norm_act_cost(cin, cout, p.kernel_size, out)
    else:
        cost += conv_norm_act_cost(cin, hidden, p.kernel_size, out, norm=not fewer, bias=fewer)
        if p.se_ratio:
            cost += squeeze_excite_cost(hidden, _se_width(cin, cout, hidden, p))
        cost += conv_norm_act_cost(hidden, cout, 1, out, norm=not pre, bias=pre)
    return cost + _shortcut_cost(cin, cout, stride, p.shortcut, out)


# ------------------------------------------------------------------------------ registrations
def _stack(block: type, geo: Geometry, depth: int, p) -> list[nn.Module]:
    return [block(geo.in_channels if i == 0 else geo.out_channels, geo.out_channels, geo.stride if i == 0 else 1, p)
            for i in range(depth)]


def _stack_cost(cost, geo: Geometry, depth: int, p) -> Cost:
    total = cost(geo.in_channels, geo.out_channels, geo.stride, geo.size, p)
    if depth > 1:
        total += cost(geo.out_channels, geo.out_channels, 1, geo.out_size, p) * (depth - 1)
    return total


@register("block", "mbconv", MBConvParams, count=lambda geo, depth, p: _stack_cost(mbconv_cost, geo, depth, p),
          code="C", can_downsample=True)
def build_mbconv(geo: Geometry, depth: int, p: MBConvParams) -> nn.Module:
    """MBConv / inverted residual (MobileNetV2, CoAtNet, MobileViT's MV2, EfficientViT)."""
    return XStack(_stack(MBConv, geo, depth, p))


@register("block", "fused_mbconv", FusedMBConvParams,
          count=lambda geo, depth, p: _stack_cost(fused_mbconv_cost, geo, depth, p), code="C", can_downsample=True)
def build_fused_mbconv(geo: Geometry, depth: int, p: FusedMBConvParams) -> nn.Module:
    """Fused MBConv (EfficientNetV2, EfficientViT-L): kxk expansion conv + 1x1 projection."""
    return XStack(_stack(FusedMBConv, geo, depth, p))


@register("embed", "mbconv", MBConvEmbedParams, count=lambda geo, p: _stack_cost(mbconv_cost, geo, p.depth, p))
def build_mbconv_embed(geo: Geometry, p: MBConvEmbedParams) -> nn.Module:
    """Convolutional embedding: MBConvs, the first one strided (MobileViT's MV2 downsampling, CETNet's CE)."""
    return nn.Sequential(*_stack(MBConv, geo, p.depth, p))
