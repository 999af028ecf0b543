"""CoAtNet's transformer block with relative attention, and its pre-logits head
(Dai et al., NeurIPS 2021; layer details as timm's ``maxxvit.py`` builds ``coatnet_N_224``).

CoAtNet's convolutional stages are ``mbconv`` blocks (nas/blocks/mbconv.py, ``norm_style='pre'``)
and its stem is the ``conv_stack`` stem; this file adds what is CoAtNet's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from nas.config import Params
from nas.domains import Choice, param
from nas.layers import (Dim, DropPath, LayerNorm2d, Mlp, RelativePositionBias, XStack, attention_cost, conv_cost, hw,
                        linear_cost, ln_cost, mlp_cost, relative_position_bias_params, to_map, to_tokens)
from nas.registry import Cost, Geometry, out_size, register

NORM_EPS = 1e-6  # timm's LayerNorm eps for the transformer blocks and the head


@dataclass(frozen=True)
class RelAttentionParams(Params):
    head_dim: int = param(32, Choice(16, 32, 64), "channels per attention head (CoAtNet-0..4: 32)")
    mlp_ratio: float = param(4.0, Choice(2.0, 3.0, 4.0), "FFN hidden width / width")
    pool: str = param("avg", Choice("avg", "max"), "pooling of a downsampling block (timm: avg, the paper: max)")
    act: str = param("gelu", Choice("gelu", "silu"), "FFN activation")

    def check(self, geo: Geometry) -> Optional[str]:
        if geo.out_channels % self.head_dim:
            return f"width {geo.out_channels} is not divisible by head_dim {self.head_dim}"
        return None


def _pool(kind: str, stride: int) -> nn.Module:
    if stride == 1:
        return nn.Identity()
    # kernel = stride (timm's 'avg2' / 'max2'); ceil_mode keeps ceil(H / stride) on odd maps
    cls = nn.AvgPool2d if kind == "avg" else nn.MaxPool2d
    return cls(stride, stride, ceil_mode=True)


class RelAttention(nn.Module):
    """Global multi-head self-attention over (B, N, C) with a learned relative-position bias."""

    def __init__(self, cin: int, cout: int, heads: int, design_size: tuple[int, int]):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(cin, 3 * cout)  # widens in the qkv projection, as timm's expand_first
        self.rel_pos = RelativePositionBias(design_size, heads)
        self.proj = nn.Linear(cout, cout)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        bias = self.rel_pos(size).unsqueeze(0).to(q.dtype)  # interpolated when size != design size
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(x.transpose(1, 2).reshape(b, n, -1))

    def slice_layout(self) -> dict:
        heads = Dim((3, self.heads, -1))  # q, k, v; each heads x head_dim
        return {"qkv.weight": (heads, None), "qkv.bias": (heads,), "proj.weight": (None, Dim((self.heads, -1)))}


class RelAttentionBlock(nn.Module):
    """x <- Proj(Pool(x)) + Attn(Pool(LN(x))); x <- x + FFN(LN(x)). Without downsampling the
    pool is the identity and so is Proj when the width is unchanged."""

    def __init__(self, cin: int, cout: int, stride: int, design_size: tuple[int, int], p: RelAttentionParams):
        super().__init__()
        self.pool = _pool(p.pool, stride)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.norm1 = LayerNorm2d(cin, eps=NORM_EPS)
        self.attn = RelAttention(cin, cout, cout // p.head_dim, design_size)
        self.norm2 = nn.LayerNorm(cout, eps=NORM_EPS)
        self.mlp = Mlp(cout, int(cout * p.mlp_ratio), p.act)
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(self.pool(x))
        y = self.pool(self.norm1(x))
        size = (y.shape[2], y.shape[3])
        t = to_tokens(shortcut) + self.drop_path(self.attn(to_tokens(y), size))
        t = t + self.drop_path(self.mlp(self.norm2(t)))
        return to_map(t, size)


def rel_attention_block_cost(cin: int, cout: int, stride: int, size: tuple[int, int], design_size: tuple[int, int],
                             p: RelAttentionParams) -> Cost:
    """One block on a ``size`` input; ``design_size`` is its attention map at the design resolution."""
    out = out_size(size, stride)
    n, heads = hw(out), cout // p.head_dim
    cost = (ln_cost(cin, hw(size)) + linear_cost(cin, 3 * cout, n) + attention_cost(n, n, p.head_dim, heads)
            + linear_cost(cout, cout, n) + Cost(relative_position_bias_params(design_size, heads), 0)
            + ln_cost(cout, n) + mlp_cost(cout, int(cout * p.mlp_ratio), n))
    if cin != cout:
        cost += conv_cost(cin, cout, 1, out, bias=True)
    if tuple(out) != tuple(design_size):
        # fvcore counts the bilinear resampling of the table: 4 per output element
        cost += Cost(0, 4 * heads * (2 * out[0] - 1) * (2 * out[1] - 1))
    return cost


def _count(geo: Geometry, depth: int, p: RelAttentionParams) -> Cost:
    cost = rel_attention_block_cost(geo.in_channels, geo.out_channels, geo.stride, geo.size, geo.design_out_size, p)
    rest = rel_attention_block_cost(geo.out_channels, geo.out_channels, 1, geo.out_size, geo.design_out_size, p)
    return cost + rest * (depth - 1)


@register("block", "rel_attention", RelAttentionParams, count=_count, code="T", can_downsample=True)
def build(geo: Geometry, depth: int, p: RelAttentionParams) -> nn.Module:
    """CoAtNet's pre-norm transformer block: global MHSA with a relative-position bias table + FFN."""
    dims = [geo.in_channels] + [geo.out_channels] * depth
    return XStack([RelAttentionBlock(dims[i], dims[i + 1], geo.stride if i == 0 else 1, geo.design_out_size, p)
                   for i in range(depth)])


# ------------------------------------------------------------------------------ head
@dataclass(frozen=True)
class NormMlpHeadParams(Params):
    """Global mean, LayerNorm, a pre-logits Linear (hidden = input width) + activation, classifier."""

    act: str = param("tanh", Choice("tanh", "gelu"), "pre-logits activation (timm's CoAtNet / MaxViT: tanh)")


class NormMlpHead(nn.Module):
    def __init__(self, cin: int, classes: int, p: NormMlpHeadParams):
        super().__init__()
        self.norm = nn.LayerNorm(cin, eps=NORM_EPS)
        self.pre_logits = nn.Linear(cin, cin)
        self.act = nn.Tanh() if p.act == "tanh" else nn.GELU()
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor, tokens: Optional[torch.Tensor]) -> torch.Tensor:
        return self.fc(self.act(self.pre_logits(self.norm(x.mean((2, 3))))))


def _head_cost(geo: Geometry, p: NormMlpHeadParams) -> Cost:
    c = geo.in_channels
    return ln_cost(c, 1) + linear_cost(c, c, 1) + linear_cost(c, geo.out_channels, 1)


@register("head", "norm_mlp", NormMlpHeadParams, count=_head_cost)
def build_head(geo: Geometry, p: NormMlpHeadParams) -> nn.Module:
    """Pool -> LayerNorm -> Linear -> tanh -> Linear (timm's NormMlpClassifierHead, as on coatnet_N_224)."""
    return NormMlpHead(geo.in_channels, geo.out_channels, p)
