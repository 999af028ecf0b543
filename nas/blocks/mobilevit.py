"""MobileViT v1 block and its conv-pool head (Mehta & Rastegari, ICLR 2022; apple/ml-cvnets).

The block mixes locally with convolutions, then globally with a transformer over unfolded patches:
pixels at the same offset inside their p x p patch form one sequence of H*W/p^2 tokens, so each
attention spans the whole map at 1/p^2 of the cost of full attention.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from nas.config import Params
from nas.domains import Choice, IntRange, param
from nas.layers import (ConvNormAct, Dim, DropPath, Mlp, XStack, attention_cost, conv_cost, conv_norm_act_cost, hw,
                        linear_cost, ln_cost, mlp_cost, padded)
from nas.registry import Cost, Geometry, register


@dataclass(frozen=True)
class MobileViTParams(Params):
    """The stage depth counts the transformer layers inside the one MobileViT block."""

    dim: int = param(96, IntRange(32, 512, 8), "transformer width d (the 1x1 conv maps C -> d and back)")
    patch_size: int = param(2, Choice(2, 4, 8), "side of the unfolded patches")
    num_heads: int = param(4, Choice(1, 2, 4, 8))
    mlp_ratio: float = param(2.0, Choice(2.0, 3.0, 4.0), "FFN hidden width = mlp_ratio x dim")
    kernel_size: int = param(3, Choice(3, 5), "the local and the fusion convolutions")
    act: str = param("silu", Choice("silu", "gelu", "relu", "hswish"))
    dropout: float = param(0.1, Choice(0.0, 0.05, 0.1), "after attention and FFN (0.05 for XXS, 0.1 otherwise)")

    def check(self, geo: Geometry) -> Optional[str]:
        if self.dim % self.num_heads:
            return f"dim {self.dim} is not divisible by num_heads {self.num_heads}"
        return None


class SelfAttention(nn.Module):
    """Multi-head self-attention: fused qkv Linear (bias), scaled_dot_product_attention, output Linear."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        return self.drop(self.proj(x))

    def slice_layout(self) -> dict:
        heads = Dim((3, self.heads, -1))  # q, k, v; each heads x head size (MobileViT keeps 4 heads)
        return {"qkv.weight": (heads, None), "qkv.bias": (heads,), "proj.weight": (None, Dim((self.heads, -1)))}


class TransformerLayer(nn.Module):
    """Pre-norm: x + Attn(LN(x)); x + FFN(LN(x))."""

    def __init__(self, dim: int, p: MobileViTParams):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, p.num_heads, p.dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * p.mlp_ratio), p.act)
        self.drop = nn.Dropout(p.dropout)
        # the unfolded sequences are (batch x patch offsets) long, so a sample here is one offset of an image
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.drop(self.mlp(self.norm2(x))))


class MobileViTBlock(nn.Module):
    """Conv kxk -> 1x1 to d -> unfold -> L transformer layers + LN -> fold -> 1x1 to C -> fuse with the input."""

    def __init__(self, channels: int, depth: int, p: MobileViTParams):
        super().__init__()
        self.patch = p.patch_size
        self.local = nn.Sequential(ConvNormAct(channels, channels, p.kernel_size, act=p.act),
                                   nn.Conv2d(channels, p.dim, 1, bias=False))
        self.transformer = nn.Sequential(*[TransformerLayer(p.dim, p) for _ in range(depth)])
        self.norm = nn.LayerNorm(p.dim)  # apart from the layers: its key does not change with the depth
        self.proj = ConvNormAct(p.dim, channels, 1, act=p.act)
        self.fusion = ConvNormAct(2 * channels, channels, p.kernel_size, act=p.act)

    def slice_layout(self) -> dict:
        return {"fusion.0.weight": (None, Dim((2, -1)), None, None)}  # its input is [the block input; projected]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.local(x)
        b, d, h, w = x.shape
        ps = self.patch
        hp, wp = padded((h, w), ps)
        if (hp, wp) != (h, w):  # resample to whole patches, as the official code does (padding would need masks)
            x = F.interpolate(x, size=(hp, wp), mode="bilinear", align_corners=False)
        nh, nw = hp // ps, wp // ps
        # unfold: one sequence of nh*nw patches per pixel offset inside the patch
        x = x.reshape(b, d, nh, ps, nw, ps).permute(0, 3, 5, 2, 4, 1).reshape(b * ps * ps, nh * nw, d)
        x = self.norm(self.transformer(x))
        x = x.reshape(b, ps, ps, nh, nw, d).permute(0, 5, 3, 1, 4, 2).reshape(b, d, hp, wp)
        if (hp, wp) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return self.fusion(torch.cat((shortcut, self.proj(x)), 1))


def _count(geo: Geometry, depth: int, p: MobileViTParams) -> Cost:
    c, d, size = geo.out_channels, p.dim, geo.size
    hp, wp = padded(size, p.patch_size)
    tokens, area = hp * wp, p.patch_size ** 2
    seq = tokens // area
    layer = (ln_cost(d, tokens) * 2 + linear_cost(d, 3 * d, tokens) + linear_cost(d, d, tokens)
             + attention_cost(seq, seq, d // p.num_heads, p.num_heads) * area
             + mlp_cost(d, int(d * p.mlp_ratio), tokens))
    cost = (conv_norm_act_cost(c, c, p.kernel_size, size) + conv_cost(c, d, 1, size)
            + layer * depth + ln_cost(d, tokens)
            + conv_norm_act_cost(d, c, 1, size) + conv_norm_act_cost(2 * c, c, p.kernel_size, size))
    if (hp, wp) != size:  # fvcore counts bilinear resampling at 4 per output element
        cost += Cost(0, 4 * d * (tokens + hw(size)))
    return cost


@register("block", "mobilevit", MobileViTParams, count=_count, code="T")
def build(geo: Geometry, depth: int, p: MobileViTParams) -> nn.Module:
    """One MobileViT block with ``depth`` transformer layers (the stage's MV2 embed downsamples)."""
    return XStack([MobileViTBlock(geo.out_channels, depth, p)])


# ------------------------------------------------------------------------------ head
@dataclass(frozen=True)
class ConvPoolHeadParams(Params):
    """1x1 conv to ``width`` (BN + act), global mean, dropout, Linear (MobileViT: width = 4 x last, <= 960)."""

    width: int = param(640, IntRange(64, 2048, 32), "channels of the 1x1 conv before pooling")
    act: str = param("silu", Choice("silu", "gelu", "relu", "hswish"))
    dropout: float = param(0.1, Choice(0.0, 0.1, 0.2), "before the classifier")


class ConvPoolHead(nn.Module):
    def __init__(self, cin: int, classes: int, p: ConvPoolHeadParams):
        super().__init__()
        self.conv = ConvNormAct(cin, p.width, 1, act=p.act)
        self.drop = nn.Dropout(p.dropout)
        self.fc = nn.Linear(p.width, classes)

    def forward(self, x: torch.Tensor, tokens: Optional[torch.Tensor]) -> torch.Tensor:
        return self.fc(self.drop(self.conv(x).mean((2, 3))))


def _head_cost(geo: Geometry, p: ConvPoolHeadParams) -> Cost:
    return conv_norm_act_cost(geo.in_channels, p.width, 1, geo.size) + linear_cost(p.width, geo.out_channels, 1)


@register("head", "conv_pool", ConvPoolHeadParams, count=_head_cost)
def build_conv_pool_head(geo: Geometry, p: ConvPoolHeadParams) -> nn.Module:
    """Conv 1x1 (BN, act) -> global average pool -> dropout -> Linear (MobileViT)."""
    return ConvPoolHead(geo.in_channels, geo.out_channels, p)
