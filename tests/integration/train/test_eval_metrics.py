#!/usr/bin/env python3
"""usview eval --predictions on hand-made prediction sets, against metrics
computed here: top-1, top-2, confusion matrix, per-class precision and
recall, per-manufacturer accuracy, and ROC AUC (two classes; one-vs-rest per
class and their mean for three) by brute force over all
positive/negative pairs (ties count 1/2)."""
import json
import os
import random
import subprocess
import sys
import tempfile

USVIEW = os.environ["USVIEW"]


def run(path):
    out = subprocess.run([USVIEW, "eval", "--predictions", path, "--json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def write(path, labels, rows):
    with open(path, "w") as f:
        f.write("file,truth,manufacturer," + ",".join("p_" + l for l in labels) + "\n")
        for name, truth, manu, probs in rows:
            f.write(f"{name},{truth},{manu}," + ",".join(f"{p:.6f}" for p in probs) + "\n")


def main():
    tmp = tempfile.mkdtemp(prefix="usv-evalm-")
    # 1. hand-made three-class set (no ties among the top two)
    labels = ["gallbladder", "liver_right_long", "spleen"]
    rows = [
        ("a.dcm", "gallbladder", "philips", [0.70, 0.20, 0.10]),
        ("b.dcm", "gallbladder", "toshiba", [0.30, 0.60, 0.10]),
        ("c.dcm", "gallbladder", "philips", [0.15, 0.25, 0.60]),
        ("d.dcm", "liver_right_long", "philips", [0.10, 0.80, 0.10]),
        ("e.dcm", "liver_right_long", "toshiba", [0.50, 0.45, 0.05]),
        ("f.dcm", "spleen", "toshiba", [0.05, 0.15, 0.80]),
        ("g.dcm", "spleen", "philips", [0.20, 0.70, 0.10]),
    ]
    p = os.path.join(tmp, "three.csv")
    write(p, labels, rows)
    m = run(p)
    # by hand: predictions a:g b:l c:s d:l e:g f:s g:l -> correct a, d, f
    assert m["n"] == 7
    assert abs(m["top1"] - 3 / 7) < 1e-12, m
    # top-2: a yes, b yes (g second), c no (l second), d yes, e yes, f yes, g no (g second)
    assert abs(m["top2"] - 5 / 7) < 1e-12, m
    assert m["confusion"] == [[1, 1, 1], [1, 1, 0], [0, 1, 1]], m["confusion"]
    pc = m["per_class"]
    assert abs(pc["gallbladder"]["precision"] - 1 / 2) < 1e-12
    assert abs(pc["gallbladder"]["recall"] - 1 / 3) < 1e-12
    assert abs(pc["liver_right_long"]["precision"] - 1 / 3) < 1e-12
    assert abs(pc["liver_right_long"]["recall"] - 1 / 2) < 1e-12
    assert abs(pc["spleen"]["precision"] - 1 / 2) < 1e-12
    assert abs(pc["spleen"]["recall"] - 1 / 2) < 1e-12
    assert pc["spleen"]["support"] == 2
    pm = m["per_manufacturer"]
    assert pm["philips"]["n"] == 4 and abs(pm["philips"]["top1"] - 2 / 4) < 1e-12
    assert pm["toshiba"]["n"] == 3 and abs(pm["toshiba"]["top1"] - 1 / 3) < 1e-12
    # more than two classes: one-vs-rest AUC per class (pairs, ties 1/2)
    # and their mean
    def pair_auc(pos, neg):
        return sum(1.0 if a > b else 0.5 if a == b else 0.0
                   for a in pos for b in neg) / (len(pos) * len(neg))

    want = {}
    for c, lab in enumerate(labels):
        pos = [r[3][c] for r in rows if r[1] == lab]
        neg = [r[3][c] for r in rows if r[1] != lab]
        want[lab] = pair_auc(pos, neg)
    assert set(m["auc_per_class"]) == set(labels), m.get("auc_per_class")
    for lab in labels:
        assert abs(m["auc_per_class"][lab] - want[lab]) < 1e-9, (lab, m["auc_per_class"], want)
    assert abs(m["auc"] - sum(want.values()) / 3) < 1e-9, (m["auc"], want)

    # 2. random two-class sets with many tied scores: AUC by brute force
    rng = random.Random(4)
    for trial in range(5):
        rows, pos, neg = [], [], []
        for i in range(rng.randint(20, 120)):
            truth = rng.choice(["0", "1"])
            s = round(rng.random() * 10) / 10  # ties
            if truth == "1":
                s = round(min(1.0, s + 0.2), 6)
            rows.append((f"x{i}.jpg", truth, "", [1 - s, s]))
            (pos if truth == "1" else neg).append(s)
        if not pos or not neg:
            continue
        p = os.path.join(tmp, f"two{trial}.csv")
        write(p, ["0", "1"], rows)
        m = run(p)
        num = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
        auc = num / (len(pos) * len(neg))
        assert abs(m["auc"] - auc) < 1e-9, (m["auc"], auc)
        # top-1 with ties 0.5/0.5 going to the first label, as usv_topk does
        correct = sum(1 for _, t, _, (p0, p1) in rows
                      if (("1" if p1 > p0 else "0") == t))
        assert abs(m["top1"] - correct / len(rows)) < 1e-12
    # bad file: a probability out of range is an error, not a crash
    bad = os.path.join(tmp, "bad.csv")
    write(bad, ["0", "1"], [("y.jpg", "1", "", [0.5, 1.5])])
    r = subprocess.run([USVIEW, "eval", "--predictions", bad], capture_output=True)
    assert r.returncode == 1, r
    print("eval metrics ok")


if __name__ == "__main__":
    sys.exit(main())
