"""A small dispatcher shared by the two console scripts: each command is a module with
``add_arguments(parser)`` and ``run(args) -> int``, imported only when it is run or asked for help."""
from __future__ import annotations

import argparse
import importlib
import sys


def make_main(prog: str, description: str, package: str, commands: dict[str, str]):
    def main(argv: list[str] | None = None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        parser = argparse.ArgumentParser(prog=prog, description=description)
        from landmark_unify import __version__

        parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        chosen = argv[0] if argv and argv[0] in commands else None
        for name, summary in commands.items():
            p = sub.add_parser(name, help=summary, description=summary)
            if name == chosen:
                module = importlib.import_module(f"{package}.commands.{name.replace('-', '_')}")
                module.add_arguments(p)
                p.set_defaults(_run=module.run)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return int(args._run(args) or 0)

    return main
