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


def test_width_scaling_keeps_every_preset_valid_and_makes_it_cheaper():
    for preset in nas.list_presets():
        arch = preset.arch
        half = nas.scale_widths(arch, 0.5)
        assert nas.check_arch(half) is None, preset.name
        before = [arch.stem.width, *(s.width for s in arch.stages)]
        after = [half.stem.width, *(s.width for s in half.stages)]
        assert all(b <= a for a, b in zip(before, after)), preset.name
        # equal widths stay equal, so a stage that cannot change the width still matches its input
        assert all(u == v for x, u in zip(before, after) for y, v in zip(before, after) if x == y), preset.name
        assert nas.analytic_cost(half).macs < 0.8 * nas.analytic_cost(arch).macs, preset.name
        assert half.layout == arch.layout and [s.depth for s in half.stages] == [s.depth for s in arch.stages]
    arch = nas.get_arch("poolformer_s12")
    assert nas.scale_widths(arch, 1.0) is arch
    assert [s.width for s in nas.scale_widths(arch, 0.5).stages] == [32, 64, 160, 256]
    for bad in (0, -0.5, 1.5):
        with pytest.raises(nas.ConfigError, match="width_mult must be in"):
            nas.scale_widths(arch, bad)
