"""ViT-LSLA (Hechen, Huang, Zhao, arXiv 2210.17115). No code is published: the config is inferred.

The paper states: a stem of two 3x3 convs to H/4 x W/4 x 96, four Swin-like stages joined by patch
merging, Swin blocks whose attention is replaced by LSLA, and 18.9M params / 3.5 GFLOPs (MACs)
against Swin-T's 27.6M / 4.5G. Swin-T's 27.6M is its count with a ~100-class head (IP102 has 102
classes), so 18.9M is read as a 102-class count too.

Assumed (not stated in what we could read of the paper):
- Swin-T's layout: depths (2, 2, 6, 2), widths 96/192/384/768, heads = width / 32 (3/6/12/24),
  window 7, shifted windows in every second block.
- LSA keeps the query and output projections (2C^2 per block instead of Swin's 4C^2).
- MLP ratio 3, not Swin's 4: with ratio 4 the model has 23.4M params at 102 classes
  (the reference notes' "about 23.3M"), far from 18.9M; ratio 3 gives 19.09M at 102 classes.
- Stem: 3x3 s2 conv 3->96 and 3x3 s2 conv 96->96, each with BatchNorm + GELU. A 3->48->96 stem
  gives 3.25G (-7%); 3->96->96 gives 3.40G (-2.8%) against the published 3.5G.
Counts of this config: 19.09M at 102 classes (+1.0%), 19.78M at 1000 classes (+4.7%, the golden
test's class count), 3.40 GMACs by fvcore at 224.
"""
from nas.blocks.common import ConvStackStemParams, PatchMergingParams, PoolHeadParams
from nas.blocks.lsla import LslaParams
from nas.config import ArchConfig, EmbedConfig, HeadConfig, StageConfig, StemConfig
from nas.presets import Preset, add

SOURCE = "arXiv 2210.17115 abstract and Sec. 2 (18.9M / 3.5G, counted with a ~100-class head)"


def vit_lsla() -> ArchConfig:
    block = LslaParams(window_size=7, head_dim=32, mlp_ratio=3.0, shift=True, output_projection=True)
    merge = EmbedConfig("patch_merging", PatchMergingParams())
    stages = tuple(StageConfig("lsla", d, w, 2 if i else 1, block, merge if i else EmbedConfig())
                   for i, (d, w) in enumerate(zip((2, 2, 6, 2), (96, 192, 384, 768))))
    return ArchConfig(
        stem=StemConfig("conv_stack", 96, ConvStackStemParams(widths=(96, 96), strides=(2, 2), act="gelu")),
        stages=stages,
        head=HeadConfig("pool", PoolHeadParams(norm="ln")),
    )


add(Preset("vit_lsla", "vit_lsla", vit_lsla(), None, None, 18.9, 3.5, None, SOURCE,
           deviation="no official code: Swin-T layout, MLP ratio 3, stem 3->96->96 and the kept output "
                     "projection are inferred from 18.9M (102 classes) / 3.5G; 19.78M at 1000 classes"))
