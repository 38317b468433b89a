"""Write a Caffe model (``.prototxt`` + ``.caffemodel``) from an ONNX file, and compare prototxts.

:func:`export_caffe` converts with :func:`~pfpld_train.export.caffe.convert.onnx_to_caffe`, refuses (with
every problem listed) when anything cannot be converted exactly, writes both files atomically, and re-reads
the ``.caffemodel`` to check that it parses back into the same net. :func:`compare_prototxt` lines up the
layers of two prototxts (e.g. ours and the reference ``pfpld.prototxt``) and lists what differs.

Caffe files have no metadata fields, so what the ONNX exporter records about the outputs (their meaning, and
whether the pose branch was trained at all) is carried into the ``.prototxt`` as comment lines at its top
and into the report.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path

from landmark_unify.io import write_bytes_atomic

from ...models.metadata import METADATA_OUTPUTS, METADATA_POSE_TRAINED
from ..errors import ExportError
from .convert import format_issues, onnx_to_caffe
from .proto import caffe_messages, net_to_prototxt

__all__ = ["export_caffe", "compare_prototxt", "read_prototxt"]


def export_caffe(onnx_path: str | Path, out_dir: str | Path, stem: str = "pfpld") -> dict:
    """ONNX file -> ``out_dir/stem.prototxt`` and ``out_dir/stem.caffemodel``.

    Returns a report (layer counts, outputs, warnings, file paths). Raises :class:`ExportError` listing
    every conversion error when the model cannot be expressed exactly in Caffe 1.0 layers.
    """
    import onnx

    out_dir = Path(out_dir)
    proto = onnx.load(str(onnx_path))
    conv = onnx_to_caffe(proto, net_name=stem)
    if conv.errors:
        raise ExportError(f"{onnx_path}: cannot be written as a Caffe 1.0 model:\n" + format_issues(conv.issues, brief=True))
    notes = output_notes(proto)
    prototxt, caffemodel = out_dir / f"{stem}.prototxt", out_dir / f"{stem}.caffemodel"
    header = "".join(f"# {line}\n" for line in notes["lines"])
    write_bytes_atomic((header + net_to_prototxt(conv.net)).encode(), prototxt)
    data = conv.net.SerializeToString()
    write_bytes_atomic(data, caffemodel)
    back = caffe_messages().NetParameter.FromString(caffemodel.read_bytes())
    if back != conv.net:
        raise ExportError(f"{caffemodel}: re-read model differs from the one written")
    n_params = sum(len(b.data) for layer in conv.net.layer for b in layer.blobs)
    return {
        "prototxt": str(prototxt),
        "caffemodel": str(caffemodel),
        "caffemodel_bytes": len(data),
        "parameters": n_params,
        "layers": len(conv.net.layer),
        "layer_counts": conv.layer_counts(),
        "input": {conv.input_name: list(conv.input_shape)},
        "outputs": conv.outputs,
        "output_docs": notes["docs"],
        "pose_trained": notes["pose_trained"],
        "batchnorm": "folded into the preceding convolutions",
        "_conversion": conv,
    }


def output_notes(proto) -> dict:
    """What an ONNX model's metadata says of its outputs: ``docs`` (name -> meaning, from our exporter's
    :data:`~pfpld_train.models.metadata.METADATA_OUTPUTS`), ``pose_trained`` (False only when our exporter
    recorded an untrained pose branch) and the comment ``lines`` written at the top of the prototxt."""
    meta = {p.key: p.value for p in proto.metadata_props}
    try:
        docs = json.loads(meta.get(METADATA_OUTPUTS, "{}"))
    except ValueError:
        docs = {}
    docs = docs if isinstance(docs, dict) else {}
    pose_trained = str(meta.get(METADATA_POSE_TRAINED, "true")).lower() != "false"
    lines = [f"output {name}: {doc}" for name, doc in docs.items()]
    if not pose_trained:
        lines.insert(0, "WARNING: the pose output is UNTRAINED (no training face had a pose); it is not a head pose")
    return {"docs": docs, "pose_trained": pose_trained, "lines": lines}


def read_prototxt(path: str | Path):
    """Parse a Caffe prototxt into this project's ``NetParameter`` (fields outside the subset ignored)."""
    from google.protobuf import text_format

    net = caffe_messages().NetParameter()
    try:
        text_format.Parse(Path(path).read_text(), net, allow_unknown_field=True)
    except text_format.ParseError as exc:
        raise ExportError(f"{path}: not a Caffe prototxt: {exc}") from exc
    return net


def _signature(layer) -> tuple:
    t = layer.type
    if t == "Convolution":
        p = layer.convolution_param
        kh = p.kernel_h or (p.kernel_size[0] if p.kernel_size else 0)
        sh = p.stride_h or (p.stride[0] if p.stride else 1)
        ph = p.pad_h or (p.pad[0] if p.pad else 0)
        return (t, p.num_output, kh, sh, ph, p.group)
    if t == "Pooling":
        p = layer.pooling_param
        return (t, "MAX" if p.pool == 0 else "AVE", p.kernel_h or p.kernel_size, p.stride_h or p.stride)
    if t == "InnerProduct":
        return (t, layer.inner_product_param.num_output)
    if t in ("Concat", "Eltwise"):
        return (t, len(layer.bottom))
    return (t,)


def _graph_hashes(layers) -> dict[str, str]:
    """Per top blob: a hash of its layer's signature and, recursively, of its inputs (name-free)."""
    h: dict[str, str] = {}
    for layer in layers:  # prototxt order is topological
        ins = [h.get(b, "?") for b in layer.bottom]
        if layer.type == "Eltwise":
            ins = sorted(ins)
        digest = hashlib.sha1(repr((_signature(layer), ins)).encode()).hexdigest()
        for t in layer.top:
            h[t] = digest
    return h


def compare_prototxt(ours, reference) -> dict:
    """Structural comparison of two nets (``NetParameter`` or prototxt paths).

    Layers are compared by signature (type and the parameters that fix the computation: outputs, kernel,
    stride, pad, group, pooling method); names are not compared. ``same_graph`` compares the nets as graphs
    (each blob hashed with its whole input cone), ``same_order`` the layer sequences; ``differences`` lists
    the differing runs of the sequences as ``difflib`` opcodes with the layers' names.
    """
    a = read_prototxt(ours) if isinstance(ours, (str, Path)) else ours
    b = read_prototxt(reference) if isinstance(reference, (str, Path)) else reference
    la, lb = list(a.layer), list(b.layer)
    sa, sb = [_signature(x) for x in la], [_signature(x) for x in lb]

    def counts(layers):
        c: dict[str, int] = {}
        for x in layers:
            c[x.type] = c.get(x.type, 0) + 1
        return dict(sorted(c.items()))

    same_graph = sorted(_graph_hashes(la).values()) == sorted(_graph_hashes(lb).values())
    diffs = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=sa, b=sb, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        diffs.append({
            "op": op,
            "ours": [f"{la[i].name}: {sa[i]}" for i in range(i1, i2)],
            "reference": [f"{lb[j].name}: {sb[j]}" for j in range(j1, j2)],
        })
    return {
        "layers": {"ours": len(la), "reference": len(lb)},
        "counts": {"ours": counts(la), "reference": counts(lb)},
        "same_graph": same_graph,
        "same_order": not diffs,
        "differences": diffs,
        "names": {"ours": [x.name for x in la[:3]], "reference": [x.name for x in lb[:3]]},
    }
