#!/usr/bin/env python3
"""BF16 fast paths against the FP32 reference (`--kernels portable`: im2col/GEMM, FP32).

Skips (exit 77) on CPUs without AVX512_BF16, where `--kernels bf16` falls back to FP32.
Whatever the engine's BF16 settings select is exercised: `--kernels bf16` (the level of
model.precision: bf16 in usviewd) and, on the phantom only, `--kernels bf16-all` (BF16
convolutions too; for benchmarks and evaluation). The layers a setting puts on BF16 are
read from `usview bench --profile` (kernel names containing "bf16") and printed; the
assertions hold for any such set of layers.

1. Real images: the 841 gallbladder test images (shared data) through the real MobileNet
   v1 (TFLite extractor + ImageNet head, `usview import-tflite`), `usview classify --json
   --top 5` with --kernels portable and bf16. Top-1 agreement >= 99.5 % (the issue's rule),
   and the probability of the reference's top-1 class within PROB_TOL. If no MobileNet
   layer is on BF16, the two runs must agree to FP32 rounding (1e-5).
2. Phantom (`usview phantom`, 8 studies = 88 images, 1024x768 and 716x537) through the
   built-in CaffeNet (all 88) and VGG16 (first 16) with random weights: fc8 logits from
   `usview forward` with --kernels portable, default (Winograd FP32), bf16 and bf16-all.
   Per image, max |logit - reference| / max |reference logit| <= LOGIT_TOL (both BF16
   levels), median over the images <= LOGIT_TOL_MEDIAN, and <= WINO_TOL for the FP32
   Winograd path; each BF16 run must differ from the reference (else the setting selected
   nothing). The gallbladder set is not run with bf16-all (a third pass of 841 images):
   that level agrees on about 96 % there (measured for nn/src/kern_select.c; 96.7 % in the
   emulation below), below the rule, which is why it is not a daemon setting. Top-1
   agreement is printed, not asserted, on the phantom: random-weight logits are 99 %
   correlated across these images and their top-2 margins go down to 0.1 % of the largest
   logit, below BF16 rounding (see LOGIT_TOL), so top-1 there measures ties, not kernels.

Tolerances (measured on the 2-core Zen 4 machine, seeds below):
- LOGIT_TOL 0.03, LOGIT_TOL_MEDIAN 0.015: --kernels bf16 (fc6-fc8 on BF16) gives max
  0.0096 / median 0.0060 (CaffeNet) and 0.0063 / 0.0038 (VGG16); bf16-all (CaffeNet conv1
  and conv2 too; Winograd layers stay FP32) 0.012 / 0.0073, VGG16 unchanged. An independent
  PyTorch emulation (weights and layer inputs rounded to bfloat16, FP32 sums) reproduces
  these (0.0095 / 0.0060, 0.0064 / 0.0039) and predicts, with every convolution in BF16
  too, max 0.0156 / median 0.0091 (CaffeNet) and 0.0079 / 0.0054 (VGG16): the bounds are
  about twice the all-BF16 prediction. Unit roundoff of bfloat16 is 2^-9 = 0.2 %; inputs
  and weights are both rounded and the error compounds over 8 (CaffeNet) to 16 layers.
- MobileNet, --kernels bf16 (only the logits layer, a 1x1 convolution of a 1x1 input, on
  BF16): 837 of 841 agree (99.52 %, the rule allows 4 differences); the 4 are near ties
  (FP32 top-1 minus top-2 probability 7e-6 to 3.3e-4): the ImageNet head's answers on these
  ultrasound images are flat (median top-1 probability 0.14, 110 images with a top-2 margin
  below 0.01). PROB_TOL 0.02: measured max 0.0044 (median 0.0004). With every
  non-depthwise convolution in BF16 the emulation changes them by up to 0.065.
- WINO_TOL 1e-4: FP32 Winograd F(4x4,3x3) measures 2.9e-6 (CaffeNet), 2.1e-6 (VGG16).
Run time: about a minute on 2 cores (the two classify passes run side by side).
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

USVIEW = os.environ["USVIEW"]
SRC = os.environ.get("USV_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SHARED = os.environ.get("USV_SHARED_DIR", os.path.join(SRC, "..", "shared"))
MN = os.path.join(SHARED, "models", "mobilenet")
GB_TEST = os.path.join(SHARED, "data", "images", "gallbladder-ba", "test_data")

AGREE_MIN = 0.995
PROB_TOL = 0.02
LOGIT_TOL = 0.03
LOGIT_TOL_MEDIAN = 0.015
WINO_TOL = 1e-4
FP32_TOL = 1e-5

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def has_bf16():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags") and "avx512_bf16" in line.split():
                return True
    return False


def run(args, timeout=600):
    p = subprocess.run([USVIEW] + args, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        sys.exit(f"FAIL: usview {' '.join(args[:3])}...: rc {p.returncode}: {p.stderr.strip()}")
    return p


def bf16_layers(model, kernels="bf16"):
    """Names of the layers that --kernels KERNELS puts on a BF16 kernel."""
    p = run(["bench", "--model", model, "--kernels", kernels, "--profile", "--iters", "1",
             "--warmup", "0"])
    out = []
    for line in p.stderr.splitlines():
        f = line.split()
        if len(f) >= 4 and f[-1] == "ms/image" and "bf16" in f[1]:
            out.append(f[0])
    return out


def mobilenet(tmp):
    model = os.path.join(tmp, "mnv1.usvm")
    run(["import-tflite", os.path.join(MN, "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"),
         "--head", os.path.join(MN, "mobilenet_quant_v1_224_head_layers.tflite"),
         "--labels", os.path.join(MN, "imagenet_labels.txt"), "-o", model])
    # the test set is label.csv's list (file,label; no header)
    with open(os.path.join(GB_TEST, "label.csv")) as f:
        files = [os.path.join(GB_TEST, r[0]) for r in csv.reader(f) if r]
    check(len(files) == 841 and all(os.path.isfile(p) for p in files),
          f"gallbladder test set: {len(files)} files listed, expected 841 present")
    layers = bf16_layers(model)
    print(f"mobilenet v1: {len(layers)} layers on BF16: {', '.join(layers) or 'none'}")
    procs = {}
    for k in ("portable", "bf16"):
        out = open(os.path.join(tmp, f"gb-{k}.jsonl"), "w")
        procs[k] = (subprocess.Popen([USVIEW, "classify", "-m", model, "--kernels", k, "--json",
                                      "--top", "5", "--threads", "1"] + files, stdout=out,
                                     stderr=subprocess.PIPE, text=True), out)
    res = {}
    for k, (p, out) in procs.items():
        _, err = p.communicate(timeout=600)
        out.close()
        if p.returncode != 0:
            sys.exit(f"FAIL: classify --kernels {k}: rc {p.returncode}: {err.strip()}")
        with open(out.name) as f:
            res[k] = {r["file"]: r["top"] for r in map(json.loads, f)}
    ref, got = res["portable"], res["bf16"]
    check(len(ref) == len(files) and set(ref) == set(got),
          f"classify: {len(ref)} / {len(got)} results for {len(files)} files")
    agree, dp, differ = 0, [], []
    for name, rt in ref.items():
        gt = got[name]
        agree += rt[0]["index"] == gt[0]["index"]
        if rt[0]["index"] != gt[0]["index"]:
            differ.append(f"{os.path.basename(name)} (p1-p2 {rt[0]['prob'] - rt[1]['prob']:.2g})")
        pb = {e["index"]: e["prob"] for e in gt}
        # the reference's top-1 class outside bf16's top 5 is a failure in itself
        dp.append(abs(pb[rt[0]["index"]] - rt[0]["prob"]) if rt[0]["index"] in pb else 1.0)
    n = len(ref)
    rate = agree / n
    margins = sorted(rt[0]["prob"] - rt[1]["prob"] for rt in ref.values())
    print(f"mobilenet v1, gallbladder test set: {n} images, top-1 agreement {rate:.4f} "
          f"({n - agree} differ), |dp top-1| max {max(dp):.3g} median {np.median(dp):.3g}; "
          f"reference top-1 prob median {np.median([r[0]['prob'] for r in ref.values()]):.3f}, "
          f"top-2 margin < 0.01 on {sum(m < 0.01 for m in margins)} images")
    if differ:
        print("  top-1 differs on: " + ", ".join(differ))
    check(rate >= AGREE_MIN, f"mobilenet top-1 agreement {rate:.4f} < {AGREE_MIN}")
    tol = PROB_TOL if layers else FP32_TOL
    check(max(dp) <= tol, f"mobilenet top-1 probability differs by {max(dp):.3g} > {tol}")


def phantom_tensor(root, rows, size):
    """Images of the phantom as Caffe-style BGR tensors (resize 256, centre crop, mean)."""
    import cv2
    import pydicom
    xs = []
    for r in rows:
        a = pydicom.dcmread(os.path.join(root, r["path"])).pixel_array.astype(np.float32)
        a = cv2.resize(a, (256, 256), interpolation=cv2.INTER_AREA)
        o = (256 - size) // 2
        a = a[o:o + size, o:o + size]
        xs.append(np.stack([a - 104.0, a - 117.0, a - 123.0]))
    return np.ascontiguousarray(np.stack(xs), dtype=np.float32)


def phantom(tmp):
    root = os.path.join(tmp, "phantom")
    run(["phantom", "--out", root, "--studies", "8", "--seed", "7"])
    with open(os.path.join(root, "labels.csv")) as f:
        rows = list(csv.DictReader(f))
    check(len(rows) == 88, f"phantom: {len(rows)} images, expected 88")
    for arch, n, size in (("caffenet", 88, 227), ("vgg16", 16, 224)):
        model = os.path.join(tmp, arch + ".usvm")
        run(["bench", "--arch", arch, "--iters", "1", "--warmup", "0", "--save", model])
        for k in ("bf16", "bf16-all"):
            layers = bf16_layers(model, k)
            print(f"{arch} {k}: {len(layers)} layers on BF16: {', '.join(layers) or 'none'}")
            check({"fc6", "fc7"} <= set(layers), f"{arch} {k}: fc6, fc7 not on BF16: {layers}")
        xin = os.path.join(tmp, f"x-{arch}.npy")
        np.save(xin, phantom_tensor(root, rows[:n], size))
        y = {}
        for k in ("portable", "default", "bf16", "bf16-all"):
            out = os.path.join(tmp, f"y-{arch}-{k}.npy")
            run(["forward", "-m", model, "--in", xin, "--layer", "fc8", "--out", out,
                 "--threads", "2", "--kernels", k])
            y[k] = np.load(out).reshape(n, -1)
        os.remove(model)
        ref = y["portable"]
        scale = np.abs(ref).max(axis=1)
        check(bool(np.all(np.isfinite(ref))) and bool(np.all(scale > 0)),
              f"{arch}: reference logits not finite or all zero")
        s = np.sort(ref, axis=1)
        margin = (s[:, -1] - s[:, -2]) / scale
        for k, tol in (("default", WINO_TOL), ("bf16", LOGIT_TOL), ("bf16-all", LOGIT_TOL)):
            rel = np.abs(y[k] - ref).max(axis=1) / scale
            agree = float(np.mean(y[k].argmax(axis=1) == ref.argmax(axis=1)))
            print(f"{arch} {k:8} vs portable, {n} phantom images: max rel diff "
                  f"{rel.max():.3g} median {np.median(rel):.3g}, top-1 agreement {agree:.4f} "
                  f"(reference top-2 margin / max logit: min {margin.min():.2g}, "
                  f"< {tol:g} on {int(np.sum(margin < tol))})")
            check(rel.max() <= tol, f"{arch} {k}: max rel logit diff {rel.max():.3g} > {tol}")
            if k != "default":
                check(np.median(rel) <= LOGIT_TOL_MEDIAN,
                      f"{arch} {k}: median rel logit diff {np.median(rel):.3g} > "
                      f"{LOGIT_TOL_MEDIAN}")
                check(rel.max() > 0, f"{arch} {k}: logits identical to FP32: nothing on BF16")


def main():
    if not has_bf16():
        print("SKIP: this CPU has no AVX512_BF16 (--kernels bf16 falls back to FP32)")
        return 77
    with tempfile.TemporaryDirectory(prefix="usv-bf16-") as tmp:
        mobilenet(tmp)
        phantom(tmp)
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
