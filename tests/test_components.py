"""One contract for every registered component: it builds from its default params, runs at its
design size and at another size, keeps the (x, tokens) contract, and its analytic cost equals
the built module's (params exactly, fvcore MACs within 1%)."""
from __future__ import annotations

import pytest
import torch
from fvcore.nn import FlopCountAnalysis

from evaluators.cost import count_params, sdpa_flop_jit
from nas import registry
from nas.registry import Geometry, Tokens

TOKENS = Tokens(4, 64)


def _macs(module, inputs) -> int:
    module.eval()
    with torch.no_grad():
        fca = FlopCountAnalysis(module, inputs)
        fca.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        return int(fca.total())


def _close(analytic: int, measured: int, rel: float = 0.01) -> bool:
    return abs(analytic - measured) <= rel * max(measured, 1)


def _geometries(spec):
    yield Geometry(64, 64, 1, (14, 14), (14, 14), TOKENS)
    yield Geometry(64, 64, 1, (28, 28), (14, 14), TOKENS)  # run at twice the design size
    if spec.can_downsample:
        yield Geometry(32, 64, 2, (28, 28), (28, 28), TOKENS)


def _block_ids():
    return [s.name for s in registry.specs("block")]


@pytest.mark.parametrize("name", _block_ids())
def test_block_contract(name):
    spec = registry.lookup("block", name)
    params = spec.params()
    for geo in _geometries(spec):
        assert params.check(geo) is None, f"default params of {name} reject {geo}: {params.check(geo)}"
        for depth in (1, 2):
            stage = spec.build(geo, depth, params)
            x = torch.randn(2, geo.in_channels, *geo.size)
            tokens = torch.randn(2, TOKENS.num, TOKENS.dim)
            y, t = stage(x, tokens)
            assert y.shape == (2, geo.out_channels, *geo.out_size), (name, geo)
            assert t is not None and t.shape[:2] == (2, TOKENS.num)
            assert torch.isfinite(y).all()
            cost = spec.count(geo, depth, params)
            assert cost.params == count_params(stage), (name, geo, depth)
            measured = _macs(stage, (x[:1], tokens[:1]))
            assert _close(cost.macs, measured), (name, geo, depth, cost.macs, measured)


@pytest.mark.parametrize("kind", ["stem", "embed", "head"])
def test_other_components_contract(kind):
    for spec in registry.specs(kind):
        params = spec.params()
        if kind == "stem":
            stride = spec.stride(params)
            geo = Geometry(3, 64, stride, (8 * stride, 8 * stride), (8 * stride, 8 * stride))
        elif kind == "embed" and spec.name == "none":
            geo = Geometry(64, 64, 1, (14, 14), (14, 14), TOKENS)
        elif kind == "embed":
            geo = Geometry(32, 64, 2, (14, 14), (14, 14), TOKENS)
        else:
            geo = Geometry(64, 10, 1, (7, 7), (7, 7), TOKENS)
        if params.check(geo):  # e.g. a stem whose default widths need another stem width
            geo = Geometry(3, getattr(params, "widths", (64,))[-1], geo.stride, geo.size, geo.design_size)
        assert params.check(geo) is None, (spec.name, params.check(geo))
        module = spec.build(geo, params)
        x = torch.randn(1, geo.in_channels, *geo.size)
        if kind == "head":
            inputs = (x, torch.randn(1, TOKENS.num, TOKENS.dim))
            out = module(*inputs)
            assert out.shape == (1, 10)
        else:
            inputs = (x,)
            out = module(x)
            assert out.shape == (1, geo.out_channels, *geo.out_size), spec.name
        cost = spec.count(geo, params)
        assert cost.params == count_params(module), spec.name
        assert _close(cost.macs, _macs(module, inputs)), spec.name
