"""usviewd result delivery when destinations misbehave.

later     nothing listens at first: results wait in outbox/later/ with a
          durable .state (attempts, next try), retries are spaced by the
          backoff (not hammered), and when storescp starts on that port they
          are delivered (sent/later/, outbox empty, storescp holds the SRs
          with the UIDs computed here).
refusing  storescp --refuse rejects every association: after max_attempts
          the results go to dead/refusing/ with a .reason naming the
          rejection; nothing is sent there.
The daemon keeps classifying meanwhile (results.jsonl, done/).

usage: test_delivery.py MAKE_MODEL
"""

import hashlib
import os
import subprocess
import sys
import time

import daemonlib
import usvtest
from daemonlib import Usviewd

import pydicom

ck = usvtest.Check("daemon_delivery")
tmp = usvtest.tempdir("usv-d-deliv-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model, "5"], check=True)
sha = hashlib.sha256(open(model, "rb").read()).hexdigest()

later_port = usvtest.free_port()
refuse_port = usvtest.free_port()
refusing = usvtest.Proc(["storescp", "-aet", "REFUSER", "--refuse", str(refuse_port)],
                        log_path=os.path.join(tmp, "refuser.log"))
ck(usvtest.wait_port(refuse_port, 10, refusing.p), "refusing storescp did not start")

d = Usviewd(tmp, model, destinations=[
    {"name": "later", "ae_title": "LATER", "host": "127.0.0.1", "port": later_port,
     "send": ["sr"], "backoff_initial_s": 1, "backoff_max_s": 2, "max_attempts": 100},
    {"name": "refusing", "ae_title": "REFUSER", "host": "127.0.0.1", "port": refuse_port,
     "send": ["sr"], "backoff_initial_s": 1, "backoff_max_s": 1, "max_attempts": 2},
])
d.start()

uids = []
for i in range(2):
    p = os.path.join(tmp, "s%d.dcm" % i)
    uids.append(daemonlib.make_us(p, seed=10 + i))
    r = subprocess.run(["storescu", "-aec", "USVIEW", "127.0.0.1", str(d.port), p],
                       capture_output=True)
    ck(r.returncode == 0, "storescu: %s" % r.stderr)
expected = {usvtest.derive_uid(u, 0, sha, "sr") for u in uids}

ck(d.wait_idle(20, outbox=False), "instances not classified")
t_down = time.monotonic()
time.sleep(4.5)
ck(len(d.files("outbox", "later")) == 2, "outbox/later holds %d" %
   len(d.files("outbox", "later")))
states = d.files("outbox", "later", suffix=".state")
ck(len(states) >= 1, "no durable retry state in outbox/later")
_, _, text = d.http("/metrics")
types, samples = daemonlib.parse_prometheus(text)
retries = daemonlib.sample(samples, "usview_send_retries_total", destination="later") or 0
ck(1 <= retries <= 8, "retries to the down destination in %.1f s: %s (backoff not applied?)" %
   (time.monotonic() - t_down, retries))
ck(daemonlib.sample(samples, "usview_outbox_depth", destination="later") == 2,
   "outbox depth gauge")
ck(not d.files("sent", "later"), "something was sent to a closed port")

# the destination comes up
rcv = os.path.join(tmp, "rcv")
os.makedirs(rcv)
scp = usvtest.Proc(["storescp", "-aet", "LATER", "-od", rcv, str(later_port)],
                   log_path=os.path.join(tmp, "later.log"))
ck(usvtest.wait_port(later_port, 10, scp.p), "storescp did not start")
end = time.monotonic() + 20
while time.monotonic() < end and len(d.files("sent", "later")) < 2:
    time.sleep(0.2)
ck(len(d.files("sent", "later")) == 2, "sent/later holds %d after the destination came up\n%s"
   % (len(d.files("sent", "later")), d.log()[-2000:]))
ck(not d.files("outbox", "later") and not d.files("outbox", "later", suffix=".state"),
   "outbox/later not empty after delivery")
got = set()
for n in os.listdir(rcv):
    got.add(pydicom.dcmread(os.path.join(rcv, n), stop_before_pixels=True).SOPInstanceUID)
ck(got == expected, "storescp received %s, want %s" % (got, expected))

# the refusing destination ends in dead/ with a reason
end = time.monotonic() + 20
while time.monotonic() < end and len(d.files("dead", "refusing")) < 2:
    time.sleep(0.2)
dead = d.files("dead", "refusing")
reasons = d.files("dead", "refusing", suffix=".reason")
ck(len(dead) == 2 and len(reasons) == 2, "dead/refusing holds %d + %d reasons" %
   (len(dead), len(reasons)))
for rp in reasons:
    txt = open(rp).read()
    ck("reject" in txt.lower(), "dead letter reason %r" % txt)
ck(not d.files("sent", "refusing") and not d.files("outbox", "refusing"),
   "refusing destination: sent/ or outbox/ not empty")
dead_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in dead}
ck(dead_uids == expected, "dead letters are the SRs")
_, _, text = d.http("/metrics")
types, samples = daemonlib.parse_prometheus(text)
ck(daemonlib.sample(samples, "usview_dead_total", destination="refusing") == 2,
   "dead counter")
ck(len([r for r in d.results() if r["outcome"] == "done"]) == 2, "results.jsonl")
ck(d.stop() == 0, "clean stop")
scp.stop()
refusing.stop()
ck.done()
