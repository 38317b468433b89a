"""Every option of both CLIs is declared once with its type, unit and range (landmark_unify.cli_base), and
the parser refuses what is outside it. The bad-input cases are generated from the declarations: a new
option is covered as soon as it is added to a command, and an option declared without a type fails here.

Classes of bad values (counted in docs/guides/reliability.md): ``nan``, ``inf`` (both signs and an overflow
to infinity), ``negative`` (below a lower bound of 0 or more, or below the bound of a signed range),
``huge`` (above the upper bound, a 400-digit integer, 1e300), ``malformed`` (``1_000``, non-ASCII digits,
hexadecimal, empty), ``choice`` (a value outside ``choices``), ``text`` (empty, NUL) and ``allocation``
(options that are fine alone but allocate too much together).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
from functools import cache
from pathlib import Path

import pytest

from landmark_unify.cli_base import Num, Numbers, OptionType, Pair, Text

REPO = Path(__file__).resolve().parents[1]
#: The largest upper bound a whole-number option may declare: a count beyond it is an unbounded one in
#: practice; a number's range stays within float32 (what the manifest stores).
MAX_BOUND = 2**32
MAX_FLOAT = 3.4028234663852886e38


def _tool():
    spec = importlib.util.spec_from_file_location("cli_options", REPO / "tools" / "cli_options.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Refused(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _Refused(message)


@cache
def _parser(package: str, command: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"{package}.commands.{command.replace('-', '_')}")
    parser = _Parser(prog=f"{package} {command}")
    module.add_arguments(parser)
    return parser


@cache
def _options() -> list[tuple[str, str, argparse.Action]]:
    """(package, command, action) of every option and positional that takes a value, deprecated spellings
    included."""
    out = []
    for package, command in _tool().all_commands():
        for action in _parser(package, command)._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)) or action.nargs == 0:
                continue
            out.append((package, command, action))
    return out


def _name(action: argparse.Action) -> str:
    return action.option_strings[-1] if action.option_strings else action.dest


def _bad_numbers(t: Num) -> list[tuple[str, str]]:
    cases = [("nan", "nan"), ("nan", "NaN"), ("inf", "inf"), ("inf", "-inf"), ("inf", "1e999"),
             ("huge", "9" * 400), ("malformed", "1_000"), ("malformed", "\u0661\u0662"), ("malformed", "0x10"),
             ("malformed", "")]
    if t.low >= 0:
        cases.append(("negative", "-1"))
    else:
        cases.append(("negative", repr(t.low * 2 - 1)))
    if t.low_open or t.low > 0:
        cases.append(("negative", repr(t.low if t.low_open else t.low - (1 if t.kind is int else t.low / 2))))
    above = t.high + 1 if t.kind is int else (t.high if t.high_open else t.high * 2 + 1)
    cases.append(("huge", str(int(above)) if t.kind is int else repr(float(above))))
    if t.kind is int:
        cases.append(("malformed", "1.5"))
    cases.append(("huge", "1e300"))
    return cases


def _bad_values(action: argparse.Action) -> list[tuple[str, str]]:
    t = action.type
    cases: list[tuple[str, str]] = []
    if action.choices is not None and not isinstance(t, Num):
        cases.append(("choice", "no-such-choice"))
    if isinstance(t, Num):
        cases += [(k, v) for k, v in _bad_numbers(t) if v.lower() not in t.none]
        if action.choices is not None:
            cases.append(("choice", str(max(action.choices) + 1)))
    elif isinstance(t, Numbers):
        n = t.counts[0]
        good = [str(t.item.low if not t.item.low_open else t.item.high)] * n
        for kind, bad in _bad_numbers(t.item):
            if bad:
                cases.append((kind, ",".join([bad, *good[1:]])))
        cases.append(("malformed", ",".join(["1"] * (max(t.counts) + 1))))
    elif isinstance(t, Pair):
        for kind, bad in _bad_numbers(t.value):
            cases.append((kind, f"name={bad}"))
        cases.append(("malformed", "=1"))
    elif isinstance(t, OptionType):
        cases += [("text", ""), ("text", "a\0b")]
    return cases


def _cases():
    out = []
    for package, command, action in _options():
        for kind, value in _bad_values(action):
            out.append(pytest.param(package, command, _name(action), kind, value,
                                    id=f"{package}-{command}-{_name(action)}-{kind}-{value[:12]!r}"))
    return out


def test_every_option_is_declared_with_a_type_or_choices():
    undeclared = [f"{p} {c} {_name(a)}" for p, c, a in _options()
                  if a.choices is None and not isinstance(a.type, OptionType)]
    assert undeclared == [], "declare a type (landmark_unify.cli_base: count, number, PATH, ...) or choices"


def test_every_number_is_bounded():
    """No count, size or iteration bound without an upper limit; every range finite."""
    for package, command, action in _options():
        t = action.type
        nums = [t] if isinstance(t, Num) else [t.item] if isinstance(t, Numbers) else \
            [t.value] if isinstance(t, Pair) else []
        for n in nums:
            assert math.isfinite(n.low) and math.isfinite(n.high) and n.low < n.high, (package, command, action)
            bound = MAX_BOUND if n.kind is int else MAX_FLOAT
            assert n.high <= bound and n.low >= -bound, (package, command, _name(action), n.describe())


def test_the_cases_cover_every_class():
    kinds = {c.values[3] for c in _cases()}
    assert kinds >= {"nan", "inf", "negative", "huge", "malformed", "choice", "text"}
    # both CLIs, every command with a value option
    commands = {(c.values[0], c.values[1]) for c in _cases()}
    assert len(commands) >= 16 and {p for p, _ in commands} == {"landmark_unify", "pfpld_train"}


@pytest.mark.parametrize("package, command, option, kind, value", _cases())
def test_the_parser_refuses(package, command, option, kind, value):
    parser = _parser(package, command)
    action = next(a for a in parser._actions if _name(a) == option)
    if action.option_strings:
        argv = [f"{option}={value}" if value.startswith("-") or not value else option, value]
        argv = [argv[0]] if "=" in argv[0] else argv
    else:  # a positional, after valid values for the positionals before it
        before = [a for a in parser._actions if not a.option_strings and a.nargs != 0]
        argv = ["--", *["x"] * before.index(action), value]
    with pytest.raises(_Refused) as got:
        parser.parse_known_args(argv)
    message = str(got.value)
    assert f"argument {'/'.join(action.option_strings) or action.metavar or action.dest}" in message \
        or any(s in message for s in action.option_strings) or action.dest in message, message
    assert ("expected" in message) or ("invalid choice" in message), message


@pytest.mark.parametrize("package, command, option", [(p, c, _name(a)) for p, c, a in _options()
                                                       if isinstance(a.type, Num)])
def test_the_bounds_and_the_default_are_accepted(package, command, option):
    action = next(a for a in _parser(package, command)._actions if _name(a) == option)
    t = action.type
    for v in (t.low, t.high):
        if (v == t.low and t.low_open) or (v == t.high and t.high_open):
            continue
        text = str(int(v)) if t.kind is int else repr(float(v))
        assert t(text) == v
    if action.default is not None and not isinstance(action.default, list):
        assert t(str(action.default)) == action.default
    assert "(" not in t.describe() or t.unit  # the description names the unit it declares


# --- sizes checked against the allocation they imply ------------------------------------------------------

def test_render_refuses_a_sheet_too_large_to_allocate(tmp_path, capsys):
    from landmark_unify.cli import main

    out = tmp_path / "s.png"
    with pytest.raises(SystemExit) as got:
        main(["render", str(tmp_path / "m.parquet"), "-o", str(out), "--size", "100000"])
    assert got.value.code == 2 and "--size" in capsys.readouterr().err
    with pytest.raises(SystemExit) as got:  # each fine alone, too much together
        main(["render", str(tmp_path / "m.parquet"), "-o", str(out), "--n", "10000", "--size", "2048"])
    err = capsys.readouterr().err
    assert got.value.code == 2 and "sheet of" in err and "at most" in err
    with pytest.raises(SystemExit):
        main(["render", str(tmp_path / "m.parquet"), "-o", str(out), "--n", "400", "--size", "2048", "--cols", "400"])
    assert "a side may be at most" in capsys.readouterr().err
    assert not out.exists()


def test_cache_refuses_a_window_size_and_a_cache_the_disk_cannot_hold(shared_data, tmp_path, monkeypatch, capsys):
    from collections import namedtuple

    import landmark_unify as lu
    from landmark_unify.ops.build import build_manifest
    from pfpld_train.cli import main
    from pfpld_train.data import cache as cache_mod

    with pytest.raises(SystemExit) as got:
        main(["cache", str(tmp_path / "m.parquet"), "-o", str(tmp_path / "c"), "--size", "100000"])
    assert got.value.code == 2 and "--size" in capsys.readouterr().err
    m = tmp_path / "m.parquet"
    build_manifest([f"aflw2000={shared_data / 'AFLW2000'}"], m, progress=False)
    n = len(lu.read_manifest(m))
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 1000, 1000))
    assert main(["cache", str(m), "-o", str(tmp_path / "c"), "--size", "1024", "-q"]) == 1
    err = capsys.readouterr().err
    assert f"{n} faces at 1024x1024 RGB need" in err and "GiB free" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.parquet"]  # no sparse file, no folder


def test_a_400_digit_integer_in_where_is_a_message_not_a_traceback(tmp_path, capsys):
    from landmark_unify.cli import main

    for text in ("yaw > " + "9" * 400, "yaw > 1e400", "yaw in [1, -" + "9" * 40 + "]"):
        assert main(["render", str(tmp_path / "nope.parquet"), "-o", str(tmp_path / "s.png"), "--where", text]) == 1
        err = capsys.readouterr().err
        assert "number out of range" in err and "Traceback" not in err


def test_where_is_parsed_once_and_passed_down_as_a_filter(monkeypatch, tmp_path):
    """The dispatcher parses --where; the command receives the Filter (the operations never see text)."""
    from landmark_unify import cli_base
    from landmark_unify.cli import main
    from landmark_unify.manifest import filters

    calls = []
    real = filters.parse_filter
    monkeypatch.setattr(filters, "parse_filter", lambda *a, **k: calls.append(a) or real(*a, **k))
    seen = {}
    import landmark_unify.commands.export as export_cmd

    monkeypatch.setattr(export_cmd, "run", lambda args: seen.setdefault("where", args.where) and 0)
    assert main(["export", str(tmp_path / "m.parquet"), "-o", str(tmp_path / "x.json"), "--where", "yaw > 3"]) == 0
    assert isinstance(seen["where"], filters.Filter) and seen["where"].text == "yaw > 3"
    assert len(calls) == 1
    assert cli_base.where_filter(argparse.Namespace(where=seen["where"])) is seen["where"]


def test_option_types_describe_themselves_in_help(capsys):
    from pfpld_train.cli import main

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "a whole number >= 0 and <= 10 (passes)" in out  # --refine
    assert "a number >= 0 and <= 1 (score)" in out  # --detector-threshold


def test_text_types_refuse_nul_and_keep_paths():
    from landmark_unify.cli_base import PATH, PATH_OBJ

    assert PATH("a b/c.jpg") == "a b/c.jpg" and PATH_OBJ("x/y") == Path("x/y")
    for bad in ("", "  ", "a\0b", "x" * 5000):
        with pytest.raises(argparse.ArgumentTypeError):
            Text("path")(bad)
