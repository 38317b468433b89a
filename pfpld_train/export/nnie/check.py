"""Compatibility of a converted Caffe net with HiSilicon's NNIE mapper, as named findings.

:func:`check_nnie` takes a :class:`~pfpld_train.export.caffe.convert.CaffeConversion` (whose own conversion
errors are carried over: an ONNX operator with no Caffe 1.0 layer is already a violation) and adds the
mapper-level rules below. Every finding is an :class:`Issue` with a rule id, the layer and a sentence.

Rules (``error`` blocks the export, ``warning`` is reported):

- ``unsupported-op`` etc.: from the conversion (GELU, PReLU, Upsample/Resize, ReLU6, ...).
- ``layer-type``: layer type outside the set this package targets (Input, Convolution, ReLU, Eltwise,
  Pooling, InnerProduct, Concat, Flatten, Reshape, Sigmoid, TanH).
- ``input``: one input, ``1 x C x H x W`` with C = 3 (colour image, ``image_type 1``) or 1.
- ``conv-kernel``: convolution kernel side above :attr:`NnieLimits.max_conv_kernel` (default 15).
- ``conv-stride``, ``conv-pad``: stride above :attr:`NnieLimits.max_conv_stride`; padding not smaller than
  the kernel.
- ``pool-kernel``: pooling window above :attr:`NnieLimits.max_pool_kernel`.
- ``dilation`` (warning): dilated convolution.
- ``layer-name``: names must be ``[A-Za-z0-9_]``, unique, at most :attr:`NnieLimits.max_name_length`
  characters, and must not end with a suffix the mapper interprets (``_report``, ``_hp``, ``_cpu``).
- ``intermediate-output``: a network output that also feeds another layer (the mapper only returns
  intermediate blobs whose top ends in ``_report``).
- ``depthwise-int8`` (warning): depthwise convolutions; NNIE's 8-bit quantisation is reported to lose
  accuracy on them, so check the int8 drift (``quantize-check``) or use ``compile_mode 1``.

The numeric limits are this project's conservative reading of the mapper's layer constraints, kept in one
place (:class:`NnieLimits`) so they can be changed per SDK version; they are not taken from the mapper.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ..caffe.convert import NNIE_RESERVED_SUFFIXES, CaffeConversion, Issue, format_issues

__all__ = ["NnieLimits", "check_nnie", "format_issues", "NNIE_LAYER_TYPES"]

NNIE_LAYER_TYPES = frozenset({"Input", "Convolution", "ReLU", "Eltwise", "Pooling", "InnerProduct", "Concat",
                              "Flatten", "Reshape", "Sigmoid", "TanH"})


@dataclass(frozen=True)
class NnieLimits:
    """Numeric constraints checked by :func:`check_nnie`."""

    max_conv_kernel: int = 15
    max_conv_stride: int = 15
    max_pool_kernel: int = 255
    max_name_length: int = 64

    def as_dict(self) -> dict:
        return asdict(self)


def check_nnie(conv: CaffeConversion, limits: NnieLimits = NnieLimits()) -> list[Issue]:
    """All findings for ``conv``: its conversion issues, then the NNIE rules (module docstring)."""
    issues = list(conv.issues)
    layers = list(conv.net.layer)
    consumers: dict[str, int] = {}
    for layer in layers:
        for b in layer.bottom:
            consumers[b] = consumers.get(b, 0) + 1

    inputs = [lyr for lyr in layers if lyr.type == "Input"]
    if len(inputs) != 1:
        issues.append(Issue("error", "input", "net", f"expected one Input layer, found {len(inputs)}"))
    else:
        dims = list(inputs[0].input_param.shape[0].dim) if inputs[0].input_param.shape else []
        if len(dims) != 4 or dims[0] != 1 or dims[1] not in (1, 3):
            issues.append(Issue("error", "input", inputs[0].name,
                                f"input must be 1 x (3|1) x H x W for an image input, got {dims}"))

    seen: set[str] = set()
    for layer in layers:
        name = layer.name
        if layer.type not in NNIE_LAYER_TYPES:
            issues.append(Issue("error", "layer-type", name, f"layer type {layer.type!r} is not in the NNIE set "
                                f"this exporter targets: {sorted(NNIE_LAYER_TYPES)}"))
        for what, value in [("layer", name)] + [("top", t) for t in layer.top]:
            if what == "top" and value == name:
                continue
            if not re.fullmatch(r"[A-Za-z0-9_]+", value):
                issues.append(Issue("error", "layer-name", name, f"{what} name {value!r} has characters outside "
                                    "[A-Za-z0-9_]"))
            if value.lower().endswith(NNIE_RESERVED_SUFFIXES):
                issues.append(Issue("error", "layer-name", name, f"{what} name {value!r} ends with a suffix the "
                                    f"mapper interprets ({', '.join(NNIE_RESERVED_SUFFIXES)})"))
            if len(value) > limits.max_name_length:
                issues.append(Issue("error", "layer-name", name, f"{what} name longer than "
                                    f"{limits.max_name_length} characters"))
        if name in seen:
            issues.append(Issue("error", "layer-name", name, "duplicate layer name"))
        seen.add(name)

        if layer.type == "Convolution":
            p = layer.convolution_param
            kh, kw = p.kernel_h, p.kernel_w
            if max(kh, kw) > limits.max_conv_kernel:
                issues.append(Issue("error", "conv-kernel", name, f"kernel {kh}x{kw} exceeds the NNIE limit "
                                    f"{limits.max_conv_kernel}x{limits.max_conv_kernel}"))
            if max(p.stride_h, p.stride_w) > limits.max_conv_stride:
                issues.append(Issue("error", "conv-stride", name, f"stride {p.stride_h}x{p.stride_w} exceeds "
                                    f"{limits.max_conv_stride}"))
            if p.pad_h >= kh or p.pad_w >= kw:
                issues.append(Issue("error", "conv-pad", name, f"padding {p.pad_h}x{p.pad_w} is not smaller "
                                    f"than the kernel {kh}x{kw}"))
            if any(d > 1 for d in p.dilation):
                issues.append(Issue("warning", "dilation", name, f"dilation {list(p.dilation)}: check that the "
                                    "mapper version supports dilated convolution"))
            if p.group > 1 and p.group == p.num_output:
                issues.append(Issue("warning", "depthwise-int8", name, "depthwise convolution: 8-bit "
                                    "quantisation is reported to lose accuracy here; check the int8 drift"))
        elif layer.type == "Pooling":
            p = layer.pooling_param
            if max(p.kernel_h, p.kernel_w) > limits.max_pool_kernel:
                issues.append(Issue("error", "pool-kernel", name, f"pooling window {p.kernel_h}x{p.kernel_w} "
                                    f"exceeds {limits.max_pool_kernel}"))

    for out in conv.outputs:
        if consumers.get(out, 0):
            issues.append(Issue("error", "intermediate-output", out, "network output also feeds another layer; "
                                "the mapper returns such a blob only if its top ends in '_report'"))
    return issues
