"""What the commands share: the one-line usage error, argument types, tables and progress bars."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from nas.config import ArchConfig
from studies.storage import InputError


class UsageError(InputError):
    """Bad input from the user: reported in one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        raise UsageError(f"{self.prog}: {message} (see --help)")


def resolve_arch(spec: str) -> tuple[str, ArchConfig]:
    """A preset name or a path to a JSON config -> (display name, config)."""
    import nas

    if spec in nas.list_archs():
        return spec, nas.get_arch(spec)
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        return path.stem, nas.load_config(path)
    close = [n for n in nas.list_archs() if n.split("_")[0] == spec.split("_")[0]]
    hint = f"; did you mean one of {', '.join(close)}" if close else "; `nas archs` lists them"
    raise UsageError(f"{spec!r} is neither a known architecture nor a config file{hint}")


def positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    return parse


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    cells = [[title for _, title in columns]] + [[fmt(r.get(key)) for key, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2)


def progress(total: int, unit: str, disable: bool = False):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=disable or not sys.stderr.isatty(), file=sys.stderr, leave=False)


class Command:
    """One ``nas`` sub-command: its name, help, arguments and what it does. ``run`` returns the
    exit code; an :class:`InputError` (or ``nas.ConfigError``) from it becomes one line and code 2."""

    name = ""
    help = ""
    description = ""
    uses_studies = False  # reads or writes Optuna studies

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


def add_storage(parser: argparse.ArgumentParser) -> None:
    from studies.storage import DEFAULT_STORAGE

    parser.add_argument("--storage", default=DEFAULT_STORAGE, help=f"SQLAlchemy URL (default {DEFAULT_STORAGE})")
