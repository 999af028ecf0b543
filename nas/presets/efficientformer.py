"""EfficientFormer v1 (Li et al., NeurIPS 2022; snap-research/EfficientFormer models/efficientformer.py).

The official stage 4 of L1 / L3 is MB4D blocks followed by ``vit_num`` MB3D blocks; here it is two
stages: an ``mb4d`` stage that takes the stride-2 embedding, then an ``mb3d`` stage of stride 1.
The layers and their order are the same, so counts and weights map one to one.
"""
from nas.blocks.common import ConvEmbedParams, ConvStackStemParams, PoolHeadParams
from nas.blocks.efficientformer import MB3DParams, MB4DParams
from nas.config import ArchConfig, EmbedConfig, HeadConfig, StageConfig, StemConfig
from nas.presets import Preset, add

SOURCE = "arXiv 2206.01191 (via RepViT table); snap-research/EfficientFormer (code count, fvcore MACs)"


def efficientformer(widths: tuple, depths: tuple, vit_num: int) -> ArchConfig:
    embed = EmbedConfig("conv", ConvEmbedParams(kernel_size=3, norm="bn", bias=True))
    stages = []
    for i, (w, d) in enumerate(zip(widths, depths)):
        stride = 2 if i else 1
        conv_depth = d - vit_num if i == len(widths) - 1 else d
        if conv_depth:
            stages.append(StageConfig("mb4d", conv_depth, w, stride, MB4DParams(), embed if i else EmbedConfig()))
            stride = 1
        if i == len(widths) - 1:
            stages.append(StageConfig("mb3d", vit_num, w, stride, MB3DParams(), embed if stride > 1 else EmbedConfig()))
    return ArchConfig(
        stem=StemConfig("conv_stack", widths[0],
                        ConvStackStemParams(widths=(widths[0] // 2, widths[0]), strides=(2, 2), act="relu",
                                            norm="bn", bias=True)),
        stages=tuple(stages),
        # LayerNorm, token mean, classifier + DeiT-style distillation classifier (averaged at eval)
        head=HeadConfig("pool", PoolHeadParams(norm="ln", distillation=True)),
    )


for name, widths, depths, vit_num, ref, pub in [
    ("l1", (48, 96, 224, 448), (3, 2, 6, 4), 1, (12.290, 1.302), (12.3, 1.3, 79.2)),
    ("l3", (64, 128, 320, 512), (4, 4, 12, 6), 4, (31.406, 3.929), (31.3, 3.9, 82.4)),
    ("l7", (96, 192, 384, 768), (6, 6, 18, 8), 8, (82.229, 10.166), (82.1, 10.2, 83.3)),
]:
    add(Preset(f"efficientformer_{name}", "efficientformer", efficientformer(widths, depths, vit_num), *ref, *pub,
               SOURCE))
