"""The plain pre-LN ViT block (Dosovitskiy et al. 2021), as built by pycls for ViT_P / ViT_C
(Xiao et al., "Early Convolutions Help Transformers See Better", NeurIPS 2021).

A ``vit`` stage flattens the map, puts the global tokens (ViT's class token) in front, adds
a learned positional embedding once, runs ``depth`` blocks over the joined sequence, and
splits the tokens off again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from nas.config import Params
from nas.domains import Choice, param
from nas.layers import Dim, DropPath, Mlp, attention_cost, hw, linear_cost, ln_cost, mlp_cost, to_map, to_tokens
from nas.registry import Cost, Geometry, register


@dataclass(frozen=True)
class ViTParams(Params):
    num_heads: int = param(4, Choice(1, 2, 3, 4, 6, 8, 12, 16), "attention heads (ViT_C/ViT_P: width / 64)")
    mlp_ratio: float = param(4.0, Choice(2.0, 3.0, 4.0), "MLP hidden width / width (ViT_C-1GF/4GF use 3)")
    pos_embed: bool = param(True, Choice(True, False), "add a learned positional embedding at the stage start")

    def check(self, geo: Geometry) -> Optional[str]:
        if geo.out_channels % self.num_heads:
            return f"width {geo.out_channels} is not divisible by num_heads {self.num_heads}"
        return None


class Attention(nn.Module):
    """Multi-head self-attention: one qkv Linear (with bias), SDPA, output Linear."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))

    def slice_layout(self) -> dict:
        # q, k, v sliced apart; within each, the first channels, which a point splits into its own heads (the head
        # count is searched with the width here, so a (heads x head size) layout would hold heads x widths)
        chunks = Dim((3, -1))
        return {"qkv.weight": (chunks, None), "qkv.bias": (chunks,)}


class ViTBlock(nn.Module):
    """x + MHSA(LN(x)); x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden, "gelu")
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def _joined_tokens(geo: Geometry) -> int:
    """Global tokens join the sequence only when they share the width (ViT's class token);
    tokens of another fixed dim (Mobile-Former) pass through untouched."""
    return geo.tokens.num if geo.tokens is not None and geo.tokens.dim == geo.out_channels else 0


class ViTStage(nn.Module):
    def __init__(self, geo: Geometry, depth: int, p: ViTParams):
        super().__init__()
        dim = geo.out_channels
        self.num_tokens = _joined_tokens(geo)
        self.design_size = tuple(geo.design_size)
        self.pos_embed = None
        if p.pos_embed:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens + hw(geo.design_size), dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*[ViTBlock(dim, p.num_heads, int(dim * p.mlp_ratio)) for _ in range(depth)])

    def _positions(self, size: tuple[int, int], with_tokens: bool) -> torch.Tensor:
        pos = self.pos_embed
        tok, grid = pos[:, : self.num_tokens], pos[:, self.num_tokens:]
        if tuple(size) != self.design_size:
            # another run resolution: resample the grid part bicubically, as DeiT / timm do
            grid = to_map(grid, self.design_size)
            grid = to_tokens(F.interpolate(grid, size=size, mode="bicubic", align_corners=False))
        return torch.cat([tok, grid], 1) if with_tokens else grid

    def forward(self, x: torch.Tensor, tokens: Optional[torch.Tensor]):
        size = (x.shape[2], x.shape[3])
        seq = to_tokens(x)
        joined = self.num_tokens > 0 and tokens is not None
        if joined:
            seq = torch.cat([tokens, seq], 1)
        if self.pos_embed is not None:
            seq = seq + self._positions(size, joined)
        seq = self.blocks(seq)
        if joined:
            tokens, seq = seq[:, : self.num_tokens], seq[:, self.num_tokens:]
        return to_map(seq, size), tokens


def vit_block_cost(dim: int, heads: int, hidden: int, n: int) -> Cost:
    return (ln_cost(dim, n) * 2 + linear_cost(dim, 3 * dim, n) + attention_cost(n, n, dim // heads, heads)
            + linear_cost(dim, dim, n) + mlp_cost(dim, hidden, n))


def _count(geo: Geometry, depth: int, p: ViTParams) -> Cost:
    dim, joined = geo.out_channels, _joined_tokens(geo)
    n = joined + hw(geo.size)
    pos = Cost(dim * (joined + hw(geo.design_size)), 0) if p.pos_embed else Cost()
    return pos + vit_block_cost(dim, p.num_heads, int(dim * p.mlp_ratio), n) * depth


@register("block", "vit", ViTParams, count=_count, code="T")
def build(geo: Geometry, depth: int, p: ViTParams) -> nn.Module:
    """Plain pre-LN ViT blocks over [global tokens; image tokens] with a learned positional embedding."""
    return ViTStage(geo, depth, p)
