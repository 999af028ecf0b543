"""Parse, dispatch, and turn the user's errors into one line and exit code 2.

The entry point owns the process-wide state: Optuna's log level and the warning filters are set
here, never by the library code below.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from nas.config import ConfigError
from nas_cli.common import Command, Parser
from nas_cli.inspect import Archs, Profile, Space, Spaces
from nas_cli.results import Dashboard, Export, Pareto, Studies
from nas_cli.score import Score
from nas_cli.search import Search
from nas_cli.supernet import SupernetCommand
from nas_cli.train import Train
from studies.storage import InputError

COMMANDS: tuple[Command, ...] = (Archs(), Spaces(), Space(), Profile(), Score(), Search(), Studies(), Pareto(),
                                 Dashboard(), Export(), Train(), SupernetCommand())


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nas", description=(
        "Neural architecture search over a hybrid CNN/ViT design space. MACs (multiply-accumulates) are the "
        "unit of every 'FLOPs' figure, counted at 224x224 (MobileViT 256) unless --resolution says otherwise."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add_arguments(sub.add_parser(command.name, help=command.help,
                                             description=command.description or None))
    return parser


def _quiet_libraries(command: Command) -> None:
    import warnings

    warnings.filterwarnings("ignore", message=r".* is experimental \(supported from")  # Optuna's ExperimentalWarning
    if command.uses_studies:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "trial N finished" lines between our own


def main(argv: Optional[list[str]] = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        command = next(c for c in COMMANDS if c.name == args.command)
        _quiet_libraries(command)
        return command.run(args)
    except (InputError, ConfigError) as e:
        print(f"nas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
