"""usviewd records the technologist's label of each instance, the agreement
with the model, and "uncertain" below model.min_confidence.

Instances come from `usview phantom` (Philips-like 1024 x 768 screens):
  A  11 images without typed view text and without a label attribute:
     technologist_label, label_source and agrees must be null;
  C  copies of A (new SOP Instance UIDs) whose Image Comments the test sets
     with pydicom: the model's own class for some (agree), deliberately a
     wrong view for others (disagree), one label in Protocol Name instead,
     and some left without (null);
  B  3 images whose label is only typed into the pixels: label_source "ocr"
     and the label of the phantom's truth table (annotations.csv).
Phase 1 sends A with min_confidence 0 and learns the model's class and top
probability per image; a SIGHUP reload then sets model.min_confidence
between the probabilities, so that phase 2 (C and B) has uncertain and
confident results. Checked against what the test set, line by line:
technologist_label, label_source, agrees (every disagreement reported, no
false one), uncertain and label "uncertain", kind, station_name,
study_date, accession_hash (SHA-256 recomputed here); the SRs that reach a
storescp: dciodvfy without errors, dsrdump shows the technologist's label
with its view code, the source, the agreement (SCT Yes / No) and the
UNCERTAIN finding; /metrics: usview_label_agreements_total and
usview_uncertain_total per class equal the counts of the lines.

usage: test_qa_labels.py MAKE_MODEL
"""

import csv
import hashlib
import os
import signal
import subprocess
import sys

import pydicom
from pydicom.uid import generate_uid

import daemonlib
import usvtest
from daemonlib import Usviewd

VIEWS = ["liver_left_long", "liver_left_trans", "liver_right_long", "liver_right_trans",
         "spleen", "pancreas", "kidney_left_long", "kidney_left_trans", "kidney_right_long",
         "kidney_right_trans", "gallbladder"]
# How a technologist types each view (words of the default view table).
TYPED = {
    "liver_left_long": "LIVER LT LONG", "liver_left_trans": "LIVER LT TRANS",
    "liver_right_long": "LIVER RT LONG", "liver_right_trans": "LIVER RT TRANS",
    "spleen": "SPLEEN", "pancreas": "PANCREAS", "kidney_left_long": "LT KIDNEY LONG",
    "kidney_left_trans": "LT KIDNEY TRANS", "kidney_right_long": "RT KIDNEY SAG",
    "kidney_right_trans": "RT KIDNEY TRV", "gallbladder": "GB",
}
STATION = "USROOM3"
ACCESSION = "QA-ACC-4711"

ck = usvtest.Check("daemon_qa_labels")
tmp = usvtest.tempdir("usv-d-qa-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model], check=True)
usview = os.environ["USVIEW"]


def phantom(name, seed, first, *extra):
    out = os.path.join(tmp, name)
    subprocess.run([usview, "phantom", "--out", out, "--studies", "1", "--per-view", "1",
                    "--manufacturer", "philips", "--seed", str(seed), "--first-study",
                    str(first)] + list(extra), check=True, capture_output=True)
    with open(os.path.join(out, "annotations.csv")) as f:
        return [dict(r, path=os.path.join(out, r["path"])) for r in csv.DictReader(f)]


set_a = phantom("a", 11, 0, "--unannotated", "1")
set_b = phantom("b", 12, 1)
ck(all(not r["expected_label"] for r in set_a), "phantom A has labels")
for r in set_a:  # station and accession for the QA grouping keys
    ds = pydicom.dcmread(r["path"])
    ds.StationName = STATION
    ds.AccessionNumber = ACCESSION
    ds.save_as(r["path"], write_like_original=False)
    r["uid"] = ds.SOPInstanceUID
ocr_rows = [r for r in set_b if r["expected_source"] == "ocr"][::5][:3]
ck(len(ocr_rows) == 3, "phantom B: %d images labelled by OCR" % len(ocr_rows))

pacs_port = usvtest.free_port()
pacs_dir = os.path.join(tmp, "pacs")
os.makedirs(pacs_dir)
pacs = usvtest.Proc(["storescp", "-aet", "PACS", "-od", pacs_dir, str(pacs_port)],
                    log_path=os.path.join(tmp, "pacs.log"))
ck(usvtest.wait_port(pacs_port, 10, pacs.p), "storescp did not start")
dest = [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs_port,
         "send": ["sr"]}]
d = Usviewd(tmp, model, destinations=dest,
            extra={"qa": {"labels": True, "ocr": True}, "model": {"min_confidence": 0},
                   "frames": {"policy": "all"}})
d.start()


def send(paths):
    r = subprocess.run(["storescu", "-aec", "USVIEW", "-aet", "QATEST", "127.0.0.1",
                        str(d.port)] + paths, capture_output=True, text=True, timeout=120)
    ck(r.returncode == 0, "storescu: %s" % r.stderr[-500:])


def lines_for(uids, timeout=90):
    """The last results.jsonl line of each SOP Instance UID, once all are there."""
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = {}
        for line in d.results():
            if line.get("kind") == "instance" and line["sop_instance_uid"] in uids:
                got[line["sop_instance_uid"]] = line
        if len(got) == len(uids):
            return got
        time.sleep(0.2)
    ck(False, "only %d of %d instances in results.jsonl:\n%s" % (len(got), len(uids),
                                                                 d.log()[-3000:]))
    return got


# ---- phase 1: no labels anywhere, min_confidence off
send([r["path"] for r in set_a])
first = lines_for({r["uid"] for r in set_a})
acc_hash = hashlib.sha256(ACCESSION.encode()).hexdigest()[:16]
pred, prob = {}, {}
for r in set_a:
    line = first.get(r["uid"])
    if not ck(line is not None and line["outcome"] == "done", "A %s not done" % r["path"]):
        continue
    pred[r["uid"]] = line["topk"][0]["label"]
    prob[r["uid"]] = line["prob"]
    ck(line["technologist_label"] is None and line["label_source"] is None
       and line["agrees"] is None, "A %s: label %r from %r, agrees %r" % (
           r["path"], line["technologist_label"], line["label_source"], line["agrees"]))
    ck(line["uncertain"] is False and line["label"] == line["topk"][0]["label"],
       "A %s: uncertain with min_confidence 0" % r["path"])
    ck(line["station_name"] == STATION and line["study_date"] == "20160101"
       and line["accession_hash"] == acc_hash and ACCESSION not in str(line),
       "A %s: grouping keys %r %r %r" % (r["path"], line["station_name"], line["study_date"],
                                        line["accession_hash"]))
    ck("study_description" not in line,
       "A: study_description (free text) in results.jsonl")
    ck("label" in line["timings_ms"] and line["timings_ms"]["label"] >= 0, "A: timings")

# ---- phase 2: labels in Image Comments / Protocol Name, threshold between the probs
ps = sorted(set(prob.values()))
ck(len(ps) >= 2, "the model gives one probability for all images: %r" % ps)
thr = (ps[len(ps) // 2 - 1] + ps[len(ps) // 2]) / 2 if len(ps) >= 2 else 0.5
d.cfg["model"]["min_confidence"] = round(thr, 9)
d.write_config()
since = len(d.notify.messages)
os.kill(d.proc.pid, signal.SIGHUP)
ck(d.notify.wait("READY=1", 20, since=since, proc=d.proc) is not None, "no READY after SIGHUP")
thr = d.cfg["model"]["min_confidence"]

expect = {}  # uid -> (technologist_label or None, source or None, model class)
copies = []
for i, r in enumerate(set_a):
    if r["uid"] not in pred:
        continue
    ds = pydicom.dcmread(r["path"])
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    p = pred[r["uid"]]
    kind = i % 4
    if kind == 0:    # agrees
        tech, src = p, "dicom:ImageComments"
        ds.ImageComments = TYPED[tech]
    elif kind == 1:  # deliberately wrong
        tech, src = VIEWS[(VIEWS.index(p) + 3) % len(VIEWS)], "dicom:ImageComments"
        ds.ImageComments = TYPED[tech]
    elif kind == 2 and i == 2:  # wrong, in Protocol Name
        tech, src = VIEWS[(VIEWS.index(p) + 5) % len(VIEWS)], "dicom:ProtocolName"
        ds.ProtocolName = TYPED[tech]
    else:            # none
        tech, src = None, None
    path = os.path.join(tmp, "c%02d.dcm" % i)
    ds.save_as(path, write_like_original=False)
    copies.append(path)
    expect[ds.SOPInstanceUID] = (tech, src, p)
for r in ocr_rows:
    r["uid"] = pydicom.dcmread(r["path"], stop_before_pixels=True).SOPInstanceUID
    expect[r["uid"]] = (r["expected_label"], "ocr", None)
# a two-frame instance (frames.policy all): one label for the instance, in
# the SR of every frame
ds = pydicom.dcmread(set_a[0]["path"])
ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
ds.NumberOfFrames = 2
ds.FrameIncrementPointer = 0x00181063
ds.FrameTime = 40
ds.PixelData = ds.PixelData * 2
ds.ImageComments = TYPED["spleen"]
multi = os.path.join(tmp, "multi.dcm")
ds.save_as(multi, write_like_original=False)
expect[ds.SOPInstanceUID] = ("spleen", "dicom:ImageComments", pred.get(set_a[0]["uid"]))
multi_uid = ds.SOPInstanceUID
send(copies + [r["path"] for r in ocr_rows] + [multi])
second = lines_for(set(expect))

n_dis = n_unc = 0
for uid, (tech, src, p) in expect.items():
    line = second.get(uid)
    if not ck(line is not None and line["outcome"] == "done", "%s not done" % uid):
        continue
    top = line["topk"][0]["label"]
    if p is not None:
        ck(top == p, "%s: class %s, phase 1 said %s" % (uid, top, p))
    ck(line["technologist_label"] == tech and line["label_source"] == src,
       "%s: technologist_label %r from %r, want %r from %r" % (
           uid, line["technologist_label"], line["label_source"], tech, src))
    want_agrees = None if tech is None else tech == top
    ck(line["agrees"] is want_agrees, "%s: agrees %r, want %r (technologist %r, model %s)" % (
        uid, line["agrees"], want_agrees, tech, top))
    unc = line["prob"] < thr
    ck(line["uncertain"] is unc and line["label"] == ("uncertain" if unc else top),
       "%s: uncertain %r label %r (prob %g, threshold %g)" % (
           uid, line["uncertain"], line["label"], line["prob"], thr))
    ck(len(line["topk"]) >= 1 and abs(line["topk"][0]["prob"] - line["prob"]) < 1e-9,
       "%s: prob / topk not kept" % uid)
    n_dis += want_agrees is False
    n_unc += unc
reported = {u for u, line in second.items() if line["agrees"] is False}
wanted = {u for u, (t, s, p) in expect.items()
          if t is not None and second.get(u) and t != second[u]["topk"][0]["label"]}
ck(reported == wanted, "disagreements reported %d, set %d (missed %d, false %d)" % (
    len(reported), len(wanted), len(wanted - reported), len(reported - wanted)))
ck(n_dis >= 2, "only %d disagreements in the test set" % n_dis)
ck(0 < n_unc < len(expect), "uncertain %d of %d: the threshold split nothing" % (
    n_unc, len(expect)))
ck(any(t == (second.get(u) or {}).get("topk", [{}])[0].get("label")
       for u, (t, s, p) in expect.items() if t), "no agreeing instance in the test set")

ml = second.get(multi_uid)
ck(ml is not None and ml["frames_total"] == 2 and len(ml["results"]) == 2,
   "two-frame instance: %r" % ((ml and (ml["outcome"], ml.get("reason"), ml["frames_total"],
                                        len(ml["results"]))),))

# ---- the SRs at the PACS (one per frame)
d.wait_idle(60)
srs, per_source = {}, {}
for n in os.listdir(pacs_dir):
    ds = pydicom.dcmread(os.path.join(pacs_dir, n))
    if ds.SOPClassUID != daemonlib.SR_COMPREHENSIVE:
        continue
    ev = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    src_uid = ev.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    srs[src_uid] = os.path.join(pacs_dir, n)
    per_source.setdefault(src_uid, []).append(os.path.join(pacs_dir, n))
for path in per_source.get(multi_uid, []):
    dump = subprocess.run(["dsrdump", path], capture_output=True, text=True, timeout=60).stdout
    ck('"Technologist view label")=(SPLEEN,99USVIEW,' in dump,
       "two-frame instance: an SR without the technologist's label")
ck(len(per_source.get(multi_uid, [])) == 2, "two-frame instance: %d SRs" % len(
    per_source.get(multi_uid, [])))
for uid, (tech, src, p) in expect.items():
    path = srs.get(uid)
    line = second.get(uid)
    if not ck(path is not None, "no SR at the PACS for %s" % uid) or not line:
        continue
    r = subprocess.run(["dciodvfy", path], capture_output=True, text=True, timeout=60)
    errors = [x for x in (r.stdout + r.stderr).splitlines() if x.startswith("Error")]
    ck(not errors, "SR of %s: dciodvfy errors %s" % (uid, errors[:3]))
    dump = subprocess.run(["dsrdump", path], capture_output=True, text=True,
                          timeout=60).stdout
    top = line["topk"][0]["label"]
    if tech:
        ck('"Technologist view label")=(%s,99USVIEW,' % daemonlib.view_code(tech) in dump,
           "SR of %s: technologist label %s missing" % (uid, tech))
        ck('"Technologist label source")="%s"' % src in dump, "SR of %s: source" % uid)
        yn = ("373066001,SCT,\"Yes\"" if tech == top else "373067005,SCT,\"No\"")
        ck('"Agrees with technologist")=(%s)' % yn in dump,
           "SR of %s: agreement, want %s" % (uid, yn))
    else:
        ck("Technologist" not in dump and "Agrees" not in dump,
           "SR of %s: QA items without a label" % uid)
    if line["uncertain"]:
        ck('"Image View")=(UNCERTAIN,99USVIEW,' in dump, "SR of %s: not uncertain" % uid)
    else:
        ck('"Image View")=(%s,99USVIEW,' % daemonlib.view_code(top) in dump,
           "SR of %s: finding is not %s" % (uid, top))
    ck(dump.count('"Probability")') == len(line["topk"]), "SR of %s: probabilities" % uid)

# ---- /metrics against the lines
status, _, text = d.http("/metrics")
ck(status == 200, "/metrics %d" % status)
types, samples = daemonlib.parse_prometheus(text)
ck(types.get("usview_label_agreements_total") == "counter"
   and types.get("usview_uncertain_total") == "counter", "QA families missing")
want_ag, want_unc = {}, {}
for line in list(first.values()) + list(second.values()):
    cls = line["topk"][0]["label"]
    if line["agrees"] is not None:
        k = (cls, "agree" if line["agrees"] else "disagree")
        want_ag[k] = want_ag.get(k, 0) + 1
    if line["uncertain"]:
        want_unc[cls] = want_unc.get(cls, 0) + 1
got_ag = {(lab["class"], lab["result"]): v for n, lab, v in samples
          if n == "usview_label_agreements_total" and v}
got_unc = {lab["class"]: v for n, lab, v in samples if n == "usview_uncertain_total" and v}
ck(got_ag == want_ag, "usview_label_agreements_total %r, lines say %r" % (got_ag, want_ag))
ck(got_unc == want_unc, "usview_uncertain_total %r, lines say %r" % (got_unc, want_unc))

# ---- SIGHUP with qa.ocr off: the worker's reader is made again without OCR
later = [r for r in set_b if r["expected_source"] == "ocr" and r not in ocr_rows][:2]
for r in later:
    r["uid"] = pydicom.dcmread(r["path"], stop_before_pixels=True).SOPInstanceUID
d.cfg["qa"]["ocr"] = False
d.write_config()
since = len(d.notify.messages)
os.kill(d.proc.pid, signal.SIGHUP)
ck(d.notify.wait("READY=1", 20, since=since, proc=d.proc) is not None, "no READY after SIGHUP")
send([r["path"] for r in later])
third = lines_for({r["uid"] for r in later})
for r in later:
    line = third.get(r["uid"])
    ck(line is not None and line["outcome"] == "done" and line["technologist_label"] is None
       and line["label_source"] is None and line["timings_ms"]["ocr"] == 0,
       "qa.ocr off: %s still read by OCR: %r" % (r["path"], line and line["label_source"]))

ck(d.stop() == 0, "usviewd did not stop cleanly")
log = d.log()
ck("label reader" not in log and "qa.ocr:" not in log and "no technologist label" not in log,
   "usviewd could not read labels:\n" + log[-2000:])
# ---- a view table that cannot be loaded: a startup error naming the file
bad = os.path.join(tmp, "views-bad.yaml")
with open(bad, "w") as f:
    f.write("classes:\n  spleen: [\"spleen\"\n")
e = Usviewd(tmp, model, name="badviews", extra={"qa": {"views": bad}})
try:
    e.start(timeout=15)
    ck(False, "usviewd started with a broken qa.views")
except RuntimeError:
    pass
e.proc.wait(timeout=10)
ck(e.proc.returncode not in (0, None) and "qa.views" in e.log() and bad in e.log(),
   "broken qa.views: rc %r, log %r" % (e.proc.returncode, e.log()[-500:]))
ck.done()
