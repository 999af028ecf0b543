"""Mobile-Former (Chen et al., CVPR 2022): a MobileNet branch and a handful of global tokens of fixed
width, joined in every block by two light cross-attention bridges.

Structure as in the paper's public implementation (AAboys/MobileFormer ``dna_blocks.py``):

* ``mobile_former`` block: Mobile->Former bridge (tokens attend to the raw input pixels), Former
  (token self-attention + FFN, post-LayerNorm), the Mobile sub-block with dynamic ReLUs whose
  coefficients come from token 0, then Former->Mobile (pixels attend to the tokens). A stride-1
  block is an inverted bottleneck (pw -> dw -> pw) whose identity skip is added before the
  Former->Mobile bridge; a stride-2 block is dw(s2) -> pw -> [dw -> pw] + inner skip.
* ``bneck_lite`` block: the first block, dw 3x3 with a channel multiplier then pw-linear, no bridges.
* ``mobileformer`` head: one last Mobile->Former update of the tokens, 1x1 conv -> pool, joined
  with token 0 -> Linear + BN1d + h_swish -> dropout -> classifier.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from nas.config import Params
from nas.domains import Choice, IntRange, param
from nas.layers import (ConvNormAct, Dim, DropPath, TokenStack, XStack, bn_cost, conv_norm_act_cost, hw, linear_cost,
                        ln_cost, mlp_cost, Mlp)
from nas.registry import Cost, Geometry, Tokens, register

RATIOS = Choice(2.0, 3.0, 4.0, 6.0)
GROUPS = Choice(1, 2, 4)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: (groups, C/groups) -> (C/groups, groups)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.reshape(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def _grouped(groups: int) -> Optional[str]:
    if groups > 1:  # a grouped conv after a shuffle connects channels that depend on the width
        return f"groups {groups}: grouped pointwise convs after a channel shuffle cannot be sliced (groups 1 can)"
    return None


def _multiplied(cin: int) -> dict:
    """Slice layouts of a depthwise conv (+ BN) with a channel multiplier: its outputs are input
    channel x multiplier (PyTorch groups a conv's outputs per input channel)."""
    channels = Dim((cin, -1))
    return {"0.weight": (channels, None, None, None),
            **{f"1.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")}}


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, shuffle: int = 1) -> nn.Module:
    """Conv (no bias) + BN, followed by a channel shuffle of ``shuffle`` groups when that is > 1."""
    conv = ConvNormAct(cin, cout, k, stride, groups=groups, act="none")
    return nn.Sequential(conv, ChannelShuffle(shuffle)) if shuffle > 1 else conv


# ------------------------------------------------------------------------------ token-side layers
class MobileToFormer(nn.Module):
    """Tokens attend to the feature map: queries Linear(d -> C) of the tokens, keys = values = the
    pixels themselves (no projection, to stay cheap); the result is gated by 2 * h_sigmoid(Linear(tokens)),
    projected back to d, added to the tokens and LayerNormed (post-norm)."""

    def __init__(self, channels: int, token_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.gate = nn.Linear(token_dim, channels)
        self.q = nn.Linear(token_dim, channels)
        self.proj = nn.Linear(channels, token_dim)
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = tokens.shape[1]
        q = self.q(tokens).reshape(b, t, self.heads, -1).transpose(1, 2)
        kv = x.reshape(b, self.heads, c // self.heads, h * w).transpose(-1, -2)
        out = F.scaled_dot_product_attention(q, kv, kv).transpose(1, 2).reshape(b, t, c)
        out = out * (2 * F.hardsigmoid(self.gate(tokens)))
        return self.norm(tokens + self.proj(out))


def mobile_to_former_cost(channels: int, size: tuple[int, int], tokens: Tokens) -> Cost:
    t, d = tokens.num, tokens.dim
    return (linear_cost(d, channels, t) * 2 + linear_cost(channels, d, t) + ln_cost(d, t)
            + Cost(0, 2 * t * hw(size) * channels))


class Former(nn.Module):
    """Token self-attention (queries projected, keys = values = the tokens) + Linear, then an FFN;
    each with a residual and a post-LayerNorm."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act="gelu")
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, t, d = tokens.shape
        q = self.q(tokens).reshape(b, t, self.heads, -1).transpose(1, 2)
        kv = tokens.reshape(b, t, self.heads, -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, kv, kv).transpose(1, 2).reshape(b, t, d)
        tokens = self.norm1(tokens + self.proj(out))
        return self.norm2(tokens + self.mlp(tokens))


def former_cost(tokens: Tokens, mlp_ratio: float) -> Cost:
    t, d = tokens.num, tokens.dim
    return (linear_cost(d, d, t) * 2 + Cost(0, 2 * t * t * d) + ln_cost(d, t) * 2
            + mlp_cost(d, int(d * mlp_ratio), t))


class FormerToMobile(nn.Module):
    """Pixels attend to the tokens: queries = the pixels (no projection), keys and values Linear(d -> C)
    of the tokens; the result is added to the feature map."""

    def __init__(self, channels: int, token_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.k = nn.Linear(token_dim, channels)
        self.v = nn.Linear(token_dim, channels)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = tokens.shape[1]
        q = x.reshape(b, self.heads, c // self.heads, h * w).transpose(-1, -2)
        k = self.k(tokens).reshape(b, t, self.heads, -1).transpose(1, 2)
        v = self.v(tokens).reshape(b, t, self.heads, -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, hw, c / heads)
        return x + out.transpose(-1, -2).reshape(b, c, h, w)


def former_to_mobile_cost(channels: int, size: tuple[int, int], tokens: Tokens) -> Cost:
    t, d = tokens.num, tokens.dim
    return linear_cost(d, channels, t) * 2 + Cost(0, 2 * hw(size) * t * channels)


class DynamicReLU(nn.Module):
    """DY-ReLU with two pieces and no bias: max(a1 x, a2 x) per channel, a1 in [0, 2], a2 in [-1, 1],
    generated from token 0 by Linear(d, d/r) -> ReLU -> Linear(d/r, 2C) -> h_sigmoid. ``channels_by``:
    how the channels are laid out for a supernet (a depthwise conv's input x multiplier: (cin, -1))."""

    def __init__(self, token_dim: int, channels: int, reduction: int, channels_by: tuple[int, ...] = (-1,)):
        super().__init__()
        self.channels_by = channels_by
        self.hyper = nn.Sequential(nn.Linear(token_dim, token_dim // reduction), nn.ReLU(),
                                   nn.Linear(token_dim // reduction, 2 * channels), nn.Hardsigmoid())

    def slice_layout(self) -> dict:
        pieces = Dim((2, *self.channels_by))  # [a1 | a2], each per channel
        return {"hyper.2.weight": (pieces, None), "hyper.2.bias": (pieces,)}

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        a1, a2 = self.hyper(tokens[:, 0])[:, :, None, None].chunk(2, dim=1)
        return torch.maximum(x * (2 * a1), x * (2 * a2 - 1))


def dynamic_relu_cost(token_dim: int, channels: int, reduction: int) -> Cost:
    return linear_cost(token_dim, token_dim // reduction, 1) + linear_cost(token_dim // reduction, 2 * channels, 1)


# ------------------------------------------------------------------------------ Mobile-Former block
@dataclass(frozen=True)
class MobileFormerParams(Params):
    """Hidden widths are ratio x the block's input width, as in the official tables (first block of a
    stage usually 6x, later blocks 3x, 4x or 6x)."""

    first_expand_ratio: float = param(6.0, RATIOS, "hidden width of a stage's first block = ratio x its input width")
    expand_ratio: float = param(4.0, RATIOS, "hidden width of the stage's later blocks = ratio x width")
    down_expand_ratio: float = param(4.0, RATIOS, "stride-2 block: its second depthwise conv widens the output this much")
    bridge_heads: int = param(2, Choice(1, 2, 4), "heads of the Mobile->Former and Former->Mobile cross-attentions")
    former_heads: int = param(4, Choice(1, 2, 4, 8), "heads of the token self-attention")
    former_mlp_ratio: float = param(2.0, Choice(2.0, 4.0), "hidden width of the Former's FFN = ratio x token dim")
    dyrelu_reduction: int = param(4, Choice(2, 4, 8), "the dynamic-ReLU hyper-MLP squeezes token 0 to dim / this")
    groups: int = param(1, GROUPS, "groups of the pointwise convs, each followed by a channel shuffle (26M: 4)")

    def unsliceable(self) -> Optional[str]:
        return _grouped(self.groups)

    def check(self, geo: Geometry) -> Optional[str]:
        if geo.tokens is None:
            return "Mobile-Former blocks need global tokens (set global_tokens, e.g. num=6, dim=192)"
        if geo.stride not in (1, 2):
            return f"a Mobile-Former block downsamples by 1 or 2, not {geo.stride}"
        d = geo.tokens.dim
        if d % self.former_heads:
            return f"token dim {d} is not divisible by former_heads {self.former_heads}"
        if d // self.dyrelu_reduction < 1:
            return f"token dim {d} is too small for dyrelu_reduction {self.dyrelu_reduction}"
        for cin, cout, stride, ratio in _blocks(geo, 2, self):
            hidden = round(cin * ratio)
            widths = (cin, hidden, cout)
            if stride == 2:
                if hidden % cin:  # the stride-2 block's first conv is depthwise with a channel multiplier
                    return f"first_expand_ratio {ratio} must make {cin} channels an integer multiple"
                widths += (round(cout * self.down_expand_ratio),)
            for c in (cin, cout):
                if c % self.bridge_heads:
                    return f"width {c} is not divisible by bridge_heads {self.bridge_heads}"
            for c in widths:
                if c % self.groups:
                    return f"width {c} is not divisible by groups {self.groups}"
        return None


def _blocks(geo: Geometry, depth: int, p: MobileFormerParams):
    """(in channels, out channels, stride, expand ratio) of each block of the stage."""
    cin, stride = geo.in_channels, geo.stride
    for i in range(depth):
        yield cin, geo.out_channels, stride, p.first_expand_ratio if i == 0 else p.expand_ratio
        cin, stride = geo.out_channels, 1


class InvertedMobile(nn.Module):
    """Stride-1 Mobile sub-block (``DnaBlock``): pw (in -> hidden) BN DyReLU -> dw3x3 BN DyReLU -> pw (-> out) BN."""

    def __init__(self, cin: int, cout: int, hidden: int, token_dim: int, p: MobileFormerParams):
        super().__init__()
        self.expand = _conv_bn(cin, hidden, 1, groups=p.groups, shuffle=p.groups)
        self.act1 = DynamicReLU(token_dim, hidden, p.dyrelu_reduction)
        self.dw = _conv_bn(hidden, hidden, 3, groups=hidden)
        self.act2 = DynamicReLU(token_dim, hidden, p.dyrelu_reduction)
        self.project = _conv_bn(hidden, cout, 1, groups=p.groups, shuffle=p.groups)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.expand(x), tokens)
        return self.project(self.act2(self.dw(x), tokens))


def _inverted_cost(cin, cout, hidden, size, d, p: MobileFormerParams) -> Cost:
    return (conv_norm_act_cost(cin, hidden, 1, size, groups=p.groups) + conv_norm_act_cost(hidden, hidden, 3, size, hidden)
            + conv_norm_act_cost(hidden, cout, 1, size, groups=p.groups)
            + dynamic_relu_cost(d, hidden, p.dyrelu_reduction) * 2)


class DownsampleMobile(nn.Module):
    """Stride-2 Mobile sub-block (``DnaBlock3``): dw3x3 s2 (in -> hidden) BN DyReLU -> pw (-> out) BN,
    then dw3x3 (out -> inner) BN DyReLU -> pw (-> out) BN with an inner skip."""

    def __init__(self, cin: int, cout: int, stride: int, hidden: int, token_dim: int, p: MobileFormerParams):
        super().__init__()
        inner = round(cout * p.down_expand_ratio)
        shuffle = p.groups > 1
        # the official code shuffles the depthwise outputs with as many groups as input channels
        self.dw1 = _conv_bn(cin, hidden, 3, stride, groups=cin, shuffle=cin if shuffle else 1)
        # named apart from the stride-1 block's: these read input channel x multiplier
        self.dw1_act = DynamicReLU(token_dim, hidden, p.dyrelu_reduction, channels_by=(cin, -1))
        self.pw1 = _conv_bn(hidden, cout, 1, groups=p.groups)
        self.dw2 = _conv_bn(cout, inner, 3, groups=cout, shuffle=cout if shuffle else 1)
        self.dw2_act = DynamicReLU(token_dim, inner, p.dyrelu_reduction, channels_by=(cout, -1))
        self.pw2 = _conv_bn(inner, cout, 1, groups=p.groups)
        self.drop_path = DropPath()
        self.widths = (cin, cout)

    def slice_layout(self) -> dict:  # without shuffles (groups 1): depthwise convs with a channel multiplier
        cin, cout = self.widths
        return {**{f"dw1.{k}": v for k, v in _multiplied(cin).items()},
                **{f"dw2.{k}": v for k, v in _multiplied(cout).items()},
                "pw1.0.weight": (None, Dim((cin, -1)), None, None), "pw2.0.weight": (None, Dim((cout, -1)), None, None)}

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = self.pw1(self.dw1_act(self.dw1(x), tokens))
        return x + self.drop_path(self.pw2(self.dw2_act(self.dw2(x), tokens)))


def _downsample_cost(cin, cout, hidden, size, d, p: MobileFormerParams) -> Cost:
    inner = round(cout * p.down_expand_ratio)
    return (conv_norm_act_cost(cin, hidden, 3, size, cin) + conv_norm_act_cost(hidden, cout, 1, size, groups=p.groups)
            + conv_norm_act_cost(cout, inner, 3, size, cout) + conv_norm_act_cost(inner, cout, 1, size, groups=p.groups)
            + dynamic_relu_cost(d, hidden, p.dyrelu_reduction) + dynamic_relu_cost(d, inner, p.dyrelu_reduction))


class MobileFormerBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, hidden: int, token_dim: int, p: MobileFormerParams):
        super().__init__()
        self.to_former = MobileToFormer(cin, token_dim, p.bridge_heads)
        self.former = Former(token_dim, p.former_heads, p.former_mlp_ratio)
        if stride == 1:
            self.mobile = InvertedMobile(cin, cout, hidden, token_dim, p)
        else:
            self.mobile = DownsampleMobile(cin, cout, stride, hidden, token_dim, p)
        self.to_mobile = FormerToMobile(cout, token_dim, p.bridge_heads)
        self.residual = stride == 1 and cin == cout
        # on the Mobile branch's residuals (here, or the inner skip of a stride-2 block); the
        # token side (bridges, Former) keeps its post-norm residuals whole
        self.drop_path = DropPath() if self.residual else None

    def forward(self, x: torch.Tensor, tokens: torch.Tensor):
        tokens = self.former(self.to_former(x, tokens))  # the bridge reads the block's input
        out = self.mobile(x, tokens)
        if self.residual:  # added before Former->Mobile, as the official code does
            out = self.drop_path(out) + x
        return self.to_mobile(out, tokens), tokens


def _mobile_former_count(geo: Geometry, depth: int, p: MobileFormerParams) -> Cost:
    cost, size, tokens = Cost(), geo.size, geo.tokens
    for cin, cout, stride, ratio in _blocks(geo, depth, p):
        out = (-(-size[0] // stride), -(-size[1] // stride))
        hidden = round(cin * ratio)
        mobile = _inverted_cost if stride == 1 else _downsample_cost
        cost += (mobile_to_former_cost(cin, size, tokens) + former_cost(tokens, p.former_mlp_ratio)
                 + mobile(cin, cout, hidden, out, tokens.dim, p) + former_to_mobile_cost(cout, out, tokens))
        size = out
    return cost


@register("block", "mobile_former", MobileFormerParams, count=_mobile_former_count, code="C", can_downsample=True)
def build_mobile_former(geo: Geometry, depth: int, p: MobileFormerParams) -> nn.Module:
    """Mobile-Former blocks: a dynamic-ReLU MobileNet block bridged both ways to the global tokens."""
    return TokenStack([MobileFormerBlock(cin, cout, stride, round(cin * ratio), geo.tokens.dim, p)
                       for cin, cout, stride, ratio in _blocks(geo, depth, p)])


# ------------------------------------------------------------------------------ bneck-lite block
@dataclass(frozen=True)
class BneckLiteParams(Params):
    channel_multiplier: int = param(2, Choice(1, 2, 3, 4, 6), "the depthwise conv outputs this x its input channels")
    groups: int = param(1, GROUPS, "groups of the pointwise-linear conv, after a channel shuffle (26M: 4)")

    def unsliceable(self) -> Optional[str]:
        return _grouped(self.groups)

    def check(self, geo: Geometry) -> Optional[str]:
        if geo.stride not in (1, 2):
            return f"a bneck-lite block downsamples by 1 or 2, not {geo.stride}"
        for c in (geo.in_channels * self.channel_multiplier, geo.out_channels):
            if c % self.groups:
                return f"width {c} is not divisible by groups {self.groups}"
        return None


class BneckLite(nn.Module):
    """dw3x3 (in -> multiplier x in) BN ReLU6 -> pw-linear BN, with an identity skip when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, p: BneckLiteParams):
        super().__init__()
        hidden = cin * p.channel_multiplier
        layers = [ConvNormAct(cin, hidden, 3, stride, groups=cin, act="relu6")]
        if p.groups > 1:
            layers.append(ChannelShuffle(cin))
        layers.append(ConvNormAct(hidden, cout, 1, groups=p.groups, act="none"))
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        self.drop_path = DropPath() if self.residual else None
        self.cin = cin

    def slice_layout(self) -> dict:  # without a shuffle (groups 1): a depthwise conv with a channel multiplier
        return {**{f"conv.0.{k}": v for k, v in _multiplied(self.cin).items()},
                "conv.1.0.weight": (None, Dim((self.cin, -1)), None, None)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.conv(x)) if self.residual else self.conv(x)


def _bneck_lite_count(geo: Geometry, depth: int, p: BneckLiteParams) -> Cost:
    cost, size, cin, stride = Cost(), geo.size, geo.in_channels, geo.stride
    for _ in range(depth):
        size = (-(-size[0] // stride), -(-size[1] // stride))
        hidden = cin * p.channel_multiplier
        cost += conv_norm_act_cost(cin, hidden, 3, size, cin) + conv_norm_act_cost(hidden, geo.out_channels, 1, size, p.groups)
        cin, stride = geo.out_channels, 1
    return cost


@register("block", "bneck_lite", BneckLiteParams, count=_bneck_lite_count, code="C", can_downsample=True)
def build_bneck_lite(geo: Geometry, depth: int, p: BneckLiteParams) -> nn.Module:
    """Mobile-Former's first block: a depthwise conv with channel multiplier and a linear pointwise conv."""
    blocks, cin, stride = [], geo.in_channels, geo.stride
    for _ in range(depth):
        blocks.append(BneckLite(cin, geo.out_channels, stride, p))
        cin, stride = geo.out_channels, 1
    return XStack(blocks)


# ------------------------------------------------------------------------------ head
@dataclass(frozen=True)
class MobileFormerHeadParams(Params):
    expand_ratio: int = param(6, Choice(4, 6), "the 1x1 conv widens the last map to ratio x channels")
    hidden_width: int = param(1280, IntRange(512, 2560, 64), "width of Linear + BN1d + h_swish before the classifier")
    bridge_heads: int = param(2, Choice(1, 2, 4), "heads of the final Mobile->Former token update")
    groups: int = param(1, GROUPS, "groups of the 1x1 conv, after a channel shuffle (26M: 4)")
    dropout: float = param(0.0, Choice(0.0, 0.1, 0.2, 0.3), "dropout before the classifier (training recipe)")

    def unsliceable(self) -> Optional[str]:
        return _grouped(self.groups)

    def check(self, geo: Geometry) -> Optional[str]:
        if geo.tokens is None:
            return "the Mobile-Former head needs global tokens (it concatenates token 0)"
        if geo.in_channels % self.bridge_heads:
            return f"width {geo.in_channels} is not divisible by bridge_heads {self.bridge_heads}"
        if geo.in_channels % self.groups:
            return f"width {geo.in_channels} is not divisible by groups {self.groups}"
        return None


class _BatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that uses its running statistics for a one-sample training batch (batch statistics
    are undefined there and PyTorch would raise); any real batch behaves as usual."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class MobileFormerHead(nn.Module):
    def __init__(self, cin: int, classes: int, token_dim: int, p: MobileFormerHeadParams):
        super().__init__()
        hidden = cin * p.expand_ratio
        self.to_former = MobileToFormer(cin, token_dim, p.bridge_heads)  # the tokens' last update
        conv = ConvNormAct(cin, hidden, 1, groups=p.groups, act="relu6")
        self.conv = nn.Sequential(ChannelShuffle(p.groups), conv) if p.groups > 1 else conv
        self.pool = nn.AdaptiveAvgPool2d(1)
        # Linear over [pooled features | token 0], held as its two blocks of columns (the same function
        # and parameters as one Linear on the concatenation), so that each is sliced by its own width
        self.fc_pooled = nn.Linear(hidden, p.hidden_width)
        self.fc_token = nn.Linear(token_dim, p.hidden_width, bias=False)
        self.fc = nn.Sequential(_BatchNorm1d(p.hidden_width), nn.Hardswish())
        self.dropout = nn.Dropout(p.dropout)
        self.classifier = nn.Linear(p.hidden_width, classes)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        tokens = self.to_former(x, tokens)
        x = F.hardswish(self.pool(self.conv(x)).flatten(1))
        x = self.fc(self.fc_pooled(x) + self.fc_token(tokens[:, 0]))
        return self.classifier(self.dropout(x))


def _head_count(geo: Geometry, p: MobileFormerHeadParams) -> Cost:
    cin, size, d = geo.in_channels, geo.size, geo.tokens.dim
    hidden = cin * p.expand_ratio
    return (mobile_to_former_cost(cin, size, geo.tokens) + conv_norm_act_cost(cin, hidden, 1, size, p.groups)
            + Cost(0, hidden * hw(size))  # adaptive average pooling
            + linear_cost(hidden + d, p.hidden_width, 1) + bn_cost(p.hidden_width, 1)
            + linear_cost(p.hidden_width, geo.out_channels, 1))


@register("head", "mobileformer", MobileFormerHeadParams, count=_head_count)
def build_mobileformer_head(geo: Geometry, p: MobileFormerHeadParams) -> nn.Module:
    """Final Mobile->Former update, 1x1 conv + pool, concat token 0, Linear + BN1d + h_swish, classifier."""
    return MobileFormerHead(geo.in_channels, geo.out_channels, geo.tokens.dim, p)
