"""usviewd and systemd: the notify protocol, reload and the unit file.

- NOTIFY_SOCKET (a datagram socket of the test, as systemd provides): READY=1
  arrives, and at that moment the DICOM port already answers C-ECHO
  (echoscu) and the spool was recovered (a file left in active/ by a
  "crash" is back in the queue and gets classified); STATUS= lines follow.
- A model that cannot be loaded: the process exits 1 and never says READY=1.
- WATCHDOG_USEC set: WATCHDOG=1 pings at about half the interval.
- SIGHUP with a changed file: RELOADING=1 with MONOTONIC_USEC, then READY=1;
  a destination added by the reload receives the next SR;
  reloadable keys apply (top_k: the next instance has 5 probabilities), a
  non-reloadable one (listen.port) is reported as needing a restart and the
  old port keeps working. SIGHUP with a broken file: RELOADING=1, READY=1,
  the error (file:line:column) is logged and the old settings stay (top_k 5).
- An instance with truncated pixel data: failed/ with a .reason, a
  results.jsonl line, and the next instance is classified as usual.
- SIGTERM: STOPPING=1, exit status 0.
- packaging/usviewd.service passes `systemd-analyze verify` (with ExecStart
  pointing at the built binary, since verify needs it to exist).

usage: test_systemd.py MAKE_MODEL
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import daemonlib
import usvtest
from daemonlib import Notify, Usviewd

import pydicom
import yaml

ck = usvtest.Check("daemon_systemd")
tmp = usvtest.tempdir("usv-d-systemd-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model], check=True)
src = os.environ.get("USV_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
usviewd = os.environ["USVIEWD"]


def send(d, seed):
    p = os.path.join(tmp, "x%d.dcm" % seed)
    uid = daemonlib.make_us(p, seed=seed)
    r = subprocess.run(["storescu", "-aec", "USVIEW", "127.0.0.1", str(d.port), p],
                       capture_output=True)
    return uid if r.returncode == 0 else None


def wait_result(d, uid, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for r in d.results():
            if r["sop_instance_uid"] == uid:
                return r
        time.sleep(0.1)
    return None


# ---- READY only after bind + recovery ---------------------------------------
d = Usviewd(tmp, model)
orphan = os.path.join(d.spool, "active", "0000000000000001-00000001.dcm")
os.makedirs(os.path.dirname(orphan))
orphan_uid = daemonlib.make_us(orphan, seed=99)
# a backlog already queued at start: claimed in micro-batches of batch_size
os.makedirs(os.path.join(d.spool, "incoming"))
backlog = [daemonlib.make_us(os.path.join(d.spool, "incoming", "00000000000001%02x-00000002.dcm"
                                          % k), seed=200 + k) for k in range(12)]
d.start()
i = d.notify.wait("READY=1", 0)
r = subprocess.run(["echoscu", "-aec", "USVIEW", "127.0.0.1", str(d.port)], capture_output=True)
ck(r.returncode == 0, "C-ECHO right after READY=1 failed: %s" % r.stderr)
rec = wait_result(d, orphan_uid)
ck(rec is not None and rec["outcome"] == "done", "instance left in active/ not reprocessed")
recs = [wait_result(d, u) for u in backlog]
ck(all(r is not None and r["outcome"] == "done" for r in recs), "backlog not classified")
batches = [r["timings_ms"]["batch"] for r in recs if r]
ck(max(batches or [0]) > 1 and max(batches) <= 8, "backlog batch sizes %s" % batches)
_, _, text = d.http("/metrics")
types, samples = daemonlib.parse_prometheus(text)
nb = daemonlib.sample(samples, "usview_inference_batches_total")
ni = daemonlib.sample(samples, "usview_inference_images_total")
ck(ni == 13 and nb < ni, "batched inference: %s images in %s batches" % (ni, nb))
st = None
end = time.monotonic() + 5
while time.monotonic() < end and st is None:
    d.notify.poll()
    st = next((m for _, m in d.notify.messages if m.startswith("STATUS=assoc=")), None)
    time.sleep(0.1)
ck(st is not None and re.search(r"queued=\d+ inflight=\d+ done=\d+", st), "STATUS line %r" % st)

# ---- reload -----------------------------------------------------------------
old_port = d.port
cfg = dict(d.cfg)
cfg["model"] = dict(cfg["model"], top_k=5)
cfg["listen"] = dict(cfg["listen"], port=usvtest.free_port())
cfg["log"] = dict(cfg["log"], level="debug")
# a destination added by the reload receives the next result
rcv = os.path.join(tmp, "rcv")
os.makedirs(rcv)
dport = usvtest.free_port()
scp = usvtest.Proc(["storescp", "-aet", "NEWDEST", "-od", rcv, str(dport)],
                   log_path=os.path.join(tmp, "storescp.log"))
ck(usvtest.wait_port(dport, 10, scp.p), "storescp did not start")
cfg["destinations"] = [{"name": "newdest", "ae_title": "NEWDEST", "host": "127.0.0.1",
                        "port": dport, "send": ["sr"]}]
d.write_config(yaml.safe_dump(cfg, sort_keys=False))
n = len(d.notify.messages)
os.kill(d.proc.pid, signal.SIGHUP)
i = d.notify.wait("RELOADING=1", 10, since=n)
ck(i is not None and re.search(r"^MONOTONIC_USEC=\d+$", d.notify.messages[i][1], re.M),
   "RELOADING=1 with MONOTONIC_USEC: %r" % (d.notify.messages[i][1] if i is not None else None))
j = d.notify.wait("READY=1", 10, since=(i or n) + 1)
ck(j is not None, "no READY=1 after the reload")
time.sleep(0.2)
ck(re.search(r"needs a restart to change: .*listen\.port", d.log()) is not None,
   "restart-only key not reported:\n" + d.log()[-1500:])
uid = send(d, 1)  # the old port still serves
rec = wait_result(d, uid) if uid else None
ck(rec is not None and len(rec["topk"]) == 5, "reloaded top_k not applied: %s" % rec)
ck(rec is not None and [o["destination"] for o in rec["outputs"]] == ["newdest"],
   "reloaded destinations not used: %s" % (rec and rec["outputs"]))
end = time.monotonic() + 15
while time.monotonic() < end and not os.listdir(rcv):
    time.sleep(0.1)
ck(len(os.listdir(rcv)) == 1, "the destination added by the reload got %d files" %
   len(os.listdir(rcv)))

with open(d.cfg_path, "w") as f:
    f.write("model:\n  top_k: 2\nlog:\n  level: verbose\n")
n = len(d.notify.messages)
os.kill(d.proc.pid, signal.SIGHUP)
i = d.notify.wait("RELOADING=1", 10, since=n)
j = d.notify.wait("READY=1", 10, since=(i or n) + 1)
ck(i is not None and j is not None, "RELOADING/READY around a failed reload")
time.sleep(0.2)
ck(re.search(r"reload failed, keeping the running configuration: .*%s:4:10: log\.level" %
             re.escape(d.cfg_path), d.log()) is not None, "failed reload not logged:\n" +
   d.log()[-1500:])
uid = send(d, 2)
rec = wait_result(d, uid) if uid else None
ck(rec is not None and len(rec["topk"]) == 5, "failed reload changed top_k: %s" % rec)
ck(d.port == old_port and d.alive(), "daemon alive on the old port")

# ---- the calling-AE allow-list is reloadable ------------------------------------
def reload_with(c):
    d.write_config(yaml.safe_dump(c, sort_keys=False))
    n = len(d.notify.messages)
    os.kill(d.proc.pid, signal.SIGHUP)
    i = d.notify.wait("RELOADING=1", 10, since=n)
    return i is not None and d.notify.wait("READY=1", 10, since=i + 1) is not None


ck(reload_with(dict(cfg, allowed_peers=[{"ae_title": "ONLYME"}])), "reload with a peer list")
ck(send(d, 5) is None, "a calling AE left off the reloaded allow-list was accepted")
p5 = os.path.join(tmp, "x6.dcm")
uid6 = daemonlib.make_us(p5, seed=6)
r = subprocess.run(["storescu", "-aet", "ONLYME", "-aec", "USVIEW", "127.0.0.1", str(d.port), p5],
                   capture_output=True)
ck(r.returncode == 0 and wait_result(d, uid6) is not None,
   "the AE on the reloaded allow-list was refused: %s" % r.stderr[-300:])
ck(reload_with(dict(cfg, allowed_peers=[])), "reload back to an open peer list")
ck(send(d, 7) is not None, "an empty allow-list after reload still refuses")

# ---- a bad instance goes to failed/ with its reason; the daemon carries on ----
bad = os.path.join(tmp, "bad.dcm")
bad_uid = daemonlib.make_us(bad, seed=3)
ds = pydicom.dcmread(bad)
ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]  # truncated pixel data
ds.save_as(bad, write_like_original=False)
r = subprocess.run(["storescu", "-aec", "USVIEW", "127.0.0.1", str(d.port), bad],
                   capture_output=True)
ck(r.returncode == 0, "truncated instance refused at C-STORE: %s" % r.stderr)
rec = wait_result(d, bad_uid)
ck(rec is not None and rec["outcome"] == "failed" and rec.get("reason"),
   "truncated instance: %s" % rec)
d.wait_idle(10, outbox=False)  # the index line comes before the move to failed/
reasons = d.files("failed", suffix=".reason")
ck(len(reasons) == 1 and len(d.files("failed")) == 1 and open(reasons[0]).read().strip(),
   "failed/ holds %s" % reasons)
uid = send(d, 4)
rec = wait_result(d, uid) if uid else None
ck(d.alive() and rec is not None and rec["outcome"] == "done", "daemon after a bad instance")

# ---- stop -------------------------------------------------------------------
rc = d.stop()
ck(rc == 0, "exit status %s" % rc)
ck(d.notify.wait("STOPPING=1", 1) is not None, "no STOPPING=1")

# ---- watchdog -----------------------------------------------------------------
d.write_config()
sock = os.path.join(tmp, "wd.sock")
nt = Notify(sock)
env = dict(os.environ, NOTIFY_SOCKET=sock, WATCHDOG_USEC="1000000")
env.pop("JOURNAL_STREAM", None)
p = subprocess.Popen([usviewd, "-c", d.cfg_path, "--set", "log.level=info"], env=env,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
usvtest._procs.append(p)
ck(nt.wait("READY=1", 20, proc=p) is not None, "watchdog run: no READY")
time.sleep(2.2)
nt.poll()
pings = sum(1 for _, m in nt.messages if "WATCHDOG=1" in m.split("\n"))
ck(3 <= pings <= 8, "%d WATCHDOG=1 pings in about 2.2 s with WatchdogSec=1" % pings)
p.send_signal(signal.SIGTERM)
ck(p.wait(timeout=30) == 0, "watchdog run exit status")

# ---- no READY when start-up fails -----------------------------------------------
sock = os.path.join(tmp, "bad.sock")
nt = Notify(sock)
env = dict(os.environ, NOTIFY_SOCKET=sock)
r = subprocess.run([usviewd, "-c", d.cfg_path, "--model", os.path.join(tmp, "none.model")],
                   env=env, capture_output=True, text=True, timeout=30)
nt.poll()
ck(r.returncode == 1 and "none.model" in r.stderr, "bad model: rc=%d %r" % (r.returncode,
                                                                       r.stderr[-300:]))
ck(not any("READY=1" in m for _, m in nt.messages), "READY=1 sent although start-up failed")

# ---- the unit file ------------------------------------------------------------------
unit = open(os.path.join(src, "packaging", "usviewd.service")).read()
for key in ("Type=notify", "User=usview", "StateDirectory=usview", "ConfigurationDirectory=usview",
            "ProtectSystem=strict", "NoNewPrivileges=yes", "SystemCallFilter=@system-service",
            "PrivateTmp=yes", "ProtectHome=yes", "RestrictAddressFamilies=", "UMask=0077",
            "WatchdogSec=", "--check-config", "kill -HUP $MAINPID"):
    ck(key in unit, "unit lacks %s" % key)
ck(re.search(r"^AmbientCapabilities=", unit, re.M) is None,
   "CAP_NET_BIND_SERVICE granted by default")
sa = shutil.which("systemd-analyze")
if sa:
    udir = os.path.join(tmp, "unit")
    os.makedirs(udir)
    upath = os.path.join(udir, "usviewd.service")
    with open(upath, "w") as f:
        f.write(unit.replace("/usr/sbin/usviewd", usviewd))
    r = subprocess.run([sa, "verify", upath], capture_output=True, text=True, timeout=60)
    ck(r.returncode == 0 and "usviewd.service" not in r.stderr,
       "systemd-analyze verify: rc=%d %s" % (r.returncode, r.stderr))
    # a unit naming a binary that does not exist must fail (the check is real)
    with open(upath, "w") as f:
        f.write(unit.replace("/usr/sbin/usviewd", os.path.join(tmp, "nope")))
    r = subprocess.run([sa, "verify", upath], capture_output=True, text=True, timeout=60)
    ck(r.returncode != 0, "systemd-analyze verify accepted a missing binary")
else:
    print("systemd-analyze not installed: unit verification skipped")
ck.done()
