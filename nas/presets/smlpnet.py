"""sMLPNet (Tang et al., AAAI 2022; microsoft/SPACH models/smlp.py and models/registry.py)."""
from nas.blocks.common import ConvEmbedParams, PatchStemParams, PoolHeadParams
from nas.blocks.smlp import SparseMlpParams
from nas.config import ArchConfig, EmbedConfig, HeadConfig, StageConfig, StemConfig
from nas.presets import Preset, add

SOURCE = "arXiv 2109.05422; microsoft/SPACH README (MACs) and models/smlp.py, models/registry.py"


def smlpnet(dim: int, depths: tuple) -> ArchConfig:
    # stem: Conv 4x4 s4 without bias or norm; between stages Conv 2x2 s2 without bias or norm
    downsample = EmbedConfig("conv", ConvEmbedParams(kernel_size=2, norm="none", bias=False))
    stages = tuple(StageConfig("smlp", d, dim * 2 ** i, 2 if i else 1, SparseMlpParams(mlp_ratio=3.0),
                               downsample if i else EmbedConfig())
                   for i, d in enumerate(depths))
    return ArchConfig(
        stem=StemConfig("patch", dim, PatchStemParams(patch_size=4, kernel_size=4, norm="none", bias=False)),
        stages=stages,
        head=HeadConfig("pool", PoolHeadParams(norm="bn")),  # BatchNorm -> mean -> Linear
    )


for name, dim, depths, ref, pub in [
    ("t", 80, (2, 8, 14, 2), (24.124, 5.012), (24.0, 5.0, 81.9)),
    ("s", 96, (2, 10, 24, 2), (48.558, 10.348), (49.0, 10.3, 83.1)),
    ("b", 112, (2, 10, 24, 2), (65.880, 14.028), (66.0, 14.0, 83.4)),
]:
    add(Preset(f"smlpnet_{name}", "smlpnet", smlpnet(dim, depths), *ref, *pub, SOURCE,
               deviation="axis-mixing weights are resampled when run off the design resolution (official: fixed size)"))
