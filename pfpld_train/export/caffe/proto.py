"""The subset of Caffe's ``caffe.proto`` schema this project writes, built at run time.

No Caffe installation and no generated ``caffe_pb2`` module: the messages are declared here as data
(name, field number, label, type) with the field numbers of BVLC Caffe 1.0's ``caffe.proto``, compiled into
a private :mod:`google.protobuf` descriptor pool, and the message classes are taken from that pool. A
``.caffemodel`` written with these classes is wire-compatible with Caffe, OpenCV's dnn module and
HiSilicon's ``nnie_mapper``; fields this project never writes are simply absent from the schema.

Public API: :func:`caffe_messages` returns a namespace with ``NetParameter``, ``LayerParameter``,
``BlobProto``, ``BlobShape`` and the per-layer parameter messages; :func:`net_to_prototxt` renders a net
(without its weight blobs) as Caffe text format.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

__all__ = ["caffe_messages", "net_to_prototxt", "SCHEMA"]

# (field name, number, label, type, type name or default) -- label: "o" optional, "r" repeated,
# "p" repeated packed. Types: proto scalar names, or "msg:<Name>" / "enum:<Name>".
_O, _R, _P = "o", "r", "p"

#: Message name -> list of fields. Field numbers are Caffe 1.0's (BVLC ``src/caffe/proto/caffe.proto``).
SCHEMA: dict[str, list[tuple[str, int, str, str]]] = {
    "BlobShape": [("dim", 1, _P, "int64")],
    "BlobProto": [
        ("num", 1, _O, "int32"),
        ("channels", 2, _O, "int32"),
        ("height", 3, _O, "int32"),
        ("width", 4, _O, "int32"),
        ("data", 5, _P, "float"),
        ("diff", 6, _P, "float"),
        ("shape", 7, _O, "msg:BlobShape"),
        ("double_data", 8, _P, "double"),
        ("double_diff", 9, _P, "double"),
    ],
    "NetParameter": [
        ("name", 1, _O, "string"),
        ("input", 3, _R, "string"),
        ("input_dim", 4, _R, "int32"),
        ("input_shape", 8, _R, "msg:BlobShape"),
        ("layer", 100, _R, "msg:LayerParameter"),
    ],
    "LayerParameter": [
        ("name", 1, _O, "string"),
        ("type", 2, _O, "string"),
        ("bottom", 3, _R, "string"),
        ("top", 4, _R, "string"),
        ("blobs", 7, _R, "msg:BlobProto"),
        ("concat_param", 104, _O, "msg:ConcatParameter"),
        ("convolution_param", 106, _O, "msg:ConvolutionParameter"),
        ("eltwise_param", 110, _O, "msg:EltwiseParameter"),
        ("inner_product_param", 117, _O, "msg:InnerProductParameter"),
        ("pooling_param", 121, _O, "msg:PoolingParameter"),
        ("relu_param", 123, _O, "msg:ReLUParameter"),
        ("reshape_param", 133, _O, "msg:ReshapeParameter"),
        ("flatten_param", 135, _O, "msg:FlattenParameter"),
        ("input_param", 143, _O, "msg:InputParameter"),
    ],
    "ConvolutionParameter": [
        ("num_output", 1, _O, "uint32"),
        ("bias_term", 2, _O, "bool"),
        ("pad", 3, _R, "uint32"),
        ("kernel_size", 4, _R, "uint32"),
        ("group", 5, _O, "uint32"),
        ("stride", 6, _R, "uint32"),
        ("pad_h", 9, _O, "uint32"),
        ("pad_w", 10, _O, "uint32"),
        ("kernel_h", 11, _O, "uint32"),
        ("kernel_w", 12, _O, "uint32"),
        ("stride_h", 13, _O, "uint32"),
        ("stride_w", 14, _O, "uint32"),
        ("dilation", 18, _R, "uint32"),
    ],
    "PoolingParameter": [
        ("pool", 1, _O, "enum:PoolMethod"),
        ("kernel_size", 2, _O, "uint32"),
        ("stride", 3, _O, "uint32"),
        ("pad", 4, _O, "uint32"),
        ("kernel_h", 5, _O, "uint32"),
        ("kernel_w", 6, _O, "uint32"),
        ("stride_h", 7, _O, "uint32"),
        ("stride_w", 8, _O, "uint32"),
        ("pad_h", 9, _O, "uint32"),
        ("pad_w", 10, _O, "uint32"),
        ("global_pooling", 12, _O, "bool"),
    ],
    "InnerProductParameter": [
        ("num_output", 1, _O, "uint32"),
        ("bias_term", 2, _O, "bool"),
        ("axis", 5, _O, "int32"),
        ("transpose", 6, _O, "bool"),
    ],
    "EltwiseParameter": [
        ("operation", 1, _O, "enum:EltwiseOp"),
        ("coeff", 2, _R, "float"),
    ],
    "ConcatParameter": [
        ("concat_dim", 1, _O, "uint32"),
        ("axis", 2, _O, "int32"),
    ],
    "ReLUParameter": [("negative_slope", 1, _O, "float")],
    "FlattenParameter": [("axis", 1, _O, "int32"), ("end_axis", 2, _O, "int32")],
    "ReshapeParameter": [
        ("shape", 1, _O, "msg:BlobShape"),
        ("axis", 2, _O, "int32"),
        ("num_axes", 3, _O, "int32"),
    ],
    "InputParameter": [("shape", 1, _R, "msg:BlobShape")],
}

#: Nested enums: (message, enum name) -> values, as in Caffe 1.0.
ENUMS: dict[tuple[str, str], list[tuple[str, int]]] = {
    ("PoolingParameter", "PoolMethod"): [("MAX", 0), ("AVE", 1), ("STOCHASTIC", 2)],
    ("EltwiseParameter", "EltwiseOp"): [("PROD", 0), ("SUM", 1), ("MAX", 2)],
}


@functools.cache
def caffe_messages() -> SimpleNamespace:
    """Message classes of the Caffe subset (``.NetParameter``, ``.LayerParameter``, ``.BlobProto`` ...).

    Built once per process in a private descriptor pool (package ``caffe``), so it cannot clash with
    another ``caffe.proto`` loaded in the same interpreter.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="pfpld_train/caffe_subset.proto", package="caffe", syntax="proto2")
    fd = descriptor_pb2.FieldDescriptorProto
    scalar = {
        "int32": fd.TYPE_INT32,
        "int64": fd.TYPE_INT64,
        "uint32": fd.TYPE_UINT32,
        "float": fd.TYPE_FLOAT,
        "double": fd.TYPE_DOUBLE,
        "bool": fd.TYPE_BOOL,
        "string": fd.TYPE_STRING,
    }
    for msg_name, fields in SCHEMA.items():
        msg = fdp.message_type.add(name=msg_name)
        for (owner, enum_name), values in ENUMS.items():
            if owner == msg_name:
                enum = msg.enum_type.add(name=enum_name)
                for value_name, number in values:
                    enum.value.add(name=value_name, number=number)
        for name, number, label, ftype in fields:
            field = msg.field.add(name=name, number=number)
            field.label = fd.LABEL_OPTIONAL if label == _O else fd.LABEL_REPEATED
            if label == _P:
                field.options.packed = True
            if ftype.startswith("msg:"):
                field.type = fd.TYPE_MESSAGE
                field.type_name = f".caffe.{ftype[4:]}"
            elif ftype.startswith("enum:"):
                field.type = fd.TYPE_ENUM
                field.type_name = f".caffe.{msg_name}.{ftype[5:]}"
            else:
                field.type = scalar[ftype]
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    classes = {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}")) for name in SCHEMA}
    return SimpleNamespace(**classes)


def net_to_prototxt(net) -> str:
    """Caffe text format of ``net`` (a ``NetParameter``) with every layer's weight blobs left out."""
    from google.protobuf import text_format

    msgs = caffe_messages()
    bare = msgs.NetParameter()
    bare.CopyFrom(net)
    for layer in bare.layer:
        del layer.blobs[:]
    return text_format.MessageToString(bare)
