"""CETNet (Wang et al., "Convolutional Embedding Makes Hierarchical Vision Transformer Stronger",
ECCV 2022). No official code exists; this follows the paper's description:

* the stem is four Fused-MBConvs (strides 2, 1, 2, 1) and one 1x1 conv normalised by LayerNorm
  (the paper merges stage 0 and the first stage's convolutional embedding into it);
* later stages open with a convolutional embedding (CE) of stacked MBConvs (the ``mbconv`` embed);
* the transformer block is LEWin, locally-enhanced window self-attention: (shifted) window
  attention whose q, k and v come from a CvT-style convolutional projection, a depthwise 3x3
  conv (+ BN) followed by a pointwise Linear, i.e. a depthwise-separable conv.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from nas.blocks.mbconv import FusedMBConv, FusedMBConvParams, fused_mbconv_cost
from nas.config import Params
from nas.domains import Choice, IntRange, Seq, param
from nas.layers import (Dim, DropPath, LayerNorm2d, Mlp, attention_cost, bn_cost, conv_cost, hw, linear_cost, ln_cost,
                        mlp_cost, window_partition, window_reverse)
from nas.registry import Cost, Geometry, out_size, register


# ------------------------------------------------------------------------------ LEWin block
@dataclass(frozen=True)
class LEWinParams(Params):
    num_heads: int = param(2, Choice(1, 2, 3, 4, 6, 8, 12, 16, 24, 32), "attention heads")
    window_size: int = param(7, Choice(7, 8, 12, 14), "side of the square attention window")
    mlp_ratio: float = param(4.0, Choice(2.0, 3.0, 4.0))
    shift: bool = param(True, Choice(True, False), "shift every second block's windows by half a window (Swin)")

    def check(self, geo: Geometry) -> Optional[str]:
        if geo.out_channels % self.num_heads:
            return f"width {geo.out_channels} is not divisible by num_heads {self.num_heads}"
        return None


def _window_layout(size: tuple[int, int], window: int) -> tuple[int, tuple[int, int]]:
    """(window side, padded size). A map no larger than one window is one window of its own size,
    unshifted, as Swin does when the resolution falls to the window size."""
    if max(size) <= window:
        return 0, size
    return window, (-(-size[0] // window) * window, -(-size[1] // window) * window)


class ConvProjection(nn.Module):
    """CvT's convolutional projection: depthwise 3x3 conv (no bias) + BN, then a Linear, NHWC -> NHWC."""

    def __init__(self, dim: int):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.dw(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        return self.proj(y)


def conv_projection_cost(dim: int, size: tuple[int, int]) -> Cost:
    return conv_cost(dim, dim, 3, size, groups=dim) + bn_cost(dim, size) + linear_cost(dim, dim, hw(size))


class LEWinAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shifted: bool):
        super().__init__()
        self.heads, self.window, self.shifted = heads, window, shifted
        self.q, self.k, self.v = ConvProjection(dim), ConvProjection(dim), ConvProjection(dim)
        self.proj = nn.Linear(dim, dim)
        self._masks: dict = {}

    def _mask(self, padded: tuple[int, int], window: int, shift: int, device) -> torch.Tensor:
        """True where two tokens of a shifted window came from the same region (Swin's mask)."""
        key = (padded, window, shift, str(device))
        if key not in self._masks:
            region = torch.zeros(1, padded[0], padded[1], 1, device=device)
            cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
            for i, hs in enumerate(cuts):
                for j, ws in enumerate(cuts):
                    region[:, hs, ws] = 3 * i + j
            ids = window_partition(region, window)[0].squeeze(-1)
            self._masks[key] = (ids[:, :, None] == ids[:, None, :]).unsqueeze(1)
        return self._masks[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        q, k, v = self.q(x), self.k(x), self.v(x)
        window, padded = _window_layout((h, w), self.window)
        shift = window // 2 if self.shifted and window else 0
        qkv = torch.cat([q, k, v], -1)
        if window:
            qkv = F.pad(qkv, (0, 0, 0, padded[1] - w, 0, padded[0] - h))
            if shift:
                qkv = torch.roll(qkv, (-shift, -shift), (1, 2))
            qkv = window_partition(qkv, window)[0]
        else:
            qkv = qkv.reshape(b, h * w, 3 * c)
        n = qkv.shape[1]
        q, k, v = qkv.reshape(-1, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        mask = None
        if shift:
            mask = self._mask(padded, window, shift, x.device).repeat(b, 1, 1, 1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(-1, n, c)
        if window:
            y = window_reverse(y, window, padded, padded)
            if shift:
                y = torch.roll(y, (shift, shift), (1, 2))
            y = y[:, :h, :w]
        return self.proj(y.reshape(b, h, w, c))

    def slice_layout(self) -> dict:
        heads = Dim((self.heads, -1))  # each of q, k, v is heads x head size (the depthwise convs see the input's channels)
        out = {f"{t}.proj.{k}": (heads, None) if k == "weight" else (heads,) for t in "qkv" for k in ("weight", "bias")}
        return {**out, "proj.weight": (None, heads)}


class LEWinBlock(nn.Module):
    """x + LEWin(LN(x)); x + MLP(LN(x)), on NHWC maps."""

    def __init__(self, dim: int, p: LEWinParams, shifted: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = LEWinAttention(dim, p.num_heads, p.window_size, shifted)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * p.mlp_ratio), "gelu")
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class LEWinStage(nn.Module):
    def __init__(self, dim: int, depth: int, p: LEWinParams):
        super().__init__()
        self.blocks = nn.Sequential(*[LEWinBlock(dim, p, p.shift and i % 2 == 1) for i in range(depth)])

    def forward(self, x: torch.Tensor, tokens: Optional[torch.Tensor]):
        return self.blocks(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), tokens


def lewin_block_cost(dim: int, size: tuple[int, int], p: LEWinParams) -> Cost:
    n = hw(size)
    window, padded = _window_layout(size, p.window_size)
    if window:
        windows, per_window = hw(padded) // (window * window), window * window
    else:
        windows, per_window = 1, n
    attn = attention_cost(per_window, per_window, dim // p.num_heads, p.num_heads) * windows
    return (ln_cost(dim, n) * 2 + conv_projection_cost(dim, size) * 3 + attn + linear_cost(dim, dim, n)
            + mlp_cost(dim, int(dim * p.mlp_ratio), n))


@register("block", "lewin", LEWinParams, code="T",
          count=lambda geo, depth, p: lewin_block_cost(geo.out_channels, geo.size, p) * depth)
def build_lewin(geo: Geometry, depth: int, p: LEWinParams) -> nn.Module:
    """CETNet's LEWin blocks: (shifted) window attention with a depthwise-separable conv q/k/v projection."""
    return LEWinStage(geo.out_channels, depth, p)


# ------------------------------------------------------------------------------ Fused-MBConv stem
@dataclass(frozen=True)
class FusedMBConvStemParams(Params):
    """Fused-MBConvs, then a 1x1 conv (with bias) to the stem width and a LayerNorm."""

    widths: tuple = param((32, 32, 64, 64), Seq(IntRange(8, 256, 8), 1, 6), "output width of each Fused-MBConv")
    strides: tuple = param((2, 1, 2, 1), Seq(Choice(1, 2), 1, 6), "stride of each Fused-MBConv")
    expand_ratios: tuple = param((1.0, 2.0, 2.0, 2.0), Seq(Choice(1.0, 2.0, 4.0), 1, 6),
                                 "hidden / input width of each Fused-MBConv (1 = a single 3x3 conv-BN-act)")
    act: str = param("silu", Choice("relu", "gelu", "silu"), "SiLU as in EfficientNetV2")

    @property
    def stride(self) -> int:
        return math.prod(self.strides)

    def check(self, geo: Geometry) -> Optional[str]:
        if not len(self.widths) == len(self.strides) == len(self.expand_ratios):
            return (f"widths {self.widths}, strides {self.strides} and expand_ratios {self.expand_ratios} "
                    "must have the same length")
        return None

    def layers(self, cin: int):
        """(cin, cout, stride, Fused-MBConv params) of each layer."""
        for w, s, e in zip(self.widths, self.strides, self.expand_ratios):
            yield cin, w, s, FusedMBConvParams(expand_ratio=e, act=self.act)
            cin = w


def _fused_stem_cost(geo: Geometry, p: FusedMBConvStemParams) -> Cost:
    cost, size = Cost(), geo.size
    for cin, cout, s, fp in p.layers(geo.in_channels):
        cost += fused_mbconv_cost(cin, cout, s, size, fp)
        size = out_size(size, s)
    return cost + conv_cost(p.widths[-1], geo.out_channels, 1, size, bias=True) + ln_cost(geo.out_channels, hw(size))


@register("stem", "fused_mbconv", FusedMBConvStemParams, count=_fused_stem_cost, stride=lambda p: p.stride)
def build_fused_stem(geo: Geometry, p: FusedMBConvStemParams) -> nn.Module:
    """CETNet's stem: Fused-MBConvs, a 1x1 conv to the stem width, LayerNorm."""
    layers = [FusedMBConv(cin, cout, s, fp) for cin, cout, s, fp in p.layers(geo.in_channels)]
    return nn.Sequential(*layers, nn.Conv2d(p.widths[-1], geo.out_channels, 1), LayerNorm2d(geo.out_channels))
