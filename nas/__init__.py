"""nas: a hybrid CNN/ViT design space, its published points, and the one model builder.

    >>> import nas
    >>> arch = nas.get_arch("coatnet_0")
    >>> model = nas.build_model(arch, num_classes=10)

Light to import: torch only (no Optuna, Ray or plotly).
"""
from nas.builder import analytic_cost, build_model, check_arch, components, network_stride, scale_widths
from nas.config import (ArchConfig, ConfigError, EmbedConfig, GlobalTokensConfig, HeadConfig, Params, StageConfig,
                        StemConfig)
from nas.io import load_config, save_config
from nas.presets import Preset, get_arch, get_preset, list_archs, list_presets
from nas.registry import Cost, Geometry, Tokens
from nas.supernet import Supernet, SupernetError

__all__ = [
    "ArchConfig", "ConfigError", "Cost", "EmbedConfig", "Geometry", "GlobalTokensConfig", "HeadConfig", "Params",
    "Preset", "StageConfig", "StemConfig", "Tokens", "analytic_cost", "build_model", "check_arch", "components",
    "Supernet", "SupernetError", "get_arch", "get_preset", "list_archs", "list_presets", "load_config", "network_stride",
    "save_config", "scale_widths",
]
__version__ = "0.1.0"
