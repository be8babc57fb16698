"""Test-time views in usviewd (model.test_views, meta.test_views).

The tiny model (256x256 -> 64x64 crop) makes the ten views of the paper
(centre and four corners, each mirrored) very different inputs. Grey
256x256 US instances (no crop rule applies: the whole image, no resize)
and PNG copies of the same pixels are classified by usviewd and, as the
independent reference, by `usview classify --view V` for each view V
separately; the test averages the ten views' probabilities itself.
Checked:
  - model.test_views: 10: every class probability in results.jsonl's
    top-k equals the test's mean of the ten single views (1e-5), the line
    says "test_views": 10, the mean differs from the centre view alone
    (so the check can fail), and `usview classify --views 10` agrees;
  - a reload to model.test_views: 1: the next instances get the centre
    view's probabilities and "test_views": 1;
  - model.test_views: 0 with a model file whose meta.test_views is 2:
    the mean of views 0 and 1;
  - batch boundaries: 3 instances x 10 views with batch_size 4 (views of
    one image split across batches);
  - usview eval --views 10 (batch 7, so 0 images would fit: 10 inputs a
    forward): predictions.csv holds the same means.

usage: test_test_views.py MAKE_MODEL
"""

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pydicom
import usvtest
from PIL import Image

from daemonlib import Usviewd, make_us

ck = usvtest.Check("test_views")
tmp = usvtest.tempdir("usv-views-")
USVIEW = os.environ["USVIEW"]
model = os.path.join(tmp, "tiny.model")
model2 = os.path.join(tmp, "tiny2.model")
subprocess.run([sys.argv[1], model, "7"], check=True)
subprocess.run([sys.argv[1], model2, "7", "2"], check=True)


def instance(i):
    dcm = os.path.join(tmp, "v%d.dcm" % i)
    sop = make_us(dcm, rows=256, cols=256, seed=40 + i)
    px = pydicom.dcmread(dcm).pixel_array
    png = os.path.join(tmp, "v%d.png" % i)
    Image.fromarray(np.stack([px] * 3, axis=-1)).save(png)
    return dcm, png, sop


def classify(mpath, png, *args):
    out = subprocess.run([USVIEW, "classify", "-m", mpath, "--json", "--top", "11"] +
                         list(args) + [png], check=True, capture_output=True, text=True).stdout
    return {e["label"]: e["prob"] for e in json.loads(out)["top"]}


def mean_views(mpath, png, n):
    views = [classify(mpath, png, "--view", str(v)) for v in range(n)]
    return {k: sum(v[k] for v in views) / n for k in views[0]}, views


def line_of(d, sop):
    for o in d.results():
        if o.get("sop_instance_uid") == sop:
            return o
    return None


def close(a, b, tol):
    return all(abs(a[k] - b[k]) <= tol for k in b)


def check_line(what, d, sop, want, views):
    o = line_of(d, sop)
    ck(o is not None and o["outcome"] == "done", "%s: done" % what)
    if not o:
        return
    got = {e["label"]: e["prob"] for e in o["topk"]}
    ck(close(got, {k: want[k] for k in got}, 1e-5),
       "%s: probabilities = mean of the views (%s vs %s)" % (what, got, want))
    ck(o.get("test_views") == views, "%s: test_views %s" % (what, o.get("test_views")))


d = Usviewd(tmp, model, extra={"model": {"test_views": 10, "batch_size": 4, "workers": 1,
                                         "top_k": 11}})
d.start()
inst = [instance(i) for i in range(5)]
subprocess.run(["storescu", "-aec", "USVIEW", "127.0.0.1", str(d.port)] +
               [x[0] for x in inst[:3]], check=True, capture_output=True)
ck(d.wait_idle(60, outbox=False), "idle after 3 instances")
for i in range(3):
    want, views = mean_views(model, inst[i][1], 10)
    check_line("10 views, instance %d" % i, d, inst[i][2], want, 10)
    ck(not close(views[0], want, 1e-4), "instance %d: the mean differs from the centre" % i)
    ck(close(classify(model, inst[i][1], "--views", "10"), want, 1e-6),
       "instance %d: usview classify --views 10 agrees" % i)

# reload: one view
d.cfg["model"]["test_views"] = 1
d.write_config()
d.notify.poll()
n_before = len(d.notify.messages)
os.kill(d.proc.pid, signal.SIGHUP)
ck(d.notify.wait("READY=1", 20, since=n_before) is not None, "reloaded (READY=1 again)")
subprocess.run(["storescu", "-aec", "USVIEW", "127.0.0.1", str(d.port), inst[3][0]],
               check=True, capture_output=True)
ck(d.wait_idle(60, outbox=False), "idle after the reload")
check_line("after reload to 1 view", d, inst[3][2], classify(model, inst[3][1], "--view", "0"),
           1)
ck(d.stop() == 0, "first daemon stops cleanly")

# the model's own meta.test_views (2)
d2 = Usviewd(tmp, model2, name="usviewd2", extra={"model": {"test_views": 0, "top_k": 11}})
d2.start()
subprocess.run(["storescu", "-aec", "USVIEW", "127.0.0.1", str(d2.port), inst[4][0]],
               check=True, capture_output=True)
ck(d2.wait_idle(60, outbox=False), "idle (model's views)")
want2, _ = mean_views(model2, inst[4][1], 2)
check_line("meta.test_views 2", d2, inst[4][2], want2, 2)
ck(close(classify(model2, inst[4][1]), want2, 1e-6), "usview classify uses the model's 2 views")
ck(d2.stop() == 0, "second daemon stops cleanly")

# usview eval --views: predictions.csv holds the same means
csvp = os.path.join(tmp, "views.csv")
with open(csvp, "w") as f:
    f.write("path,label\n")
    for _, png, _ in inst:
        f.write("%s,spleen\n" % png)
outd = os.path.join(tmp, "eval10")
subprocess.run([USVIEW, "eval", "-m", model, "--data", csvp, "--views", "10", "--batch", "7",
                "--bootstrap", "0", "--out", outd, "--json"], check=True, capture_output=True)
with open(os.path.join(outd, "predictions.csv")) as f:
    rows = list(csv.DictReader(f))
with open(os.path.join(outd, "metrics.json")) as f:
    ck(json.load(f).get("test_views") == 10, "eval: metrics say test_views 10")
for i, (_, png, _) in enumerate(inst):
    want, _ = mean_views(model, png, 10)
    got = {k[2:]: float(v) for k, v in rows[i].items() if k.startswith("p_")}
    ck(close(got, want, 2e-5), "eval --views 10, image %d: %s vs %s" % (i, got, want))
ck.done()
