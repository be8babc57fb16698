#!/usr/bin/env python3
"""Caffe import: every layer's output against OpenCV's DNN module.

For each shared Caffe model (mini CaffeNet, V2 format; CIFAR-10 quick and
full, legacy V1 format) the network is imported with `usview import-caffe`
(built from the prototxt, no --arch), random inputs are written as .npy,
and `usview forward --layer L` is compared with OpenCV's
cv2.dnn.readNetFromCaffe(...).forward(L) on the same input, layer fusion
disabled so every layer's own output is defined: for every layer
max |usview - opencv| <= 1e-4 * max |opencv|.

`usview classify` on the mini CaffeNet imported with the ILSVRC mean image
(BGR, area resize to 256, centre crop 227, mean image subtracted) gives the
probabilities of the same pipeline done with OpenCV (cv2.resize INTER_AREA)
within 6e-4 (a swapped channel order differs by 0.15, bilinear resizing by
1.2e-3).

Also: truncated / garbage caffemodels and a prototxt with an unknown layer
through the CLI give one error line naming the file and exit status 1.
"""
import json
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np

USVIEW = os.environ["USVIEW"]
SHARED = os.environ.get("USV_SHARED_DIR", "../shared")
CAFFE = os.path.join(SHARED, "models", "caffe")

MODELS = [
    ("mini_caffenet", "mini_caffenet_deploy.prototxt", "mini_caffenet.caffemodel", (3, 227, 227)),
    ("cifar10_quick", "cifar10_quick.prototxt", "cifar10_quick_iter_5000.caffemodel", (3, 32, 32)),
    ("cifar10_full", "cifar10_full.prototxt", "cifar10_full_iter_70000.caffemodel", (3, 32, 32)),
]
REL_TOL = 1e-4

# A synthetic V2 network for the layer kinds the shared models lack: an
# Input layer, rectangular kernels and pads, Eltwise SUM, Concat, AVE
# pooling with padding, a grouped strided convolution, MAX pooling with
# ceil rounding, global pooling, Flatten, an InnerProduct without bias,
# in-place Dropout.
SYNTH_PROTOTXT = """name: "synthetic"
layer { name: "in" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 20 dim: 23 } } }
layer { name: "conv_a" type: "Convolution" bottom: "data" top: "conv_a"
        convolution_param { num_output: 8 kernel_h: 3 kernel_w: 5 pad_h: 1 pad_w: 2 } }
layer { name: "relu_a" type: "ReLU" bottom: "conv_a" top: "conv_a" }
layer { name: "conv_b" type: "Convolution" bottom: "data" top: "conv_b"
        convolution_param { num_output: 8 kernel_size: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "conv_a" bottom: "conv_b" top: "sum"
        eltwise_param { operation: SUM } }
layer { name: "cat" type: "Concat" bottom: "sum" bottom: "conv_b" top: "cat" }
layer { name: "pool_ave" type: "Pooling" bottom: "cat" top: "pool_ave"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "conv_g" type: "Convolution" bottom: "pool_ave" top: "conv_g"
        convolution_param { num_output: 8 kernel_size: 3 group: 4 stride: 2 pad: 1 } }
layer { name: "pool_max" type: "Pooling" bottom: "conv_g" top: "pool_max"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "gpool" type: "Pooling" bottom: "conv_g" top: "gpool"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "flat" type: "Flatten" bottom: "pool_max" top: "flat" }
layer { name: "fc" type: "InnerProduct" bottom: "flat" top: "fc"
        inner_product_param { num_output: 5 bias_term: false } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" dropout_param { dropout_ratio: 0.3 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""
SYNTH_BLOBS = [  # name, weight shape, has bias
    ("conv_a", (8, 3, 3, 5), True),
    ("conv_b", (8, 3, 1, 1), True),
    ("conv_g", (8, 4, 3, 3), True),
    ("fc", (5, 8 * 3 * 3), False),
]


def pb_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def pb_ld(field, payload):
    return pb_varint(field << 3 | 2) + pb_varint(len(payload)) + payload


def write_synthetic(tmp):
    proto = os.path.join(tmp, "synthetic.prototxt")
    with open(proto, "w") as f:
        f.write(SYNTH_PROTOTXT)
    rng = np.random.default_rng(11)
    model = pb_ld(1, b"synthetic")
    for name, shape, bias in SYNTH_BLOBS:
        arrs = [rng.standard_normal(shape).astype("<f4") * 0.3]
        if bias:
            arrs.append(rng.standard_normal(shape[0]).astype("<f4"))
        layer = pb_ld(1, name.encode())
        for a in arrs:
            dims = b"".join(pb_varint(d) for d in a.shape)
            layer += pb_ld(7, pb_ld(7, pb_ld(1, dims)) + pb_ld(5, a.tobytes()))
        model += pb_ld(100, layer)
    weights = os.path.join(tmp, "synthetic.caffemodel")
    with open(weights, "wb") as f:
        f.write(model)
    return proto, weights


failures = []


def run(args, check=True):
    p = subprocess.run([USVIEW] + args, capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        print(p.stdout, p.stderr)
        raise SystemExit(f"usview {' '.join(args[:1])} failed ({p.returncode})")
    return p


def compare_model(tmp, tag, proto, weights, chw):
    proto = os.path.join(CAFFE, proto)
    weights = os.path.join(CAFFE, weights)
    model = os.path.join(tmp, tag + ".usvm")
    run(["import-caffe", "--prototxt", proto, "--weights", weights, "-o", model])

    net = cv2.dnn.readNetFromCaffe(proto, weights)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.enableFusion(False)
    rng = np.random.default_rng(20261125)
    # two images, pixel-like range around zero (mean-subtracted input)
    x = (rng.standard_normal((2,) + chw) * 60.0).astype(np.float32)
    xin = os.path.join(tmp, tag + "_in.npy")
    np.save(xin, x)

    names = [n for n in net.getLayerNames() if n not in ("data", "_input", "in")]
    worst = 0.0
    for name in names:
        net.setInput(x)
        ref = net.forward(name)
        out = os.path.join(tmp, "out.npy")
        if os.path.exists(out):
            os.unlink(out)
        p = run(["forward", "-m", model, "--in", xin, "--layer", name, "--out", out],
                check=False)
        if p.returncode != 0:
            failures.append(f"{tag}/{name}: usview forward failed: {p.stderr.strip()}")
            print("FAIL", failures[-1])
            continue
        got = np.load(out)
        if got.size != ref.size:
            failures.append(f"{tag}/{name}: shape {got.shape} vs OpenCV {ref.shape}")
            print("FAIL", failures[-1])
            continue
        got = got.reshape(ref.shape)
        scale = float(np.max(np.abs(ref)))
        diff = float(np.max(np.abs(got.astype(np.float64) - ref)))
        rel = diff / scale if scale > 0 else diff
        worst = max(worst, rel)
        status = "ok" if diff <= REL_TOL * scale else "FAIL"
        print(f"{tag:14s} {name:8s} shape {str(ref.shape):18s} max|ref| {scale:10.4g} "
              f"max|diff| {diff:10.3g} rel {rel:9.2e} {status}")
        if status != "ok":
            failures.append(f"{tag}/{name}: max|diff| {diff:.3g} > {REL_TOL} * {scale:.4g}")
    print(f"{tag}: worst relative difference {worst:.2e} over {len(names)} layers")


def expect_error(args, name):
    p = run(args, check=False)
    lines = p.stderr.strip().splitlines()
    ok = p.returncode == 1 and len(lines) == 1 and name in lines[0]
    print(("ok  " if ok else "FAIL") + f" bad input {name}: rc={p.returncode} {lines}")
    if not ok:
        failures.append(f"bad input {name}: rc={p.returncode} stderr={lines}")


def bad_inputs(tmp):
    proto = os.path.join(CAFFE, "mini_caffenet_deploy.prototxt")
    weights = os.path.join(CAFFE, "mini_caffenet.caffemodel")
    data = open(weights, "rb").read()
    out = os.path.join(tmp, "bad.usvm")
    for cut in (1, 17, len(data) // 2, len(data) - 3):
        t = os.path.join(tmp, f"trunc{cut}.caffemodel")
        with open(t, "wb") as f:
            f.write(data[:cut])
        expect_error(["import-caffe", "--prototxt", proto, "--weights", t, "-o", out], t)
    g = os.path.join(tmp, "garbage.caffemodel")
    with open(g, "wb") as f:
        f.write(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    expect_error(["import-caffe", "--prototxt", proto, "--weights", g, "-o", out], g)
    txt = open(proto).read().replace('type: "LRN"', 'type: "Frobnicate"', 1)
    bp = os.path.join(tmp, "unknown_layer.prototxt")
    with open(bp, "w") as f:
        f.write(txt)
    expect_error(["import-caffe", "--prototxt", bp, "--weights", weights, "-o", out], bp)
    if os.path.exists(out):
        failures.append("a model file was written for a bad input")


def classify_vs_opencv(tmp):
    """usview classify on a Caffe model with a mean image (BGR, resize 256,
    centre crop 227, mean image subtracted) against the same pipeline done
    with OpenCV: cv2.resize INTER_AREA, crop, mean, readNetFromCaffe."""
    proto = os.path.join(CAFFE, "mini_caffenet_deploy.prototxt")
    weights = os.path.join(CAFFE, "mini_caffenet.caffemodel")
    mean_path = os.path.join(CAFFE, "ilsvrc_2012_mean.npy")
    model = os.path.join(tmp, "mini_mean.usvm")
    run(["import-caffe", "--prototxt", proto, "--weights", weights, "--mean", mean_path,
         "-o", model])
    net = cv2.dnn.readNetFromCaffe(proto, weights)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    mean = np.load(mean_path).astype(np.float32)  # [3, 256, 256] BGR
    imgs = [os.path.join(SHARED, "models", "mobilenet", n) for n in ("cat.bmp", "bird.bmp")]
    p = run(["classify", "-m", model, "--json", "--top", "11"] + imgs)
    results = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    if len(results) != len(imgs):
        failures.append(f"classify: {len(results)} results for {len(imgs)} files")
        return
    for path, r in zip(imgs, results):
        bgr = cv2.resize(cv2.imread(path, cv2.IMREAD_COLOR), (256, 256),
                         interpolation=cv2.INTER_AREA).astype(np.float32)
        x = bgr.transpose(2, 0, 1) - mean
        o = (256 - 227) // 2
        x = x[:, o:o + 227, o:o + 227][None].copy()
        net.setInput(x)
        ref = net.forward("prob").reshape(-1)
        got = np.zeros_like(ref)
        for e in r["top"]:
            got[e["index"]] = e["prob"]
        diff = float(np.max(np.abs(got - ref)))
        ok = diff <= 6e-4 and int(np.argmax(ref)) == r["top"][0]["index"]
        print(f"classify {os.path.basename(path)}: top-1 {r['top'][0]['index']} "
              f"(OpenCV {int(np.argmax(ref))}), max|prob diff| {diff:.2e} "
              f"{'ok' if ok else 'FAIL'}")
        if not ok:
            failures.append(f"classify {path}: max|prob diff| {diff:.3g}")


def main():
    with tempfile.TemporaryDirectory(prefix="usv-caffe-") as tmp:
        for tag, proto, weights, chw in MODELS:
            compare_model(tmp, tag, proto, weights, chw)
        sp, sw = write_synthetic(tmp)
        compare_model(tmp, "synthetic", sp, sw, (3, 20, 23))
        classify_vs_opencv(tmp)
        bad_inputs(tmp)
    if failures:
        print(f"{len(failures)} failure(s):")
        for f in failures:
            print("  " + f)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
