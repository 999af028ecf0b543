"""The named spaces: ``hybrid`` (everything) and one sub-space per family, each containing its
family's published architectures."""
from __future__ import annotations

from nas.config import ConfigError
from nas.domains import Choice, Fixed, IntRange, Same
from search_spaces.base import Space

SPACES: dict[str, Space] = {}


def _add(space: Space) -> Space:
    SPACES[space.name] = space
    return space


def get_space(name: str) -> Space:
    try:
        return SPACES[name]
    except KeyError:
        raise ConfigError(f"unknown search space {name!r}; choose from {', '.join(SPACES)}") from None


def list_spaces() -> list[Space]:
    return list(SPACES.values())


def _family(prefix: str) -> tuple[str, ...]:
    from nas import list_archs
    return tuple(n for n in list_archs() if n.startswith(prefix))


_add(Space(
    "hybrid",
    "Per-stage block type in C/T/MLP/Pool with every variant, depth, width, stride, embedding (CE) type and "
    "depth, stem type and patch size, global tokens, heads, expansion, window, MLP ratio; 1 to 8 stages. "
    "Every published architecture is a point of it.",
    presets=_family(""),
))

_add(Space(
    "metaformer",
    "MetaFormer/PoolFormer family: 4 stages behind a 7x7/4 patch stem, 3x3/2 conv embeddings, "
    "pooling token mixers with channel MLPs.",
    overrides={
        "resolution": Fixed(224), "num_stages": Fixed(4), "global_tokens.num": Fixed(0),
        "stem.type": Fixed("patch"), "stem.patch.patch_size": Fixed(4), "stem.patch.kernel_size": Fixed(7),
        "stem.patch.norm": Fixed("none"), "stem.patch.bias": Fixed(True),
        "stages.*.block": Choice("pool_mixer"),
        "stages.0.stride": Fixed(1), "stages.0.embed.type": Fixed("none"), "stages.0.width": Same("stem.width"),
        "stages.*.stride": Fixed(2), "stages.*.embed.type": Fixed("conv"),
        "stages.*.embed.conv.kernel_size": Fixed(3), "stages.*.embed.conv.norm": Fixed("none"),
        "stages.*.embed.conv.bias": Fixed(True),
        "stages.*.depth": IntRange(1, 24), "stages.*.width": IntRange(32, 1024, 32),
        "stem.width": IntRange(32, 256, 32),
        "head.type": Fixed("pool"), "head.pool.norm": Fixed("gn"), "head.pool.pool": Fixed("mean"),
        "head.pool.distillation": Fixed(False),
    },
    presets=_family("poolformer_"),
))
