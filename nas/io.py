"""Reading and writing architecture configs as JSON files."""
from __future__ import annotations

from pathlib import Path

from nas.config import ArchConfig, ConfigError


def load_config(path: str | Path) -> ArchConfig:
    """Load an architecture config written by ``save_config`` or ``nas export``."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        return ArchConfig.from_json(text)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def save_config(arch: ArchConfig, path: str | Path) -> None:
    Path(path).write_text(arch.to_json(indent=2) + "\n")
