"""The package surface: every lazily exported name resolves, and the console scripts answer."""
from __future__ import annotations

import subprocess
import sys

import landmark_unify as lu


def test_every_public_name_resolves():
    for name in lu.__all__:
        assert getattr(lu, name) is not None, name


def test_console_scripts_list_their_commands():
    from landmark_unify.cli import COMMANDS as LU
    from pfpld_train.cli import COMMANDS as PT

    for module, commands in (("landmark_unify.cli", LU), ("pfpld_train.cli", PT)):
        out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True).stdout
        assert all(c in out for c in commands), out


def test_every_command_module_exists():
    import importlib

    from landmark_unify.cli import COMMANDS as LU
    from pfpld_train.cli import COMMANDS as PT

    for package, commands in (("landmark_unify", LU), ("pfpld_train", PT)):
        for name in commands:
            module = importlib.import_module(f"{package}.commands.{name.replace('-', '_')}")
            assert callable(module.add_arguments) and callable(module.run), name
