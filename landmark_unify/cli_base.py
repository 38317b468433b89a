"""What the two console scripts share: the dispatcher and the options every command spells the same way.

Each command is a module with ``add_arguments(parser)`` and ``run(args) -> int``, imported only when it
is run or asked for help. An option that means the same thing has one name in both CLIs (the table is
``docs/guides/cli.md``): ``-o/--output``, ``--quiet``, ``--on-error``, ``--engine``/``--workers``/
``--scheduler``, ``--channel-order``, ``--pose-units``. Older spellings still work through
:func:`deprecated_alias`, with a warning on stderr.
"""
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


def plugin_commands(group: str) -> dict:
    """Commands other installed packages add under the entry-point ``group``: ``{name: module}`` for each
    entry point ``name = package.module`` whose module has ``SUMMARY``, ``add_arguments`` and ``run``. A
    plugin that fails to import is left out with a warning on stderr."""
    from importlib.metadata import distributions

    # every distribution's entry points, not entry_points(group=...): that one keeps the first distribution of
    # a name on sys.path, which can be a stale *.egg-info left in the working directory by an older build
    eps = {}
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group == group:
                eps.setdefault(ep.name, ep)
    found = {}
    for ep in eps.values():
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            print(f"warning: command {ep.name!r} ({ep.value}) cannot be loaded: {exc}", file=sys.stderr)
            continue
        found[ep.name] = module
    return found


def make_main(prog: str, description: str, package: str, commands: dict[str, str], plugin_group: str | None = None):
    """The ``main(argv)`` of a console script: ``commands`` (name -> summary) are the modules
    ``package.commands.NAME``; with ``plugin_group``, commands of other packages registered under that
    entry-point group (:func:`plugin_commands`) are offered too."""

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
        for name, module in (plugin_commands(plugin_group) if plugin_group else {}).items():
            if name in commands:
                continue
            p = sub.add_parser(name, help=module.SUMMARY, description=module.SUMMARY)
            if argv and argv[0] == name:
                module.add_arguments(p)
                p.set_defaults(_run=module.run)
        args = parser.parse_args(argv)
        args._argv = argv
        args._prog = prog
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


# --- options shared by the commands of both CLIs ------------------------------------------------------------

def deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str, dest: str, *, nargs=None,
                     const=None, choices_map: dict | None = None, type=None) -> None:
    """Accept ``old`` as an older spelling of ``new`` (same ``dest``), with a warning on stderr.
    ``choices_map`` translates old values (``{"RGB": "rgb"}``); ``const`` makes it a flag; ``type``
    converts the value as the new option does."""

    class Alias(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"{parser.prog}: warning: {option_string} is deprecated; use {new}", file=sys.stderr)
            value = const if const is not None else values
            if choices_map is not None and value not in choices_map:
                parser.error(f"argument {option_string}: invalid choice {value!r} (choose from "
                             f"{', '.join(map(repr, choices_map))})")
            setattr(namespace, dest, choices_map[value] if choices_map is not None else value)

    kwargs = {"nargs": 0} if const is not None else ({"nargs": nargs} if nargs is not None else {})
    if type is not None and const is None:
        kwargs["type"] = type
    parser.add_argument(old, action=Alias, dest=dest, help=argparse.SUPPRESS, **kwargs)


def add_output(parser: argparse.ArgumentParser, help: str, *, required: bool = True) -> None:
    """``-o/--output`` (``--out`` is its older spelling). Both are in one group, so a required output given
    as ``--out`` satisfies the requirement (a required ``-o`` alone would reject it)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("-o", "--output", help=help)
    deprecated_alias(group, "--out", "-o/--output", "output")


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet``: no progress bars (``--no-progress`` is its older spelling)."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    deprecated_alias(parser, "--no-progress", "-q/--quiet", "quiet", const=True)


def add_on_error(parser: argparse.ArgumentParser) -> None:
    """``--on-error raise|skip``."""
    from .errors import ON_ERROR

    parser.add_argument("--on-error", choices=ON_ERROR, default=ON_ERROR[0],
                        help="raise: stop at the first bad record and write nothing; skip: leave it out, write the "
                             "rest and report every skipped record")


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: allow the output to be one of the command's inputs (an input manifest, a source
    annotation file); refused otherwise (:func:`landmark_unify.io.check_overwrite`)."""
    parser.add_argument("--overwrite", action="store_true",
                        help="allow the output to replace one of the inputs (refused otherwise)")


def add_where(parser: argparse.ArgumentParser, what: str = "faces") -> None:
    """``--where EXPR``: the row filter of every command that selects rows (the filter language of
    :mod:`landmark_unify.manifest.filters`, ``docs/guides/filters.md``; it never runs code)."""
    parser.add_argument("--where", default=None, metavar="EXPR",
                        help=f"keep only the {what} matching EXPR, e.g. \"source == 'wflw' and yaw > 30\", "
                             "\"eye_state in ['one_closed', 'both_closed']\", \"yaw is not null\": columns, "
                             "literals, comparisons, and/or/not, in, null tests (docs/guides/filters.md)")


def where_filter(args: argparse.Namespace):
    """The parsed ``--where`` of ``args`` (checked against the manifest columns), or None; a bad expression
    is a FilterError (exit 1 with its message) before anything is read or written."""
    text = getattr(args, "where", None)
    if text is None:
        return None
    from .manifest.filters import parse_filter
    from .manifest.schema import COLUMN_NAMES

    return parse_filter(text, COLUMN_NAMES)


def add_exclude_options(parser: argparse.ArgumentParser) -> None:
    """``--exclude FILE``, ``--exclude-where EXPR`` and ``--drop-leaks PAIRS``: faces to leave out of a merge
    (:mod:`landmark_unify.ops.exclude`)."""
    parser.add_argument("--exclude", action="append", default=[], metavar="FILE",
                        help="leave out the faces this file lists: an audit output or any Parquet with sample_id "
                             "(every row), a find-duplicates output (the second face of each pair), a CSV with a "
                             "sample_id column or a text list of ids; repeatable. Each dropped id and its reason "
                             "go to OUT.excluded.jsonl")
    parser.add_argument("--exclude-where", default=None, metavar="EXPR",
                        help="keep only the rows of the --exclude files matching EXPR, on their own columns, e.g. "
                             "\"rank <= 50\" (audit) or \"kind == 'exact'\" (find-duplicates); the --where language")
    parser.add_argument("--drop-leaks", default=None, metavar="PAIRS",
                        help="a find-duplicates output: for each pair marked leak, leave out the side that is not "
                             "test data (the training copy of a test face)")


def exclude_kwargs(args: argparse.Namespace) -> dict:
    """``exclude`` and ``exclusion_meta`` of a merge from :func:`add_exclude_options` (read now, so a bad file
    stops the command before anything runs)."""
    from .ops.exclude import exclusions

    ids, meta = exclusions(args.exclude, args.exclude_where, args.drop_leaks)
    return {"exclude": ids, "exclusion_meta": meta} if meta else {}


def add_engine_options(parser: argparse.ArgumentParser, *, partition_rows: bool = True, single_file: bool = True) -> None:
    """``--engine``, ``--workers``, ``--scheduler`` (and ``--partition-rows``, ``--single-file``): where an
    operation's units run. ``-o`` names a dataset directory, or a single file when it ends in ``.parquet``."""
    from .engines import SCHEDULER_ENV, engine_names
    from .manifest import DEFAULT_ROWS_PER_PARTITION

    g = parser.add_argument_group("engine (docs/guides/scale-out.md)")
    g.add_argument("--engine", choices=engine_names(), default="local",
                   help="local: this process (default); dask: units on a dask.distributed cluster "
                        "(pip install 'landmark-unify[dask]'). -o DIR writes a partitioned dataset (hive layout "
                        "source=/split=), -o FILE.parquet one file, with either engine")
    g.add_argument("--workers", type=positive_int, default=None,
                   help="local: threads working on units at once (default 2); dask: worker processes of the "
                        "local cluster started for the run (default 1)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help=f"dask: use the running cluster at this scheduler address (tcp://host:8786) instead of "
                        f"starting one; default ${SCHEDULER_ENV}")
    if partition_rows:
        g.add_argument("--partition-rows", type=positive_int, default=DEFAULT_ROWS_PER_PARTITION, metavar="N",
                       help=f"faces per unit (default {DEFAULT_ROWS_PER_PARTITION}); bounds a worker's memory")
    if single_file:  # not for commands whose output is not a manifest
        g.add_argument("--single-file", default=None, metavar="FILE",
                       help="with a dataset output, also write the single-file form here")


def engine_kwargs(args: argparse.Namespace) -> dict:
    """The engine keyword arguments of an operation from :func:`add_engine_options` and :func:`add_quiet`."""
    kw = {"engine": args.engine, "workers": args.workers, "scheduler": args.scheduler,
          "progress": not getattr(args, "quiet", False)}
    if hasattr(args, "single_file"):
        kw["single_file"] = args.single_file
    if getattr(args, "partition_rows", None) is not None:
        kw["rows_per_partition"] = args.partition_rows
    return kw


def command_line(prog: str, args: argparse.Namespace) -> str:
    """The command line as given (``prog`` and the arguments, shell-quoted), for the metadata."""
    import shlex

    return " ".join([prog, *(shlex.quote(a) for a in getattr(args, "_argv", sys.argv[1:]))])
