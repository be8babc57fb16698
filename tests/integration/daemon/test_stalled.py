"""usviewd against stalled, slow and hostile TCP peers.

The storage SCP hands a connection to DICOM negotiation only once its whole
A-ASSOCIATE-RQ has arrived, caps half-open connections per address and
overall (closing the oldest to make room) and closes them after the ACSE
timeout (dicom/src/dcm_scp.cpp, DESIGN). Checked, with the daemon's real
listen socket on loopback:

Phase 1 (acse_timeout 30 s, so that nothing here is rescued by a timeout):
- 100 stalled connections from ten loopback addresses (127.0.0.2..11; one
  byte 0x01, a partial PDU header, a header with part of its body, or
  nothing at all) plus 40 one-byte connections from 127.0.0.1 itself (over
  the per-address cap of 32): echoscu from 127.0.0.1 then succeeds in
  under 5 s (before the change it waited for the ACSE timeout of each
  stalled peer in turn), storescu of a real file succeeds, and the stalled
  peers from other addresses are still open (held, not dropped);
- an A-ASSOCIATE-RQ sent in three pieces with pauses is still accepted
  (A-ASSOCIATE-AC);
- a non-DICOM first byte (an HTTP request) and an RQ announcing 16 MiB are
  closed at once (EOF in under 2 s);
- 1,000 more stalled connections (100 addresses): the daemon's RSS grows
  by less than 20 MiB and its open descriptors stay under the overall cap
  (512) plus a margin; echoscu still succeeds in under 5 s.
Phase 2 (acse_timeout 3 s, dimse_timeout 3 s): an association that stops in
the middle of a P-DATA PDU gets an A-ABORT after the DIMSE timeout (DCMTK
alone waits for its 60 s socket timeout) and is closed after the ACSE
timeout more (DCMTK's wait for the peer to close after an A-ABORT); 40
half-open connections (four addresses, under every cap) are closed by the
server within the ACSE timeout plus 3 s.

The bound on RSS: a half-open connection costs the daemon one list entry
and one pollfd (under 100 bytes) in user space, its buffers are in the
kernel; 20 MiB leaves room for allocator noise and the DCMTK objects of
the echo associations, and is far below what a per-connection buffer or
thread (8 MiB of stack each) would cost for 1,000 connections.

usage: test_stalled.py MAKE_MODEL
"""

import os
import resource
import socket
import struct
import subprocess
import sys
import time

import usvtest
from daemonlib import Usviewd, parse_prometheus, sample as metric

ck = usvtest.Check("daemon_stalled")
tmp = usvtest.tempdir("usv-d-stalled-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model], check=True)
sample = os.path.join(usvtest.shared_dir(), "data", "dicom", "us", "pydicom-data__US1_UNCI.dcm")

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = 1400
if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = want
if soft < want:
    print("SKIP: RLIMIT_NOFILE %d < %d and cannot be raised" % (soft, want))
    sys.exit(0)

# Kinds of stall: one byte, part of the header, a header and part of the body
# it announces, nothing at all.
STALLS = [b"\x01", b"\x01\x00\x00", b"\x01\x00\x00\x00\x01\x00" + b"\x00" * 40, b""]


def echo(port, timeout=60):
    """echoscu from 127.0.0.1; (ok, seconds)."""
    t0 = time.monotonic()
    try:
        r = subprocess.run(["echoscu", "-aet", "STALLTEST", "-aec", "USVIEW", "127.0.0.1",
                            str(port)], capture_output=True, timeout=timeout)
        ok = r.returncode == 0
    except subprocess.TimeoutExpired:
        ok = False
    return ok, time.monotonic() - t0


def connect(port, src, payload, timeout=10):
    """A connection from src that sends payload; None if it cannot connect."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))
        if payload:
            s.sendall(payload)
    except OSError:
        s.close()
        return None
    return s


def stall(port, n, addr, limit=20):
    """n stalled connections, addr(k) the source of the k-th; stops after
    limit failed connects in a row (a full listen backlog). Returns
    (sockets, failed)."""
    out, failed, run = [], 0, 0
    for k in range(n):
        s = connect(port, addr(k), STALLS[k % len(STALLS)], timeout=2)
        if s is None:
            failed, run = failed + 1, run + 1
            if run >= limit:
                return out, n - len(out)
            continue
        run = 0
        out.append(s)
    return out, failed


def closed_by_peer(s):
    """True when the server closed s (EOF or reset), False if still open."""
    s.setblocking(False)
    try:
        return s.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def wait_closed(s, timeout):
    s.settimeout(timeout)
    try:
        return s.recv(65536) == b"" or wait_closed(s, timeout)
    except socket.timeout:
        return False
    except OSError:
        return True


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def item(t, body):
    return struct.pack(">BBH", t, 0, len(body)) + body


def associate_rq(called=b"USVIEW", calling=b"SLOWPEER"):
    """A minimal A-ASSOCIATE-RQ: Verification, implicit VR little endian."""
    ctx = item(0x30, b"1.2.840.10008.1.1") + item(0x40, b"1.2.840.10008.1.2")
    body = (struct.pack(">HH", 1, 0) + called.ljust(16) + calling.ljust(16) + b"\0" * 32
            + item(0x10, b"1.2.840.10008.3.1.1.1")
            + item(0x20, bytes([1, 0, 0, 0]) + ctx)
            + item(0x50, item(0x51, struct.pack(">I", 16384))
                   + item(0x52, b"1.2.826.0.1.3680043.9.7433")))
    return struct.pack(">BBI", 1, 0, len(body)) + body


# ---------------- phase 1 ----------------
d = Usviewd(tmp, model, extra={"listen": {"acse_timeout": 30, "dimse_timeout": 20}},
            name="p1", http=True)
d.start()
pid = d.proc.pid
fds_start = proc_fds(pid)

ok, t_idle = echo(d.port)
ck(ok, "echoscu with no stalled connection")
print("echoscu, 0 stalled: %.3f s" % t_idle, flush=True)

held, failed = stall(d.port, 100, lambda k: "127.0.0.%d" % (2 + k % 10))
ck(failed == 0, "%d of 100 stalled connections could not connect" % failed)
local = [s for s in (connect(d.port, "127.0.0.1", b"\x01", 2) for _ in range(40)) if s]
ck(len(local) == 40, "only %d of 40 connections from 127.0.0.1" % len(local))
time.sleep(0.5)

ok, t_stalled = echo(d.port)
print("echoscu, 140 stalled (100 + 40 from its own address): %.3f s" % t_stalled, flush=True)
ck(ok, "echoscu succeeds with 140 stalled connections open")
ck(t_stalled < 5.0, "echoscu took %.1f s with stalled connections (acse_timeout 30 s)"
   % t_stalled)

r = subprocess.run(["storescu", "-aet", "STALLTEST", "-aec", "USVIEW", "127.0.0.1",
                    str(d.port), sample], capture_output=True, timeout=60)
ck(r.returncode == 0, "storescu with stalled connections open: %s" % r.stderr[-500:])

still = sum(1 for s in held if not closed_by_peer(s))
ck(still == len(held) == 100,
   "stalled peers under every cap are held, not dropped (%d of %d open)" % (still, len(held)))
gone = sum(1 for s in local if closed_by_peer(s))
ck(len(local) == 40 and gone >= len(local) - 32,
   "over the per-address cap the oldest are closed (%d of %d)" % (gone, len(local)))

# an RQ in three pieces, with pauses, still negotiates
rq = associate_rq()
s = connect(d.port, "127.0.0.1", rq[:3])
try:
    time.sleep(0.4)
    s.sendall(rq[3:40])
    time.sleep(0.4)
    s.sendall(rq[40:])
    s.settimeout(10)
    ac = s.recv(1)
except (OSError, AttributeError):
    ac = b""
ck(ac == b"\x02", "a fragmented A-ASSOCIATE-RQ is answered with A-ASSOCIATE-AC (got %r)" % ac)
if s:
    s.close()

for what, payload in (("HTTP request", b"GET / HTTP/1.0\r\n\r\n"),
                      ("RQ of 16 MiB", b"\x01\x00" + struct.pack(">I", 16 << 20))):
    t0 = time.monotonic()
    s = connect(d.port, "127.0.0.1", payload)
    c = s is not None and wait_closed(s, 5)
    dt = time.monotonic() - t0
    ck(c and dt < 2.0, "%s closed at once (closed=%s after %.2f s)" % (what, c, dt))
    if s:
        s.close()

# what /metrics says about the connections above
status, _, text = d.http("/metrics")
ck(status == 200, "/metrics answers (%s)" % status)
_, samples = parse_prometheus(text)
not_dicom = metric(samples, "usview_connections_closed_total", reason="not_dicom")
evicted = metric(samples, "usview_connections_closed_total", reason="evicted")
halfopen = metric(samples, "usview_connections_halfopen")
ck(not_dicom is not None and not_dicom >= 2,
   "metrics count the HTTP request and the 16 MiB RQ as not DICOM (%s)" % not_dicom)
ck(evicted is not None and evicted >= gone,
   "metrics count the evicted half-open connections (%s, %d seen closed)" % (evicted, gone))
ck(halfopen is not None and halfopen >= 100,
   "the half-open gauge holds the 100 stalled peers (%s)" % halfopen)

rss0, fds0 = proc_rss_kib(pid), proc_fds(pid)
flood, failed = stall(d.port, 1000, lambda k: "127.0.1.%d" % (1 + k % 100))
ck(failed == 0, "%d of 1000 stalled connections could not connect" % failed)
time.sleep(1.0)
rss1, fds1 = proc_rss_kib(pid), proc_fds(pid)
print("1000 more stalled: RSS %d -> %d KiB (+%d), fds %d -> %d (at start %d)"
      % (rss0, rss1, rss1 - rss0, fds0, fds1, fds_start), flush=True)
ck(rss1 - rss0 < 20 * 1024, "RSS grew by %d KiB with 1000 stalled connections" % (rss1 - rss0))
ck(fds1 <= fds_start + 512 + 16, "open descriptors %d (at start %d, half-open cap 512)"
   % (fds1, fds_start))
ok, t_flood = echo(d.port)
print("echoscu, 1000 stalled: %.3f s" % t_flood, flush=True)
ck(ok and t_flood < 5.0, "echoscu with 1000 stalled connections (%s, %.1f s)" % (ok, t_flood))
ck(d.alive(), "usviewd still running")
for s in held + local + flood:
    s.close()
ck(d.stop() == 0, "clean stop after the flood")

# ---------------- phase 2 ----------------
d2 = Usviewd(tmp, model, extra={"listen": {"acse_timeout": 3, "dimse_timeout": 3}},
             name="p2", http=False)
d2.start()
# an association that stops in the middle of a P-DATA PDU
mid = connect(d2.port, "127.0.0.1", associate_rq())
try:
    mid.settimeout(10)
    ac = mid.recv(65536)
    mid.sendall(b"\x04\x00\x00\x00\x01\x00" + b"\x00" * 20)
    t0 = time.monotonic()
    mid.settimeout(15)
    abort = mid.recv(1)
    dt_abort = time.monotonic() - t0
    c = abort == b"" or wait_closed(mid, 15)
    dt = time.monotonic() - t0
except (OSError, AttributeError):
    ac, abort, c, dt_abort, dt = b"", b"", False, -1, -1
ck(ac[:1] == b"\x02" and abort in (b"\x07", b"") and 2 < dt_abort < 3 + 2,
   "a PDU stalled mid-body is aborted after the DIMSE timeout (%r after %.1f s)"
   % (abort, dt_abort))
ck(c and dt < 3 + 3 + 2, "and closed after the ACSE timeout DCMTK then waits for the peer to "
   "close (closed=%s after %.1f s)" % (c, dt))
if mid:
    mid.close()

half, failed = stall(d2.port, 40, lambda k: "127.0.2.%d" % (1 + k % 4))
ck(failed == 0, "%d of 40 half-open connections could not connect" % failed)
time.sleep(1.0)
ck(not any(closed_by_peer(s) for s in half), "half-open connections wait for the ACSE timeout")
end = time.monotonic() + 3 + 3
while time.monotonic() < end and not all(closed_by_peer(s) for s in half):
    time.sleep(0.2)
n = sum(1 for s in half if closed_by_peer(s))
ck(n == len(half), "%d of %d half-open connections closed after the ACSE timeout"
   % (n, len(half)))
ok, _ = echo(d2.port)
ck(ok, "echoscu after the timeouts")
for s in half:
    s.close()
ck(d2.stop() == 0, "clean stop")
ck.done()
