#!/usr/bin/env python3
"""usview train's options for small, imbalanced sets on real data: the
paediatric gallbladder training set (3,705 images, 25 % / 75 %, grouped by
patient = file name before '_'), MobileNet v1 embedding + FC head as in
test_gallbladder.py, a validation split of whole patients (--val-fraction
0.2), never the external test set.

Checks:
- --class-weights balanced --label-smoothing 0.1 --early-stopping 4
  (--eval-every 25, a limit of 3000 iterations) runs and is recorded in the
  provenance: the weights equal n / (k n_c) computed here from the split's
  class counts (the provenance's dataset table), the smoothing, the
  patience;
- early stopping stops before the limit, exactly 4 evaluations after the
  best one; the best one is the minimum of the validation curve and the
  model keeps its weights: the final validation loss (evaluated after
  training, from the written head) is that minimum;
- each option alone runs and changes the head; without options the
  provenance says so (class_weights "none", label_smoothing 0,
  early_stopping null) and the run goes to its 1000 iterations;
- --early-stopping without a validation set and a smoothing above 0.5 are
  usage errors (exit 2) that say why.

Features are cached under the build tree (USV_BINARY_DIR, shared with
test_calibration.py), so only the first run pays for the feature pass
(about 2 minutes on 2 cores); later runs take about 30 s."""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import usvtest  # noqa: E402

USVIEW = os.environ["USVIEW"]
SHARED = usvtest.shared_dir()
DATA = os.path.join(SHARED, "data/images/gallbladder-ba")
EXTRACTOR = os.path.join(SHARED, "models/mobilenet/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")


def run(*args, ok=True):
    p = subprocess.run([USVIEW, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise AssertionError(f"usview {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
    return p


def read_model(path):
    """(tensor bytes by name, provenance)"""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    tensors = {k: data[v["data_offsets"][0]:v["data_offsets"][1]]
               for k, v in hdr.items() if k != "__metadata__"}
    prov = json.loads(hdr["__metadata__"]["usview"])["meta"]["provenance"]
    return tensors, (json.loads(prov) if isinstance(prov, str) else prov)


def head(tensors):
    return {k: v for k, v in tensors.items() if k.startswith("head_")}


def main():
    if not os.path.exists(EXTRACTOR) or not os.path.isdir(DATA):
        print("skip: the MobileNet extractor or the gallbladder data is missing")
        return 77
    tmp = usvtest.tempdir("usv-trainopts-")
    cache = os.path.join(os.environ.get("USV_BINARY_DIR", tempfile.gettempdir()),
                         "tests", "feature-cache-gallbladder")
    os.makedirs(cache, exist_ok=True)
    bb = os.path.join(tmp, "mn.usvm")
    run("import-tflite", EXTRACTOR, "-o", bb)
    train_csv = os.path.join(DATA, "training_data/label.csv")
    common = ["train", "--preset", "mobilenet", "--backbone", bb, "--data", train_csv,
              "--group-sep", "_", "--views", "1", "--seed", "1", "--val-fraction", "0.2",
              "--cache", cache]

    def train(name, *extra):
        out = os.path.join(tmp, name + ".usvm")
        p = run(*common, "-o", out, *extra)
        t, prov = read_model(out)
        return p, t, prov

    # defaults: nothing on, the preset's 1000 iterations
    _, t0, p0 = train("plain", "--eval-every", "25")
    s0 = p0["solver"]
    assert s0["class_weights"] == "none" and s0["label_smoothing"] == 0, s0
    assert s0["early_stopping"] is None, s0
    assert p0["curve"][-1]["iter"] == 1000 and len(p0["curve"]) == 40, p0["curve"][-1]

    # all three
    limit, every, patience = 3000, 25, 4
    p, t, prov = train("all", "--class-weights", "balanced", "--label-smoothing", "0.1",
                       "--early-stopping", str(patience), "--eval-every", str(every),
                       "--iterations", str(limit))
    s = prov["solver"]
    counts = prov["dataset"]["table"]["splits"]["train"]
    n, k = sum(counts), len(counts)
    assert n == prov["dataset"]["train"]["n"] and n + prov["dataset"]["val"]["n"] == 3705
    assert prov["dataset"]["val"]["spec"] == "held-out groups of train", prov["dataset"]["val"]
    want = [n / (k * c) for c in counts]
    got = s["class_weights"]["weights"]
    assert all(abs(a - b) < 1e-6 * b for a, b in zip(got, want)), (got, want)
    assert got[0] > 1 > got[1], got  # the minority class (0) weighs more
    assert abs(s["label_smoothing"] - 0.1) < 1e-7, s["label_smoothing"]
    es = s["early_stopping"]
    assert es["patience"] == patience and es["eval_every"] == every, es
    curve = prov["curve"]
    stop = curve[-1]["iter"]
    assert es["stopped_early"] is True and es["iterations_run"] == stop < limit, (es, stop)
    assert all(c["iter"] == every * (i + 1) for i, c in enumerate(curve))
    vl = [c["val_loss"] for c in curve]
    best = min(range(len(vl)), key=lambda i: (vl[i], i))
    assert es["best_iter"] == curve[best]["iter"], (es, best)
    assert len(curve) - 1 - best == patience, (len(curve), best)
    assert abs(es["best_val_loss"] - vl[best]) < 1e-6, es
    # the written head is the best point's: validation loss after training
    assert abs(prov["metrics"]["val_loss"] - vl[best]) < 1e-5, (prov["metrics"], vl[best])
    assert abs(prov["metrics"]["val_loss"] - vl[-1]) > 1e-4 or best == len(vl) - 1
    assert f"stopped after {stop} of {limit} iterations" in p.stdout, p.stdout
    assert "class weights (balanced): 0 " in p.stdout, p.stdout

    # each option alone runs, is recorded and changes the head
    _, t1, p1 = train("cw", "--class-weights", "balanced")
    _, t2, p2 = train("ls", "--label-smoothing", "0.2")
    _, t3, p3 = train("es", "--early-stopping", "3")
    assert p1["solver"]["class_weights"]["weights"] == got
    assert abs(p2["solver"]["label_smoothing"] - 0.2) < 1e-7, p2["solver"]
    assert p3["solver"]["early_stopping"]["patience"] == 3
    for name, tt in (("class weights", t1), ("smoothing", t2), ("all", t)):
        assert head(tt) != head(t0), f"{name}: the same head as without options"
    # early stopping alone on the plain loss: same steps as the plain run up
    # to where it stopped (default eval every 100 iterations)
    c3 = p3["curve"]
    _, _, p0b = train("plain100")
    assert p0b["curve"][:len(c3)] == c3, (p0b["curve"], c3)

    # usage errors
    bad = run("train", "--preset", "mobilenet", "--backbone", bb, "--data", train_csv,
              "--early-stopping", "3", "-o", os.path.join(tmp, "x.usvm"), ok=False)
    assert bad.returncode == 2 and "validation" in bad.stderr, (bad.returncode, bad.stderr)
    bad = run(*common, "--label-smoothing", "0.7", "-o", os.path.join(tmp, "y.usvm"), ok=False)
    assert bad.returncode == 2 and "--label-smoothing" in bad.stderr, bad.stderr
    print(f"train options: class weights {[round(w, 4) for w in got]}, early stopping at "
          f"{stop} of {limit} (best {es['best_iter']}, val loss {vl[best]:.4f}, "
          f"last {vl[-1]:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
