"""ViT-LSLA's block: Swin's (shifted) window block with Light Self-Limited-Attention
(Hechen, Huang, Zhao, arXiv 2210.17115). No official code exists; this follows the paper's text.

Light self-attention (LSA): the key and value projections are folded away, since X Wq Wk^T X^T
is again a learned bilinear form of X and the value projection is absorbed by the output
projection. Only the query is projected; the window's input X itself is the key and the value
(split into heads by channels):

    A   = softmax(Q X^T * S + B_inner) + B_outer          Q = X Wq (with bias)
    out = Proj(A X)

Self-limited attention (SLA): the fixed 1/sqrt(d) becomes a learned dynamic scale S, a table of
relative positions like the inner bias B_inner (so S varies with the query-key offset); the
outer bias B_outer, another relative table, is added after the softmax to damp the largest
(nearby, self) attention weights. All three tables are (2w-1)^2 x heads; S starts at
1/sqrt(d), B_outer at zero, so a new block starts as plain attention on (Q, X, X).

Assumptions where the paper is silent: the output projection is kept (``output_projection``;
the paper drops one of the value / output projections and its LSA is written Q, X, X); in
shifted windows the outer bias is zeroed between regions of the rolled map, so the mask that
keeps them apart is not undone after the softmax.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from nas.blocks.swin import WindowBlock, WindowStage, WindowTable, table_window, window_block_cost
from nas.config import Params
from nas.domains import Choice, param
from nas.layers import attention_cost, linear_cost, relative_position_bias_params
from nas.registry import Cost, Geometry, register


@dataclass(frozen=True)
class LslaParams(Params):
    window_size: int = param(7, Choice(4, 7, 8, 12, 14), "side of the square attention window")
    head_dim: int = param(32, Choice(16, 32, 64), "channels per head")
    mlp_ratio: float = param(4.0, Choice(2.0, 3.0, 4.0))
    shift: bool = param(True, Choice(True, False), "shift the windows by half a window in every second block")
    output_projection: bool = param(True, Choice(True, False), "a Linear(C, C) after the attention")

    def check(self, geo: Geometry) -> Optional[str]:
        if geo.out_channels % self.head_dim:
            return f"width {geo.out_channels} is not divisible by head_dim {self.head_dim}"
        return None


class LightSelfLimitedAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, output_projection: bool):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.scale = WindowTable(window, heads)
        nn.init.constant_(self.scale.table, (dim // heads) ** -0.5)
        self.inner_bias = WindowTable(window, heads)
        self.outer_bias = WindowTable(window, heads)
        nn.init.zeros_(self.outer_bias.table)
        self.proj = nn.Linear(dim, dim) if output_projection else nn.Identity()

    def forward(self, x: torch.Tensor, window: int, mask: Optional[torch.Tensor]) -> torch.Tensor:
        bw, n, c = x.shape
        q = self.query(x).reshape(bw, n, self.heads, -1).transpose(1, 2)
        kv = x.reshape(bw, n, self.heads, -1).transpose(1, 2)  # X is both key and value
        scores = (q @ kv.transpose(-2, -1)) * self.scale(window) + self.inner_bias(window)
        outer = self.outer_bias(window)
        if mask is not None:  # (B, windows, heads, N, N) so that the per-window mask broadcasts
            nw = mask.shape[0]
            scores = scores.reshape(bw // nw, nw, self.heads, n, n) + mask[:, None]
            outer = outer * (mask[:, None] == 0)
        attn = (scores.softmax(-1) + outer).reshape(bw, self.heads, n, n)
        return self.proj((attn @ kv).transpose(1, 2).reshape(bw, n, c))


def _count(geo: Geometry, depth: int, p: LslaParams) -> Cost:
    c = geo.out_channels
    heads = c // p.head_dim

    def attention(windows: int, window: int, table: int) -> Cost:
        tokens = windows * window * window
        cost = (linear_cost(c, c, tokens)
                + attention_cost(window * window, window * window, p.head_dim, heads) * windows
                + Cost(3 * relative_position_bias_params((table, table), heads), 0))
        return cost + linear_cost(c, c, tokens) if p.output_projection else cost

    return window_block_cost(geo, depth, p.window_size, p.shift, int(c * p.mlp_ratio), attention)


@register("block", "lsla", LslaParams, count=_count, code="T")
def build(geo: Geometry, depth: int, p: LslaParams) -> nn.Module:
    """ViT-LSLA block: window attention on (Q, X, X) with a dynamic scale and inner/outer position biases."""
    c = geo.out_channels
    window = table_window(p.window_size, geo.design_size)
    return WindowStage([WindowBlock(c, LightSelfLimitedAttention(c, c // p.head_dim, window, p.output_projection),
                                    window, p.shift and i % 2 == 1, int(c * p.mlp_ratio)) for i in range(depth)])
