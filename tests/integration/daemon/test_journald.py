"""usviewd's structured journal records.

journald is replaced by a datagram socket of the test at
/run/systemd/journal/socket, inside a private mount namespace (unshare -m,
a tmpfs over /run), so libsystemd's sd_journal_send() talks to the test.
With JOURNAL_STREAM set (as systemd sets it) and log.journald true, the
daemon must send: one association record (MESSAGE_ID a0188316...,
USV_CALLING_AE, USV_CALLED_AE, USV_PEER_ADDR, USV_STORED), one instance
record per classified instance (MESSAGE_ID 57548371..., USV_SOP_INSTANCE_UID,
USV_LABEL, USV_OUTCOME), PRIORITY and SYSLOG_IDENTIFIER, nothing of the
patient's name or id anywhere, and no plain lines on stderr for them.
Skipped (exit 0 with a message) where unshare/mount is not permitted.

usage: test_journald.py MAKE_MODEL
"""

import os
import socket
import subprocess
import sys
import time

import usvtest

if len(sys.argv) < 3 or sys.argv[2] != "--inner":
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /run"],
                           capture_output=True)
    if probe.returncode != 0:
        print("SKIP: no private mount namespace here (%s)" % probe.stderr.decode().strip())
        sys.exit(0)
    r = subprocess.run(["unshare", "-m", "sh", "-c",
                        'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && '
                        'exec "$0" "$@"', sys.executable, os.path.abspath(__file__),
                        sys.argv[1], "--inner"])
    sys.exit(r.returncode)

import daemonlib  # noqa: E402
from daemonlib import Usviewd  # noqa: E402

ck = usvtest.Check("daemon_journald")
tmp = usvtest.tempdir("usv-d-journal-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model], check=True)

js = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
js.bind("/run/systemd/journal/socket")
js.settimeout(0.2)

d = Usviewd(tmp, model, extra={"log": {"journald": True, "level": "info"}})
d.start(env_extra={"JOURNAL_STREAM": "8:12345"})
p = os.path.join(tmp, "a.dcm")
uid = daemonlib.make_us(p, seed=5, patient="Secret^Patient")
r = subprocess.run(["storescu", "-aet", "MODALITY7", "-aec", "USVIEW", "127.0.0.1",
                    str(d.port), p], capture_output=True)
ck(r.returncode == 0, "storescu: %s" % r.stderr)
end = time.monotonic() + 20
while time.monotonic() < end and not any(x["sop_instance_uid"] == uid for x in d.results()):
    time.sleep(0.1)
time.sleep(0.5)
ck(d.stop() == 0, "clean stop")

records = []
while True:
    try:
        data = js.recv(1 << 20)
    except socket.timeout:
        break
    rec, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            rec[k.decode()] = v.decode("utf-8", "replace")
            i = nl + 1
        else:  # binary field: NAME\n<le64 length><value>\n
            n = int.from_bytes(data[nl + 1:nl + 9], "little")
            rec[line.decode()] = data[nl + 9:nl + 9 + n].decode("utf-8", "replace")
            i = nl + 9 + n + 1
    records.append(rec)
print("%d journal records" % len(records))
ck(len(records) >= 3, "only %d journal records" % len(records))
ck(all(x.get("SYSLOG_IDENTIFIER") == "usviewd" and x.get("PRIORITY", "").isdigit()
       and x.get("MESSAGE") for x in records), "records lack MESSAGE/PRIORITY/identifier")
assoc = [x for x in records if x.get("MESSAGE_ID") == "a0188316e5144b5aa4abcc1ae42d45b4"
         and x.get("USV_CALLING_AE") == "MODALITY7"]
ck(len(assoc) == 1 and assoc[0].get("USV_CALLED_AE") == "USVIEW"
   and assoc[0].get("USV_PEER_ADDR") == "127.0.0.1" and assoc[0].get("USV_STORED") == "1"
   and assoc[0].get("PRIORITY") == "6", "association record %s" % assoc)
inst = [x for x in records if x.get("MESSAGE_ID") == "57548371076b4d5c9eace22288548d7d"
        and x.get("USV_OUTCOME") == "done"]
ck(len(inst) == 1 and inst[0].get("USV_SOP_INSTANCE_UID") == uid and inst[0].get("USV_LABEL"),
   "instance record %s" % inst)
ck(any(x.get("MESSAGE_ID") == "963d919a30d3436f9e4389ce77ce3a2d" for x in records),
   "no start/stop record")
text = "\n".join("%s=%s" % kv for x in records for kv in x.items())
ck("Secret" not in text and "USV-TEST-1" not in text, "patient data in the journal")
ck(uid not in d.log(), "instance logged on stderr although the journal is used")
ck.done()
