"""usviewd under injected disk faults (LD_PRELOAD shim tests/fault/faultfs.c).

For each operation (open, write, fsync, rename) and errno (ENOSPC, EIO):
one clean C-STORE of a real instance (from $USV_SHARED_DIR/data/dicom/us,
with a fresh SOP Instance UID) is counted: every matching call below the
spool on the receive path (tmp file, check, commit) and the result path
(claim, results.jsonl, SR into the outbox of a destination that is down,
its retry state, the move to done/). Then for every n from 1 to that count
the n-th call fails once (every n up to 30; beyond, 30 spread over the
range: the first and last ten and ten between), another instance is stored, and:
- storescu reports success only if the instance is durably in the spool:
  once the fault has ended it has a results.jsonl line, its file is in
  done/ (with an SR in the outbox) or in failed/ with a .reason, and the
  file is a complete data set with this SOP Instance UID;
- otherwise the C-STORE was answered with a failure status or not at all,
  and nothing of it stays in incoming/ or active/;
- usviewd is still running, and with the fault off the next store
  succeeds and is classified.
At the end usviewd is restarted without the shim: recovery empties tmp/,
and no instance is in incoming/ or active/.

usage: test_faults.py MAKE_MODEL LIBUSV_FAULTFS
"""

import json
import os
import re
import subprocess
import sys
import time

import pydicom
from pydicom.uid import generate_uid

import daemonlib
import usvtest
from daemonlib import Usviewd

ck = usvtest.Check("daemon_faults")
tmp = usvtest.tempdir("usv-d-faults-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model, "5"], check=True)
shim = os.path.abspath(sys.argv[2])
src = os.path.join(usvtest.shared_dir(), "data", "dicom", "us", "robyoung-dicom-test-files__ExplVR_BigEnd.dcm")
if not os.path.exists(src):
    print("SKIP: %s missing" % src)
    sys.exit(0)
base = pydicom.dcmread(src)

ctl = os.path.join(tmp, "fault.ctl")
stat = os.path.join(tmp, "fault.stat")
down_port = usvtest.free_port()  # nothing listens: results wait in the outbox
d = Usviewd(tmp, model, destinations=[
    {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": down_port,
     "send": ["sr"], "backoff_initial_s": 3600, "backoff_max_s": 3600, "max_attempts": 100}],
    extra={"model": {"workers": 1, "batch_wait_ms": 1}})
os.makedirs(d.spool, exist_ok=True)
spool = os.path.realpath(d.spool)
gen = [0]


def control(text):
    gen[0] += 1
    with open(ctl + ".new", "w") as f:
        f.write("%s # %d\n" % (text, gen[0]))
    os.rename(ctl + ".new", ctl)


def counts():
    try:
        with open(stat) as f:
            return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", f.read())}
    except OSError:
        return {}


control("off")
d.start(env_extra={"LD_PRELOAD": shim, "USV_FAULT_DIR": spool, "USV_FAULT_CTL": ctl,
                   "USV_FAULT_STAT": stat})
seq = [0]


def instance(real=False):
    """A synthetic instance the model classifies (so the result path runs)
    or a copy of the real one, with a new SOP Instance UID."""
    seq[0] += 1
    p = os.path.join(tmp, "in%d.dcm" % (seq[0] % 2))
    if not real:
        return p, daemonlib.make_us(p, seed=seq[0] % 50)
    uid = generate_uid()
    base.SOPInstanceUID = uid
    base.file_meta.MediaStorageSOPInstanceUID = uid
    base.save_as(p)
    return p, uid


def store(path):
    """(answered with success, storescu output)"""
    # read the STATUS= messages as systemd would: a full notify socket
    # blocks usviewd's main loop in sendmsg()
    d.notify.poll()
    r = subprocess.run(["storescu", "-v", "-aet", "MODALITY", "-aec", "USVIEW", "-to", "10",
                        "127.0.0.1", str(d.port), path], capture_output=True, timeout=60)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    ok = "Received Store Response (Success)" in out
    ck(not ok or r.returncode == 0, "storescu exit %d after a success response" % r.returncode)
    return ok, out


def result_line(uid, timeout):
    path = os.path.join(spool, "results.jsonl")
    end = time.monotonic() + timeout
    while True:
        if os.path.exists(path):
            with open(path) as f:
                recs = [json.loads(x) for x in f if x.endswith("\n")]
            sid = next((r["spool_id"] for r in recs if r.get("sop_instance_uid") == uid), None)
            if sid:  # the last line of that spool id (a late failure adds one)
                return [r for r in recs if r.get("spool_id") == sid][-1]
        if time.monotonic() >= end:
            return None
        time.sleep(0.05)


def settle(timeout=10):
    """incoming/ and active/ empty (the worker has finished)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not d.files("incoming") and not d.files("active"):
            return True
        time.sleep(0.05)
    return False


def uid_of(path):
    try:
        ds = pydicom.dcmread(path)
        _ = ds.PixelData  # the whole data set is there
        return str(ds.SOPInstanceUID)
    except Exception:
        return None


def check_durable(uid, what):
    rec = result_line(uid, 15)
    if not ck(rec is not None, "%s: stored but no results.jsonl line" % what):
        return
    sid = rec.get("spool_id", "")
    if rec.get("outcome") == "done":
        f = os.path.join(spool, "done", sid + ".dcm")
        end = time.monotonic() + 5  # a move that failed is retried after a pause
        while not os.path.exists(f) and time.monotonic() < end:
            time.sleep(0.1)
        ck(os.path.exists(f) and uid_of(f) == uid, "%s: done/%s.dcm missing or incomplete" %
           (what, sid))
        ck(len(rec.get("outputs", [])) == 1, "%s: done without its SR" % what)
    else:
        state = rec.get("outcome", "?")
        ck(rec.get("reason"), "%s: outcome %s without a reason" % (what, state))
        f = os.path.join(spool, state, sid + ".dcm")
        end = time.monotonic() + 5  # a move that failed is retried after a pause
        while not os.path.exists(f) and time.monotonic() < end:
            time.sleep(0.1)
        ck(os.path.exists(f) and os.path.exists(os.path.join(spool, state, sid + ".reason")),
           "%s: %s/%s.dcm or its .reason missing" % (what, state, sid))


def check_gone(uid, what, out):
    ck(re.search(r"Received Store Response|Association Abort|Peer Aborted|"
                 r"Association Request Failed|DIMSE|Failed", out) is not None,
       "%s: storescu output unexplained:\n%s" % (what, out[-600:]))
    m = re.search(r"Received Store Response \(([^)]*)\)", out)
    if m:
        ck(m.group(1) != "Success", "%s: status %s" % (what, m.group(1)))
    settle(5)
    for state in ("incoming", "active"):
        for f in d.files(state):
            ck(uid_of(f) != uid, "%s: refused instance left in %s/" % (what, state))
    ck(not d.files("incoming"), "%s: files left in incoming/: %s" % (what, d.files("incoming")))


def points(n_ops, cap=30):
    """Every n up to cap; beyond, the first and last ten and ten spread
    between (DCMTK writes a data set with one fwrite per element)."""
    if n_ops <= cap:
        return list(range(1, n_ops + 1))
    spread = [1 + (n_ops - 1) * k // 11 for k in range(1, 11)]
    return sorted(set(list(range(1, 11)) + spread + list(range(n_ops - 9, n_ops + 1))))


total, tried = {}, {}
OPS = os.environ.get("USV_FAULT_OPS", "open write fsync rename").split()
ERRS = os.environ.get("USV_FAULT_ERRNOS", "ENOSPC EIO").split()
for op in OPS:
    for err in ERRS:
        # a clean store, counted
        control("off")
        p, uid = instance()
        ok, out = store(p)
        ck(ok, "clean store before %s/%s failed:\n%s" % (op, err, out[-600:]))
        ck(result_line(uid, 15) is not None, "clean store not classified")
        ck(settle(), "clean store not settled")
        time.sleep(0.2)
        n_ops = counts().get(op, 0)
        ck(n_ops > 0, "no %s call below the spool" % op)
        total[op] = n_ops
        refused = 0
        for n in points(n_ops):
            what = "%s #%d/%d %s" % (op, n, n_ops, err)
            t_n = time.monotonic()
            p, uid = instance()
            control("%s %d %s 1" % (op, n, err))
            ok, out = store(p)
            settle(10)
            time.sleep(0.1)
            hit = counts().get("injected", 0)
            control("off")
            if ok:
                check_durable(uid, what)
            else:
                refused += 1
                check_gone(uid, what, out)
            if not ck(d.alive(), "%s: usviewd died:\n%s" % (what, d.log()[-3000:])):
                sys.exit(ck.done())
            # the last few calls may not come (the count varies a little)
            ck(hit == 1 or (hit == 0 and n > n_ops - 10),
               "%s: the fault was injected %d times" % (what, hit))
            # recovery: the same daemon takes the next instance
            p, uid = instance()
            ok, out = store(p)
            ck(ok, "%s: no recovery, store failed:\n%s" % (what, out[-600:]))
            if ok:
                check_durable(uid, what + " (recovery)")
            settle(10)
            if os.environ.get("USV_FAULT_VERBOSE"):
                print("%s: %.2f s" % (what, time.monotonic() - t_n), flush=True)
        tried[op] = len(points(n_ops))
        print("%s %s: %d calls in a store, %d injected, %d stores refused" %
              (op, err, n_ops, tried[op], refused), flush=True)

control("off")
rc = d.stop()
ck(rc == 0, "usviewd did not stop cleanly: %s" % rc)
# restart without the shim: recovery removes what failed receptions left in tmp/
d.start()
ck(settle(15), "incoming/active not drained after restart")
ck(not os.listdir(os.path.join(spool, "tmp")), "tmp/ not emptied by recovery: %s" %
   os.listdir(os.path.join(spool, "tmp")))
p, uid = instance(real=True)
ok, out = store(p)
ck(ok and result_line(uid, 15) is not None, "store of a real instance after restart")
rc = d.stop()
ck(rc == 0, "usviewd did not stop cleanly after restart: %s" % rc)
print("calls per store: %s; faults injected per errno: %s" % (total, tried), flush=True)
ck.done()
