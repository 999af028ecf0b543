"""Models run at any input size divisible by the network stride: every preset at 32 and 64, the
smallest preset of every family at 224, 256 and 288 too; the analytic MACs follow the size."""
from __future__ import annotations

import pytest
import torch

import nas
from evaluators.cost import fvcore_macs

SMALLEST = {}
for _p in nas.list_presets():
    cost = nas.analytic_cost(_p.arch).macs
    if _p.family not in SMALLEST or cost < SMALLEST[_p.family][1]:
        SMALLEST[_p.family] = (_p.name, cost)


@pytest.mark.parametrize("name", nas.list_archs())
def test_every_preset_runs_at_32_and_64(name):
    model = nas.build_model(nas.get_arch(name), num_classes=10).eval()
    for size in (32, 64):
        with torch.no_grad():
            out = model(torch.randn(1, 3, size, size))
        assert out.shape == (1, 10) and torch.isfinite(out).all(), (name, size)


@pytest.mark.parametrize("name", sorted(n for n, _ in SMALLEST.values()))
def test_smallest_of_each_family_at_large_sizes(name):
    arch = nas.get_arch(name)
    model = nas.build_model(arch, num_classes=10).eval()
    for size in (224, 256, 288):
        with torch.no_grad():
            out = model(torch.randn(1, 3, size, size))
        assert out.shape == (1, 10) and torch.isfinite(out).all(), (name, size)
    macs = fvcore_macs(model, 288)
    analytic = nas.analytic_cost(arch, 288, 10).macs
    assert abs(analytic - macs) <= 0.01 * macs, (analytic, macs)
