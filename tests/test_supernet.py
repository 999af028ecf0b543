"""The weight-sharing supernet's contract, for every block type it supports: a point's weights are
slices of the supernet's tensors, cut by their meaning; the module built from them computes what
the extracted module computes; gradients reach the shared tensors; a checkpoint restores them."""
from __future__ import annotations

import dataclasses
import functools
import io

import optuna
import pytest
import torch
from torch import nn

import nas
from nas.supernet import SUPPORTED, Supernet, SupernetError
from search_spaces import get_space

# small budgets, so that the supernets build in seconds
BUDGETS = {"coatnet": 60e6, "metaformer": 30e6, "mobilevit": 150e6, "efficientvit": 60e6, "lightvit": 150e6,
           "swin": 100e6, "cetnet": 120e6, "efficientformer": 60e6, "smlpnet": 100e6, "early_conv_vit": 30e6,
           "mobileformer": 60e6}
pytestmark = pytest.mark.xdist_group("supernet")  # one test process builds each supernet once


def _points(space_name: str, count: int, seed: int = 0, sampler: str = "random") -> list[nas.ArchConfig]:
    """``count`` points of the space fitted to its budget, as a search samples them (TPE told the
    parameter count, so that it moves)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, budget = get_space(space_name).supernet_space(), BUDGETS[space_name]
    make = optuna.samplers.RandomSampler if sampler == "random" else optuna.samplers.TPESampler
    study = optuna.create_study(sampler=make(seed=seed))
    points = []
    while len(points) < count:
        trial = study.ask()
        arch = space.fit(space.sample(trial), macs_budget=budget)
        cost = nas.analytic_cost(arch)
        study.tell(trial, float(cost.params))
        if cost.macs <= budget:
            points.append(arch)
    return points


@functools.lru_cache(maxsize=None)
def _supernet(name: str) -> Supernet:
    return Supernet.for_space(get_space(name), BUDGETS[name], num_classes=10)


@pytest.fixture(params=sorted(BUDGETS))
def supernet(request) -> tuple[str, Supernet]:
    return request.param, _supernet(request.param)


def _blocks(points: list[nas.ArchConfig]) -> set[str]:
    return {st.block for a in points for st in a.stages}


def test_every_point_within_the_budget_is_a_slice_of_the_supernet(supernet):
    name, sn = supernet
    points = _points(name, 60, seed=1) + _points(name, 60, seed=1, sampler="tpe")
    assert [sn.covers(a) for a in points] == [None] * len(points)
    assert sn.space == name and sn.macs_budget == BUDGETS[name]


def _layer_kind(module: nn.Module) -> str:
    """What a tensor's layer is, for sharing: normalisations are one kind (their per-channel scale
    and shift are shared across norm types; BatchNorm's statistics are its own keys)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        depthwise = module.groups == module.in_channels > 1
        return f"conv{'-depthwise' if depthwise else ''}{'-1x1' if module.kernel_size[0] == 1 else ''}"
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)) or "Norm" in type(module).__name__:
        return "norm"
    return type(module).__name__


def test_a_shared_tensor_always_belongs_to_one_kind_of_layer(supernet):
    """Keys name layers by role: no point's depthwise conv shares a tensor with another's 1x1
    expansion because both came first in their block."""
    from nas.builder import build_component, components
    from nas.supernet import _shared_prefix

    name, _ = supernet
    kinds: dict[str, set[str]] = {}
    for arch in _points(name, 24, seed=3):
        for p in components(arch, num_classes=10):
            with torch.device("meta"):
                module = build_component(p)
            for path, m in module.named_modules():
                for tensor_name, _ in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
                    key = f"{_shared_prefix(p)}.{path}.{tensor_name}" if path else f"{_shared_prefix(p)}.{tensor_name}"
                    kinds.setdefault(key, set()).add(_layer_kind(m))
    assert {k: v for k, v in kinds.items() if len(v) > 1} == {}


def test_sliced_forward_equals_the_extracted_module(supernet):
    name, sn = supernet
    points = _points(name, 12, seed=2)
    assert _blocks(points) >= {"coatnet": {"mbconv", "rel_attention"}, "metaformer": {"pool_mixer", "smlp", "vit"},
                               "mobilevit": {"mbconv", "mobilevit"}, "efficientvit": {"mbconv", "lite_mla"},
                               "lightvit": {"lightvit"}, "swin": {"window_attention", "lsla"}, "cetnet": {"lewin"},
                               "efficientformer": {"mb4d", "mb3d"}, "smlpnet": {"smlp"}, "early_conv_vit": {"vit"},
                               "mobileformer": {"bneck_lite", "mobile_former"}}[name]
    x = torch.randn(2, 3, 32, 32)
    for arch in points:
        extracted = sn.extract(arch).eval()  # loads strictly into build_model(arch)
        assert set(extracted.state_dict()) == set(nas.build_model(arch, 10).state_dict())
        sn.module(arch).eval()
        with torch.no_grad():
            assert torch.allclose(sn.forward(arch, x), extracted(x), atol=1e-6, rtol=0), arch.arch_id


def test_a_training_step_reaches_the_shared_tensors_of_its_point_only(supernet):
    name, sn = supernet
    arch = _points(name, 1, seed=3)[0]
    used = {s for s in _shared_keys(sn, arch)}
    sn.module(arch).train()
    # 64 px: at 32 px the last stage sees a 1x1 map, where a pooling mixer (pool(x) - x) is zero
    loss = torch.nn.functional.cross_entropy(sn.forward(arch, torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    try:
        for key, tensor in sn.tensors.items():
            if not tensor.requires_grad:
                continue
            if key in used:
                assert tensor.grad is not None, key
            else:
                assert tensor.grad is None, key
        reached = [k for k in used if sn.tensors[k].requires_grad and sn.tensors[k].grad.abs().sum() > 0]
        assert len(reached) > 0.9 * sum(sn.tensors[k].requires_grad for k in used)
    finally:
        for tensor in sn.parameters():
            tensor.grad = None


def _shared_keys(sn: Supernet, arch: nas.ArchConfig) -> set[str]:
    from nas.supernet import _placed_slots
    return {s.shared for _, _, s in _placed_slots(arch, sn.num_classes)}


def test_a_checkpoint_restores_identical_weights(supernet):
    name, sn = supernet
    buffer = io.BytesIO()
    torch.save(sn.state_dict(), buffer)
    buffer.seek(0)
    restored = Supernet.from_state_dict(torch.load(buffer, weights_only=True))
    assert set(restored.tensors) == set(sn.tensors)
    assert all(torch.equal(restored.tensors[k], t) for k, t in sn.tensors.items())
    assert (restored.space, restored.macs_budget, restored.num_classes) == (name, BUDGETS[name], 10)
    arch = _points(name, 1, seed=4)[0]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(restored.extract(arch).eval()(x), sn.extract(arch).eval()(x))


def _with_block_params(arch: nas.ArchConfig, stage: int, **changes) -> nas.ArchConfig:
    st = arch.stages[stage]
    return arch.replace(stages=arch.stages[:stage] + (dataclasses.replace(st, params=dataclasses.replace(
        st.params, **changes)),) + arch.stages[stage + 1:])


def test_fused_qkv_is_sliced_per_chunk_and_head():
    """A point with one head shares head 0's q, k and v with a point with two heads: slicing the
    first rows of the fused projection would hand it the wider point's second query head as keys."""
    wide = nas.get_arch("coatnet_0")
    wide = _with_block_params(wide.replace(stages=wide.stages[:3]), 2, head_dim=32)
    wide = wide.replace(stages=wide.stages[:2] + (dataclasses.replace(wide.stages[2], width=64, depth=1),))
    narrow = _with_block_params(wide.replace(stages=wide.stages[:2] + (dataclasses.replace(wide.stages[2], width=32),)),
                                2, head_dim=32)
    sn = Supernet([wide, narrow], 10)
    key = "stages.2.blocks.blocks.0.attn.qkv.weight"
    w, n = sn.weights(wide)[key].detach(), sn.weights(narrow)[key].detach()
    assert w.shape[0] == 3 * 64 and n.shape[0] == 3 * 32
    for chunk in range(3):  # q, k, v of head 0 (32 channels) agree
        assert torch.equal(n[chunk * 32:(chunk + 1) * 32], w[chunk * 64:chunk * 64 + 32, :n.shape[1]])
    proj = "stages.2.blocks.blocks.0.attn.proj.weight"
    assert torch.equal(sn.weights(narrow)[proj], sn.weights(wide)[proj][:32, :32])


def test_heads_of_another_size_take_the_first_channels_of_each_head():
    arch = nas.get_arch("coatnet_0")
    big = _with_block_params(arch, 2, head_dim=32)  # 384 wide: 12 heads of 32
    small = _with_block_params(arch, 2, head_dim=16)  # 24 heads of 16
    sn = Supernet([big, small], 10)
    full = sn.tensors["stages.2.blocks:rel_attention.blocks.0.attn.qkv.weight"]
    assert tuple(full.shape[:3]) == (3, 24, 32)  # chunks x most heads x largest head
    got = sn.weights(small)["stages.2.blocks.blocks.0.attn.qkv.weight"].detach().reshape(3, 24, 16, -1)
    assert torch.equal(got, full.detach()[:, :24, :16, :got.shape[-1]])


def test_kernels_and_relative_position_tables_are_sliced_around_their_middle():
    arch = nas.get_arch("coatnet_0")
    k5 = _with_block_params(arch, 1, kernel_size=5)
    sn = Supernet([k5, arch], 10)
    key = "stages.1.blocks.blocks.0.body.dw.0.weight"  # the depthwise conv
    wide, narrow = sn.weights(k5)[key].detach(), sn.weights(arch)[key].detach()
    assert wide.shape[-1] == 5 and narrow.shape[-1] == 3
    assert torch.equal(narrow, wide[:, :, 1:4, 1:4])
    # a 256-px point's 8x8 map has a 15x15 table of offsets; the 224-px point's 13x13 is its middle
    big = arch.replace(resolution=256)
    sn = Supernet([big, arch], 10)
    key = "stages.3.blocks.blocks.0.attn.rel_pos.table"
    wide, narrow = sn.weights(big)[key].detach(), sn.weights(arch)[key].detach()
    assert wide.shape[0] == 15 * 15 and narrow.shape[0] == 13 * 13
    assert torch.equal(narrow.reshape(13, 13, -1), wide.reshape(15, 15, -1)[1:14, 1:14])


def _stage(arch: nas.ArchConfig, i: int, **changes) -> nas.ArchConfig:
    return arch.replace(stages=arch.stages[:i] + (dataclasses.replace(arch.stages[i], **changes),) + arch.stages[i + 1:])


def _randomised(sn: Supernet) -> Supernet:
    """``sn`` with every tensor random: LayerNorm weights start at one and bias tables at zero, where
    any slice would equal any other."""
    with torch.no_grad():
        for tensor in sn.tensors.values():
            if tensor.is_floating_point():
                tensor.normal_()
    return sn


def _per_head(sn: Supernet, arch: nas.ArchConfig, key: str, chunks: int) -> torch.Tensor:
    """The point's ``key`` tensor as (chunks, heads, head size, inputs), the heads read from its module."""
    heads = nas.build_model(arch, 10).get_submodule(key[:key.index(".attn.") + 5]).heads
    return sn.weights(arch)[key].detach().reshape(chunks, heads, -1, sn.weights(arch)[key].shape[-1])


@pytest.mark.parametrize("preset, key, chunks", [("swin_t", "attn.qkv.weight", 3), ("cetnet_t", "attn.q.proj.weight", 1),
                                                 ("cetnet_t", "attn.v.proj.weight", 1), ("lightvit_t", "attn.qkv.weight", 3),
                                                 ("lightvit_t", "attn.kv_global.weight", 2)])
def test_window_attention_projections_are_sliced_per_head(preset, key, chunks):
    """Swin's and LightViT's heads follow the width (fewer heads), CETNet's are fixed (smaller heads):
    either way the narrower point's heads are the first channels of the wider point's first heads."""
    def shaped(first: int) -> nas.ArchConfig:  # the first two stages, one block each, ``first`` and 2 x ``first`` wide
        arch = nas.get_arch(preset)
        arch = arch.replace(stem=dataclasses.replace(arch.stem, width=first), stages=arch.stages[:2])
        return _stage(_stage(arch, 0, width=first, depth=1), 1, width=2 * first, depth=1)

    wide, narrow = shaped(64), shaped(32)
    sn = _randomised(Supernet([wide, narrow], 10))
    key = f"stages.1.blocks.blocks.0.{key}"
    w, n = _per_head(sn, wide, key, chunks), _per_head(sn, narrow, key, chunks)
    assert w.shape[1:] != n.shape[1:]
    assert torch.equal(n, w[:, :n.shape[1], :n.shape[2], :n.shape[3]])
    if preset != "cetnet_t":  # patch merging: LayerNorm(4C) and Linear(4C, C') over the 2x2 neighbours' channels
        key = "stages.1.embed.norm.weight"
        w, n = sn.weights(wide)[key].detach().reshape(4, 64), sn.weights(narrow)[key].detach().reshape(4, 32)
        assert torch.equal(n, w[:, :32])
        key = "stages.1.embed.reduction.weight"
        w, n = sn.weights(wide)[key].detach().reshape(128, 4, 64), sn.weights(narrow)[key].detach().reshape(64, 4, 32)
        assert torch.equal(n, w[:64, :, :32])


def _first_entries(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The first entries of ``tensor`` along every dimension, as many as ``like`` has."""
    return tensor[tuple(slice(0, size) for size in like.shape)]


def _module_of(arch: nas.ArchConfig, key: str, name: str) -> nn.Module:
    """The module of ``arch``'s model whose path ends before ``name`` in ``key``."""
    return nas.build_model(arch, 10).get_submodule(key[:key.index(name)].rstrip("."))


# (preset, stage, changes for the narrow point, key, the tensor as its meaning's factors (tensor, model, key))
MEANINGS = [
    # EfficientViT's LiteMLA: heads x [q | k | v] x head size; the projection reads [qkv; scale] x heads x head size
    # (a smaller head size, else the heads alone differ, the outermost factor, and plain rows would do)
    ("efficientvit_b0", 3, {"head_dim": 8}, "context.qkv.weight",
     lambda t, m, k: t.reshape(_module_of(m, k, "qkv").heads, 3, -1, t.shape[1])),
    ("efficientvit_b0", 3, {"head_dim": 8}, "context.proj.0.weight",
     lambda t, m, k: t.reshape(t.shape[0], 2, _module_of(m, k, "proj").heads, -1)),
    # MobileViT: 4 heads whatever the width (smaller heads when narrower); the fusion reads [input; projected]
    ("mobilevit_xxs", 2, {"dim": 32}, "transformer.0.attn.qkv.weight",
     lambda t, m, k: t.reshape(3, 4, -1, t.shape[1])),
    ("mobilevit_xxs", 2, {"dim": 32}, "transformer.0.attn.proj.weight",
     lambda t, m, k: t.reshape(t.shape[0], 4, -1)),
    ("mobilevit_xxs", 2, {"dim": 32}, "fusion.0.weight", lambda t, m, k: t.reshape(t.shape[0], 2, -1, 3, 3)),
    # LightViT's spatial selection reads [local; pooled]
    ("lightvit_t", 1, {}, "mlp.spatial_select.weight", lambda t, m, k: t.reshape(1, 2, -1)),
    # sMLP's fuse reads [map; mixed along W; mixed along H]
    ("smlpnet_t", 1, {}, "fuse.weight", lambda t, m, k: t.reshape(t.shape[0], 3, -1)),
    # ViT: q, k, v apart, the heads (searched with the width) split each
    ("vit_c_1gf", 0, {"num_heads": 2}, "attn.qkv.weight", lambda t, m, k: t.reshape(3, -1, t.shape[1])),
]


@pytest.mark.parametrize("preset, stage, changes, key, meaning", MEANINGS, ids=[f"{c[0]}-{c[3]}" for c in MEANINGS])
def test_fused_tensors_keep_their_meaning_in_a_narrower_point(preset, stage, changes, key, meaning):
    """The narrower point's tensor, as its factors, is the first entries of each of the wider point's."""
    def shaped(width: int, **params) -> nas.ArchConfig:  # the stages up to ``stage``, that one a block deep
        arch = nas.get_arch(preset)
        arch = arch.replace(stages=arch.stages[:stage + 1])
        return _with_block_params(_stage(arch, stage, width=width, depth=1), stage, **params)

    width = nas.get_arch(preset).stages[stage].width
    wide, narrow = shaped(width), shaped(width // 2, **changes)
    sn = _randomised(Supernet([wide, narrow], 10))
    key = f"stages.{stage}.blocks.blocks.0.{key}"
    w, n = (meaning(sn.weights(a)[key].detach(), a, key) for a in (wide, narrow))
    assert w.shape != n.shape and w.dim() == n.dim()
    assert torch.equal(n, _first_entries(w, n))


# (stage, key, the tensor as (input channel, multiplier, ...) given the input width)
MULTIPLIED = [
    (0, "conv.0.0.weight", lambda t, cin: t.reshape(cin, -1, 3, 3)),  # bneck-lite: dw 3x3 with a channel multiplier
    (0, "conv.0.1.weight", lambda t, cin: t.reshape(cin, -1)),  # its BatchNorm
    (0, "conv.1.0.weight", lambda t, cin: t.reshape(t.shape[0], cin, -1)),  # the pointwise conv reading it
    (2, "mobile.dw1.0.weight", lambda t, cin: t.reshape(cin, -1, 3, 3)),  # Mobile-Former's stride-2 block
    (2, "mobile.dw1_act.hyper.2.weight", lambda t, cin: t.reshape(2, cin, -1, t.shape[1])),  # [a1 | a2] per channel
    (2, "mobile.pw1.0.weight", lambda t, cin: t.reshape(t.shape[0], cin, -1)),
]


@pytest.mark.parametrize("stage, key, meaning", MULTIPLIED, ids=[f"{c[0]}-{c[1]}" for c in MULTIPLIED])
def test_a_depthwise_conv_with_a_channel_multiplier_is_sliced_per_input_channel(stage, key, meaning):
    """PyTorch lays a depthwise conv's outputs out as input channel x multiplier: a point with
    fewer input channels and a smaller multiplier takes the first multiples of the first channels."""
    arch = nas.get_arch("mobileformer_52m")  # bneck-lite 8 -> 12 (x3), Mobile-Former 12, then 12 -> 24 (stride 2, x6)

    def shaped(stem: int, before: int, multiplier: int) -> nas.ArchConfig:
        a = arch.replace(stem=dataclasses.replace(arch.stem, width=stem, params=dataclasses.replace(
            arch.stem.params, widths=(stem,))), stages=arch.stages[:3])
        a = _with_block_params(a, 0, channel_multiplier=multiplier)
        a = _with_block_params(_stage(a, 1, width=before), 1, first_expand_ratio=float(multiplier))
        return _with_block_params(_stage(a, 2, depth=1), 2, first_expand_ratio=float(multiplier))

    wide, narrow = shaped(16, 12, 6), shaped(8, 8, 3)
    cin = {0: (16, 8), 2: (12, 8)}[stage]
    sn = _randomised(Supernet([wide, narrow], 10))
    key = f"stages.{stage}.blocks.blocks.0.{key}"
    w, n = (meaning(sn.weights(a)[key].detach(), c) for a, c in zip((wide, narrow), cin))
    assert w.shape != n.shape and w.dim() == n.dim()
    assert torch.equal(n, _first_entries(w, n))


def test_grouped_mobile_former_convs_are_refused_with_their_reason():
    arch = nas.get_arch("mobileformer_26m")  # groups 4: grouped pointwise convs after channel shuffles
    with pytest.raises(SupernetError, match=r"groups 4: grouped pointwise convs after a channel shuffle"):
        Supernet([arch], 10)
    assert "groups 4" in Supernet([nas.get_arch("mobileformer_52m")], 10).covers(arch)


def test_an_mbconv_without_expansion_shares_its_layers_by_role():
    """EfficientViT's MBConv stages search an expansion of 1, which drops the 1x1 expansion: its
    depthwise conv and projection are the expanded block's (first channels), not the layers at
    the same position (a depthwise kernel as wide as the expansion's input, a projection shaped
    like a depthwise conv)."""
    arch = nas.get_arch("efficientvit_b0")
    single, expanded = (_with_block_params(arch, 1, expand_ratio=r) for r in (1.0, 4.0))
    sn = _randomised(Supernet([expanded, single], 10))
    prefix = "stages.1.blocks.blocks.0.body"
    assert sn.tensors["stages.1.blocks:mbconv.blocks.0.body.dw.0.weight"].shape == (32, 1, 3, 3)  # 4 x its input
    for role in ("dw.0.weight", "dw.1.running_mean", "project.0.weight"):
        w, n = sn.weights(expanded)[f"{prefix}.{role}"].detach(), sn.weights(single)[f"{prefix}.{role}"].detach()
        assert torch.equal(n, _first_entries(w, n)), role
    assert f"{prefix}.expand.0.weight" not in sn.weights(single)


def test_fused_mbconv_blocks_are_slices_of_one_supernet():
    """No family space searches Fused-MBConv blocks (only ``hybrid``): the contract on a set of
    variants of EfficientViT-B0 with Fused-MBConv stages (expansion 1 or not, kernel, SE, norm
    style, width, depth)."""
    from nas.blocks.mbconv import FusedMBConvParams

    base = nas.get_arch("efficientvit_b0")
    variants = [dict(), dict(expand_ratio=1.0), dict(kernel_size=5, se_ratio=0.25), dict(norm_style="pre"),
                dict(expand_ratio=6.0, norm_style="fewer")]
    points = []
    for k, changes in enumerate(variants):
        params = FusedMBConvParams(**changes)
        arch = base
        for i in (1, 2):
            arch = _stage(arch, i, block="fused_mbconv", params=params, depth=1 + k % 2,
                          width=arch.stages[i].width * (2 if k % 3 == 0 else 1))
        points.append(arch)
    sn = Supernet(points, 10)
    x = torch.randn(2, 3, 32, 32)
    for arch in points:
        assert sn.covers(arch) is None
        extracted = sn.extract(arch).eval()
        sn.module(arch).eval()
        with torch.no_grad():
            assert torch.allclose(sn.forward(arch, x), extracted(x), atol=1e-6, rtol=0)
    arch = points[2]
    sn.module(arch).train()
    torch.nn.functional.cross_entropy(sn.forward(arch, x), torch.tensor([0, 1])).backward()
    used = {k for k in _shared_keys(sn, arch) if sn.tensors[k].requires_grad}
    assert {k for k, t in sn.tensors.items() if t.grad is not None} == used


def test_efficientformer_attention_keeps_a_path_per_head_shape_and_cuts_its_offset_table_from_zero():
    arch = nas.get_arch("efficientformer_l1")
    wide = arch.replace(stages=arch.stages[:1] + arch.stages[4:])  # an MB3D stage on the stem's 56x56 map
    narrow = _with_block_params(wide.replace(resolution=192), 1, num_heads=4)  # 48x48
    other = _with_block_params(wide, 1, key_dim=16)
    sn = _randomised(Supernet([wide, narrow, other], 10))
    key = "stages.1.blocks.blocks.0.attn.attention_biases"
    w, n = sn.weights(wide)[key].detach(), sn.weights(narrow)[key].detach()
    assert torch.equal(n, w[:4].reshape(4, 56, 56)[:, :48, :48].reshape(4, -1))  # offsets (0, 0) .. (47, 47)
    qkv = "stages.1.blocks.blocks.0.attn.qkv.weight"
    assert torch.equal(sn.weights(narrow)[qkv], sn.weights(wide)[qkv].reshape(8, -1, 448)[:4].reshape(-1, 448))
    paths = {k.split(".blocks.")[0] for k in sn.tensors if k.startswith("stages.1.blocks:")}
    assert paths == {"stages.1.blocks:mb3d[key_dim=32,attn_ratio=4]", "stages.1.blocks:mb3d[key_dim=16,attn_ratio=4]"}


def test_the_hybrid_supernet_holds_every_block_type_in_a_bounded_skeleton():
    """``hybrid``'s supernet sub-space: four stages of at most four blocks, widths up to
    64/128/256/384, every block type at every stage it may run at; its random points are
    hybrids, and one supernet holding a sample of them computes what their modules compute."""
    from search_spaces.spaces import HYBRID_SUPERNET_WIDTHS

    full = get_space("hybrid")
    space = full.supernet_space()
    assert space.name == "hybrid" and space.supernet_space() is space and full.supernet_space() is space
    assert space.component_types()["block"] == full.component_types()["block"]
    assert not nas.supernet.unsupported_types(space.component_types())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    archs = []
    for _ in range(80):
        trial = study.ask()
        archs.append(space.fit(space.sample(trial), macs_budget=2e8))
        study.tell(trial, 0.0)
    assert all(space.contains(a) is None for a in archs)
    assert all(len(a.stages) == 4 and all(st.depth <= 4 and st.width <= top
                                          for st, top in zip(a.stages, HYBRID_SUPERNET_WIDTHS)) for a in archs)
    assert {st.block for a in archs for st in a.stages} == space.component_types()["block"]
    assert sorted(len(set(a.layout.split("-"))) for a in archs)[len(archs) // 2] >= 2
    # one point per block type in the supernet, each type's with its tensors sliced from the others' envelope
    by_type = {st.block: a for a in archs for st in a.stages}
    sn = Supernet(archs, 10)
    x = torch.randn(2, 3, 64, 64)
    for block, arch in sorted(by_type.items()):
        extracted = sn.extract(arch).eval()
        sn.module(arch).eval()
        with torch.no_grad():
            assert torch.allclose(sn.forward(arch, x), extracted(x), atol=1e-5, rtol=0), block
    assert sn.covers(nas.get_arch("coatnet_0")) is not None


def test_an_unsupported_block_type_is_named(monkeypatch):
    """Every registered type is supported today; one that is not (a new block type) is named, and a
    space using it is refused before it is sized."""
    monkeypatch.setitem(SUPPORTED, "block", tuple(t for t in SUPPORTED["block"] if t != "bneck_lite"))
    with pytest.raises(SupernetError, match="does not support block type 'bneck_lite'"):
        Supernet([nas.get_arch("mobileformer_52m")], 10)
    sn = Supernet([nas.get_arch("coatnet_0")], 10)
    assert "bneck_lite" in sn.covers(nas.get_arch("mobileformer_52m"))
    with pytest.raises(SupernetError, match="space 'mobileformer' yet: its block type 'bneck_lite' cannot"):
        Supernet.for_space(get_space("mobileformer"), 1e9)
    assert get_space("coatnet").component_types()["block"] == {"mbconv", "rel_attention"}  # from its layouts
    with pytest.raises(SupernetError, match="outside the supernet"):
        sn.weights(nas.get_arch("coatnet_1"))


def test_supported_types_are_registered():
    from nas import registry
    for kind, names in SUPPORTED.items():
        assert set(names) <= set(registry.names(kind)), kind


# ---------------------------------------------------------------------------- training and scoring
TINY = dict(space="coatnet_ctt", macs_budget=60e6, epochs=2, batch_size=64, train_size=256, val_size=128)


class _Killed(Exception):
    pass


def test_training_resumes_after_a_kill_to_identical_weights(tmp_path):
    from studies.supernet import SupernetSettings, SupernetTraining

    settings = SupernetSettings(**TINY)
    whole = SupernetTraining(settings, tmp_path / "whole.pt")
    whole.run()
    assert [row["epoch"] for row in whole.history] == [1, 2]

    steps = []

    def kill_in_epoch_two() -> None:
        steps.append(1)
        if len(steps) == whole.steps_per_epoch + 2:
            raise _Killed  # after epoch 1 was saved, in the middle of epoch 2

    first = SupernetTraining(settings, tmp_path / "killed.pt", on_step=kill_in_epoch_two)
    with pytest.raises(_Killed):
        first.run()
    resumed = SupernetTraining(settings, tmp_path / "killed.pt")
    assert resumed.epochs_done == 1
    resumed.run()
    assert set(resumed.supernet.tensors) == set(whole.supernet.tensors)
    assert all(torch.equal(resumed.supernet.tensors[k], t) for k, t in whole.supernet.tensors.items())
    assert resumed.history == [{**r, "seconds": resumed.history[i]["seconds"]} for i, r in enumerate(whole.history)]
    # the file loads without unpickling code
    state = torch.load(tmp_path / "whole.pt", weights_only=True)
    assert state["training"]["epochs_done"] == 2


def test_cli_trains_scores_and_refuses_bad_input(tmp_path, capsys):
    from nas_cli.main import main

    out = tmp_path / "sn.pt"
    args = ["supernet", "train", "--space", "coatnet_ctt", "--budget", "60mflop", "--epochs", "1", "--batch-size", "64",
            "--train-size", "256", "--val-size", "128", "-o", str(out)]
    assert main(args) == 0
    assert "epoch 1/1: inherited accuracy largest" in capsys.readouterr().out
    assert main(args) == 0  # done already: nothing to train
    assert "1 epochs in" in capsys.readouterr().out
    point = get_space("coatnet_ctt").smallest()
    config = tmp_path / "point.json"
    nas.save_config(point, config)
    assert main(["score", str(config), "--proxy", "supernet", "--supernet", str(out), "--json"]) == 0
    import json
    scored = json.loads(capsys.readouterr().out)
    assert 0 <= scored["score"] <= 1 and scored["details"]["validation"].startswith("train split, 128 held-out")
    storage = f"sqlite:///{tmp_path}/s.db"
    search = ["search", "--space", "coatnet_ctt", "--budget", "60mflop", "--proxy", "supernet", "--supernet", str(out),
              "--trials", "4", "--workers", "0", "--storage", storage, "--verify", "1", "--epochs", "1",
              "--train-size", "256", "--val-size", "128"]
    assert main(search) == 0
    printed = capsys.readouterr().out
    assert "Final front (stand-alone proxy accuracy" in printed and "verified_accuracy" in printed
    study = optuna.load_study(study_name="coatnet_ctt-supernet-60M", storage=storage)
    scored = [t for t in study.trials if t.user_attrs.get("feasible")]
    assert len(scored) == 4 and all(0 <= t.values[0] <= 1 for t in scored)
    verified = [k for k in study.user_attrs if k.startswith("verified:")]
    assert len(verified) == 1 and 0 <= study.user_attrs[verified[0]]["value"] <= 1
    for bad, message in (
            (search[:2] + ["coatnet"] + search[3:], "trained over space 'coatnet_ctt', not 'coatnet'"),
            (search[:4] + ["1gflop"] + search[5:], "holds points within 60"),
            (search[:5] + ["--proxy", "train"] + search[7:], "--supernet and --verify are for --proxy supernet"),
            (["score", "coatnet_0", "--proxy", "supernet", "--supernet", str(out)], "over the supernet's budget"),
            (["score", "coatnet_0", "--proxy", "supernet", "--supernet", str(config)], "is not a supernet file"),
            (["score", "coatnet_0", "--proxy", "supernet", "--supernet", str(tmp_path / "no.pt")], "no supernet file"),
            (["score", "coatnet_0", "--proxy", "supernet"], "needs --supernet FILE"),
            (args[:-1] + [str(out), "--lr", "0.01"], "trained with other settings (lr)"),
            (["supernet", "train", "--space", "nosuch", "-o", str(tmp_path / "e.pt")], "unknown search space 'nosuch'"),
            (["supernet", "train", "--space", "coatnet_ctt", "--budget", "1mflop", "-o", str(tmp_path / "e.pt")],
             "below what space 'coatnet_ctt' can reach")):
        assert main(bad) == 2, bad
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
