"""usviewd's QA pages (/qa), end to end.

The test writes the spool's results.jsonl itself, in the documented line
format (daemon/results_index.h): a study with a study record (revision 1,
then 2) that lists two missing views, a disagreement and an uncertain
image; a study without a record (pending); an older study; a re-processed
instance (two lines); a failed instance; a station name holding HTML; 60
filler studies for pagination. One instance's file lies in done/ (a
synthetic grey image whose crop is known) and one real vendor file (the
shared ESAOTE instance) for thumbnails. The PatientName and PatientID of
the DICOM files, and the free-text study_description of the lines, hold
recognisable strings that must never appear in a page.

Three daemons (no model: they only serve):
  A  http.qa on, http.token_file set: 401 without or with a wrong token
     (WWW-Authenticate), 200 with it, /metrics needs none; SIGHUP reads
     a changed token file.
  B  http.qa off: /qa is 404, /metrics 200.
  C  http.qa on, no token: headless Chromium dumps the DOM of /qa and the
     view cells are checked; screenshots of the grid and of the
     disagreement list must be real PNGs of the window size, not blank;
     filters, pagination, agreement numbers (computed here from the test
     data), review list, thumbnails (valid 128x128 PNG equal to an
     independent crop + area resize of the pixels), 404 for a thumbnail
     that left the spool and for path tricks, 400 for a bad date, lines
     appended while serving show up on the next request.

D  a tiny model classifies phantom images sent with storescu (two with a
     wrong technologist's label, pancreas not sent); the study tracker
     writes the record; the page shows the cells that the real lines
     imply, every disagreement and uncertain image in the review list
     with a thumbnail.

usage: test_qa_web.py [MAKE_MODEL]   (without it, part D is skipped)
"""

import datetime
import html.parser
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import usvtest
from daemonlib import Usviewd

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ck = usvtest.Check("qa_web")
tmp = usvtest.tempdir("usv-qa-web-")
PATIENT_NAME = "Quixotezz^Wilhelmina"
PATIENT_ID = "PIDQA-90210-77"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WIN_W, WIN_H = 1400, 1000

now = datetime.datetime.now(datetime.timezone.utc)


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def ymd(dt):
    return dt.strftime("%Y%m%d")


_seq = [0]


def spool_id():
    _seq[0] += 1
    return "%016x-%08x" % (int(now.timestamp() * 1e6) + _seq[0], 0x1a2b0000 + _seq[0])


def instance(sop, study, top, prob, tech=None, uncertain=False, station="US-ROOM-1",
             date=None, when=None, sid=None, outcome="done", acc="0123456789abcdef"):
    """One instance line as the worker writes it (results_index.h)."""
    when = when or now - datetime.timedelta(minutes=30)
    d = {"time": iso(when), "spool_id": sid or spool_id(), "outcome": outcome}
    if outcome != "done":
        d["reason"] = "cannot decode"
    d.update({"sop_instance_uid": sop, "sop_class_uid": US_IMAGE,
              "series_uid": study + ".1", "study_uid": study, "manufacturer": "ACME",
              "manufacturer_model": "X1", "frames_total": 1})
    if outcome == "done":
        topk = [{"label": top, "prob": prob}, {"label": "spleen" if top != "spleen"
                                               else "pancreas", "prob": 1 - prob}]
        d.update({"frame": 0, "label": "uncertain" if uncertain else top, "prob": prob,
                  "topk": topk,
                  "results": [{"frame": 0, "label": "uncertain" if uncertain else top,
                               "prob": prob, "topk": topk}]})
    else:
        d["results"] = []
    d.update({"outputs": [], "model": {"name": "tiny", "sha256": "ab" * 32, "arch": "vgg16"},
              "timings_ms": {"decode": 3.1, "infer": 20.5, "total": 25.0, "batch": 4},
              "kind": "instance", "station_name": station,
              "study_date": date or ymd(now),
              "study_description": "US ABDOMEN for " + PATIENT_NAME,
              "accession_hash": acc,
              "technologist_label": tech,
              "label_source": "dicom:ImageComments" if tech else None,
              "agrees": None if tech is None else (tech == top),
              "uncertain": uncertain})
    return d


def study_rec(study, rev, protocol, present, missing, station="US-ROOM-1", date=None,
              acc="0123456789abcdef", dis=0, unc=0):
    return {"kind": "study", "time": iso(now - datetime.timedelta(minutes=10 - rev)),
            "study_uid": study, "revision": rev, "protocol": protocol,
            "views_present": present, "missing": missing, "disagreements": dis,
            "uncertain": unc, "instances": sum(present.values()), "station_name": station,
            "study_date": date or ymd(now), "accession_hash": acc,
            "outputs": [{"destination": "pacs", "kind": "study_sr",
                         "sop_instance_uid": study + ".99"}]}


def make_dcm(path, rows=200, cols=300):
    """A grey US instance with a recognisable pattern; returns the pixels."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = ((xx * 255 // cols) ^ ((yy // 16 % 2) * 96)).astype(np.uint8)
    img[60:140, 120:180] = 250
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_IMAGE
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.9.7.1.1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = US_IMAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7.1.5"
    ds.Modality = "US"
    ds.Manufacturer = "ACME"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.StudyDate = ymd(now)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = img.tobytes()
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    pydicom.dcmwrite(path, ds, write_like_original=False)
    return img


# ---------------- test data ----------------

S1, S2, S3, S4 = ("1.2.826.0.1.3680043.9.7.1", "1.2.826.0.1.3680043.9.7.2",
                  "1.2.826.0.1.3680043.9.7.3", "1.2.826.0.1.3680043.9.7.4")
THUMB_ID = spool_id()
REAL_ID = spool_id()
GONE_ID = spool_id()
old_day = now - datetime.timedelta(days=40)
yesterday = now - datetime.timedelta(days=1)
lines = [
    instance(S1 + ".1.1", S1, "spleen", 0.97, tech="spleen"),
    # re-processed after a crash: first seen disagreeing, then agreeing
    instance(S1 + ".1.2", S1, "kidney_left_long", 0.91, tech="pancreas"),
    instance(S1 + ".1.3", S1, "pancreas", 0.88, tech="gallbladder", sid=THUMB_ID),
    instance(S1 + ".1.4", S1, "liver_left_long", 0.31, tech="liver_left_long",
             uncertain=True, sid=REAL_ID),
    instance(S1 + ".1.2", S1, "kidney_left_long", 0.91, tech="kidney_left_long"),
    instance(S1 + ".1.5", S1, "", 0, outcome="failed"),
    study_rec(S1, 1, "abdomen", {"spleen": 1}, ["pancreas", "kidney_left_long", "gallbladder",
                                               "liver_right_long", "liver_left_long"]),
    # as study.c counts: the uncertain image under "uncertain", its most
    # probable class (liver_left_long) therefore missing; a protocol may
    # spell views its own way ("Gall bladder")
    study_rec(S1, 2, "abdomen", {"spleen": 1, "kidney_left_long": 1, "pancreas": 1,
                                 "uncertain": 1},
              ["Gall bladder", "liver_right_long", "liver_left_long"], dis=1, unc=1),
    # pending: no study record yet
    instance(S2 + ".1.1", S2, "gallbladder", 0.8, tech="gallbladder", station="US-ROOM-2",
             date=ymd(yesterday), acc="aaaaaaaaaaaaaaaa"),
    instance(S2 + ".1.2", S2, "spleen", 0.4, tech="kidney_right_long", station="US-ROOM-2",
             date=ymd(yesterday), acc="aaaaaaaaaaaaaaaa", uncertain=True, sid=GONE_ID),
    # an older study (40 days): outside both agreement windows
    instance(S3 + ".1.1", S3, "spleen", 0.9, tech="pancreas", date=ymd(old_day),
             when=old_day, acc="bbbbbbbbbbbbbbbb"),
    # a station name holding markup
    instance(S4 + ".1.1", S4, "pancreas", 0.9, tech="pancreas",
             station="<script>alert(1)</script>", date=ymd(yesterday), acc="<b>x</b>"),
]
# filler studies ten days ago, for pagination (61 studies in all)
fill_day = now - datetime.timedelta(days=10)
for i in range(57):
    st = "1.2.826.0.1.3680043.9.8.%d" % i
    lines.append(instance(st + ".1", st, "spleen", 0.9, tech="spleen", station="US-FILL",
                          date=ymd(fill_day), when=fill_day, acc="%016x" % i))

spool = os.path.join(tmp, "usviewd-spool")
os.makedirs(os.path.join(spool, "done"))


def write_lines(path, recs, mode="w"):
    with open(path, mode) as f:
        for r in recs:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")


write_lines(os.path.join(spool, "results.jsonl"), lines)
pixels = make_dcm(os.path.join(spool, "done", THUMB_ID + ".dcm"))
real = os.path.join(usvtest.shared_dir(), "data", "dicom", "us",
                    "cwil__US-YBR_FULL_422-EVRLE.dcm")
have_real = os.path.exists(real)
if have_real:
    ds = pydicom.dcmread(real)
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.save_as(os.path.join(spool, "done", REAL_ID + ".dcm"))

# ---------------- helpers ----------------


def get(d, path, token=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (d.http_port, path))
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


pages_seen = []


def page(d, path, token=None, status=200):
    code, hdrs, body = get(d, path, token)
    ck(code == status, "%s: status %d, expected %d: %r" % (path, code, status, body[:200]))
    text = body.decode("utf-8", "replace")
    pages_seen.append((path, text))
    return text


class Dom(html.parser.HTMLParser):
    """Rows of studies (data-study) with their cells, review rows, images."""

    def __init__(self):
        super().__init__()
        self.studies, self.cur, self.cells = {}, None, []
        self.review, self.imgs, self.tds, self.in_td = [], [], [], None
        self.total = None
        self._total = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "tr" and "study" in cls:
            self.cur = a.get("data-study")
            self.studies[self.cur] = {"cells": {}, "tds": []}
        if tag == "tr" and "finding" in cls:
            self.review.append(a)
        if tag == "td" and self.cur:
            if "cell" in cls:
                v = a.get("data-view")
                self.studies[self.cur]["cells"][v] = [c for c in cls if c != "cell"][0]
            else:
                self.in_td = []
        if tag == "img":
            self.imgs.append(a.get("src"))
        if tag == "span" and a.get("id") == "total":
            self._total = True

    def handle_endtag(self, tag):
        if tag == "td" and self.in_td is not None and self.cur:
            self.studies[self.cur]["tds"].append("".join(self.in_td).strip())
            self.in_td = None
        if tag == "tr":
            self.cur = None

    def handle_data(self, data):
        if self.in_td is not None:
            self.in_td.append(data)
        if self._total:
            self.total = int(data)
            self._total = False


def dom(text):
    p = Dom()
    p.feed(text)
    return p


def chromium(args, timeout=90):
    prof = os.path.join(tmp, "chromium-profile")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-extensions", "--hide-scrollbars", "--user-data-dir=" + prof,
           "--window-size=%d,%d" % (WIN_W, WIN_H), "--virtual-time-budget=5000"] + args
    return subprocess.run(cmd, capture_output=True, timeout=timeout,
                          env=dict(os.environ, HOME=tmp))


def check_screenshot(path, what):
    if not ck(os.path.exists(path) and os.path.getsize(path) > 1000,
              "%s: no screenshot written" % what):
        return
    with open(path, "rb") as f:
        ck(f.read(8) == b"\x89PNG\r\n\x1a\n", "%s: not a PNG" % what)
    im = Image.open(path)
    im.load()
    ck(im.size == (WIN_W, WIN_H), "%s: size %s, expected %dx%d" % (what, im.size, WIN_W, WIN_H))
    a = np.asarray(im.convert("RGB")).astype(np.int32)
    colours = len(np.unique(a.reshape(-1, 3) @ np.array([65536, 256, 1])))
    ck(a.std() > 10 and colours > 20,
       "%s: blank-looking screenshot (std %.1f, %d colours)" % (what, a.std(), colours))
    return a


# ---------------- A: token ----------------

token = "s3cr3t-QA-token-%d" % os.getpid()
tok_path = os.path.join(tmp, "qa.token")
with open(tok_path, "w") as f:
    f.write(token + "\n")
os.chmod(tok_path, 0o600)
d = Usviewd(tmp, "", extra={"http": {"qa": True, "token_file": tok_path}})
d.start()
code, hdrs, body = get(d, "/qa")
ck(code == 401, "no token: status %d" % code)
ck(hdrs.get("WWW-Authenticate", "").startswith("Bearer"),
   "401 without WWW-Authenticate: Bearer: %s" % hdrs)
code, hdrs, _ = get(d, "/qa", token="wrong" + token)
ck(code == 401, "wrong token: status %d" % code)
code, hdrs, _ = get(d, "/qa", token=token[:-1])
ck(code == 401, "token prefix: status %d" % code)
code, _, _ = get(d, "/qa/thumb/%s.png" % THUMB_ID)
ck(code == 401, "thumbnail without token: status %d" % code)
page(d, "/qa", token=token)
code, _, body = get(d, "/qa/thumb/%s.png" % THUMB_ID, token=token)
ck(code == 200 and body[:8] == b"\x89PNG\r\n\x1a\n", "thumbnail with token: %d" % code)
code, _, _ = get(d, "/metrics")
ck(code == 200, "/metrics must not need the token: %d" % code)
# a new token after SIGHUP
token2 = token + "-rotated"
with open(tok_path, "w") as f:
    f.write(token2)
os.kill(d.proc.pid, signal.SIGHUP)
ok = False
for _ in range(100):
    if get(d, "/qa", token=token2)[0] == 200:
        ok = True
        break
    time.sleep(0.1)
ck(ok, "SIGHUP: the new token is not accepted")
ck(get(d, "/qa", token=token)[0] == 401, "SIGHUP: the old token still works")
d.stop()

# ---------------- B: off ----------------

d = Usviewd(tmp, "", name="usviewd-off", extra={"http": {"qa": False}})
os.makedirs(d.spool, exist_ok=True)
shutil.copy(os.path.join(spool, "results.jsonl"), d.spool)
d.start()
code, _, _ = get(d, "/qa")
ck(code == 404, "http.qa false: /qa status %d" % code)
code, _, _ = get(d, "/qa/review")
ck(code == 404, "http.qa false: /qa/review status %d" % code)
ck(get(d, "/metrics")[0] == 200, "http.qa false: /metrics")
d.stop()

# ---------------- C: pages ----------------

d = Usviewd(tmp, "", name="usviewd-c", extra={"http": {"qa": True}})
shutil.copytree(spool, d.spool)
d.start()

# the grid, as Chromium renders it
shot = os.path.join(tmp, "grid.png")
r = chromium(["--screenshot=" + shot, "http://127.0.0.1:%d/qa" % d.http_port])
ck(r.returncode == 0, "chromium --screenshot: %s" % r.stderr[-2000:])
check_screenshot(shot, "grid screenshot")
r = chromium(["--dump-dom", "http://127.0.0.1:%d/qa" % d.http_port])
ck(r.returncode == 0, "chromium --dump-dom: %s" % r.stderr[-2000:])
rendered = r.stdout.decode("utf-8", "replace")
pages_seen.append(("dom /qa", rendered))
g = dom(rendered)
ck(S1 in g.studies, "study S1 not on the first page: %s" % list(g.studies)[:5])
ck(len(g.studies) == 50, "first page has %d studies, expected 50" % len(g.studies))
ck(g.total == 61, "total %s, expected 61 studies" % g.total)
order = list(g.studies)
ck(order[:3] == [S1, S2, S4] or order[:3] == [S1, S4, S2],
   "newest first: %s" % order[:3])
want = {"spleen": "present", "kidney_left_long": "present", "pancreas": "disagreement",
        "liver_left_long": "uncertain", "gallbladder": "missing", "liver_right_long": "missing"}
c1 = g.studies.get(S1, {}).get("cells", {})
for v, stt in want.items():
    ck(c1.get(v) == stt, "S1 cell %s: %s, expected %s" % (v, c1.get(v), stt))
ck(all(c1.get(v) in ("none", None) for v in c1 if v not in want),
   "S1 has unexpected cells: %s" % c1)
tds = g.studies.get(S1, {}).get("tds", [])
ck(len(tds) >= 7 and tds[1] == "US-ROOM-1" and tds[2] == "0123456789abcdef"
   and tds[3].startswith("abdomen") and "r2" in tds[3] and tds[4] == "4",
   "S1 row: %s" % tds)
ck(tds[0] == now.strftime("%Y-%m-%d") if tds else False, "S1 date: %s" % tds[:1])
t2 = g.studies.get(S2, {}).get("tds", [])
ck(len(t2) >= 4 and t2[3] == "pending", "S2 (no record) not pending: %s" % t2)
c2 = g.studies.get(S2, {}).get("cells", {})
# uncertain and disagreeing: the disagreement shows
ck(c2.get("gallbladder") == "present" and c2.get("spleen") == "disagreement",
   "S2 cells from its instances: %s" % c2)
c4 = g.studies.get(S4, {}).get("cells", {})
ck(c4.get("pancreas") == "present", "S4 cells: %s" % c4)
ck(g.studies.get(S4, {}).get("tds", ["", ""])[1] == "<script>alert(1)</script>",
   "S4 station text: %s" % g.studies.get(S4, {}).get("tds"))

raw = page(d, "/qa")
ck("<script>" not in raw, "unescaped markup in /qa")
ck("&lt;script&gt;alert(1)&lt;/script&gt;" in raw, "station name not escaped as text")
ck("<b>x</b>" not in raw, "an accession_hash that is not a hash was shown")
ck('<td class="cell missing" data-view="gallbladder"' in raw, "raw cell markup")
ck("<script" not in raw.lower().replace("&lt;script", ""), "JavaScript in the page")

# page 2, filters
p2 = dom(page(d, "/qa?page=2"))
ck(len(p2.studies) == 11 and S3 in p2.studies, "page 2: %d studies" % len(p2.studies))
ck(not set(p2.studies) & set(g.studies), "page 2 repeats page 1")
f = dom(page(d, "/qa?station=US-ROOM-2"))
ck(list(f.studies) == [S2], "station filter: %s" % list(f.studies))
f = dom(page(d, "/qa?station=%3Cscript%3Ealert(1)%3C%2Fscript%3E"))
ck(list(f.studies) == [S4], "station filter with markup: %s" % list(f.studies))
f = dom(page(d, "/qa?station=NOPE"))
ck(f.studies == {} and f.total == 0, "unknown station: %s" % list(f.studies))
day = now.strftime("%Y-%m-%d")
f = dom(page(d, "/qa?from=%s&to=%s" % (day, day)))
ck(list(f.studies) == [S1], "date filter today: %s" % list(f.studies))
f = dom(page(d, "/qa?to=%s" % (old_day.strftime("%Y-%m-%d"))))
ck(list(f.studies) == [S3], "date filter to 40 days ago: %s" % list(f.studies))
f = dom(page(d, "/qa?from=%s&station=US-ROOM-1" % yesterday.strftime("%Y-%m-%d")))
ck(list(f.studies) == [S1], "date and station: %s" % list(f.studies))
page(d, "/qa?from=2026-13-01", status=400)
page(d, "/qa?to=yesterday", status=400)
page(d, "/qa?page=0", status=400)
page(d, "/qa/nothing", status=404)

# agreement: computed here from the lines (dedup: the later line wins)
latest = {}
for rec in lines:
    if rec.get("kind") == "instance" and rec["outcome"] == "done":
        latest[rec["sop_instance_uid"]] = rec
exp = {}
for rec in latest.values():
    t = datetime.datetime.strptime(rec["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    if rec["agrees"] is None or now - t > datetime.timedelta(days=30):
        continue
    for key in (("station", rec["station_name"]), ("class", rec["technologist_label"])):
        e = exp.setdefault(key, [0, 0, 0, 0])
        recent = now - t <= datetime.timedelta(days=7)
        if rec["agrees"]:
            e[2] += 1
            e[0] += recent
        else:
            e[3] += 1
            e[1] += recent
agr = page(d, "/qa/agreement")


class Rows(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.table, self.row, self.cell = {}, None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self.table = a["id"]
        if tag == "tr" and "data-key" in a:
            self.row = (self.table, a["data-key"])
            self.rows[self.row] = []
        if tag == "td" and self.row:
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None and self.row:
            self.rows[self.row].append("".join(self.cell).strip())
            self.cell = None
        if tag == "tr":
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


rp = Rows()
rp.feed(agr)
for (kind, key), (a7, d7, a30, d30) in exp.items():
    row = rp.rows.get(("by-" + kind, key))
    if not ck(row is not None, "agreement: no row for %s %s" % (kind, key)):
        continue
    ck(row[2:4] == [str(a7), str(d7)] and row[5:7] == [str(a30), str(d30)],
       "agreement %s %s: %s, expected 7d %d/%d 30d %d/%d" % (kind, key, row, a7, d7, a30,
                                                            d30))
    if a30 + d30:
        ck(row[4] == "%.1f%%" % (100.0 * a30 / (a30 + d30)), "rate %s %s: %s" % (kind, key,
                                                                               row[4]))
ck(("by-station", "US-FILL") in rp.rows and rp.rows[("by-station", "US-FILL")][0] == "US-FILL",
   "US-FILL row")
ck(rp.rows.get(("by-station", "US-FILL"), [""] * 5)[1] == "\u2013",
   "no 7-day rate for a station without recent labels: %s" % rp.rows.get(("by-station",
                                                                          "US-FILL")))

# review list: disagreements and uncertain images, newest first
rv = dom(page(d, "/qa/review"))
want_ids = {THUMB_ID, REAL_ID, GONE_ID}
got_ids = [r.get("data-spool-id") for r in rv.review]
# S3's disagreement is 40 days old but still a finding; S1.1.2 re-processed, no longer one
ck(set(got_ids) == want_ids | {latest[S3 + ".1.1"]["spool_id"]},
   "review rows: %s" % got_ids)
ck("/qa/thumb/%s.png" % THUMB_ID in rv.imgs, "no thumbnail img for the disagreement")
rd = dom(page(d, "/qa/review?kind=disagreement&station=US-ROOM-1"))
ck(sorted(r.get("data-spool-id") for r in rd.review) == sorted(
    [THUMB_ID, latest[S3 + ".1.1"]["spool_id"]]), "disagreement filter: %s" % rd.review)
ru = dom(page(d, "/qa/review?kind=uncertain"))
ck(sorted(r.get("data-spool-id") for r in ru.review) == sorted([REAL_ID, GONE_ID]),
   "uncertain filter: %s" % ru.review)
page(d, "/qa/review?kind=bogus", status=400)

shot2 = os.path.join(tmp, "disagreement.png")
r = chromium(["--screenshot=" + shot2,
              "http://127.0.0.1:%d/qa/review?kind=disagreement" % d.http_port])
ck(r.returncode == 0, "chromium review screenshot: %s" % r.stderr[-2000:])
check_screenshot(shot2, "disagreement screenshot")

# thumbnails
code, hdrs, body = get(d, "/qa/thumb/%s.png" % THUMB_ID)
ck(code == 200 and hdrs.get("Content-Type") == "image/png", "thumbnail: %d %s" % (code, hdrs))
try:
    im = Image.open(io.BytesIO(body))
    im.load()
    ck(im.size == (128, 128), "thumbnail size %s" % (im.size,))
    got = np.asarray(im.convert("L")).astype(np.float64)
    # independent reference: no crop rule and no US region -> the largest
    # centred square, then an area resize (PIL's box filter)
    rows, cols = pixels.shape
    side = min(rows, cols)
    x0, y0 = (cols - side) // 2, (rows - side) // 2
    ref = np.asarray(Image.fromarray(pixels[y0:y0 + side, x0:x0 + side]).resize(
        (128, 128), Image.BOX)).astype(np.float64)
    diff = np.abs(got - ref).mean()
    ck(diff < 2.0, "thumbnail differs from the reference crop: mean |diff| %.2f" % diff)
except Exception as e:  # noqa: BLE001
    ck(False, "thumbnail is not a valid PNG: %s" % e)
if have_real:
    code, _, body = get(d, "/qa/thumb/%s.png" % REAL_ID)
    ck(code == 200, "thumbnail of the vendor file: %d %r" % (code, body[:200]))
    if code == 200:
        im = Image.open(io.BytesIO(body))
        im.load()
        a = np.asarray(im.convert("RGB")).astype(np.float64)
        ck(im.size == (128, 128) and a.std() > 5, "vendor thumbnail %s std %.1f" % (
            im.size, a.std()))
code, _, body = get(d, "/qa/thumb/%s.png" % GONE_ID)
ck(code == 404 and b"no longer in the spool" in body, "gone thumbnail: %d %r" % (code, body))
for bad in ("/qa/thumb/../../../etc/passwd.png", "/qa/thumb/..%2F..%2Fresults.jsonl.png",
            "/qa/thumb/%s.dcm" % THUMB_ID, "/qa/thumb/%s" % THUMB_ID,
            "/qa/thumb/%s.png" % THUMB_ID.upper(), "/qa/thumb/x%s.png" % THUMB_ID,
            "/qa/thumb/.png", "/qa/thumb/%s.png/x" % THUMB_ID):
    code, _, body = get(d, bad)
    ck(code in (400, 404), "%s: status %d" % (bad, code))
    ck(not body.startswith(b"\x89PNG"), "%s: served an image" % bad)

# lines appended while serving: a new revision completes S1, a new study
write_lines(os.path.join(d.spool, "results.jsonl"), [
    study_rec(S1, 3, "abdomen", {"spleen": 1, "kidney_left_long": 1, "pancreas": 1,
                                 "gallbladder": 1, "liver_right_long": 1, "uncertain": 1},
              ["liver_left_long", "kidney_right_trans"]),
    instance("1.2.826.0.1.3680043.9.7.9.1", "1.2.826.0.1.3680043.9.7.9", "spleen", 0.95,
             station="US-ROOM-9", when=now),
], mode="a")
with open(os.path.join(d.spool, "results.jsonl"), "a") as fh:
    fh.write('{"kind":"instance","time":"%s","sop_instance_uid":"partial' % iso(now))
g2 = dom(page(d, "/qa"))
c1 = g2.studies.get(S1, {}).get("cells", {})
ck(c1.get("gallbladder") == "present" and c1.get("liver_right_long") == "present" and
   c1.get("liver_left_long") == "uncertain" and c1.get("kidney_right_trans") == "missing"
   and "uncertain" not in c1, "S1 after revision 3: %s" % c1)
ck(list(g2.studies)[0] == "1.2.826.0.1.3680043.9.7.9" and g2.total == 62,
   "new study first: %s, total %s" % (list(g2.studies)[:2], g2.total))

d.stop()

# ---------------- D: real worker and study tracker output ----------------
# A tiny model classifies phantom images (usview phantom) sent with
# storescu; the study tracker writes the study record. The page must show
# what those lines say, by the rules of the page computed here.

make_model = sys.argv[1] if len(sys.argv) > 1 else None
if make_model and os.environ.get("USVIEW"):
    model = os.path.join(tmp, "tiny.model")
    subprocess.run([make_model, model, "5"], check=True)
    ph = os.path.join(tmp, "phantom")
    subprocess.run([os.environ["USVIEW"], "phantom", "--out", ph, "--studies", "1",
                    "--manufacturer", "toshiba", "--seed", "11"], check=True,
                   stdout=subprocess.DEVNULL)
    import csv
    VIEWS = ["liver_left_long", "liver_left_trans", "liver_right_long", "liver_right_trans",
             "spleen", "pancreas", "kidney_left_long", "kidney_left_trans",
             "kidney_right_long", "kidney_right_trans", "gallbladder"]
    TYPED = {"liver_left_long": "LIVER LT LONG", "liver_left_trans": "LIVER LT TRANS",
             "liver_right_long": "LIVER RT LONG", "liver_right_trans": "LIVER RT TRANS",
             "spleen": "SPLEEN", "pancreas": "PANCREAS", "kidney_left_long": "LT KIDNEY LONG",
             "kidney_left_trans": "LT KIDNEY TRANS", "kidney_right_long": "RT KIDNEY LONG",
             "kidney_right_trans": "RT KIDNEY TRANS", "gallbladder": "GB"}
    views = {}
    with open(os.path.join(ph, "labels.csv")) as fh:
        for row in csv.DictReader(fh):
            views[row["label"]] = os.path.join(ph, row["path"])
    study = usvtest.derive_uid("usv-qa-web-test", 1)
    send = []
    for k, v in enumerate(x for x in VIEWS if x != "pancreas" and x in views):
        ds = pydicom.dcmread(views[v])
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = usvtest.derive_uid("usv-qa-web-test", 1, "series")
        ds.StudyDescription = "US ABDOMEN"
        ds.StationName = "PHANTOM-ROOM"
        ds.AccessionNumber = "ACC-QA-1"
        ds.PatientName = PATIENT_NAME
        ds.PatientID = PATIENT_ID
        # a wrong label on two images
        ds.ImageComments = TYPED[VIEWS[(k + 3) % 11]] if v in ("spleen", "gallbladder") \
            else TYPED[v]
        pth = os.path.join(tmp, "d-%s.dcm" % v)
        ds.save_as(pth)
        send.append(pth)
    d = Usviewd(tmp, model, name="usviewd-d", extra={
        "http": {"qa": True}, "qa": {"study_quiet_s": 1, "labels": True},
        "model": {"min_confidence": 0.33},
        "protocols": [{"name": "abdomen", "match": ["abdomen"], "required_views": VIEWS}]})
    d.start()
    r = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "USVIEW", "127.0.0.1",
                        str(d.port)] + send, capture_output=True)
    ck(r.returncode == 0, "storescu: %s" % r.stderr[-1000:])

    def recs():
        return [o for o in d.results() if o.get("study_uid") == study]

    end = time.monotonic() + 60
    while time.monotonic() < end and not any(o.get("kind") == "study" for o in recs()):
        time.sleep(0.2)
    lines_d = recs()
    srec = [o for o in lines_d if o.get("kind") == "study"]
    if ck(srec, "no study record from the tracker: %s" % d.log()[-2000:]):
        rec = max(srec, key=lambda o: o["revision"])
        inst = {}
        for o in lines_d:
            if o.get("kind", "instance") == "instance":
                inst[o["sop_instance_uid"]] = o
        ck(len(inst) == len(send), "%d instance lines for %d sent" % (len(inst), len(send)))
        # the page's rule: D, then U, then M (record), then P
        want = {}
        for v in set(rec["missing"]) | {o["topk"][0]["label"] for o in inst.values()
                                        if o["outcome"] == "done"} | {
                k for k in rec["views_present"] if k != "uncertain"}:
            mine = [o for o in inst.values()
                    if o["outcome"] == "done" and o["topk"][0]["label"] == v]
            if any(o["agrees"] is False for o in mine):
                want[v] = "disagreement"
            elif any(o["uncertain"] for o in mine):
                want[v] = "uncertain"
            elif v in rec["missing"]:
                want[v] = "missing"
            else:
                want[v] = "present"
        ck("pancreas" in want, "pancreas (not sent) neither missing nor seen: %s" % want)
        gd = dom(page(d, "/qa"))
        cells = gd.studies.get(study, {}).get("cells", {})
        got = {v: c for v, c in cells.items() if c != "none"}
        ck(got == want, "real study cells: %s, expected %s" % (got, want))
        tds = gd.studies.get(study, {}).get("tds", [])
        ck(len(tds) > 4 and tds[1] == "PHANTOM-ROOM" and tds[3].startswith("abdomen")
           and tds[2] == rec["accession_hash"] and len(tds[2]) == 16,
           "real study row: %s" % tds)
        # every disagreement and uncertain image in the review list, with
        # a thumbnail of the instance in done/
        find = {o["spool_id"] for o in inst.values()
                if o["outcome"] == "done" and (o["agrees"] is False or o["uncertain"])}
        rvd = dom(page(d, "/qa/review"))
        ck({r.get("data-spool-id") for r in rvd.review} == find,
           "real review list: %s, expected %s" % (rvd.review, find))
        for sid in sorted(find)[:2]:
            code, hdrs, body = get(d, "/qa/thumb/%s.png" % sid)
            ok = code == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
            if ok:
                im = Image.open(io.BytesIO(body))
                im.load()
                ok = im.size == (128, 128)
            ck(ok, "real thumbnail %s: %d" % (sid, code))
        page(d, "/qa/agreement")
    d.stop()
else:
    print("part D skipped: no make_model argument or USVIEW")

# no patient name or ID anywhere
parts = [PATIENT_ID, "Quixotezz", "Wilhelmina", "ACC-QA-1"]
for path, text in pages_seen:
    for p in parts:
        ck(p.lower() not in text.lower(), "%s shows %s" % (path, p))
ck(len(pages_seen) >= 15, "pages checked: %d" % len(pages_seen))
print("screenshots: %s %s" % (shot, shot2))
ck.done()
