"""EfficientViT from MIT HAN Lab (Cai et al., ICCV 2023; mit-han-lab/efficientvit
``efficientvit/models/nn/ops.py``, ``models/efficientvit/cls.py``). Not Microsoft's EfficientViT.

``lite_mla`` is the EfficientViTBlock: a residual LiteMLA (multi-scale ReLU linear attention)
followed by a residual fewer-norm MBConv. The ``efficientvit`` head is the official ClsHead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from nas.blocks.mbconv import MBConv, MBConvParams, mbconv_cost
from nas.config import Params
from nas.domains import Choice, IntRange, Seq, param
from nas.layers import Dim, DropPath, XStack, bn_cost, conv_cost, conv_norm_act_cost, hw, linear_cost, ln_cost, make_act
from nas.registry import Cost, Geometry, register

ACTS = ("hswish", "gelu", "relu", "silu")


@dataclass(frozen=True)
class LiteMLAParams(Params):
    head_dim: int = param(32, Choice(8, 16, 32), "channels per linear-attention head; heads = width / head_dim")
    scales: tuple = param((5,), Seq(Choice(3, 5, 7), 0, 2),
                          "kernels of the multi-scale token aggregation branches (each adds a set of heads)")
    expand_ratio: float = param(4.0, Choice(2.0, 3.0, 4.0, 6.0), "expansion of the block's MBConv")
    act: str = param("hswish", Choice(*ACTS), "activation of the MBConv")

    def check(self, geo: Geometry) -> Optional[str]:
        if geo.out_channels % self.head_dim:
            return f"width {geo.out_channels} is not divisible by head_dim {self.head_dim}"
        return None


def _local_params(p: LiteMLAParams) -> MBConvParams:
    # EfficientViTBlock's local module: fewer-norm MBConv, hidden width round(C x expand)
    return MBConvParams(expand_ratio=p.expand_ratio, act=p.act, norm_style="fewer", hidden_divisor=1)


class LiteMLA(nn.Module):
    """Multi-scale ReLU linear attention: 1x1 qkv, aggregated by depthwise kxk + grouped 1x1 convs."""

    eps = 1e-15

    def __init__(self, dim: int, p: LiteMLAParams):
        super().__init__()
        self.head_dim = p.head_dim
        heads = self.heads = dim // p.head_dim
        qkv_dim = 3 * heads * p.head_dim
        self.qkv = nn.Conv2d(dim, qkv_dim, 1, bias=False)
        # each branch mixes q, k and v of one head only (groups = 3 * heads)
        self.aggreg = nn.ModuleList(nn.Sequential(
            nn.Conv2d(qkv_dim, qkv_dim, k, padding=k // 2, groups=qkv_dim, bias=False),
            nn.Conv2d(qkv_dim, qkv_dim, 1, groups=3 * heads, bias=False)) for k in p.scales)
        self.proj = nn.Sequential(nn.Conv2d(heads * p.head_dim * (1 + len(p.scales)), dim, 1, bias=False),
                                  nn.BatchNorm2d(dim))

    def slice_layout(self) -> dict:
        # channels are heads x [q | k | v] x head size; the projection reads [qkv; each scale's] x heads x head size
        per_head = Dim((self.heads, 3, -1))
        layout = {"qkv.weight": (per_head, None, None, None),
                  "proj.0.weight": (None, Dim((1 + len(self.aggreg), self.heads, -1)), None, None)}
        for j in range(len(self.aggreg)):
            layout[f"aggreg.{j}.0.weight"] = (per_head, None, None, None)
            layout[f"aggreg.{j}.1.weight"] = (per_head, None, None, None)
        return layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [branch(qkv) for branch in self.aggreg], dim=1)
        b, _, h, w = qkv.shape
        d = self.head_dim
        # channels are grouped per head as [q | k | v], d each
        qkv = qkv.reshape(b, -1, 3 * d, h * w)
        q, k, v = F.relu(qkv[:, :, :d]), F.relu(qkv[:, :, d:2 * d]), qkv[:, :, 2 * d:]
        if h * w > d:
            # linear: (v;1) k^T q, the appended row of ones gives the normaliser
            v = F.pad(v, (0, 0, 0, 1), value=1.0)
            out = torch.matmul(torch.matmul(v, k.transpose(-1, -2)), q)
            out = out[:, :, :-1] / (out[:, :, -1:] + self.eps)
        else:
            # fewer tokens than channels: the quadratic form is cheaper (as the official code does)
            att = torch.matmul(k.transpose(-1, -2), q)
            att = att / (att.sum(dim=2, keepdim=True) + self.eps)
            out = torch.matmul(v, att)
        return self.proj(out.reshape(b, -1, h, w))


def lite_mla_cost(dim: int, size: tuple[int, int], p: LiteMLAParams) -> Cost:
    n, d = hw(size), p.head_dim
    heads = dim // d
    qkv_dim = 3 * heads * d
    cost = conv_cost(dim, qkv_dim, 1, size)
    for k in p.scales:
        cost += conv_cost(qkv_dim, qkv_dim, k, size, groups=qkv_dim)
        cost += conv_cost(qkv_dim, qkv_dim, 1, size, groups=3 * heads)
    all_heads = heads * (1 + len(p.scales))
    matmuls = 2 * all_heads * ((d + 1) * d * n if n > d else d * n * n)
    return cost + Cost(0, matmuls) + conv_cost(all_heads * d, dim, 1, size) + bn_cost(dim, size)


class EfficientViTBlock(nn.Module):
    def __init__(self, dim: int, p: LiteMLAParams):
        super().__init__()
        self.context = LiteMLA(dim, p)
        self.local = MBConv(dim, dim, 1, _local_params(p))  # residual inside (same shape), its drop path too
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local(x + self.drop_path(self.context(x)))


def _count(geo: Geometry, depth: int, p: LiteMLAParams) -> Cost:
    c = geo.out_channels
    return (lite_mla_cost(c, geo.size, p) + mbconv_cost(c, c, 1, geo.size, _local_params(p))) * depth


@register("block", "lite_mla", LiteMLAParams, count=_count, code="T")
def build(geo: Geometry, depth: int, p: LiteMLAParams) -> nn.Module:
    """EfficientViT block: x + LiteMLA(x), then x + MBConv(x) (fewer-norm)."""
    return XStack([EfficientViTBlock(geo.out_channels, p) for _ in range(depth)])


# ------------------------------------------------------------------------------ head
@dataclass(frozen=True)
class EfficientViTHeadParams(Params):
    """1x1 conv-BN-act, global average pool, Linear (no bias)-LayerNorm-act, dropout, classifier."""

    conv_width: int = param(1024, IntRange(256, 8192, 64), "output channels of the 1x1 conv")
    fc_width: int = param(1280, IntRange(256, 8192, 64), "width of the hidden Linear layer")
    act: str = param("hswish", Choice(*ACTS))
    dropout: float = param(0.0, Choice(0.0, 0.1, 0.2), "before the classifier")


class EfficientViTHead(nn.Module):
    def __init__(self, cin: int, classes: int, p: EfficientViTHeadParams):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, p.conv_width, 1, bias=False), nn.BatchNorm2d(p.conv_width),
                                  make_act(p.act))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(p.conv_width, p.fc_width, bias=False), nn.LayerNorm(p.fc_width),
                                make_act(p.act))
        self.dropout = nn.Dropout(p.dropout)
        self.classifier = nn.Linear(p.fc_width, classes)

    def forward(self, x: torch.Tensor, tokens: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.pool(self.conv(x)).flatten(1)
        return self.classifier(self.dropout(self.fc(x)))


def _head_cost(geo: Geometry, p: EfficientViTHeadParams) -> Cost:
    return (conv_norm_act_cost(geo.in_channels, p.conv_width, 1, geo.size) + Cost(0, p.conv_width * hw(geo.size))
            + linear_cost(p.conv_width, p.fc_width, 1, bias=False) + ln_cost(p.fc_width, 1)
            + linear_cost(p.fc_width, geo.out_channels, 1))


@register("head", "efficientvit", EfficientViTHeadParams, count=_head_cost)
def build_head(geo: Geometry, p: EfficientViTHeadParams) -> nn.Module:
    """EfficientViT's classifier head (ClsHead)."""
    return EfficientViTHead(geo.in_channels, geo.out_channels, p)
