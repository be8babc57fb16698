"""usviewd's retention sweep.

With spool.retention_h.done at 0.0005 h (1.8 s) and a sweep every second,
classified instances leave done/ shortly after they arrive there, while
results.jsonl keeps their lines; /metrics counts them in
usview_spool_purged_total{state="done"} and shows an empty done queue, and
the log has summary lines (counts, no ids). After a reload with
retention 0 (keep for ever) the next instance stays in done/.

usage: test_retention.py MAKE_MODEL
"""

import os
import signal
import subprocess
import sys
import time

import usvtest

import daemonlib
from daemonlib import Usviewd

ck = usvtest.Check("daemon_retention")
tmp = usvtest.tempdir("usv-d-retention-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model], check=True)

d = Usviewd(tmp, model, extra={"spool": {"retention_h": {"done": 0.0005},
                                         "sweep_interval_s": 1}})
d.start()


def send(paths):
    r = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "USVIEW", "127.0.0.1",
                        str(d.port)] + paths, capture_output=True)
    ck(r.returncode == 0, "storescu: %s" % r.stderr)


def wait_for(cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def metrics():
    status, _, text = d.http("/metrics")
    ck(status == 200, "/metrics status %d" % status)
    return daemonlib.parse_prometheus(text)[1]


paths, uids = [], []
for i in range(3):
    p = os.path.join(tmp, "a%d.dcm" % i)
    uids.append(daemonlib.make_us(p, seed=i))
    paths.append(p)
send(paths)
ck(wait_for(lambda: len(d.results()) == 3, 30), "3 results.jsonl lines: %d" % len(d.results()))
# results.jsonl gets its line before the instance reaches done/, so an
# empty done/ alone may come before the instance does: wait for the purges
ck(wait_for(lambda: daemonlib.sample(metrics(), "usview_spool_purged_total", state="done") == 3
            and not d.files("done"), 20), "done/ not emptied: %s" % d.files("done"))
ck(sorted(r["sop_instance_uid"] for r in d.results()) == sorted(uids),
   "results.jsonl keeps the lines of purged instances")
ck(all(r["outcome"] == "done" for r in d.results()), "outcomes")
s = metrics()
ck(daemonlib.sample(s, "usview_spool_purged_total", state="done") == 3,
   "purged counter: %s" % daemonlib.sample(s, "usview_spool_purged_total", state="done"))
ck(daemonlib.sample(s, "usview_spool_purged_total", state="failed") == 0, "no failed purged")
ck(daemonlib.sample(s, "usview_queue_depth", queue="done") == 0, "done depth 0")
log = d.log()
ck("retention sweep: removed" in log, "sweep log line")
spool_ids = [r["spool_id"] for r in d.results()]
sweep_lines = [line for line in log.splitlines() if "retention sweep" in line]
ck(sweep_lines and not any(i in line or u in line for line in sweep_lines
                           for i in spool_ids for u in uids),
   "the sweep logs counts only: %s" % sweep_lines)

# reload: keep done/ for ever from now on
d.cfg["spool"]["retention_h"] = {"done": 0}
d.write_config()
os.kill(d.proc.pid, signal.SIGHUP)
ck(wait_for(lambda: "configuration reloaded" in d.log(), 10), "reload logged")
p = os.path.join(tmp, "b.dcm")
daemonlib.make_us(p, seed=7)
send([p])
ck(wait_for(lambda: len(d.results()) == 4, 30), "4th result")
ck(wait_for(lambda: len(d.files("done")) == 1, 10), "4th instance in done/")
time.sleep(4)  # four sweeps at 1 s
ck(len(d.files("done")) == 1, "retention 0 after reload keeps done/: %s" % d.files("done"))
s = metrics()
ck(daemonlib.sample(s, "usview_spool_purged_total", state="done") == 3, "counter unchanged")
ck(daemonlib.sample(s, "usview_queue_depth", queue="done") == 1, "done depth 1")
ck(d.stop() == 0, "clean stop")
ck.done()
