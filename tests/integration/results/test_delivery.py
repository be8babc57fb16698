"""Delivery of results to real peers on loopback, through the spool and the sender.

Peers: DCMTK storescp (accepting; refusing every association), a port with
nothing listening (started later), and a private Orthanc with the called-AE
check and a registered modality for us. Short backoff values throughout.

A  storescp accepts: SR + tagged copy sent; storescp's files carry our UIDs.
B  lossy JPEG tagged copy to storescp (uncompressed only): no presentation
   context -> dead letter at once, reason says so, one attempt.
C  storescp --refuse: association rejected -> retried, dead after
   max_attempts with the reason.
D  nothing listening: connection refused -> retries with backoff stored in
   the spool; storescp started later -> delivered, state file gone.
E  restart: attempts counted in the spool continue across sender runs.
N  three entries for a peer that is down: one attempt, the others wait out
   the same backoff untouched.
M  maximum age: an item older than max_age after a failure is dead-lettered.
F  Orthanc: SR and tagged copy stored, read back through REST with the right
   label, references and UIDs; pixel data of the stored copy = source's; the
   SR of a UTF-8 source shows the patient name Orthanc decodes correctly.
G  Orthanc with an unregistered calling AE: rejected, dead letter, nothing stored.
O  four results due together go to storescp over ONE association (storescp's
   verbose log: all four store requests in one association).
P  four results over one association to statusscp, which refuses only the
   second: 0xA900 -> that one is dead-lettered, the other three are stored in
   the same association; 0xA700 -> the first is stored, the second deferred
   with backoff (its own attempt count), the third and fourth are not sent
   while the destination waits (no attempt counted) and go later; the second
   is retried alone and dies after max_attempts.
H-L a minimal SCP (lib/statusscp.py) answering 0xA900 / 0xC000 (dead at once),
   0xA700 (retried, then dead), 0xB000 (sent, counted as warning), or never
   answering (DIMSE timeout: retry class); storescp --abort-during (retry class).

argv[1]: result_tool, argv[2]: sender_tool.
"""

import glob
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import usvtest  # noqa: E402
from orthanc import Orthanc  # noqa: E402
from storescp import StoreSCP  # noqa: E402

import pydicom  # noqa: E402

RESULT_TOOL, SENDER_TOOL = sys.argv[1], sys.argv[2]
US = os.path.join(usvtest.shared_dir(), "data", "dicom", "us")
SHA = "5" * 64
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
ck = usvtest.Check("results_delivery")
tmp = usvtest.tempdir("usv-delivery-")
T0 = time.monotonic()

PROBS = ["kidney_right_long=0.72", "liver_right_trans=0.2", "spleen=0.08"]


def make(kind, src_name, frame=0):
    src = src_name if os.path.isabs(src_name) else os.path.join(US, src_name)
    out = os.path.join(tmp, "%s-%s-%d.dcm" % (kind, os.path.basename(src_name), frame))
    r = subprocess.run([RESULT_TOOL, kind, src, out, str(frame), SHA, "3"] + PROBS,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout), src


def dest(name, port, ae="STORESCP", calling="USVIEW", attempts=3, base=0.5, mx=1, age=120):
    return ("name=%s,ae=%s,host=127.0.0.1,port=%d,calling=%s,attempts=%d,base=%s,max=%s,age=%s"
            % (name, ae, port, calling, attempts, base, mx, age))


def enqueue(spool, kind, sop_class, path, *dests):
    r = subprocess.run([SENDER_TOOL, spool, "enqueue", kind, sop_class, path] + list(dests),
                       capture_output=True, text=True, timeout=30)
    ck(r.returncode == 0, "enqueue failed: %s" % r.stderr)
    return int(r.stdout.strip() or 0)


def run_sender(spool, seconds, *dests):
    r = subprocess.run([SENDER_TOOL, spool, "run", str(seconds)] + list(dests),
                       capture_output=True, text=True, timeout=seconds + 30)
    ck(r.returncode == 0, "sender run failed: %s" % r.stderr)
    return {c["name"]: c for c in map(json.loads, r.stdout.split("\n")[:-1])}, r.stderr


def files(spool, state, name, ext=".dcm"):
    return sorted(glob.glob(os.path.join(spool, state, name, "*" + ext)))


def read_state(path):
    st = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                st[k] = v
    return st


def storescp(port, outdir, *extra):
    return StoreSCP(outdir, port=port, extra=extra).start()


sr_path, sr_ids, sr_src = make("sr", "pydicom-data__OBXXXX1A_rle_2frame.dcm", 1)
tg_path, tg_ids, tg_src = make("tagged", "pydicom-data__OBXXXX1A.dcm")
jpeg_path, jpeg_ids, _ = make("tagged", "dicomParser__IM00001.fragmented_no_bot_jpeg_baseline.50.dcm")

# ---- A + B: accepting storescp ------------------------------------------------
spool = os.path.join(tmp, "spoolA")
port = usvtest.free_port()
rcv = os.path.join(tmp, "rcvA")
scp = storescp(port, rcv)
dA = dest("pacs", port)
ck(enqueue(spool, "sr", SR_CLASS, sr_path, dA) == 1, "SR not queued")
ck(enqueue(spool, "tagged", tg_ids["sop_class"], tg_path, dA) == 1, "tagged not queued")
ck(enqueue(spool, "tagged", jpeg_ids["sop_class"], jpeg_path, dA) == 1, "JPEG copy not queued")
# A destination that takes SRs only must not get the tagged copy.
dSR = dest("sronly", port) + ",kinds=1"
ck(enqueue(spool, "tagged", tg_ids["sop_class"], tg_path, dSR) == 0, "kinds filter ignored")
dSop = dest("soponly", port) + ",sop=" + SR_CLASS
ck(enqueue(spool, "tagged", tg_ids["sop_class"], tg_path, dSop) == 0, "SOP class filter ignored")
counters, log = run_sender(spool, 20, dA)
c = counters["pacs"]
ck(c["sent"] == 2 and c["dead"] == 1 and c["attempts"] == 3,
   "A/B counters %s\n%s" % (c, log))
ck(len(files(spool, "sent", "pacs")) == 2, "A: sent/ has %d files" % len(files(spool, "sent", "pacs")))
got = {pydicom.dcmread(f).SOPInstanceUID for f in glob.glob(os.path.join(rcv, "*"))}
ck(got == {sr_ids["sop_instance"], tg_ids["sop_instance"]}, "A: storescp got %s" % got)
dead = files(spool, "dead", "pacs", ".reason")
ck(len(dead) == 1, "B: %d dead letters" % len(dead))
if dead:
    reason = open(dead[0]).read()
    ck("presentation context" in reason and "1 attempt" in reason, "B: reason %r" % reason)
    with open(dead[0][:-len(".reason")] + ".dcm", "rb") as f1, open(jpeg_path, "rb") as f2:
        ck(f1.read() == f2.read(), "B: dead letter is not the queued object")
ck(not files(spool, "outbox", "pacs", ".state"), "A: state files left in the outbox")
scp.stop()

# C-ECHO probe: answered by storescp, retry class when nothing listens.
def echo(port, called="STORESCP", calling="USVIEW"):
    r = subprocess.run([RESULT_TOOL, "echo", "127.0.0.1", str(port), called, calling],
                       capture_output=True, text=True, timeout=30)
    return json.loads(r.stdout)


scp = storescp(port, rcv)
e = echo(port)
ck(e["outcome"] == "success" and e["rc"] == 0, "echo to storescp: %s" % e)
scp.stop()
e = echo(port)
ck(e["outcome"] == "retry" and "refused" in e["reason"], "echo to a closed port: %s" % e)

# ---- C: refusing storescp -----------------------------------------------------
spool = os.path.join(tmp, "spoolC")
port = usvtest.free_port()
scp = storescp(port, os.path.join(tmp, "rcvC"), "--refuse")
dC = dest("refusing", port, attempts=3)
enqueue(spool, "sr", SR_CLASS, sr_path, dC)
t = time.monotonic()
counters, log = run_sender(spool, 20, dC)
c = counters["refusing"]
ck(c["attempts"] == 3 and c["retries"] == 2 and c["dead"] == 1 and c["sent"] == 0,
   "C counters %s\n%s" % (c, log))
dead = files(spool, "dead", "refusing", ".reason")
ck(len(dead) == 1 and "association rejected" in open(dead[0]).read()
   and "3 attempt" in open(dead[0]).read(),
   "C: dead letter reason %r" % (open(dead[0]).read() if dead else None))
ck(time.monotonic() - t >= 0.5, "C: no backoff between attempts")
scp.stop()

# ---- D: nothing listening, then a peer appears ----------------------------------
spool = os.path.join(tmp, "spoolD")
port = usvtest.free_port()
dD = dest("late", port, attempts=20, base=0.5, mx=1)
enqueue(spool, "sr", SR_CLASS, sr_path, dD)
proc = subprocess.Popen([SENDER_TOOL, spool, "run", "30", dD], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
seen = {}
end = time.monotonic() + 15
while time.monotonic() < end:
    st = glob.glob(os.path.join(spool, "outbox", "late", "*.state"))
    if st:
        seen = read_state(st[0])
        if int(seen.get("attempts", 0)) >= 2:
            break
    time.sleep(0.05)
ck(int(seen.get("attempts", 0)) >= 2, "D: no durable retry state: %s" % seen)
ck("Connection refused" in seen.get("last_error", ""), "D: last error %r" % seen.get("last_error"))
ck(int(seen.get("next_try", 0)) >= int(time.time()) - 1, "D: next_try not in the future")
rcv = os.path.join(tmp, "rcvD")
scp = storescp(port, rcv)
out, log = proc.communicate(timeout=40)
c = json.loads(out.splitlines()[0])
ck(c["sent"] == 1 and c["retries"] >= 2 and c["dead"] == 0, "D counters %s\n%s" % (c, log))
ck(len(files(spool, "sent", "late")) == 1, "D: not delivered")
ck(not glob.glob(os.path.join(spool, "outbox", "late", "*")), "D: outbox not empty")
got = [pydicom.dcmread(f).SOPInstanceUID for f in glob.glob(os.path.join(rcv, "*"))]
ck(got == [sr_ids["sop_instance"]], "D: storescp got %s" % got)
scp.stop()

# ---- E: attempts survive a restart ---------------------------------------------
spool = os.path.join(tmp, "spoolE")
port = usvtest.free_port()
dE = dest("down", port, attempts=50, base=0.5, mx=1)
enqueue(spool, "sr", SR_CLASS, sr_path, dE)
run_sender(spool, 2.5, dE)
st1 = read_state(glob.glob(os.path.join(spool, "outbox", "down", "*.state"))[0])
run_sender(spool, 2.5, dE)
st2 = read_state(glob.glob(os.path.join(spool, "outbox", "down", "*.state"))[0])
a1, a2 = int(st1.get("attempts", 0)), int(st2.get("attempts", 0))
ck(a1 >= 1 and a2 > a1, "E: attempts %d then %d (not carried over)" % (a1, a2))
ck(a2 <= 8, "E: %d attempts in 5 s with 0.5-1 s backoff" % a2)

# ---- N: a failing destination is probed by one entry, the others wait -------------
spool = os.path.join(tmp, "spoolN")
port = usvtest.free_port()
dN = dest("blocked", port, attempts=50, base=4, mx=4)
for _ in range(3):
    enqueue(spool, "sr", SR_CLASS, sr_path, dN)
counters, log = run_sender(spool, 1.5, dN)
states = [read_state(p) for p in glob.glob(os.path.join(spool, "outbox", "blocked", "*.state"))]
ck(counters["blocked"]["attempts"] == 1 and len(states) == 1,
   "N: %s attempts, %d entries touched while the peer was down"
   % (counters["blocked"]["attempts"], len(states)))

# ---- M: maximum age ends the retries before max_attempts --------------------------
spool = os.path.join(tmp, "spoolM")
port = usvtest.free_port()
dM = dest("old", port, attempts=1000, base=0.5, mx=0.5, age=2)
enqueue(spool, "sr", SR_CLASS, sr_path, dM)
counters, log = run_sender(spool, 15, dM)
c = counters["old"]
dead = files(spool, "dead", "old", ".reason")
ck(c["dead"] == 1 and 2 <= c["attempts"] <= 6, "M counters %s\n%s" % (c, log))
ck(dead and "gave up" in open(dead[0]).read(), "M: no dead letter after the maximum age")

# ---- H-L: failure statuses, hang and abort (statusscp: PS3.8 SCP in Python) ---------
STATUSSCP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib", "statusscp.py")
cases = [  # name, peer, dest options, expected counters, reason text
    ("st-a900", ["A900"], dict(attempts=5), dict(attempts=1, dead=1, sent=0), "0xA900"),
    ("st-c000", ["C000"], dict(attempts=5), dict(attempts=1, dead=1, sent=0), "0xC000"),
    ("st-a700", ["A700"], dict(attempts=2), dict(attempts=2, retries=1, dead=1), "0xA700"),
    ("st-b000", ["B000"], dict(attempts=5), dict(attempts=1, sent=1, warnings=1), None),
    ("st-hang", ["0000", "--hang"], dict(attempts=1, dimse=2), dict(attempts=1, dead=1),
     "timeout"),
    ("abort", None, dict(attempts=1), dict(attempts=1, dead=1), "aborted"),
]
for name, peer, opts, want, why in cases:
    spool = os.path.join(tmp, "spool-" + name)
    port = usvtest.free_port()
    if peer:
        scp = usvtest.Proc([sys.executable, STATUSSCP, str(port)] + peer
                           + ["--log", os.path.join(tmp, name + ".log")])
        ck(usvtest.wait_port(port, 10, scp.p), "%s: statusscp did not start" % name)
    else:
        scp = storescp(port, os.path.join(tmp, "rcv-" + name), "--abort-during")
    extra = ",dimse=%d" % opts.pop("dimse") if "dimse" in opts else ""
    d = dest(name, port, ae="ANY", **opts) + extra
    enqueue(spool, "sr", SR_CLASS, sr_path, d)
    counters, log = run_sender(spool, 20, d)
    c = counters[name]
    ck(all(c[k] == v for k, v in want.items()), "%s: counters %s, want %s\n%s"
       % (name, c, want, log))
    if why:
        dead = files(spool, "dead", name, ".reason")
        text = open(dead[0]).read() if dead else ""
        ck(why in text, "%s: dead-letter reason %r lacks %r" % (name, text, why))
    else:
        ck(len(files(spool, "sent", name)) == 1, "%s: not in sent/" % name)
    if peer:
        with open(os.path.join(tmp, name + ".log")) as f:
            ck(sr_ids["sop_instance"] in f.read(), "%s: peer did not see the SR" % name)
    scp.stop()

# ---- O + P: several results per association --------------------------------------
srs = []
for name, fr in [("pydicom-data__OBXXXX1A_2frame.dcm", 0), ("pydicom-data__OBXXXX1A_2frame.dcm", 1),
                 ("pydicom-data__OBXXXX1A_rle_2frame.dcm", 0),
                 ("dicomParser__IM00001.implicit_little_endian.dcm", 0),
                 ("cwil__US-YBR_FULL_422-EVRLE.dcm", 0), ("pydicom-data__OBXXXX1A_rle_2frame.dcm", 1)]:
    p, ids, _ = make("sr", name, fr)
    if ids["sop_instance"] not in [u for _, u in srs]:
        srs.append((p, ids["sop_instance"]))
srs = srs[:4]
ck(len(srs) == 4, "O: only %d distinct SRs" % len(srs))
uids = [u for _, u in srs]

spool = os.path.join(tmp, "spoolO")
port = usvtest.free_port()
scp = storescp(port, os.path.join(tmp, "rcvO"), "-v")
dO = dest("batch", port)
for p, _ in srs:
    enqueue(spool, "sr", SR_CLASS, p, dO)
counters, log = run_sender(spool, 20, dO)
c = counters["batch"]
ck(c["sent"] == 4 and c["attempts"] == 4 and c["dead"] == 0, "O counters %s\n%s" % (c, log))
ck(sorted(scp.sop_instance_uids()) == sorted(uids), "O: storescp got %s" % scp.sop_instance_uids())
scp.stop()
# (wait_port's probe connection is logged as an association too: count those with stores)
blocks = [b.count("Received Store Request") for b in scp.log().split("Association Received")[1:]]
ck([b for b in blocks if b] == [4], "O: stores per association at storescp: %s" % blocks)


def status_peer(name, status, only, **opts):
    """Runs the sender against statusscp answering status for `only`; returns
    (counters, sender log, [(uid, status, association)] in arrival order, spool)."""
    spool = os.path.join(tmp, "spool-" + name)
    port = usvtest.free_port()
    plog = os.path.join(tmp, name + ".log")
    scp = usvtest.Proc([sys.executable, STATUSSCP, str(port), status, "--only", only,
                        "--log", plog])
    ck(usvtest.wait_port(port, 10, scp.p), "%s: statusscp did not start" % name)
    d = dest(name, port, ae="ANY", **opts)
    for p, _ in srs:
        enqueue(spool, "sr", SR_CLASS, p, d)
    counters, log = run_sender(spool, 20, d)
    scp.stop()
    seen = []
    if os.path.exists(plog):
        for line in open(plog):
            w = line.split()
            seen.append((w[1], w[3], int(w[5])))
    return counters[name], log, seen, spool


c, log, seen, spool = status_peer("one-a900", "A900", uids[1], attempts=5)
ck(c["sent"] == 3 and c["dead"] == 1 and c["attempts"] == 4 and c["retries"] == 0,
   "P/A900 counters %s\n%s" % (c, log))
ck([(u, st) for u, st, _ in seen] == [(uids[0], "0000"), (uids[1], "A900"), (uids[2], "0000"),
                                      (uids[3], "0000")] and len({a for _, _, a in seen}) == 1,
   "P/A900: peer saw %s" % seen)
dead = files(spool, "dead", "one-a900", ".reason")
ck(len(dead) == 1 and "0xA900" in open(dead[0]).read(), "P/A900: dead letters %s" % dead)
if dead:
    ck(pydicom.dcmread(dead[0][:-len(".reason")] + ".dcm").SOPInstanceUID == uids[1],
       "P/A900: the wrong item was dead-lettered")
ck(len(files(spool, "sent", "one-a900")) == 3, "P/A900: sent/ holds %d"
   % len(files(spool, "sent", "one-a900")))

c, log, seen, spool = status_peer("one-a700", "A700", uids[1], attempts=2, base=0.5, mx=1)
ck(c["sent"] == 3 and c["dead"] == 1 and c["retries"] == 1 and c["attempts"] == 5,
   "P/A700 counters %s\n%s" % (c, log))
ck([(u, st) for u, st, _ in seen] == [(uids[0], "0000"), (uids[1], "A700"), (uids[1], "A700"),
                                      (uids[2], "0000"), (uids[3], "0000")],
   "P/A700: peer saw %s" % seen)
ck(len(seen) == 5 and seen[0][2] == seen[1][2] and seen[1][2] < seen[2][2] < seen[3][2]
   and seen[3][2] == seen[4][2], "P/A700: associations %s" % seen)
ck(log.count("sent after 1 attempt(s)") == 3, "P/A700: an item waiting for the backoff had an "
   "attempt counted\n%s" % log)

# ---- F + G: Orthanc ----------------------------------------------------------------
odir = os.path.join(tmp, "orthanc")
with Orthanc(odir, aet="ORTHANC", modalities={"usview": ("USVIEW", "127.0.0.1", 104)}) as o:
    spool = os.path.join(tmp, "spoolF")
    dF = dest("orthanc", o.dicom_port, ae="ORTHANC")
    dG = dest("stranger", o.dicom_port, ae="ORTHANC", calling="NOTREGISTERED", attempts=2)
    enqueue(spool, "sr", SR_CLASS, sr_path, dF, dG)
    enqueue(spool, "tagged", tg_ids["sop_class"], tg_path, dF, dG)
    # an SR of a UTF-8 source: Orthanc must decode the copied name correctly
    u8 = pydicom.dcmread(os.path.join(US, "pydicom-data__OBXXXX1A.dcm"))
    u8.SpecificCharacterSet = "ISO_IR 192"
    u8.PatientName = "Müller^Jürgen=ミュラー^ユルゲン"
    u8.SOPInstanceUID = usvtest.derive_uid("utf8-source")
    u8.file_meta.MediaStorageSOPInstanceUID = u8.SOPInstanceUID
    u8_src = os.path.join(tmp, "utf8-source.dcm")
    u8.save_as(u8_src, write_like_original=False)
    u8_path, u8_ids, _ = make("sr", u8_src)
    enqueue(spool, "sr", SR_CLASS, u8_path, dF)
    counters, log = run_sender(spool, 20, dF, dG)
    ck(counters["orthanc"]["sent"] == 3, "F counters %s\n%s" % (counters["orthanc"], log))
    ck(counters["stranger"]["sent"] == 0 and counters["stranger"]["dead"] == 2,
       "G counters %s" % counters["stranger"])
    for r in files(spool, "dead", "stranger", ".reason"):
        ck("association rejected" in open(r).read(), "G: reason %r" % open(r).read())
    ids = o.wait_instances(3, timeout=10)
    ck(len(ids) == 3, "F: Orthanc holds %d instances" % len(ids))
    oid = o.lookup(u8_ids["sop_instance"])
    if ck(oid is not None, "F: UTF-8 SR not found in Orthanc"):
        t = o.tags(oid)
        ck(t.get("PatientName") == "Müller^Jürgen=ミュラー^ユルゲン",
           "F: UTF-8 patient name as decoded by Orthanc: %r" % t.get("PatientName"))
        ck(t.get("SpecificCharacterSet") == "ISO_IR 192", "F: charset of the UTF-8 SR")

    src = pydicom.dcmread(sr_src)
    oid = o.lookup(sr_ids["sop_instance"])
    if ck(oid is not None, "F: SR not found in Orthanc"):
        t = o.tags(oid)
        ck(t["SOPClassUID"] == SR_CLASS, "F: SR class %s" % t["SOPClassUID"])
        ck(t["StudyInstanceUID"] == src.StudyInstanceUID, "F: SR study")
        ck(t["SeriesInstanceUID"] == usvtest.derive_uid("series", src.SeriesInstanceUID, SHA, "sr"),
           "F: SR series UID")
        text = json.dumps(t)
        ck("KIDNEY-R-LONG" in text or "kidney_right_long" in text.lower(), "F: SR lacks the view")
        ck(src.SOPInstanceUID in text, "F: SR lacks the source reference")
        # the Image View item of the measurement group, as Orthanc parsed it
        def walk(items):
            for it in items or []:
                yield it
                yield from walk(it.get("ContentSequence"))
        views = [it for it in walk(t.get("ContentSequence"))
                 if it.get("ValueType") == "CODE"
                 and it["ConceptNameCodeSequence"][0]["CodeValue"] == "111031"
                 and it.get("RelationshipType") == "CONTAINS"]
        ck(len(views) == 1 and views[0]["ConceptCodeSequence"][0]["CodeMeaning"]
           == "Kidney right longitudinal", "F: Image View as read by Orthanc: %s" % views)
        nums = [it for it in walk(t.get("ContentSequence")) if it.get("ValueType") == "NUM"]
        ck([round(float(n["MeasuredValueSequence"][0]["NumericValue"]), 6) for n in nums]
           == [0.72, 0.2, 0.08], "F: probabilities as read by Orthanc")
        refs = [it for it in walk(t.get("ContentSequence")) if it.get("ValueType") == "IMAGE"]
        ck(refs and all(r["ReferencedSOPSequence"][0]["ReferencedSOPInstanceUID"]
                        == src.SOPInstanceUID and
                        r["ReferencedSOPSequence"][0]["ReferencedFrameNumber"] == "2"
                        for r in refs), "F: image references / frame as read by Orthanc")
    src = pydicom.dcmread(tg_src)
    oid = o.lookup(tg_ids["sop_instance"])
    if ck(oid is not None, "F: tagged copy not found in Orthanc"):
        t = o.tags(oid)
        ck(t["StudyInstanceUID"] == src.StudyInstanceUID, "F: tagged study")
        ck(t["SeriesInstanceUID"] != src.SeriesInstanceUID, "F: tagged series not new")
        ck("Kidney right longitudinal" in t.get("SeriesDescription", ""),
           "F: SeriesDescription %r" % t.get("SeriesDescription"))
        ck("kidney_right_long" in t.get("ImageComments", ""), "F: ImageComments")
        ck(t["SourceImageSequence"][0]["ReferencedSOPInstanceUID"] == src.SOPInstanceUID,
           "F: Source Image Sequence")
        stored = os.path.join(tmp, "stored.dcm")
        with open(stored, "wb") as f:
            f.write(o.file(oid))
        d = pydicom.dcmread(stored)
        ck(d.PixelData == src.PixelData, "F: pixel data changed on the way")
        priv = [d[e].value if e in d else None for e in (0x00910010, 0x00911001, 0x00911007)]
        ck(priv[0] == "USVIEW 1.0" and priv[1] == "kidney_right_long"
           and json.loads(priv[2])["label"] == "kidney_right_long",
           "F: private block after Orthanc: %s" % priv[:2])
    e = echo(o.dicom_port, "ORTHANC", "USVIEW")
    ck(e["outcome"] == "success", "echo to Orthanc from the registered AE: %s" % e)
    e = echo(o.dicom_port, "ORTHANC", "NOTREGISTERED")
    ck(e["outcome"] == "retry" and "rejected" in e["reason"],
       "echo to Orthanc from an unknown AE: %s" % e)
    ck(len(o.instances()) == 3, "G: Orthanc stored objects from an unregistered AE")

print("elapsed %.1f s" % (time.monotonic() - T0))
ck.done()
