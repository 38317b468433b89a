"""Print the options of every command of both CLIs as the markdown table of ``docs/guides/cli.md``.

    python tools/cli_options.py > /tmp/table.md

``tests/test_cli_docs.py`` checks that the page lists every option this prints.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def command_options(package: str, command: str) -> list[tuple[str, str]]:
    """``(option, help)`` of one command, deprecated spellings left out; the help ends with the values the
    option's declared type accepts (``landmark_unify.cli_base``)."""
    from landmark_unify.cli_base import OptionType

    module = importlib.import_module(f"{package}.commands.{command.replace('-', '_')}")
    parser = argparse.ArgumentParser(prog=command)
    module.add_arguments(parser)
    out = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        name = ", ".join(action.option_strings) or action.dest.upper()
        text = action.help or ""
        if isinstance(action.type, OptionType):
            text += f" [{action.type.describe()}]"
        out.append((name, " ".join(text.split()).replace("|", "\\|")))
    return out


def all_commands() -> list[tuple[str, str]]:
    from landmark_unify.cli import COMMANDS as LU
    from pfpld_train.cli import COMMANDS as PT

    return [("landmark_unify", c) for c in LU] + [("pfpld_train", c) for c in PT]


def main() -> int:
    for package, command in all_commands():
        print(f"\n### `{package} {command}`\n\n| option | meaning |\n|---|---|")
        for name, text in command_options(package, command):
            print(f"| `{name}` | {text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
