#!/usr/bin/env python3
"""MobileNet TFLite import + classify against an independent reference run.

Imports MobileNet v1 (Coral embedding extractor + head) and v2 with
`usview import-tflite`, classifies the shared test images with
`usview classify --json` and checks label and probability against the
values of an independent reference run (shared/README.md): v1 military
uniform 0.892, Egyptian cat 0.848, chickadee 0.808; v2 0.920, 0.784, 0.990,
each within 0.03. The same images re-encoded by PIL as PNG and JPEG must
give the same top-1 label. Bad inputs (a garbage file among good ones, a
garbage model, a model with an unsupported op) must give one error line
naming the file and a non-zero exit.
"""
import json
import os
import subprocess
import sys
import tempfile

from PIL import Image

USVIEW = os.environ["USVIEW"]
SHARED = os.environ.get("USV_SHARED_DIR", "../shared")
MN = os.path.join(SHARED, "models", "mobilenet")
LABELS = os.path.join(MN, "imagenet_labels.txt")

EXPECTED = {
    "v1": {"grace_hopper.bmp": ("military uniform", 0.892),
           "cat.bmp": ("Egyptian cat", 0.848),
           "bird.bmp": ("chickadee", 0.808)},
    "v2": {"grace_hopper.bmp": ("military uniform", 0.920),
           "cat.bmp": ("Egyptian cat", 0.784),
           "bird.bmp": ("chickadee", 0.990)},
}
TOL = 0.03

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def run(args, expect_rc=0):
    p = subprocess.run([USVIEW] + args, capture_output=True, text=True, timeout=300)
    if expect_rc is not None and p.returncode != expect_rc:
        print(p.stdout, p.stderr)
        raise SystemExit(f"usview {args[0]} exited {p.returncode}, expected {expect_rc}")
    return p


def main():
    with open(LABELS) as f:
        labels = [l.rstrip("\n") for l in f]
    check(len(labels) == 1001, f"labels file has {len(labels)} lines, expected 1001")
    check(labels[0] == "background", f"label 0 is {labels[0]!r}, expected background")

    with tempfile.TemporaryDirectory(prefix="usv-tflite-") as tmp:
        models = {
            "v1": os.path.join(tmp, "v1.usvm"),
            "v2": os.path.join(tmp, "v2.usvm"),
        }
        run(["import-tflite",
             os.path.join(MN, "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"),
             "--head", os.path.join(MN, "mobilenet_quant_v1_224_head_layers.tflite"),
             "--labels", LABELS, "-o", models["v1"]])
        run(["import-tflite", os.path.join(MN, "mobilenet_v2_1.0_224_quant.tflite"),
             "--labels", LABELS, "-o", models["v2"]])

        imgs = [os.path.join(MN, n) for n in ("grace_hopper.bmp", "cat.bmp", "bird.bmp")]
        for ver, mpath in models.items():
            p = run(["classify", "-m", mpath, "--json", "--top", "3"] + imgs)
            lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
            check(len(lines) == 3, f"{ver}: {len(lines)} result lines")
            for r in lines:
                name = os.path.basename(r["file"])
                want_label, want_p = EXPECTED[ver][name]
                top = r["top"][0]
                print(f"{ver} {name}: {top['label']} {top['prob']:.4f} "
                      f"(reference {want_label} {want_p})")
                check(top["label"] == want_label,
                      f"{ver} {name}: top-1 {top['label']!r}, expected {want_label!r}")
                check(abs(top["prob"] - want_p) <= TOL,
                      f"{ver} {name}: p={top['prob']:.4f}, reference {want_p} +- {TOL}")
                check(len(r["top"]) == 3 and r["top"][0]["prob"] >= r["top"][1]["prob"]
                      >= r["top"][2]["prob"], f"{ver} {name}: top-3 not sorted")
                check(labels[top["index"]] == top["label"], f"{ver} {name}: label/index")

        # PNG and JPEG copies (encoded by PIL) classify the same; a garbage
        # file in the middle is reported and skipped, exit status 1.
        alt = []
        for n in ("grace_hopper", "cat"):
            im = Image.open(os.path.join(MN, n + ".bmp")).convert("RGB")
            png = os.path.join(tmp, n + ".png")
            jpg = os.path.join(tmp, n + ".jpg")
            im.save(png)
            im.save(jpg, quality=95)
            alt += [png, jpg]
        bad = os.path.join(tmp, "garbage.png")
        with open(bad, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
        p = run(["classify", "-m", models["v1"], "--json"] + alt[:2] + [bad] + alt[2:],
                expect_rc=1)
        lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
        check(len(lines) == 4, f"alt formats: {len(lines)} results, expected 4")
        for r in lines:
            name = os.path.basename(r["file"]).split(".")[0] + ".bmp"
            check(r["top"][0]["label"] == EXPECTED["v1"][name][0],
                  f"{r['file']}: {r['top'][0]['label']}")
            check(abs(r["top"][0]["prob"] - EXPECTED["v1"][name][1]) <= 0.05,
                  f"{r['file']}: p={r['top'][0]['prob']:.4f}")
        err = p.stderr.strip().splitlines()
        check(len(err) == 1 and "garbage.png" in err[0], f"bad-file error lines: {err}")

        # text output
        p = run(["classify", "-m", models["v2"], imgs[2]])
        check(p.stdout.startswith(imgs[2] + ": chickadee 0.9"), f"text output: {p.stdout!r}")

        # garbage model, unsupported op, truncated model
        g = os.path.join(tmp, "garbage.tflite")
        with open(g, "wb") as f:
            f.write(os.urandom(64) + b"TFL3" + os.urandom(2000))
        for path in (g,):
            p = run(["import-tflite", path, "-o", os.path.join(tmp, "x.usvm")], expect_rc=None)
            e = p.stderr.strip().splitlines()
            check(p.returncode != 0 and len(e) == 1 and path in e[0], f"garbage model: {e}")
        src = open(os.path.join(MN, "mobilenet_v1_0.25_128_quant.tflite"), "rb").read()
        t = os.path.join(tmp, "trunc.tflite")
        with open(t, "wb") as f:
            f.write(src[: len(src) // 3])
        p = run(["import-tflite", t, "-o", os.path.join(tmp, "x.usvm")], expect_rc=None)
        e = p.stderr.strip().splitlines()
        check(p.returncode == 1 and len(e) == 1 and t in e[0], f"truncated model: {e}")
        check(not os.path.exists(os.path.join(tmp, "x.usvm")), "output written on failure")
        # labels that do not fit the output size
        short = os.path.join(tmp, "short.txt")
        with open(short, "w") as f:
            f.write("a\nb\n")
        p = run(["import-tflite", os.path.join(MN, "mobilenet_v1_0.25_128_quant.tflite"),
                 "--labels", short, "-o", os.path.join(tmp, "y.usvm")], expect_rc=1)
        check("short.txt" in p.stderr, f"label count error: {p.stderr!r}")

    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
