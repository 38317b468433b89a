"""Row filters: the language does what it says, and no expression can run code (every command that selects rows)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from landmark_unify.cli import main
from landmark_unify.manifest.filters import FilterError, evaluate, filter_rows, parse_filter
from landmark_unify.ops.build import build_manifest

DEMO = Path(__file__).resolve().parents[3] / "landmark_unify" / "demo_data"


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "source": ["wflw", "lapa", None, "wflw"],
        "yaw": pd.array([40.0, np.nan, -10.0, 5.0], dtype="float32"),
        "eye_state": ["open", "both_closed", None, "one_closed"],
        "attr_blur": pd.array([True, None, False, False], dtype="boolean"),
        "image_width": pd.array([1, None, 3, 4], dtype="Int32"),
        "landmarks": [np.zeros((98, 2), np.float32)] * 4,
    })


@pytest.mark.parametrize("expr, rows", [
    ("source == 'wflw' and yaw > 30", [0]),
    ("source == 'wflw' or yaw < 0", [0, 2, 3]),
    ("eye_state == 'both_closed'", [1]),
    ("eye_state in ['one_closed', 'both_closed']", [1, 3]),
    ("eye_state not in ('open',)", [1, 2, 3]),
    ("yaw is null", [1]),
    ("yaw is not null and yaw >= 5", [0, 3]),
    ("isnull(source)", [2]),
    ("notnull(source)", [0, 1, 3]),
    ("source == null", [2]),
    ("source != None", [0, 1, 3]),
    ("-20 < yaw <= 5", [2, 3]),
    ("attr_blur", [0]),
    ("not attr_blur", [1, 2, 3]),
    ("attr_blur == false", [2, 3]),
    ("(yaw > 0) & (source == 'wflw')", [0, 3]),
    ("~(yaw > 0) | (image_width == 3)", [1, 2]),
    ("image_width > 2", [2, 3]),
    ("yaw > 30 and true", [0]),
    ("source in ['wflw', null]", [0, 2, 3]),
])
def test_the_language_selects_the_right_rows(expr, rows):
    assert np.flatnonzero(evaluate(expr, _frame())).tolist() == rows


def test_filter_rows_keeps_attrs_and_none_keeps_all():
    df = _frame()
    df.attrs["path"] = "x"
    assert filter_rows(df, None) is df
    got = filter_rows(df, "source == 'lapa'")
    assert len(got) == 1 and got.attrs["path"] == "x"


#: known escapes from pandas query / eval; each must be refused at parse time
ESCAPES = [
    "@df.__class__.__init__.__globals__['os'].system('touch {s}')",
    "source.__class__.__init__.__globals__['os'].system('touch {s}')",
    "__import__('os').system('touch {s}')",
    "source.str.len() > 0",
    "source[0] == 'w'",
    "(lambda: __import__('os').system('touch {s}'))()",
    "[__import__('os').system('touch {s}') for _ in [1]]",
    "f\"{{__import__('os').system('touch {s}')}}\"",
    "(x := __import__('os'))",
    "[*source]",
    "__builtins__ == 1",
    "yaw.__class__ == 1",
    "open('{s}', 'w')",
    "exec('import os')",
    "{{'a': 1}} == 1",
    "yaw + 1 > 2",
    "yaw if yaw else 1",
    "b'x' == source",
    "().__class__.__base__.__subclasses__()",
    "source == 'a'; import os",
    "import os",
    "isnull(__import__('os'))",
    "getattr(source, '__class__')",
]


@pytest.mark.parametrize("escape", ESCAPES)
def test_escapes_are_refused_before_anything_runs(escape, tmp_path):
    sentinel = tmp_path / "pwned"
    with pytest.raises(FilterError, match="bad filter|empty"):
        parse_filter(escape.format(s=sentinel), ["source", "yaw"])
    with pytest.raises(FilterError):
        evaluate(escape.format(s=sentinel), _frame())
    assert not sentinel.exists()


@pytest.mark.parametrize("expr, message", [
    ("source == 3", "holds text"),
    ("yaw == 'x'", "holds numbers"),
    ("landmarks == 1", "array"),
    ("nope == 1", "not a column"),
    ("yaw", "not true/false"),
    ("yaw > null", "is null"),
    ("attr_blur > true", "true/false"),
    ("", "empty"),
    ("yaw ===", "syntax"),
])
def test_misfits_are_clear_errors(expr, message):
    with pytest.raises(FilterError, match=message):
        evaluate(expr, _frame())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("filters") / "demo.parquet"
    build_manifest([f"ibug={DEMO / '300W'}", f"coco={DEMO / 'mmpose' / 'wflw'}"], out, progress=False)
    return out


@pytest.mark.parametrize("command", ["render", "report", "mine-closed-eyes"])
@pytest.mark.parametrize("escape", ESCAPES[:12])
def test_no_command_runs_code_from_its_filter(demo, tmp_path, capsys, command, escape):
    sentinel = tmp_path / "pwned"
    out = tmp_path / ("out.png" if command == "render" else "out.parquet" if command == "mine-closed-eyes" else "rep")
    code = main([command, str(demo), "-o", str(out), "--where", escape.format(s=sentinel)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{command}: error: bad filter" in err and "Traceback" not in err
    assert not sentinel.exists() and not out.exists()


def test_commands_filter_rows(demo, tmp_path, capsys):
    assert main(["render", str(demo), "-o", str(tmp_path / "s.png"), "--where", "source == 'coco'", "--n", "2"]) == 0
    assert main(["report", str(demo), "-o", str(tmp_path / "rep"), "--where", "source == 'ibug'"]) == 0
    assert (tmp_path / "rep" / "index.html").exists()
    assert main(["mine-closed-eyes", str(demo), "-o", str(tmp_path / "m.parquet"), "--threshold", "10",
                 "--where", "source == 'coco'"]) == 0
    got = pd.read_parquet(tmp_path / "m.parquet", columns=["source"])
    assert len(got) and set(got["source"]) == {"coco"}


TOKENS = ["source", "yaw", "eye_state", "attr_blur", "__class__", "__globals__", "__import__", "os", "system", "open",
          "eval", "exec", ".", "(", ")", "[", "]", "{", "}", "'wflw'", "'x'", "\"touch SENTINEL\"", "@", "lambda", ":",
          ",", "==", "<", "and", "or", "not", "in", "is", "null", "1", "-2.5", "f'", "*", "**", ":=", "import", ";",
          "if", "else", "for", "+", "~", "&", "|", "isnull", "\\", "\n", "#"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12))
def test_no_generated_expression_runs_code_or_fails_otherwise(tmp_path_factory, tokens):
    """Random token soup: a FilterError or a boolean mask; never another exception, never a side effect."""
    folder = tmp_path_factory.mktemp("fuzz")
    text = " ".join(tokens).replace("SENTINEL", str(folder / "pwned"))
    try:
        mask = evaluate(text, _frame())
    except FilterError:
        pass
    else:
        assert mask.dtype == bool and mask.shape == (4,)
    assert not (folder / "pwned").exists()
