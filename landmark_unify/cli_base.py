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
        return dispatch(args)

    return main


class _Failed(Exception):
    """A command returned a non-zero exit code: its outputs are rolled back like on an exception."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _kept(exc: BaseException) -> str:
    kept = getattr(exc, "kept_outputs", None) or []
    if not kept:
        return "nothing written"
    shown = ", ".join(str(p) for p in kept[:6]) + (f" and {len(kept) - 6} more" if len(kept) > 6 else "")
    note = getattr(exc, "kept_note", "")
    return f"kept what was written before it stopped: {shown}" + (f"; {note}" if note else "")


def dispatch(args: argparse.Namespace) -> int:
    """Run the chosen command inside one output transaction (:func:`landmark_unify.outputs.writing`): on
    an error, a non-zero exit code, Ctrl-C or SIGTERM its outputs are rolled back (a training run keeps its
    checkpoints, and says which). Ctrl-C exits 130 with ``interrupted; ...``, never a traceback."""
    import os

    from landmark_unify.errors import LandmarkUnifyError
    from landmark_unify.outputs import terminate_as_exception, writing

    name = args.command
    try:
        with terminate_as_exception(), writing(command_line(getattr(args, "_prog", ""), args).strip()):
            code = int(args._run(args) or 0)
            if code != 0:
                raise _Failed(code)
        return 0
    except _Failed as exc:
        if getattr(exc, "kept_outputs", None):
            print(f"{name}: {_kept(exc)}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt as exc:
        print(f"\n{name}: interrupted; {_kept(exc)}", file=sys.stderr)
        return 130
    except LandmarkUnifyError as exc:  # a bad input file or argument: its message, not a traceback
        print(f"{name}: error: {exc}", file=sys.stderr)
        if getattr(exc, "kept_outputs", None):
            print(f"{name}: {_kept(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # an output that cannot be written (a folder, no permission, disk full)
        print(f"{name}: error: {exc}", file=sys.stderr)
        if getattr(exc, "kept_outputs", None):
            print(f"{name}: {_kept(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if not _from_interrupt(exc):
            raise
        # Ctrl-C inside an extension (an import of onnxruntime, say) that turned it into its own error
        print(f"\n{name}: interrupted; {_kept(exc)}", file=sys.stderr)
        return 130


def _from_interrupt(exc: BaseException) -> bool:
    """True when a KeyboardInterrupt caused ``exc`` (somewhere in its chain of causes)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


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
    annotation file), or to replace an earlier output folder of this project; refused otherwise
    (:mod:`landmark_unify.outputs`)."""
    parser.add_argument("--overwrite", action="store_true",
                        help="allow the output to replace one of the inputs, or an earlier output folder written "
                             "by this project (refused otherwise; a folder of someone else's is never replaced)")


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


def add_engine_options(parser: argparse.ArgumentParser, *, partition_rows: bool = True) -> None:
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
    g.add_argument("--single-file", default=None, metavar="FILE",
                   help="with a dataset output, also write the single-file form here")


def engine_kwargs(args: argparse.Namespace) -> dict:
    """The engine keyword arguments of an operation from :func:`add_engine_options` and :func:`add_quiet`."""
    kw = {"engine": args.engine, "workers": args.workers, "scheduler": args.scheduler,
          "single_file": args.single_file, "progress": not getattr(args, "quiet", False)}
    if getattr(args, "partition_rows", None) is not None:
        kw["rows_per_partition"] = args.partition_rows
    return kw


def command_line(prog: str, args: argparse.Namespace) -> str:
    """The command line as given (``prog`` and the arguments, shell-quoted), for the metadata."""
    import shlex

    return " ".join([prog, *(shlex.quote(a) for a in getattr(args, "_argv", sys.argv[1:]))])
