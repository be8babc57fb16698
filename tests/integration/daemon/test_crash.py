"""Crash safety of usviewd: SIGKILL at random moments while 200 small
instances stream in, restart each time; afterwards every instance that
storescu reported as stored has exactly one distinct result at the
destination (DCMTK storescp), namely the SR whose UID the rule of
dcm_result.h gives for it (computed here independently).

Four storescu loops send one file per association and retry a file until
storescu exits 0 (the C-STORE was answered with success); a killer thread
sends SIGKILL to usviewd every 0.3-1.2 s (seeded; the seed is printed) and
restarts it (waiting for READY=1). After the stream the daemon runs until
its spool is idle; then the files storescp received are read with pydicom.

usage: test_crash.py MAKE_MODEL [SEED]
"""

import collections
import hashlib
import os
import random
import subprocess
import sys
import threading
import time

import daemonlib
import usvtest
from daemonlib import Usviewd

import pydicom

N = 200
ck = usvtest.Check("daemon_crash")
seed = int(sys.argv[2]) if len(sys.argv) > 2 else int(time.time()) % 100000
print("seed", seed, flush=True)
rnd = random.Random(seed)
tmp = usvtest.tempdir("usv-d-crash-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model, "3"], check=True)
sha = hashlib.sha256(open(model, "rb").read()).hexdigest()

src_dir = os.path.join(tmp, "src")
os.makedirs(src_dir)
files = {}
for i in range(N):
    p = os.path.join(src_dir, "i%03d.dcm" % i)
    files[p] = daemonlib.make_us(p, rows=32, cols=40, seed=i)

rcv = os.path.join(tmp, "received")
os.makedirs(rcv)
dport = usvtest.free_port()
scp = usvtest.Proc(["storescp", "-aet", "DEST", "-od", rcv, str(dport)],
                   log_path=os.path.join(tmp, "storescp.log"))
ck(usvtest.wait_port(dport, 10, scp.p), "storescp did not start")

d = Usviewd(tmp, model, destinations=[{
    "name": "dest", "ae_title": "DEST", "host": "127.0.0.1", "port": dport, "send": ["sr"],
    "backoff_initial_s": 1, "backoff_max_s": 2, "max_attempts": 100}], http=False)
d.start()

acked = {}
lock = threading.Lock()
streaming = True


def sender(chunk):
    for p in chunk:
        for attempt in range(200):
            r = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "USVIEW", "-to", "5",
                                "-ta", "5", "-td", "10", "127.0.0.1", str(d.port), p],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if r.returncode == 0 and b"Store Failed" not in r.stderr:
                with lock:
                    acked[files[p]] = attempt + 1
                break
            time.sleep(0.1)


kills = 0


def killer():
    global kills
    while streaming:
        time.sleep(rnd.uniform(0.3, 1.2))
        if not streaming:
            break
        d.kill()
        kills += 1
        time.sleep(rnd.uniform(0.0, 0.3))
        d.start()


t0 = time.monotonic()
paths = sorted(files)
senders = [threading.Thread(target=sender, args=(paths[k::4],)) for k in range(4)]
kt = threading.Thread(target=killer)
for t in senders:
    t.start()
kt.start()
for t in senders:
    t.join()
streaming = False
kt.join()
if not d.alive():
    d.start()
t_stream = time.monotonic() - t0
idle = d.wait_idle(120)
ck(idle, "spool not idle after the stream:\n" + d.log()[-3000:])
time.sleep(0.5)
print("%d instances acknowledged in %.1f s with %d SIGKILLs; idle after %.1f s" %
      (len(acked), t_stream, kills, time.monotonic() - t0), flush=True)
ck(len(acked) == N, "only %d of %d instances acknowledged" % (len(acked), N))
ck(kills >= 3, "only %d kills happened during the stream" % kills)

# results at the destination, grouped by the source each SR references
per_source = collections.defaultdict(set)
bad = 0
for name in os.listdir(rcv):
    try:
        ds = pydicom.dcmread(os.path.join(rcv, name))
        refs = [r.ReferencedSOPInstanceUID
                for st in ds.CurrentRequestedProcedureEvidenceSequence
                for se in st.ReferencedSeriesSequence for r in se.ReferencedSOPSequence]
    except Exception as e:  # noqa: BLE001
        print("unreadable %s: %s" % (name, e))
        bad += 1
        continue
    for ref in refs:
        per_source[ref].add(ds.SOPInstanceUID)
ck(bad == 0, "%d unreadable files at the destination" % bad)
missing = [u for u in acked if len(per_source.get(u, ())) == 0]
multi = {u: v for u, v in per_source.items() if len(v) > 1}
wrong = [u for u in acked if per_source.get(u) and
         per_source[u] != {usvtest.derive_uid(u, 0, sha, "sr")}]
ck(not missing, "%d acknowledged instances without a result, e.g. %s" % (len(missing),
                                                                         missing[:3]))
ck(not multi, "%d sources with more than one distinct result: %s" % (len(multi),
                                                                    list(multi.items())[:2]))
ck(not wrong, "%d results with an unexpected UID" % len(wrong))
ck(set(per_source) <= set(files.values()), "results for unknown sources")
ck(not d.files("failed") and not d.files("dead", "dest"), "failed/ or dead/ not empty")
done = {r["sop_instance_uid"] for r in d.results() if r["outcome"] == "done"}
lost = set(acked) - done
if not ck(not lost, "%d acknowledged instances missing from results.jsonl" % len(lost)):
    for r in d.results():
        if r["sop_instance_uid"] in lost or not r["sop_instance_uid"]:
            print("  ", r)
dups = sum(1 for r in d.results() if r["outcome"] == "done") - len(done)
print("results.jsonl: %d lines for %d instances (reprocessed after a crash: %d)" %
      (len(d.results()), len(done), dups))
ck(d.stop() == 0, "usviewd did not stop cleanly")
scp.stop()
ck.done()
