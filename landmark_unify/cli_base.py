"""What the two console scripts share: the dispatcher and the options every command spells the same way.

Each command is a module with ``add_arguments(parser)`` and ``run(args) -> int``, imported only when it
is run or asked for help. An option that means the same thing has one name in both CLIs (the table is
``docs/guides/cli.md``): ``-o/--output``, ``--quiet``, ``--on-error``, ``--engine``/``--workers``/
``--scheduler``, ``--channel-order``, ``--pose-units``. Older spellings still work through
:func:`deprecated_alias`, with a warning on stderr.

Every option that takes a value declares its type, unit and range here (:class:`Num` through :func:`count` and
:func:`number`, :class:`Numbers`, :class:`Pair`, :class:`Text`) or has ``choices``; a command's optional
``check_args(args)`` refuses combinations that would allocate too much (:func:`check_allocation`). The
dispatcher parses ``--where`` once (:func:`resolve_where`), and :func:`run_options` turns the engine options
into the one :class:`~landmark_unify.engines.RunOptions` a command passes down.
"""
from __future__ import annotations

import argparse
import importlib
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# --- option types: every option's type, unit and range, declared once -------------------------------------
#
# Every option of both CLIs that takes a value declares it with ``choices`` or with one of these types, which
# parse strictly (ASCII digits only: no ``1_000``, no ``nan``, no ``inf``, no 400-digit integers) and check a
# closed range with a unit; a value outside is refused by the parser (exit 2) with a message saying what is
# accepted. ``tests/test_cli_options.py`` walks every option of every command and tries the bad values of
# each class on it, so a new option is covered as soon as it is declared.

_INT = re.compile(r"[+-]?[0-9]{1,20}", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?", re.ASCII)
#: The longest text any option takes (a path, an expression, an address).
MAX_TEXT = 4096


class OptionType:
    """Base of the option types: a callable argparse ``type`` with a one-line :meth:`describe`."""

    def describe(self) -> str:
        raise NotImplementedError

    @property
    def __name__(self) -> str:  # argparse names the type in some messages
        return self.describe()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


@dataclass(frozen=True, repr=False)
class Num(OptionType):
    """A whole number (``kind=int``) or a finite number (``kind=float``) in ``[low, high]`` (``low_open`` /
    ``high_open``: the bound itself excluded), in ``unit``. ``none``: words that mean "no value" (None)."""

    kind: type
    low: float
    high: float
    unit: str = ""
    low_open: bool = False
    high_open: bool = False
    none: tuple[str, ...] = ()

    def describe(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        lo = f"{'>' if self.low_open else '>='} {self.low:g}" if self.kind is float else f">= {self.low:,}"
        hi = f"{'<' if self.high_open else '<='} {self.high:g}" if self.kind is float else f"<= {self.high:,}"
        text = f"{what} {lo} and {hi}" + (f" ({self.unit})" if self.unit else "")
        return text + (f", or {' / '.join(map(repr, self.none))}" if self.none else "")

    def __call__(self, text: str):
        s = str(text).strip()
        if s.lower() in self.none:
            return None
        pattern = _INT if self.kind is int else _FLOAT
        value = None
        if len(s) <= 40 and pattern.fullmatch(s):
            value = self.kind(s)
            if self.kind is float and not math.isfinite(value):
                value = None
        if value is None or value < self.low or value > self.high or (self.low_open and value == self.low) \
                or (self.high_open and value == self.high):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}; got {text!r}")
        return value


def count(high: int, *, low: int = 1, unit: str = "") -> Num:
    """A whole number from ``low`` (default 1) to ``high``: a count, a size, an iteration bound."""
    return Num(int, low, high, unit)


def number(low: float, high: float, *, unit: str = "", low_open: bool = False, high_open: bool = False,
           none: tuple[str, ...] = ()) -> Num:
    """A finite number in ``[low, high]`` (an open bound with ``low_open`` / ``high_open``)."""
    return Num(float, low, high, unit, low_open, high_open, none)


@dataclass(frozen=True, repr=False)
class Numbers(OptionType):
    """``counts`` values of ``item`` separated by commas (or spaces): ``--box 1,2,3,4``, ``--mean 127.5`` or
    ``--mean 123,117,104``; a tuple."""

    item: Num
    counts: tuple[int, ...]
    names: str = ""

    def describe(self) -> str:
        n = " or ".join(map(str, self.counts))
        return f"{n} values{' ' + self.names if self.names else ''}, comma-separated, each {self.item.describe()}"

    def __call__(self, text: str) -> tuple:
        parts = str(text).replace(",", " ").split()
        if len(parts) not in self.counts or len(str(text)) > MAX_TEXT:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}; got {text!r}")
        try:
            return tuple(self.item(p) for p in parts)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}; got {text!r}") from None


@dataclass(frozen=True, repr=False)
class Text(OptionType):
    """Text of ``what`` kind (a path, an expression, a name): not empty, at most :data:`MAX_TEXT`
    characters, no NUL; ``convert`` (``pathlib.Path``) applied to it."""

    what: str = "text"
    convert: object = None

    def describe(self) -> str:
        return f"a {self.what}"

    def __call__(self, text: str):
        if not str(text).strip() or "\0" in str(text) or len(str(text)) > MAX_TEXT:
            raise argparse.ArgumentTypeError(f"expected {self.describe()} (not empty, no NUL, at most {MAX_TEXT} "
                                             f"characters); got {str(text)[:80]!r}")
        return self.convert(text) if self.convert is not None else text


@dataclass(frozen=True, repr=False)
class Pair(OptionType):
    """``NAME=VALUE`` with VALUE of type ``value`` (``--weight wflw=2``); the text itself, checked."""

    value: Num
    names: str = "NAME"

    def describe(self) -> str:
        return f"{self.names}=VALUE, VALUE {self.value.describe()}"

    def __call__(self, text: str) -> str:
        name, sep, value = str(text).partition("=")
        if not sep or not name.strip() or "\0" in str(text) or len(str(text)) > MAX_TEXT:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}; got {text!r}")
        try:
            self.value(value)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}; got {text!r}") from None
        return text


PATH = Text("path")
PATH_OBJ = Text("path", Path)
TEXT = Text("text")
#: ``--where``: the text of a row filter, parsed (once) by the dispatcher (:func:`resolve_where`)
WHERE = Text("filter expression")
#: ``--workers`` of every command: threads or processes
WORKERS = count(256, unit="workers")

#: ``--weight SOURCE=W``: a training weight per source, stored as float32 (its largest finite value)
SOURCE_WEIGHT = Pair(number(0, 3.4028234663852886e38), "SOURCE")
#: Seeds of the random draws (numpy's and torch's range).
SEED = count(2**32 - 1, low=0)


class UsageError(argparse.ArgumentTypeError):
    """A combination of options the parser accepts one by one but not together (an allocation too large):
    exit 2 with the command's usage, as argparse does."""


#: The most memory one option-driven allocation may take (a contact sheet, ...): 2 GiB.
MAX_ALLOCATION = 2 * 2**30


def check_allocation(what: str, nbytes: int, limit: int = MAX_ALLOCATION) -> None:
    """UsageError when ``what`` would allocate more than ``limit`` bytes."""
    if nbytes > limit:
        raise UsageError(f"{what} would take {nbytes / 2**30:,.1f} GiB; at most {limit / 2**30:g} GiB")


class TypedHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that says every typed option's accepted values: ``(a whole number >= 1 and <= 4,096 (pixels))``."""

    def _get_help_string(self, action):
        text = action.help or ""
        if isinstance(action.type, OptionType) and text != argparse.SUPPRESS:
            text += f" [{action.type.describe()}]".replace("%", "%%")
        return text


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
        parsers = {}
        for name, summary in commands.items():
            p = parsers[name] = sub.add_parser(name, help=summary, description=summary,
                                               formatter_class=TypedHelpFormatter)
            if name == chosen:
                module = importlib.import_module(f"{package}.commands.{name.replace('-', '_')}")
                module.add_arguments(p)
                p.set_defaults(_run=module.run, _check=getattr(module, "check_args", None))
        for name, module in (plugin_commands(plugin_group) if plugin_group else {}).items():
            if name in commands:
                continue
            p = parsers[name] = sub.add_parser(name, help=module.SUMMARY, description=module.SUMMARY,
                                               formatter_class=TypedHelpFormatter)
            if argv and argv[0] == name:
                module.add_arguments(p)
                p.set_defaults(_run=module.run, _check=getattr(module, "check_args", None))
        args = parser.parse_args(argv)
        args._argv = argv
        args._prog = prog
        if args.command is None:
            parser.print_help()
            return 2
        if getattr(args, "_check", None) is not None:  # options that are fine alone but not together
            try:
                args._check(args)
            except UsageError as exc:
                parsers[args.command].error(str(exc))
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
            resolve_where(args)  # parsed once, here; commands pass the Filter down
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
    if choices_map is not None and const is None:
        kwargs["choices"] = list(choices_map)
    parser.add_argument(old, action=Alias, dest=dest, help=argparse.SUPPRESS, **kwargs)


def add_output(parser: argparse.ArgumentParser, help: str, *, required: bool = True) -> None:
    """``-o/--output`` (``--out`` is its older spelling). Both are in one group, so a required output given
    as ``--out`` satisfies the requirement (a required ``-o`` alone would reject it)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("-o", "--output", type=PATH, help=help)
    deprecated_alias(group, "--out", "-o/--output", "output", type=PATH)


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
    parser.add_argument("--where", default=None, metavar="EXPR", type=WHERE,
                        help=f"keep only the {what} matching EXPR, e.g. \"source == 'wflw' and yaw > 30\", "
                             "\"eye_state in ['one_closed', 'both_closed']\", \"yaw is not null\": columns, "
                             "literals, comparisons, and/or/not, in, null tests (docs/guides/filters.md)")


def where_filter(args: argparse.Namespace):
    """The parsed ``--where`` of ``args`` (a :class:`~landmark_unify.manifest.filters.Filter` checked against the
    manifest columns), or None; a bad expression is a FilterError (exit 1 with its message) before anything
    is read or written. The text is parsed once: :func:`resolve_where` (the dispatcher) replaces it by its
    Filter, which this returns as it is."""
    where = getattr(args, "where", None)
    if where is None or not isinstance(where, str):
        return where
    from .manifest.filters import parse_filter
    from .manifest.schema import COLUMN_NAMES

    return parse_filter(where, COLUMN_NAMES)


def resolve_where(args: argparse.Namespace) -> None:
    """Replace the ``--where`` text of ``args`` by its parsed Filter (once, before the command runs)."""
    if isinstance(getattr(args, "where", None), str):
        args.where = where_filter(args)


def add_exclude_options(parser: argparse.ArgumentParser) -> None:
    """``--exclude FILE``, ``--exclude-where EXPR`` and ``--drop-leaks PAIRS``: faces to leave out of a merge
    (:mod:`landmark_unify.ops.exclude`)."""
    parser.add_argument("--exclude", action="append", default=[], metavar="FILE", type=PATH,
                        help="leave out the faces this file lists: an audit output or any Parquet with sample_id "
                             "(every row), a find-duplicates output (the second face of each pair), a CSV with a "
                             "sample_id column or a text list of ids; repeatable. Each dropped id and its reason "
                             "go to OUT.excluded.jsonl")
    parser.add_argument("--exclude-where", default=None, metavar="EXPR", type=WHERE,
                        help="keep only the rows of the --exclude files matching EXPR, on their own columns, e.g. "
                             "\"rank <= 50\" (audit) or \"kind == 'exact'\" (find-duplicates); the --where language")
    parser.add_argument("--drop-leaks", default=None, metavar="PAIRS", type=PATH,
                        help="a find-duplicates output: for each pair marked leak, leave out the side that is not "
                             "test data (the training copy of a test face)")


def exclude_kwargs(args: argparse.Namespace) -> dict:
    """``exclude`` and ``exclusion_meta`` of a merge from :func:`add_exclude_options` (read now, so a bad file
    stops the command before anything runs)."""
    from .ops.exclude import exclusions

    ids, meta = exclusions(args.exclude, args.exclude_where, args.drop_leaks)
    return {"exclude": ids, "exclusion_meta": meta} if meta else {}


def add_engine_options(parser: argparse.ArgumentParser, *, partition_rows: bool = True,
                       single_file: bool = True) -> None:
    """``--engine``, ``--workers``, ``--scheduler`` (and ``--partition-rows``, ``--single-file``): where an
    operation's units run. ``-o`` names a dataset directory, or a single file when it ends in ``.parquet``
    (``single_file=False``: a command whose output is always one file has no ``--single-file``)."""
    from .engines import SCHEDULER_ENV, engine_names
    from .manifest import DEFAULT_ROWS_PER_PARTITION

    g = parser.add_argument_group("engine (docs/guides/scale-out.md)")
    g.add_argument("--engine", choices=engine_names(), default="local",
                   help="local: this process (default); dask: units on a dask.distributed cluster "
                        "(pip install 'landmark-unify[dask]'). -o DIR writes a partitioned dataset (hive layout "
                        "source=/split=), -o FILE.parquet one file, with either engine")
    g.add_argument("--workers", type=WORKERS, default=None,
                   help="local: threads working on units at once (default 2); dask: worker processes of the "
                        "local cluster started for the run (default 1)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS", type=Text("scheduler address"),
                   help=f"dask: use the running cluster at this scheduler address (tcp://host:8786) instead of "
                        f"starting one; default ${SCHEDULER_ENV}")
    if partition_rows:
        g.add_argument("--partition-rows", type=count(10_000_000, unit="faces"), default=DEFAULT_ROWS_PER_PARTITION,
                       metavar="N",
                       help=f"faces per unit (default {DEFAULT_ROWS_PER_PARTITION}); bounds a worker's memory")
    if single_file:
        g.add_argument("--single-file", default=None, metavar="FILE", type=PATH,
                       help="with a dataset output, also write the single-file form here")


def run_options(args: argparse.Namespace, **override):
    """The :class:`~landmark_unify.engines.RunOptions` of a command, from :func:`add_engine_options` and
    :func:`add_quiet` (the engine resolved here, once), with ``override`` fields replaced."""
    from .engines import RunOptions

    fields = {"engine": args.engine, "workers": args.workers, "scheduler": args.scheduler,
              "single_file": getattr(args, "single_file", None), "progress": not getattr(args, "quiet", False)}
    if getattr(args, "partition_rows", None) is not None:
        fields["rows_per_partition"] = args.partition_rows
    fields.update(override)
    return RunOptions(**fields)


def command_line(prog: str, args: argparse.Namespace) -> str:
    """The command line as given (``prog`` and the arguments, shell-quoted), for the metadata."""
    import shlex

    return " ".join([prog, *(shlex.quote(a) for a in getattr(args, "_argv", sys.argv[1:]))])
