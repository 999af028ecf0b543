"""EfficientFormer v1 blocks (Li et al., NeurIPS 2022; snap-research/EfficientFormer models/efficientformer.py).

``mb4d`` is the convolutional MetaFormer block (pooling mixer, 1x1-conv MLP with BatchNorm, no
pre-norm); ``mb3d`` the token block (pre-LayerNorm attention with a LeViT-style learned bias over
relative offsets, Linear MLP). Both carry LayerScale.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from nas.config import Params
from nas.domains import Choice, param
from nas.layers import (Dim, DropPath, Mlp, XStack, attention_cost, bn_cost, conv_cost, hw, linear_cost, ln_cost, make_act,
                        mlp_cost, to_map, to_tokens)
from nas.registry import Cost, Geometry, register


# ------------------------------------------------------------------------------ MB4D
@dataclass(frozen=True)
class MB4DParams(Params):
    pool_size: int = param(3, Choice(3, 5), "average-pooling window of the token mixer")
    mlp_ratio: float = param(4.0, Choice(2.0, 3.0, 4.0))
    layer_scale_init: float = param(1e-5, Choice(1e-5, 1e-6))
    act: str = param("gelu", Choice("gelu", "relu", "silu"))


class MB4DBlock(nn.Module):
    """x + s1 * (AvgPool(x) - x); x + s2 * BN(conv1x1(act(BN(conv1x1(x))))). No norm before either branch."""

    def __init__(self, dim: int, p: MB4DParams):
        super().__init__()
        hidden = int(dim * p.mlp_ratio)
        self.pool = nn.AvgPool2d(p.pool_size, 1, p.pool_size // 2, count_include_pad=False)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.BatchNorm2d(hidden), make_act(p.act),
                                 nn.Conv2d(hidden, dim, 1), nn.BatchNorm2d(dim))
        self.scale1 = nn.Parameter(torch.full((dim, 1, 1), p.layer_scale_init))
        self.scale2 = nn.Parameter(torch.full((dim, 1, 1), p.layer_scale_init))
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.scale1 * (self.pool(x) - x))
        return x + self.drop_path(self.scale2 * self.mlp(x))


def _count_mb4d(geo: Geometry, depth: int, p: MB4DParams) -> Cost:
    c, size = geo.out_channels, geo.size
    hidden = int(c * p.mlp_ratio)
    block = (conv_cost(c, hidden, 1, size, bias=True) + bn_cost(hidden, size)
             + conv_cost(hidden, c, 1, size, bias=True) + bn_cost(c, size) + Cost(2 * c, 0))
    return block * depth


@register("block", "mb4d", MB4DParams, count=_count_mb4d, code="Pool")
def build_mb4d(geo: Geometry, depth: int, p: MB4DParams) -> nn.Module:
    """EfficientFormer MB4D: pooling mixer + conv-BN MLP with LayerScale, on the 4-D map."""
    return XStack([MB4DBlock(geo.out_channels, p) for _ in range(depth)])


# ------------------------------------------------------------------------------ MB3D
@dataclass(frozen=True)
class MB3DParams(Params):
    key_dim: int = param(32, Choice(16, 32, 64), "query/key width per head")
    num_heads: int = param(8, Choice(4, 8, 16), "heads; fixed, not tied to the stage width")
    attn_ratio: int = param(4, Choice(1, 2, 4), "value width per head = attn_ratio x key_dim")
    mlp_ratio: float = param(4.0, Choice(2.0, 3.0, 4.0))
    layer_scale_init: float = param(1e-5, Choice(1e-5, 1e-6))
    act: str = param("gelu", Choice("gelu", "relu", "silu"))

    # each head's projection is [q | k | v] of unequal widths, which cannot be sliced by meaning:
    # a supernet keeps separate weights per head shape
    unshared: ClassVar[tuple[str, ...]] = ("key_dim", "attn_ratio")


class OffsetBiasAttention(nn.Module):
    """Multi-head attention plus a learned bias per head and per absolute offset (|dy|, |dx|).

    The table is (heads, H*W) at the design size, laid out as an H x W grid of offsets (the
    official layout). At another feature size it is resized bicubically, as LeViT tables are
    when fine-tuned at a new resolution.
    """

    def __init__(self, dim: int, design: tuple[int, int], p: MB3DParams):
        super().__init__()
        self.heads, self.key_dim = p.num_heads, p.key_dim
        self.value_dim = p.attn_ratio * p.key_dim
        # per head: [q | k | v] consecutive, as in the official reshape-then-split
        self.qkv = nn.Linear(dim, self.heads * (2 * self.key_dim + self.value_dim))
        self.proj = nn.Linear(self.heads * self.value_dim, dim)
        self.design = design
        self.attention_biases = nn.Parameter(torch.zeros(self.heads, design[0] * design[1]))
        self.register_buffer("bias_index", _offset_index(design), persistent=False)

    def bias(self, size: tuple[int, int]) -> torch.Tensor:
        if tuple(size) == tuple(self.design):
            return self.attention_biases[:, self.bias_index]
        grid = self.attention_biases.reshape(1, self.heads, *self.design)
        grid = F.interpolate(grid, size=size, mode="bicubic", align_corners=False)
        return grid.reshape(self.heads, -1)[:, _offset_index(size, grid.device)]

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, self.heads, -1).transpose(1, 2)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], dim=-1)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias(size).to(q.dtype),
                                           scale=self.key_dim ** -0.5)
        return self.proj(x.transpose(1, 2).reshape(b, n, -1))

    def slice_layout(self) -> dict:
        heads = Dim((self.heads, -1))
        # the bias table is a grid of offsets (|dy|, |dx|) starting at 0: a smaller map's is its top-left corner
        return {"qkv.weight": (heads, None), "qkv.bias": (heads,), "proj.weight": (None, heads),
                "attention_biases": (None, Dim(tuple(self.design)))}


def _offset_index(size: tuple[int, int], device: Optional[torch.device] = None) -> torch.Tensor:
    """(N, N) index into an H x W grid of absolute offsets between every pair of positions."""
    ys, xs = torch.meshgrid(torch.arange(size[0], device=device), torch.arange(size[1], device=device), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None, :]).abs() * size[1] + (xs[:, None] - xs[None, :]).abs()


class MB3DBlock(nn.Module):
    """Pre-LN: x + s1 * Attn(LN(x)); x + s2 * MLP(LN(x)), on (B, N, C) tokens."""

    def __init__(self, dim: int, design: tuple[int, int], p: MB3DParams):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = OffsetBiasAttention(dim, design, p)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * p.mlp_ratio), p.act)
        self.scale1 = nn.Parameter(torch.full((dim,), p.layer_scale_init))
        self.scale2 = nn.Parameter(torch.full((dim,), p.layer_scale_init))
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.scale1 * self.attn(self.norm1(x), size))
        return x + self.drop_path(self.scale2 * self.mlp(self.norm2(x)))


class MB3DStage(nn.Module):
    """Flattens the map to tokens once (the official ``Flat``), runs the blocks, restores NCHW."""

    def __init__(self, blocks: list[MB3DBlock]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, tokens: Optional[torch.Tensor]):
        size = (x.shape[2], x.shape[3])
        x = to_tokens(x)
        for block in self.blocks:
            x = block(x, size)
        return to_map(x, size), tokens


def _count_mb3d(geo: Geometry, depth: int, p: MB3DParams) -> Cost:
    c, n = geo.out_channels, hw(geo.size)
    qk, v = p.num_heads * p.key_dim, p.num_heads * p.key_dim * p.attn_ratio
    block = (ln_cost(c, n) * 2 + linear_cost(c, 2 * qk + v, n) + linear_cost(v, c, n)
             + attention_cost(n, n, p.key_dim, p.num_heads, p.key_dim * p.attn_ratio)
             + Cost(p.num_heads * hw(geo.design_size), 0)
             + mlp_cost(c, int(c * p.mlp_ratio), n) + Cost(2 * c, 0))
    return block * depth


@register("block", "mb3d", MB3DParams, count=_count_mb3d, code="T")
def build_mb3d(geo: Geometry, depth: int, p: MB3DParams) -> nn.Module:
    """EfficientFormer MB3D: pre-LN attention with a learned offset bias + Linear MLP, LayerScale."""
    return MB3DStage([MB3DBlock(geo.out_channels, geo.design_size, p) for _ in range(depth)])
