"""A small dispatcher shared by the two console scripts: each command is a module with
``add_arguments(parser)`` and ``run(args) -> int``, imported only when it is run or asked for help."""
from __future__ import annotations

import argparse
import importlib
import math
import sys


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; got {text}")
    return value


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
        from landmark_unify.errors import LandmarkUnifyError

        try:
            return int(args._run(args) or 0)
        except LandmarkUnifyError as exc:  # a bad input file or argument: its message, not a traceback
            print(f"{args.command}: error: {exc}", file=sys.stderr)
            return 1
        except BrokenPipeError:  # output piped into `head` and the like: stop quietly
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except OSError as exc:  # an output that cannot be written (a folder, no permission, disk full)
            print(f"{args.command}: error: {exc}", file=sys.stderr)
            return 1

    return main
