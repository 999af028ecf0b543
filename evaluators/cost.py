"""Parameter and MAC counting: fvcore as the reference, the analytic counter as the fast path.

Convention (as in every paper we reproduce): one multiply-accumulate = 1, the classifier
included, attention matmuls included. fvcore traces the model; it has no handle for
``aten::scaled_dot_product_attention`` and would silently skip it (ViT-Ti 1.08 G instead of
1.25 G), so we register one.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from math import prod
from typing import Any, Optional

import torch
from torch import nn

from nas.builder import analytic_cost, build_model
from nas.config import ArchConfig

COUNTERS = ("analytic", "fvcore")


def _shape(value: Any) -> list[int]:
    return value.type().sizes()


def sdpa_flop_jit(inputs: list, outputs: list) -> int:
    """MACs of softmax(q k^T) v: N*M*d for the scores plus N*M*dv for the weighted sum."""
    q, k, v = (_shape(t) for t in inputs[:3])
    batch = prod(torch.broadcast_shapes(tuple(q[:-2]), tuple(k[:-2]), tuple(v[:-2])))
    n, m = q[-2], k[-2]
    return batch * n * m * (q[-1] + v[-1])


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fvcore_macs(model: nn.Module, resolution: int, in_channels: int = 3) -> int:
    """MACs of one image at ``resolution`` counted by fvcore (attention included)."""
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, in_channels, resolution, resolution)
            analysis = FlopCountAnalysis(model, x)
            analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            return int(analysis.total())
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class CostReport:
    params: int
    macs: int
    resolution: int
    counter: str
    count_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def measure_cost(arch: ArchConfig, resolution: Optional[int] = None, num_classes: int = 1000,
                 counter: str = "analytic") -> CostReport:
    """Params and MACs of ``arch`` with the chosen counter, timed."""
    if counter not in COUNTERS:
        raise ValueError(f"unknown counter {counter!r}; choose from {COUNTERS}")
    res = resolution or arch.resolution
    start = time.perf_counter()
    if counter == "analytic":
        cost = analytic_cost(arch, res, num_classes)
        params, macs = cost.params, cost.macs
    else:
        model = build_model(arch, num_classes)
        params, macs = count_params(model), fvcore_macs(model, res)
    return CostReport(params, macs, res, counter, time.perf_counter() - start)
