"""Fixtures of the export tests: a checkpoint with trained-like weights."""

from __future__ import annotations

import pytest
import torch
from pfpld_support import trained_like_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"model": trained_like_model().state_dict(), "epoch": 3}, path)
    return path
