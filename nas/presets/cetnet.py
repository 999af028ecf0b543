"""CETNet-T/S/B (Wang et al., "Convolutional Embedding Makes Hierarchical Vision Transformer
Stronger", ECCV 2022, arXiv 2207.13317).

No official code exists and the variant table (in the supplementary material) could not be
read, so the targets are the secondary figures (HybridFormer README: 23/34/75 M params,
4.3/6.8/15.1 G MACs; 5% tolerance). What the paper text states and we follow:
  - stem = 4 Fused-MBConvs (strides 2, 1, 2, 1) + one 1x1 conv to the width + LayerNorm
    (stage 0 merged with the first stage's CE), stride 4;
  - stages 2-4 open with a CE of 5 MBConvs ("5-layer CE", the final setting of its Table 5);
  - Fused-MBConv / MBConv expansion ratios are 1 or 2;
  - LEWin blocks: (shifted) window attention with a depthwise-separable 3x3 (stride 1, pad 1)
    convolutional projection of q, k, v, as in CvT.
Assumed (not stated in anything we could read), chosen to meet the secondary counts with one
recipe for all three variants:
  - CSWin-like widths and heads (CETNet-T/S/B figures sit next to CSWin-T/S/B's 23/35/78 M,
    4.3/6.9/15.0 G): base width 64 (T, S) or 96 (B), doubled per stage; 32-dim heads for
    T/S, heads 4/8/16/32 for B (as CSWin-B); MLP ratio 4; window 7, shifted every second block;
  - depths (1, 2, 15, 1) for T and (2, 4, 26, 2) for S and B (CSWin's 21 and 32 third-stage
    blocks minus what the CE costs);
  - stem widths (C/2, C/2, C, C), expansion 1 in stage 0 and 2 in the first stage's CE;
    CE MBConvs expand the input width by 2, BN after every conv, SiLU, no squeeze-excite;
  - LEWin uses three separate dw-conv + BN projections (CvT) applied to the whole map before the
    window partition, q/k/v Linears with bias, and no relative-position bias;
  - head: LayerNorm, global mean, Linear.
"""
from nas.blocks.cetnet import FusedMBConvStemParams, LEWinParams
from nas.blocks.common import PoolHeadParams
from nas.blocks.mbconv import MBConvEmbedParams
from nas.config import ArchConfig, EmbedConfig, HeadConfig, StageConfig, StemConfig
from nas.presets import Preset, add

SOURCE = ("arXiv 2207.13317 (text only: stem, CE, LEWin); counts and top-1 from the HybridFormer README "
          "(secondary); no official code")
DEVIATION = ("unofficial: widths, heads, depths (T 1-2-15-1, S/B 2-4-26-2), stem widths/expansions, CE "
             "expansion 2 / SiLU / no SE and LEWin details are assumptions (see nas/presets/cetnet.py)")

CE_DEPTH = 5  # the paper's "5-layer CE"


def cetnet(width: int, depths: tuple, heads: tuple) -> ArchConfig:
    stem = FusedMBConvStemParams(widths=(width // 2, width // 2, width, width), strides=(2, 1, 2, 1),
                                 expand_ratios=(1.0, 1.0, 2.0, 2.0), act="silu")
    ce = EmbedConfig("mbconv", MBConvEmbedParams(depth=CE_DEPTH, expand_ratio=2.0, act="silu"))
    stages = tuple(StageConfig("lewin", d, width * 2 ** i, 2 if i else 1, LEWinParams(num_heads=h, window_size=7),
                               ce if i else EmbedConfig())
                   for i, (d, h) in enumerate(zip(depths, heads)))
    return ArchConfig(stem=StemConfig("fused_mbconv", width, stem), stages=stages,
                      head=HeadConfig("pool", PoolHeadParams(norm="ln", pool="mean")))


for name, width, depths, heads, published in [
    ("t", 64, (1, 2, 15, 1), (2, 4, 8, 16), (23, 4.3, 82.7)),
    ("s", 64, (2, 4, 26, 2), (2, 4, 8, 16), (34, 6.8, 83.4)),
    ("b", 96, (2, 4, 26, 2), (4, 8, 16, 32), (75, 15.1, 83.8)),
]:
    add(Preset(f"cetnet_{name}", "cetnet", cetnet(width, depths, heads), None, None, *published, SOURCE, DEVIATION))
