"""EfficientViT B-series from MIT HAN Lab (Cai et al., ICCV 2023; mit-han-lab/efficientvit
``models/efficientvit/backbone.py`` + ``cls.py``; timm ``efficientvit_mit.py``). Not Microsoft's EfficientViT.

Layout: a 3x3 s2 conv stem and residual DSConvs (an ``mbconv`` stage with expand ratio 1);
stages 1-2 of post-norm MBConvs whose first block is strided without a residual; stages 3-4
open with a strided fewer-norm MBConv (an ``mbconv`` embedding) followed by EfficientViT blocks.
"""
from nas.blocks.common import ConvStackStemParams
from nas.blocks.efficientvit import EfficientViTHeadParams, LiteMLAParams
from nas.blocks.mbconv import MBConvEmbedParams, MBConvParams
from nas.config import ArchConfig, EmbedConfig, HeadConfig, StageConfig, StemConfig
from nas.presets import Preset, add

SOURCE = "mit-han-lab/efficientvit applications/efficientvit_cls/README.md; timm efficientvit_mit (B0 top-1)"


def efficientvit(widths: tuple, depths: tuple, head_dim: int, head_widths: tuple) -> ArchConfig:
    act = "hswish"
    # the official hidden width is round(input width x 4), hence no rounding to multiples of 8
    dsconv = MBConvParams(expand_ratio=1.0, act=act, norm_style="post", hidden_divisor=1)
    mbconv = MBConvParams(expand_ratio=4.0, expand_from="in", act=act, norm_style="post", hidden_divisor=1)
    down = EmbedConfig("mbconv", MBConvEmbedParams(depth=1, expand_ratio=4.0, expand_from="in", act=act,
                                                   norm_style="fewer", hidden_divisor=1))
    stages = [StageConfig("mbconv", depths[0], widths[0], 1, dsconv)]
    stages += [StageConfig("mbconv", d, w, 2, mbconv) for w, d in zip(widths[1:3], depths[1:3])]
    stages += [StageConfig("lite_mla", d, w, 2, LiteMLAParams(head_dim=head_dim, act=act), down)
               for w, d in zip(widths[3:], depths[3:])]
    return ArchConfig(
        stem=StemConfig("conv_stack", widths[0], ConvStackStemParams(widths=(widths[0],), strides=(2,), act=act,
                                                                     norm="bn", bias=False)),
        stages=tuple(stages),
        head=HeadConfig("efficientvit", EfficientViTHeadParams(conv_width=head_widths[0], fc_width=head_widths[1],
                                                               act=act)),
    )


# B0 has no ImageNet row in the official README: its top-1 is timm's re-evaluation (71.41).
for name, widths, depths, head_dim, head_widths, ref, pub in [
    ("b0", (8, 16, 32, 64, 128), (1, 2, 2, 2, 2), 16, (1024, 1280), (3.410, 0.104), (3.4, 0.1, 71.4)),
    ("b1", (16, 32, 64, 128, 256), (1, 2, 3, 3, 4), 16, (1536, 1600), (9.102, 0.528), (9.1, 0.52, 79.39)),
    ("b2", (24, 48, 96, 192, 384), (1, 3, 4, 4, 6), 32, (2304, 2560), (24.331, 1.603), (24.0, 1.6, 82.1)),
    ("b3", (32, 64, 128, 256, 512), (1, 4, 6, 6, 9), 32, (2304, 2560), (48.646, 3.985), (49.0, 4.0, 83.468)),
]:
    add(Preset(f"efficientvit_{name}", "efficientvit", efficientvit(widths, depths, head_dim, head_widths), *ref,
               *pub, SOURCE))
