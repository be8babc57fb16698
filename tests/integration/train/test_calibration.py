#!/usr/bin/env python3
"""Temperature scaling on real data: paediatric gallbladder ultrasound
(biliary atresia or not), MobileNet v1 embedding + FC head as in
test_gallbladder.py, but with a validation split (--val-fraction 0.2, whole
patients held out) on which usview train fits the temperature T.

Checks:
- T is fitted (!= 1), stored in the model (model-info, eval's JSON and the
  provenance agree), and the validation NLL did not get worse;
- --no-calibrate gives the same head (identical tensor bytes) with T = 1;
- on the external test set (841 images): usview eval's ECE equals an
  independent Python ECE of its predictions.csv; with T the ECE is lower
  than with --temperature 1 (the same head, uncalibrated), the NLL is not
  higher, and top-1 / AUC are unchanged (T does not move the argmax);
- usview report draws the reliability diagram (well-formed inline SVG,
  one bar per non-empty bin) with the ECE in its caption.

The 0.05 ECE target: measured 0.0549 with T and 0.0558 without (seed 1).
Even the T fitted on the test set itself (an oracle) only reaches about
0.053, so no single temperature gets this head under 0.05 on the external
set: the remaining gap is the shift between the training hospital's
validation patients and the external ones (confidence bins between 0.5 and
0.8 under-confident, above 0.8 over-confident), which one scalar cannot
fix. The test asserts the measured level (<= 0.06) and prints whether the
target is met.

Features are cached under the build tree (USV_BINARY_DIR), so only the
first run pays for the feature pass (about 2 minutes on 2 cores); later
runs take about 1 minute (two evaluations of 841 images)."""
import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

USVIEW = os.environ["USVIEW"]
SHARED = os.environ.get("USV_SHARED_DIR", "../shared")
DATA = os.path.join(SHARED, "data/images/gallbladder-ba")
EXTRACTOR = os.path.join(SHARED, "models/mobilenet/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
BINS = 15


def run(*args):
    return subprocess.run([USVIEW, *args], check=True, capture_output=True, text=True).stdout


def ref_ece(pred_csv):
    """ECE of predictions.csv, computed here from the p_<label> columns:
    15 bins (b/15, (b+1)/15], confidence = the largest probability (first
    on ties), correct = its label is the truth."""
    with open(pred_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    labels = [k[2:] for k in rows[0] if k.startswith("p_")]
    bins = [[0, 0.0, 0] for _ in range(BINS)]
    for r in rows:
        ps = [float(r["p_" + lab]) for lab in labels]
        top = max(range(len(ps)), key=lambda k: (ps[k], -k))
        c = ps[top]
        b = min(BINS - 1, max(0, math.ceil(c * BINS) - 1))
        bins[b][0] += 1
        bins[b][1] += c
        bins[b][2] += labels[top] == r["truth"]
    n = len(rows)
    return sum(cnt / n * abs(ok / cnt - sc / cnt) for cnt, sc, ok in bins if cnt), bins


def data_area(path):
    with open(path, "rb") as f:
        b = f.read()
    return b[8 + int.from_bytes(b[:8], "little"):]


def main():
    cache = os.path.join(os.environ.get("USV_BINARY_DIR", tempfile.gettempdir()),
                         "tests", "feature-cache-gallbladder")
    os.makedirs(cache, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="usv-cal-")
    try:
        t0 = time.time()
        bb = os.path.join(tmp, "mn.usvm")
        run("import-tflite", EXTRACTOR, "-o", bb)
        train = ["train", "--preset", "mobilenet", "--backbone", bb,
                 "--data", os.path.join(DATA, "training_data/label.csv"), "--group-sep", "_",
                 "--views", "1", "--seed", "1", "--val-fraction", "0.2", "--cache", cache]
        cal = os.path.join(tmp, "cal.usvm")
        out = run(*train, "-o", cal)
        m = re.search(r"calibration: temperature ([0-9.]+) on (\d+) validation images", out)
        assert m, out
        t_printed = float(m.group(1))
        raw = os.path.join(tmp, "raw.usvm")
        out_raw = run(*train, "--no-calibrate", "-o", raw)
        assert "calibration: none (--no-calibrate), temperature 1" in out_raw, out_raw
        t1 = time.time()

        # T stored: model-info, provenance
        info = run("model-info", cal)
        mt = re.search(r"^temperature:\s+(\S+)", info, re.M)
        assert mt, info
        temp = float(mt.group(1))
        assert abs(temp - t_printed) < 1e-4 and abs(temp - 1) > 1e-3, (temp, t_printed)
        prov = json.loads(re.search(r"^provenance:\s+(.*)$", info, re.M).group(1))
        c = prov["metrics"]["calibration"]
        assert abs(c["temperature"] - temp) < 1e-5, c
        assert c["n"] == int(m.group(2)) and c["bins"] == BINS, c
        assert c["val_nll_after"] <= c["val_nll_before"] + 1e-9, c
        assert re.search(r"^temperature:\s+1 ", run("model-info", raw), re.M)
        # --no-calibrate: the same head, only the header differs
        assert data_area(raw) == data_area(cal)

        # the external test set, calibrated and with T forced to 1
        test = os.path.join(DATA, "test_data/label.csv")
        ev = {}
        for name, extra in (("cal", []), ("t1", ["--temperature", "1"])):
            d = os.path.join(tmp, "ev-" + name)
            ev[name] = json.loads(run("eval", "-m", cal, "--data", test, "--group-sep", "_",
                                      "--json", "--out", d, *extra))
            ev[name]["dir"] = d
        t2 = time.time()
        a, b = ev["cal"], ev["t1"]
        assert a["n"] == b["n"] == 841
        assert abs(a["temperature"] - temp) < 1e-5 and b["temperature"] == 1
        for e in (a, b):
            r, rbins = ref_ece(os.path.join(e["dir"], "predictions.csv"))
            # predictions.csv rounds to 6 decimals
            assert abs(r - e["ece"]) < 1e-4, (r, e["ece"])
            got = e["calibration"]["bins"]
            assert len(got) == BINS
            assert [g["n"] for g in got] == [x[0] for x in rbins]
        assert a["top1"] == b["top1"] and abs(a["auc"] - b["auc"]) < 1e-9, (a["top1"], b["top1"])
        print(f"calibration: T {temp:.4f} (validation ECE {c['val_ece_before']:.4f} -> "
              f"{c['val_ece_after']:.4f}, NLL {c['val_nll_before']:.4f} -> "
              f"{c['val_nll_after']:.4f}); external test: ECE {b['ece']:.4f} -> {a['ece']:.4f}, "
              f"NLL {b['nll']:.4f} -> {a['nll']:.4f}, top-1 {a['top1']:.4f}, AUC {a['auc']:.4f} "
              f"(train {t1 - t0:.0f} s, eval {t2 - t1:.0f} s)")
        print("target ECE <= 0.05 on the external test set: "
              + ("met" if a["ece"] <= 0.05 else f"NOT met ({a['ece']:.4f})"))
        assert a["ece"] < b["ece"], (a["ece"], b["ece"])
        assert a["nll"] <= b["nll"] + 1e-4, (a["nll"], b["nll"])
        assert a["ece"] <= 0.06, a["ece"]

        # the reliability diagram in the report
        os.remove(os.path.join(a["dir"], "features.json"))  # no t-SNE: not tested here
        html = os.path.join(tmp, "r.html")
        run("report", "-m", cal, "--eval", a["dir"], "-o", html, "--max-errors", "0")
        with open(html, encoding="utf-8") as f:
            page = f.read()
        i = page.index("<h2>Calibration</h2>")
        fig = page[page.index("<figure", i):page.index("</figure>", i) + len("</figure>")]
        root = ET.fromstring(fig)
        svg = root.find("{http://www.w3.org/2000/svg}svg")
        assert svg is not None, fig[:200]
        titles = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
        assert len(titles) == sum(1 for g in a["calibration"]["bins"] if g["n"] > 0), titles
        cap = "".join(root.find("figcaption").itertext())
        assert f"ECE {a['ece']:.4f}" in cap and f"temperature {temp:.4f}" in cap, cap
        assert "<script" not in page
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
