"""docs/guides/cli.md lists every option of every command of both CLIs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("cli_options", REPO / "tools" / "cli_options.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_option_is_documented():
    tool = _tool()
    page = (REPO / "docs" / "guides" / "cli.md").read_text(encoding="utf-8")
    missing = []
    for package, command in tool.all_commands():
        assert f"### `{package} {command}`" in page, f"{package} {command} has no section"
        section = page.split(f"### `{package} {command}`", 1)[1].split("\n### ", 1)[0]
        for name, _ in tool.command_options(package, command):
            if f"`{name}`" not in section:
                missing.append(f"{package} {command}: {name}")
    assert missing == [], "run: python tools/cli_options.py, and update docs/guides/cli.md"


def test_no_option_name_has_two_meanings_across_commands():
    """Options that share a name share one help text prefix of meaning (spot check of the known ones)."""
    tool = _tool()
    seen: dict[str, set[str]] = {}
    for package, command in tool.all_commands():
        for name, _ in tool.command_options(package, command):
            seen.setdefault(name, set()).add(f"{package} {command}")
    assert "`--threshold`" not in seen and "--threshold" not in seen
    assert seen["-o, --output"] >= {"landmark_unify build-manifest", "pfpld_train fit", "pfpld_train evaluate"}
