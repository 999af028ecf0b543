"""ViT_P and ViT_C, "Early Convolutions Help Transformers See Better" (Xiao et al., NeurIPS 2021;
facebookresearch/pycls pycls/models/vit.py).

ViT_P patchifies with one 16x16 stride-16 conv (with bias). ViT_C replaces it with 3x3 convs
(BN + ReLU, no bias), each either stride 2 doubling the channels or stride 1 keeping them, then a
1x1 conv with bias to the width; it costs about one block, so ViT_C has one block fewer. Both
then run plain pre-LN ViT blocks over [cls; 14x14 tokens] with a learned positional embedding,
a final LayerNorm and a Linear head on the class token.

The reference counts are pycls's own ``complexity()`` formulas (they add bias adds and skip
norms); ours are fvcore's (norms counted, bias adds not), so MACs differ by about a percent.
"""
from nas.blocks.common import ConvStackStemParams, PatchStemParams, PoolHeadParams
from nas.blocks.vit import ViTParams
from nas.config import ArchConfig, GlobalTokensConfig, HeadConfig, StageConfig, StemConfig
from nas.presets import Preset, add

SOURCE = "arXiv 2106.14881v3 Table 1 (configs, top-1); counts from pycls vit.py complexity()"


def early_conv_vit(stem: StemConfig, depth: int, heads: int, mlp_ratio: float) -> ArchConfig:
    return ArchConfig(
        stem=stem,
        stages=(StageConfig("vit", depth, stem.width, 1, ViTParams(num_heads=heads, mlp_ratio=mlp_ratio)),),
        head=HeadConfig("pool", PoolHeadParams(norm="ln", pool="token")),
        global_tokens=GlobalTokensConfig(num=1),  # the class token
    )


def patchify(width: int) -> StemConfig:
    return StemConfig("patch", width, PatchStemParams(patch_size=16, kernel_size=16, bias=True))


def conv_stem(width: int, widths: tuple, strides: tuple) -> StemConfig:
    return StemConfig("conv_stack", width, ConvStackStemParams(widths=widths, strides=strides, project=True))


SMALL_STRIDES = (2, 2, 2, 2)
# 18GF/36GF: the paper lists the channels; the strides follow its stated rule (stride 2 doubles,
# stride 1 keeps the width), which is also what the note in architectures-1.md section 6 derives.
LARGE_WIDTHS, LARGE_STRIDES = (64, 128, 128, 256, 256, 512), (2, 2, 1, 2, 1, 2)

# reference = pycls complexity() (README table); published = the paper's Table 1 (params M, GFLOPs = GMACs)
for gf, width, depth, heads, mlp, stem_widths, stem_strides, ref_p, ref_c, pub_p, pub_c in [
    ("1gf", 192, 12, 3, 3.0, (24, 48, 96, 192), SMALL_STRIDES,
     (4.830, 1.080), (4.570, 1.080), (4.8, 1.1, 72.3), (4.6, 1.1, 75.3)),
    ("4gf", 384, 12, 6, 3.0, (48, 96, 192, 384), SMALL_STRIDES,
     (18.510, 3.910), (17.750, 3.970), (18.5, 3.9, 80.4), (17.8, 4.0, 81.4)),
    ("18gf", 768, 12, 12, 4.0, LARGE_WIDTHS, LARGE_STRIDES,
     (86.570, 17.580), (81.570, 17.730), (86.7, 17.5, 82.1), (81.6, 17.7, 83.0)),
    ("36gf", 1024, 14, 16, 4.0, LARGE_WIDTHS, LARGE_STRIDES,
     (178.360, 36.000), (167.800, 35.030), (178.4, 35.9, 81.8), (167.8, 35.0, 83.2)),
]:
    # ViT_P: `depth` blocks; ViT_C: one block fewer (the conv stem costs about one block)
    add(Preset(f"vit_p_{gf}", "early_conv_vit", early_conv_vit(patchify(width), depth, heads, mlp),
               *ref_p, *pub_p, SOURCE))
    add(Preset(f"vit_c_{gf}", "early_conv_vit",
               early_conv_vit(conv_stem(width, stem_widths, stem_strides), depth - 1, heads, mlp),
               *ref_c, *pub_c, SOURCE,
               deviation="18GF/36GF stem strides inferred from the paper's doubling rule" if gf in ("18gf", "36gf")
               else "none"))
