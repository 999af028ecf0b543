"""Mobile-Former (Chen et al., CVPR 2022; AAboys/MobileFormer mobile_former.py, which reproduces the
paper's params and MAdds).

Every variant: conv3x3 s2 stem (BN, ReLU6) -> a bneck-lite block -> Mobile-Former stages -> the
Mobile-Former head (whose final Mobile->Former update is the official ``local_global`` after the
last block). A stage is a run of blocks at one width; where the width changes at stride 1
(e.g. 128 -> 176 in 508M) a new stride-1 stage starts. Token init is trunc-normal rather than the
official ``nn.Embedding`` normal init (same parameters).
"""
from nas.blocks.common import ConvStackStemParams
from nas.blocks.mobileformer import BneckLiteParams, MobileFormerHeadParams, MobileFormerParams
from nas.config import ArchConfig, GlobalTokensConfig, HeadConfig, StageConfig, StemConfig
from nas.presets import Preset, add

SOURCE = "arXiv 2108.05895; AAboys/MobileFormer README (params, MAdds, top-1) and mobile_former.py (config)"


def mobile_former(stem: int, bneck: tuple, stages: list, tokens: tuple, hidden_width: int, dropout: float,
                  groups: int = 1) -> ArchConfig:
    """``bneck`` = (channel multiplier, width, stride); ``stages`` = (stride, width, expand ratios per block)."""
    multiplier, width, stride = bneck
    layers = [StageConfig("bneck_lite", 1, width, stride, BneckLiteParams(multiplier, groups))]
    for stride, width, ratios in stages:
        later = ratios[1:] or ratios[:1]
        if any(r != later[0] for r in later):
            raise ValueError(f"a stage's later blocks share one expand ratio, got {ratios}")
        block = MobileFormerParams(first_expand_ratio=float(ratios[0]), expand_ratio=float(later[0]), groups=groups)
        layers.append(StageConfig("mobile_former", len(ratios), width, stride, block))
    return ArchConfig(
        stem=StemConfig("conv_stack", stem, ConvStackStemParams(widths=(stem,), strides=(2,), act="relu6")),
        stages=tuple(layers),
        head=HeadConfig("mobileformer", MobileFormerHeadParams(hidden_width=hidden_width, groups=groups,
                                                               dropout=dropout)),
        global_tokens=GlobalTokensConfig(num=tokens[0], dim=tokens[1]),
    )


# (stride, width, expand ratio of each block); the first block of each stage widens its input 6x,
# except the first stage of 52M / 26M (3x)
TINY = [(1, 12, (3,)), (2, 24, (6, 3)), (2, 48, (6, 4)), (1, 64, (6,)), (2, 96, (6, 6))]
VARIANTS = {
    "508m": (24, (2, 24, 1), [(2, 40, (6, 3)), (2, 72, (6, 3)), (2, 128, (6, 4)), (1, 176, (6, 6)),
                              (2, 240, (6, 6, 6))], (6, 192), 1920, 0.3, 1),
    "294m": (16, (2, 16, 1), [(2, 24, (6, 4)), (2, 48, (6, 4)), (2, 96, (6, 4)), (1, 128, (6, 6)),
                              (2, 192, (6, 6, 6))], (6, 192), 1920, 0.3, 1),
    "214m": (12, (2, 12, 1), [(2, 20, (6, 3)), (2, 40, (6, 4)), (2, 80, (6, 4)), (1, 112, (6, 6)),
                              (2, 160, (6, 6, 6))], (6, 192), 1600, 0.2, 1),
    "151m": (12, (2, 12, 1), [(2, 16, (6, 3)), (2, 32, (6, 3)), (2, 64, (6, 4)), (1, 88, (6, 6)),
                              (2, 128, (6, 6, 6))], (6, 192), 1280, 0.2, 1),
    "96m": (12, (2, 12, 1), [(2, 16, (6,)), (2, 32, (6, 3)), (2, 64, (6, 4)), (1, 88, (6,)),
                             (2, 128, (6, 6))], (4, 128), 1280, 0.2, 1),
    "52m": (8, (3, 12, 2), TINY, (3, 128), 1024, 0.2, 1),
    # 26M = 52M with grouped (4) pointwise convs and channel shuffle
    "26m": (8, (3, 12, 2), TINY, (3, 128), 1024, 0.1, 4),
}
# reference: AAboys code counted (params, fvcore MACs incl. BN); published: README params, MAdds, top-1
NUMBERS = {
    "508m": ((13.977, 0.511), (14.0, 0.508, 79.3)),
    "294m": ((11.423, 0.295), (11.4, 0.294, 77.9)),
    "214m": ((9.426, 0.215), (9.4, 0.214, 76.7)),
    "151m": ((7.596, 0.152), (7.6, 0.151, 75.2)),
    "96m": ((4.585, 0.096), (4.6, 0.096, 72.8)),
    "52m": ((3.469, 0.052), (3.5, 0.052, 68.7)),
    "26m": ((3.233, 0.026), (3.2, 0.026, 64.0)),
}
for name, (stem, bneck, stages, tokens, hidden, dropout, groups) in VARIANTS.items():
    ref, pub = NUMBERS[name]
    add(Preset(f"mobileformer_{name}", "mobileformer",
               mobile_former(stem, bneck, stages, tokens, hidden, dropout, groups), *ref, *pub, SOURCE))
