"""Stochastic depth in the builder: nothing changes at rate 0, it is active in training at rate > 0,
and eval mode ignores it."""
from __future__ import annotations

import pytest
import torch

import nas
from nas import registry
from nas.layers import DropPath, drop_path_units
from nas.registry import Geometry, Tokens

PRESETS = ["coatnet_0", "mobilevit_xxs", "poolformer_s12", "efficientformer_l1", "efficientvit_b0", "lightvit_t",
           "smlpnet_t", "mobileformer_151m", "cetnet_t", "swin_t", "vit_lsla", "vit_c_1gf"]


def _small(name: str) -> nas.ArchConfig:
    return nas.scale_widths(nas.get_arch(name), 0.25)


def _without_drop_path(model: torch.nn.Module) -> torch.nn.Module:
    """The same model with every DropPath replaced by nn.Identity: the model as it was before drop path."""
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, DropPath):
                setattr(parent, name, torch.nn.Identity())
    return model


def _image(arch, n=4):
    return torch.randn(n, 3, arch.resolution, arch.resolution, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", PRESETS)
def test_rate_zero_changes_nothing(name):
    arch = _small(name)
    torch.manual_seed(0)
    model = nas.build_model(arch, 10)
    torch.manual_seed(0)
    plain = _without_drop_path(nas.build_model(arch, 10, drop_path_rate=0.0))
    assert list(model.state_dict()) == list(plain.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values()))
    x = _image(arch)
    model.train(), plain.train()
    torch.manual_seed(3)
    a = model(x)
    torch.manual_seed(3)  # also proves rate 0 draws no random numbers: dropout in the heads sees the same stream
    b = plain(x)
    assert torch.equal(a, b)
    model.eval(), plain.eval()
    # the traced graph has the same operations: a DropPath at rate 0 adds none
    ops = [[n.kind() for n in torch.jit.trace(m, x[:1]).inlined_graph.nodes()] for m in (model, plain)]
    assert ops[0] == ops[1]
    assert nas.analytic_cost(arch, num_classes=10).params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", PRESETS)
def test_active_in_training_identity_in_eval(name):
    arch = _small(name)
    torch.manual_seed(0)
    model = nas.build_model(arch, 10, drop_path_rate=0.5)
    rates = [unit[0].rate for unit in drop_path_units(model.stages)]
    assert len(rates) >= 2 and rates[0] == 0.0 and rates[-1] == 0.5
    assert rates == sorted(rates)  # linear over blocks, first to last
    torch.manual_seed(0)
    reference = nas.build_model(arch, 10)
    x = _image(arch)
    model.eval(), reference.eval()
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
        model.train()
        for m in model.modules():  # isolate drop path from dropout and batch statistics
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        torch.manual_seed(1)
        first = model(x)
        torch.manual_seed(2)
        second = model(x)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("name", [s.name for s in registry.specs("block")])
def test_every_block_type_has_drop_path(name):
    """Each registered block type puts a DropPath on its residual branch at stride 1."""
    spec = registry.lookup("block", name)
    geo = Geometry(64, 64, 1, (14, 14), (14, 14), Tokens(4, 64))
    stage = spec.build(geo, 2, spec.params())
    assert len(drop_path_units(stage)) == 2, name


def test_drop_path_drops_whole_samples():
    layer = DropPath(0.5).train()
    torch.manual_seed(0)
    y = layer(torch.ones(1000, 3, 2, 2))
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}  # a sample is dropped whole, kept ones scaled by 1/keep
    assert (per_sample.min(1).values == per_sample.max(1).values).all()
    assert 400 < int((per_sample[:, 0] == 0).sum()) < 600
    assert torch.equal(layer.eval()(torch.ones(5, 3)), torch.ones(5, 3))


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_bad_rate(rate):
    with pytest.raises(nas.ConfigError, match="drop_path_rate"):
        nas.build_model(_small("poolformer_s12"), 10, drop_path_rate=rate)
