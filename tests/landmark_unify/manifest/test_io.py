"""Atomic writes (landmark_unify.io): the usual file mode, nothing left behind on failure; and every writer
of the package uses them (manifest, skipped sidecar, contact sheet, report)."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from landmark_unify.cli import main
from landmark_unify.io import atomic_path, write_jsonl_atomic, write_png_atomic, write_text_atomic


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_get_the_umask_mode_not_0600(tmp_path, umask_027):
    assert _mode(write_text_atomic("a\n", tmp_path / "a" / "t.txt")) == umask_027
    p = write_jsonl_atomic([{"b": 1, "a": 2}], tmp_path / "r.jsonl")
    assert p.read_text() == '{"a": 2, "b": 1}\n' and _mode(p) == umask_027
    assert _mode(write_png_atomic(np.zeros((4, 5, 3), np.uint8), tmp_path / "i.png")) == umask_027


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = write_text_atomic("old\n", tmp_path / "t.txt")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp, open(tmp, "w") as f:
            f.write("new, half written")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n" and sorted(tmp_path.iterdir()) == [target]


def test_command_outputs_are_readable_by_others(repo_root, tmp_path, capsys, umask_027):
    demo = repo_root / "landmark_unify/demo_data"
    bad = tmp_path / "coco"
    bad.mkdir()
    (bad / "x.json").write_text('{"images": [')  # unreadable: goes to the skipped sidecar
    m = tmp_path / "m.parquet"
    assert main(["build-manifest", "-o", str(m), "--source", f"coco={demo / 'mmpose/wflw'}", "--source",
                 f"bad:coco={bad}", "--on-error", "skip", "--no-progress"]) == 0
    assert main(["render", str(m), "-o", str(tmp_path / "s.png")]) == 0
    assert main(["report", str(m), "-o", str(tmp_path / "rep")]) == 0
    capsys.readouterr()
    written = [m, tmp_path / "m.skipped.jsonl", tmp_path / "s.png", *sorted((tmp_path / "rep").iterdir())]
    assert len(written) > 5
    assert {p.name: _mode(p) for p in written} == {p.name: umask_027 for p in written}
