"""PoolFormer's MetaFormer block with a pooling token mixer (Yu et al., CVPR 2022)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nas.blocks.common import make_norm2d, norm2d_cost
from nas.config import Params
from nas.domains import Choice, param
from nas.layers import DropPath, XStack, conv_cost, hw, make_act
from nas.registry import Cost, Geometry, register


@dataclass(frozen=True)
class PoolMixerParams(Params):
    pool_size: int = param(3, Choice(3, 5), "average-pooling window")
    mlp_ratio: float = param(4.0, Choice(2.0, 3.0, 4.0))
    norm: str = param("gn", Choice("gn", "bn", "ln"), "gn = GroupNorm(1): LayerNorm over C, H, W")
    layer_scale_init: float = param(1e-5, Choice(1e-5, 1e-6))
    act: str = param("gelu", Choice("gelu", "relu", "silu"))


class PoolMixerBlock(nn.Module):
    """x + s1 * (AvgPool(N(x)) - N(x)); x + s2 * MLP(N(x)), the MLP as 1x1 convs."""

    def __init__(self, dim: int, p: PoolMixerParams):
        super().__init__()
        hidden = int(dim * p.mlp_ratio)
        self.norm1 = make_norm2d(p.norm, dim)
        self.pool = nn.AvgPool2d(p.pool_size, 1, p.pool_size // 2, count_include_pad=False)
        self.norm2 = make_norm2d(p.norm, dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), make_act(p.act), nn.Conv2d(hidden, dim, 1))
        self.scale1 = nn.Parameter(torch.full((dim, 1, 1), p.layer_scale_init))
        self.scale2 = nn.Parameter(torch.full((dim, 1, 1), p.layer_scale_init))
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.drop_path(self.scale1 * (self.pool(y) - y))
        return x + self.drop_path(self.scale2 * self.mlp(self.norm2(x)))


def _count(geo: Geometry, depth: int, p: PoolMixerParams) -> Cost:
    c, size = geo.out_channels, geo.size
    hidden = int(c * p.mlp_ratio)
    block = (norm2d_cost(p.norm, c, size) * 2 + conv_cost(c, hidden, 1, size, bias=True)
             + conv_cost(hidden, c, 1, size, bias=True) + Cost(2 * c, 0))
    return block * depth


@register("block", "pool_mixer", PoolMixerParams, count=_count, code="Pool")
def build(geo: Geometry, depth: int, p: PoolMixerParams) -> nn.Module:
    """PoolFormer block: pooling token mixer + channel MLP, both with LayerScale."""
    return XStack([PoolMixerBlock(geo.out_channels, p) for _ in range(depth)])
