"""Layers shared by the block families, each with its analytic cost beside it.

Costs follow fvcore's rules exactly, so the analytic counter can match it:
conv = out elements x in/groups x k x k; linear = tokens x in x out (bias adds not counted);
matmul/bmm/einsum/attention = the multiply-adds of the product; BatchNorm (eval) = 2 per
element; LayerNorm and GroupNorm = 5 per element; adaptive average pooling = 1 per input
element; activations, element-wise adds, plain pooling and means = 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from nas.registry import Cost

ACTIVATIONS = ("relu", "relu6", "gelu", "silu", "hswish", "none")


def make_act(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "relu6": nn.ReLU6, "gelu": nn.GELU, "silu": nn.SiLU,
            "hswish": nn.Hardswish, "sigmoid": nn.Sigmoid, "hsigmoid": nn.Hardsigmoid,
            "none": nn.Identity}[name]()


# ---------------------------------------------------------------------------- costs
def conv_cost(cin: int, cout: int, k: int, out_hw: tuple[int, int], groups: int = 1, bias: bool = False) -> Cost:
    kk = k * k if isinstance(k, int) else k[0] * k[1]
    w = cout * (cin // groups) * kk
    return Cost(w + (cout if bias else 0), w * out_hw[0] * out_hw[1])


def linear_cost(cin: int, cout: int, tokens: int, bias: bool = True) -> Cost:
    return Cost(cin * cout + (cout if bias else 0), cin * cout * tokens)


def bn_cost(channels: int, hw: tuple[int, int] | int) -> Cost:
    n = hw if isinstance(hw, int) else hw[0] * hw[1]
    return Cost(2 * channels, 2 * channels * n)


def ln_cost(channels: int, tokens: int, affine: bool = True) -> Cost:
    """LayerNorm or GroupNorm over ``tokens`` positions of ``channels``."""
    return Cost(2 * channels if affine else 0, (5 if affine else 4) * channels * tokens)


def attention_cost(n_query: int, n_key: int, head_dim: int, heads: int, value_dim: Optional[int] = None) -> Cost:
    """MACs of softmax(q k^T) v for one image."""
    return Cost(0, heads * n_query * n_key * (head_dim + (value_dim if value_dim is not None else head_dim)))


def hw(size: tuple[int, int]) -> int:
    return size[0] * size[1]


# ---------------------------------------------------------------------------- modules
class ConvNormAct(nn.Sequential):
    """Conv2d ('same' padding) + optional BatchNorm + activation."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: str = "relu",
                 norm: bool = True, bias: Optional[bool] = None, padding: Optional[int] = None):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2 if padding is None else padding, groups=groups,
                            bias=(not norm) if bias is None else bias)]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        if act != "none":
            layers.append(make_act(act))
        super().__init__(*layers)


def conv_norm_act_cost(cin: int, cout: int, k: int, out_hw: tuple[int, int], groups: int = 1, norm: bool = True,
                       bias: Optional[bool] = None) -> Cost:
    cost = conv_cost(cin, cout, k, out_hw, groups, (not norm) if bias is None else bias)
    return cost + bn_cost(cout, out_hw) if norm else cost


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): in training, zero a residual branch for a random
    ``rate`` of the samples and scale the rest by 1 / (1 - rate); the identity otherwise.

    Blocks hold one in front of each residual branch at rate 0, where it adds no operation, no
    parameter and no random draw; :func:`set_drop_path` gives the rates (``build_model`` does)."""

    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4g}"


def drop_path_units(module: nn.Module) -> list[list[DropPath]]:
    """The residual blocks of ``module`` in forward order, each as the list of its DropPath layers.

    A block is the outermost module with a DropPath among its own children; DropPaths nested
    deeper inside it (an MBConv inside an EfficientViT block) belong to it and share its rate."""
    units: list[list[DropPath]] = []
    claimed: set[int] = set()
    for child in module.modules():  # pre-order: a block comes before what it holds
        if id(child) in claimed or not any(isinstance(c, DropPath) for c in child.children()):
            continue
        claimed.update(id(m) for m in child.modules())
        units.append([m for m in child.modules() if isinstance(m, DropPath)])
    return units


def set_drop_path(module: nn.Module, rate: float) -> int:
    """Give the residual blocks of ``module`` stochastic depth rising linearly with depth, from 0
    at the first block to ``rate`` at the last (as timm's ``linspace(0, rate, blocks)``); the
    number of blocks."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {rate}")
    units = drop_path_units(module)
    for i, unit in enumerate(units):
        block_rate = rate * i / (len(units) - 1) if len(units) > 1 else rate
        for layer in unit:
            layer.rate = block_rate
    return len(units)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class SqueezeExcite(nn.Module):
    """Global pool -> 1x1 conv reduce -> act -> 1x1 conv expand -> gate."""

    def __init__(self, channels: int, reduced: int, act: str = "silu", gate: str = "sigmoid"):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = make_act(act)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = make_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


def squeeze_excite_cost(channels: int, reduced: int) -> Cost:
    return conv_cost(channels, reduced, 1, (1, 1), bias=True) + conv_cost(reduced, channels, 1, (1, 1), bias=True)


class Mlp(nn.Module):
    """Token MLP: Linear -> act -> Linear, on (..., C)."""

    def __init__(self, dim: int, hidden: int, act: str = "gelu", out_dim: Optional[int] = None, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = make_act(act)
        self.fc2 = nn.Linear(hidden, out_dim or dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def mlp_cost(dim: int, hidden: int, tokens: int, out_dim: Optional[int] = None, bias: bool = True) -> Cost:
    return linear_cost(dim, hidden, tokens, bias) + linear_cost(hidden, out_dim or dim, tokens, bias)


@dataclass(frozen=True)
class Dim:
    """How the supernet slices one dimension of a tensor (nas.supernet): its factors, outermost first
    (-1: the rest of the size), each sliced from its start, or around its middle when ``centred``."""

    sizes: tuple[int, ...]
    centred: bool = False  # spatial: a smaller size is the middle of a larger one


class RelativePositionBias(nn.Module):
    """A learned (2h-1)(2w-1) x heads table, gathered into a (heads, h*w, h*w) bias (Swin, CoAtNet)."""

    def __init__(self, window: tuple[int, int], heads: int):
        super().__init__()
        h, w = window
        self.window = window
        self.table = nn.Parameter(torch.zeros((2 * h - 1) * (2 * w - 1), heads))
        nn.init.trunc_normal_(self.table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
        index = (rel[..., 0] + h - 1) * (2 * w - 1) + rel[..., 1] + w - 1
        self.register_buffer("index", index, persistent=False)

    def slice_layout(self) -> dict:
        h, w = self.window
        return {"table": (Dim((2 * h - 1, 2 * w - 1), centred=True), None)}  # offsets nearest zero in the middle

    def forward(self, window: Optional[tuple[int, int]] = None) -> torch.Tensor:
        table = self.table
        if window is not None and tuple(window) != tuple(self.window):
            # a different feature size at run time: resample the table (as CoAtNet does when fine-tuning)
            h, w = self.window
            nh, nw = window
            grid = table.t().reshape(1, -1, 2 * h - 1, 2 * w - 1)
            table = F.interpolate(grid, size=(2 * nh - 1, 2 * nw - 1), mode="bilinear", align_corners=False)
            table = table.reshape(-1, (2 * nh - 1) * (2 * nw - 1)).t()
            coords = torch.stack(torch.meshgrid(torch.arange(nh, device=table.device),
                                                torch.arange(nw, device=table.device), indexing="ij")).flatten(1)
            rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
            index = (rel[..., 0] + nh - 1) * (2 * nw - 1) + rel[..., 1] + nw - 1
            n = nh * nw
            return table[index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)
        n = self.window[0] * self.window[1]
        return table[self.index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)


def relative_position_bias_params(window: tuple[int, int], heads: int) -> int:
    return (2 * window[0] - 1) * (2 * window[1] - 1) * heads


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return x.flatten(2).transpose(1, 2)


def to_map(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], -1, size[0], size[1])


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * windows, window*window, C), padding H and W up to multiples of ``window``."""
    b, h, w, c = x.shape
    ph, pw = (-h) % window, (-w) % window
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c), (hp, wp)


def window_reverse(windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`, cropping the padding: -> (B, H, W, C)."""
    hp, wp = padded
    c = windows.shape[-1]
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, c)[:, : size[0], : size[1]]


def padded(size: tuple[int, int], window: int) -> tuple[int, int]:
    return (-(-size[0] // window) * window, -(-size[1] // window) * window)


class XStack(nn.Module):
    """A stage made of blocks that only transform the feature map; global tokens pass through."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, tokens: Optional[torch.Tensor]):
        return self.blocks(x), tokens


class TokenStack(nn.Module):
    """A stage made of blocks with the (x, tokens) -> (x, tokens) signature."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, tokens: Optional[torch.Tensor]):
        for block in self.blocks:
            x, tokens = block(x, tokens)
        return x, tokens
