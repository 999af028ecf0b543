"""Zero-cost proxies: one real minibatch, no training. Every score is "higher = predicted better".

- ``synflow`` (Tanaka et al. 2020; as a NAS proxy, Abdelfattah et al. 2021): sum |theta * dR/dtheta|
  with all weights made positive and an all-ones input, in float64;
- ``naswot`` (Mellor et al. 2021): log-determinant of the Hamming-similarity kernel of the binary
  activation codes of the minibatch (the sign of every activation's input);
- ``grad_norm``: sum over parameter tensors of the L2 norm of the cross-entropy gradient;
- ``snip`` (Lee et al. 2019): sum |theta * dL/dtheta|;
- ``params`` and ``macs``: the size baselines every proxy has to beat.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nas.builder import analytic_cost, build_model
from nas.config import ArchConfig

ZERO_COST_PROXIES = ("synflow", "naswot", "grad_norm", "snip", "params", "macs")
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.LeakyReLU)


@dataclass(frozen=True)
class ProxyScore:
    proxy: str
    score: float
    resolution: int
    batch_size: int
    seconds: float
    device: str

    def to_dict(self) -> dict:
        return asdict(self)


def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model = model.double().eval()
    signs = {}
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.is_floating_point():
                signs[name] = torch.sign(p)
                p.abs_()
    model.zero_grad()
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    model(ones).sum().backward()
    score = sum((p * p.grad).abs().sum().item() for p in model.parameters() if p.grad is not None)
    return float(score)


def naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def hook(module: nn.Module, inputs: tuple) -> None:
        codes = (inputs[0].detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.t() + (1 - codes) @ (1 - codes).t())

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, ACTIVATIONS)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not handles:
        return 0.0
    return float(torch.linalg.slogdet(kernel)[1])


def _loss_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.train()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    _loss_grads(model, x, y)
    return float(sum(p.grad.norm().item() for p in model.parameters() if p.grad is not None))


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    _loss_grads(model, x, y)
    return float(sum((p * p.grad).abs().sum().item() for p in model.parameters() if p.grad is not None))


_MODEL_PROXIES: dict[str, Callable] = {"synflow": synflow, "naswot": naswot, "grad_norm": grad_norm, "snip": snip}


def score_proxy(arch: ArchConfig, proxy: str, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                seed: int = 0, device: str = "cpu") -> ProxyScore:
    """Score ``arch`` with ``proxy`` on the minibatch ``(x, y)`` (already at the wanted resolution)."""
    if proxy not in ZERO_COST_PROXIES:
        raise ValueError(f"unknown proxy {proxy!r}; choose from {', '.join(ZERO_COST_PROXIES)}")
    start = time.perf_counter()
    resolution = x.shape[-1]
    if proxy in ("params", "macs"):
        cost = analytic_cost(arch, resolution, num_classes)
        score = float(cost.params if proxy == "params" else cost.macs)
    else:
        torch.manual_seed(seed)
        model = build_model(arch, num_classes).to(device)
        score = _MODEL_PROXIES[proxy](model, x.to(device), y.to(device))
    return ProxyScore(proxy, score, resolution, x.shape[0], time.perf_counter() - start, device)
