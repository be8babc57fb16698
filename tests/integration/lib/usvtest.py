"""usvtest - small shared helpers for usview's Python integration tests.

free_port()          a free TCP port on 127.0.0.1 (bind to port 0, close)
wait_port(port, t)   wait until something accepts on 127.0.0.1:port
tempdir(prefix)      a per-test temporary folder, removed at exit unless
                     USV_KEEP_TMP is set
shared_dir()         USV_SHARED_DIR (default ../shared next to the sources)
derive_uid(*parts)   the result UID rule of dcm_result.h, computed independently
                     ("2.25." + int of the first 16 bytes of SHA-256("|".join))
Check                collects failures: check(cond, msg); done() exits 1 if any
Proc                 a started server process that is always killed at exit
"""

import atexit
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

_procs = []


def _cleanup():
    for p in _procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_cleanup)
for _sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_sig, lambda s, f: sys.exit(128 + s))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def tempdir(prefix="usvtest-"):
    d = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get("USV_KEEP_TMP"):
        atexit.register(shutil.rmtree, d, True)
    return d


def shared_dir():
    d = os.environ.get("USV_SHARED_DIR")
    if d:
        return d
    src = os.environ.get("USV_SOURCE_DIR",
                         os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    return os.path.join(src, "..", "shared")


def derive_uid(*parts):
    d = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return "2.25." + str(int.from_bytes(d[:16], "big"))


class Proc:
    """A server process in its own process group, killed at exit."""

    def __init__(self, argv, log_path=None, env=None, cwd=None):
        self.log_path = log_path
        out = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                  cwd=cwd, start_new_session=True)
        _procs.append(self.p)

    def alive(self):
        return self.p.poll() is None

    def stop(self, timeout=5):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.p.wait(timeout=timeout)

    def log(self):
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class Check:
    def __init__(self, name):
        self.name = name
        self.failures = 0
        self.count = 0

    def __call__(self, cond, msg):
        self.count += 1
        if not cond:
            self.failures += 1
            print("FAIL: " + msg, flush=True)
        return cond

    def done(self):
        print("%s: %d checks, %d failed" % (self.name, self.count, self.failures), flush=True)
        sys.exit(1 if self.failures else 0)
