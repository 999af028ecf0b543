"""LightViT (Huang et al., arXiv 2207.05557; hunto/image_classification_sota lib/models/lightvit.py).

A convolutional stem, then transformer blocks in which learned global tokens and image tokens
exchange information: local 7x7 window attention, global aggregation (global tokens attend to
every image token) and global broadcast (image tokens attend to the aggregated global tokens);
an FFN gated by dual-dimension (channel x spatial) attention; residual patch merging between
stages; a head that averages a per-token neck over all tokens.

The global tokens ride beside the map: the presets use ``GlobalTokensConfig(num, dim=None)``,
so the builder projects them (LayerNorm + bias-free Linear) when the width changes, which is
exactly the global-token branch of LightViT's ResidualMergePatch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from nas.config import Params
from nas.domains import Choice, IntRange, param
from nas.layers import (ConvNormAct, Dim, DropPath, LayerNorm2d, RelativePositionBias, attention_cost, conv_cost,
                        conv_norm_act_cost, hw, linear_cost, ln_cost, padded, relative_position_bias_params, to_map,
                        to_tokens, window_partition, window_reverse)
from nas.registry import Cost, Geometry, out_size, register

BLOCK_EPS = 1e-6  # the blocks' and the head's pre-norms; the stem, BiAttn and neck norms keep 1e-5


# ------------------------------------------------------------------------------ stem
@dataclass(frozen=True)
class LightViTStemParams(Params):
    """Conv3x3 s2 to half the width, depthwise 3x3 convs (the last one strided), conv3x3 s2 to the
    width, LayerNorm over channels. Every conv but the last has BN + GELU."""

    depthwise_convs: int = param(3, IntRange(1, 3), "depthwise 3x3 convs at half width; the last strides 2")


def _stem_cost(geo: Geometry, p: LightViTStemParams) -> Cost:
    hidden, width = geo.out_channels // 2, geo.out_channels
    s2, s4, s8 = out_size(geo.size, 2), out_size(geo.size, 4), out_size(geo.size, 8)
    cost = conv_norm_act_cost(geo.in_channels, hidden, 3, s2)
    for i in range(p.depthwise_convs):
        cost += conv_norm_act_cost(hidden, hidden, 3, s4 if i == p.depthwise_convs - 1 else s2, groups=hidden)
    return cost + conv_cost(hidden, width, 3, s8, bias=True) + ln_cost(width, hw(s8))


@register("stem", "lightvit", LightViTStemParams, count=_stem_cost, stride=lambda p: 8)
def build_stem(geo: Geometry, p: LightViTStemParams) -> nn.Module:
    """LightViT's ConvStem (stride 8); its closing LayerNorm acts over the channels of the NCHW map."""
    hidden = geo.out_channels // 2
    layers = [ConvNormAct(geo.in_channels, hidden, 3, 2, act="gelu")]
    for i in range(p.depthwise_convs):
        stride = 2 if i == p.depthwise_convs - 1 else 1
        layers.append(ConvNormAct(hidden, hidden, 3, stride, groups=hidden, act="gelu"))
    layers += [nn.Conv2d(hidden, geo.out_channels, 3, 2, 1), LayerNorm2d(geo.out_channels)]
    return nn.Sequential(*layers)


# ------------------------------------------------------------------------------ embed
@dataclass(frozen=True)
class ResidualMergeParams(Params):
    def check(self, geo: Geometry) -> Optional[str]:
        if geo.stride != 2:
            return f"residual_merge halves the resolution; the stage stride must be 2, got {geo.stride}"
        return None


class ResidualMerge(nn.Module):
    """Swin's patch merging plus a shortcut: 2x2 max-pool then a bias-free Linear, added."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * cin)
        self.reduction = nn.Linear(4 * cin, cout, bias=False)
        self.shortcut = nn.Linear(cin, cout, bias=False)

    def slice_layout(self) -> dict:
        four = Dim((4, -1))  # the four neighbours of a 2x2 patch, each the input width
        return {"norm.weight": (four,), "norm.bias": (four,), "reduction.weight": (None, four)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 2 or w % 2:  # zero-pad odd maps, as the official detection backbone does
            x = F.pad(x, (0, w % 2, 0, h % 2))
        shortcut = self.shortcut(F.max_pool2d(x, 2).permute(0, 2, 3, 1))
        x = x.permute(0, 2, 3, 1)
        # the same neighbour order as Swin: (0,0), (1,0), (0,1), (1,1)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return (self.reduction(self.norm(x)) + shortcut).permute(0, 3, 1, 2)


def _merge_cost(geo: Geometry, p: ResidualMergeParams) -> Cost:
    n, cin, cout = hw(geo.out_size), geo.in_channels, geo.out_channels
    return ln_cost(4 * cin, n) + linear_cost(4 * cin, cout, n, bias=False) + linear_cost(cin, cout, n, bias=False)


@register("embed", "residual_merge", ResidualMergeParams, count=_merge_cost)
def build_residual_merge(geo: Geometry, p: ResidualMergeParams) -> nn.Module:
    """LightViT's ResidualMergePatch on the map: LN(4C) -> Linear(4C -> C') plus max-pool -> Linear(C -> C')."""
    return ResidualMerge(geo.in_channels, geo.out_channels)


# ------------------------------------------------------------------------------ block
@dataclass(frozen=True)
class LightViTParams(Params):
    window_size: int = param(7, Choice(4, 7, 8, 14), "side of the local attention windows (unshifted)")
    head_dim: int = param(32, Choice(16, 32, 64), "channels per attention head (heads = width / head_dim)")
    mlp_ratio: float = param(4.0, Choice(2.0, 3.0, 4.0, 6.0, 8.0), "FFN hidden width / width")
    reduce_ratio: float = param(0.25, Choice(0.125, 0.25, 0.5), "BiAttn's reduced width / width (act_ratio)")
    qkv_bias: bool = param(True, Choice(True, False), "bias in qkv and kv_global")

    def check(self, geo: Geometry) -> Optional[str]:
        c = geo.out_channels
        if geo.tokens is None:
            return "lightvit blocks need global tokens: set global_tokens (e.g. GlobalTokensConfig(num=8))"
        if geo.tokens.dim != c:
            return (f"lightvit blocks need global tokens as wide as the stage ({c}), got {geo.tokens.dim}; "
                    f"use GlobalTokensConfig(dim=None)")
        if c % self.head_dim:
            return f"width {c} is not divisible by head_dim {self.head_dim}"
        if int(c * self.reduce_ratio) < 1:
            return f"width {c} x reduce_ratio {self.reduce_ratio} leaves no BiAttn channels"
        return None


def _split_heads(x: torch.Tensor, parts: int, heads: int) -> tuple[torch.Tensor, ...]:
    """(B, N, parts*C) -> ``parts`` tensors of (B, heads, N, C/heads)."""
    b, n, _ = x.shape
    return x.reshape(b, n, parts, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) -> (B, N, heads*d)."""
    return x.transpose(1, 2).flatten(2)


class LightViTAttention(nn.Module):
    """Local window MHSA on image tokens + global aggregation and broadcast, one output projection."""

    def __init__(self, dim: int, p: LightViTParams):
        super().__init__()
        self.heads, self.window = dim // p.head_dim, p.window_size
        self.qkv = nn.Linear(dim, 3 * dim, bias=p.qkv_bias)
        self.kv_global = nn.Linear(dim, 2 * dim, bias=p.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.pos_bias = RelativePositionBias((p.window_size, p.window_size), self.heads)

    def slice_layout(self) -> dict:
        qkv, kv = Dim((3, self.heads, -1)), Dim((2, self.heads, -1))  # q, k, v (k, v) x heads x head size
        return {"qkv.weight": (qkv, None), "qkv.bias": (qkv,), "kv_global.weight": (kv, None),
                "kv_global.bias": (kv,), "proj.weight": (None, Dim((self.heads, -1)))}

    def forward(self, x: torch.Tensor, num_tokens: int, size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        (h, w), ws, heads = size, self.window, self.heads
        glb, img = x[:, :num_tokens], x[:, num_tokens:].reshape(b, h, w, c)
        # zero-pad the map to whole windows before qkv (the official detection backbone's way)
        hp, wp = padded(size, ws)
        img = F.pad(img, (0, 0, 0, wp - w, 0, hp - h))
        qkv = self.qkv(torch.cat([glb, img.reshape(b, hp * wp, c)], 1))
        q_glb = _split_heads(qkv[:, :num_tokens, :c], 1, heads)[0]  # the global tokens' k, v go unused
        qkv_img = qkv[:, num_tokens:].reshape(b, hp, wp, 3 * c)

        # local: unshifted windows with a relative position bias
        q, k, v = _split_heads(window_partition(qkv_img, ws)[0], 3, heads)
        local = _merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=self.pos_bias().to(q.dtype)))
        local = window_reverse(local, ws, (hp, wp), size).reshape(b, h * w, c)

        # global aggregation over the (unpadded) image tokens, then broadcast back to them
        q, k, v = _split_heads(qkv_img[:, :h, :w].reshape(b, h * w, 3 * c), 3, heads)
        x_glb = _merge_heads(F.scaled_dot_product_attention(q_glb, k, v))
        k_glb, v_glb = _split_heads(self.kv_global(x_glb), 2, heads)
        x_img = local + _merge_heads(F.scaled_dot_product_attention(q, k_glb, v_glb))
        return self.proj(torch.cat([x_glb, x_img], 1))


class BiAttnMlp(nn.Module):
    """fc1 -> GELU -> fc2, then gated by channel attention (from the mean token) times spatial
    attention (from each token beside the mean token)."""

    def __init__(self, dim: int, hidden: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)
        self.global_reduce = nn.Linear(dim, reduced)
        self.local_reduce = nn.Linear(dim, reduced)
        self.channel_select = nn.Linear(reduced, dim)
        self.spatial_select = nn.Linear(2 * reduced, 1)

    def slice_layout(self) -> dict:
        return {"spatial_select.weight": (None, Dim((2, -1)))}  # its input is [local; pooled]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc2(self.act(self.fc1(x)))
        y = self.norm(x)
        pooled = self.act(self.global_reduce(y.mean(1, keepdim=True)))  # the mean includes the global tokens
        local = self.act(self.local_reduce(y))
        channel = torch.sigmoid(self.channel_select(pooled))  # (B, 1, C)
        spatial = torch.sigmoid(self.spatial_select(torch.cat([local, pooled.expand_as(local)], -1)))  # (B, N, 1)
        return x * (channel * spatial)


class LightViTBlock(nn.Module):
    def __init__(self, dim: int, p: LightViTParams):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_EPS)
        self.attn = LightViTAttention(dim, p)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_EPS)
        self.mlp = BiAttnMlp(dim, int(dim * p.mlp_ratio), int(dim * p.reduce_ratio))
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor, num_tokens: int, size: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), num_tokens, size))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class LightViTStage(nn.Module):
    """Runs the blocks on the sequence [global tokens; image tokens], flattened once per stage."""

    def __init__(self, dim: int, depth: int, p: LightViTParams):
        super().__init__()
        self.blocks = nn.ModuleList([LightViTBlock(dim, p) for _ in range(depth)])

    def forward(self, x: torch.Tensor, tokens: torch.Tensor):
        size, num = tuple(x.shape[-2:]), tokens.shape[1]
        seq = torch.cat([tokens, to_tokens(x)], 1)
        for block in self.blocks:
            seq = block(seq, num, size)
        return to_map(seq[:, num:], size), seq[:, :num]


def _block_cost(geo: Geometry, depth: int, p: LightViTParams) -> Cost:
    c, nt, size = geo.out_channels, geo.tokens.num, geo.size
    heads, ws, hd = c // p.head_dim, p.window_size, p.head_dim
    n_img = hw(size)
    n, hp_wp = nt + n_img, hw(padded(size, ws))
    hidden, reduced = int(c * p.mlp_ratio), int(c * p.reduce_ratio)
    attn = (linear_cost(c, 3 * c, nt + hp_wp, p.qkv_bias)
            + attention_cost(ws * ws, ws * ws, hd, heads) * (hp_wp // (ws * ws))
            + Cost(relative_position_bias_params((ws, ws), heads), 0)
            + attention_cost(nt, n_img, hd, heads) + linear_cost(c, 2 * c, nt, p.qkv_bias)
            + attention_cost(n_img, nt, hd, heads) + linear_cost(c, c, n))
    mlp = (linear_cost(c, hidden, n) + linear_cost(hidden, c, n) + ln_cost(c, n)
           + linear_cost(c, reduced, 1) + linear_cost(c, reduced, n)
           + linear_cost(reduced, c, 1) + linear_cost(2 * reduced, 1, n))
    return (ln_cost(c, n) * 2 + attn + mlp) * depth


@register("block", "lightvit", LightViTParams, count=_block_cost, code="T")
def build_block(geo: Geometry, depth: int, p: LightViTParams) -> nn.Module:
    """LightViT block: pre-norm local-global attention, then the BiAttn FFN, on [global; image] tokens."""
    return LightViTStage(geo.out_channels, depth, p)


# ------------------------------------------------------------------------------ head
@dataclass(frozen=True)
class LightViTHeadParams(Params):
    neck_dim: int = param(1280, Choice(0, 1024, 1280, 1536), "per-token Linear + LN + GELU before the mean; 0 = none")

    def check(self, geo: Geometry) -> Optional[str]:
        if geo.tokens is not None and geo.tokens.dim != geo.in_channels:
            return (f"the lightvit head averages global tokens with the map, so they must be as wide as it "
                    f"({geo.in_channels}), got {geo.tokens.dim}")
        return None


class LightViTHead(nn.Module):
    def __init__(self, cin: int, classes: int, p: LightViTHeadParams):
        super().__init__()
        self.norm = nn.LayerNorm(cin, eps=BLOCK_EPS)
        if p.neck_dim:
            self.neck = nn.Sequential(nn.Linear(cin, p.neck_dim), nn.LayerNorm(p.neck_dim), nn.GELU())
        else:
            self.neck = nn.Identity()
        self.fc = nn.Linear(p.neck_dim or cin, classes)

    def forward(self, x: torch.Tensor, tokens: Optional[torch.Tensor]) -> torch.Tensor:
        seq = to_tokens(x) if tokens is None else torch.cat([tokens, to_tokens(x)], 1)
        return self.fc(self.neck(self.norm(seq)).mean(1))


def _head_cost(geo: Geometry, p: LightViTHeadParams) -> Cost:
    c, n = geo.in_channels, hw(geo.size) + (geo.tokens.num if geo.tokens is not None else 0)
    cost = ln_cost(c, n)
    if p.neck_dim:
        cost += linear_cost(c, p.neck_dim, n) + ln_cost(p.neck_dim, n)
    return cost + linear_cost(p.neck_dim or c, geo.out_channels, 1)


@register("head", "lightvit", LightViTHeadParams, count=_head_cost)
def build_head(geo: Geometry, p: LightViTHeadParams) -> nn.Module:
    """LN over all tokens -> neck (Linear + LN + GELU) per token -> mean over all tokens -> Linear."""
    return LightViTHead(geo.in_channels, geo.out_channels, p)
