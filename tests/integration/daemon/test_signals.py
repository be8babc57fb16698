"""usviewd stops cleanly whichever of its threads the kernel gives a signal.

A process-directed SIGTERM goes to any thread that does not block it.
usviewd's own threads inherit main()'s blocked set, but threads that a
library starts before main() runs (OpenBLAS starts its pool when it is
loaded) do not block it; without a handler the default action there ends
the process at once, with no clean stop. This test sends SIGHUP and then
SIGTERM straight to such a thread (tgkill), the worst case of that
choice, and requires a reload, a clean stop with status 0 and the
"stopped" log line. OpenBLAS is given 2 threads so that its pool exists.

usage: test_signals.py MAKE_MODEL
"""

import ctypes
import os
import signal
import subprocess
import sys
import time

import usvtest

from daemonlib import Usviewd

ck = usvtest.Check("daemon_signals")
tmp = usvtest.tempdir("usv-d-signals-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model], check=True)

libc = ctypes.CDLL(None, use_errno=True)
SYS_tgkill = 234  # x86_64


def tgkill(pid, tid, sig):
    """True when the signal was sent (False: the process is gone)."""
    return libc.syscall(SYS_tgkill, pid, tid, sig) == 0


def unblocked_threads(pid, sig):
    """Threads of pid (other than the main one) that do not block sig."""
    out = []
    for tid in sorted(int(t) for t in os.listdir("/proc/%d/task" % pid)):
        if tid == pid:
            continue
        try:
            with open("/proc/%d/task/%d/status" % (pid, tid)) as f:
                blk = [ln for ln in f if ln.startswith("SigBlk:")][0].split()[1]
        except (OSError, IndexError):
            continue
        if not (int(blk, 16) >> (sig - 1)) & 1:
            out.append(tid)
    return out


d = Usviewd(tmp, model)
d.start(env_extra={"OPENBLAS_NUM_THREADS": "2"})
pid = d.proc.pid

hup = unblocked_threads(pid, signal.SIGHUP)
term = unblocked_threads(pid, signal.SIGTERM)
ck(len(term) >= 1, "a library thread that does not block SIGTERM exists (%s)" % term)
if hup:
    n0 = d.log().count("configuration reloaded")
    ck(tgkill(pid, hup[0], signal.SIGHUP), "SIGHUP sent to thread %d" % hup[0])
    t0 = time.monotonic()
    while d.log().count("configuration reloaded") == n0 and time.monotonic() - t0 < 10:
        time.sleep(0.1)
    ck(d.log().count("configuration reloaded") > n0,
       "SIGHUP to thread %d reloads the configuration" % hup[0])
    ck(d.alive(), "usviewd survives SIGHUP sent to a library thread")
if term and d.alive():
    ck(tgkill(pid, term[0], signal.SIGTERM), "SIGTERM sent to thread %d" % term[0])
    try:
        rc = d.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        rc = None
        d.kill()
    ck(rc == 0, "SIGTERM to thread %d stops usviewd with status 0 (got %s)" % (term[0], rc))
    ck("stopped" in d.log(), "the clean stop is logged")
ck.done()
