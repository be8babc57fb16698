"""usv_models - helpers shared by the benchmark and the engine's integration tests.

read_usvm(path)       -> (doc, tensors): the "usview" metadata document of a usview
                         model file and its tensors as NumPy arrays (an independent
                         reader of the safetensors layout, written from the format
                         description in docs/model-format.md).
write_caffemodel(path, blobs)
                      -> writes a binary Caffe NetParameter holding only the layers'
                         blobs ({layer: [weight, bias]}), enough for OpenCV's
                         cv2.dnn.readNetFromCaffe(prototxt, caffemodel).
"""
import json
import struct

import numpy as np


def read_usvm(path):
    with open(path, 'rb') as f:
        raw = f.read()
    (hlen,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + hlen])
    base = 8 + hlen
    doc = json.loads(header['__metadata__']['usview'])
    tensors = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        assert e['dtype'] == 'F32'
        b, en = e['data_offsets']
        arr = np.frombuffer(raw, dtype='<f4', count=(en - b) // 4, offset=base + b)
        tensors[name] = arr.reshape(e['shape'])
    return doc, tensors


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, wire, payload):
    key = _varint((num << 3) | wire)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def _blob(arr):
    arr = np.ascontiguousarray(arr, dtype='<f4')
    dims = b''.join(_varint(int(d)) for d in arr.shape)
    shape = _field(1, 2, dims)                  # BlobShape.dim, packed
    return _field(7, 2, shape) + _field(5, 2, arr.tobytes())  # BlobProto.shape, .data


def write_caffemodel(path, blobs):
    with open(path, 'wb') as f:
        for name, arrs in blobs.items():
            layer = _field(1, 2, name.encode())     # LayerParameter.name
            for a in arrs:
                layer += _field(7, 2, _blob(a))     # LayerParameter.blobs
            f.write(_field(100, 2, layer))          # NetParameter.layer


def caffe_blobs_from_usvm(doc, tensors):
    """{layer: [weight, bias]} for every conv / fc layer of a usview model."""
    out = {}
    for l in doc['layers']:
        if l['type'] in ('conv', 'fc'):
            w = tensors[l['name'] + '.weight']
            arrs = [w]
            if l['has_bias']:
                arrs.append(tensors[l['name'] + '.bias'])
            out[l['name']] = arrs
    return out
