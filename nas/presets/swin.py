"""Swin Transformer v1 (Liu et al., ICCV 2021; microsoft/Swin-Transformer models/swin_transformer.py)."""
from nas.blocks.common import PatchMergingParams, PatchStemParams, PoolHeadParams
from nas.blocks.swin import WindowAttentionParams
from nas.config import ArchConfig, EmbedConfig, HeadConfig, StageConfig, StemConfig
from nas.presets import Preset, add

SOURCE = "arXiv 2103.14030 Table 1; microsoft/Swin-Transformer README and configs/swin"


def swin(dim: int, depths: tuple) -> ArchConfig:
    block = WindowAttentionParams(window_size=7, head_dim=32, mlp_ratio=4.0, shift=True)  # heads 3/6/12/24 at dim 96
    # the official end-of-stage patch merging, placed as the next stage's embedding
    merge = EmbedConfig("patch_merging", PatchMergingParams())
    stages = tuple(StageConfig("window_attention", d, dim * 2 ** i, 2 if i else 1, block, merge if i else EmbedConfig())
                   for i, d in enumerate(depths))
    return ArchConfig(
        stem=StemConfig("patch", dim, PatchStemParams(patch_size=4, kernel_size=4, norm="ln", bias=True)),
        stages=stages,
        head=HeadConfig("pool", PoolHeadParams(norm="ln")),
    )


for name, dim, depths, ref, pub in [
    ("t", 96, (2, 2, 6, 2), (28.288, 4.509), (28.0, 4.5, 81.2)),
    ("s", 96, (2, 2, 18, 2), (49.606, 8.769), (50.0, 8.7, 83.2)),
    ("b", 128, (2, 2, 18, 2), (87.768, 15.468), (88.0, 15.4, 83.5)),
]:
    add(Preset(f"swin_{name}", "swin", swin(dim, depths), *ref, *pub, SOURCE,
               deviation="maps that are not a multiple of the window are padded (as the official detection code)"))
