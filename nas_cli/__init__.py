"""The ``nas`` command line: the top layer, above ``studies``, ``search_spaces``, ``evaluators``
and ``nas``. Each command is a small class with its own arguments and ``run`` (``commands.py``);
``main`` parses, sets the process-wide state (logging, warnings) and turns user errors into one
line and exit code 2."""
from nas_cli.main import main

__all__ = ["main"]
