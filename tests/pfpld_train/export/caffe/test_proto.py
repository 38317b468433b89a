"""The Caffe schema subset: field numbers of Caffe's own caffe.proto."""

from __future__ import annotations

from pfpld_train.export.caffe.proto import caffe_messages, net_to_prototxt


def test_caffe_messages_use_caffe_field_numbers():
    msgs = caffe_messages()
    layer = msgs.LayerParameter(name="c", type="Convolution")
    layer.convolution_param.num_output = 8
    data = layer.SerializeToString()
    # field 106, wire type 2 -> varint 850 = 0xd2 0x06; inside it num_output (field 1, varint) = 0x08 0x08.
    assert b"\xd2\x06\x02\x08\x08" in data
    net = msgs.NetParameter(name="n")
    blob = net.layer.add(name="ip", type="InnerProduct").blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1.0] * 6)
    raw = net.SerializeToString()
    assert raw.startswith(b"\x0a\x01n") and b"\xa2\x06" in raw  # name = field 1; layer = field 100
    assert msgs.NetParameter.FromString(raw) == net
    assert "blobs" not in net_to_prototxt(net)
