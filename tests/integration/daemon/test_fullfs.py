"""usviewd on a file system that really fills up.

The spool is an 8 MiB tmpfs (needs CAP_SYS_ADMIN; without it the test is
skipped with a message) and spool.min_free_mb is 0, so the disk itself
refuses (ENOSPC), not the watermark. Instances of about
0.9 MiB are stored one per association until the node refuses three in a
row. Every C-STORE is either answered with success, and then the
instance is in done/ complete with a results.jsonl line, or refused with
a failure status (0xA7xx, out of resources) leaving nothing in incoming/
or tmp/; usviewd keeps running. Then done/, excluded/ and failed/ are emptied (as
the retention sweep would) and the next store succeeds again.

usage: test_fullfs.py MAKE_MODEL
"""

import json
import os
import re
import subprocess
import sys
import time

import pydicom
from pydicom.uid import generate_uid

import usvtest
from daemonlib import Usviewd

ck = usvtest.Check("daemon_fullfs")
tmp = usvtest.tempdir("usv-d-fullfs-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model, "5"], check=True)
src = os.path.join(usvtest.shared_dir(), "data", "dicom", "us", "pydicom-data__US1_UNCR.dcm")
if not os.path.exists(src):
    print("SKIP: %s missing" % src)
    sys.exit(0)
base = pydicom.dcmread(src)

mnt = os.path.join(tmp, "spool")
os.makedirs(mnt)
r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", mnt],
                   capture_output=True)
if r.returncode != 0:
    print("SKIP: cannot mount a tmpfs (%s)" % r.stderr.decode(errors="replace").strip())
    sys.exit(0)

try:
    d = Usviewd(tmp, model, extra={"spool": {"dir": mnt, "min_free_mb": 0}})
    d.spool = mnt
    d.start()

    def store(i):
        uid = generate_uid()
        base.SOPInstanceUID = uid
        base.file_meta.MediaStorageSOPInstanceUID = uid
        p = os.path.join(tmp, "in.dcm")
        base.save_as(p)
        r = subprocess.run(["storescu", "-v", "-aet", "MODALITY", "-aec", "USVIEW", "-to", "10",
                            "127.0.0.1", str(d.port), p], capture_output=True, timeout=60)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        return "Received Store Response (Success)" in out, out, uid

    def results():
        path = os.path.join(mnt, "results.jsonl")
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return {rec["sop_instance_uid"]: rec
                    for rec in (json.loads(x) for x in f if x.endswith("\n"))}

    def settle(timeout=15):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not d.files("incoming") and not d.files("active"):
                return True
            time.sleep(0.05)
        return False

    stored, refused, in_row = [], 0, 0
    for i in range(40):
        ok, out, uid = store(i)
        settle()
        ck(d.alive(), "usviewd died at store %d:\n%s" % (i, d.log()[-2000:]))
        if ok:
            stored.append(uid)
            in_row = 0
        else:
            refused += 1
            in_row += 1
            m = re.search(r"Received Store Response \(([^)]*)\)", out)
            ck(m is None or m.group(1) != "Success", "store %d: %s" % (i, out[-400:]))
            ck(m is not None and re.search(r"Out ?of ?Resources|A7", m.group(1), re.I),
               "store %d refused without an out-of-resources status:\n%s" % (i, out[-600:]))
            ck(not d.files("incoming"), "store %d: files left in incoming/" % i)
            if in_row >= 3:
                break
    ck(refused >= 3, "the 8 MiB spool never filled (%d stored)" % len(stored))
    ck(len(stored) >= 2, "only %d instances stored before the disk was full" % len(stored))
    res = results()
    for uid in stored:
        rec = res.get(uid)
        if ck(rec is not None, "acknowledged %s has no results line" % uid):
            if rec["outcome"] == "done":
                f = os.path.join(mnt, "done", rec["spool_id"] + ".dcm")
                ck(os.path.exists(f) and str(pydicom.dcmread(f).SOPInstanceUID) == uid,
                   "done/%s.dcm missing or not the instance" % rec["spool_id"])
            else:
                ck(rec.get("reason"), "acknowledged %s %s without reason" % (uid, rec["outcome"]))
    ck(not os.listdir(os.path.join(mnt, "tmp")), "tmp/ holds %s" %
       os.listdir(os.path.join(mnt, "tmp")))

    # free space, as retention would, and store again
    for state in ("done", "excluded", "failed"):
        for f in d.files(state) + d.files(state, suffix=".reason"):
            os.unlink(f)
    ok, out, uid = store(99)
    ck(ok, "store after freeing space:\n%s" % out[-600:])
    settle()
    ck(uid in results(), "the store after freeing space was not classified")
    ck(d.stop() == 0, "usviewd did not stop cleanly")
    print("stored %d, refused %d" % (len(stored), refused), flush=True)
finally:
    for p in usvtest._procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    subprocess.run(["umount", mnt])
ck.done()
