#!/usr/bin/env python3
"""import-caffe --arch caffenet: the built-in CaffeNet filled from a caffemodel.

The original BVLC CaffeNet weights are not in shared/, so a caffemodel
with CaffeNet's shapes and random weights is written here in the legacy V1
format of the original file (NetParameter.layers, V1LayerParameter with
enum types, BlobProto with num/channels/height/width). It is imported with
`usview import-caffe --arch caffenet --mean ilsvrc_2012_mean.npy` and
compared layer by layer with OpenCV's DNN module reading the BVLC deploy
prototxt with the same caffemodel: max |diff| <= 1e-4 * max |reference|.
The imported model must keep Caffe's preprocessing: BGR, resize 256 from
the mean image, crop 227, scale 1.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import cv2
import numpy as np

USVIEW = os.environ["USVIEW"]
SHARED = os.environ.get("USV_SHARED_DIR", "../shared")
CAFFE = os.path.join(SHARED, "models", "caffe")
REL_TOL = 1e-4

# (name, V1 type enum, weight shape) of CaffeNet's weighted layers
CONV, IP = 4, 14
LAYERS = [
    ("conv1", CONV, (96, 3, 11, 11)),
    ("conv2", CONV, (256, 48, 5, 5)),
    ("conv3", CONV, (384, 256, 3, 3)),
    ("conv4", CONV, (384, 192, 3, 3)),
    ("conv5", CONV, (256, 192, 3, 3)),
    ("fc6", IP, (4096, 9216)),
    ("fc7", IP, (4096, 4096)),
    ("fc8", IP, (1000, 4096)),
]


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def ld(field, payload):
    return key(field, 2) + varint(len(payload)) + payload


def blob_v1(arr):
    dims = arr.shape
    if len(dims) == 2:  # the legacy files store an inner product as 1 x 1 x out x in
        dims = (1, 1) + dims
    elif len(dims) == 1:
        dims = (1, 1, 1) + dims
    msg = b"".join(key(i + 1, 0) + varint(d) for i, d in enumerate(dims))
    return msg + ld(5, arr.astype("<f4").tobytes())


def write_caffemodel(path, rng):
    with open(path, "wb") as f:
        f.write(ld(1, b"CaffeNet"))
        for name, typ, shape in LAYERS:
            fan_in = int(np.prod(shape[1:]))
            w = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
            b = (rng.standard_normal(shape[0]) * 0.1).astype(np.float32)
            layer = ld(4, name.encode()) + key(5, 0) + varint(typ)
            layer += ld(6, blob_v1(w)) + ld(6, blob_v1(b))
            f.write(ld(2, layer))


def main():
    failures = []
    proto = os.path.join(CAFFE, "bvlc_reference_caffenet_deploy.prototxt")
    mean = os.path.join(CAFFE, "ilsvrc_2012_mean.npy")
    with tempfile.TemporaryDirectory(prefix="usv-arch-") as tmp:
        cm = os.path.join(tmp, "caffenet_v1.caffemodel")
        write_caffemodel(cm, np.random.default_rng(7))
        model = os.path.join(tmp, "caffenet.usvm")
        p = subprocess.run([USVIEW, "import-caffe", "--arch", "caffenet", "--prototxt", proto,
                            "--weights", cm, "--mean", mean, "-o", model],
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            print(p.stdout, p.stderr)
            return 1

        net = cv2.dnn.readNetFromCaffe(proto, cm)
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.enableFusion(False)
        x = (np.random.default_rng(3).standard_normal((1, 3, 227, 227)) * 60).astype(np.float32)
        xin = os.path.join(tmp, "in.npy")
        np.save(xin, x)
        for name in ("conv1", "norm1", "conv2", "pool2", "conv4", "pool5", "fc6", "fc7",
                     "fc8", "prob"):
            net.setInput(x)
            ref = net.forward(name)
            out = os.path.join(tmp, "out.npy")
            p = subprocess.run([USVIEW, "forward", "-m", model, "--in", xin, "--layer", name,
                                "--out", out], capture_output=True, text=True, timeout=300)
            if p.returncode != 0:
                failures.append(f"{name}: forward failed: {p.stderr.strip()}")
                continue
            got = np.load(out).reshape(ref.shape)
            scale = float(np.max(np.abs(ref)))
            diff = float(np.max(np.abs(got.astype(np.float64) - ref)))
            ok = diff <= REL_TOL * scale
            print(f"caffenet --arch {name:6s} max|ref| {scale:10.4g} max|diff| {diff:9.3g} "
                  f"rel {diff / scale:9.2e} {'ok' if ok else 'FAIL'}")
            if not ok:
                failures.append(f"{name}: max|diff| {diff:.3g} > {REL_TOL} * {scale:.4g}")

        # the model keeps Caffe's preprocessing: read the metadata from the
        # model file header (safetensors layout, usv/nn.h)
        with open(model, "rb") as f:
            hlen = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(hlen))
        doc = json.loads(header["__metadata__"]["usview"])

        def find_meta(o):
            if isinstance(o, dict):
                if "arch" in o and "resize" in o:
                    return o
                for v in o.values():
                    r = find_meta(v)
                    if r:
                        return r
            return None

        meta = find_meta(doc) or {}
        want = {"arch": "caffenet", "input": [3, 227, 227], "resize": [256, 256],
                "channel_order": "BGR", "scale": 1}
        for k, v in want.items():
            if meta.get(k) != v:
                failures.append(f"metadata {k} = {meta.get(k)!r}, expected {v!r}")
        prov = json.dumps(meta.get("provenance"))
        if "ilsvrc_2012_mean.npy" not in prov or "sha256" not in prov:
            failures.append(f"provenance lacks the mean file / hashes: {prov[:200]}")

        # a caffemodel without layers cannot fill the built-in network
        cut = os.path.join(tmp, "partial.caffemodel")
        with open(cut, "wb") as f:
            f.write(ld(1, b"x"))  # only the name: no layers at all
        p = subprocess.run([USVIEW, "import-caffe", "--arch", "caffenet", "--prototxt", proto,
                            "--weights", cut, "-o", os.path.join(tmp, "bad.usvm")],
                           capture_output=True, text=True, timeout=300)
        lines = p.stderr.strip().splitlines()
        if p.returncode != 1 or len(lines) != 1 or cut not in lines[0]:
            failures.append(f"empty caffemodel: rc={p.returncode} {lines}")

    if failures:
        for f in failures:
            print("FAIL", f)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
