"""Two usviewd nodes behind HAProxy: PROXY protocol v2 and draining.

Two nodes with listen.proxy_protocol_from: [127.0.0.1] and allowed_peers
naming hosts; HAProxy (configuration generated from
packaging/haproxy/usview.cfg: only the addresses, ports and the lines that
need root change) in front of them with send-proxy-v2 and HTTP checks of
/healthz. Checked:
  - storescu through HAProxy: instances stored and classified on both
    nodes (leastconn alternates between idle nodes), the association lines
    name the client address HAProxy carried (127.0.0.1);
  - a relay that connects to a node and writes a hand-made PROXY v2 header
    (built here with struct from the spec, not by the code under test)
    claiming 10.1.2.3 before storescu's bytes: the node logs
    RELAYED@10.1.2.3 and stores; the allowed_peers host check uses the
    carried address: RELAYED (host 10.1.2.3) is accepted, STORESCU (host
    127.0.0.1) is rejected through the same relay; a LOCAL header keeps the
    socket's address (STORESCU accepted);
  - on node 2's DICOM TLS port the header comes before the handshake:
    echoscu +tla through a relay is logged as ECHOSCU@10.7.7.7 over TLS;
    without the header it is refused;
  - storescu straight to a node from 127.0.0.1 (a listed balancer
    address) without a header is refused and logged; a header from
    127.0.0.2 (not listed) is refused; plain DICOM from 127.0.0.2 works;
  - draining: SIGTERM to node 1 while a slowed association is in progress
    through a relay: /healthz answers 503 "draining", the DICOM port
    refuses connections, further storescu runs through HAProxy all succeed
    on node 2, the slow association finishes with every instance stored,
    node 1 exits 0 ("draining: done");
  - node 2 with drain_timeout_s 1 and a stalled association: aborted after
    the bound, exit 0.

usage: test_haproxy.py MAKE_MODEL
"""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import usvtest
from haproxylib import sample_config

from daemonlib import Usviewd, make_us, parse_prometheus, sample

ck = usvtest.Check("haproxy")
tmp = usvtest.tempdir("usv-haproxy-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model], check=True)
SRC = os.environ.get("USV_SOURCE_DIR",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
if not os.path.exists(HAPROXY):
    print("haproxy not installed (scripts/install-deps.sh)")
    sys.exit(77)

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(src, dst="127.0.0.1", sport=40000, dport=11112, local=False, tlvs=b""):
    """A PROXY protocol v2 header (HAProxy proxy-protocol.txt 2.2)."""
    if local:
        return SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    body += tlvs
    return SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


class Relay:
    """Listens on a free port; each connection is forwarded to target after
    header (from source address bind_ip); client bytes are delayed by
    delay seconds per chunk (a slow association); with stall, the client's
    bytes stop flowing 1 KiB after the node's first answer (a stalled
    association)."""

    def __init__(self, target, header=b"", bind_ip=None, delay=0.0, chunk=65536, stall=False):
        self.target, self.header, self.bind_ip = target, header, bind_ip
        self.delay, self.chunk, self.stall = delay, chunk, stall
        self.answered = False
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _pump(self, a, b, delay, upstream=True):
        after = 0
        try:
            while True:
                d = a.recv(self.chunk)
                if not d:
                    break
                if not upstream:
                    self.answered = True
                elif self.stall and self.answered:
                    after += len(d)
                    if after > 1024:
                        while a.recv(65536):
                            pass
                        break
                if delay:
                    time.sleep(delay)
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _serve(self, c):
        u = socket.socket()
        try:
            if self.bind_ip:
                u.bind((self.bind_ip, 0))
            u.connect(self.target)
            if self.header:
                u.sendall(self.header)
        except OSError:
            c.close()
            u.close()
            return
        threading.Thread(target=self._pump, args=(c, u, self.delay), daemon=True).start()
        self._pump(u, c, 0, upstream=False)

    def close(self):
        self.ls.close()


# ---- instances
files = []
for i in range(12):
    p = os.path.join(tmp, "us%02d.dcm" % i)
    make_us(p, seed=i)
    files.append(p)


def storescu(port, aet, paths, timeout=60):
    return subprocess.run(["storescu", "-aet", aet, "-aec", "USVIEW", "127.0.0.1", str(port)]
                          + list(paths), capture_output=True, text=True, timeout=timeout)


# ---- two nodes
peers = [{"ae_title": "STORESCU", "host": "127.0.0.1"},
         {"ae_title": "RELAYED", "host": "10.1.2.3"},
         {"ae_title": "DIRECT", "host": "127.0.0.2"},
         {"ae_title": "ECHOSCU", "host": "10.7.7.7"}]
cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                "-out", cert, "-days", "2", "-subj", "/CN=localhost"], check=True,
               capture_output=True)
os.chmod(key, 0o600)
nodes = []
for k, drain in ((1, 20), (2, 1)):
    listen = {"proxy_protocol_from": ["127.0.0.1"], "drain_timeout_s": drain,
              "dimse_timeout": 30}
    if k == 2:  # DICOM TLS behind the balancer too
        listen["tls"] = {"port": usvtest.free_port(), "certificate": cert, "private_key": key,
                         "require_client_certificate": False}
    n = Usviewd(tmp, model, name="node%d" % k, extra={"listen": listen, "allowed_peers": peers})
    nodes.append(n.start())
n1, n2 = nodes

# ---- HAProxy from the sample
hp_port = usvtest.free_port()
cfg_text = sample_config(SRC, hp_port, nodes)
ck("send-proxy-v2" in cfg_text and "balance leastconn" in cfg_text
   and "option httpchk GET /healthz" in cfg_text, "the sample has the key settings")
hp_cfg = os.path.join(tmp, "haproxy.cfg")
with open(hp_cfg, "w") as f:
    f.write(cfg_text)
r = subprocess.run([HAPROXY, "-c", "-f", hp_cfg], capture_output=True, text=True)
ck(r.returncode == 0, "generated HAProxy config valid: %s" % (r.stdout + r.stderr)[-800:])
hp = usvtest.Proc([HAPROXY, "-db", "-f", hp_cfg], log_path=os.path.join(tmp, "haproxy.log"))
usvtest.wait_port(hp_port, 10, proc=hp.p)


def logged(n, pattern, timeout=5):
    """The node's log matches pattern within timeout (records are written
    when an association ends, which may be just after the client exits)."""
    end = time.monotonic() + timeout
    while True:
        if re.search(pattern, n.log()):
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.05)


def stats(n):
    _, _, text = n.http("/metrics")
    return parse_prometheus(text)[1]


def wait_for(cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


# HAProxy's first checks (rise 2 at 300 ms) mark both nodes up
time.sleep(1.0)

# ---- through HAProxy: 4 associations of 2 instances
for i in range(4):
    r = storescu(hp_port, "STORESCU", files[2 * i:2 * i + 2])
    ck(r.returncode == 0, "storescu via HAProxy #%d: %s" % (i, r.stderr[-500:]))
ck(wait_for(lambda: len(n1.results()) + len(n2.results()) >= 8 and n1.wait_idle(1)
            and n2.wait_idle(1), 30), "8 instances classified on the nodes")
c1, c2 = len(n1.results()), len(n2.results())
ck(c1 + c2 == 8 and c1 >= 2 and c2 >= 2, "both nodes got work: %d + %d" % (c1, c2))
ck(all(r.get("label") or r.get("view") or r.get("top") for r in n1.results() + n2.results()),
   "every result has a classification")
for n in nodes:
    ck(logged(n, r"association USVIEW from STORESCU@127\.0\.0\.1: released"),
       "%s: association line with the carried client address" % n.name)

# ---- hand-made header claiming 10.1.2.3 (with a TLV), directly to node 1
tlv = bytes([0x02]) + struct.pack("!H", 6) + b"pacs-1"  # PP2_TYPE_AUTHORITY
relay = Relay(("127.0.0.1", n1.port), proxy_v2("10.1.2.3", tlvs=tlv))
before = len(n1.results())
r = storescu(relay.port, "RELAYED", files[8:9])
ck(r.returncode == 0, "RELAYED via a header claiming 10.1.2.3: %s" % r.stderr[-500:])
ck(logged(n1, r"association USVIEW from RELAYED@10\.1\.2\.3: released, 1 stored"),
   "node1 logs the carried address 10.1.2.3")
ck(wait_for(lambda: len(n1.results()) == before + 1, 20), "the relayed instance classified")
r = storescu(relay.port, "STORESCU", files[9:10])
ck(r.returncode != 0, "STORESCU (host 127.0.0.1) carried as 10.1.2.3 is rejected")
ck(logged(n1, r"calling AE title not accepted: STORESCU from 10\.1\.2\.3"),
   "the host check used the carried address")
relay.close()

# LOCAL: the socket's own address applies
relay = Relay(("127.0.0.1", n1.port), proxy_v2(None, local=True))
r = storescu(relay.port, "STORESCU", files[9:10])
ck(r.returncode == 0, "LOCAL header: STORESCU from 127.0.0.1 accepted: %s" % r.stderr[-300:])
relay.close()

# ---- no header from a listed address: refused and logged
r = storescu(n1.port, "STORESCU", files[10:11], timeout=20)
ck(r.returncode != 0, "storescu straight to node1 without a header is refused")
ck(wait_for(lambda: "no valid PROXY protocol v2 header" in n1.log(), 5),
   "node1 logs the missing header: %s" % n1.log()[-600:])
# a header from 127.0.0.2 (not listed): refused; plain DICOM from there works
relay = Relay(("127.0.0.1", n1.port), proxy_v2("10.1.2.3"), bind_ip="127.0.0.2")
r = storescu(relay.port, "RELAYED", files[10:11], timeout=20)
ck(r.returncode != 0, "a PROXY header from 127.0.0.2 is refused")
ck(wait_for(lambda: "PROXY protocol header from an address not in" in n1.log(), 5),
   "node1 logs the unexpected header")
relay.close()
relay = Relay(("127.0.0.1", n1.port), b"", bind_ip="127.0.0.2")
r = storescu(relay.port, "DIRECT", files[10:11])
ck(r.returncode == 0, "DIRECT from 127.0.0.2 without a header: %s" % r.stderr[-300:])
ck(logged(n1, r"from DIRECT@127\.0\.0\.2: released"), "DIRECT logged from 127.0.0.2")
relay.close()
m = stats(n1)
ck(sample(m, "usview_connections_closed_total", reason="proxy_header") == 2,
   "node1 counted 2 refused PROXY headers")

# ---- the TLS port: the header comes before the TLS handshake
tls_port = n2.cfg["listen"]["tls"]["port"]
relay = Relay(("127.0.0.1", tls_port), proxy_v2("10.7.7.7"))
r = subprocess.run(["echoscu", "-aec", "USVIEW", "+tla", "+cf", cert, "127.0.0.1",
                    str(relay.port)], capture_output=True, text=True, timeout=30)
ck(r.returncode == 0, "echoscu over TLS with a PROXY header: %s" % r.stderr[-300:])
ck(logged(n2, r"from ECHOSCU@10\.7\.7\.7 over TLS: released"),
   "node2 logs the carried address of the TLS association")
relay.close()
r = subprocess.run(["echoscu", "-aec", "USVIEW", "+tla", "+cf", cert, "127.0.0.1",
                    str(tls_port)], capture_output=True, text=True, timeout=30)
ck(r.returncode != 0, "TLS straight from 127.0.0.1 without a header is refused")

# ---- draining node 1 while a slowed association runs
slow = Relay(("127.0.0.1", n1.port), proxy_v2("10.1.2.3"), delay=0.25, chunk=2048)
n1.wait_idle(20)
before1 = len(n1.results())
res = {}
t = threading.Thread(target=lambda: res.setdefault("r", storescu(slow.port, "RELAYED",
                                                                 files[0:6], timeout=60)))
t0 = time.monotonic()
t.start()
ck(wait_for(lambda: sample(stats(n1), "usview_associations_active") == 1, 10),
   "slow association in progress on node1")
os.kill(n1.proc.pid, signal.SIGTERM)
ck(wait_for(lambda: n1.http("/healthz")[0] == 503, 5), "node1 /healthz 503 while draining")
code, _, body = n1.http("/healthz")
ck(code == 503 and body.strip() == "draining", "healthz body: %d %r" % (code, body))
try:
    socket.create_connection(("127.0.0.1", n1.port), timeout=2).close()
    refused = False
except ConnectionRefusedError:
    refused = True
except OSError:
    refused = True
ck(refused, "node1's DICOM port refuses new connections while draining")
before2 = len(n2.results())
for i in range(3):
    r = storescu(hp_port, "STORESCU", files[6 + i:7 + i])
    ck(r.returncode == 0, "storescu via HAProxy while node1 drains #%d: %s" % (i, r.stderr[-300:]))
ck(n1.alive(), "node1 still running its association (%.1f s)" % (time.monotonic() - t0))
t.join(60)
r = res.get("r")
ck(r is not None and r.returncode == 0, "the slow association finished during the drain: %s"
   % (r.stderr[-500:] if r else "none"))
ck(logged(n1, r"RELAYED@10\.1\.2\.3: released, 6 stored"),
   "node1 stored all 6 of the slow association")
try:
    rc = n1.proc.wait(timeout=30)
except subprocess.TimeoutExpired:
    rc = None
ck(rc == 0, "node1 exits 0 after draining (%r)" % rc)
ck("draining: done" in n1.log(), "node1 logs the end of the drain")
kept = len(n1.results()) + len(n1.files("incoming")) + len(n1.files("active"))
ck(kept == before1 + 6, "node1 classified the 6 drained instances or kept them in its spool: "
   "%d, want %d + 6" % (kept, before1))
ck(wait_for(lambda: len(n2.results()) == before2 + 3, 20),
   "the 3 associations sent while node1 drained landed on node2")
slow.close()

# ---- node 2: drain bound; a stalled association is aborted
stall = socket.create_connection(("127.0.0.1", n2.port))
stall.sendall(proxy_v2("10.1.2.3"))
relay = Relay(("127.0.0.1", n2.port), proxy_v2("10.1.2.3"), chunk=512, stall=True)
res2 = {}
t2 = threading.Thread(target=lambda: res2.setdefault("r", storescu(relay.port, "RELAYED",
                                                                   files[0:2], timeout=60)))
t2.start()
ck(wait_for(lambda: sample(stats(n2), "usview_associations_active") == 1, 15),
   "a crawling association in progress on node2")
t0 = time.monotonic()
os.kill(n2.proc.pid, signal.SIGTERM)
try:
    rc = n2.proc.wait(timeout=20)
except subprocess.TimeoutExpired:
    rc = None
dt = time.monotonic() - t0
ck(rc == 0 and dt < 8, "node2 exits 0 within the bound (%r after %.1f s)" % (rc, dt))
ck(logged(n2, r"draining: aborting 1 association"), "node2 aborted the association")
t2.join(60)
stall.close()
relay.close()
hp.stop()
if ck.failures:
    for n in nodes:
        print("---- %s log (tail)\n%s" % (n.name, n.log()[-3000:]))
ck.done()
