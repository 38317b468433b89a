"""Checkpoint loading, ONNX export and numerical parity checks for the PFPLD network.

- :func:`load_checkpoint`: a trainer checkpoint (``torch.load(..., weights_only=True)``: a dict with a
  ``model`` state_dict, or a bare state_dict) -> :class:`pfpld_train.models.pfpld.PFPLD` in eval mode. Wrong keys or
  shapes raise :class:`ExportError` listing them.
- :func:`export_onnx`: TorchScript-based export (batch norms folded by constant folding), ``onnx.checker``,
  ``onnxslim`` simplification, dynamic batch axis, outputs ``pose`` and ``landmarks``, preprocessing stored
  in the model's metadata (``pfpld_train.preprocess``).
- :func:`read_preprocess`: the preprocessing stored in an exported model.

The parity runners (PyTorch, onnxruntime, OpenCV dnn) are in :mod:`pfpld_train.export.parity`.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

from landmark_unify.io import write_bytes_atomic

from ...models.checkpoint import CheckpointError, checkpoint_pose_trained, pfpld_weights
from ...models.metadata import (
    INPUT_NAME,
    METADATA_OUTPUTS,
    METADATA_POSE_TRAINED,
    METADATA_PREPROCESS,
    OUTPUT_DOC,
    OUTPUT_NAMES,
    UNTRAINED_POSE_DOC,
)
from ..errors import ExportError
from ..faces import PFPLD_PREPROCESS, Preprocess

__all__ = [
    "OUTPUT_NAMES",
    "INPUT_NAME",
    "METADATA_OUTPUTS",
    "METADATA_PREPROCESS",
    "load_checkpoint",
    "export_onnx",
    "read_preprocess",
]



def load_checkpoint(path: str | Path, key: str | None = None):
    """Load a trainer checkpoint into a fresh :class:`~pfpld_train.models.pfpld.PFPLD` (eval mode).

    Args:
        path: torch file, read with ``weights_only=True``: a dict holding the state_dict under ``key``
            (default: ``model``, ``state_dict``, ``plfd_backbone``) or a bare state_dict; ``module.``
            prefixes are stripped (:func:`pfpld_train.models.checkpoint.pfpld_weights`).
        key: entry of the checkpoint dict holding the state_dict.

    Returns:
        ``(model, info)``; ``info`` says which entry was used and how many tensors were loaded.

    Raises:
        ExportError: unreadable file, no state_dict, missing/unexpected keys, shape mismatches or
            non-finite weights (each named).
    """
    from ...models.pfpld import build_model

    try:
        sd, entry = pfpld_weights(path, key)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    model = build_model()
    model.load_state_dict(sd, strict=True)
    model.eval()
    model.pose_trained = checkpoint_pose_trained(path)
    return model, {"checkpoint": str(path), "entry": entry, "tensors": len(sd), "pose_trained": model.pose_trained}


def export_onnx(model, path: str | Path, *, opset: int = 17, dynamic_batch: bool = True,
                simplify: bool = True, preprocess=PFPLD_PREPROCESS) -> dict:
    """Export ``model`` (``forward(x) -> (pose, landmarks)``) to ONNX and check it.

    Returns a report: checker result, operator counts before/after simplification, input/output names and
    shapes. Raises :class:`ExportError` when the checker fails or the outputs are not ``pose, landmarks``.
    """
    import onnx
    import torch

    path = Path(path)
    model = model.eval()
    x = torch.zeros(1, 3, 112, 112)
    axes = {INPUT_NAME: {0: "batch"}, **{o: {0: "batch"} for o in OUTPUT_NAMES}} if dynamic_batch else None
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = Path(tmp) / "raw.onnx"
        try:
            torch.onnx.export(model, (x,), str(raw), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                              dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"torch.onnx.export failed: {exc}") from exc
        proto = onnx.load(str(raw))
    ops_before = _op_counts(proto)
    if simplify:
        import onnxslim

        proto = onnxslim.slim(proto)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{path}: onnx.checker rejected the exported model: {exc}") from exc
    outs = [o.name for o in proto.graph.output]
    if tuple(outs) != OUTPUT_NAMES:
        raise ExportError(f"exported outputs are {outs}, expected {list(OUTPUT_NAMES)}")
    pose_trained = bool(getattr(model, "pose_trained", True))
    docs = OUTPUT_DOC if pose_trained else {**OUTPUT_DOC, "pose": UNTRAINED_POSE_DOC}
    meta = {METADATA_PREPROCESS: json.dumps(preprocess.as_dict()), METADATA_OUTPUTS: json.dumps(docs),
            METADATA_POSE_TRAINED: "true" if pose_trained else "false"}
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    proto.producer_name = "pfpld_train"
    write_bytes_atomic(proto.SerializeToString(), path)
    return {
        "path": str(path),
        "opset": opset,
        "checker": "passed (full_check)",
        "simplified": bool(simplify),
        "ops_before": ops_before,
        "ops": _op_counts(proto),
        "dynamic_batch": bool(dynamic_batch),
        "input": {INPUT_NAME: _shape_str(proto.graph.input[0])},
        "outputs": {o.name: _shape_str(o) for o in proto.graph.output},
        "pose_trained": pose_trained,
    }


def _op_counts(proto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in proto.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def _shape_str(vi) -> list:
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def read_preprocess(path: str | Path):
    """The :class:`Preprocess` stored in an ONNX file by :func:`export_onnx`, or None."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for p in proto.metadata_props:
        if p.key == METADATA_PREPROCESS:
            d = json.loads(p.value)
            return Preprocess(d["color"], float(d["mean"]), float(d["scale"]))
    return None
