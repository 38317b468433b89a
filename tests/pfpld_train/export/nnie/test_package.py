"""The NNIE package: the calibration count is checked before any work."""

from __future__ import annotations

import pytest
from pfpld_support import run_cli, single_thread, wflw_lists  # noqa: F401 (autouse: one torch/OpenCV thread)

from pfpld_train.commands import export as cmd


def test_nnie_calibration_count_is_checked_before_any_work(checkpoint, shared_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as got:  # the option's declared range: the mapper's [batch_num] limit
        run_cli(cmd, [str(checkpoint), "--format", "nnie", "-o", str(tmp_path / "n"), "--calib",
                      str(wflw_lists(shared_data)), "--calib-count", "300"])
    assert got.value.code == 2 and "<= 256" in capsys.readouterr().err
    assert not (tmp_path / "n" / "pfpld.onnx").exists()
