"""Golden test: every preset matches its reference params and MACs, and the analytic counter
agrees with fvcore on it."""
from __future__ import annotations

import pytest
import torch

import nas
from evaluators.cost import count_params, fvcore_macs

PRESETS = nas.list_archs()


@pytest.mark.parametrize("name", PRESETS)
def test_preset_matches_reference(name):
    preset = nas.get_preset(name)
    arch = preset.arch
    assert nas.ArchConfig.from_json(arch.to_json()) == arch
    model = nas.build_model(arch)
    params = count_params(model)
    macs = fvcore_macs(model, arch.resolution)
    analytic = nas.analytic_cost(arch)
    assert analytic.params == params
    assert abs(analytic.macs - macs) <= 0.01 * macs, (analytic.macs, macs)
    p_tol, m_tol = preset.tolerance
    ref_p = preset.ref_params_m or preset.published_params_m
    ref_m = preset.ref_macs_g or preset.published_macs_g
    assert abs(params / 1e6 - ref_p) <= p_tol * ref_p, f"params {params / 1e6:.3f}M vs reference {ref_p}M"
    if ref_m is not None:
        assert abs(macs / 1e9 - ref_m) <= m_tol * ref_m, f"MACs {macs / 1e9:.3f}G vs reference {ref_m}G"
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, arch.resolution, arch.resolution))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
