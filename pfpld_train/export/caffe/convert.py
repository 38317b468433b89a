"""ONNX graph -> Caffe 1.0 net (prototxt + caffemodel), with the batch norms folded into convolutions.

The converter walks an ONNX graph (as written by :func:`pfpld_train.export.onnx.export.export_onnx`, or any
CNN built from the same operators) and emits only Caffe 1.0 layers: ``Input``, ``Convolution`` (depthwise as
grouped), ``ReLU``, ``Eltwise`` (SUM), ``Pooling`` (MAX/AVE), ``InnerProduct``, ``Concat``, ``Flatten``,
``Reshape``, ``Sigmoid``, ``TanH``. Whatever it cannot express exactly is not approximated: it is recorded
as an :class:`Issue` (``severity="error"``) naming the ONNX node, and :func:`onnx_to_caffe` returns the
issues with the partial net so that a caller can report all of them at once.

Exactness rules checked here (beyond "is there a layer for this op"):

- pooling output size: Caffe rounds ``(H + 2p - k) / s`` up, ONNX/PyTorch (``ceil_mode=0``) down; a pooling
  whose two sizes differ is an error;
- average pooling with padding and ``count_include_pad=0`` (Caffe divides by the padded window);
- asymmetric padding, ``auto_pad`` other than ``NOTSET``;
- ``Add`` only between two tensors of equal shape (``Eltwise``), no broadcasting or constant bias;
- ``Flatten``/``Reshape`` before ``InnerProduct`` keep the ``C, H, W`` order, which is the order Caffe's
  ``InnerProduct`` reads a blob in, so the ``Gemm`` weights are used unchanged.

Layer names keep the PyTorch module path (``conv3_1_conv_conv_0``), sanitised to ``[A-Za-z0-9_]``; the two
output layers are named after the ONNX outputs (``pose``, ``landmarks``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np

from .proto import caffe_messages

__all__ = ["CaffeConversion", "Issue", "format_issues", "onnx_to_caffe", "sanitize_name", "NNIE_RESERVED_SUFFIXES"]

#: Layer-name suffixes that HiSilicon's mapper interprets (report an intermediate blob, 16-bit layer,
#: run on the CPU); generated names must not end with them.
NNIE_RESERVED_SUFFIXES = ("_report", "_hp", "_cpu")


@dataclass
class Issue:
    """One finding about a model: ``severity`` is ``"error"`` (cannot export) or ``"warning"``."""

    severity: str
    rule: str
    node: str
    message: str

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"[{self.severity}] {self.rule} at {self.node!r}: {self.message}"


@dataclass
class CaffeConversion:
    """Result of :func:`onnx_to_caffe`: the net (weights included), issues, and name bookkeeping.

    ``blob_of`` maps ONNX tensor names to Caffe blob names; ``outputs`` lists the Caffe output blobs in
    ONNX output order; ``input_shape`` is the ``(1, C, H, W)`` input of the prototxt.
    """

    net: object
    issues: list[Issue] = field(default_factory=list)
    blob_of: dict[str, str] = field(default_factory=dict)
    input_name: str = "input"
    input_shape: tuple[int, ...] = ()
    outputs: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    def layer_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.net.layer:
            counts[layer.type] = counts.get(layer.type, 0) + 1
        return counts


def sanitize_name(name: str) -> str:
    """``/conv3_1/conv/conv.0/Conv`` style names -> ``[A-Za-z0-9_]`` only, never empty, no reserved suffix."""
    out = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "layer"
    if out[0].isdigit():
        out = "n" + out
    for suffix in NNIE_RESERVED_SUFFIXES:
        if out.lower().endswith(suffix):
            out += "_x"
    return out


def _module_path(node_name: str, op_type: str) -> str:
    parts = [p for p in node_name.strip("/").split("/") if p]
    if parts and re.fullmatch(rf"{re.escape(op_type)}(_\d+)?", parts[-1]):
        tail = parts.pop()
        if not parts:  # functional op at top level ("/Concat_1"): keep its name
            parts = [tail]
    return "_".join(parts)


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pair(values, default) -> tuple[int, int]:
    if values is None:
        return (default, default)
    v = [int(x) for x in values]
    return (v[0], v[1]) if len(v) >= 2 else (v[0], v[0])


def _caffe_pool_size(size: int, k: int, s: int, p: int) -> int:
    """Caffe 1.0's pooled size: ceil rounding, then the last window must start inside image + pad."""
    out = int(np.ceil((size + 2 * p - k) / s)) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1
    return out


def _onnx_pool_size(size: int, k: int, s: int, p: int, ceil_mode: int) -> int:
    num = size + 2 * p - k
    return (int(np.ceil(num / s)) if ceil_mode else num // s) + 1


def _static_model(model):
    """Copy of ``model`` with every input's batch dimension set to 1, shapes inferred."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for inp in m.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = 1
    del m.graph.value_info[:]
    for out in m.graph.output:
        for d in out.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
    return onnx.shape_inference.infer_shapes(m, strict_mode=False)


def _shapes(model) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


class _Graph:
    """What every op converter needs: the ONNX graph's constants, static shapes and consumers, the Caffe
    net being written with its :class:`CaffeConversion`, and the layer names taken so far."""

    def __init__(self, graph, shapes: dict, consts: dict, net, conv: CaffeConversion):
        self.shapes, self.consts, self.net, self.conv = shapes, consts, net, conv
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for t in node.input:
                self.consumers.setdefault(t, []).append(node)
        self.outputs = [o.name for o in graph.output]
        self.used_names = {conv.input_name}
        self.folded: set[str] = set()  # BatchNormalization nodes merged into the conv before them

    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self.used_names:
            k += 1
            name = f"{base}_{k}"
        self.used_names.add(name)
        return name

    def layer_name(self, node, tensor: str, kind: str, bottoms: list[str]) -> str:
        if tensor in self.outputs:
            return self.unique(sanitize_name(tensor))
        if kind in ("ReLU", "Sigmoid", "TanH", "Flatten", "Reshape") and bottoms:
            # Named after the layer it follows: conv1 -> conv1_relu -> conv1_relu_flatten.
            return self.unique(sanitize_name(f"{bottoms[0]}_{kind.lower()}"))
        path = _module_path(node.name, node.op_type) if node.name else ""
        if not path:
            return self.unique(kind.lower())
        if kind == "Eltwise":
            path += "_add"
        elif kind == "Concat" and path.lower().startswith("concat"):
            path = path.lower()
        return self.unique(sanitize_name(path))

    def err(self, node, rule: str, message: str) -> None:
        self.conv.issues.append(Issue("error", rule, node.name or node.op_type, message))

    def blob_in(self, node, idx: int = 0) -> str | None:
        name = node.input[idx]
        if name not in self.conv.blob_of:
            self.err(node, "missing-input", f"input {name!r} was not converted (see earlier issues)")
            return None
        return self.conv.blob_of[name]

    def emit(self, node, kind: str, bottoms: list[str], out_tensor: str):
        name = self.layer_name(node, out_tensor, kind, bottoms)
        lyr = self.net.layer.add(name=name, type=kind)
        lyr.bottom.extend(bottoms)
        lyr.top.append(name)
        self.conv.blob_of[out_tensor] = name
        return lyr


def _add_blob(lyr, array: np.ndarray) -> None:
    arr = np.ascontiguousarray(array, dtype=np.float32)
    blob = lyr.blobs.add()
    blob.shape.dim.extend(arr.shape)
    blob.data.extend(arr.ravel().tolist())


def _auto_pad(a: dict) -> bool:
    """The node pads explicitly (``auto_pad`` absent or ``NOTSET``)."""
    return a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")


def _pass_through(g: _Graph, node, a: dict) -> None:
    """Identity, Dropout (inference): the output is the input's blob."""
    if node.input[0] in g.conv.blob_of:
        g.conv.blob_of[node.output[0]] = g.conv.blob_of[node.input[0]]


def _fold_batchnorm(g: _Graph, out_t: str, w: np.ndarray, b: np.ndarray):
    """A BatchNormalization that is the only consumer of a conv's output, with constant statistics, folded
    into the conv's weights: ``(w, b, output tensor)``, the BN's output when folded."""
    nexts = g.consumers.get(out_t, [])
    if len(nexts) == 1 and nexts[0].op_type == "BatchNormalization" and out_t not in g.outputs:
        bn = nexts[0]
        if all(t in g.consts for t in bn.input[1:5]):
            scale, bias, mean, var = (g.consts[t].astype(np.float64) for t in bn.input[1:5])
            eps = float(_attrs(bn).get("epsilon", 1e-5))
            k = scale / np.sqrt(var + eps)
            w = w * k[:, None, None, None]
            b = (b - mean) * k + bias
            g.folded.add(bn.name)
            out_t = bn.output[0]
    return w, b, out_t


def _conv(g: _Graph, node, a: dict) -> None:
    bottom = g.blob_in(node)
    w = g.consts.get(node.input[1])
    if w is None or w.ndim != 4:
        return g.err(node, "conv-weights", "weights must be a constant 4-D tensor (2-D convolution)")
    b = g.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2] and b is None:
        return g.err(node, "conv-weights", "bias must be a constant")
    if not _auto_pad(a):
        return g.err(node, "auto-pad", f"auto_pad={a['auto_pad']!r} not supported; export with explicit pads")
    pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
    if pads[0] != pads[2] or pads[1] != pads[3]:
        return g.err(node, "asymmetric-pad", f"pads {pads} are asymmetric; Caffe pads both sides equally")
    w = w.astype(np.float64)
    b = np.zeros(w.shape[0]) if b is None else b.astype(np.float64)
    w, b, out_t = _fold_batchnorm(g, node.output[0], w, b)
    if bottom is None:
        return None
    kh, kw = int(w.shape[2]), int(w.shape[3])
    sh, sw = _pair(a.get("strides"), 1)
    dh, dw = _pair(a.get("dilations"), 1)
    if dh != dw:
        return g.err(node, "dilation", f"dilations {dh}x{dw} differ; Caffe has one dilation")
    lyr = g.emit(node, "Convolution", [bottom], out_t)
    p = lyr.convolution_param
    p.num_output = int(w.shape[0])
    p.bias_term = True
    p.group = int(a.get("group", 1))
    p.pad_h, p.pad_w = pads[0], pads[1]
    p.kernel_h, p.kernel_w = kh, kw
    p.stride_h, p.stride_w = sh, sw
    if dh != 1:
        p.dilation.append(dh)
    _add_blob(lyr, w)
    _add_blob(lyr, b)
    return None


def _batchnorm(g: _Graph, node, a: dict) -> None:
    """Reached only by a BatchNormalization that could not be folded into the conv before it."""
    g.err(node, "batchnorm", "BatchNormalization not directly after a Conv cannot be folded "
          "(Caffe needs BatchNorm + Scale layers, which this exporter does not emit)")


#: ONNX activation -> Caffe layer type.
_ACTIVATIONS = {"Relu": "ReLU", "LeakyRelu": "ReLU", "Sigmoid": "Sigmoid", "Tanh": "TanH"}


def _activation(g: _Graph, node, a: dict) -> None:
    bottom = g.blob_in(node)
    if bottom is None:
        return
    lyr = g.emit(node, _ACTIVATIONS[node.op_type], [bottom], node.output[0])
    if node.op_type == "LeakyRelu":
        lyr.relu_param.negative_slope = float(a.get("alpha", 0.01))


def _add(g: _Graph, node, a: dict) -> None:
    if any(t in g.consts for t in node.input):
        return g.err(node, "add-constant", "Add with a constant (bias/broadcast) has no Caffe 1.0 Eltwise form")
    s0, s1 = g.shapes.get(node.input[0]), g.shapes.get(node.input[1])
    if s0 is None or s0 != s1:
        return g.err(node, "add-broadcast", f"Add inputs must have equal static shapes, got {s0} and {s1}")
    bottoms = [g.blob_in(node, 0), g.blob_in(node, 1)]
    if None in bottoms:
        return None
    lyr = g.emit(node, "Eltwise", bottoms, node.output[0])
    lyr.eltwise_param.operation = 1  # SUM
    return None


def _pool_window(g: _Graph, node, a: dict, in_s: tuple[int, ...]):
    """``(kh, kw, sh, sw, ph, pw, ceil_mode)`` of a pooling node, or None after an error."""
    if node.op_type.startswith("Global"):
        return in_s[2], in_s[3], 1, 1, 0, 0, 0
    kh, kw = _pair(a.get("kernel_shape"), 1)
    sh, sw = _pair(a.get("strides"), 1)
    pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
    if pads[0] != pads[2] or pads[1] != pads[3]:
        return g.err(node, "asymmetric-pad", f"pads {pads} are asymmetric")
    ph, pw = pads[0], pads[1]
    ceil_mode = int(a.get("ceil_mode", 0))
    if not _auto_pad(a):
        return g.err(node, "auto-pad", "auto_pad not supported")
    if _pair(a.get("dilations"), 1) != (1, 1):
        return g.err(node, "pool-dilation", "dilated pooling has no Caffe 1.0 form")
    if node.op_type == "AveragePool" and (ph or pw) and not int(a.get("count_include_pad", 0)):
        return g.err(node, "avgpool-pad", "average pooling with padding and count_include_pad=0 "
                     "differs from Caffe, which divides by the padded window")
    return kh, kw, sh, sw, ph, pw, ceil_mode


def _pool(g: _Graph, node, a: dict) -> None:
    bottom = g.blob_in(node)
    in_s = g.shapes.get(node.input[0])
    if bottom is None:
        return None
    if in_s is None or len(in_s) != 4:
        return g.err(node, "pool-shape", f"pooling input must be static 4-D, got {in_s}")
    window = _pool_window(g, node, a, in_s)
    if window is None:
        return None
    kh, kw, sh, sw, ph, pw, ceil_mode = window
    want = (_onnx_pool_size(in_s[2], kh, sh, ph, ceil_mode), _onnx_pool_size(in_s[3], kw, sw, pw, ceil_mode))
    got = (_caffe_pool_size(in_s[2], kh, sh, ph), _caffe_pool_size(in_s[3], kw, sw, pw))
    if want != got:
        return g.err(node, "pool-rounding", f"output {want[0]}x{want[1]} (floor rounding) but Caffe gives "
                     f"{got[0]}x{got[1]} (ceil rounding) for input {in_s[2]}x{in_s[3]}, kernel {kh}x{kw}, "
                     f"stride {sh}x{sw}, pad {ph}x{pw}")
    lyr = g.emit(node, "Pooling", [bottom], node.output[0])
    p = lyr.pooling_param
    p.pool = 0 if "Max" in node.op_type else 1
    p.kernel_h, p.kernel_w = kh, kw
    p.stride_h, p.stride_w = sh, sw
    p.pad_h, p.pad_w = ph, pw
    return None


def _reshape(g: _Graph, node, a: dict) -> None:
    """Flatten and Reshape: a Caffe ``Flatten`` to 2-D, else a ``Reshape`` that keeps the batch axis."""
    bottom = g.blob_in(node)
    in_s, out_s = g.shapes.get(node.input[0]), g.shapes.get(node.output[0])
    if bottom is None:
        return None
    if in_s is None or out_s is None:
        return g.err(node, "reshape-shape", "needs static input and output shapes")
    if node.op_type == "Flatten" and int(a.get("axis", 1)) != 1:
        return g.err(node, "flatten-axis", f"Flatten axis {a.get('axis')} (only axis 1 keeps the batch)")
    if len(out_s) == 2 and out_s[0] == in_s[0]:
        lyr = g.emit(node, "Flatten", [bottom], node.output[0])
        lyr.flatten_param.axis = 1
        return None
    if out_s[0] != in_s[0]:
        return g.err(node, "reshape-batch", f"reshape {in_s} -> {out_s} changes the batch axis")
    lyr = g.emit(node, "Reshape", [bottom], node.output[0])
    lyr.reshape_param.shape.dim.extend([0, *out_s[1:]])
    return None


def _concat(g: _Graph, node, a: dict) -> None:
    bottoms = [g.blob_in(node, i) for i in range(len(node.input))]
    if None in bottoms:
        return None
    rank = len(g.shapes.get(node.output[0], (0, 0)))
    axis = int(a.get("axis", 1))
    axis = axis + rank if axis < 0 else axis
    if axis != 1:
        return g.err(node, "concat-axis", f"Concat on axis {axis}; only the channel axis (1) is supported")
    lyr = g.emit(node, "Concat", bottoms, node.output[0])
    lyr.concat_param.axis = 1
    return None


def _gemm(g: _Graph, node, a: dict) -> None:
    """A Linear layer: ``InnerProduct`` with ``alpha`` and ``beta`` folded into the weights and bias."""
    bottom = g.blob_in(node)
    w = g.consts.get(node.input[1])
    c = g.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if w is None or w.ndim != 2:
        return g.err(node, "gemm-weights", "Gemm needs a constant 2-D B (a Linear layer)")
    if int(a.get("transA", 0)):
        return g.err(node, "gemm-trans", "transA=1 has no InnerProduct form")
    if bottom is None:
        return None
    w = w.astype(np.float64) * float(a.get("alpha", 1.0))
    if not int(a.get("transB", 0)):
        w = w.T
    bias = np.zeros(w.shape[0]) if c is None else np.broadcast_to(
        c.astype(np.float64).reshape(-1) * float(a.get("beta", 1.0)), (w.shape[0],))
    lyr = g.emit(node, "InnerProduct", [bottom], node.output[0])
    lyr.inner_product_param.num_output = int(w.shape[0])
    lyr.inner_product_param.bias_term = True
    _add_blob(lyr, w)
    _add_blob(lyr, bias)
    return None


#: One converter per ONNX op: ``converter(graph, node, attributes)`` emits the node's Caffe layer or
#: records an error :class:`Issue` naming it.
CONVERTERS = {
    "Identity": _pass_through, "Dropout": _pass_through,
    "Conv": _conv, "BatchNormalization": _batchnorm,
    **dict.fromkeys(_ACTIVATIONS, _activation),
    "Add": _add,
    **dict.fromkeys(("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"), _pool),
    "Flatten": _reshape, "Reshape": _reshape,
    "Concat": _concat,
    "Gemm": _gemm,
}

#: What to do instead, for ops with no converter that models commonly hold.
UNSUPPORTED_HINTS = {
    "Gelu": "GELU has no Caffe 1.0 layer and NNIE has no GELU; use ReLU",
    "Erf": "Erf (GELU decomposition) has no Caffe 1.0 layer",
    "PRelu": "PReLU is outside the Caffe 1.0 subset this exporter writes; use ReLU",
    "Resize": "Upsample/Resize is not a Caffe 1.0 layer",
    "Upsample": "Upsample is not a Caffe 1.0 layer",
    "Clip": "Clip (ReLU6) has no Caffe 1.0 layer; use ReLU",
    "HardSwish": "HardSwish has no Caffe 1.0 layer",
    "MatMul": "MatMul without Gemm form; export Linear layers with the TorchScript exporter",
}


def _unsupported(g: _Graph, node, a: dict) -> None:
    g.err(node, "unsupported-op", UNSUPPORTED_HINTS.get(node.op_type, f"{node.op_type} has no Caffe 1.0 layer in "
                                                                      "this exporter"))


def _input_layer(graph, shapes: dict, consts: dict, net, conv: CaffeConversion) -> bool:
    """The ``Input`` layer of the one 4-D image input; False (with an issue) when there is none."""
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        conv.issues.append(Issue("error", "inputs", "graph", f"expected one image input, found {len(inputs)}"))
        return False
    inp = inputs[0]
    in_shape = shapes.get(inp.name)
    if in_shape is None or len(in_shape) != 4:
        conv.issues.append(Issue("error", "input-shape", inp.name, f"input must be static 4-D NCHW, got {in_shape}"))
        return False
    conv.input_name = sanitize_name(inp.name)
    conv.input_shape = in_shape
    layer = net.layer.add(name=conv.input_name, type="Input")
    layer.top.append(conv.input_name)
    layer.input_param.shape.add().dim.extend(in_shape)
    conv.blob_of[inp.name] = conv.input_name
    return True


def onnx_to_caffe(model, net_name: str = "pfpld", first_outputs: tuple[str, ...] = ("landmarks",)) -> CaffeConversion:
    """Convert an ONNX ``ModelProto`` (one 4-D image input) to a Caffe ``NetParameter``.

    Never raises on an unsupported construct: each one becomes an ``error`` :class:`Issue` and the node is
    skipped (its output gets no blob, so dependants are reported too). Check ``result.errors`` before
    writing the files. Each node goes through its op's converter (:data:`CONVERTERS`). Layers are ordered
    branch by branch, starting from the outputs in ``first_outputs`` (the landmark head, then the pose
    head, as in the reference prototxt).
    """
    from onnx import numpy_helper

    msgs = caffe_messages()
    model = _static_model(model)
    graph = model.graph
    shapes = _shapes(model)
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
    net = msgs.NetParameter(name=net_name)
    conv = CaffeConversion(net=net)
    if not _input_layer(graph, shapes, consts, net, conv):
        return conv
    g = _Graph(graph, shapes, consts, net, conv)
    for node in graph.node:
        if node.op_type == "Constant" or node.name in g.folded:
            continue
        CONVERTERS.get(node.op_type, _unsupported)(g, node, _attrs(node))
    for out in g.outputs:
        if out in conv.blob_of:
            conv.outputs.append(conv.blob_of[out])
        else:
            conv.issues.append(Issue("error", "missing-output", out, "graph output was not converted"))
    if not conv.errors:
        _reorder(net, sorted(conv.outputs, key=lambda o: (o not in first_outputs, conv.outputs.index(o))))
    return conv


def _reorder(net, outputs: list[str]) -> None:
    """Put the layers in depth-first order from the outputs (``outputs[0]``'s whole branch first).

    Graph optimisers interleave independent branches; this order keeps each branch together, as the
    reference prototxt does, and is still topological.
    """
    layers = list(net.layer)
    producer = {top: i for i, layer in enumerate(layers) for top in layer.top}
    order: list[int] = []
    state: dict[int, int] = {}
    for out in outputs:
        stack = [(producer[out], 0)]
        while stack:
            i, k = stack.pop()
            if state.get(i) == 2:
                continue
            state[i] = 1
            bottoms = layers[i].bottom
            if k < len(bottoms):
                stack.append((i, k + 1))
                j = producer.get(bottoms[k])
                if j is not None and state.get(j) is None:
                    stack.append((j, 0))
            else:
                state[i] = 2
                order.append(i)
    order += [i for i in range(len(layers)) if i not in state]  # layers that feed no output
    copies = [type(layers[0])() for _ in order]
    for c, i in zip(copies, order):
        c.CopyFrom(layers[i])
    del net.layer[:]
    net.layer.extend(copies)


def format_issues(issues: list[Issue], brief: bool = False) -> str:
    """One line per finding, errors first, then a count line.

    Errors that only follow from an earlier one (an input that was not converted) are summed up in one line;
    ``compatibility.json`` keeps them all. ``brief`` (for a terminal) also folds errors with the same rule
    and message into one line naming the first nodes and the count.
    """
    errors = [i for i in issues if i.severity == "error"]
    warnings = [i for i in issues if i.severity != "error"]
    cascade = [i for i in errors if i.rule in ("missing-input", "missing-output")]
    roots = [i for i in errors if i not in cascade]
    shown = roots or cascade
    lines = [str(i) for i in (_collapse(shown) if brief else shown) + _collapse(warnings)]
    if roots and cascade:
        names = ", ".join(dict.fromkeys(i.node for i in cascade[:4]))
        lines.append(f"[error] missing-input: {len(cascade)} further node input(s)/output(s) depend on the "
                     f"layers above ({names}, ...)")
    lines.append(f"{len(errors)} error(s), {len(warnings)} warning(s)")
    return "\n".join(lines)


def _collapse(issues: list[Issue]) -> list[Issue]:
    """Findings with the same severity, rule and message folded into one naming the first layers."""
    groups: dict[tuple[str, str, str], list[Issue]] = {}
    for i in issues:
        groups.setdefault((i.severity, i.rule, i.message), []).append(i)
    out = []
    for (severity, rule, message), items in groups.items():
        if len(items) == 1:
            out.append(items[0])
        else:
            names = ", ".join(i.node for i in items[:3])
            out.append(Issue(severity, rule, f"{len(items)} layers ({names}, ...)", message))
    return out
