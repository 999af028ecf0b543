"""PoolFormer (Yu et al., CVPR 2022; sail-sg/poolformer models/poolformer.py)."""
from nas.blocks.common import ConvEmbedParams, PatchStemParams, PoolHeadParams
from nas.blocks.metaformer import PoolMixerParams
from nas.config import ArchConfig, EmbedConfig, HeadConfig, StageConfig, StemConfig
from nas.presets import Preset, add

SOURCE = "arXiv 2111.11418 Table 1; sail-sg/poolformer README (fvcore MACs)"


def poolformer(widths: tuple, depths: tuple, layer_scale_init: float) -> ArchConfig:
    mixer = PoolMixerParams(layer_scale_init=layer_scale_init)
    stages = []
    for i, (w, d) in enumerate(zip(widths, depths)):
        embed = EmbedConfig("conv", ConvEmbedParams(kernel_size=3)) if i else EmbedConfig()
        stages.append(StageConfig("pool_mixer", d, w, 2 if i else 1, mixer, embed))
    return ArchConfig(
        stem=StemConfig("patch", widths[0], PatchStemParams(patch_size=4, kernel_size=7)),
        stages=tuple(stages),
        head=HeadConfig("pool", PoolHeadParams(norm="gn")),
    )


S, M = (64, 128, 320, 512), (96, 192, 384, 768)
for name, widths, depths, ls, ref, pub in [
    ("s12", S, (2, 2, 6, 2), 1e-5, (11.915, 1.823), (11.9, 1.8, 77.2)),
    ("s24", S, (4, 4, 12, 4), 1e-5, (21.389, 3.413), (21.4, 3.4, 80.3)),
    ("s36", S, (6, 6, 18, 6), 1e-6, (30.863, 5.003), (30.8, 5.0, 81.4)),
    ("m36", M, (6, 6, 18, 6), 1e-6, (56.173, 8.802), (56.1, 8.8, 82.1)),
    ("m48", M, (8, 8, 24, 8), 1e-6, (73.473, 11.591), (73.4, 11.6, 82.5)),
]:
    add(Preset(f"poolformer_{name}", "poolformer", poolformer(widths, depths, ls), *ref, *pub, SOURCE))
