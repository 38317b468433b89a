"""The NNIE compatibility check: unsupported layers are reported, never exported."""

from __future__ import annotations

import onnx
import pytest
import torch
from pfpld_support import run_cli, single_thread, to_onnx, wflw_lists  # noqa: F401 (autouse: one torch/OpenCV thread)

from pfpld_train.commands import export as cmd
from pfpld_train.export.caffe.convert import onnx_to_caffe
from pfpld_train.export.nnie.check import check_nnie


class _Unsupported(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 17, padding=8)  # kernel above NNIE's limit
        self.act = torch.nn.GELU()
        self.prelu = torch.nn.PReLU(8)
        self.up = torch.nn.Upsample(scale_factor=2)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(8 * 28 * 28, 196)

    def forward(self, x):
        y = self.prelu(self.act(self.conv(x)))
        y = self.pool(self.pool(self.up(y)))
        return self.fc(torch.flatten(self.pool(y), 1))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_unsupported_layers_are_reported_not_exported(tmp_path, shared_data, capsys):
    path = tmp_path / "bad.onnx"
    to_onnx(_Unsupported(), path)
    issues = check_nnie(onnx_to_caffe(onnx.load(str(path))))
    rules = {i.rule for i in issues if i.severity == "error"}
    assert {"conv-kernel", "unsupported-op"} <= rules
    text = "\n".join(map(str, issues))
    assert "GELU" in text or "Erf" in text
    assert "PReLU" in text and "Upsample" in text
    out = tmp_path / "pkg"
    rc = run_cli(cmd, [str(path), "--format", "nnie", "-o", str(out), "--calib", str(wflw_lists(shared_data)),
                        "--calib-count", "2"])
    assert rc == 1
    report = capsys.readouterr().err  # every finding in the message; a failed export writes nothing
    assert "conv-kernel" in report and "17x17" in report and "unsupported-op" in report
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".pkg.")]
