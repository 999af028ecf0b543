"""LightViT (Huang et al., arXiv 2207.05557; hunto/image_classification_sota lib/models/lightvit.py).

Three stages at strides 8, 16 and 32 (no stride-4 stage), head_dim 32 everywhere, window 7,
MLP ratios 8/4/4; the global tokens follow the width (``dim=None``) so the builder adds the
merge's LayerNorm + Linear projection of them. The paper's MACs (0.7/1.7/3.9 G) come from the
model's own ``flops()``, which skips norms, softmax and bias adds; fvcore counts the norms too,
hence the references 0.781/1.839/4.129 G.
"""
from nas.blocks.lightvit import LightViTHeadParams, LightViTParams, LightViTStemParams
from nas.config import ArchConfig, EmbedConfig, GlobalTokensConfig, HeadConfig, StageConfig, StemConfig
from nas.presets import Preset, add

SOURCE = "arXiv 2207.05557; hunto/LightViT README; hunto/image_classification_sota lib/models/lightvit.py"
MLP_RATIOS = (8.0, 4.0, 4.0)


def lightvit(widths: tuple, depths: tuple, num_tokens: int) -> ArchConfig:
    stages = []
    for i, (width, depth, ratio) in enumerate(zip(widths, depths, MLP_RATIOS)):
        embed = EmbedConfig("residual_merge") if i else EmbedConfig()
        stages.append(StageConfig("lightvit", depth, width, 2 if i else 1, LightViTParams(mlp_ratio=ratio), embed))
    return ArchConfig(
        stem=StemConfig("lightvit", widths[0], LightViTStemParams()),
        stages=tuple(stages),
        head=HeadConfig("lightvit", LightViTHeadParams(neck_dim=1280)),
        global_tokens=GlobalTokensConfig(num=num_tokens, dim=None),
    )


for name, widths, depths, tokens, ref, pub in [
    ("t", (64, 128, 256), (2, 6, 6), 8, (9.378, 0.781), (9.4, 0.7, 78.7)),
    ("s", (96, 192, 384), (2, 6, 6), 16, (19.200, 1.839), (19.2, 1.7, 80.9)),
    ("b", (128, 256, 512), (3, 8, 6), 24, (35.196, 4.129), (35.2, 3.9, 82.1)),
]:
    add(Preset(f"lightvit_{name}", "lightvit", lightvit(widths, depths, tokens), *ref, *pub, SOURCE,
               deviation="none at 224 (published MACs are the model's own flops(), without norms); "
                         "maps not divisible by the window are zero-padded as in the official detection backbone"))
