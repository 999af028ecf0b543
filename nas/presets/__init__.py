"""Published architectures as plain configs: ``nas.get_arch("coatnet_0")``.

Each preset records the numbers it must reproduce: the count of the official code (params
exact, MACs by fvcore with attention counted) where one exists, and the paper's published
params / MACs / top-1. Any deviation from the paper is written beside the preset.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Optional

from nas.config import ArchConfig, ConfigError

FAMILY_MODULES = ("coatnet", "mobilevit", "poolformer", "efficientformer", "efficientvit", "lightvit", "smlpnet",
                  "mobileformer", "cetnet", "early_conv_vit", "vit_lsla", "swin")


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    arch: ArchConfig
    # the reference count to match: official code (or a faithful port), 1000 classes
    ref_params_m: Optional[float]
    ref_macs_g: Optional[float]
    # the paper's (or README's) published figures
    published_params_m: Optional[float]
    published_macs_g: Optional[float]
    published_top1: Optional[float]
    source: str
    deviation: str = "none"

    @property
    def tolerance(self) -> tuple[float, float]:
        """(params, MACs) relative tolerances: tight against code, 5% against papers only."""
        return (0.01, 0.03) if self.ref_params_m is not None else (0.05, 0.05)


_PRESETS: dict[str, Preset] = {}


def add(preset: Preset) -> None:
    if preset.name in _PRESETS:
        raise ValueError(f"preset {preset.name!r} is defined twice")
    _PRESETS[preset.name] = preset


def _load() -> None:
    if not _PRESETS:
        for module in FAMILY_MODULES:
            importlib.import_module(f"nas.presets.{module}")


def list_presets() -> list[Preset]:
    _load()
    return list(_PRESETS.values())


def get_preset(name: str) -> Preset:
    _load()
    try:
        return _PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown architecture {name!r}; choose from {', '.join(_PRESETS)}") from None


def get_arch(name: str) -> ArchConfig:
    """The config of a published architecture, e.g. ``get_arch("mobilevit_s")``."""
    return get_preset(name).arch


def list_archs() -> list[str]:
    return [p.name for p in list_presets()]
