"""usviewd between a real PACS and itself: Orthanc routes studies to usviewd,
usviewd returns SRs and tagged copies to Orthanc.

Flow: instances are uploaded to Orthanc (REST POST /instances); Orthanc
C-STOREs them to usviewd (POST /modalities/usviewd/store); usviewd classifies
them and sends a Comprehensive SR and a tagged copy per instance back to
Orthanc. The results are read back through Orthanc's REST API and checked
against results.jsonl, the source instances, and the result UIDs computed here
independently from the rule of dcm_result.h. Also: the excluded colour
instance gets no result, the spool states, /metrics parsed strictly against
the exposition format (with the counts this run must produce) and /healthz.

usage: test_orthanc.py MAKE_MODEL
"""

import hashlib
import os
import shutil
import subprocess
import sys
import time

import daemonlib
import usvtest
from daemonlib import SR_COMPREHENSIVE, Usviewd
from orthanc import Orthanc

import pydicom

ck = usvtest.Check("daemon_orthanc")
tmp = usvtest.tempdir("usv-d-orthanc-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model, "7"], check=True)
sha = hashlib.sha256(open(model, "rb").read()).hexdigest()

src_dir = os.path.join(tmp, "src")
os.makedirs(src_dir)
study = pydicom.uid.generate_uid()
series = pydicom.uid.generate_uid()
sources = {}
for i in range(3):
    p = os.path.join(src_dir, "syn%d.dcm" % i)
    uid = daemonlib.make_us(p, study_uid=study, series_uid=series, seed=i)
    sources[uid] = p
shared = os.path.join(usvtest.shared_dir(), "data", "dicom", "us")
real = os.path.join(shared, "cwil__US-YBR_FULL_422-EVRLE.dcm")  # ESAOTE, grey in colour
colour = os.path.join(shared, "pydicom-data__US1_UNCR.dcm")  # colour overlay: excluded
for p in (real, colour):
    q = os.path.join(src_dir, os.path.basename(p))
    shutil.copy(p, q)
    sources[pydicom.dcmread(q, stop_before_pixels=True).SOPInstanceUID] = q
colour_uid = pydicom.dcmread(colour, stop_before_pixels=True).SOPInstanceUID

d = Usviewd(tmp, model)
o = Orthanc(os.path.join(tmp, "orthanc"), modalities={"usviewd": ("USVIEW", "127.0.0.1", d.port)})
d.cfg["destinations"] = [{"name": "orthanc", "ae_title": o.aet, "host": "127.0.0.1",
                          "port": o.dicom_port, "send": ["sr", "tagged"],
                          "backoff_initial_s": 1, "backoff_max_s": 2}]
d.write_config()
t0 = time.monotonic()
o.start()
d.start()

ids = [o.upload(p)["ID"] for p in sources.values()]
r = o.post("/modalities/usviewd/store", {"Resources": ids, "Synchronous": True})
ck(r is not None and r.get("FailedInstancesCount", 0) == 0, "Orthanc C-STORE to usviewd: %s" % r)

n_done = len(sources) - 1
got = o.wait_instances(len(sources) + 2 * n_done, timeout=60)
ck(len(got) == len(sources) + 2 * n_done,
   "Orthanc holds %d instances, want %d\n%s" % (len(got), len(sources) + 2 * n_done,
                                                d.log()[-3000:]))
ck(d.wait_idle(30), "spool not idle")
print("round trip of %d instances: %.1f s" % (len(sources), time.monotonic() - t0))

recs = {r["sop_instance_uid"]: r for r in d.results()}
ck(set(recs) == set(sources), "results.jsonl covers %s" % sorted(recs))


def walk(items):
    for it in items or []:
        yield it
        yield from walk(getattr(it, "ContentSequence", None))


def private(ds, elem):
    for b in range(0x10, 0x100):
        t = (0x0091, b)
        if t in ds and ds[t].value == "USVIEW 1.0":
            e = ds.get((0x0091, (b << 8) | elem))
            return e.value if e is not None else None
    return None


for uid, path in sources.items():
    rec = recs.get(uid)
    if not ck(rec is not None, "%s: no results.jsonl line" % uid):
        continue
    src = pydicom.dcmread(path)
    if uid == colour_uid:
        ck(rec["outcome"] == "excluded" and "colour" in rec.get("reason", ""),
           "colour instance: %s" % rec)
        for kind in ("sr", "tagged"):
            ck(o.lookup(usvtest.derive_uid(uid, 0, sha, kind)) is None,
               "excluded instance has a %s result" % kind)
        continue
    ck(rec["outcome"] == "done", "%s: outcome %s" % (uid, rec))
    ck(rec["model"]["sha256"] == sha, "model hash in results.jsonl")
    ck(rec["study_uid"] == src.StudyInstanceUID and rec["series_uid"] == src.SeriesInstanceUID,
       "source UIDs in results.jsonl")
    ck(len(rec["topk"]) == 3 and rec["topk"][0]["label"] == rec["label"]
       and all(rec["topk"][k]["prob"] >= rec["topk"][k + 1]["prob"] for k in range(2)),
       "top-k in results.jsonl: %s" % rec["topk"])
    sr_uid = usvtest.derive_uid(uid, 0, sha, "sr")
    tg_uid = usvtest.derive_uid(uid, 0, sha, "tagged")
    ck(sorted(x["sop_instance_uid"] for x in rec["outputs"]) == sorted([sr_uid, tg_uid]),
       "outputs in results.jsonl: %s" % rec["outputs"])

    oid = o.lookup(sr_uid)
    if ck(oid is not None, "%s: SR %s not in Orthanc" % (uid, sr_uid)):
        sr = pydicom.dcmread(pydicom.filebase.DicomBytesIO(o.file(oid)))
        ck(sr.SOPClassUID == SR_COMPREHENSIVE, "SR class %s" % sr.SOPClassUID)
        ck(sr.StudyInstanceUID == src.StudyInstanceUID, "SR study UID")
        ck(sr.SeriesInstanceUID == usvtest.derive_uid("series", src.SeriesInstanceUID, sha, "sr"),
           "SR series UID")
        refs = [r.ReferencedSOPInstanceUID
                for st in sr.CurrentRequestedProcedureEvidenceSequence
                for se in st.ReferencedSeriesSequence for r in se.ReferencedSOPSequence]
        ck(refs == [uid], "SR evidence references %s" % refs)
        items = list(walk(sr.ContentSequence))
        views = [it.ConceptCodeSequence[0] for it in items if it.ValueType == "CODE"
                 and it.ConceptNameCodeSequence[0].CodeValue == "111031"]
        ck(views and views[0].CodeValue == daemonlib.view_code(rec["label"])
           and views[0].CodingSchemeDesignator == "99USVIEW",
           "SR view %s, results.jsonl label %s" % (views[0].CodeValue if views else None,
                                                   rec["label"]))
        nums = [float(it.MeasuredValueSequence[0].NumericValue) for it in items
                if it.ValueType == "NUM" and it.ConceptNameCodeSequence[0].CodeValue == "122157"]
        ck(len(nums) == 3 and abs(nums[0] - rec["prob"]) < 1e-3,
           "SR probabilities %s vs %s" % (nums, rec["prob"]))
        imgs = [it.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for it in items
                if it.ValueType == "IMAGE"]
        ck(imgs and set(imgs) == {uid}, "SR IMAGE items reference %s" % imgs)
        ck(str(sr.PatientName) == str(src.PatientName), "SR patient copied")

    oid = o.lookup(tg_uid)
    if ck(oid is not None, "%s: tagged copy %s not in Orthanc" % (uid, tg_uid)):
        tg = pydicom.dcmread(pydicom.filebase.DicomBytesIO(o.file(oid)))
        ck(tg.SOPClassUID == src.SOPClassUID and tg.StudyInstanceUID == src.StudyInstanceUID,
           "tagged copy class/study")
        ck(tg.SeriesInstanceUID == usvtest.derive_uid("series", src.SeriesInstanceUID, sha,
                                                      "tagged"), "tagged copy series UID")
        ck(private(tg, 0x01) == rec["label"], "tagged label %r vs %r" % (private(tg, 0x01),
                                                                        rec["label"]))
        ck(tg.SourceImageSequence[0].ReferencedSOPInstanceUID == uid, "tagged source reference")
        ck(tg.PixelData == src.PixelData, "tagged copy pixels differ from the source")

ck(len(d.files("done")) == n_done and len(d.files("excluded")) == 1
   and not d.files("failed"), "spool done/excluded/failed counts")
ck(len(d.files("sent", "orthanc")) == 2 * n_done, "sent/orthanc holds %d" %
   len(d.files("sent", "orthanc")))

# ---- /metrics and /healthz --------------------------------------------------
r = subprocess.run(["echoscu", "-aec", "NOTUSVIEW", "127.0.0.1", str(d.port)],
                   capture_output=True)
ck(r.returncode != 0, "an association to a wrong called AE was accepted")
time.sleep(0.3)
status, ctype, text = d.http("/metrics")
ck(status == 200 and ctype.startswith("text/plain; version=0.0.4"), "metrics %s %s" % (status,
                                                                                      ctype))
try:
    types, samples = daemonlib.parse_prometheus(text)
except ValueError as e:
    ck(False, "exposition format: %s" % e)
    types, samples = {}, []
S = lambda n, **l: daemonlib.sample(samples, n, **l)  # noqa: E731
ck(types.get("usview_instances_total") == "counter"
   and types.get("usview_classification_latency_seconds") == "histogram"
   and types.get("usview_queue_depth") == "gauge", "metric types %s" % types)
ck(S("usview_instances_total", outcome="received") == len(sources), "received counter")
ck(S("usview_instances_total", outcome="done") == n_done, "done counter")
ck(S("usview_instances_total", outcome="excluded") == 1, "excluded counter")
ck(S("usview_associations_total", result="accepted") >= 1
   and S("usview_associations_total", result="rejected") == 1, "associations counters")
ck(S("usview_classification_latency_seconds_count") == n_done, "latency histogram count")
ck(S("usview_model_info", sha256=sha, arch="custom") == 1, "model info")
ck(S("usview_queue_depth", queue="incoming") == 0 and S("usview_queue_depth", queue="done")
   == n_done, "queue depth gauges")
ck(S("usview_sent_total", destination="orthanc") == 2 * n_done
   and S("usview_outbox_depth", destination="orthanc") == 0, "sender metrics")
status, _, body = d.http("/healthz")
ck(status == 200 and body.strip() == "ok", "healthz %s %r" % (status, body))
ck(d.http("/nope")[0] == 404, "unknown path answers 404")

rc = d.stop()
ck(rc == 0, "usviewd exit status %s" % rc)
ck(d.notify.wait("STOPPING=1", 1) is not None, "no STOPPING=1")
o.stop()
ck.done()
