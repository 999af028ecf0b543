"""sMLPNet's block (Tang et al., "Sparse MLP for Image Recognition", AAAI 2022; microsoft/SPACH models/smlp.py).

One block is two residuals on an NCHW map:

    x = x + sMLP(DWConv(x))          token mixing
    x = x + MLP(LayerNorm(x))        channel mixing

DWConv = BN -> GELU -> depthwise 3x3 (no bias), pre-activated as in the official code.
sMLP   = BN -> GELU -> [x, mix along W, mix along H] -> 1x1 conv (3C -> C, no bias), where a
         mix along an axis is one Linear(L, L) over that axis (with bias), shared by every
         channel and every row/column: the sparse, axis-wise token mixing of the paper.

The axis mixers are sized by the design resolution (L = 56, 28, 14, 7 at 224). At another run
size their weights are resampled bilinearly to the new length and scaled by design/run length,
so that each output still sums about the same mass of inputs (the official code only runs at
its design size).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nas.config import Params
from nas.domains import Choice, param
from nas.layers import Dim, DropPath, Mlp, XStack, bn_cost, conv_cost, hw, ln_cost, mlp_cost
from nas.registry import Cost, Geometry, register


@dataclass(frozen=True)
class SparseMlpParams(Params):
    mlp_ratio: float = param(3.0, Choice(2.0, 3.0, 4.0), "hidden width of the channel MLP (the paper's alpha)")


class AxisMixer(nn.Linear):
    """Linear(L, L) over the last axis, with L fixed at design time; other lengths resample it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, m = self.in_features, x.shape[-1]
        if m == n:
            return F.linear(x, self.weight, self.bias)
        weight = F.interpolate(self.weight[None, None], size=(m, m), mode="bilinear", align_corners=False)[0, 0]
        bias = F.interpolate(self.bias[None, None], size=m, mode="linear", align_corners=False)[0, 0]
        return F.linear(x, weight * (n / m), bias)


def _axis_mixer_cost(design: int, run: int, positions: int) -> Cost:
    # fvcore counts bilinear upsampling at 4 per output element (the 1-d bias resample is free)
    resample = 4 * run * run if run != design else 0
    return Cost(design * design + design, positions * run * run + resample)


class SparseMlpBlock(nn.Module):
    def __init__(self, dim: int, design_size: tuple[int, int], p: SparseMlpParams):
        super().__init__()
        self.dw_norm = nn.BatchNorm2d(dim)
        self.dw_conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False)
        self.mix_norm = nn.BatchNorm2d(dim)
        self.mix_w = AxisMixer(design_size[1], design_size[1])
        self.mix_h = AxisMixer(design_size[0], design_size[0])
        self.fuse = nn.Conv2d(3 * dim, dim, 1, bias=False)
        self.norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * p.mlp_ratio), "gelu")
        self.act = nn.GELU()
        self.drop_path = DropPath()

    def slice_layout(self) -> dict:
        return {"fuse.weight": (None, Dim((3, -1)), None, None)}  # the input is [map; W-mixed; H-mixed]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw_conv(self.act(self.dw_norm(x)))
        y = self.act(self.mix_norm(y))
        # concatenation order as in the official code: its `proj_h` mixes along W, `proh_w` along H
        y = torch.cat([y, self.mix_w(y), self.mix_h(y.transpose(2, 3)).transpose(2, 3)], 1)
        x = x + self.drop_path(self.fuse(y))
        return x + self.drop_path(self.mlp(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2))


def _count(geo: Geometry, depth: int, p: SparseMlpParams) -> Cost:
    c, (h, w), (dh, dw) = geo.out_channels, geo.size, geo.design_size
    n = hw(geo.size)
    token_mix = (bn_cost(c, n) + conv_cost(c, c, 3, geo.size, groups=c) + bn_cost(c, n)
                 + _axis_mixer_cost(dw, w, c * h) + _axis_mixer_cost(dh, h, c * w)
                 + conv_cost(3 * c, c, 1, geo.size))
    channel_mix = ln_cost(c, n) + mlp_cost(c, int(c * p.mlp_ratio), n)
    return (token_mix + channel_mix) * depth


@register("block", "smlp", SparseMlpParams, count=_count, code="MLP")
def build(geo: Geometry, depth: int, p: SparseMlpParams) -> nn.Module:
    """sMLPNet block: pre-activated depthwise conv + sparse axis-wise MLP, then a channel MLP."""
    return XStack([SparseMlpBlock(geo.out_channels, geo.design_size, p) for _ in range(depth)])
