"""The PFPLD network: published checkpoint key layout, parameter count, output shapes."""

from __future__ import annotations

import pytest
import torch
from pfpld_support import single_thread  # noqa: F401 (autouse: one torch/OpenCV thread)

from pfpld_train.models.pfpld import NUM_PARAMETERS, PFPLD, count_parameters, pose_to_degrees


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.weight": (c,),
        f"{prefix}.bias": (c,),
        f"{prefix}.running_mean": (c,),
        f"{prefix}.running_var": (c,),
        f"{prefix}.num_batches_tracked": (),
    }


def _ir(name: str, inp: int, oup: int, expand: int) -> dict[str, tuple[int, ...]]:
    h = inp * expand
    keys = {f"{name}.conv.0.weight": (h, inp, 1, 1)}
    keys |= _bn(f"{name}.conv.1", h)
    keys[f"{name}.conv.3.weight"] = (h, 1, 3, 3)
    keys |= _bn(f"{name}.conv.4", h)
    keys[f"{name}.conv.6.weight"] = (oup, h, 1, 1)
    keys |= _bn(f"{name}.conv.7", oup)
    return keys


def _conv_bn(name: str, inp: int, oup: int, k: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.0.weight": (oup, inp, k, k)} | _bn(f"{name}.1", oup)


def _linear(name: str, inp: int, oup: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (oup, inp), f"{name}.bias": (oup,)}


def published_layout() -> dict[str, tuple[int, ...]]:
    """Key -> shape of a published PFPLD (``PFLDInference``) checkpoint, written from the spec."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 3, 3)}
    keys |= _bn("bn1", 64)
    keys["conv2.weight"] = (64, 64, 3, 3)
    keys |= _bn("bn2", 64)
    keys |= _ir("conv3_1", 64, 64, 2)
    for i in range(2, 6):
        keys |= _ir(f"block3_{i}", 64, 64, 2)
    keys |= _ir("conv4_1", 64, 128, 2)
    keys |= _ir("conv5_1", 128, 128, 4)
    for i in range(2, 7):
        keys |= _ir(f"block5_{i}", 128, 128, 4)
    keys |= _ir("conv6_1", 128, 16, 2)
    keys |= _conv_bn("conv7", 16, 32, 3)
    keys |= {"conv8.weight": (128, 32, 7, 7), "conv8.bias": (128,)}
    keys |= _bn("bn8", 128)
    keys |= _linear("fc", 176, 196)
    keys |= _linear("fc_aux", 176, 3)
    keys |= _conv_bn("conv1_aux", 64, 128, 3)
    keys |= _conv_bn("conv2_aux", 128, 128, 3)
    keys |= _conv_bn("conv3_aux", 128, 32, 3)
    keys |= _conv_bn("conv4_aux", 32, 128, 7)
    keys |= _linear("fc1_aux", 128, 32)
    keys |= _linear("fc2_aux", 208, 3)
    return keys


def test_state_dict_matches_published_layout_and_loads_strictly():
    layout = published_layout()
    model = PFPLD()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == layout
    # A checkpoint with exactly those keys and shapes (other values) loads strictly and is used.
    g = torch.Generator().manual_seed(0)
    foreign = {
        k: (torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g).abs() + 0.1)
        for k, s in layout.items()
    }
    result = model.load_state_dict(foreign, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.state_dict()["fc2_aux.weight"], foreign["fc2_aux.weight"])


def test_state_dict_with_a_missing_key_fails_strict_load():
    layout = published_layout()
    sd = PFPLD().state_dict()
    del sd["fc_aux.weight"]
    assert len(sd) == len(layout) - 1
    with pytest.raises(RuntimeError, match="fc_aux.weight"):
        PFPLD().load_state_dict(sd, strict=True)


def test_parameter_count():
    model = PFPLD()
    assert count_parameters(model) == NUM_PARAMETERS == 1_729_674
    layout = published_layout()
    n = sum(
        int(torch.tensor(s).prod()) if s else 1
        for k, s in layout.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert n == NUM_PARAMETERS


def test_forward_shapes_and_unused_modules():
    torch.manual_seed(0)
    model = PFPLD().eval()
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        pose, lm = model(x)
        assert pose.shape == (2, 3) and lm.shape == (2, 196)
        assert pose.dtype == torch.float32 and lm.dtype == torch.float32
        # bn8 and fc_aux do not take part in the forward pass.
        model.bn8.weight.fill_(123.0)
        model.fc_aux.weight.fill_(-5.0)
        pose2, lm2 = model(x)
    assert torch.equal(pose, pose2) and torch.equal(lm, lm2)
    assert torch.allclose(pose_to_degrees(torch.tensor([3.141592653589793])), torch.tensor([180.0]))


def test_gradients_reach_both_heads():
    model = PFPLD().train()
    pose, lm = model(torch.rand(2, 3, 112, 112))
    (pose.sum() + lm.sum()).backward()
    assert model.fc.weight.grad is not None and model.fc2_aux.weight.grad is not None
    assert model.conv1.weight.grad.abs().sum() > 0
    assert model.fc_aux.weight.grad is None and model.bn8.weight.grad is None


def test_public_names_are_exported_lazily():
    import importlib
    import subprocess
    import sys

    import pfpld_train

    code = "import sys, pfpld_train; print(sorted(m for m in ('torch', 'cv2', 'onnx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # importing the package loads no heavy dependency
    for name, module in pfpld_train._EXPORTS.items():
        assert getattr(pfpld_train, name) is getattr(importlib.import_module(f"pfpld_train.{module}"), name)
    assert set(pfpld_train.__all__) >= {"PFPLD", "fit", "TrainConfig", "evaluate_manifest", "export_caffe"}
    with pytest.raises(AttributeError):
        pfpld_train.no_such_name  # noqa: B018


def test_one_checked_loader_for_training_evaluation_and_export(tmp_path):
    """evaluate/predict (load_pfpld) and export (load_checkpoint) read weights through the same checks."""
    from pfpld_train.export.errors import ExportError
    from pfpld_train.export.onnx.export import load_checkpoint
    from pfpld_train.models.checkpoint import CheckpointError, load_pfpld

    sd = PFPLD().state_dict()
    torch.save({"state_dict": {**sd, "fc.weight": torch.zeros(10, 176)}}, tmp_path / "bad.pt")
    for load, error in ((load_pfpld, CheckpointError), (load_checkpoint, ExportError)):
        with pytest.raises(error, match=r"entry 'state_dict'.*1 shape mismatch.*fc\.weight"):
            load(tmp_path / "bad.pt")
    torch.save({"plfd_backbone": {f"module.{k}": v for k, v in sd.items() if "num_batches" not in k}},
               tmp_path / "published.pt")
    assert isinstance(load_pfpld(tmp_path / "published.pt"), PFPLD)


@pytest.mark.parametrize("fmt, says", [("pfpld_train.checkpoint/9", "newer"),
                                       ("pfpld_train.checkpoint/x", "is not pfpld_train.checkpoint/<version>")])
def test_a_checkpoint_of_a_later_format_is_refused_by_every_loader(tmp_path, fmt, says):
    from pfpld_train.export.errors import ExportError
    from pfpld_train.export.onnx.export import load_checkpoint
    from pfpld_train.models.checkpoint import CheckpointError, load_pfpld

    torch.save({"format": fmt, "model": PFPLD().state_dict()}, tmp_path / "later.pt")
    for load, error in ((load_pfpld, CheckpointError), (load_checkpoint, ExportError)):
        with pytest.raises(error, match=says):
            load(tmp_path / "later.pt")
    torch.save({"format": "pfpld_train.checkpoint/1", "model": PFPLD().state_dict()}, tmp_path / "now.pt")
    assert isinstance(load_pfpld(tmp_path / "now.pt"), PFPLD)
