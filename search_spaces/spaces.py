"""The named spaces: ``hybrid`` (everything) and one sub-space per family, each containing its
family's published architectures."""
from __future__ import annotations

import re
from dataclasses import fields
from typing import Optional

from nas.config import ConfigError
from nas.domains import Choice, Fixed, IntRange, Same
from search_spaces.base import WIDTH_LABELS, Space, _pattern, flatten

SPACES: dict[str, Space] = {}


def _add(space: Space) -> Space:
    SPACES[space.name] = space
    return space


def get_space(name: str) -> Space:
    try:
        return SPACES[name]
    except KeyError:
        raise ConfigError(f"unknown search space {name!r}; choose from {', '.join(SPACES)}") from None


def list_spaces() -> list[Space]:
    return list(SPACES.values())


def _family(prefix: str) -> tuple[str, ...]:
    from nas import list_archs
    return tuple(n for n in list_archs() if n.startswith(prefix))


def _parallel_tuples() -> dict:
    """A stem's per-conv tuples (strides, expansions) have as many items as its ``widths``."""
    from dataclasses import fields

    from nas import registry
    from nas.domains import Seq, domain_of

    ties = {}
    for name in registry.names("stem"):
        seqs = [f.name for f in fields(registry.lookup("stem", name).params) if isinstance(domain_of(f), Seq)]
        if "widths" in seqs:
            ties.update({f"stem.{name}.{f}.len": Same(f"stem.{name}.widths.len") for f in seqs if f != "widths"})
    return ties


# Widths a search may pick: a near-geometric grid (the published widths are added per family).
NICE_WIDTHS = (8, 12, 16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
               1280, 1536, 2048)


def _least_strides(presets: tuple[str, ...]) -> dict[str, int]:
    """The least network stride at which the presets run each block type."""
    from nas import get_arch
    from nas.builder import network_stride

    least: dict[str, int] = {}
    for name in presets:
        arch = get_arch(name)
        for i, st in enumerate(arch.stages):
            stride = network_stride(arch.replace(stages=arch.stages[:i + 1]))
            least[st.block] = min(least.get(st.block, stride), stride)
    return least


def _hybrid_widths(stem: bool) -> Choice:
    """The near-geometric grid of widths with every width a preset uses; stems (which the stage
    widths may not shrink from) up to 256 on the grid."""
    from nas import get_arch

    archs = [get_arch(name) for name in _family("")]
    used = {w for arch in archs for w in ((arch.stem.width,) if stem else (st.width for st in arch.stages))}
    return Choice(*sorted({w for w in NICE_WIDTHS if not stem or w <= 256} | used))


# Mobile-Former's grouped pointwise convs follow channel shuffles: a supernet holds the ungrouped ones only
_UNGROUPED = {"stages.*.mobile_former.groups": Fixed(1), "stages.*.bneck_lite.groups": Fixed(1)}
# the block knobs a hybrid supernet keeps searchable (they slice: hidden widths); see _hybrid_supernet
SLICED_KNOBS = ("expand_ratio", "mlp_ratio", "first_expand_ratio", "down_expand_ratio", "former_mlp_ratio",
                "channel_multiplier", "dim")
HYBRID_SUPERNET_WIDTHS = (64, 128, 256, 384)  # the widest each of its four stages may be


def _hybrid_supernet() -> dict:
    """The points a weight-sharing supernet of ``hybrid`` holds: every block type and embedding at
    every stage, in the AnyNet skeleton most published hybrids share (a two-conv stem at stride 2,
    four stages of stride 2, 1 to 4 blocks each, widths up to 64/128/256/384, a pooling head), with
    each block type's hidden-width ratios searched and its other knobs (activations, norm styles,
    kernels, windows, head counts) at the type's defaults.

    Measured at 1 GMAC (``benchmarks/supernet_size.py``): the tensors merely holding 1,000 random
    points of the whole space come to 2.2 B parameters (each of 16 block types at each of 6
    positions, up to 32 deep, with head counts and head sizes free); the narrowing is what makes a
    supernet of every block type trainable on one machine."""
    from nas import registry
    from nas.domains import Seq, domain_of

    fixed: dict = {}
    for kind, prefix, names in (("block", "stages.*", registry.names("block")),
                                ("embed", "stages.*.embed", registry.names("embed")),
                                ("stem", "stem", ("conv_stack",)), ("head", "head", ("pool",))):
        for name in names:
            for f in fields(registry.lookup(kind, name).params):
                dom = domain_of(f)
                if f.name not in SLICED_KNOBS and not isinstance(dom, Seq) and not isinstance(dom, Fixed):
                    fixed[f"{prefix}.{name}.{f.name}"] = Fixed(f.default)
    return {**fixed, **_UNGROUPED,
            "resolution": Fixed(224), "global_tokens.num": Fixed(8), "num_stages": Fixed(len(HYBRID_SUPERNET_WIDTHS)),
            "stem.type": Fixed("conv_stack"), "stem.conv_stack.widths.len": Fixed(2), "stem.conv_stack.strides.1": Fixed(1),
            "stem.conv_stack.widths.0": Choice(16, 24, 32, 48, 64), "stem.width": Choice(16, 24, 32, 48, 64),
            "stages.*.stride": Fixed(2), "stages.*.depth": IntRange(1, 4), "stages.*.embed.mbconv.depth": Fixed(1),
            "stages.*.mobilevit.dim": IntRange(32, 256, 8), "head.type": Fixed("pool"),
            **{f"stages.{i}.width": Choice(*(w for w in NICE_WIDTHS if 16 <= w <= top))
               for i, top in enumerate(HYBRID_SUPERNET_WIDTHS)}}


_add(Space(
    "hybrid",
    "An AnyNet-style space over every block: per stage a block type in C/T/MLP/Pool with every variant and its "
    "own parameters, depth, width, stride, embedding (CE) type and depth; stem type and patch size, global tokens, "
    "heads; 1 to 6 stages. Depths are sampled log-uniformly (a shallow stage as likely as a deep one in ratio, as "
    "in efficient networks); widths come from a near-geometric grid and never shrink with depth; a block type runs "
    "only at network strides where some published architecture runs it (global attention on small maps), the "
    "network stride stops at 32 as in all of them, and "
    "every stem halves the image first. Every published architecture is a point of it.",
    overrides={**_parallel_tuples(), "stem.conv_stack.strides.0": Fixed(2), "stem.fused_mbconv.strides.0": Fixed(2),
               "stem.width": _hybrid_widths(stem=True), "stages.*.width": _hybrid_widths(stem=False),
               "stages.*.depth": IntRange(1, 32, log=True), "stages.*.embed.mbconv.depth": IntRange(1, 7, log=True)},
    presets=_family(""),
    least_stride=_least_strides(_family("")),
    growing_widths=True,
    max_stride=32,  # as deep as any published architecture downsamples: later stages on 1x1 maps only add weights
    supernet=_hybrid_supernet(),
))


def family_space(name: str, description: str, presets: tuple[str, ...], searched: dict,
                 layouts: tuple[str, ...] = (), blocks: Optional[dict] = None, supernet: Optional[dict] = None) -> Space:
    """A sub-space around a family's published architectures.

    ``searched`` gives the domains of the searched dimensions (labels or ``*`` patterns). Every
    other dimension is derived from the presets: fixed where they all agree, a choice among
    their values where they differ; widths that the presets always tie to the previous width
    (a stride-1 stage without embedding, a stem's last conv) stay tied."""
    from nas import get_arch

    archs = [get_arch(n) for n in presets]
    flats = [flatten(a) for a in archs]
    patterns = [_pattern(p) for p in searched]
    overrides: dict = {}
    # the stage pattern is one dimension (layout) or per-stage ones (num_stages, stages.N.block), not both
    structural = re.compile(r"layout|num_stages|stages\.\d+\.block" if layouts else r"layout")
    for label in sorted(set().union(*flats)):
        parent = overrides.get(label.rsplit(".", 1)[0])
        if structural.fullmatch(label) or (isinstance(parent, Fixed) and isinstance(parent.value, tuple)):
            continue  # not a dimension here (a fixed tuple has no per-item dimensions)
        values = [f[label] for f in flats if label in f]
        tie = _tie(label, flats)
        if tie:
            overrides[label] = Same(tie)
        elif label in searched or any(p.fullmatch(label) for p in patterns):
            continue
        elif len(values) == len(flats) and all(v == values[0] for v in values):
            overrides[label] = Fixed(values[0])
        elif WIDTH_LABELS.fullmatch(label):
            # a width the presets vary: searched on the grid from a quarter of their least to twice their most,
            # so that a budget fit can scale it
            overrides[label] = Choice(*sorted({w for w in NICE_WIDTHS if min(values) / 4 <= w <= 2 * max(values)}
                                              | set(values)))
        elif not isinstance(values[0], tuple):
            overrides[label] = Choice(*sorted(set(values), key=repr))
    overrides.update(searched)
    return _add(Space(name, description, overrides, presets, layouts, blocks or {}, supernet=supernet or {}))


def _tie(label: str, flats: list[dict]) -> Optional[str]:
    """The earlier dimension this one always equals in the presets that have it, if any."""
    having = [f for f in flats if label in f]
    m = re.fullmatch(r"stages\.(\d+)\.width", label)
    if m:
        i = int(m.group(1))
        prev = f"stages.{i - 1}.width" if i else "stem.width"
        if all(f[label] == f.get(prev) and f[f"stages.{i}.stride"] == 1 and f[f"stages.{i}.embed.type"] == "none"
               for f in having):
            return prev
    m = re.fullmatch(r"stem\.([a-z_]+)\.widths\.(\d+)", label)
    if m and all(f[label] == f["stem.width"] and f[f"stem.{m.group(1)}.widths.len"] == int(m.group(2)) + 1
                 and not f.get(f"stem.{m.group(1)}.project") for f in having):
        return "stem.width"
    m = re.fullmatch(r"(stem\.[a-z_]+)\.([a-z_]+)\.len", label)
    if m and m.group(2) != "widths" and all(f[label] == f.get(f"{m.group(1)}.widths.len") for f in having):
        return f"{m.group(1)}.widths.len"  # parallel per-conv tuples have one length
    return None



def _widths(presets: tuple[str, ...], low: int, high: int, multiple: int = 1, stages: Optional[tuple] = None) -> Choice:
    """Choice of widths in [low, high] that are multiples of ``multiple``, with the presets' own widths."""
    from nas import get_arch

    own = {st.width for n in presets for i, st in enumerate(get_arch(n).stages) if stages is None or i in stages}
    grid = {w for w in NICE_WIDTHS if low <= w <= high and w % multiple == 0}
    return Choice(*sorted(grid | own))


# The CoAtNet MBConv style, shared by its stages and the optional convolutional embedding.
_COATNET_MBCONV = {"expand_from": "out", "kernel_size": 3, "se_ratio": 0.25, "se_from": "out", "se_act": "silu",
                   "act": "gelu", "norm_style": "pre", "stride_on": "dw", "shortcut": "pool_proj", "hidden_divisor": 8}
# per-stage ranges around the published models (each stage about twice as wide as the one before)
_COATNET_SEARCH = {
    "stem.width": IntRange(8, 192, 8),
    "stages.0.depth": IntRange(1, 3), "stages.1.depth": IntRange(1, 6),
    "stages.2.depth": IntRange(1, 14), "stages.3.depth": IntRange(1, 3),
    **{f"stages.{i}.width": _widths(_family("coatnet_"), 8 << i, 192 << i, 32 if i else 16, (i,)) for i in range(4)},
    "stages.*.mbconv.expand_ratio": Choice(2.0, 3.0, 4.0, 6.0),
    "stages.*.rel_attention.head_dim": Choice(16, 32),  # widths of T stages are multiples of 32
    "stages.*.rel_attention.mlp_ratio": Choice(2.0, 3.0, 4.0),
    "stages.*.embed.type": Choice("none", "mbconv"),
    "stages.*.embed.mbconv.depth": IntRange(1, 3),
    "stages.*.embed.mbconv.expand_ratio": Choice(2.0, 4.0),
    **{f"stages.*.embed.mbconv.{k}": Fixed(v) for k, v in _COATNET_MBCONV.items()},
    **{f"stages.*.mbconv.{k}": Fixed(v) for k, v in _COATNET_MBCONV.items()},
}

family_space(
    "coatnet_ctt",
    "CoAtNet's C-C-T-T layout: two-conv stem, MBConv stages with SE, relative-attention stages; searches the "
    "stem width, stage depths and widths, MBConv expansion, head size, MLP ratio and an optional convolutional "
    "embedding (CE) of depth 1-3 in front of each stage.",
    _family("coatnet_"), _COATNET_SEARCH)

family_space(
    "coatnet",
    "CoAtNet with the stage layout as a dimension (C-C-C-T, C-C-T-T, C-T-T-T), plus everything coatnet_ctt searches.",
    _family("coatnet_"), {**_COATNET_SEARCH, "stages.*.rel_attention.pool": Fixed("avg")},
    layouts=("C-C-C-T", "C-C-T-T", "C-T-T-T"), blocks={"C": "mbconv", "T": "rel_attention"})

family_space(
    "mobilevit",
    "MobileViT v1: MV2 stages then MobileViT blocks behind MV2 down-sampling; searches depths (transformer layers), "
    "widths, transformer dims, MV2 expansion, patch size and the head width.",
    _family("mobilevit_"), {
        "stages.*.depth": IntRange(1, 6), "stages.*.width": _widths(_family("mobilevit_"), 8, 320, 8),
        "stages.*.mobilevit.dim": IntRange(32, 320, 8), "stages.*.mobilevit.patch_size": Choice(2, 4),
        "stages.*.mobilevit.mlp_ratio": Choice(2.0, 3.0, 4.0),
        "stages.*.mbconv.expand_ratio": Choice(2.0, 4.0), "stages.*.embed.mbconv.expand_ratio": Choice(2.0, 4.0),
        "head.conv_pool.width": IntRange(128, 1024, 64)})

_add(Space(
    "metaformer",
    "MetaFormer (PoolFormer family): 4 stages behind a 7x7/4 patch stem, 3x3/2 conv embeddings; the token mixer "
    "of each stage is pooling (Pool), sparse MLP (MLP) or attention (T), each followed by a channel MLP.",
    overrides={
        "resolution": Fixed(224), "num_stages": Fixed(4), "global_tokens.num": Fixed(0),
        "stem.type": Fixed("patch"), "stem.patch.patch_size": Fixed(4), "stem.patch.kernel_size": Fixed(7),
        "stem.patch.norm": Fixed("none"), "stem.patch.bias": Fixed(True),
        # attention over the 56x56 and 28x28 maps of the first two stages would cost more than any
        # budget this family is searched under; MetaFormer's own hybrids put it in the last two
        "stages.0.block": Choice("pool_mixer", "smlp"), "stages.1.block": Choice("pool_mixer", "smlp"),
        "stages.*.block": Choice("pool_mixer", "smlp", "vit"),
        "stages.*.vit.pos_embed": Fixed(False), "stages.*.vit.num_heads": Choice(1, 2, 4, 8),
        "stages.0.stride": Fixed(1), "stages.0.embed.type": Fixed("none"), "stages.0.width": Same("stem.width"),
        "stages.*.stride": Fixed(2), "stages.*.embed.type": Fixed("conv"),
        "stages.*.embed.conv.kernel_size": Fixed(3), "stages.*.embed.conv.norm": Fixed("none"),
        "stages.*.embed.conv.bias": Fixed(True),
        "stages.*.depth": IntRange(1, 24), "stages.*.width": _widths(_family("poolformer_"), 16, 1024, 16),
        "stem.width": Choice(16, 24, 32, 48, 64, 96, 128),
        "head.type": Fixed("pool"), "head.pool.norm": Fixed("gn"), "head.pool.pool": Fixed("mean"),
        "head.pool.distillation": Fixed(False),
    },
    presets=_family("poolformer_"),
))


family_space(
    "efficientformer",
    "EfficientFormer: MB4D (pool) stages then MB3D (attention) blocks at the end; searches depths, widths, "
    "MLP ratios and the number of MB3D blocks.",
    _family("efficientformer_"), {
        "stem.width": IntRange(32, 128, 16), "stages.*.depth": IntRange(1, 18), "stages.*.width": _widths(_family("efficientformer_"), 32, 768, 32),
        "stages.*.mb4d.mlp_ratio": Choice(2.0, 3.0, 4.0), "stages.*.mb3d.mlp_ratio": Choice(2.0, 3.0, 4.0)})

family_space(
    "efficientvit",
    "EfficientViT (MIT): DSConv + MBConv stages, then multi-scale ReLU linear attention stages; searches depths, "
    "widths, expansion, attention head size and the aggregation kernels.",
    _family("efficientvit_"), {
        "stem.width": IntRange(8, 64, 8), "stages.*.depth": IntRange(1, 10), "stages.*.width": _widths(_family("efficientvit_"), 8, 256, 8, (0, 1, 2)),
        "stages.3.width": _widths(_family("efficientvit_"), 32, 512, 32, (3,)),
        "stages.4.width": _widths(_family("efficientvit_"), 32, 768, 32, (4,)),
        "stages.*.mbconv.expand_ratio": Choice(1.0, 2.0, 4.0, 6.0), "stages.0.mbconv.expand_ratio": Fixed(1.0),
        "stages.*.lite_mla.head_dim": Choice(16, 32), "stages.*.lite_mla.expand_ratio": Choice(2.0, 4.0, 6.0)})

family_space(
    "lightvit",
    "LightViT: conv stem, three stages of local-window + global-token attention with the dual-dimension "
    "attention FFN; searches widths, depths, MLP ratios and the number of global tokens.",
    _family("lightvit_"), {
        "stem.width": IntRange(32, 256, 32), "stages.*.depth": IntRange(1, 10), "stages.*.width": _widths(_family("lightvit_"), 32, 768, 32),
        "stages.*.lightvit.mlp_ratio": Choice(2.0, 4.0, 6.0, 8.0), "global_tokens.num": IntRange(4, 32, 4)})

family_space(
    "smlpnet",
    "sMLPNet: patch stem, four stages of depthwise conv + axial sparse MLP token mixing; searches depths, "
    "widths and the channel-MLP ratio.",
    _family("smlpnet_"), {
        "stem.width": IntRange(32, 256, 16), "stages.*.depth": IntRange(1, 24), "stages.*.width": _widths(_family("smlpnet_"), 32, 1024, 16),
        "stages.*.smlp.mlp_ratio": Choice(2.0, 3.0, 4.0)})

family_space(
    "mobileformer",
    "Mobile-Former: a MobileNet branch and a few global tokens joined by two-way bridges; searches depths, widths, "
    "expansion ratios and the number of tokens, around the seven published variants.",
    _family("mobileformer_"), {
        "stages.*.depth": IntRange(1, 6), "stages.*.width": _widths(_family("mobileformer_"), 8, 512, 4), "global_tokens.num": IntRange(2, 8),
        "stages.*.mobile_former.expand_ratio": Choice(2.0, 3.0, 4.0, 6.0)},
    supernet={**_UNGROUPED, "head.mobileformer.groups": Fixed(1)})

family_space(
    "cetnet",
    "CETNet: Fused-MBConv stem, convolutional embeddings (CE) of MBConvs between stages, LEWin attention "
    "stages; searches depths, widths, CE depth and expansion, heads and MLP ratios.",
    _family("cetnet_"), {
        "stages.*.depth": IntRange(1, 26), "stages.*.width": _widths(_family("cetnet_"), 32, 768, 32),
        "stages.*.embed.mbconv.depth": IntRange(1, 7), "stages.*.embed.mbconv.expand_ratio": Choice(2.0, 4.0),
        "stages.*.lewin.mlp_ratio": Choice(2.0, 3.0, 4.0)})

family_space(
    "early_conv_vit",
    "Plain ViT with a patchify stem (ViT_P) or an early-convolution stem (ViT_C); searches the stem, width, depth, "
    "heads and MLP ratio.",
    _family("vit_c_") + _family("vit_p_"), {
        "stem.width": Choice(*(w for w in NICE_WIDTHS if 32 <= w <= 1024)), "stages.0.depth": IntRange(1, 16),
        "stages.0.vit.num_heads": Choice(2, 4, 3, 6, 8, 12, 16), "stages.0.vit.mlp_ratio": Choice(2.0, 3.0, 4.0)})

family_space(
    "swin",
    "Swin: patch stem, shifted-window attention stages joined by patch merging; the mixer of each stage is "
    "Swin's window attention or ViT-LSLA's light self-limited attention.",
    _family("swin_") + ("vit_lsla",), {
        "stages.*.block": Choice("window_attention", "lsla"),
        "stem.width": IntRange(32, 256, 32), "stages.*.depth": IntRange(1, 18),
        "stages.*.width": _widths(_family("swin_"), 32, 1024, 32),
        "stages.*.window_attention.mlp_ratio": Choice(2.0, 3.0, 4.0), "stages.*.lsla.mlp_ratio": Choice(2.0, 3.0, 4.0)})
