"""Swin Transformer v1 blocks (Liu et al., ICCV 2021; microsoft/Swin-Transformer models/swin_transformer.py).

A block is pre-LN window attention then a pre-LN MLP, both residual, on a channels-last map:

    x = x + WindowAttention(LN(x))      every second block on a cyclically shifted map
    x = x + MLP(LN(x))

Windows are ``window_size`` squared with a learned relative-position bias table per block. As in
the official detection code, a map that is not a multiple of the window is zero-padded after the
norm, and the shifted-window mask is built for the padded map. As in the official classification
code, a map no larger than the window gets one window of the map's size and no shift; the bias of
such a smaller window is read from the centre of the table (the same relative offsets).

The windowing (:class:`WindowBlock`, :func:`window_block_cost`) is shared with ViT-LSLA, whose
blocks differ only in the attention inside the window.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from nas.config import Params
from nas.domains import Choice, param
from nas.layers import (Dim, DropPath, Mlp, RelativePositionBias, attention_cost, hw, linear_cost, ln_cost, mlp_cost, padded,
                        relative_position_bias_params, window_partition, window_reverse)
from nas.registry import Cost, Geometry, register


@dataclass(frozen=True)
class WindowAttentionParams(Params):
    window_size: int = param(7, Choice(4, 7, 8, 12, 14), "side of the square attention window")
    head_dim: int = param(32, Choice(16, 32, 64), "channels per head (Swin: heads = width / 32)")
    mlp_ratio: float = param(4.0, Choice(2.0, 3.0, 4.0))
    shift: bool = param(True, Choice(True, False), "shift the windows by half a window in every second block")

    def check(self, geo: Geometry) -> Optional[str]:
        if geo.out_channels % self.head_dim:
            return f"width {geo.out_channels} is not divisible by head_dim {self.head_dim}"
        return None


# ------------------------------------------------------------------------------ windowing
def table_window(window_size: int, design_size: tuple[int, int]) -> int:
    """The window a block is built with: the official code shrinks it to a smaller design map."""
    return min(window_size, *design_size)


def run_window(size: tuple[int, int], window: int, shifted: bool) -> tuple[int, int]:
    """(window, shift) at run size: a map no larger than the window is one unshifted window."""
    if min(size) <= window:
        return min(size), 0
    return window, window // 2 if shifted else 0


def relative_index(window: int, table: int, device=None) -> torch.Tensor:
    """Index into a (2*table-1)^2 relative table for every pair of positions in a ``window`` square."""
    coords = torch.stack(torch.meshgrid(torch.arange(window, device=device), torch.arange(window, device=device),
                                        indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + table - 1
    return rel[0] * (2 * table - 1) + rel[1]


class WindowTable(RelativePositionBias):
    """A relative-position table; a window smaller than the built one reads the table's centre."""

    def __init__(self, window: int, heads: int):
        super().__init__((window, window), heads)

    def forward(self, window: int) -> torch.Tensor:  # -> (heads, window^2, window^2)
        if window == self.window[0]:
            return super().forward()
        n = window * window
        index = relative_index(window, self.window[0], self.table.device)
        return self.table[index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)


def shift_mask(size: tuple[int, int], window: int, shift: int, device=None) -> torch.Tensor:
    """(windows, N, N): 0 within a region of the rolled map, -100 across regions (Swin's mask)."""
    regions = torch.zeros(size, device=device)
    label = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            regions[hs, ws] = label
            label += 1
    ids, _ = window_partition(regions[None, :, :, None], window)
    ids = ids[..., 0]
    return (ids[:, None, :] != ids[:, :, None]).float() * -100.0


class WindowBlock(nn.Module):
    """Pre-LN windowed attention + pre-LN MLP on (B, H, W, C); ``attention`` maps
    (windows, N, C), window, mask -> (windows, N, C)."""

    def __init__(self, dim: int, attention: nn.Module, window: int, shifted: bool, hidden: int):
        super().__init__()
        self.window, self.shifted = window, shifted
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attention
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden, "gelu")
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        window, shift = run_window((h, w), self.window, self.shifted)
        hp, wp = padded((h, w), window)
        y = F.pad(self.norm1(x), (0, 0, 0, wp - w, 0, hp - h))
        mask = None
        if shift:
            y = torch.roll(y, (-shift, -shift), (1, 2))
            mask = shift_mask((hp, wp), window, shift, x.device)
        windows, _ = window_partition(y, window)
        y = window_reverse(self.attn(windows, window, mask), window, (hp, wp), (hp, wp))
        if shift:
            y = torch.roll(y, (shift, shift), (1, 2))
        x = x + self.drop_path(y[:, :h, :w])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class WindowStage(nn.Module):
    """Blocks on a channels-last map; converts from and to NCHW once; global tokens pass through."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, tokens: Optional[torch.Tensor]):
        return self.blocks(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), tokens


def window_block_cost(geo: Geometry, depth: int, window_size: int, shift: bool, hidden: int,
                      attention: Callable[[int, int, int], Cost]) -> Cost:
    """Cost of ``depth`` window blocks; ``attention(windows, window, table)`` prices the attention
    of one image given the number of windows, the run window and the built (table) window."""
    c, n = geo.out_channels, hw(geo.size)
    table = table_window(window_size, geo.design_size)
    total = Cost()
    for i in range(depth):
        window, _ = run_window(geo.size, table, shift and i % 2 == 1)
        windows = hw(padded(geo.size, window)) // (window * window)
        total += ln_cost(c, n) * 2 + attention(windows, window, table) + mlp_cost(c, hidden, n)
    return total


# ------------------------------------------------------------------------------ Swin attention
class WindowAttention(nn.Module):
    """Multi-head self-attention in a window with a relative-position bias (qkv with bias)."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.bias = WindowTable(window, heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, window: int, mask: Optional[torch.Tensor]) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.bias(window)
        if mask is not None:  # (B, windows, heads, N, d) so that the per-window mask broadcasts
            nw = mask.shape[0]
            q, k, v = (t.reshape(bw // nw, nw, self.heads, n, -1) for t in (q, k, v))
            bias = bias + mask[:, None]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(y.reshape(bw, self.heads, n, -1).transpose(1, 2).reshape(bw, n, c))

    def slice_layout(self) -> dict:
        heads = Dim((3, self.heads, -1))  # q, k, v; each heads x head_dim
        return {"qkv.weight": (heads, None), "qkv.bias": (heads,), "proj.weight": (None, Dim((self.heads, -1)))}


def _count(geo: Geometry, depth: int, p: WindowAttentionParams) -> Cost:
    c = geo.out_channels
    heads = c // p.head_dim

    def attention(windows: int, window: int, table: int) -> Cost:
        tokens = windows * window * window
        return (linear_cost(c, 3 * c, tokens) + linear_cost(c, c, tokens)
                + attention_cost(window * window, window * window, p.head_dim, heads) * windows
                + Cost(relative_position_bias_params((table, table), heads), 0))

    return window_block_cost(geo, depth, p.window_size, p.shift, int(c * p.mlp_ratio), attention)


@register("block", "window_attention", WindowAttentionParams, count=_count, code="T")
def build(geo: Geometry, depth: int, p: WindowAttentionParams) -> nn.Module:
    """Swin block: (shifted) window multi-head attention with relative-position bias, then an MLP."""
    c = geo.out_channels
    window = table_window(p.window_size, geo.design_size)
    return WindowStage([WindowBlock(c, WindowAttention(c, c // p.head_dim, window), window,
                                    p.shift and i % 2 == 1, int(c * p.mlp_ratio)) for i in range(depth)])
