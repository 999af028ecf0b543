"""MobileViT v1 (Mehta & Rastegari, ICLR 2022; apple/ml-cvnets, timm ``mobilevit.py`` via ByobNet).

Layers 1-2 are MV2 (MobileNetV2 inverted residual) stages; layers 3-5 open with one MV2 stride-2
block (the stage's embed) followed by a single MobileViT block whose transformer has ``depth``
layers. Head: 1x1 conv to 4 x the last width, global pool, Linear. Counted at 256x256.
"""
from nas.blocks.common import ConvStackStemParams
from nas.blocks.mbconv import MBConvEmbedParams, MBConvParams
from nas.blocks.mobilevit import ConvPoolHeadParams, MobileViTParams
from nas.config import ArchConfig, EmbedConfig, HeadConfig, StageConfig, StemConfig
from nas.presets import Preset, add

SOURCE = ("arXiv 2110.02178 App. A Table 4; apple/ml-cvnets config/mobilevit.py and model zoo (top-1); "
          "counts of timm mobilevit_* (= official), fvcore with attention at 256")
# The paper's only FLOPs figure, 0.7 G for XS, is fvcore at 224 without attention (0.72 G); with the
# attention matmuls counted, XS costs 0.79 G at 224 and 1.05 G at 256 (the reference here).


def mobilevit(widths: tuple, dims: tuple, expand_ratio: float, head_width: int, dropout: float) -> ArchConfig:
    """``widths``: layer1..layer5 channels; ``dims``: transformer widths of layers 3-5; ``dropout``:
    inside the transformer (ml-cvnets configs: 0.05 for XXS, 0.1 otherwise)."""
    mv2 = dict(expand_ratio=expand_ratio, act="silu", norm_style="post")
    stages = [StageConfig("mbconv", 1, widths[0], 1, MBConvParams(**mv2)),
              StageConfig("mbconv", 3, widths[1], 2, MBConvParams(**mv2))]
    for width, dim, layers in zip(widths[2:], dims, (2, 4, 3)):
        stages.append(StageConfig("mobilevit", layers, width, 2, MobileViTParams(dim=dim, dropout=dropout),
                                  EmbedConfig("mbconv", MBConvEmbedParams(depth=1, **mv2))))
    return ArchConfig(
        stem=StemConfig("conv_stack", 16, ConvStackStemParams(widths=(16,), strides=(2,), act="silu")),
        stages=tuple(stages),
        head=HeadConfig("conv_pool", ConvPoolHeadParams(width=head_width, act="silu", dropout=0.1)),
        resolution=256,
    )


for name, widths, dims, expand, head, dropout, ref, pub in [
    ("xxs", (16, 24, 48, 64, 80), (64, 80, 96), 2.0, 320, 0.05, (1.272, 0.418), (1.3, None, 69.0)),
    ("xs", (32, 48, 64, 80, 96), (96, 120, 144), 4.0, 384, 0.1, (2.318, 1.052), (2.3, 0.7, 74.7)),
    ("s", (32, 64, 96, 128, 160), (144, 192, 240), 4.0, 640, 0.1, (5.579, 2.033), (5.6, None, 78.3)),
]:
    add(Preset(f"mobilevit_{name}", "mobilevit", mobilevit(widths, dims, expand, head, dropout), *ref, *pub,
               SOURCE))
