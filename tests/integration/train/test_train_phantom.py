#!/usr/bin/env python3
"""usview train (mobilenet preset) on phantom DICOM studies, then usview eval
on held-out studies: the output model must classify the 11 views far above
chance, the engine's forward of the assembled model must agree with the
trainer's own validation accuracy, the provenance must carry the learning
curve, labels, preset and dataset hash, and a rerun must hit the feature
cache."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

USVIEW = os.environ["USVIEW"]
SHARED = os.environ.get("USV_SHARED_DIR", "../shared")
EXTRACTOR = os.path.join(SHARED, "models/mobilenet/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")


def sh(*args):
    return subprocess.run([USVIEW, *args], check=True, capture_output=True, text=True).stdout


def provenance(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    meta = json.loads(hdr["__metadata__"]["usview"])["meta"]
    prov = meta["provenance"]
    return meta, (json.loads(prov) if isinstance(prov, str) else prov)


def tensor_bytes(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = []
    for name in sorted(k for k in hdr if k != "__metadata__"):
        a, b = hdr[name]["data_offsets"]
        out.append((name, data[a:b]))
    return out


def check_report(html, tmp):
    text = open(html, encoding="utf-8").read()
    # self-contained: inline SVG and data: images, no external reference
    assert "<svg" in text and "data:image/png;base64," in text
    for bad in ("http://", "https://", "<script", "<link"):
        assert bad not in text.replace('xmlns="http://www.w3.org/2000/svg"', ""), bad
    assert "t-SNE" in text and "Confusion matrix" in text and "Learning curve" in text
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed (scripts/install-deps.sh installs it)"
    png = os.path.join(tmp, "report.png")
    prof = os.path.join(tmp, "chromium-profile")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", f"--user-data-dir={prof}",
                    f"--screenshot={png}", "--window-size=1200,2000", "file://" + html],
                   check=True, capture_output=True, timeout=120)
    import cv2
    import numpy as np
    img = cv2.imread(png)
    assert img is not None and img.shape[:2] == (2000, 1200), None if img is None else img.shape
    grey = img.mean(axis=2)
    # not blank: dark text and coloured cells on a white page
    assert grey.std() > 20, grey.std()
    assert (grey < 128).mean() > 0.01, (grey < 128).mean()
    blue = (img[:, :, 0] > 200) & (img[:, :, 2] < 120)  # confusion heat map cells
    assert blue.sum() > 2000, blue.sum()


def main():
    tmp = tempfile.mkdtemp(prefix="usv-trainph-")
    try:
        backbone = os.path.join(tmp, "mn.usvm")
        sh("import-tflite", EXTRACTOR, "-o", backbone)
        tr, te = os.path.join(tmp, "train"), os.path.join(tmp, "test")
        sh("phantom", "--out", tr, "--studies", "8", "--seed", "3")
        sh("phantom", "--out", te, "--studies", "3", "--seed", "3", "--first-study", "500")
        cache = os.path.join(tmp, "cache")
        model = os.path.join(tmp, "views.usvm")
        args = ["train", "--preset", "mobilenet", "--backbone", backbone,
                "--data", os.path.join(tr, "labels.csv"), "--val", os.path.join(te, "labels.csv"),
                "-o", model, "--iterations", "300", "--cache", cache, "--seed", "5"]
        out = sh(*args)
        assert "total" in out and "gallbladder" in out  # the dataset table
        meta, prov = provenance(model)
        views = sorted(["liver_left_long", "liver_left_trans", "liver_right_long",
                        "liver_right_trans", "spleen", "pancreas", "kidney_left_long",
                        "kidney_left_trans", "kidney_right_long", "kidney_right_trans",
                        "gallbladder"])
        assert meta["labels"] == views, meta["labels"]
        assert meta["output_layer"] == "prob" and meta["output_is_prob"]
        assert prov["preset"] == "mobilenet" and prov["labels"] == views
        assert len(prov["dataset"]["train"]["sha256"]) == 64
        assert prov["dataset"]["train"]["n"] == 88 and prov["dataset"]["val"]["n"] == 33
        assert abs(prov["solver"]["momentum"] - 0.9) < 1e-6
        assert abs(prov["solver"]["weight_decay"] - 5e-4) < 1e-9
        curve = prov["curve"]
        assert len(curve) >= 5 and curve[-1]["iter"] == 300
        assert curve[-1]["train_loss"] < curve[0]["train_loss"]
        assert all("val_acc" in p for p in curve)

        ev = os.path.join(tmp, "eval")
        m = json.loads(sh("eval", "-m", model, "--data", os.path.join(te, "labels.csv"),
                          "--out", ev, "--json"))
        assert m["n"] == 33
        # 11 classes: chance is 0.09
        assert m["top1"] >= 0.8, m["top1"]
        assert m["top2"] >= m["top1"]
        # the engine running the written model agrees with the trainer's head
        assert abs(m["top1"] - prov["metrics"]["val_top1"]) <= 1.5 / 33, (m["top1"], prov["metrics"])
        assert set(m["per_manufacturer"]) == {"philips", "toshiba"}
        with open(os.path.join(ev, "predictions.csv")) as f:
            lines = f.read().splitlines()
        assert len(lines) == 34 and lines[0].startswith("file,truth,manufacturer,top1,p1")
        fj = json.load(open(os.path.join(ev, "features.json")))
        assert fj["n"] == 33 and fj["dim"] == 256
        assert os.path.getsize(os.path.join(ev, "features.f32")) == 33 * 256 * 4

        # images the pipeline excludes (colour Doppler) or cannot read: an
        # error by default, skipped with --skip-unreadable
        mixed = os.path.join(te, "mixed.csv")
        colour = os.path.join(SHARED, "data/dicom/us/pydicom-data__US1_UNCR.dcm")
        junk = os.path.join(tmp, "junk.dcm")
        with open(junk, "wb") as f:
            f.write(b"\0" * 128 + b"DICM" + b"garbage" * 10)
        with open(os.path.join(te, "labels.csv")) as f, open(mixed, "w") as g:
            g.write(f.read())
            g.write(f"{colour},spleen,X1,other\n{junk},spleen,X2,other\n")
        r = subprocess.run([USVIEW, "eval", "-m", model, "--data", mixed, "--json"],
                           capture_output=True, text=True)
        assert r.returncode == 1 and "colour" in r.stderr, r.stderr
        r = subprocess.run([USVIEW, "eval", "-m", model, "--data", mixed, "--json",
                            "--skip-unreadable"], capture_output=True, text=True, check=True)
        m2 = json.loads(r.stdout)
        assert "skipped 2" in r.stderr, r.stderr
        assert m2["n"] == 33 and m2["top1"] == m["top1"], m2

        # the HTML report, rendered by headless Chromium
        html = os.path.join(tmp, "report.html")
        sh("report", "-m", model, "--eval", ev, "--data", os.path.join(te, "labels.csv"),
           "-o", html)
        check_report(html, tmp)

        # rerun: every feature comes from the cache
        model2 = os.path.join(tmp, "views2.usvm")
        args[args.index(model)] = model2
        sh(*args)
        _, prov2 = provenance(model2)
        t1, t2 = prov["time_s"]["features"], prov2["time_s"]["features"]
        assert t2 < 0.5 * t1, (t1, t2)
        assert prov2["metrics"] == prov["metrics"], (prov2["metrics"], prov["metrics"])
        # seeded and deterministic: the same weights, byte for byte
        assert tensor_bytes(model) == tensor_bytes(model2)
        print(f"train/eval on phantom ok: top1 {m['top1']:.3f}, features {t1:.1f}s -> {t2:.2f}s cached")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
