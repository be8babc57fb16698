#!/usr/bin/env python3
"""AUC, per-class AUC, bootstrap intervals and DeLong's test of usview eval
and usview compare against independent computations here, on real
predictions: paediatric gallbladder ultrasound (biliary atresia or not),
MobileNet v1 embedding + FC head as in test_gallbladder.py, trained on a
sixth of the training patients (556 images), evaluated on a quarter of the
external test patients (240 images; patient = file name before '_').

Models: A (binary, the subset, seed 1), B (binary, half of that subset,
261 images, seed 2) and C (three classes: label 0 split into 0a and 0b by the patient
number modulo 5, so that the one-vs-rest AUCs differ).

The reference implementations use other algorithms than usview:
- AUC: the pairwise definition, mean over all (positive, negative) pairs
  of 1 / 0.5 / 0 (usview: midranks or weighted tie blocks); also
  sklearn.metrics.roc_auc_score when sklearn is installed;
- DeLong: the placement values from the full m x n comparison matrix and
  their covariance by numpy.cov (usview: midranks, Sun and Xu 2014);
- bootstrap: the documented SplitMix64 draws replayed here, each replicate
  AUC from the pairwise definition with the drawn multiplicities as
  weights (usview: weighted sums over tie blocks);
- per patient: means and majority labels recomputed here.
The numbers are compared on the same inputs: usview eval --predictions
on the predictions.csv that the model evaluation wrote (6 decimals), so
1e-9 for AUCs and 1e-6 for z hold; the evaluation with the model itself
(float probabilities) must agree to 1e-3.

About 1-1.5 min on 2 cores, cold or warm: the feature cache (under
USV_BINARY_DIR, shared with test_calibration.py) only saves the pass over
the 556 training images; the three evaluations of 240 images remain."""
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

USVIEW = os.environ["USVIEW"]
SHARED = os.environ.get("USV_SHARED_DIR", "../shared")
DATA = os.path.join(SHARED, "data/images/gallbladder-ba")
EXTRACTOR = os.path.join(SHARED, "models/mobilenet/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
MASK = (1 << 64) - 1

try:
    import numpy as np
except ImportError:
    print("SKIP: numpy is not installed for", sys.executable)
    sys.exit(77)
try:
    from sklearn.metrics import roc_auc_score
except ImportError:
    roc_auc_score = None


def run(*args):
    return subprocess.run([USVIEW, *args], check=True, capture_output=True, text=True).stdout


def patient(name):
    return os.path.basename(name).split("_")[0]


def subset(src, dst, keep, relabel=None):
    """Rows of src whose patient passes keep(int(patient)), paths made
    absolute, labels through relabel(label, patient)."""
    base = os.path.dirname(os.path.abspath(src))
    n = 0
    with open(src, newline="") as f, open(dst, "w", newline="") as g:
        w = csv.writer(g)
        for row in csv.reader(f):
            p = int(patient(row[0]))
            if not keep(p):
                continue
            lab = relabel(row[1], p) if relabel else row[1]
            w.writerow([os.path.join(base, row[0]), lab])
            n += 1
    return n


def pairwise_auc(score, pos, w=None):
    """Mean of psi over all (positive, negative) pairs, weighted by
    w_pos * w_neg when w is given."""
    score = np.asarray(score, dtype=float)
    pos = np.asarray(pos, dtype=bool)
    x, y = score[pos], score[~pos]
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    if w is None:
        return psi.mean()
    w = np.asarray(w, dtype=float)
    wx, wy = w[pos], w[~pos]
    den = wx.sum() * wy.sum()
    if den == 0:
        return None
    return float(wx @ psi @ wy) / den


def auc_stat(prob, truth, nc, w=None):
    """Two classes: the AUC of class 1; more: the mean one-vs-rest AUC over
    the classes with positives and negatives. None if undefined."""
    classes = [1] if nc == 2 else range(nc)
    vals = []
    for k in classes:
        pos = truth == k
        if pos.all() or not pos.any():
            continue
        a = pairwise_auc(prob[:, k], pos, w)
        if a is None:
            return None
        vals.append(a)
    return sum(vals) / len(vals)


def read_preds(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    labels = [k[2:] for k in rows[0] if k.startswith("p_")]
    prob = np.array([[float(r["p_" + l]) for l in labels] for r in rows])
    truth = np.array([labels.index(r["truth"]) for r in rows])
    return rows, labels, prob, truth


def groups_of(rows, prob, truth, nc):
    """Units numbered by first appearance; per group the mean probability
    (summed in row order) and the majority label (first label on ties)."""
    ids, unit = {}, []
    for r in rows:
        unit.append(ids.setdefault(r["group"], len(ids)))
    unit = np.array(unit)
    g = len(ids)
    gp = np.zeros((g, nc))
    sums = [[0.0] * nc for _ in range(g)]
    votes = np.zeros((g, nc), dtype=int)
    for i, u in enumerate(unit):
        for k in range(nc):
            sums[u][k] += prob[i, k]
        votes[u, truth[i]] += 1
    cnt = votes.sum(axis=1)
    for u in range(g):
        for k in range(nc):
            gp[u, k] = sums[u][k] / cnt[u]
    gl = votes.argmax(axis=1)  # first maximum: the first label on ties
    mixed = int((votes.max(axis=1) != cnt).sum())
    return unit, g, gp, gl, mixed


def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return x, z ^ (z >> 31)


def boot_ci(prob, truth, unit, n_units, nc, n_boot, seed):
    x, reps = seed, []
    for _ in range(n_boot):
        draws = np.zeros(n_units)
        for _ in range(n_units):
            x, r = splitmix(x)
            draws[((r >> 32) * n_units) >> 32] += 1
        a = auc_stat(prob, truth, nc, draws[unit])
        if a is not None:
            reps.append(a)
    reps.sort()
    return [float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975))], len(reps)


def delong_ref(a, b, pos):
    """DeLong 1988 from the m x n comparison matrices."""
    pos = np.asarray(pos, dtype=bool)
    v10, v01, auc = [], [], []
    for s in (np.asarray(a), np.asarray(b)):
        x, y = s[pos], s[~pos]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        auc.append(psi.mean())
    m, n = pos.sum(), (~pos).sum()
    s = np.cov(np.vstack(v10)) / m + np.cov(np.vstack(v01)) / n
    var = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    z = (auc[0] - auc[1]) / math.sqrt(var)
    return auc, s, z, math.erfc(abs(z) / math.sqrt(2))


def close(a, b, tol, what):
    assert abs(a - b) <= tol, (what, a, b, a - b)


def check_eval(name, evdir, model_json, nc):
    """usview eval --predictions on evdir/predictions.csv against the
    references; returns the parsed rows."""
    pred = os.path.join(evdir, "predictions.csv")
    rows, labels, prob, truth = read_preds(pred)
    m = json.loads(run("eval", "--predictions", pred, "--json", "--bootstrap", "200",
                       "--bootstrap-seed", "5"))
    ref = auc_stat(prob, truth, nc)
    close(m["auc"], ref, 1e-9, name + " auc")
    close(model_json["auc"], ref, 1e-3, name + " auc of the model run")
    if nc == 2:
        assert m["auc_positive"] == labels[1] and "auc_per_class" not in m, m
        if roc_auc_score:
            close(m["auc"], roc_auc_score(truth == 1, prob[:, 1]), 1e-9, name + " sklearn")
    else:
        for k, lab in enumerate(labels):
            r = pairwise_auc(prob[:, k], truth == k)
            close(m["auc_per_class"][lab], r, 1e-9, name + " auc " + lab)
            if roc_auc_score:
                close(m["auc_per_class"][lab], roc_auc_score(truth == k, prob[:, k]), 1e-9,
                      name + " sklearn " + lab)
    # per patient
    unit, g, gp, gl, mixed = groups_of(rows, prob, truth, nc)
    assert m["n_groups"] == g and model_json["n_groups"] == g, (m["n_groups"], g)
    assert m["groups_mixed"] == mixed, (m["groups_mixed"], mixed)
    close(m["auc_group"], auc_stat(gp, gl, nc), 1e-9, name + " auc_group")
    # grouped bootstrap replayed
    assert m["bootstrap"] == {"n": 200, "seed": 5, "by": "group", "valid": 200}, m["bootstrap"]
    ci, valid = boot_ci(prob, truth, unit, g, nc, 200, 5)
    assert valid == 200
    close(m["auc_ci"][0], ci[0], 1e-9, name + " auc_ci lo")
    close(m["auc_ci"][1], ci[1], 1e-9, name + " auc_ci hi")
    gci, _ = boot_ci(gp, gl, np.arange(g), g, nc, 200, 5)
    close(m["auc_group_ci"][0], gci[0], 1e-9, name + " auc_group_ci lo")
    close(m["auc_group_ci"][1], gci[1], 1e-9, name + " auc_group_ci hi")
    assert m["auc_ci"][0] < m["auc"] < m["auc_ci"][1], m
    # the model run: 2000 replicates by group, seed 1
    assert model_json["bootstrap"]["n"] == 2000 and model_json["bootstrap"]["by"] == "group"
    assert model_json["auc_ci"][0] < model_json["auc"] < model_json["auc_ci"][1], model_json
    print(f"{name}: n {m['n']} AUC {m['auc']:.4f} [{m['auc_ci'][0]:.4f}, {m['auc_ci'][1]:.4f}]"
          f" per patient ({g}, {mixed} mixed) {m['auc_group']:.4f}"
          f" [{m['auc_group_ci'][0]:.4f}, {m['auc_group_ci'][1]:.4f}]")
    return pred, rows, prob, truth


def main():
    cache = os.path.join(os.environ.get("USV_BINARY_DIR", tempfile.gettempdir()),
                         "tests", "feature-cache-gallbladder")
    os.makedirs(cache, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="usv-aucci-")
    try:
        t0 = time.time()
        bb = os.path.join(tmp, "mn.usvm")
        run("import-tflite", EXTRACTOR, "-o", bb)
        tr_a, tr_b, tr_c = (os.path.join(tmp, f"train_{x}.csv") for x in "abc")
        te2, te3 = os.path.join(tmp, "test2.csv"), os.path.join(tmp, "test3.csv")
        train = os.path.join(DATA, "training_data/label.csv")
        test = os.path.join(DATA, "test_data/label.csv")
        three = lambda lab, p: lab if lab != "0" else ("0a" if p % 5 < 2 else "0b")
        na = subset(train, tr_a, lambda p: p % 6 == 0)
        nb = subset(train, tr_b, lambda p: p % 12 == 0)
        subset(train, tr_c, lambda p: p % 6 == 0, three)
        nt = subset(test, te2, lambda p: p % 4 == 0)
        subset(test, te3, lambda p: p % 4 == 0, three)
        assert 400 < na < 800 and 200 < nb < na and 150 < nt < 400, (na, nb, nt)
        models = {}
        for name, data, seed in (("A", tr_a, "1"), ("B", tr_b, "2"), ("C", tr_c, "1")):
            models[name] = os.path.join(tmp, name + ".usvm")
            run("train", "--preset", "mobilenet", "--backbone", bb, "--data", data,
                "--group-sep", "_", "--views", "1", "--seed", seed, "--cache", cache, "-o", models[name])
        t1 = time.time()
        ev, mj = {}, {}
        for name, data in (("A", te2), ("B", te2), ("C", te3)):
            ev[name] = os.path.join(tmp, "ev-" + name)
            mj[name] = json.loads(run("eval", "-m", models[name], "--data", data,
                                      "--group-sep", "_", "--out", ev[name], "--json"))
            assert mj[name]["n"] == nt
        t2 = time.time()

        pa, rows_a, prob_a, truth_a = check_eval("A", ev["A"], mj["A"], 2)
        pb, rows_b, prob_b, truth_b = check_eval("B", ev["B"], mj["B"], 2)
        _, rows_c, _, _ = check_eval("C", ev["C"], mj["C"], 3)
        assert {r["truth"] for r in rows_c} == {"0a", "0b", "1"}

        # the same seed gives the same interval, another seed another one
        m1 = json.loads(run("eval", "--predictions", pa, "--json", "--bootstrap", "300"))
        m2 = json.loads(run("eval", "--predictions", pa, "--json", "--bootstrap", "300"))
        m3 = json.loads(run("eval", "--predictions", pa, "--json", "--bootstrap", "300",
                            "--bootstrap-seed", "2"))
        assert m1["auc_ci"] == m2["auc_ci"] and m1["auc_group_ci"] == m2["auc_group_ci"]
        assert m1["auc_ci"] != m3["auc_ci"], (m1["auc_ci"], m3["auc_ci"])
        # without groups (no group column, no --group-sep): by image, no per-patient keys
        nog = os.path.join(tmp, "nogroup.csv")
        with open(pa, newline="") as f, open(nog, "w", newline="") as g:
            w = csv.writer(g)
            for i, r in enumerate(csv.reader(f)):
                w.writerow(r[:-1])
        m4 = json.loads(run("eval", "--predictions", nog, "--json", "--bootstrap", "300"))
        assert m4["bootstrap"]["by"] == "image" and "auc_group" not in m4, m4
        assert m4["auc"] == m1["auc"]
        # ... and --group-sep recovers the patients from the file names
        m5 = json.loads(run("eval", "--predictions", nog, "--json", "--bootstrap", "300",
                            "--group-sep", "_"))
        assert m5["auc_ci"] == m1["auc_ci"] and m5["auc_group"] == m1["auc_group"]
        txt = run("eval", "--predictions", pa, "--bootstrap", "300")
        line = [l for l in txt.splitlines() if l.startswith("AUC ")]
        assert len(line) == 1 and "per group" in line[0] and "95% CI" in line[0], txt

        # DeLong: A against B on the same images
        assert [r["file"] for r in rows_a] == [r["file"] for r in rows_b]
        assert (truth_a == truth_b).all()
        d = json.loads(run("compare", "--delong", pa, pb, "--json"))
        auc, s, z, p = delong_ref(prob_a[:, 1], prob_b[:, 1], truth_a == 1)
        close(d["auc_a"], auc[0], 1e-9, "delong auc_a")
        close(d["auc_b"], auc[1], 1e-9, "delong auc_b")
        close(d["var_a"], s[0, 0], 1e-12, "delong var_a")
        close(d["var_b"], s[1, 1], 1e-12, "delong var_b")
        close(d["cov"], s[0, 1], 1e-12, "delong cov")
        close(d["z"], z, 1e-6, "delong z")
        close(d["p"], p, 1e-6, "delong p")
        assert d["n"] == nt and d["n_pos"] == int((truth_a == 1).sum()), d
        print(f"DeLong A vs B: AUC {d['auc_a']:.4f} vs {d['auc_b']:.4f}, "
              f"diff {d['diff']:.4f} se {d['se']:.4f} z {d['z']:.4f} p {d['p']:.4g}")
        txt = run("compare", "--delong", pa, pb)
        assert f"z = {d['z']:.4f}" in txt, txt
        # the same predictions twice: variance 0, z undefined, p 1
        same = json.loads(run("compare", "--delong", pa, pa, "--json"))
        assert same["z"] is None and same["p"] == 1 and same["diff"] == 0, same
        # three labels need --positive
        r = subprocess.run([USVIEW, "compare", "--delong", os.path.join(ev["C"], "predictions.csv"),
                            os.path.join(ev["C"], "predictions.csv")], capture_output=True, text=True)
        assert r.returncode == 1 and "--positive" in r.stderr, r
        print(f"train {t1 - t0:.0f} s, eval {t2 - t1:.0f} s, checks {time.time() - t2:.0f} s")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
