"""CoAtNet-0..3 (Dai et al., NeurIPS 2021), layer for layer as timm's paper-like ``coatnet_N_224``.

Deviation from the paper's main table (Table 4), all as in timm: the stride of a downsampling
MBConv sits on the depthwise conv (the paper's appendix Table 9 "strided DConv" variant, hence
more MACs than Table 4), the downsampling shortcuts use a 2x2 average pool instead of max pool,
and the head adds a pre-logits layer (LayerNorm, Linear to the same width, tanh) before the
classifier. No official code exists; timm's port is the reference for params and MACs.
"""
from nas.blocks.coatnet import NormMlpHeadParams, RelAttentionParams
from nas.blocks.common import ConvStackStemParams
from nas.blocks.mbconv import MBConvParams
from nas.config import ArchConfig, HeadConfig, StageConfig, StemConfig
from nas.presets import Preset, add

SOURCE = ("arXiv 2106.04803 Table 3/4 (and Table 9); timm maxxvit.py coatnet_N_224 "
          "(params; fvcore MACs with attention counted)")
DEVIATION = ("timm's paper-like port: strided depthwise conv (paper Table 9 variant), avg-pool shortcuts "
             "instead of max-pool, pre-logits head (LN, Linear, tanh)")

# pre-activation MBConv: BN on the input, expansion 4 and SE 0.25 both of the output width,
# GELU, SE with SiLU, stride on the depthwise conv, avg-pool + 1x1 (with bias) shortcut
COATNET_MBCONV = MBConvParams(expand_ratio=4.0, expand_from="out", kernel_size=3, se_ratio=0.25, se_from="out",
                              se_act="silu", act="gelu", norm_style="pre", stride_on="dw", shortcut="pool_proj")


def coatnet(stem_width: int, widths: tuple, depths: tuple) -> ArchConfig:
    blocks = ("mbconv", "mbconv", "rel_attention", "rel_attention")
    params = (COATNET_MBCONV, COATNET_MBCONV, RelAttentionParams(head_dim=32), RelAttentionParams(head_dim=32))
    return ArchConfig(
        # S0: conv3x3 s2 - BN - GELU - conv3x3 (the first MBConv's pre-norm follows)
        stem=StemConfig("conv_stack", stem_width, ConvStackStemParams(
            widths=(stem_width, stem_width), strides=(2, 1), act="gelu", last_norm_act=False, bias=False)),
        stages=tuple(StageConfig(b, d, w, 2, p) for b, d, w, p in zip(blocks, depths, widths, params)),
        head=HeadConfig("norm_mlp", NormMlpHeadParams(act="tanh")),
    )


for name, stem, widths, depths, ref, pub in [
    ("coatnet_0", 64, (96, 192, 384, 768), (2, 3, 5, 2), (25.037, 4.584), (25.0, 4.2, 81.6)),
    ("coatnet_1", 64, (96, 192, 384, 768), (2, 6, 14, 2), (42.226, 8.696), (42.0, 8.4, 83.3)),
    ("coatnet_2", 128, (128, 256, 512, 1024), (2, 6, 14, 2), (74.685, 16.50), (75.0, 15.7, 84.1)),
    ("coatnet_3", 192, (192, 384, 768, 1536), (2, 6, 14, 2), (166.966, 36.56), (168.0, 34.7, 84.5)),
]:
    add(Preset(name, "coatnet", coatnet(stem, widths, depths), *ref, *pub, SOURCE, DEVIATION))
